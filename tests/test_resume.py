"""A run stopped by Ctrl-C inside an epoch and resumed from its checkpoint equals the run that
was never stopped: same weights, optimizer state and BatchNorm buffers bit for bit, and the
same per-epoch records, with dropout, on every backend, eager and compiled."""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest
from conftest import require_module

import mlp_xp
from mlp_xp import DeviceLoader, EpochProgress, SoftmaxCrossEntropy, fit, resume_point
from mlp_xp.cli import main
from mlp_xp.distributed import Communicator
from mlp_xp.train import _gathered

SAMPLES, FEATURES, CLASSES, BATCH = 300, 12, 4, 32  # 10 batches an epoch, the last of 12
RECORD_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")


def _data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, SAMPLES)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype(np.float32) + y[:, None].astype(np.float32)
    return x, y


class InterruptingLoader(DeviceLoader):
    """Sends one SIGINT (a Ctrl-C) as it gathers its ``at``-th batch outside a trace (counted
    from 1 over all epochs); ``fit`` then stops after that batch's step."""

    at: int | None = None
    gathered = 0

    def gather(self, index):
        if type(index).__name__ not in ("DynamicJaxprTracer", "JVPTracer"):  # inside jax.jit: not a step
            self.gathered += 1
            if self.gathered == self.at:
                os.kill(os.getpid(), signal.SIGINT)
        return super().gather(index)


def _run(backend, *, epochs, compile=False, interrupt_at=None, start=None, dtype="float32"):
    """``(history, model, optimizer)`` of a small BatchNorm + dropout MLP trained with Adam;
    ``start`` is a checkpoint to resume from."""
    x, y = _data()
    model = mlp_xp.make_mlp(FEATURES, [16], CLASSES, batchnorm=True, dropout=0.3).init(backend, seed=0, dtype=dtype)
    optimizer = mlp_xp.Adam(model, 1e-2)
    loader = InterruptingLoader(x, y, backend, batch_size=BATCH, seed=3, num_classes=CLASSES, dtype=dtype)
    loader.at = interrupt_at
    test = DeviceLoader(x[:100], y[:100], backend, batch_size=50, shuffle=False, dtype=dtype)
    start_epoch, resume = 0, None
    if start is not None:
        checkpoint = mlp_xp.load_checkpoint(start)
        mlp_xp.restore(checkpoint, model, optimizer)
        start_epoch = checkpoint.meta["epoch"]
        resume = resume_point([EpochProgress(**p) for p in checkpoint.meta["progress"]])
    history = fit(
        model,
        SoftmaxCrossEntropy(check_labels=False),
        optimizer,
        loader,
        epochs=epochs,
        val_loader=test,
        start_epoch=start_epoch,
        resume=resume,
        progress=False,
        log=None,
        compile=compile,
    )
    return history, model, optimizer


