"""Data-parallel training on MPI: ``mpiexec -n 2`` launched from pytest, compared with one process.

The launches run with one BLAS thread per process (2 processes on a 2-core machine) and a
timeout, so that a hang fails the test instead of blocking the suite. They need mpi4py and an
``mpiexec`` (``pip install "mlp-xp[mpi]"`` provides MPICH's); without them the tests skip, and
fail under ``CI=true``. Sharding, device mapping and argument checks run in-process without MPI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import in_ci, require_module, resolve_backend
from distributed_cases import CASES, COLLECTIVE_BACKENDS, train_case

import mlp_xp
from mlp_xp.cli import main
from mlp_xp.distributed import Communicator, DistributedUnavailableError, rank_device, synchronise_batchnorm, world
from mlp_xp.train import _check_batch_statistics

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
SMALL_RUN = ["--dataset", "synthetic", "--synthetic-size", "1003", "--hidden", "16", "--device", "cpu"]


def _mpiexec() -> str:
    """The mpiexec next to this Python (the mpich wheel's) or on PATH; skip (fail in CI) without MPI."""
    require_module("mpi4py")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("mpiexec", path=path)
    if found is None:
        if in_ci():
            pytest.fail('CI needs mpiexec: pip install -e ".[mpi]" (the mpich wheel provides it)')
        pytest.skip("mpiexec is not installed (pip install mlp-xp[mpi])")
    return found


@pytest.fixture(scope="module")
def mpiexec() -> str:
    return _mpiexec()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_"))}
    threads = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, **threads, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "MLP_XP_DEVICE": ""}


