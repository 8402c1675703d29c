"""``mlp-xp bench`` under an MPI launcher: data-parallel training throughput per number of processes.

Launched on ``P`` processes, every case (model, global batch) is measured on 1, 2, 4, ... and
``P`` processes of that one launch: the first ``k`` ranks form a communicator and train, the
others wait without spinning (a polled barrier), so every count runs on the same machine state.
Counts alternate within each round (their order rotating per round) because a shared machine's
speed drifts; figures are medians over rounds. One measurement is one epoch of ``fit`` on
synthetic data (``--samples`` samples, float32, SGD), timed on rank 0 from a barrier.

Reported per count ``k``: samples/s of the whole run, scaling efficiency (``k``-process
samples/s ÷ ``k`` × one-process samples/s, median of per-round ratios), the share of the epoch
spent inside the gradient Allreduce (mean over ranks; this includes waiting for the slowest
rank), the share an Allreduce of the gradient buffer takes alone (timed after a barrier,
times the steps per epoch): the communication itself, and the CPU time each process got per
second of the epoch (mean over ranks; below 1 when other jobs share the cores, which caps the
efficiency on a busy machine). ``per CPU-s`` is the efficiency of samples per CPU-second
consumed (MPI's busy waiting counts as consumed): the parallel overhead, whatever share of the
cores the machine's other jobs left to the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backends import host_rng
from .data.loader import DeviceLoader
from .distributed import Communicator, rank_backend
from .losses import SoftmaxCrossEntropy
from .mlp import make_mlp
from .optim import SGD
from .train import fit

FEATURES, CLASSES, LR = 784, 10, 0.1
DEFAULT_MODELS = ((256,), (1024, 1024))
DEFAULT_BATCHES = (256, 1024)


def process_counts(size: int) -> list[int]:
    """1, 2, 4, ... below ``size``, and ``size``."""
    counts, k = [], 1
    while k < size:
        counts.append(k)
        k *= 2
    return [*counts, size]


class ScalingCase:
    """One model and global batch, set up on every count of processes this rank belongs to."""

    def __init__(self, comm: Communicator, args: argparse.Namespace, hidden: tuple[int, ...], batch: int) -> None:
        self.comm, self.hidden, self.batch = comm, hidden, batch
        self.counts = process_counts(comm.size)
        rng = host_rng(0)
        x = rng.standard_normal((args.samples, FEATURES), dtype=np.float32)
        y = rng.integers(0, CLASSES, args.samples)
        self.backend = rank_backend(args.device, comm)
        self.runs: dict[int, tuple[Communicator, Any, Any, DeviceLoader]] = {}
        for k in self.counts:
            part = comm.split(comm.rank < k)  # collective on every rank
            if part is None:
                continue
            model = make_mlp(FEATURES, hidden, CLASSES).init(self.backend, seed=0)
            loader = DeviceLoader(x, y, self.backend, batch_size=batch, seed=0, comm=part)
            self.runs[k] = (part, model, SGD(model, LR), loader)
        self.epochs = dict.fromkeys(self.counts, 0)
        self.loss = SoftmaxCrossEntropy(check_labels=False)

    @property
    def name(self) -> str:
        return "-".join(map(str, (FEATURES, *self.hidden, CLASSES))) + f" B{self.batch}"

    def measure(self, k: int) -> tuple[float, float, float, float] | None:
        """One epoch on ``k`` processes: (seconds on rank 0, share of it inside the Allreduce
        and CPU seconds per second, both averaged over the ``k`` ranks, share an Allreduce
        alone would take); None on the ranks that wait. Collective over the whole launch."""
        self.comm.barrier(idle=True)
        result = None
        if k in self.runs:
            part, model, optimizer, loader = self.runs[k]
            part.barrier()
            in_reduce = part.allreduce_seconds
            cpu = time.process_time()
            started = time.perf_counter()
            epoch = self.epochs[k]
            fit(model, self.loss, optimizer, loader, epochs=epoch + 1, start_epoch=epoch, progress=False, log=None)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
            self.epochs[k] = epoch + 1
            reduce_share, cpu_share = part.sum_floats([(part.allreduce_seconds - in_reduce) / seconds, cpu / seconds])
            alone = self._reduce_alone(part, model) * len(loader) / seconds
            result = (seconds, reduce_share / k, alone, cpu_share / k)
        self.comm.barrier(idle=True)
        return result

    def _reduce_alone(self, part: Communicator, model: Any, repeats: int = 5) -> float:
        """Median seconds of one Allreduce of a gradient-sized buffer, started together."""
        if part.size == 1:
            return 0.0
        buffer = self.backend.xp.zeros_like(model.flat.data)
        times = []
        for _ in range(repeats):
            part.barrier()
            started = time.perf_counter()
            part.allreduce(buffer, self.backend)
            times.append(time.perf_counter() - started)
        return statistics.median(times)


def run_scaling_bench(args: argparse.Namespace, comm: Communicator) -> int:
    """``mlp-xp bench`` on ``comm``'s processes: every case on 1, 2, 4, ... processes."""
    if "," in args.device:
        raise ValueError("under mpiexec, bench measures one --device at a time.")
    if args.rounds < 1 or args.samples < 1:
        raise ValueError("--rounds and --samples must be positive.")
    models = [tuple(int(w) for w in h.split(",")) for h in args.hidden] if args.hidden else list(DEFAULT_MODELS)
    batches = args.batch_size or list(DEFAULT_BATCHES)
    threads = _blas_threads()
    say = print if comm.is_root else (lambda *a, **k: None)
    load = os.getloadavg()
    say(
        f"MPI scaling bench: {comm.size} processes ({comm.local_size} on this node, {os.cpu_count()} CPUs), "
        f"device {args.device}, BLAS threads per process {threads}, {args.samples} samples per epoch, "
        f"{args.rounds} rounds; load average {load[0]:.2f}"
    )
    if threads is not None and threads * comm.local_size > (os.cpu_count() or 1):
        say("warning: processes × BLAS threads exceed the CPUs; set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS")
    records = []
    for hidden in models:
        for batch in batches:
            case = ScalingCase(comm, args, hidden, batch)
            say(f"... {case.name}", file=sys.stderr, flush=True)
            for k in case.counts:  # warm-up epoch per count
                case.measure(k)
            rounds: list[dict[int, tuple[float, float, float, float]]] = []
            for round_ in range(args.rounds):
                shift = round_ % len(case.counts)
                order = case.counts[shift:] + case.counts[:shift]
                rounds.append({k: result for k in order if (result := case.measure(k)) is not None})
            if comm.is_root:
                records.append(_record(case, rounds, args.samples))
    if comm.is_root:
        say(format_scaling(records))
        if args.json:
            document = {
                "processes": comm.size,
                "blas_threads": threads,
                "load_start": load,
                "load_end": os.getloadavg(),
            }
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**document, "records": records}, indent=1))
            say(f"wrote {args.json}")
    return 0


