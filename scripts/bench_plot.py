"""Plot epoch throughput: samples/s against batch size, one panel per model.

Reads the JSON of ``mlp-xp bench --json`` or of ``pytest benchmarks/ --benchmark-json`` (the
records are in each benchmark's ``extra_info``); several files may be given (e.g. a CPU and a
GPU run). Solid lines: the package per backend (dash-dotted in its colour: ``fit(compile=True)``,
from ``--compile`` runs); thin lines: the comparators (same-math hand loop, PyTorch eager,
hand-written JAX jit+scan), taken from the first backend's runs; dashed: the sgemm-peak limit
(epoch GEMM FLOPs at the rate of the model's biggest GEMM, measured in the same run); stars:
uint8 storage.

    python scripts/bench_plot.py out/bench.json -o out/bench.png
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COMPARATORS = {
    "hand": ("hand loop, same math", ":"),
    "torch": ("PyTorch eager", "-."),
    "jax_scan": ("JAX jit + lax.scan", (0, (5, 1, 1, 1, 1, 1))),
}


def load_records(paths: list[str]) -> tuple[list[dict], list[str]]:
    """Epoch records and a one-line machine description per file."""
    records, machines = [], []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        if isinstance(doc, list):
            found, machine = doc, {}
        elif "benchmarks" in doc:  # pytest-benchmark
            found = [b.get("extra_info", {}) for b in doc["benchmarks"]]
            machine = doc.get("machine_info", {}).get("mlp_xp", {})
        else:
            found, machine = doc.get("records", []), doc.get("machine", {})
        records += [r for r in found if r.get("kind") == "mlp_xp.epoch"]
        if machine:
            machines.append(f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores")
    return records, machines


def _model_key(model: str) -> tuple[int, str]:
    sizes = [int(s) for s in model.split("-")]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:])), model


def plot(records: list[dict], out: str, title: str = "") -> Path:
    full = max(r["samples"] for r in records)
    main = [r for r in records if r["samples"] == full]
    models = sorted({r["model"] for r in main}, key=_model_key)
    backends = list(dict.fromkeys(r["backend"] for r in main if r["storage"] == "float32"))
    colors = {b: f"C{i}" for i, b in enumerate(backends)}
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in main if r["model"] == model]
        for backend in backends:
            mine = sorted(
                (r for r in rows if r["backend"] == backend and r["storage"] == "float32"),
                key=lambda r: r["batch_size"],
            )
            if mine:
                ax.plot(
                    [r["batch_size"] for r in mine],
                    [r["samples_per_s"] for r in mine],
                    "o-",
                    color=colors[backend],
                    lw=2.2,
                    label=f"mlp_xp {backend}",
                )
            compiled = [r for r in mine if "package_compiled" in r.get("median_s", {})]
            if compiled:
                ax.plot(
                    [r["batch_size"] for r in compiled],
                    [r["samples"] / r["median_s"]["package_compiled"] for r in compiled],
                    "s-.",
                    color=colors[backend],
                    lw=1.8,
                    label=f"mlp_xp {backend}, compiled",
                )
        # comparators and limits: one line per (kind, device kind), from the first backend's runs that
        # measured it (its own interleaved rounds; runs of other cases were taken at other times)
        lines: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        order = {b: i for i, b in enumerate(backends)}
        for r in sorted(rows, key=lambda r: order.get(r["backend"], len(order))):
            if r["storage"] != "float32":
                continue
            where = "GPU" if r["peak_source"] != "numpy" else "CPU"
            for name in COMPARATORS:
                if name in r.get("median_s", {}):
                    lines[(name, where)].setdefault(r["batch_size"], r["samples"] / r["median_s"][name])
            lines[("limit", f"{where}, {r['peak_source']}")].setdefault(r["batch_size"], r["peak_samples_per_s"])
        for (name, where), points in sorted(lines.items()):
            xs = sorted(points)
            ys = [points[x] for x in xs]
            if name == "limit":
                ax.plot(xs, ys, "--", marker="_", ms=12, color="0.35", lw=1.4, label=f"sgemm-peak limit ({where})")
            else:
                label, style = COMPARATORS[name]
                ax.plot(
                    xs,
                    ys,
                    linestyle=style,
                    color="0.55" if where == "CPU" else "0.15",
                    lw=1.4,
                    marker=".",
                    label=f"{label} ({where})",
                )
        for r in rows:
            if r["storage"] != "float32":
                ax.plot(
                    r["batch_size"],
                    r["samples_per_s"],
                    "*",
                    ms=13,
                    mec="k",
                    color=colors.get(r["backend"], "k"),
                    label=f"mlp_xp {r['backend']}, {r['storage']} data",
                )
        batches = sorted({r["batch_size"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
        ax.set_xlabel("batch size")
        ax.set_title(f"{model}  ({rows[0]['epoch_gflop']:.0f} GFLOP/epoch)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training samples/s (median epoch)")
    handles, labels = {}, []
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    ncol = min(len(labels), 2 if len(models) == 1 else 4)
    fig.legend(
        [handles[label] for label in labels],
        labels,
        loc="lower center",
        ncol=ncol,
        frameon=False,
        fontsize=9,
    )
    fig.suptitle(title or f"mlp_xp epoch throughput, float32, N={full:,}")
    rows = -(-len(labels) // ncol)  # legend rows below the panels, about 0.05 of the height each
    fig.tight_layout(rect=(0, 0.03 + 0.05 * rows, 1, 1))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="mlp-xp bench --json or pytest --benchmark-json files")
    parser.add_argument("-o", "--out", default=None, help="PNG path (default: beside the first JSON)")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    records, machines = load_records(args.json)
    if not records:
        parser.error("no mlp_xp epoch records in " + ", ".join(args.json))
    out = args.out or str(Path(args.json[0]).with_suffix(".png"))
    title = args.title or "mlp_xp epoch throughput, float32" + (
        f" — {'; '.join(dict.fromkeys(machines))}" if machines else ""
    )
    print(f"wrote {plot(records, out, title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