def _start(mpiexec: str, *args: str, cwd: Path) -> subprocess.Popen:
    """``mpiexec -n 2 python ARGS`` in a new session (its own process group, like a terminal job)."""
    command = [mpiexec, "-n", "2", sys.executable, *args]
    return subprocess.Popen(
        command, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    """Wait for the launch; on timeout end it (SIGTERM, then SIGKILL) and fail: a hang."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"mpiexec did not end within {timeout} s (a hang)\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def _run(mpiexec: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    return _finish(_start(mpiexec, *args, cwd=cwd))


def _cli(mpiexec: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    return _run(mpiexec, "-m", "mlp_xp.cli", *args, cwd=cwd)


# -- equivalence with one process (library API) ----------------------------------------------


@pytest.fixture(scope="module")
def two_process_results(mpiexec, tmp_path_factory) -> Path:
    """Every case of distributed_cases.py trained once on 2 processes."""
    out = tmp_path_factory.mktemp("two_processes")
    code, stdout, stderr = _run(mpiexec, str(ROOT / "tests" / "distributed_cases.py"), str(out), cwd=out)
    assert code == 0, stdout + stderr
    return out


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def _case_results(name: str, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    resolve_backend(CASES[name][0])  # skip where this machine lacks it (fail in CI unless it is CUDA)
    with np.load(folder / f"{name}.npz") as saved:
        two = dict(saved)
    np.testing.assert_array_equal(two["rank0"], two["rank1"])  # both ranks hold the same parameters
    return two, train_case(name, Communicator())


EQUIVALENT = [name for name, case in CASES.items() if not case[5] and (case[4] or not case[3])]


@pytest.mark.subprocess
@pytest.mark.parametrize("name", EQUIVALENT)
def test_two_processes_train_like_one_with_the_global_batch(name, two_process_results):
    """SGD-momentum and Adam (with weight decay), float64 and float32, synchronised BatchNorm,
    torch: 8 steps of global batch 64 whose last batch (37) splits unevenly (18 / 19)."""
    two, one = _case_results(name, two_process_results)
    tolerance = TOLERANCE[CASES[name][1]]
    assert _relative(one["params"], two["rank0"]) <= tolerance
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=tolerance)
    np.testing.assert_allclose(two["train_acc"], one["train_acc"], rtol=1e-12)


def test_a_run_stopped_and_resumed_inside_an_epoch_equals_the_run_never_stopped():
    """One process (the reference of the two-process case above): stopped before the third
    step of the second epoch, whose last batch is the short one, and resumed."""
    resumed, straight = train_case("adam_resumed_float64", Communicator()), train_case("adam_float64", Communicator())
    np.testing.assert_array_equal(resumed["params"], straight["params"])
    np.testing.assert_array_equal(resumed["train_loss"], straight["train_loss"][-1:])


@pytest.mark.subprocess
def test_a_callback_that_stops_on_one_rank_stops_every_rank(two_process_results):
    np.testing.assert_array_equal(np.load(two_process_results / "callback_stop.npy"), [1, 1])


@pytest.mark.subprocess
def test_batchnorm_uses_each_process_statistics_unless_synchronised(two_process_results):
    two, one = _case_results("rank_batchnorm_float64", two_process_results)
    assert _relative(one["params"], two["rank0"]) > 1e-6


@pytest.mark.subprocess
def test_each_process_draws_its_own_dropout_masks(two_process_results):
    two, one = _case_results("dropout_float64", two_process_results)
    assert len(two["seeds0"]) == 2 and len(set(two["seeds0"]) | set(two["seeds1"])) == 4
    assert set(two["seeds0"]).isdisjoint(one["dropout_seeds"])


@pytest.mark.subprocess
@pytest.mark.parametrize("spec", COLLECTIVE_BACKENDS)
def test_collectives_in_place_and_staged_through_the_host(spec, two_process_results):
    resolve_backend(spec)
    with np.load(two_process_results / "collectives.npz") as saved:
        found = {key.split("/")[1]: saved[key] for key in saved.files if key.startswith(spec + "/")}
    np.testing.assert_array_equal(found["allreduce"], [3.0, 30.0, 1.0])
    np.testing.assert_array_equal(found["broadcast"], [1.0, 2.0])
    np.testing.assert_array_equal(found["sum_with_count"], [3.0, 7.0])
    np.testing.assert_array_equal(found["sum_floats"], [1.0, 2.0])
    np.testing.assert_array_equal(found["any"], [True, False])


# -- the command line under mpiexec ------------------------------------------------------------


@pytest.mark.subprocess
def test_cli_train_on_two_processes_matches_one(mpiexec, tmp_path, capsys):
    """Same per-epoch metrics as one process (float64); rank 0 alone prints and writes files.
    The test set has 1001 samples: batches of 1000 would leave one for two processes."""
    args = [*SMALL_RUN, "--synthetic-size", "6006", "--dtype", "float64", "--batch-size", "100", "--epochs", "2"]
    args += ["--optimizer", "sgd"]
    args += ["--momentum", "0.9", "--lr", "0.01", "--batchnorm", "--sync-batchnorm"]
    code, out, err = _cli(mpiexec, "train", *args, "--metrics-json", "two.json", "--save", "two.npz", cwd=tmp_path)
    assert code == 0, out + err
    assert out.count("done: 2 epochs") == 1 and out.count("epoch 2/2") == 1
    assert main(["train", *args, "--quiet", "--metrics-json", str(tmp_path / "one.json")]) == 0
    capsys.readouterr()
    one, two = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two"))
    assert two["config"]["processes"] == 2
    for a, b in zip(one["epochs"], two["epochs"], strict=True):
        for key in ("train_loss", "test_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-9)
        assert b["train_acc"] == pytest.approx(a["train_acc"], abs=1e-12)
        assert b["test_acc"] == a["test_acc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json", "two.json", "two.npz"]


@pytest.mark.parametrize(
    "n, batch, size, sync, refused, rows",
    [(129, 64, 1, False, True, ()), (130, 64, 1, False, False, ()), (131, 64, 2, False, True, ()),
     (131, 64, 2, True, False, ()), (132, 64, 2, False, False, ()), (5, 4, 1, False, False, (2,)),
     (5, 4, 1, False, True, (1,)), (5, 4, 1, False, False, (1, 2))],
)  # fmt: skip
def test_batchnorm_with_a_one_sample_batch_is_refused_before_training(
    numpy_backend, n, batch, size, sync, refused, rows
):
    """A last batch of 1 (one process), or of 3 split 1 / 2 (two, unless synchronised), is
    refused when fit starts, not at the end of the first epoch. With (N, ..., F) inputs the batch
    statistics are over every row: one sample of (2, F) rows is enough, one of (1, F) is not."""
    model = mlp_xp.make_mlp(3, [4], 2, batchnorm=True).init(numpy_backend)
    comm = _Rank(0, size)
    if sync:
        synchronise_batchnorm(model, comm)
    x, y = np.ones((n, *rows, 3), dtype=np.float32), np.zeros((n, *rows), dtype=np.int64)
    loader = mlp_xp.DeviceLoader(x, y, numpy_backend, batch_size=batch, comm=comm)
    before = numpy_backend.to_numpy(model.flat.data).copy()
    if refused:
        with pytest.raises(ValueError, match=f"needs two samples of every batch .* holds {n % batch} of {n} samples"):
            mlp_xp.fit(model, mlp_xp.SoftmaxCrossEntropy(), mlp_xp.SGD(model, 0.1), loader, epochs=1, progress=False)
        np.testing.assert_array_equal(numpy_backend.to_numpy(model.flat.data), before)  # nothing trained
    elif size == 1:  # the whole epoch trains, its last batch included
        history = mlp_xp.fit(
            model, mlp_xp.SoftmaxCrossEntropy(), mlp_xp.SGD(model, 0.1), loader, epochs=1, progress=False, log=None
        )
        assert history.last["epoch"] == 1
    else:  # fit would go on (rank 0 of a stand-in world: its synchronised statistics would not be)
        _check_batch_statistics(model, loader)


@pytest.mark.parametrize(
    "n, size, expected",
    [(10000, 2, 1000), (1001, 2, 999), (1001, 1, 1000), (3001, 3, 999), (3003, 3, 1000), (2, 2, 2), (1, 2, 1)],
)
def test_held_out_batches_give_every_process_a_part_or_go_unshared(n, size, expected):
    from mlp_xp.cli import _shared_batch_size

    comm = _Rank(0, size)
    batch_size, shared = _shared_batch_size(n, 1000, comm)
    assert batch_size == expected and (shared is comm) == (n >= size)
    assert n % batch_size == 0 or n % batch_size >= size or shared is None


@pytest.mark.subprocess
def test_an_exception_on_one_rank_ends_every_rank_with_its_message(mpiexec, tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import sys\n"
        "import mlp_xp.cli as cli\n"
        "from mlp_xp.distributed import world\n"
        "if world().rank == 1:\n"
        "    def broken(*args, **kwargs):\n"
        "        raise RuntimeError('planted failure on rank 1')\n"
        "    cli.fit = broken\n"
        f"sys.exit(cli.main(['train', *{SMALL_RUN!r}, '--epochs', '50']))\n"
    )
    proc = _start(mpiexec, str(script), cwd=tmp_path)
    code, out, err = _finish(proc, timeout=60)  # rank 0 waits in fit: only an abort ends it
    assert code != 0
    assert "rank 1 of 2 failed" in err and "RuntimeError: planted failure on rank 1" in err
    assert "done:" not in out


@pytest.mark.subprocess
def test_cuda_without_a_gpu_is_the_usual_error_on_every_rank(mpiexec, tmp_path):
    try:
        mlp_xp.get_backend("cuda")
    except mlp_xp.BackendUnavailableError:
        pass
    else:
        pytest.skip("a CUDA device is usable here")
    code, out, err = _cli(mpiexec, "train", *SMALL_RUN[:-2], "--device", "cuda", cwd=tmp_path)
    assert code == 2
    for rank in (0, 1):
        assert f"mlp-xp train: error (rank {rank} of 2): CUDA was requested" in err


@pytest.mark.subprocess
def test_ctrl_c_saves_once_and_resume_continues_bit_identically(mpiexec, tmp_path):
    """SIGINT to the mpiexec process group (a terminal's Ctrl-C): both ranks stop at the same
    step (inside an epoch), rank 0 alone saves, with both ranks' progress in that epoch;
    resuming that checkpoint under mpiexec for two epochs equals resuming it for one epoch and
    then once more, and equals the run never stopped, bit for bit (each rank's dropout masks
    too), with the same per-epoch records."""
    run = [*SMALL_RUN, "--synthetic-size", "1000", "--batch-size", "10", "--optimizer", "adam", "--batchnorm"]
    run += ["--dropout", "0.2"]
    proc = _start(mpiexec, "-m", "mlp_xp.cli", "train", *run, "--epochs", "500", "--save", "c.npz", cwd=tmp_path)
    lines = []
    for line in proc.stdout:  # wait until epoch 1 has been logged (and saved)
        lines.append(line)
        if line.startswith("epoch 1/500"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = _finish(proc)
    out = "".join(lines) + out
    assert code == 130, out + err
    assert err.count("continue with --resume c.npz") == 1 and out.count("interrupted in epoch") == 1
    meta = mlp_xp.load_checkpoint(tmp_path / "c.npz").meta
    assert meta["partial"] and meta["epoch"] >= 1
    epoch = meta["epoch"]
    assert [(p["epoch"], p["samples"]) for p in meta["progress"]] == [(epoch, 5 * p["steps"]) for p in meta["progress"]]

    def resume(source: str, epochs: int, target: str) -> None:
        code, out, err = _cli(
            mpiexec, "train", *run, "--epochs", str(epochs), "--resume", source, "--save", target, cwd=tmp_path
        )
        assert code == 0, out + err
        assert out.count(f"resumed {source}") == 1

    resume("c.npz", epoch + 2, "straight.npz")
    resume("c.npz", epoch + 1, "pieces.npz")
    resume("pieces.npz", epoch + 2, "pieces.npz")
    code, out, err = _cli(mpiexec, "train", *run, "--epochs", str(epoch + 2), "--save", "never.npz", cwd=tmp_path)
    assert code == 0, out + err
    a, b, c = (mlp_xp.load_checkpoint(tmp_path / name) for name in ("straight.npz", "pieces.npz", "never.npz"))
    assert a.meta["epoch"] == b.meta["epoch"] == c.meta["epoch"] == epoch + 2
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
    assert [[r[k] for k in keys] for r in a.meta["history"]] == [[r[k] for k in keys] for r in c.meta["history"]]
    for other in (b, c):
        assert a.model.keys() == other.model.keys() and a.optimizer.keys() == other.optimizer.keys()
        for key in a.model:
            np.testing.assert_array_equal(a.model[key], other.model[key], key)
        for key in a.optimizer:
            np.testing.assert_array_equal(a.optimizer[key], other.optimizer[key], key)


@pytest.mark.subprocess
def test_info_shows_the_mpi_library_and_world_size(mpiexec, tmp_path, capsys):
    code, out, err = _cli(mpiexec, "info", cwd=tmp_path)
    assert code == 0, out + err
    assert out.count("MPI: ") == 1 and "world size 2" in out
    assert main(["info"]) == 0
    assert "world size 1 (not started by an MPI launcher)" in capsys.readouterr().out


@pytest.mark.subprocess
def test_eval_and_predict_under_mpiexec_run_once(mpiexec, tmp_path, capsys):
    assert main(["train", *SMALL_RUN, "--epochs", "1", "--quiet", "--save", str(tmp_path / "k.st")]) == 0
    capsys.readouterr()
    code, out, err = _cli(mpiexec, "eval", "--load", "k.st", cwd=tmp_path)
    assert code == 0 and out.count("synthetic test: loss") == 1, out + err
    code, out, err = _cli(mpiexec, "predict", "--load", "k.st", "--count", "2", cwd=tmp_path)
    assert code == 0 and out.count("/2 right") == 1, out + err


# -- in-process: sharding, devices, refusals (no MPI needed) -----------------------------------


class _Rank(Communicator):
    """A stand-in for rank ``rank`` of ``size`` (no collectives are used by the loader)."""

    def __init__(self, rank: int, size: int) -> None:
        super().__init__()
        self.rank, self.size = rank, size


@pytest.mark.parametrize(("n", "batch", "size"), [(103, 10, 2), (103, 10, 3), (40, 8, 4)])
def test_shards_are_contiguous_parts_of_every_global_batch(numpy_backend, n, batch, size):
    x, ids = np.arange(n, dtype=np.float32)[:, None], np.arange(n)
    single = mlp_xp.DeviceLoader(x, ids, numpy_backend, batch_size=batch, seed=4)
    shards = [
        mlp_xp.DeviceLoader(x, ids, numpy_backend, batch_size=batch, seed=4, comm=_Rank(r, size)) for r in range(size)
    ]
    for _ in range(2):  # two epochs: two permutations
        whole = [y for _, y in single]
        parts = [[y for _, y in loader] for loader in shards]
        for step, batch_ids in enumerate(whole):
            pieces = [part[step] for part in parts]
            np.testing.assert_array_equal(np.concatenate(pieces), batch_ids)
            assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
            assert single.global_batch_size(step) == len(batch_ids)
    assert sum(loader.local_samples for loader in shards) == n
    assert all(len(loader) == len(single) and loader.num_samples == n for loader in shards)


def test_a_batch_smaller_than_the_number_of_processes_is_refused(numpy_backend):
    x, y = np.zeros((21, 2), dtype=np.float32), np.zeros(21, dtype=np.int64)
    with pytest.raises(ValueError, match="a batch of 1 samples .* cannot be split across 2 processes"):
        mlp_xp.DeviceLoader(x, y, numpy_backend, batch_size=10, comm=_Rank(0, 2))
    assert len(mlp_xp.DeviceLoader(x, y, numpy_backend, batch_size=10, drop_last=True, comm=_Rank(1, 2))) == 2


class _PartnerInterrupted(_Rank):
    """Rank 0 of 2 with trivial collectives, whose partner asks to stop at its ``at``-th step."""

    def __init__(self, at: int) -> None:
        super().__init__(0, 2)
        self.at, self.asked = at, 0

    def any(self, flag: bool) -> bool:
        self.asked += 1
        return flag or self.asked >= self.at


def test_a_ctrl_c_on_another_process_stops_this_one_at_the_same_step(numpy_backend):
    model = mlp_xp.make_mlp(2, [4], 2).init(numpy_backend)
    x, y = np.zeros((80, 2), dtype=np.float32), np.zeros(80, dtype=np.int64)
    loader = mlp_xp.DeviceLoader(x, y, numpy_backend, batch_size=4, comm=_PartnerInterrupted(at=3))
    lines = []
    history = mlp_xp.fit(
        model, mlp_xp.SoftmaxCrossEntropy(), mlp_xp.SGD(model, 0.1), loader, epochs=2, progress=False, log=lines.append
    )
    assert history.interrupted and not history.epochs
    assert lines == ["interrupted in epoch 1/2 after 3 of 20 steps"]


def test_compiled_training_is_refused_across_processes(numpy_backend):
    model = mlp_xp.make_mlp(2, [4], 2).init(numpy_backend)
    x, y = np.zeros((8, 2), dtype=np.float32), np.zeros(8, dtype=np.int64)
    loader = mlp_xp.DeviceLoader(x, y, numpy_backend, batch_size=4, comm=_Rank(0, 2))
    with pytest.raises(ValueError, match="compiled training does not run data-parallel"):
        mlp_xp.fit(model, mlp_xp.SoftmaxCrossEntropy(), mlp_xp.SGD(model, 0.1), loader, epochs=1, compile=True)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cuda", "cuda:1"),
        ("cupy", "cupy:1"),
        ("torch:cuda", "torch:cuda:1"),
        ("jax:cuda", "jax:cuda:1"),
        ("cuda:0", "cuda:0"),
        ("cpu", "cpu"),
        ("torch", "torch"),
    ],
)
def test_gpu_ranks_take_the_gpu_of_their_local_rank(spec, expected):
    assert rank_device(spec, 1) == expected


def test_world_is_one_process_without_a_launcher_and_asks_for_mpi4py_under_one(monkeypatch):
    for name in ("PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert type(world()) is Communicator
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    with pytest.raises(
        DistributedUnavailableError, match=r"PMI_SIZE=2\) but mpi4py is not installed: pip install \"mlp-xp\[mpi\]"
    ):
        world()


def _mpi4py_without_a_library() -> object:
    """An mpi4py whose ``MPI`` module raises as mpi4py 4 does where no MPI library loads."""
    import types

    def no_library(name):
        raise RuntimeError("cannot load MPI library")

    fake = types.ModuleType("mpi4py")
    fake.__version__, fake.rc, fake.__getattr__ = "4.1.1", types.SimpleNamespace(initialize=True), no_library
    return fake


def test_an_mpi4py_that_loads_no_mpi_library_is_a_clear_error_and_info_says_so(monkeypatch):
    from mlp_xp.distributed import mpi_description

    monkeypatch.setitem(sys.modules, "mpi4py", _mpi4py_without_a_library())
    description = mpi_description(Communicator())
    assert description.startswith("MPI: none loads (mpi4py 4.1.1: cannot load MPI library)")
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(DistributedUnavailableError, match="mpi4py cannot load an MPI library .* pip install mpich"):
        world()
