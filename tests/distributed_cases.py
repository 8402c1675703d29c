"""Training cases that tests/test_distributed.py runs on 2 MPI processes and on one, and compares.

``python tests/distributed_cases.py OUT_DIR`` (under ``mpiexec -n 2``) trains every case with the
MPI world communicator; rank 0 writes ``OUT_DIR/<case>.npz`` holding each rank's final flat
parameters (``rank0``, ``rank1``), per-epoch train losses and accuracies, and the dropout seeds
of both ranks. ``train_case(name, Communicator())`` is the one-process reference. It also runs
the communicator's collectives on every available backend (in place on host memory, staged
through the host for JAX) and writes what they returned to ``OUT_DIR/collectives.npz``, and
the epochs each rank trained when a callback on one rank stops the run to ``callback_stop.npy``.

Ranks other than 0 initialise from another seed (except with dropout, whose seeds come from
the initialisation) and other optimizer step counts: ``fit`` must start every rank from rank 0's
weights and step count. A case with a step number is stopped there (as by Ctrl-C) and resumed
from its progress.

The data set has 229 samples and the global batch is 64: 3 full batches and a last one of 37,
split 18 / 19 across two processes (an uneven last batch in every epoch).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import mlp_xp
from mlp_xp.distributed import Communicator, per_rank_dropout, synchronise_batchnorm

SAMPLES, FEATURES, CLASSES, BATCH, EPOCHS = 229, 12, 3, 64, 2  # 8 steps

CASES = {
    # name: (backend, dtype, optimizer, batchnorm, sync_batchnorm, dropout, Ctrl-C before step)
    "sgd_momentum_float64": ("numpy", "float64", "sgd", False, False, 0.0, None),
    "sgd_momentum_float32": ("numpy", "float32", "sgd", False, False, 0.0, None),
    "adam_float64": ("numpy", "float64", "adam", False, False, 0.0, None),
    "adam_float32": ("numpy", "float32", "adam", False, False, 0.0, None),
    "adam_resumed_float64": ("numpy", "float64", "adam", False, False, 0.0, 6),  # stopped before epoch 2's 3rd step
    "sync_batchnorm_float64": ("numpy", "float64", "sgd", True, True, 0.0, None),
    "rank_batchnorm_float64": ("numpy", "float64", "sgd", True, False, 0.0, None),
    "torch_sgd_float64": ("torch", "float64", "sgd", False, False, 0.0, None),
    "cupy_sgd_float64": ("cuda", "float64", "sgd", True, True, 0.0, None),  # GPU machines: staged through the host
    "dropout_float64": ("numpy", "float64", "sgd", False, False, 0.3, None),
}


def data() -> tuple[np.ndarray, np.ndarray]:
    """Learnable features and labels (a random linear rule), float64 on the host."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((SAMPLES, FEATURES))
    y = np.argmax(x @ rng.standard_normal((FEATURES, CLASSES)), axis=1)
    return x, y


COLLECTIVE_BACKENDS = ("numpy", "torch", "array-api-strict", "jax", "cuda", "torch:cuda")


def available(spec: str) -> bool:
    try:
        mlp_xp.get_backend(spec)
    except (mlp_xp.BackendUnavailableError, ImportError):
        return False
    return True


def collectives(comm: Communicator, spec: str) -> dict[str, np.ndarray]:
    """What ``comm``'s collectives return on backend ``spec`` for rank-dependent inputs:
    ``allreduce`` of ``[r+1, 10(r+1), 0.5]``, ``broadcast`` of ``[r+1, r+2]``, ``sum_with_count``
    of ``[r+1]`` with count ``3+r``, ``sum_floats`` of ``[r, 1]``, ``any`` of ``r == 1``."""
    backend = mlp_xp.get_backend(spec)
    r = comm.rank

    def on_device(values):
        return backend.asarray(np.asarray(values, dtype=np.float64), "float64")

    summed, count = comm.sum_with_count(on_device([r + 1.0]), 3 + r, backend)
    return {
        "allreduce": backend.to_numpy(comm.allreduce(on_device([r + 1.0, 10.0 * (r + 1), 0.5]), backend)),
        "broadcast": backend.to_numpy(comm.broadcast(on_device([r + 1.0, r + 2.0]), backend)),
        "sum_with_count": np.append(backend.to_numpy(summed), count),
        "sum_floats": np.asarray(comm.sum_floats([float(r), 1.0])),
        "any": np.asarray([comm.any(r == 1), comm.any(False)]),
    }


