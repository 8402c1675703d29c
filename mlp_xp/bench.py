"""Epoch-throughput measurement, shared by ``mlp-xp bench`` and the pytest suite in ``benchmarks/``.

A *case* is (backend, model, batch size, storage dtype of the data). Every *method* of a case
trains the same model from the same initial weights on the same data in the same sample order
(the loader's per-epoch permutation), one full epoch at a time:

``package``
    mlp_xp's user-facing loop: ``make_mlp`` + ``DeviceLoader`` + ``SoftmaxCrossEntropy`` +
    ``SGD`` + ``fit`` (public API only).
``hand``
    A hand-written loop in the backend's array library (NumPy; CuPy on a GPU) doing the same
    math, including the per-step loss and correct count accumulated on the device.
``reference``
    The same loop without metrics: ``numpy_epoch`` of ``shared/reference/epoch_reference.py``.
``torch``
    PyTorch eager: ``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD``, loss and correct
    count accumulated as tensors (on the backend's kind of device).
``package_float32``
    Only for uint8 cases: the package with the same data stored as float32.

Epochs are interleaved, one per method per round, the order rotating each round, because the
speed of a shared machine drifts. Each round also measures the sgemm rate of the model's biggest
GEMM at the batch size (``sgemm``). Ratios (package time / comparator time) are the median of
per-round ratios and min/min. GPU methods synchronize before the clock stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import SGD, DeviceLoader, SoftmaxCrossEntropy, __version__, fit, make_mlp
from .backends import Backend, get_backend, host_rng

FEATURES, CLASSES, LR, SEED = 784, 10, 0.1, 0
MODELS = ((256,), (100,), (1024, 1024))
BATCH_SIZES = (64, 256, 1024)
GPU_BATCH_SIZES = (*BATCH_SIZES, 4096)
PACKAGE, SGEMM = "package", "sgemm"
REGRESSION_LIMIT = 1.5


@dataclass(frozen=True)
class Case:
    """One configuration to measure: backend spec, hidden widths, batch size, data storage."""

    spec: str
    hidden: tuple[int, ...]
    batch_size: int
    samples: int = 60000
    storage: str = "float32"  # or "uint8": pixels stored as bytes, converted per batch

    @property
    def sizes(self) -> tuple[int, ...]:
        return (FEATURES, *self.hidden, CLASSES)

    @property
    def model(self) -> str:
        return "-".join(map(str, self.sizes))

    @property
    def id(self) -> str:
        extra = "" if self.storage == "float32" else f"-{self.storage}"
        extra += "" if self.samples == 60000 else f"-N{self.samples}"
        return f"{self.spec}-{self.model}-B{self.batch_size}{extra}"


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"256"`` → (256,); ``"1024,1024"`` or ``"784-1024-1024-10"`` → (1024, 1024)."""
    parts = [int(p) for p in text.replace("-", ",").split(",") if p.strip()]
    if len(parts) > 2 and parts[0] == FEATURES and parts[-1] == CLASSES:
        parts = parts[1:-1]
    if not parts or min(parts) < 1:
        raise ValueError(f"bad model spec {text!r}: give hidden widths such as 256 or 1024,1024.")
    return tuple(parts)


# -- work ----------------------------------------------------------------------------------


def epoch_flops(sizes: tuple[int, ...], samples: int) -> int:
    """Matmul FLOPs of one epoch: forward 2·N·Σ in·out, backward dW 2·N·Σ in·out, and dX
    2·N·in·out for every Linear except the first (its input needs no gradient)."""
    products = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * samples * (2 * sum(products) + sum(products[1:]))


def biggest_gemm(sizes: tuple[int, ...], batch_size: int) -> tuple[int, int, int]:
    """(m, k, n) of the model's largest forward GEMM at this batch size."""
    k, n = max(zip(sizes[:-1], sizes[1:]), key=lambda kn: kn[0] * kn[1])
    return batch_size, k, n


_DATA: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}


