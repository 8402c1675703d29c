"""``mlp-xp bench`` under an MPI launcher: data-parallel training throughput per number of processes.

Launched on ``P`` processes, every case (model, global batch) is measured on 1, 2, 4, ... and
``P`` processes of that one launch: the first ``k`` ranks form a communicator and train, the
others wait without spinning (a polled barrier), so every count runs on the same machine state.
Each ``k > 1`` is also measured as ``k`` *independent* one-process trainings running at the same
time: the throughput the machine gives ``k`` processes with no communication at all, which is
what a shared machine's other jobs leave over. Measurements alternate within each round (their
order rotating per round) because a shared machine's speed drifts; figures are medians over
rounds. One measurement is one epoch of ``fit`` on synthetic data (``--samples`` samples,
float32, SGD), timed on each rank from a barrier.

Reported per count ``k``: samples/s of the run; the scaling efficiency (``k``-process samples/s
÷ ``k`` × one-process samples/s, median of per-round ratios); the same against the ``k``
independent processes (the parallel overhead, whatever share of the cores other jobs left); the
share of the epoch spent inside the gradient Allreduce (mean over ranks; includes waiting for
the slowest rank); the share an Allreduce of the gradient buffer takes alone (timed after a
barrier, times the steps per epoch): the communication itself; and the CPU time each process
got per second (mean over ranks; below 1 when other jobs share the cores).
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
PARALLEL, INDEPENDENT = "parallel", "independent"


def process_counts(size: int) -> list[int]:
    """1, 2, 4, ... below ``size``, and ``size``."""
    counts, k = [], 1
    while k < size:
        counts.append(k)
        k *= 2
    return [*counts, size]


class Training:
    """A model, its optimizer and a loader on ``comm``, trained one epoch at a time."""

    def __init__(self, comm: Communicator, backend: Any, data: tuple[np.ndarray, np.ndarray], hidden, batch) -> None:
        self.comm = comm
        self.model = make_mlp(FEATURES, hidden, CLASSES).init(backend, seed=0)
        self.optimizer = SGD(self.model, LR)
        self.loader = DeviceLoader(*data, backend, batch_size=batch, seed=0, comm=comm)
        self.loss = SoftmaxCrossEntropy(check_labels=False)
        self.epoch = 0

    def run_epoch(self) -> tuple[float, float, float]:
        """Train one epoch: (seconds, seconds inside the gradient Allreduce, CPU seconds)."""
        in_reduce, cpu, started = self.comm.allreduce_seconds, time.process_time(), time.perf_counter()
        fit(
            self.model,
            self.loss,
            self.optimizer,
            self.loader,
            epochs=self.epoch + 1,
            start_epoch=self.epoch,
            progress=False,
            log=None,
        )
        self.epoch += 1
        seconds = time.perf_counter() - started
        return seconds, self.comm.allreduce_seconds - in_reduce, time.process_time() - cpu

    def reduce_alone(self, repeats: int = 5) -> float:
        """Median seconds of one Allreduce of a gradient-sized buffer, started together."""
        if self.comm.size == 1:
            return 0.0
        buffer = self.model.backend.xp.zeros_like(self.model.flat.data)
        times = []
        for _ in range(repeats):
            self.comm.barrier()
            started = time.perf_counter()
            self.comm.allreduce(buffer, self.model.backend)
            times.append(time.perf_counter() - started)
        return statistics.median(times)


class ScalingCase:
    """One model and global batch: a one-process training on every rank (the ``k = 1`` and
    independent measurements) and a ``k``-process one for every count this rank belongs to."""

    def __init__(self, comm: Communicator, args: argparse.Namespace, hidden: tuple[int, ...], batch: int) -> None:
        self.comm, self.hidden, self.batch, self.samples = comm, hidden, batch, args.samples
        self.counts = process_counts(comm.size)
        rng = host_rng(0)
        data = rng.standard_normal((args.samples, FEATURES), dtype=np.float32), rng.integers(0, CLASSES, args.samples)
        backend = rank_backend(args.device, comm)
        self.alone = Training(Communicator(), backend, data, hidden, batch)
        self.parallel: dict[int, Training] = {}
        for k in self.counts[1:]:
            part = comm.split(comm.rank < k)  # collective on every rank
            if part is not None:
                self.parallel[k] = Training(part, backend, data, hidden, batch)

    @property
    def name(self) -> str:
        return "-".join(map(str, (FEATURES, *self.hidden, CLASSES))) + f" B{self.batch}"

    def schedule(self) -> list[tuple[int, str]]:
        return [(1, PARALLEL)] + [(k, mode) for k in self.counts[1:] for mode in (INDEPENDENT, PARALLEL)]

    def measure(self, k: int, mode: str) -> dict[str, float]:
        """One epoch on the first ``k`` ranks, data-parallel or as independent one-process
        runs. Collective over the whole launch; every rank returns the same figures."""
        self.comm.barrier(idle=True)
        seconds = in_reduce = cpu = alone = 0.0
        member = self.comm.rank < k
        if member:
            training = self.alone if k == 1 or mode == INDEPENDENT else self.parallel[k]
            training.comm.barrier()
            seconds, in_reduce, cpu = training.run_epoch()
            alone = training.reduce_alone() * len(training.loader)
        mine = [self.samples / seconds, in_reduce / seconds, cpu / seconds] if member else [0.0, 0.0, 0.0]
        root = [seconds, alone / seconds] if self.comm.is_root else [0.0, 0.0]
        rates, reduce_shares, cpu_shares, root_seconds, alone_share = self.comm.sum_floats(mine + root)
        self.comm.barrier(idle=True)
        return {
            "seconds": root_seconds,
            "samples_per_s": rates if mode == INDEPENDENT else self.samples / root_seconds,
            "allreduce_share": reduce_shares / k,
            "allreduce_alone_share": alone_share,
            "cpu_per_process": cpu_shares / k,
        }


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
            schedule = case.schedule()
            for k, mode in schedule:  # warm-up epoch of each
                case.measure(k, mode)
            rounds = []
            for round_ in range(args.rounds):
                shift = round_ % len(schedule)
                rounds.append({entry: case.measure(*entry) for entry in schedule[shift:] + schedule[:shift]})
            records.append(_record(case, rounds))
    say(format_scaling(records))
    if args.json and comm.is_root:
        document = {"processes": comm.size, "blas_threads": threads, "load_start": load, "load_end": os.getloadavg()}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**document, "records": records}, indent=1))
        say(f"wrote {args.json}")
    return 0


def _record(case: ScalingCase, rounds: list[dict[tuple[int, str], dict[str, float]]]) -> dict[str, Any]:
    """Medians over rounds for each count."""
    rows = []
    for k in case.counts:
        runs = [r[(k, PARALLEL)] for r in rounds]
        row = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        row["processes"] = k
        row["round_seconds"] = [run["seconds"] for run in runs]
        row["efficiency"] = statistics.median(
            r[(1, PARALLEL)]["seconds"] / (k * r[(k, PARALLEL)]["seconds"]) for r in rounds
        )
        if k > 1:
            independent = [r[(k, INDEPENDENT)]["samples_per_s"] for r in rounds]
            row["independent_samples_per_s"] = statistics.median(independent)
            row["vs_independent"] = statistics.median(run["samples_per_s"] / i for run, i in zip(runs, independent))
        rows.append(row)
    return {"case": case.name, "rows": rows}


def format_scaling(records: list[dict[str, Any]]) -> str:
    """The table of ``run_scaling_bench``: one row per case and number of processes."""
    header = (
        "case",
        "processes",
        "samples/s",
        "efficiency",
        "independent samples/s",
        "vs independent",
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
                    f"{row['independent_samples_per_s'] / 1000:.1f}k" if "vs_independent" in row else "",
                    f"{100 * row['vs_independent']:.1f} %" if "vs_independent" in row else "",
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