def _assert_same_run(backend, straight, pieces):
    (history, model, optimizer), records = straight, [r for h, _, _ in pieces for r in h.epochs]
    assert [[r[k] for k in RECORD_KEYS] for r in records] == [[r[k] for k in RECORD_KEYS] for r in history.epochs]
    resumed_model, resumed_optimizer = pieces[-1][1], pieces[-1][2]
    for key, value in model.state().items():
        np.testing.assert_array_equal(backend.to_numpy(resumed_model.state()[key]), backend.to_numpy(value), key)
    for key, value in optimizer.state_arrays().items():
        np.testing.assert_array_equal(backend.to_numpy(resumed_optimizer.state_arrays()[key]), backend.to_numpy(value))
    assert resumed_optimizer.steps == optimizer.steps == 3 * -(-SAMPLES // BATCH)


def _stopped_and_resumed(backend, tmp_path, interrupt_at, compile=False, dtype="float32"):
    """The run stopped at batch ``interrupt_at``, saved as the CLI saves it, and resumed."""
    first = _run(backend, epochs=3, interrupt_at=interrupt_at, compile=compile, dtype=dtype)
    history, model, optimizer = first
    assert history.interrupted and len(history.progress) == 1
    progress = history.progress[0]
    path = mlp_xp.save_checkpoint(
        tmp_path / "stopped.safetensors",
        model,
        optimizer,
        epoch=len(history.epochs),
        partial=True,
        progress=[dataclasses.asdict(dataclasses.replace(progress, seconds=1000.0))],  # a long first part
    )
    second = _run(backend, epochs=3, start=path, compile=compile, dtype=dtype)
    assert second[0].epochs[0]["seconds"] >= 1000.0  # the resumed epoch's time counts both parts
    return first, second, progress


def test_a_run_resumed_inside_an_epoch_equals_the_uninterrupted_run(backend, tmp_path):
    straight = _run(backend, epochs=3)
    first, second, progress = _stopped_and_resumed(backend, tmp_path, interrupt_at=15)
    assert (progress.epoch, progress.steps, progress.samples) == (1, 5, 5 * BATCH)
    assert len(first[0].epochs) == 1 and not second[0].interrupted
    _assert_same_run(backend, straight, [first, second])


def test_a_float64_run_resumed_inside_an_epoch_equals_the_uninterrupted_run(backend64, tmp_path):
    """Dropout's masks in float64 (a float64 draw takes another share of some generators'
    streams than a float32 one: the skipped draws are in the model's dtype)."""
    straight = _run(backend64, epochs=3, dtype="float64")
    first, second, _ = _stopped_and_resumed(backend64, tmp_path, interrupt_at=15, dtype="float64")
    assert straight[1].dtype == "float64"
    _assert_same_run(backend64, straight, [first, second])


@pytest.mark.parametrize("spec", ["jax", "torch"])
def test_a_compiled_run_resumed_inside_an_epoch_equals_the_uninterrupted_run(spec, tmp_path):
    """torch compiles each step, so Ctrl-C stops it after any step (here the fifth of epoch 2);
    JAX runs the epoch's full batches as one scan, so Ctrl-C stops it after that (before the
    shorter last step, batch 19 being the second epoch's last gather outside the scan)."""
    try:
        backend = mlp_xp.get_backend(spec)
    except mlp_xp.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    at, steps = (15, 5) if spec == "torch" else (2, 10)
    straight = _run(backend, epochs=3, compile=True)
    first, second, progress = _stopped_and_resumed(backend, tmp_path, interrupt_at=at, compile=True)
    assert (progress.epoch, progress.steps) == (1, steps)
    _assert_same_run(backend, straight, [first, second])


def test_an_epoch_stopped_after_its_last_step_completes_its_record_on_resume(numpy_backend, tmp_path):
    straight = _run(numpy_backend, epochs=3)
    first, second, progress = _stopped_and_resumed(numpy_backend, tmp_path, interrupt_at=20)
    assert (progress.epoch, progress.steps, progress.samples) == (1, 10, SAMPLES)
    _assert_same_run(numpy_backend, straight, [first, second])


def test_set_epoch_moves_each_dropout_past_masks_of_its_own_input_shape(backend64):
    """``Sequential.set_epoch(e, skip, batch_shape)``: each Dropout skips ``skip`` masks of the
    shape its input has (each layer's output width, leading batch dimensions kept) in the
    model's dtype; without ``skip`` it only restarts."""
    model = mlp_xp.Sequential(mlp_xp.layers.ReLU(), mlp_xp.layers.Dropout(0.5), mlp_xp.layers.Linear(3, 5),
                              mlp_xp.layers.Dropout(0.5)).init(backend64, seed=1, dtype="float64")
    first, second = model.layers[1].rng, model.layers[3].rng
    expected = []
    for rng, shape in ((first, (2, 4, 3)), (second, (2, 4, 5))):
        rng.restart(7)
        rng.skip(shape, "float64", 2)
        expected.append(backend64.to_numpy(rng.bernoulli_mask(shape, 0.5, "float64")))
    model.set_epoch(7, skip=2, batch_shape=(2, 4, 3))
    got = [backend64.to_numpy(first.bernoulli_mask((2, 4, 3), 0.5, "float64")),
           backend64.to_numpy(second.bernoulli_mask((2, 4, 5), 0.5, "float64"))]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    model.set_epoch(7, batch_shape=(2, 4, 3))
    mask = backend64.to_numpy(first.bernoulli_mask((2, 4, 3), 0.5, "float64"))
    first.restart(7)
    np.testing.assert_array_equal(mask, backend64.to_numpy(first.bernoulli_mask((2, 4, 3), 0.5, "float64")))


def test_resume_must_belong_to_the_start_epoch(numpy_backend):
    x, y = _data()
    model = mlp_xp.make_mlp(FEATURES, [16], CLASSES).init(numpy_backend)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=BATCH)
    with pytest.raises(ValueError, match="progress of epoch 2, but start_epoch is 1"):
        fit(model, SoftmaxCrossEntropy(), mlp_xp.SGD(model, 0.1), loader, epochs=3, start_epoch=1,
            resume=EpochProgress(2, 3), log=None)
    with pytest.raises(ValueError, match="cannot skip 11 batches of an epoch of 10"):
        loader.set_epoch(0, skip=11)