def make_data(samples: int, storage: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Synthetic Fashion-MNIST-shaped data: (samples, 784) and labels in [0, 10), cached.

    ``float32``: uniform in [0, 1), like the reference. ``uint8``: random bytes; the float32
    equivalent of those is ``make_data(n, "uint8/255")`` (bytes times float32(1/255), exactly
    what the loader computes per batch)."""
    key = (samples, storage)
    if key not in _DATA:
        rng = np.random.default_rng(SEED)
        y = rng.integers(0, CLASSES, samples)
        if storage == "float32":
            x = rng.random((samples, FEATURES), dtype=np.float32)
        elif storage == "uint8":
            x = rng.integers(0, 256, (samples, FEATURES), dtype=np.uint8)
        elif storage == "uint8/255":
            x8, y = make_data(samples, "uint8")
            x = x8.astype(np.float32) * np.float32(1.0 / 255.0)
        else:
            raise ValueError(f"unknown storage {storage!r}; use float32 or uint8.")
        _DATA[key] = (x, y)
    return _DATA[key]


def initial_weights(hidden: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight (in, out), bias) per Linear, exactly as the package initialises them (host copies)."""
    model = _package_model(hidden).init("numpy", seed=SEED)
    return [(np.array(layer.params["weight"]), np.array(layer.params["bias"])) for layer in model if layer.params]


def _package_model(hidden: tuple[int, ...]) -> Any:
    return make_mlp(FEATURES, hidden, CLASSES, init="normal", init_std=0.01)


def epoch_order(samples: int, epoch: int) -> np.ndarray:
    """The sample order of ``epoch``: DeviceLoader's documented permutation for ``SEED``."""
    return host_rng((SEED, epoch)).permutation(samples)


# -- methods: each runs one whole epoch, finished on the device --------------------------------


class PackageEpoch:
    """mlp_xp's own loop through its public API."""

    def __init__(self, backend: Backend, x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], batch_size: int):
        self.backend = backend
        self.model = _package_model(hidden).init(backend, seed=SEED)
        self.loader = DeviceLoader(x, y, backend, batch_size=batch_size, seed=SEED)
        self.loss = SoftmaxCrossEntropy(check_labels=False)
        self.optimizer = SGD(self.model, lr=LR)
        self.last_loss: float | None = None

    def epoch(self, epoch: int) -> None:
        history = fit(
            self.model,
            self.loss,
            self.optimizer,
            self.loader,
            epochs=epoch + 1,
            start_epoch=epoch,
            progress=False,
            log=None,
        )
        if history.interrupted:  # fit took the Ctrl-C: stop the benchmark, not just this epoch
            raise KeyboardInterrupt
        self.backend.synchronize()
        self.last_loss = history.last["train_loss"]


