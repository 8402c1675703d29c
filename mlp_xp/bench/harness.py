"""One case's methods, run interleaved: warm-up (first epochs timed apart: compile time), then
rounds of one epoch per method in an order rotating each round, because the speed of a shared
machine drifts; each round also measures the sgemm rate of the model's biggest GEMM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backends import Backend, BackendUnavailableError, get_backend
from ..opcount import step_counts
from .cases import Case, biggest_gemm, initial_weights, make_data
from .comparators import HandEpoch, JaxScanEpoch, PackageEpoch, TorchEpoch

PACKAGE, PACKAGE_COMPILED, SGEMM = "package", "package_compiled", "sgemm"
HAND, REFERENCE, TORCH, JAX_SCAN, PACKAGE_FLOAT32 = "hand", "reference", "torch", "jax_scan", "package_float32"
PACKAGE_NUMPY = "package_numpy"
COMPILED_METHODS = (PACKAGE_COMPILED, JAX_SCAN)


def gemm_gflops(backend: Backend | None, m: int, k: int, n: int, seconds: float = 0.04, repeats: int = 3) -> float:
    """Best float32 GEMM rate (GFLOP/s) of (m, k) @ (k, n) over ``repeats`` timed bursts of about
    ``seconds`` each: NumPy, or the backend's library when it is a GPU backend."""
    rng = np.random.default_rng(1)
    a, w = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    gpu = backend is not None and backend.is_gpu
    if gpu:
        a, w = backend.asarray(a), backend.asarray(w)

    def burst(reps: int) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            c = a @ w
        if gpu:
            backend.synchronize(c)  # JAX waits on the array it is given, the others on the device
        return time.perf_counter() - start

    burst(1)
    best, reps = 0.0, 1
    for _ in range(repeats):
        while (elapsed := burst(reps)) < seconds:
            reps *= 2
        best = max(best, 2 * m * k * n * reps / elapsed / 1e9)
    return best


# -- where the comparators run ------------------------------------------------------------------


def _cuda_index(backend: Backend) -> int:
    """The CUDA device number of a GPU backend (torch: ``index``; CuPy and JAX: ``id``)."""
    device = backend.device
    return device.index if backend.name == "torch" else device.id


def torch_device(backend: Backend) -> str | None:
    """Where the torch comparator runs for ``backend``: its GPU, or the CPU; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    if not backend.is_gpu:
        return "cpu"
    return f"cuda:{_cuda_index(backend)}" if torch.cuda.is_available() else None


def hand_library(backend: Backend) -> tuple[Any, Any]:
    """(module, device context) for the hand loops: NumPy on the CPU, CuPy on the backend's GPU;
    (None, None) on a GPU without CuPy."""
    if not backend.is_gpu:
        return np, None
    try:
        import cupy

        return cupy, cupy.cuda.Device(_cuda_index(backend))
    except ImportError:
        return None, None


def jax_device(backend: Backend) -> Any:
    """The JAX device on ``backend``'s kind of device (its GPU, or the CPU), or None where JAX
    is missing or sees no such device. Through ``get_backend``, so that JAX runs with the same
    settings (64-bit types on) as the package's JAX backend."""
    spec = f"jax:cuda:{_cuda_index(backend)}" if backend.is_gpu else "jax"
    try:
        return get_backend(spec).device
    except BackendUnavailableError:
        return None


# -- one case -------------------------------------------------------------------------------------


class CaseRun:
    """The methods of one case and their timings.

    Methods: ``package`` (eager) always; ``package_compiled`` with ``compile`` on a backend
    that compiles (JAX, torch), and then ``package_numpy`` (mlp_xp eager on NumPy: what the
    compiled step is to beat on a CPU) where that backend runs on the CPU; ``hand``
    (same math, NumPy or CuPy), ``reference`` (the same
    loop without metrics; SGD only), ``torch`` (eager, unless ``torch=False``) and, with
    ``compile``, ``jax_scan`` where JAX sees the backend's kind of device. uint8 cases time
    ``package_float32`` (the same data stored as float32) instead of reference/torch/JAX; the
    array-api-strict smoke run has ``hand`` only.

    ``warmup()`` runs epoch 0 of every method, timed (``first_s``: a compiled method's first
    epoch includes its compilation); ``schedule()`` yields ``(round, method)`` events, one per
    method per round in an order rotating each round; ``run(round, method)`` times one (epoch
    ``round + 1``); ``record()`` summarises (``report.make_record``).
    """

    def __init__(self, case: Case, rounds: int = 3, torch: bool = True, compile: bool = False):
        self.case, self.rounds = case, rounds
        self.backend = backend = get_backend(case.spec)
        full = case.storage == "float32" and backend.name != "array-api-strict"
        x, y = make_data(case.samples, case.storage)
        xf = make_data(case.samples, "float32")[0]
        self.methods: dict[str, Any] = {PACKAGE: PackageEpoch(backend, x, y, case)}
        if compile and backend.compiles:
            self.methods[PACKAGE_COMPILED] = PackageEpoch(backend, x, y, case, compile=True)
            if not backend.is_gpu:
                self.methods[PACKAGE_NUMPY] = PackageEpoch(get_backend("numpy"), x, y, case)
        if case.storage != "float32":
            self.methods[PACKAGE_FLOAT32] = PackageEpoch(backend, xf, y, case)
        weights = initial_weights(case.hidden)
        lib, device = hand_library(backend)
        if lib is not None:
            self.methods[HAND] = HandEpoch(lib, xf, y, weights, case, metrics=True, device=device)
            if full and case.optimizer == "sgd":
                self.methods[REFERENCE] = HandEpoch(lib, xf, y, weights, case, metrics=False, device=device)
        where = torch_device(backend) if torch and full else None
        if where is not None:
            self.methods[TORCH] = TorchEpoch(where, xf, y, weights, case)
        jax_on = jax_device(backend) if compile and full else None
        if jax_on is not None:
            self.methods[JAX_SCAN] = JaxScanEpoch(jax_on, xf, y, weights, case)
        self.gemm = biggest_gemm(case.sizes, case.batch_size)
        self.ops = step_counts({"optimizer": case.optimizer}, case.hidden, case.batch_size)
        self.first_s: dict[str, float] = {}
        self.times: dict[str, list[float]] = {name: [] for name in self.methods}
        self.peaks: list[float] = []

    @property
    def names(self) -> list[str]:
        return [*self.methods, SGEMM]

    def warmup(self) -> None:
        for name, method in self.methods.items():
            start = time.perf_counter()
            method.epoch(0)
            self.first_s[name] = time.perf_counter() - start
        gemm_gflops(self.backend, *self.gemm, seconds=0.01, repeats=1)

    def schedule(self) -> Iterator[tuple[int, str]]:
        names = self.names
        for r in range(self.rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                yield r, name

    def run(self, round_: int, name: str) -> float:
        """Run one event; returns seconds (epochs) or GFLOP/s (sgemm)."""
        if name == SGEMM:
            self.peaks.append(gemm_gflops(self.backend, *self.gemm))
            return self.peaks[-1]
        start = time.perf_counter()
        self.methods[name].epoch(round_ + 1)  # ends synchronized, its loss read back
        elapsed = time.perf_counter() - start
        self.times[name].append(elapsed)
        return elapsed

    def run_all(self) -> dict[str, Any]:
        self.warmup()
        for event in self.schedule():
            self.run(*event)
        return self.record()

    def record(self) -> dict[str, Any]:
        from .report import make_record

        return make_record(self)