def train_case(name: str, comm: Communicator) -> dict[str, np.ndarray]:
    """Train case ``name`` with ``comm``; the final flat parameters and per-epoch metrics."""
    spec, dtype, which, batchnorm, sync, dropout, interrupt = CASES[name]
    backend = mlp_xp.get_backend(spec)
    model = mlp_xp.make_mlp(FEATURES, [16, 8], CLASSES, batchnorm=batchnorm, dropout=dropout, init="xavier")
    model.init(backend, seed=3 + (0 if dropout else 100 * comm.rank), dtype=dtype)
    per_rank_dropout(model, comm)
    if sync:
        synchronise_batchnorm(model, comm)
    if which == "sgd":
        optimizer = mlp_xp.SGD(model, 0.2, momentum=0.9, weight_decay=1e-3)
    else:
        optimizer = mlp_xp.Adam(model, 0.01, weight_decay=1e-3)
    optimizer.steps = 7 * comm.rank  # Adam's bias correction counts them: fit must take rank 0's
    x, y = data()
    loader = mlp_xp.DeviceLoader(x, y, backend, batch_size=BATCH, seed=5, dtype=dtype, comm=comm)
    loss = mlp_xp.SoftmaxCrossEntropy(check_labels=False)
    if interrupt is None:
        history = mlp_xp.fit(model, loss, optimizer, loader, epochs=EPOCHS, progress=False, log=None)
    else:
        history = _interrupted_and_resumed(model, loss, optimizer, loader, interrupt)
    seeds = [layer.rng.seed for layer in model.layers if getattr(layer, "rng", None) is not None]
    return {
        "params": backend.to_numpy(model.flat.data).astype(np.float64),
        "train_loss": np.asarray(history["train_loss"]),
        "train_acc": np.asarray(history["train_acc"]),
        "dropout_seeds": np.asarray(seeds, dtype=np.int64),
    }


def _interrupted_and_resumed(model, loss, optimizer, loader, before_step: int) -> mlp_xp.History:
    """``fit`` stopped as by a Ctrl-C on every process before global step ``before_step``
    (1-based, counted over the epochs), then resumed from its ``History.progress``; the
    resumed call's history (the epochs it completed)."""
    comm, asked = loader.comm, []

    def any_at_the_step(flag: bool) -> bool:  # fit asks once per step whether to stop
        asked.append(flag)
        return len(asked) == before_step

    comm.any = any_at_the_step
    try:
        stopped = mlp_xp.fit(model, loss, optimizer, loader, epochs=EPOCHS, progress=False, log=None)
    finally:
        del comm.any
    assert stopped.interrupted, stopped
    point = mlp_xp.resume_point(stopped.progress, comm)
    return mlp_xp.fit(
        model, loss, optimizer, loader, epochs=EPOCHS, start_epoch=point.epoch, resume=point, progress=False, log=None
    )


def epochs_when_one_rank_asks_to_stop(comm: Communicator) -> int:
    """The epochs ``fit`` trains (of 3) when a callback asks to stop after the first on rank 1
    alone: every rank must stop there (else rank 0 waits for rank 1 in the next step)."""
    x, y = data()
    model = mlp_xp.make_mlp(FEATURES, [8], CLASSES).init("numpy", seed=3)
    loader = mlp_xp.DeviceLoader(x, y, "numpy", batch_size=BATCH, comm=comm)

    class StopOnRankOne:
        def on_epoch_end(self, epoch, stats, model):
            return comm.rank == 1

    history = mlp_xp.fit(
        model, mlp_xp.SoftmaxCrossEntropy(), mlp_xp.SGD(model, 0.1), loader, epochs=3, progress=False, log=None,
        callbacks=[StopOnRankOne()],
    )  # fmt: skip
    return len(history.epochs)


def main(out: Path) -> None:
    from mpi4py import MPI

    from mlp_xp.distributed import world

    comm = world()
    assert comm.size == 2, comm
    found = {}
    for spec in COLLECTIVE_BACKENDS:
        if available(spec):
            found.update({f"{spec}/{key}": value for key, value in collectives(comm, spec).items()})
    if comm.is_root:
        np.savez(out / "collectives.npz", **found)
    epochs = MPI.COMM_WORLD.gather(epochs_when_one_rank_asks_to_stop(comm), root=0)
    if comm.is_root:
        np.save(out / "callback_stop.npy", np.asarray(epochs))
    for name in CASES:
        if not available(CASES[name][0]):
            continue
        result = train_case(name, comm)
        gathered = MPI.COMM_WORLD.gather(result, root=0)
        if comm.is_root:
            first, second = gathered
            np.savez(
                out / f"{name}.npz",
                rank0=first["params"],
                rank1=second["params"],
                train_loss=first["train_loss"],
                train_acc=first["train_acc"],
                seeds0=first["dropout_seeds"],
                seeds1=second["dropout_seeds"],
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