class HandEpoch:
    """Hand-written loop in NumPy (or CuPy: ``lib`` is the module, ``device`` its Device).

    ``metrics=False`` is the reference's ``numpy_epoch`` generalised to any depth; ``metrics=True``
    adds what the package's loop also computes: each step's loss written into a device array and
    the correct-prediction count added to a device scalar, read once at the end of the epoch."""

    def __init__(self, lib: Any, x, y, weights, batch_size: int, metrics: bool, device: Any = None):
        self.lib, self.batch_size, self.metrics = lib, batch_size, metrics
        self.device = device
        with self._on_device():
            self.x, self.labels = lib.asarray(x), lib.asarray(y)
            self.onehot = lib.eye(CLASSES, dtype=lib.float32)[self.labels]
            self.params = [(lib.array(w, dtype=lib.float32), lib.array(b, dtype=lib.float32)) for w, b in weights]
        self.last_loss: float | None = None

    def _on_device(self):
        return self.device if self.device is not None else contextlib.nullcontext()

    def epoch(self, epoch: int) -> None:
        lib, B, params = self.lib, self.batch_size, self.params
        n = len(self.x)
        with self._on_device():
            perm = lib.asarray(epoch_order(n, epoch))
            steps = -(-n // B)
            losses = lib.zeros(steps, dtype=lib.float32)
            correct = lib.zeros((), dtype=lib.int64)
            for step in range(steps):
                idx = perm[step * B : (step + 1) * B]
                x, yy = self.x[idx], self.onehot[idx]
                acts = [x]
                for w, b in params[:-1]:
                    acts.append(lib.maximum(acts[-1] @ w + b, 0))
                z = acts[-1] @ params[-1][0] + params[-1][1]
                z -= z.max(1, keepdims=True)
                p = lib.exp(z)
                total = p.sum(1, keepdims=True)
                if self.metrics:
                    losses[step] = (yy * (lib.log(total) - z)).sum() / len(x)
                    correct += lib.count_nonzero(z.argmax(1) == self.labels[idx])
                p /= total
                g = (p - yy) / len(x)
                for i in range(len(params) - 1, -1, -1):
                    w, b = params[i]
                    dw, db = acts[i].T @ g, g.sum(0)
                    if i:
                        g = (g @ w.T) * (acts[i] > 0)
                    w -= LR * dw
                    b -= LR * db
            if self.metrics:
                sizes = lib.full(steps, B, dtype=lib.float32)
                sizes[-1] = n - (steps - 1) * B
                self.last_loss = float((losses * sizes).sum()) / n
                self.last_accuracy = int(correct) / n
            if self.device is not None:
                self.device.synchronize()


class TorchEpoch:
    """PyTorch eager on ``device`` ("cpu" or "cuda:N"), the package's initial weights."""

    def __init__(self, device: str, x, y, weights, batch_size: int):
        import torch

        self.torch, self.device, self.batch_size = torch, torch.device(device), batch_size
        layers: list[Any] = []
        for w, b in weights:
            linear = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T.copy()))
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers[:-1]).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.lossf = torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        self.last_loss: float | None = None

    def epoch(self, epoch: int) -> None:
        torch, B, n = self.torch, self.batch_size, len(self.x)
        perm = torch.from_numpy(epoch_order(n, epoch)).to(self.device)
        steps = -(-n // B)
        losses = torch.zeros(steps, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for step in range(steps):
            idx = perm[step * B : (step + 1) * B]
            xb, yb = self.x[idx], self.y[idx]
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(xb)
            loss = self.lossf(out, yb)
            loss.backward()
            self.optimizer.step()
            losses[step] = loss.detach()
            correct += (out.argmax(1) == yb).sum()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        sizes = torch.full((steps,), float(B), device=self.device)
        sizes[-1] = n - (steps - 1) * B
        self.last_loss = float((losses * sizes).sum()) / n


def gemm_gflops(backend: Backend | None, m: int, k: int, n: int, seconds: float = 0.04, repeats: int = 3) -> float:
    """Best float32 GEMM rate (GFLOP/s) of (m, k) @ (k, n) over ``repeats`` timed bursts of about
    ``seconds`` each: NumPy, or the backend's library when it is a GPU backend."""
    rng = np.random.default_rng(1)
    a, w = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    sync = lambda: None  # noqa: E731
    if backend is not None and backend.is_gpu:
        a, w, sync = backend.asarray(a), backend.asarray(w), backend.synchronize
    a @ w
    sync()
    best, reps = 0.0, 1
    for _ in range(repeats):
        while True:
            start = time.perf_counter()
            for _ in range(reps):
                a @ w
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            reps *= 2
        best = max(best, 2 * m * k * n * reps / elapsed / 1e9)
    return best


# -- one case: methods, interleaved rounds, record --------------------------------------------


def _torch_device(backend: Backend) -> str | None:
    """Where the torch comparator runs for ``backend``: its GPU, or the CPU; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    if not backend.is_gpu:
        return "cpu"
    index = backend.device.index if backend.name == "torch" else backend.device.id
    return f"cuda:{index}" if torch.cuda.is_available() else None


def _hand_library(backend: Backend) -> tuple[Any, Any]:
    """(module, device context) for the hand loops: NumPy on the CPU, CuPy on the backend's GPU."""
    if not backend.is_gpu:
        return np, None
    try:
        import cupy
    except ImportError:
        return None, None
    index = backend.device.index if backend.name == "torch" else backend.device.id
    return cupy, cupy.cuda.Device(index)


class CaseRun:
    """The methods of one case and their per-round timings.

    Comparators: ``hand``, ``reference`` and ``torch`` (unless ``torch=False``) for float32 cases;
    uint8 cases compare with ``package_float32`` and ``hand`` only, and the array-api-strict
    smoke run with ``hand`` only. ``warmup()`` runs epoch 0 of every method (discarded);
    ``schedule()`` yields ``(round, method)`` events, one per method per round in an order
    rotating each round; ``run(round, method)`` times one (epoch ``round + 1``); ``record()``
    summarises."""

    def __init__(self, case: Case, rounds: int = 3, torch: bool = True):
        self.case, self.rounds = case, rounds
        self.backend = get_backend(case.spec)
        full = case.storage == "float32" and self.backend.name != "array-api-strict"
        x, y = make_data(case.samples, case.storage)
        xf = x if case.storage == "float32" else make_data(case.samples, "uint8/255")[0]
        self.methods: dict[str, Any] = {PACKAGE: PackageEpoch(self.backend, x, y, case.hidden, case.batch_size)}
        if case.storage != "float32":
            self.methods["package_float32"] = PackageEpoch(self.backend, xf, y, case.hidden, case.batch_size)
        weights = initial_weights(case.hidden)
        lib, device = _hand_library(self.backend)
        if lib is not None:
            self.methods["hand"] = HandEpoch(lib, xf, y, weights, case.batch_size, metrics=True, device=device)
            if full:
                self.methods["reference"] = HandEpoch(lib, xf, y, weights, case.batch_size, False, device)
        torch_device = _torch_device(self.backend) if torch and full else None
        if torch_device is not None:
            self.methods["torch"] = TorchEpoch(torch_device, xf, y, weights, case.batch_size)
        self.gemm = biggest_gemm(case.sizes, case.batch_size)
        self.times: dict[str, list[float]] = {name: [] for name in self.methods}
        self.peaks: list[float] = []

    @property
    def names(self) -> list[str]:
        return [*self.methods, SGEMM]

    def warmup(self) -> None:
        for method in self.methods.values():
            method.epoch(0)
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
        self.methods[name].epoch(round_ + 1)  # ends with a device synchronize
        elapsed = time.perf_counter() - start
        self.times[name].append(elapsed)
        return elapsed

    def run_all(self) -> dict[str, Any]:
        self.warmup()
        for event in self.schedule():
            self.run(*event)
        return self.record()

    def record(self) -> dict[str, Any]:
        case, times = self.case, self.times
        rounds = min(len(t) for t in times.values())
        package = times[PACKAGE][:rounds]
        flops = epoch_flops(case.sizes, case.samples)
        median_s = statistics.median(package)
        peaks = self.peaks[:rounds] or [float("nan")]
        shares = [flops / t / 1e9 / p for t, p in zip(package, peaks)]
        peak = statistics.median(peaks)
        info = self.backend.describe()
        versions = {"mlp_xp": __version__, "python": platform.python_version(), **info}
        if "torch" in self.methods:
            versions["torch"] = self.methods["torch"].torch.__version__
        ratios = {}
        for name in self.methods:
            if name != PACKAGE and rounds:
                other = times[name][:rounds]
                ratios[name] = {
                    "median": statistics.median(p / o for p, o in zip(package, other)),
                    "min_min": min(package) / min(other),
                }
        return {
            "kind": "mlp_xp.epoch",
            "id": case.id,
            "backend": self.backend.spec,
            "library": self.backend.name,
            "device": info.get("gpu", str(self.backend.device)),
            "dtype": "float32",
            "storage": case.storage,
            "model": case.model,
            "hidden": list(case.hidden),
            "batch_size": case.batch_size,
            "samples": case.samples,
            "rounds": rounds,
            "epoch_gflop": flops / 1e9,
            "package_s": median_s,
            "samples_per_s": case.samples / median_s,
            "gflops": flops / median_s / 1e9,
            "peak_gemm": "x".join(map(str, self.gemm)),
            "peak_source": self.backend.name if self.backend.is_gpu else "numpy",
            "peak_gflops": peak,
            "peak_share": statistics.median(shares),
            "peak_samples_per_s": case.samples * peak * 1e9 / flops,
            "seconds": {name: t[:rounds] for name, t in times.items()},
            "median_s": {name: statistics.median(t[:rounds]) for name, t in times.items() if rounds},
            "ratios": ratios,
            "last_loss": {name: m.last_loss for name, m in self.methods.items()},
            "dataset_bytes_on_device": _nbytes(self.methods[PACKAGE].loader.x),
            "device_memory_bytes": self.backend.memory_in_use(),  # the library's pool; None on the CPU
            "blas_threads": [b.get("num_threads") for b in info.get("blas", [])],
            "versions": versions,
        }


def _nbytes(x: Any) -> int:
    """Bytes held by array ``x`` of any Array API library."""
    return math.prod(x.shape) * np.dtype(str(x.dtype).split(".")[-1]).itemsize


def regression(record: dict[str, Any], limit: float = REGRESSION_LIMIT) -> str | None:
    """The catastrophic-regression rule: a message when the package is more than ``limit``
    times slower than the same-math hand loop in the same library (both estimators), else None."""
    ratio = record["ratios"].get("hand")
    if ratio is None or record["library"] not in ("numpy", "cupy"):
        return None
    if min(ratio["median"], ratio["min_min"]) <= limit:
        return None
    return (
        f"{record['id']}: the package's epoch takes {ratio['median']:.2f}x (median of rounds; min/min "
        f"{ratio['min_min']:.2f}x) the same-math hand loop's, over the {limit}x limit."
    )


def loss_mismatch(record: dict[str, Any], rtol: float = 1e-3) -> str | None:
    """A message when the package's last-epoch loss differs from the same-library hand loop's
    (the comparator then does not do the same math), else None."""
    losses = record["last_loss"]
    mine, theirs = losses.get(PACKAGE), losses.get("hand")
    if mine is None or theirs is None or record["library"] not in ("numpy", "cupy"):
        return None
    if abs(mine - theirs) <= rtol * abs(theirs):
        return None
    return f"{record['id']}: package loss {mine:.6f} but hand loop loss {theirs:.6f}: not the same math."


# -- reports ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, cores, load, Python, NumPy/torch versions and BLAS pools of this machine."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mlp_xp": __version__,
    }
    with contextlib.suppress(OSError, AttributeError):
        info["loadavg"] = list(os.getloadavg())
    with contextlib.suppress(ImportError):
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    return info


def _ratio(record: dict[str, Any], name: str) -> str:
    r = record["ratios"].get(name)
    return "-" if r is None else f"{r['median']:.2f} ({r['min_min']:.2f})"


def format_table(records: list[dict[str, Any]]) -> str:
    """The summary table; ratios are package time / comparator time, median of per-round ratios
    with min/min in parentheses (> 1: the package is slower)."""
    head = ("backend", "model", "batch", "samples/s", "GFLOP/s", "% peak", "x hand", "x reference", "x torch")
    rows = [head]
    for r in records:
        backend = r["backend"] + ("" if r["storage"] == "float32" else f" [{r['storage']}]")
        model = r["model"] + ("" if r["samples"] == 60000 else f" N={r['samples']}")
        rows.append(
            (
                backend,
                model,
                str(r["batch_size"]),
                f"{r['samples_per_s']:,.0f}",
                f"{r['gflops']:.1f}",
                f"{100 * r['peak_share']:.0f}%",
                _ratio(r, "hand"),
                _ratio(r, "reference"),
                _ratio(r, "torch"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    notes = textwrap.wrap(
        "ratios: package epoch time / comparator epoch time, median of interleaved per-round ratios "
        "(min/min); > 1 means the package is slower. hand = same math incl. loss and correct count; "
        "reference = shared/reference numpy_epoch (no metrics); % peak: of the sgemm rate of the model's "
        "biggest GEMM at that batch size, measured each round.",
        width=max(100, len(lines[0])),
    )
    for r in records:
        if "package_float32" in r["ratios"]:
            q = r["ratios"]["package_float32"]
            notes.append(
                f"{r['id']}: uint8 storage epoch = {q['median']:.3f}x (min/min {q['min_min']:.3f}x) the "
                f"float32-storage epoch ({r['median_s'][PACKAGE]:.3f} s vs {r['median_s']['package_float32']:.3f} s)."
            )
    return "\n".join(lines + notes)


# -- mlp-xp bench ------------------------------------------------------------------------------


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="comma-separated backend specs to measure, e.g. numpy,torch or cuda (default: auto)",
    )
    parser.add_argument(
        "--hidden",
        nargs="+",
        default=None,
        metavar="WIDTHS",
        help="models as hidden widths: 256, 100, 1024,1024 (default: all three)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes (default: 64 256 1024, plus 4096 on a GPU)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds, one epoch per method each (default: 3)"
    )
    parser.add_argument("--samples", type=int, default=60000, help="training samples per epoch (default: 60000)")
    parser.add_argument(
        "--storage",
        nargs="+",
        choices=("float32", "uint8"),
        default=["float32"],
        help="data storage on the device; uint8 cases also time the float32-storage package",
    )
    parser.add_argument("--json", metavar="PATH", help="write the records and machine info as JSON")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager comparator")


def run_bench_command(args: argparse.Namespace) -> int:
    if args.rounds < 1 or args.samples < 1:
        raise ValueError("--rounds and --samples must be positive.")
    models = [parse_hidden(h) for h in args.hidden] if args.hidden else list(MODELS)
    backends = [get_backend(spec) for spec in args.device.split(",") if spec.strip()]
    records: list[dict[str, Any]] = []
    machine = machine_info()
    for backend in backends:
        batches = args.batch_size or (GPU_BATCH_SIZES if backend.is_gpu else BATCH_SIZES)
        for storage in args.storage:
            for hidden in models:
                for batch in batches:
                    case = Case(backend.spec, hidden, batch, args.samples, storage)
                    print(f"... {case.id}", file=sys.stderr, flush=True)
                    records.append(CaseRun(case, args.rounds, torch=not args.no_torch).run_all())
                    if args.json:  # after every case, so that an interrupted run keeps what it measured
                        machine["loadavg_end"] = machine_info().get("loadavg")
                        path = Path(args.json)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(json.dumps({"machine": machine, "records": records}, indent=1))
    print(format_table(records))
    if args.json:
        print(f"wrote {args.json}")
    return 0
