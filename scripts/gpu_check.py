"""One command that proves every GPU path of mlp_xp and records its figures.

Run through ``scripts/gpu_check.sh`` (which installs wheels given with ``--wheels``). Steps, each
a subprocess with its own time limit, its output kept in ``OUT/logs/``:

1. ``info``      — ``mlp-xp info``: backends, devices, versions
2. ``tests``     — ``pytest --backend cuda,torch:cuda[,jax:cuda]`` (the backend matrix on the GPU)
3. ``train``     — ``mlp-xp train --device cuda`` on Fashion-MNIST: the default recipe and the d2l
                   recipe (seed 0), and the default recipe with ``--compile`` on jax:cuda and torch:cuda
4. ``bench``     — ``mlp-xp bench`` on cuda, torch:cuda (and jax:cuda) with ``--compile``, three models
                   × batch 64/256/1024/4096, comparators: hand CuPy loop, torch CUDA eager, JAX scan
5. ``plot``      — ``scripts/bench_plot.py`` of the bench JSON

Writes ``OUT/gpu_check.json`` (the report: machine, CUDA, every step's status, seconds and figures;
rewritten after every step, so a run cut off keeps what it did) and ``OUT/bench.png``, and prints a
summary table. The steps share one time budget (``--budget``, default 540 s: a 10-minute call with
room for the machine's start); a step gets at most what is left of it, and steps that find none
left are reported as skipped. A step past its time is killed with everything it started.

Each step runs with ``MLP_XP_DATA`` set to ``--data-dir`` (the tests read real data from there),
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (JAX would otherwise take 75 % of the GPU's memory at its
first array, leaving CuPy and torch in the same process short) and Open MPI's run-as-root consent
(the GPU machines run commands as root).

Exit codes: 0 every step passed; 1 a step failed (the report says which); 3 no CUDA device (no step
run: the report records why; this is what a CPU machine gives, e.g. ``--dry-run`` in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

NO_CUDA_DEVICE = 3
REPORT = "gpu_check.json"
BUDGET = 540.0
"""Seconds for all steps together (a 10-minute device call, less the machine's start)."""
LEAST = 10.0
"""A step is skipped when less than this is left of the budget."""
D2L = "--hidden 256 --init normal --init-std 0.01 --optimizer sgd --lr 0.5 --batch-size 256 --epochs 10 --seed 0"


@dataclass
class Step:
    """One check: a command line, its time limit, and what it gave."""

    name: str
    argv: list[str]
    timeout: float
    status: str = "not run"  # passed, failed, timed out, skipped (no time left)
    seconds: float = 0.0
    exit_code: int | None = None
    figures: dict = field(default_factory=dict)
    tail: str = ""


def cuda_facts() -> dict:
    """The driver's CUDA version and GPUs from ``nvidia-smi``, and what CuPy, torch and JAX see."""
    facts: dict = {"nvidia_smi": None, "cuda_driver_version": None, "gpus": []}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi], capture_output=True, text=True, timeout=60).stdout
        facts["nvidia_smi"] = smi
        found = re.search(r"CUDA Version:\s*([\d.]+)", out)
        facts["cuda_driver_version"] = found.group(1) if found else None
        query = [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"]
        facts["gpus"] = [
            line.strip() for line in subprocess.run(query, capture_output=True, text=True).stdout.splitlines()
        ]
    probe = (
        "import json, mlp_xp\n"
        "found = mlp_xp.available_backends()\n"
        "print(json.dumps({k: v for k, v in found.items() if 'cuda' in k}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    facts["backends"] = json.loads(result.stdout) if result.returncode == 0 else {"error": result.stderr[-2000:]}
    return facts


def usable(facts: dict) -> list[str]:
    """The CUDA backend families that work here (``cuda`` = CuPy, ``torch:cuda``, ``jax:cuda``)."""
    return [spec for spec, state in facts.get("backends", {}).items() if state == "ok"]


def plan(out: Path, specs: list[str], data_dir: str | None, quick: bool) -> list[Step]:
    """The steps for the usable CUDA backends ``specs``."""
    cli = [sys.executable, "-m", "mlp_xp.cli"]
    data = ["--data-dir", data_dir] if data_dir else []
    first = "cuda" if "cuda" in specs else specs[0]
    steps = [Step("info", [*cli, "info"], 120)]
    steps.append(
        Step(
            "tests",
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--backend={','.join(specs)}",
                "-k",
                "cuda",  # the tests the GPU backends run (their ids name them) and the CUDA-only ones
                "tests",
            ],
            300,
        )
    )
    epochs = ["--epochs", "2"] if quick else []
    steps.append(
        Step(
            f"train default {first}",
            [
                *cli,
                "train",
                "--device",
                first,
                *data,
                "--quiet",
                *epochs,
                "--metrics-json",
                str(out / "train_default.json"),
            ],
            240,
        )
    )
    steps.append(
        Step(
            f"train d2l {first}",
            [
                *cli,
                "train",
                "--device",
                first,
                *data,
                "--quiet",
                *D2L.split(),
                *epochs,
                "--metrics-json",
                str(out / "train_d2l.json"),
            ],
            240,
        )
    )
    for spec in (s for s in specs if s != "cuda"):
        name = spec.replace(":", "_")
        steps.append(
            Step(
                f"train default {spec} --compile",
                [
                    *cli,
                    "train",
                    "--device",
                    spec,
                    *data,
                    "--quiet",
                    "--compile",
                    *epochs,
                    "--metrics-json",
                    str(out / f"train_{name}_compile.json"),
                ],
                300,
            )
        )
    models = ["256"] if quick else ["100", "256", "1024,1024"]
    batches = ["256"] if quick else ["64", "256", "1024", "4096"]
    steps.append(
        Step(
            "bench",
            [
                *cli,
                "bench",
                "--device",
                ",".join(specs),
                "--compile",
                "--skip-unavailable",
                "--hidden",
                *models,
                "--batch-size",
                *batches,
                "--rounds",
                "1" if quick else "3",
                "--json",
                str(out / "bench.json"),
            ],
            420,
        )
    )
    steps.append(
        Step(
            "plot",
            [
                sys.executable,
                str(Path(__file__).with_name("bench_plot.py")),
                str(out / "bench.json"),
                "-o",
                str(out / "bench.png"),
            ],
            120,
        )
    )
    return steps


def step_environment(data_dir: str | None) -> dict[str, str]:
    """The environment of every step (see the module docstring)."""
    env = {
        **os.environ,
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if data_dir:
        env["MLP_XP_DATA"] = str(Path(data_dir).expanduser().absolute())
    return env


def run(step: Step, logs: Path, env: dict[str, str] | None = None, limit: float | None = None) -> None:
    """Run ``step`` for at most ``limit`` seconds (default: its own limit) in a process group of
    its own, killed whole at the limit; keep its output in ``logs/<name>.log`` and its last lines
    in the report."""
    started = time.perf_counter()
    log = logs / (re.sub(r"[^A-Za-z0-9_.-]+", "_", step.name) + ".log")
    process = subprocess.Popen(
        step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=step.timeout if limit is None else min(limit, step.timeout))
        step.exit_code = process.returncode
        step.status = "passed" if process.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # MPI ranks and compile workers too: they hold the GPU
        output, _ = process.communicate()
        step.status = "timed out"
    step.seconds = time.perf_counter() - started
    log.write_text(" ".join(step.argv) + "\n\n" + output)
    step.tail = "\n".join(output.strip().splitlines()[-12:])
    step.figures = figures(step, output)


def figures(step: Step, output: str) -> dict:
    """The numbers a step's output carries: test counts, test accuracy, samples/s."""
    found: dict = {}
    if step.name == "tests":
        for count, what in re.findall(r"(\d+) (passed|failed|skipped|errors?)", output):
            found[what] = int(count)
    accuracy = re.search(r"test accuracy ([\d.]+)", output)
    if accuracy:
        found["test_accuracy"] = float(accuracy.group(1))
    metrics = next((Path(a) for a in step.argv if a.endswith(".json") and "train" in Path(a).name), None)
    if metrics is not None and metrics.exists():
        epochs = json.loads(metrics.read_text()).get("epochs", [])
        if epochs:
            found["samples_per_s"] = round(max(e["samples_per_s"] for e in epochs))
            found["train_loss"] = epochs[-1]["train_loss"]
    return found


def bench_rows(out: Path) -> list[dict]:
    """The bench records' key figures, for the report and the summary."""
    path = out / "bench.json"
    if not path.exists():
        return []
    rows = []
    for r in json.loads(path.read_text()).get("records", []):
        ratios = {name: round(v["median"], 3) for name, v in r.get("ratios", {}).items()}
        rows.append(
            {
                "backend": r["backend"],
                "model": r["model"],
                "batch": r["batch_size"],
                "samples_per_s": round(r["samples_per_s"]),
                "ratios": ratios,
                "ops_per_step": r.get("ops_per_step"),
            }
        )
    return rows


def summary(report: dict) -> str:
    """The table printed at the end."""
    lines = [
        f"mlp_xp GPU check: {report['status']}  (CUDA driver {report['cuda'].get('cuda_driver_version')}, "
        f"GPUs: {'; '.join(report['cuda'].get('gpus') or ['none'])})"
    ]
    for step in report["steps"]:
        extra = ", ".join(f"{k} {v}" for k, v in step["figures"].items())
        lines.append(f"  {step['status']:<10} {step['seconds']:7.1f} s  {step['name']:<34} {extra}")
    for row in report["bench"]:
        ratios = "  ".join(f"x{name} {value}" for name, value in row["ratios"].items())
        lines.append(
            f"  bench {row['backend']:<12} {row['model']:<18} B{row['batch']:<5} "
            f"{row['samples_per_s']:>12,} samples/s  {ratios}"
        )
    if report["status"] == "no CUDA device":
        lines.append(f"  no usable CUDA device: {json.dumps(report['cuda'].get('backends'))[:400]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/gpu_check", help="folder for the report, logs and PNG")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("MLP_XP_DATA"),
        help="folder with the four Fashion-MNIST IDX files (default: $MLP_XP_DATA, the usual places)",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (2 epochs, one bench case): a smoke check")
    parser.add_argument("--dry-run", action="store_true", help="probe and write the report, run no step")
    parser.add_argument("--budget", type=float, default=BUDGET, help="seconds for all steps together (default 540)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    facts = cuda_facts()
    specs = usable(facts)
    steps = [] if not specs or args.dry_run else plan(out, specs, args.data_dir, args.quick)
    env = step_environment(args.data_dir)
    report = write_report(out, facts, specs, steps, args.dry_run, started)
    for step in steps:
        left = args.budget - (time.perf_counter() - started)
        if left < LEAST:
            step.status = "skipped"
            step.tail = f"not run: {left:.0f} s of the {args.budget:.0f} s budget left"
        else:
            print(f"... {step.name}", file=sys.stderr, flush=True)
            run(step, out / "logs", env, left)
        report = write_report(out, facts, specs, steps, args.dry_run, started)
    print(summary(report))
    print(f"report: {out / REPORT}")
    return NO_CUDA_DEVICE if not specs else 1 if report["failed"] else 0


def write_report(out: Path, facts: dict, specs: list[str], steps: list[Step], dry_run: bool, started: float) -> dict:
    """Write ``OUT/gpu_check.json`` as things stand (steps not run yet are listed as such)."""
    done = [s for s in steps if s.status != "not run"]
    failed = [s.name for s in done if s.status != "passed"]
    finished = len(done) == len(steps)
    status = (
        "no CUDA device" if not specs else "dry run" if dry_run else "failed" if failed
        else "passed" if finished else "running"
    )  # fmt: skip
    report = {
        "kind": "mlp_xp.gpu_check",
        "status": status,
        "failed": failed,
        "seconds": time.perf_counter() - started,
        "cuda": facts,
        "backends": specs,
        "steps": [asdict(s) for s in steps],
        "bench": bench_rows(out),
    }
    (out / REPORT).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    sys.exit(main())
