"""Faults during save and training: SIGKILL mid-write, a full disk, a read-only output directory,
Ctrl-C in every command, and training that diverges.

The checkpoint tests use the public API only (``save_checkpoint``, ``load_checkpoint``, the
CLI's ``--save``/``--resume``) and assume nothing about the file format: a checkpoint is intact
when it loads and every array in it holds the value written with its epoch.
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_only_dir_with

import mlp_xp
from mlp_xp.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, main
from mlp_xp.train import DIVERGENCE_FACTOR, History, TrainingDiverged, _check_divergence

KILLS = 100
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path(__file__).parents[1])}


# -- SIGKILL during checkpoint writes ----------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_at_random_moments_of_checkpoint_writes_never_loses_the_previous_one(tmp_path, capsys):
    """KILLS children each save checkpoints in a loop and are SIGKILLed at a random moment (after
    their first save, within about two save durations): every time, the checkpoint loads, holds
    one whole save, and is at least the last save the child reported (see the script)."""
    script = Path(__file__).with_name("kill_checkpoint_writes.py")
    done = subprocess.run([sys.executable, str(script), str(tmp_path), str(KILLS), "13"], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["problems"] == []
    assert result["kills"] == KILLS and result["saves"] >= KILLS
    with capsys.disabled():
        print(f"\n{KILLS} SIGKILLs during {result['saves']} reported saves ({result['save_ms']:.1f} ms each): "
              f"0 unreadable, 0 lost; {result['mid_write']} kills left a temporary file (killed mid-write)")


@pytest.mark.subprocess
def test_sigkill_during_cli_training_then_resume(tmp_path):
    """SIGKILL a real `mlp-xp train --save` once its third epoch is under way (the second is
    saved); --resume continues from the last complete epoch."""
    ckpt = tmp_path / "run.ckpt"
    command = [sys.executable, "-m", "mlp_xp.cli", *_SYNTHETIC_TRAIN, "--epochs", "100", "--save", str(ckpt)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV) as proc:
        for line in proc.stdout:
            if line.startswith("epoch 3/100"):
                break
        proc.kill()
        proc.wait(timeout=60)
    done = mlp_xp.load_checkpoint(ckpt).meta["epoch"]
    assert done >= 2
    assert main([*_SYNTHETIC_TRAIN, "--epochs", str(done + 1), "--resume", str(ckpt), "--save", str(ckpt),
                 "--quiet"]) == 0
    meta = mlp_xp.load_checkpoint(ckpt).meta
    assert meta["epoch"] == done + 1 and len(meta["history"]) == done + 1


_SYNTHETIC_TRAIN = ["train", "--dataset", "synthetic", "--synthetic-size", "3000", "--hidden", "32",
                    "--batch-size", "32", "--device", "cpu"]


# -- a full disk -------------------------------------------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _first_checkpoint(tmp_path: Path) -> tuple[Path, bytes]:
    ckpt = tmp_path / "run.ckpt"
    assert main([*_SYNTHETIC_TRAIN, "--synthetic-size", "600", "--epochs", "1", "--save", str(ckpt), "--quiet"]) == 0
    return ckpt, ckpt.read_bytes()


def _assert_one_line_and_previous_intact(capsys, code, ckpt: Path, before: bytes) -> None:
    err = capsys.readouterr().err
    assert code == EXIT_FAILED and err.count("\n") == 1, err
    assert err.startswith(f"mlp-xp train: error: could not write the checkpoint {ckpt}: No space left on device")
    assert ckpt.read_bytes() == before, "the previous checkpoint changed"
    assert mlp_xp.load_checkpoint(ckpt).meta["epoch"] == 1
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name], "a temporary file was left behind"


def test_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    """The checkpoint writer's fsync fails with ENOSPC (as on a full disk)."""
    ckpt, before = _first_checkpoint(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", _no_space)
    code = main([*_SYNTHETIC_TRAIN, "--synthetic-size", "600", "--epochs", "2", "--resume", str(ckpt),
                 "--save", str(ckpt), "--quiet"])
    _assert_one_line_and_previous_intact(capsys, code, ckpt, before)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only: skips elsewhere; the ENOSPC test above covers every machine)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_real_full_disk_keeps_the_previous_checkpoint(small_tmpfs, capsys):
    ckpt, before = _first_checkpoint(small_tmpfs)
    filler = small_tmpfs / "filler"
    with open(filler, "wb", buffering=0) as f, pytest.raises(OSError) as full:
        while True:
            f.write(bytes(4096))
    assert full.value.errno == errno.ENOSPC
    capsys.readouterr()
    code = main([*_SYNTHETIC_TRAIN, "--synthetic-size", "600", "--epochs", "2", "--resume", str(ckpt),
                 "--save", str(ckpt), "--quiet"])
    filler.unlink()
    _assert_one_line_and_previous_intact(capsys, code, ckpt, before)