def test_resume_point_splits_and_combines_the_sums_of_processes():
    class Rank:
        def __init__(self, rank, size):
            self.rank, self.size, self.is_root = rank, size, rank == 0

    saved = [EpochProgress(1, 4, 60, 30.5, 50.0, 2.0), EpochProgress(1, 4, 68, 33.25, 51.0, 2.5)]
    assert resume_point(saved, Rank(1, 2)) == saved[1] and resume_point(saved, Rank(1, 2)) is not saved[1]
    assert resume_point(saved, Rank(0, 1)) == EpochProgress(1, 4, 128, 63.75, 101.0, 2.0)
    assert resume_point(saved, Rank(2, 3)) == EpochProgress(1, 4, 0, 0.0, 0.0, 0.0)
    none_right = [dataclasses.replace(p, correct=0.0) for p in saved]
    assert resume_point(none_right, Rank(0, 1)).correct == 0.0
    no_accuracy = [dataclasses.replace(p, correct=None) for p in saved]
    assert resume_point(no_accuracy, Rank(0, 1)).correct is None
    assert resume_point(no_accuracy, Rank(1, 3)).correct is None


def test_progress_is_gathered_from_every_process_exactly():
    """Each process fills its own slots of one sum: every value arrives unchanged, in rank order."""

    class SecondOfTwo(Communicator):
        rank, size = 1, 2

        def sum_floats(self, values):
            first = [60.0, 30.5, 50.0, 2.0, 0.0, 0.0, 0.0, 0.0]  # what rank 0 sent
            return [a + b for a, b in zip(values, first, strict=True)]

    class FirstOfTwo(Communicator):
        rank, size = 0, 2

        def sum_floats(self, values):
            second = [0.0, 0.0, 0.0, 0.0, 68.0, 33.25, 0.0, 2.5]  # what rank 1 sent (no right answer)
            return [a + b for a, b in zip(values, second, strict=True)]

    done = EpochProgress(1, 4, 68, 33.25, 51.0, 2.5)
    assert _gathered(SecondOfTwo(), done) == [EpochProgress(1, 4, 60, 30.5, 50.0, 2.0), done]
    assert [p.correct for p in _gathered(SecondOfTwo(), dataclasses.replace(done, correct=None))] == [None, None]
    first = EpochProgress(1, 4, 60, 30.5, 0.0, 2.0)
    assert _gathered(FirstOfTwo(), first) == [first, EpochProgress(1, 4, 68, 33.25, 0.0, 2.5)]
    assert _gathered(Communicator(), done) == [done]


# -- the command line ---------------------------------------------------------------------------

RUN = ["train", "--dataset", "synthetic", "--synthetic-size", "600", "--hidden", "16", "--batch-size", "32",
       "--batchnorm", "--dropout", "0.3", "--optimizer", "adam", "--device", "cpu", "--quiet"]


def test_cli_ctrl_c_inside_an_epoch_then_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch, capsys):
    assert main([*RUN, "--epochs", "3", "--save", str(tmp_path / "straight.safetensors")]) == 0
    monkeypatch.setattr(InterruptingLoader, "at", 25)  # step 6 of epoch 2 (19 steps an epoch)
    monkeypatch.setattr("mlp_xp.cli.DeviceLoader", InterruptingLoader)
    stopped = tmp_path / "stopped.safetensors"
    capsys.readouterr()
    assert main([*RUN, "--epochs", "3", "--save", str(stopped)]) == 130
    assert "done:" not in capsys.readouterr().out  # no result line for a run that stopped
    meta = mlp_xp.load_checkpoint(stopped).meta
    assert meta["partial"] and meta["epoch"] == 1
    assert [(p["epoch"], p["steps"], p["samples"]) for p in meta["progress"]] == [(1, 6, 6 * 32)]
    monkeypatch.setattr(InterruptingLoader, "at", None)
    assert main([*RUN, "--epochs", "3", "--batch-size", "64", "--resume", str(stopped)]) == 2
    assert "batches came from --batch-size 32, so it continues with --batch-size 32" in capsys.readouterr().err
    assert main([*RUN, "--epochs", "3", "--seed", "4", "--resume", str(stopped)]) == 2
    assert "batches came from --seed 0, so it continues with --seed 0" in capsys.readouterr().err
    assert main([*RUN, "--epochs", "3", "--resume", str(stopped), "--save", str(stopped)]) == 0
    a, b = mlp_xp.load_checkpoint(tmp_path / "straight.safetensors"), mlp_xp.load_checkpoint(stopped)
    assert b.meta["progress"] is None and not b.meta["partial"]
    assert [[r[k] for k in RECORD_KEYS] for r in b.meta["history"]] == [
        [r[k] for k in RECORD_KEYS] for r in a.meta["history"]
    ]
    assert a.model.keys() == b.model.keys() and a.optimizer.keys() == b.optimizer.keys()
    for key in a.model:
        np.testing.assert_array_equal(a.model[key], b.model[key])
    for key in a.optimizer:
        np.testing.assert_array_equal(a.optimizer[key], b.optimizer[key])


