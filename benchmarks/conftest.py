"""Options and case matrix of the epoch-throughput benchmarks (pytest-benchmark).

    pytest benchmarks/                          # every available backend, 3 models, B 64/256/1024, compiled variants
    pytest benchmarks/ --backend cuda,torch:cuda,jax:cuda   # a GPU runner (adds B 4096)
    pytest benchmarks/ --quick                  # CI: numpy 784-256-10 B256 (+ uint8 storage) and the strict smoke
    pytest benchmarks/ --quick --benchmark-json=out/bench.json

Environment equivalents: ``MLP_XP_BENCH_BACKEND=numpy,cuda``, ``MLP_XP_BENCH_QUICK=1``,
``MLP_XP_BENCH_ROUNDS=5``. Without ``--backend`` the matrix is numpy, torch (CPU), jax (CPU)
and cuda (each skipped when unavailable) plus an array-api-strict smoke run on a reduced N;
``--quick`` keeps numpy and the strict smoke. Outside ``--quick`` every case also times the
compiled variants (``fit(compile=True)`` on JAX/torch, the hand-written JAX scan epoch).
Each run also has one uint8-storage case (784-256-10, B256) on the first backend selected.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlp_xp import bench
from mlp_xp.bench import BATCH_SIZES, GPU_BATCH_SIZES, MODELS, Case

DEFAULT_SPECS = ("numpy", "torch", "jax", "cuda", "array-api-strict")
QUICK_SPECS = ("numpy", "array-api-strict")
STRICT_SAMPLES = 4096
RECORDS: list[dict] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlp_xp benchmarks")
    options = [
        ("--backend", dict(default=None, metavar="SPECS", help="comma-separated backend specs, e.g. numpy,cuda")),
        ("--quick", dict(action="store_true", default=False, help="CI pass: numpy 784-256-10 B256, strict smoke")),
        ("--bench-rounds", dict(type=int, default=None, help="interleaved rounds per case (default 5; quick 3)")),
    ]
    for name, kwargs in options:
        try:
            group.addoption(name, **kwargs)
        except ValueError:  # --backend is also defined by tests/conftest.py when both are collected
            pass


def pytest_configure(config: pytest.Config) -> None:
    out = config.getoption("benchmark_json", None)
    if out:  # pytest-benchmark writes the file at the end but does not create its folder
        Path(str(out)).parent.mkdir(parents=True, exist_ok=True)


def quick(config: pytest.Config) -> bool:
    return bool(config.getoption("--quick", False)) or os.environ.get("MLP_XP_BENCH_QUICK", "") not in ("", "0")


def _specs(config: pytest.Config) -> list[str]:
    option = config.getoption("--backend", None) or os.environ.get("MLP_XP_BENCH_BACKEND")
    if option:
        return [s.strip() for s in option.split(",") if s.strip()]
    return list(QUICK_SPECS if quick(config) else DEFAULT_SPECS)


def _is_gpu(spec: str) -> bool:
    return spec.startswith(("cuda", "cupy")) or ":cuda" in spec


def cases(config: pytest.Config) -> list[Case]:
    short = quick(config)
    found = []
    uint8 = []
    for spec in _specs(config):
        if spec.startswith(("array-api-strict", "strict")):  # a smoke run: it exists to keep working
            found.append(Case(spec, (256,), 256, samples=STRICT_SAMPLES))
            continue
        models = MODELS[:1] if short else MODELS
        batches = (256,) if short else GPU_BATCH_SIZES if _is_gpu(spec) else BATCH_SIZES
        found += [Case(spec, hidden, batch) for hidden in models for batch in batches]
        uint8.append(Case(spec, (256,), 256, storage="uint8"))
    return found + uint8[:1]  # the uint8-storage case on the first backend selected


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        found = cases(metafunc.config)
        metafunc.parametrize("case", found, ids=[c.id for c in found])


@pytest.fixture
def rounds(request: pytest.FixtureRequest) -> int:
    chosen = request.config.getoption("--bench-rounds", None) or os.environ.get("MLP_XP_BENCH_ROUNDS")
    return int(chosen) if chosen else 3 if quick(request.config) else 5


@pytest.fixture
def compiled(request: pytest.FixtureRequest) -> bool:
    """Whether cases time the compiled variants (outside ``--quick``)."""
    return not quick(request.config)


@pytest.fixture
def records() -> list[dict]:
    """Where tests put their records; printed as a table at the end of the session."""
    return RECORDS


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["mlp_xp"] = bench.machine_info()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if RECORDS:
        terminalreporter.section("mlp_xp epoch throughput")
        terminalreporter.write_line(bench.format_table(RECORDS))