# -- a read-only output directory --------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--save", "--metrics-json", "--plot"])
def test_read_only_output_directory_is_reported_before_training(read_only_dir, capsys, flag):
    target = read_only_dir / ("out.png" if flag == "--plot" else "out")
    code = main([*_SYNTHETIC_TRAIN, "--epochs", "1", flag, str(target)])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE and out == "", "reported before any work (no data, no model summary)"
    assert err.count("\n") == 1 and err.startswith(f"mlp-xp train: error: {flag} {target}: cannot write in")


def test_resuming_from_a_read_only_directory_says_where_it_would_save(tmp_path, capsys):
    """A resumed run saves back to its checkpoint: where that cannot be written, the error says
    so and names --save, before training; with --save elsewhere the run goes on."""

    def checkpoint(path):
        assert main([*_SYNTHETIC_TRAIN, "--epochs", "1", "--save", str(path / "run.ckpt"), "--quiet"]) == 0

    with read_only_dir_with(tmp_path, checkpoint) as directory:
        capsys.readouterr()
        resume = ["train", "--resume", str(directory / "run.ckpt"), "--epochs", "2"]
        assert main(resume) == EXIT_USAGE
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1
        assert err.startswith(f"mlp-xp train: error: --save {directory / 'run.ckpt'}: cannot write in {directory} (")
        assert err.endswith("; a resumed run saves back to its --resume file unless --save names another\n")
        assert main([*resume, "--save", str(tmp_path / "elsewhere.ckpt"), "--quiet"]) == 0
    assert mlp_xp.load_checkpoint(tmp_path / "elsewhere.ckpt").meta["epoch"] == 2


# -- Ctrl-C ------------------------------------------------------------------------------------

_WAIT_IN_COMMAND = """
import sys, time
import mlp_xp.cli as cli

def announce_and_wait(*args, **kwargs):
    print("READY", flush=True)
    time.sleep(120)

cli._load_test_data = announce_and_wait
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def checkpoint_on_synthetic(tmp_path_factory) -> Path:
    ckpt = tmp_path_factory.mktemp("ctrl-c") / "run.ckpt"
    assert main([*_SYNTHETIC_TRAIN, "--synthetic-size", "600", "--epochs", "1", "--save", str(ckpt), "--quiet"]) == 0
    return ckpt


def _interrupt(command: list[str], ready) -> tuple[int, str]:
    """Run ``command``, send SIGINT once ``ready(line)`` holds for a line of its output."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV) as proc:
        for line in proc.stdout:
            if ready(line):
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    return proc.returncode, rest


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_ctrl_c_in_eval_and_predict_exits_130_with_one_line(checkpoint_on_synthetic, tmp_path, command):
    """A real SIGINT while the command works (its data step replaced by a wait that says READY)."""
    extra = ["--out", str(tmp_path / "grid.png")] if command == "predict" else []
    argv = [sys.executable, "-c", _WAIT_IN_COMMAND, command, "--load", str(checkpoint_on_synthetic),
            "--dataset", "synthetic", "--synthetic-size", "600", "--device", "cpu", *extra]
    code, rest = _interrupt(argv, lambda line: line == "READY\n")
    assert (code, rest) == (EXIT_INTERRUPTED, f"mlp-xp {command}: interrupted\n")


