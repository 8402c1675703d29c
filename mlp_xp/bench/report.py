"""Records, ratios, the summary table, machine facts and the benchmark gate.

Ratios are epoch-time ratios A / B of two methods of one case, from the same interleaved
rounds: ``median`` is the median of the per-round ratios, ``min_min`` the best epoch of A over
the best epoch of B; > 1 means A is slower. Throughput comes from the package's median epoch:
``samples_per_s``, ``gflops``, and ``peak_share`` = ``gflops`` / ``peak_gflops`` (the rounds' median
sgemm rate), which equals ``samples_per_s`` / ``peak_samples_per_s``.

The gate (``gate(record)``), for cases with a same-math hand loop:

* **learned**: the hand loop's last-epoch loss is below ½·ln 10 (chance is ln 10), so the data
  can be learned and the comparisons below have teeth;
* **same math** (NumPy, CuPy and array-api-strict backends, where the hand loop runs in the
  same library): the package's final parameters equal the hand loop's to
  ``|package − hand| ≤ WEIGHT_ATOL + WEIGHT_RTOL·|hand|`` element by element, and its last-epoch
  loss to ``LOSS_RTOL`` relative (both trained from the same initial weights in the same order);
* **not catastrophically slow** (NumPy and CuPy backends): the package's epoch is more than
  ``SLOWNESS_LIMIT`` × the hand loop's only when *both* the median of per-round ratios and the
  min/min ratio exceed it (one noisy estimator alone does not fail a run).

The agreement of torch and the JAX scan epoch with the package is recorded, not gated: float32
rounding alone parts their parameters from the package's as training goes on (784-256-10 B256,
four epochs: up to 4e-3 with SGD, 4e-2 with Adam; the JAX scan at half the SGD rate: 8e-2), so
no fixed tolerance tells rounding from a wrong comparator over every case. The tiny case in
tests/test_bench_gate.py checks them, where rounding stays near 1e-6.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from .cases import CLASSES, epoch_flops
from .harness import COMPILED_METHODS, HAND, PACKAGE, PACKAGE_COMPILED, PACKAGE_FLOAT32

if TYPE_CHECKING:
    from .harness import CaseRun

SLOWNESS_LIMIT = 1.5
SLOWNESS_LIBRARIES = ("numpy", "cupy")
SAME_MATH_LIBRARIES = ("numpy", "cupy", "array-api-strict")  # the hand loop's own library (strict: NumPy)
WEIGHT_ATOL, WEIGHT_RTOL = 1e-6, 1e-5
LOSS_RTOL = 1e-6
LEARNED_LOSS = 0.5 * math.log(CLASSES)


# -- records ---------------------------------------------------------------------------------


def ratios(times: dict[str, list[float]], numerator: str) -> dict[str, dict[str, float]]:
    """``numerator``'s epoch time over every other method's, per round: {"median", "min_min"}."""
    mine = times[numerator]
    found = {}
    for name, other in times.items():
        if name != numerator and mine and other:
            found[name] = {
                "median": statistics.median(a / b for a, b in zip(mine, other)),
                "min_min": min(mine) / min(other),
            }
    return found


def agreement(mine: list[tuple[np.ndarray, np.ndarray]], other: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """How far ``mine`` parameters are from ``other``'s: the largest absolute difference, and the
    share of the gate's tolerance used, max |a − b| / (WEIGHT_ATOL + WEIGHT_RTOL·|b|) (≤ 1 passes)."""
    a = np.concatenate([np.ravel(p) for pair in mine for p in pair]).astype(np.float64)
    b = np.concatenate([np.ravel(p) for pair in other for p in pair]).astype(np.float64)
    diff = np.abs(a - b)
    return {
        "max_abs_diff": float(diff.max()),
        "tolerance_used": float((diff / (WEIGHT_ATOL + WEIGHT_RTOL * np.abs(b))).max()),
    }


