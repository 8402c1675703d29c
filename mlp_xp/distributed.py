"""Data-parallel training across processes on MPI (mpi4py): communicators and the collective steps.

This is the only module that imports mpi4py, and only when a communicator is created for an
MPI run. A communicator is passed explicitly: ``DeviceLoader(..., comm=comm)`` shards the data,
and ``fit`` takes the communicator of its training loader. ``Communicator`` is the trivial one
of a single process (every collective returns its input), ``MPICommunicator`` wraps an mpi4py
communicator; ``world()`` gives the MPI world when an MPI launcher started this process and the
trivial communicator otherwise, so one code path serves both.

How a data-parallel step equals the one-process step (``train.train_step``): ``--batch-size``
is the global batch; rank ``r`` takes a contiguous part of ``n_r`` samples of every global batch
of ``N`` samples (the same permutation on every rank), scales its loss gradient by ``n_r / N``,
and the gradients are summed across ranks as ONE flat buffer (``model.flat.grads()``) by an
Allreduce before the optimizer update: the gradient of the global batch's mean loss, also for
uneven last batches. Rank 0's parameters, buffers and optimizer state are broadcast when
``fit`` starts (a new run or a resumed one), and rank 0's buffers after every epoch.

Arrays cross MPI through host memory. Where a backend keeps its arrays in host memory and
exports them writable through DLPack (NumPy, torch on the CPU, array-api-strict) the
collectives work in place on that memory, with no copy; elsewhere (JAX, CuPy, torch on a GPU)
they stage through ``backend.to_numpy`` (which waits for the device) and ``backend.asarray``.
NCCL (``cupyx.distributed``) and CUDA-aware MPI are not used: GPU ranks reduce through the host.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from .arrays import Array
from .backends import Backend, BackendUnavailableError, derived_seed, get_backend
from .layers import BatchNorm

__all__ = [
    "Communicator",
    "MPICommunicator",
    "DistributedUnavailableError",
    "world",
    "launched_by_mpi",
    "mpi_description",
    "rank_device",
    "rank_backend",
    "broadcast_state",
    "broadcast_buffers",
    "per_rank_dropout",
    "synchronise_batchnorm",
    "report_failure",
]

LAUNCHER_VARIABLES = (
    "PMI_SIZE",  # MPICH (Hydra), Intel MPI, Slurm's PMI-2
    "PMIX_RANK",  # PMIx: Open MPI 5, Slurm --mpi=pmix
    "OMPI_COMM_WORLD_SIZE",  # Open MPI
    "MV2_COMM_WORLD_SIZE",  # MVAPICH
)
"""Environment variables that MPI launchers set in the processes they start."""

ABORT_GRACE_SECONDS = 1.0
"""How long a failing rank waits before ending the others (``Communicator.abort_others``)."""

CUDA_SPECS = {"cuda": "cuda", "cupy": "cupy", "torch:cuda": "torch:cuda", "jax:cuda": "jax:cuda"}
"""Device specs that name a GPU without an index: each rank gets its local rank as the index."""


class DistributedUnavailableError(RuntimeError):
    """An MPI launcher started this process, but mpi4py cannot be imported."""


class Communicator:
    """The trivial communicator of a single process: rank 0 of 1; every collective returns
    its input unchanged and costs nothing. ``MPICommunicator`` overrides each method."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1

    def __init__(self) -> None:
        self.allreduce_seconds = 0.0
        """Wall time spent in ``allreduce`` so far (the gradient reduction), for benchmarks."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"

    @property
    def is_root(self) -> bool:
        """True on rank 0, the process that prints and writes files."""
        return self.rank == 0

    def allreduce(self, array: Array, backend: Backend) -> Array:
        """The elementwise sum of ``array`` over all ranks (the gradient reduction). Works in
        place where the array lives in host memory; returns the result either way."""
        return array

    def broadcast(self, array: Array, backend: Backend) -> Array:
        """Rank 0's ``array`` on every rank (same shape and dtype on all ranks)."""
        return array

    def sum_with_count(self, sums: Array, count: int, backend: Backend) -> tuple[Array, int]:
        """``sums`` (a small array) and ``count`` each summed over all ranks, in one message."""
        return sums, count

    def sum_floats(self, values: list[float]) -> list[float]:
        """Host numbers summed over all ranks (epoch metrics)."""
        return list(values)

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank (a stop request)."""
        return flag

    def barrier(self, idle: bool = False) -> None:
        """Wait until every rank has arrived here; ``idle`` waits without spinning on a CPU
        (for ranks that wait while others compute)."""

    def abort_others(self, code: int) -> None:
        """After a failure on this rank: end every rank of the run with exit ``code``
        (``MPI_Abort``), so that none waits forever in a collective. Nothing for one process.
        Waits ``ABORT_GRACE_SECONDS`` first, so that ranks failing the same way at the same
        point (a missing GPU, a bad argument) print their messages too."""

    def split(self, member: bool) -> Communicator | None:
        """The communicator of the ranks that pass ``member=True`` (None on the others);
        collective over this communicator."""
        return self if member else None


class MPICommunicator(Communicator):
    """An mpi4py communicator (``MPI.COMM_WORLD`` by default). ``local_rank``/``local_size``
    are the rank and count of the ranks on this node (a ``COMM_TYPE_SHARED`` split): GPU ranks
    take the GPU of their local rank."""

    def __init__(self, comm: Any = None) -> None:
        super().__init__()
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self._flag = np.zeros(1, dtype=np.int32)

    def allreduce(self, array: Array, backend: Backend) -> Array:
        started = time.perf_counter()
        result = self._in_place(array, backend, lambda host: self.comm.Allreduce(self._mpi.IN_PLACE, host))
        self.allreduce_seconds += time.perf_counter() - started
        return result

    def broadcast(self, array: Array, backend: Backend) -> Array:
        return self._in_place(array, backend, lambda host: self.comm.Bcast(host, root=0))

    def sum_with_count(self, sums: Array, count: int, backend: Backend) -> tuple[Array, int]:
        host = backend.to_numpy(sums)
        packed = np.concatenate([host.reshape(-1), np.asarray([count], dtype=host.dtype)])
        self.comm.Allreduce(self._mpi.IN_PLACE, packed)
        total = backend.asarray(packed[:-1].reshape(host.shape), host.dtype.name)
        return total, int(round(float(packed[-1])))

    def sum_floats(self, values: list[float]) -> list[float]:
        buffer = np.asarray(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer)
        return buffer.tolist()

    def any(self, flag: bool) -> bool:
        self._flag[0] = int(flag)
        self.comm.Allreduce(self._mpi.IN_PLACE, self._flag, op=self._mpi.MAX)
        return bool(self._flag[0])

    def barrier(self, idle: bool = False) -> None:
        if not idle:
            self.comm.Barrier()
            return
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(0.001)

    def abort_others(self, code: int) -> None:
        if self.size > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            time.sleep(ABORT_GRACE_SECONDS)
            self.comm.Abort(code)

    def split(self, member: bool) -> Communicator | None:
        part = self.comm.Split(0 if member else self._mpi.UNDEFINED, key=self.rank)
        return MPICommunicator(part) if member else None

    def _in_place(self, array: Array, backend: Backend, collective: Callable[[np.ndarray], None]) -> Array:
        """Run ``collective`` on a host buffer holding ``array``: its own memory where the
        backend exports it writable (no copy), else a staged copy uploaded back afterwards."""
        host = _host_memory(array, backend)
        if host is not None:
            collective(host)
            return array
        staged = backend.to_numpy(array)
        collective(staged)
        return backend.asarray(staged, staged.dtype.name)


def _host_memory(array: Array, backend: Backend) -> np.ndarray | None:
    """A writable NumPy view of ``array``'s memory where it lives on the host (NumPy, torch on
    the CPU, array-api-strict), else None (GPU arrays; JAX's immutable arrays)."""
    if backend.is_gpu:
        return None
    if isinstance(array, np.ndarray):
        return array
    try:
        view = np.from_dlpack(array)
    except (BufferError, RuntimeError, TypeError, ValueError, AttributeError):
        return None
    return view if view.flags.writeable and view.flags.c_contiguous else None


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (mpiexec, mpirun, srun) started this process."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


_world: list[MPICommunicator] = []
"""The one ``MPICommunicator`` of ``MPI.COMM_WORLD`` once made (making one is collective)."""


def world() -> Communicator:
    """``MPICommunicator`` of ``MPI.COMM_WORLD`` when an MPI launcher started this process (the
    same one on every call: making it is a collective operation, which every rank would have to
    repeat), else the trivial single-process ``Communicator`` (mpi4py is not imported then)."""
    if not launched_by_mpi():
        return Communicator()
    if _world:
        return _world[0]
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        found = ", ".join(f"{name}={os.environ[name]}" for name in LAUNCHER_VARIABLES if name in os.environ)
        raise DistributedUnavailableError(
            f"an MPI launcher started this process ({found}) but mpi4py is not installed: "
            'pip install "mlp-xp[mpi]" (or mpi4py built against your cluster\'s MPI).'
        ) from exc
    try:
        _world.append(MPICommunicator())
        return _world[0]
    except RuntimeError as exc:  # mpi4py 4 finds no MPI library to load
        raise DistributedUnavailableError(
            f"an MPI launcher started this process but mpi4py cannot load an MPI library ({exc}): "
            "pip install mpich (the mlp-xp[mpi] extra has it), or load your cluster's MPI."
        ) from exc


def mpi_description(comm: Communicator) -> str | None:
    """``MPI: <library> (mpi4py <version>), world size N`` for ``mlp-xp info``; None when
    mpi4py is not installed. Outside an MPI launch, MPI is not initialised to ask."""
    try:
        import mpi4py
    except ImportError:
        return None
    if not isinstance(comm, MPICommunicator):
        mpi4py.rc.initialize = False  # MPI_Get_library_version works before MPI_Init
    try:
        from mpi4py import MPI
    except RuntimeError as exc:  # mpi4py 4 finds no MPI library to load
        return f"MPI: none loads (mpi4py {mpi4py.__version__}: {exc}); pip install mpich, or load your cluster's MPI"
    library = MPI.Get_library_version().strip().splitlines()[0].strip()
    launch = "" if isinstance(comm, MPICommunicator) else " (not started by an MPI launcher)"
    return f"MPI: {' '.join(library.split())} (mpi4py {mpi4py.__version__}), world size {comm.size}{launch}"


def rank_device(spec: str, local_rank: int) -> str:
    """The device spec of the rank with ``local_rank`` on its node: a GPU spec without an
    index (``cuda``, ``cupy``, ``torch:cuda``, ``jax:cuda``) gets ``:<local_rank>``; every
    other spec is returned as given (an explicit index is the user's choice)."""
    key = spec.strip().lower()
    return f"{CUDA_SPECS[key]}:{local_rank}" if key in CUDA_SPECS else spec


def rank_backend(spec: str, comm: Communicator) -> Backend:
    """``get_backend`` for this rank: GPU specs take the GPU of the local rank (``rank_device``);
    ``auto`` (or ``$MLP_XP_DEVICE``) takes that GPU where CUDA is usable, else the CPU."""
    if comm.size == 1:
        return get_backend(spec)
    if spec.strip().lower() == "auto":
        spec = os.environ.get("MLP_XP_DEVICE") or "auto"
    if spec.strip().lower() == "auto":
        try:
            return get_backend(f"cuda:{comm.local_rank}")
        except BackendUnavailableError:
            return get_backend("cpu")
    return get_backend(rank_device(spec, comm.local_rank))


def broadcast_state(comm: Communicator, model: Any, optimizer: Any = None) -> None:
    """Make rank 0's parameters (one flat buffer), buffers (BatchNorm running statistics) and
    optimizer state (its arrays and step count) the state of every rank. Called by ``fit``
    when it starts."""
    if comm.size == 1:
        return
    backend = model.backend
    if model.flat is not None:
        model.flat.sync()
        model.flat.install(comm.broadcast(model.flat.data, backend))
    broadcast_buffers(comm, model)
    if optimizer is not None:
        optimizer.prepare()
        optimizer.state = {name: comm.broadcast(value, backend) for name, value in optimizer.state.items()}
        optimizer.steps = int(comm.sum_floats([float(optimizer.steps) if comm.is_root else 0.0])[0])


def broadcast_buffers(comm: Communicator, model: Any) -> None:
    """Rank 0's layer buffers on every rank (as torch DDP does): with per-rank BatchNorm
    statistics, every rank then evaluates and checkpoints the same model."""
    if comm.size == 1:
        return
    for layer in model.layers:
        for key, value in layer.buffers.items():
            layer.buffers[key] = comm.broadcast(value, model.backend)


def per_rank_dropout(model: Any, comm: Communicator) -> None:
    """Reseed every Dropout layer's generator from its seed (drawn from the run seed) and the
    rank, so that ranks draw different masks. Nothing with a single process."""
    if comm.size == 1:
        return
    for layer in model.layers:
        generator = getattr(layer, "rng", None)
        if generator is not None:
            layer.rng = model.backend.random(derived_seed(generator.seed, comm.rank))


def synchronise_batchnorm(model: Any, comm: Communicator) -> None:
    """Make every BatchNorm layer of ``model`` compute its batch statistics (and their
    gradients) over the global batch, across ranks: training then equals one process with the
    global batch, at the cost of three small reductions per BatchNorm layer per step. Without
    this, each rank normalises with the statistics of its own part (torch DDP's default)."""
    if comm.size == 1:
        return
    backend = model.backend
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            layer.sync = lambda sums, count: comm.sum_with_count(sums, count, backend)


def report_failure(comm: Communicator) -> None:
    """Print the exception being handled with its traceback (naming the rank) and end every
    rank of the run: for a failure that is not one of the CLI's clear one-line errors."""
    if comm.size > 1:
        print(f"rank {comm.rank} of {comm.size} failed:", file=sys.stderr)
        traceback.print_exc()
        comm.abort_others(1)
