"""``mlp-xp bench``: its arguments and the command (cases in turn, a table, an optional JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..backends import BackendUnavailableError, get_backend
from ..files import write_atomically
from .cases import BATCH_SIZES, GPU_BATCH_SIZES, MODELS, OPTIMIZERS, Case, parse_hidden
from .harness import CaseRun
from .report import format_table, machine_info


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="comma-separated backend specs to measure, e.g. numpy,torch,jax or cuda,torch:cuda (default: auto)",
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
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="sgd",
        help="sgd (lr 0.1) or adam (lr 1e-3) for every method (default: sgd)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time fit(compile=True) on backends that compile (jax, torch), mlp_xp eager on NumPy "
        "beside it on the CPU, and a hand-written jax.jit + lax.scan epoch where JAX sees the backend's kind "
        "of device",
    )
    parser.add_argument("--json", metavar="PATH", help="write the records and machine info as JSON")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager comparator")
    parser.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="skip a backend that this machine cannot provide, with one line, instead of failing",
    )
    parser.add_argument(
        "--gate",
        action="store_true",
        help="exit 1 when a case fails the benchmark gate (not learned, not the hand loop's math, "
        "or over 1.5x the hand loop's epoch time)",
    )


def run_bench_command(args: argparse.Namespace) -> int:
    if args.rounds < 1 or args.samples < 1:
        raise ValueError("--rounds and --samples must be positive.")
    models = [parse_hidden(h) for h in args.hidden] if args.hidden else list(MODELS)
    records: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    machine = machine_info()
    for spec in (s.strip() for s in args.device.split(",") if s.strip()):
        try:
            backend = get_backend(spec)
        except BackendUnavailableError as exc:
            if not args.skip_unavailable:
                raise
            skipped[spec] = str(exc)
            print(f"mlp-xp bench: skipped {spec}: {exc}", file=sys.stderr, flush=True)
            continue
        batches = args.batch_size or (GPU_BATCH_SIZES if backend.is_gpu else BATCH_SIZES)
        for storage in args.storage:
            for hidden in models:
                for batch in batches:
                    case = Case(backend.spec, hidden, batch, args.samples, storage, args.optimizer)
                    print(f"... {case.id}", file=sys.stderr, flush=True)
                    run = CaseRun(case, args.rounds, torch=not args.no_torch, compile=args.compile)
                    records.append(run.run_all())
                    if args.json:  # after every case, so that an interrupted run keeps what it measured
                        _write_json(args.json, machine, records, skipped)
    if args.json:
        _write_json(args.json, machine, records, skipped)
    if not records:
        print("mlp-xp bench: no case was measured (every backend was skipped)", file=sys.stderr)
    print(format_table(records))
    if args.json:
        print(f"wrote {args.json}")
    failed = [problem for record in records for problem in record["gate"]]
    for problem in failed:
        print(f"mlp-xp bench: gate: {problem}", file=sys.stderr)
    return 1 if args.gate and failed else 0


def _write_json(path: str, machine: dict[str, Any], records: list[dict[str, Any]], skipped: dict[str, str]) -> None:
    machine["loadavg_end"] = machine_info().get("loadavg")
    document = {"machine": machine, "records": records, "skipped": skipped}
    write_atomically(path, json.dumps(document, indent=1).encode())