def make_record(run: CaseRun) -> dict[str, Any]:
    """The JSON record of a finished ``CaseRun`` (rounds cut to the fewest any method ran)."""
    case, backend = run.case, run.backend
    rounds = min(len(t) for t in run.times.values())
    times = {name: t[:rounds] for name, t in run.times.items()}
    flops = epoch_flops(case.sizes, case.samples)
    median_s = statistics.median(times[PACKAGE]) if rounds else math.nan
    gflops = flops / median_s / 1e9
    peak = statistics.median(run.peaks[:rounds] or [math.nan])
    info = backend.describe()
    versions = {"mlp_xp": __version__, "python": platform.python_version(), **info}
    if "torch" in run.methods:
        versions["torch"] = run.methods["torch"].torch.__version__
    if "jax_scan" in run.methods:
        versions["jax"] = run.methods["jax_scan"].jax.__version__
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    final = {name: method.weights() for name, method in run.methods.items()}
    last_loss = {name: m.last_loss for name, m in run.methods.items()}
    record = {
        "kind": "mlp_xp.epoch",
        "id": case.id,
        "backend": backend.spec,
        "library": backend.name,
        "device": info.get("gpu", str(backend.device)),
        "dtype": "float32",
        "storage": case.storage,
        "model": case.model,
        "hidden": list(case.hidden),
        "batch_size": case.batch_size,
        "samples": case.samples,
        "optimizer": case.optimizer,
        "lr": case.lr,
        "rounds": rounds,
        "methods": list(run.methods),
        "ops_per_step": run.ops["step_ops"],
        "ops": run.ops,
        "epoch_gflop": flops / 1e9,
        "package_s": median_s,
        "samples_per_s": case.samples / median_s,
        "gflops": gflops,
        "peak_gemm": "x".join(map(str, run.gemm)),
        "peak_source": backend.name if backend.is_gpu else "numpy",
        "peak_gflops": peak,
        "peak_share": gflops / peak,  # = samples_per_s / peak_samples_per_s: the table's two columns agree
        "peak_samples_per_s": case.samples * peak * 1e9 / flops,
        "seconds": times,
        "median_s": medians,
        "first_epoch_s": run.first_s,
        "compile_s": compile_seconds(run.first_s, medians),
        "ratios": ratios(times, PACKAGE),
        "compiled_ratios": ratios(times, PACKAGE_COMPILED) if PACKAGE_COMPILED in times else {},
        "last_loss": last_loss,
        "agreement": {name: agreement(final[PACKAGE], w) for name, w in final.items() if name != PACKAGE},
        "dataset_bytes_on_device": _nbytes(run.methods[PACKAGE].loader.x),
        "device_memory_bytes": backend.memory_in_use(),  # the library's pool; None on the CPU
        "blas_threads": [b.get("num_threads") for b in info.get("blas", [])],
        "versions": versions,
    }
    record["gate"] = gate(record)
    return record


def compile_seconds(first_s: dict[str, float], medians: dict[str, float]) -> dict[str, float]:
    """Compile time of each compiled method: its first epoch (compile + run) less its median
    epoch, 0 where that drowns in the epochs' noise."""
    return {n: max(0.0, first_s[n] - medians[n]) for n in COMPILED_METHODS if n in medians and n in first_s}


def _nbytes(x: Any) -> int:
    """Bytes held by array ``x`` of any Array API library."""
    return math.prod(x.shape) * np.dtype(str(x.dtype).split(".")[-1]).itemsize


# -- the gate ----------------------------------------------------------------------------------


def slowness(record: dict[str, Any], limit: float = SLOWNESS_LIMIT) -> str | None:
    """A message when the package's epoch exceeds ``limit`` × the same-math hand loop's in both
    the median of per-round ratios and min/min (NumPy and CuPy backends), else None."""
    ratio = record["ratios"].get(HAND)
    if ratio is None or record["library"] not in SLOWNESS_LIBRARIES:
        return None
    if min(ratio["median"], ratio["min_min"]) <= limit:
        return None
    return (
        f"{record['id']}: the package's epoch takes {ratio['median']:.2f}x (median of rounds; min/min "
        f"{ratio['min_min']:.2f}x) the same-math hand loop's, over the {limit}x limit."
    )


def not_learned(record: dict[str, Any]) -> str | None:
    """A message when the hand loop's last-epoch loss is not below ½·ln 10 (or missing)."""
    if HAND not in record["last_loss"]:
        return None
    loss = record["last_loss"][HAND]
    if loss is not None and loss < LEARNED_LOSS:
        return None
    return (
        f"{record['id']}: the hand loop's last-epoch loss is {loss} (chance: ln 10 = {math.log(CLASSES):.3f}), "
        f"not below {LEARNED_LOSS:.3f}: the data were not learned, so agreement proves nothing."
    )