_CTRL_C_AFTER_A_STEP = """
import os, signal, sys
import mlp_xp
import mlp_xp.cli as cli

step = mlp_xp.SGD.step

def step_then_ctrl_c(self):
    step(self)
    os.kill(os.getpid(), signal.SIGINT)

mlp_xp.SGD.step = step_then_ctrl_c
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.subprocess
def test_ctrl_c_in_bench_exits_130_with_one_line():
    """A real SIGINT inside the package's training epoch (sent by the process to itself after the
    first SGD step), where fit turns it into a flag: the benchmark must stop there too."""
    argv = [sys.executable, "-c", _CTRL_C_AFTER_A_STEP, "bench", "--device", "cpu", "--hidden", "64",
            "--batch-size", "64", "--samples", "2000", "--rounds", "3", "--no-torch"]
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=120)
    assert (done.returncode, done.stderr.splitlines()[-1:]) == (EXIT_INTERRUPTED, ["mlp-xp bench: interrupted"])
    assert "Traceback" not in done.stderr


# -- divergence --------------------------------------------------------------------------------


def _history(*losses: float, lr: float = 0.5) -> History:
    return History(epochs=[{"epoch": i + 1, "train_loss": v, "lr": lr} for i, v in enumerate(losses)])


def _classifier(classes: int):
    return mlp_xp.make_mlp(4, [3], classes).init(mlp_xp.get_backend("numpy"), seed=0)


@pytest.mark.parametrize(
    ("losses", "classes", "diverged"),
    [
        ((100 * math.log(10) * 0.99,), 10, False),  # first epoch: the reference is ln(classes)
        ((100 * math.log(10) * 1.01,), 10, True),
        ((100 * math.log(3) * 1.01,), 3, True),
        ((50.0, 100 * 50.0 * 0.99), 10, False),  # later: 100 x max(first epoch, ln(classes))
        ((50.0, 100 * 50.0 * 1.01), 10, True),
        ((0.01, 100 * math.log(10) * 0.99), 10, False),  # a tiny first loss is no reference below ln(classes)
        ((0.9, 0.5, 100 * 0.9 * 1.01), 2, True),
    ],
)
def test_divergence_rule(losses, classes, diverged):
    """The documented rule at both sides of its threshold."""
    assert DIVERGENCE_FACTOR == 100
    history, model = _history(*losses), _classifier(classes)
    if diverged:
        with pytest.raises(TrainingDiverged, match=r"training diverged: the loss rose to .* learning rate 0\.5\."):
            _check_divergence(history, mlp_xp.SoftmaxCrossEntropy(), model)
    else:
        _check_divergence(history, mlp_xp.SoftmaxCrossEntropy(), model)


def test_divergence_rule_without_a_chance_level_checks_from_the_second_epoch():
    model = _classifier(2)
    _check_divergence(_history(1e9), mlp_xp.MSE(), model)  # a regression loss can start anywhere
    with pytest.raises(TrainingDiverged, match="100 times the first epoch's loss"):
        _check_divergence(_history(1.0, 101.0), mlp_xp.MSE(), model)
    with pytest.raises(TrainingDiverged, match=r"ln\(2\)"):
        _check_divergence(_history(70.0), mlp_xp.BinaryCrossEntropy(), model)


def test_fit_stops_a_diverging_run_and_can_be_told_not_to():
    backend = mlp_xp.get_backend("numpy")
    data = mlp_xp.synthetic(300, d=16, classes=3, seed=0)

    def run(**kwargs):
        model = mlp_xp.make_mlp(16, [8], 3).init(backend, seed=0)
        loader = mlp_xp.DeviceLoader(data.x_train, data.y_train, backend, batch_size=32, num_classes=3)
        return mlp_xp.fit(model, mlp_xp.SoftmaxCrossEntropy(), mlp_xp.SGD(model, 1e6), loader, epochs=3,
                          progress=False, log=None, **kwargs)

    with pytest.raises(TrainingDiverged, match=r"in epoch 1, .* at learning rate 1e\+06"):
        run()
    assert len(run(divergence_check=False).epochs) == 3