def _record(case: ScalingCase, rounds: list[dict[int, tuple[float, ...]]], samples: int) -> dict[str, Any]:
    """Medians over rounds for each count (rank 0 belongs to every count)."""
    rows = []
    for k in case.counts:
        seconds = [r[k][0] for r in rounds]
        rows.append(
            {
                "processes": k,
                "seconds": statistics.median(seconds),
                "samples_per_s": samples / statistics.median(seconds),
                "efficiency": statistics.median(r[1][0] / (k * r[k][0]) for r in rounds),
                "cpu_efficiency": statistics.median(r[1][0] * r[1][3] / (k * r[k][0] * r[k][3]) for r in rounds),
                "allreduce_share": statistics.median(r[k][1] for r in rounds),
                "allreduce_alone_share": statistics.median(r[k][2] for r in rounds),
                "cpu_per_process": statistics.median(r[k][3] for r in rounds),
                "round_seconds": seconds,
            }
        )
    return {"case": case.name, "rows": rows}


def format_scaling(records: list[dict[str, Any]]) -> str:
    """The table of ``run_scaling_bench``: one row per case and number of processes."""
    header = (
        "case",
        "processes",
        "samples/s",
        "efficiency",
        "per CPU-s",
        "in Allreduce",
        "Allreduce alone",
        "CPU/process",
    )
    rows = [header]
    for record in records:
        for row in record["rows"]:
            rows.append(
                (
                    record["case"],
                    str(row["processes"]),
                    f"{row['samples_per_s'] / 1000:.1f}k",
                    f"{100 * row['efficiency']:.1f} %",
                    f"{100 * row['cpu_efficiency']:.1f} %",
                    f"{100 * row['allreduce_share']:.1f} %",
                    f"{100 * row['allreduce_alone_share']:.1f} %",
                    f"{row['cpu_per_process']:.2f}",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def _blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts) if counts else None