def wrong_math(record: dict[str, Any]) -> str | None:
    """A message when the package's final parameters or last-epoch loss differ from the hand
    loop's beyond the tolerances, else None."""
    if HAND not in record["agreement"] or record["library"] not in SAME_MATH_LIBRARIES:
        return None
    weights = record["agreement"][HAND]
    mine, theirs = record["last_loss"][PACKAGE], record["last_loss"][HAND]
    problems = []
    if not weights["tolerance_used"] <= 1.0:
        problems.append(
            f"final parameters differ by up to {weights['max_abs_diff']:.3g} "
            f"({weights['tolerance_used']:.3g}x the tolerance {WEIGHT_ATOL:g} + {WEIGHT_RTOL:g}*|hand|)"
        )
    if mine is None or theirs is None or not abs(mine - theirs) <= LOSS_RTOL * abs(theirs):
        problems.append(f"last-epoch loss {mine} but the hand loop's {theirs} (rtol {LOSS_RTOL:g})")
    if not problems:
        return None
    return f"{record['id']}: not the hand loop's math: " + "; ".join(problems) + "."


def gate(record: dict[str, Any]) -> list[str]:
    """Every rule of the gate that ``record`` breaks (module docstring); empty when it passes."""
    return [p for p in (not_learned(record), wrong_math(record), slowness(record)) if p]


# -- reports ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, cores, load, Python, NumPy/torch/JAX versions and BLAS pools of this machine."""
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
        import jax

        info["jax"] = jax.__version__
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    return info


COLUMNS = (
    ("eager/hand", "ratios", "hand"),
    ("eager/ref", "ratios", "reference"),
    ("eager/torch", "ratios", "torch"),
    ("eager/jax", "ratios", "jax_scan"),
    ("comp/eager", "compiled_ratios", "package"),
    ("comp/np", "compiled_ratios", "package_numpy"),
    ("comp/torch", "compiled_ratios", "torch"),
    ("comp/jax", "compiled_ratios", "jax_scan"),
)
"""Ratio columns of the table: header, record key, comparator."""


def _median(record: dict[str, Any], key: str, name: str) -> str:
    r = record.get(key, {}).get(name)
    return "-" if r is None else f"{r['median']:.2f}"


def _seconds(record: dict[str, Any], name: str) -> str:
    value = record.get("compile_s", {}).get(name)
    return "-" if value is None else f"{value:.1f}"


def format_table(records: list[dict[str, Any]]) -> str:
    """The summary table (ratios: median of per-round ratios, min/min in the JSON) and notes:
    the gate's findings, uint8 storage."""
    head = ("backend", "model", "batch", "opt", "ops/step", "samples/s", "% peak", *(c[0] for c in COLUMNS),
            "compile s", "jax compile s")
    rows = [head]
    for r in records:
        backend = r["backend"] + ("" if r["storage"] == "float32" else f" [{r['storage']}]")
        model = r["model"] + ("" if r["samples"] == 60000 else f" N={r['samples']}")
        rows.append(
            (
                backend,
                model,
                str(r["batch_size"]),
                r["optimizer"],
                str(r["ops_per_step"]),
                f"{r['samples_per_s']:,.0f}",
                f"{100 * r['peak_share']:.0f}%",
                *(_median(r, key, name) for _, key, name in COLUMNS),
                _seconds(r, PACKAGE_COMPILED),
                _seconds(r, "jax_scan"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    notes = textwrap.wrap(
        "ratios: epoch time of A / epoch time of B, median of interleaved per-round ratios (min/min in the JSON); "
        "> 1: A is slower. eager = mlp_xp fit, comp = mlp_xp fit(compile=True), np = mlp_xp fit on NumPy, "
        "hand = same math in NumPy/CuPy "
        "incl. loss and correct count, ref = shared/reference numpy_epoch (no metrics), torch = PyTorch eager, "
        "jax = hand-written jax.jit + lax.scan epoch. compile s = first epoch - median epoch (0 within noise). "
        "ops/step: array operations per training step (mlp_xp.opcount). % peak: of the sgemm rate of the "
        "model's biggest GEMM at that batch size, measured each round.",
        width=max(100, len(lines[0])),
    )
    for r in records:
        if PACKAGE_FLOAT32 in r["ratios"]:
            q = r["ratios"][PACKAGE_FLOAT32]
            notes.append(
                f"{r['id']}: uint8 storage epoch = {q['median']:.3f}x (min/min {q['min_min']:.3f}x) the "
                f"float32-storage epoch ({r['median_s'][PACKAGE]:.3f} s vs {r['median_s'][PACKAGE_FLOAT32]:.3f} s)."
            )
    for r in records:
        found = r.get("gate", gate(r))
        hand = r["agreement"].get(HAND)
        verdict = "; ".join(found) if found else "passed"
        detail = "" if hand is None else f" (max |package - hand| {hand['max_abs_diff']:.2g})"
        notes.append(f"gate {r['id']}: {verdict}{detail}")
    return "\n".join(lines + notes)