def test_cli_resume_takes_the_run_arguments_it_is_not_given(tmp_path, capsys):
    """``--resume PATH`` alone (what the Ctrl-C message suggests) continues that run: its model,
    data, optimizer, learning rate and seed; an argument given anew is used and logged."""
    run = [*RUN, "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.5", "--seed", "3"]
    assert main([*run, "--epochs", "2", "--save", str(tmp_path / "straight.safetensors")]) == 0
    assert main([*run, "--epochs", "1", "--save", str(tmp_path / "first.safetensors")]) == 0
    resumed = tmp_path / "resumed.safetensors"
    args = ["--epochs", "2", "--resume", str(tmp_path / "first.safetensors"), "--save", str(resumed)]
    assert main(["train", "--device", "cpu", "--quiet", *args]) == 0
    a, b = mlp_xp.load_checkpoint(tmp_path / "straight.safetensors"), mlp_xp.load_checkpoint(resumed)
    assert [r["lr"] for r in b.meta["history"]] == [0.05, 0.05]
    for key in a.model:
        np.testing.assert_array_equal(a.model[key], b.model[key])
    capsys.readouterr()
    assert main(["train", "--device", "cpu", "--lr", "0.01", "--no-divergence-check", *args]) == 0
    assert "changed on resuming: --lr 0.01 (was 0.05)" in capsys.readouterr().out


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_cli_resume_continues_on_the_checkpoints_device(compiled, tmp_path, capsys):
    """A torch run (with dropout, whose masks differ between backends and between eager and
    compiled) resumed with neither --device nor --compile continues on torch, as it ran;
    --no-compile resumes a compiled run eagerly."""
    require_module("torch")
    run = [*RUN[:-3], "--device", "torch", "--quiet", *(["--compile"] if compiled else [])]
    assert main([*run, "--epochs", "2", "--save", str(tmp_path / "straight.st")]) == 0
    assert main([*run, "--epochs", "1", "--save", str(tmp_path / "first.st")]) == 0
    resume = ["train", "--resume", str(tmp_path / "first.st"), "--epochs", "2"]
    assert main([*resume, "--save", str(tmp_path / "b.st")]) == 0
    a, b = (mlp_xp.load_checkpoint(tmp_path / name) for name in ("straight.st", "b.st"))
    assert b.meta["config"]["backend"] == "torch" and b.meta["config"]["compile"] is compiled
    for key in a.model:
        np.testing.assert_array_equal(a.model[key], b.model[key])
    if compiled:
        assert main([*resume, "--no-compile", "--save", str(tmp_path / "eager.st")]) == 0
        assert "--compile False (was True)" in capsys.readouterr().out
        assert mlp_xp.load_checkpoint(tmp_path / "eager.st").meta["config"]["compile"] is False


def test_cli_resume_accepts_sgd_options_given_anew(tmp_path, capsys):
    """--momentum and --nesterov given on resuming an SGD run are checked against the
    checkpoint's optimizer, not against the command line's default (adam is not the default)."""
    run = [*RUN, "--optimizer", "sgd", "--epochs", "1", "--save", str(tmp_path / "plain.st")]
    assert main(run) == 0
    resume = ["train", "--resume", str(tmp_path / "plain.st"), "--quiet", "--epochs", "2"]
    capsys.readouterr()
    assert main([*resume, "--momentum", "0.5", "--save", str(tmp_path / "m.st")]) == 0
    assert mlp_xp.load_checkpoint(tmp_path / "m.st").meta["config"]["momentum"] == 0.5
    assert main([*resume, "--momentum", "0.5", "--nesterov", "--save", str(tmp_path / "b.st")]) == 0
    assert mlp_xp.load_checkpoint(tmp_path / "b.st").meta["config"]["nesterov"] is True
    assert main([*resume, "--nesterov", "--save", str(tmp_path / "n.st")]) == 2  # the checkpoint's momentum is 0
    err = capsys.readouterr().err
    assert err == "mlp-xp train: error: --nesterov needs --optimizer sgd with --momentum above 0\n"


def test_cli_resume_saves_back_to_the_checkpoint_unless_told_otherwise(tmp_path, capsys):
    """``train --resume PATH --epochs N`` (what README says is enough) keeps what it trains: it
    saves to PATH each epoch, as the run it continues did."""
    run = [*RUN, "--save"]
    assert main([*run, str(tmp_path / "straight.st"), "--epochs", "2"]) == 0
    assert main([*run, str(tmp_path / "run.st"), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run.st"), "--epochs", "2"]) == 0
    assert f"resumed {tmp_path / 'run.st'} after epoch 1; saving to {tmp_path / 'run.st'}" in capsys.readouterr().out
    a, b = mlp_xp.load_checkpoint(tmp_path / "straight.st"), mlp_xp.load_checkpoint(tmp_path / "run.st")
    assert b.meta["epoch"] == 2
    for key in a.model:
        np.testing.assert_array_equal(a.model[key], b.model[key])
