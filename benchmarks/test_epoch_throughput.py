"""Full training epochs of mlp_xp (make_mlp + DeviceLoader + SoftmaxCrossEntropy + SGD + fit)
against a same-math hand loop, the reference hand loop, PyTorch eager and (outside --quick)
the compiled variants, interleaved.

pytest-benchmark times the package's epochs; the other methods run in its per-round ``setup``,
so every round holds one epoch of each method (order rotating). The record (samples/s,
GFLOP/s, share of the measured sgemm peak, ratios, compile seconds, operations per step,
agreement of the final parameters, versions) goes into ``extra_info``.

The test fails on the benchmark gate (``mlp_xp.bench.report``): the hand loop did not learn
the data, the package did not do the hand loop's math (final parameters, last-epoch loss), or
the package took more than 1.5x the hand loop's epoch time (NumPy and CuPy).
"""

from __future__ import annotations

import pytest

from mlp_xp import BackendUnavailableError, bench


def test_epoch_throughput(benchmark, case: bench.Case, rounds: int, compiled: bool, records: list) -> None:
    try:
        run = bench.CaseRun(case, rounds, compile=compiled)
    except BackendUnavailableError as exc:
        pytest.skip(f"backend {case.spec!r} unavailable: {exc}")
    run.warmup()
    events = run.schedule()
    package_round: list[int] = []

    def others() -> None:  # pytest-benchmark's untimed setup: this round's events up to the package
        package_round.clear()
        for r, name in events:
            if name == bench.PACKAGE:
                package_round.append(r)
                return
            run.run(r, name)

    def package_epoch() -> None:
        if package_round:
            run.run(package_round[0], bench.PACKAGE)

    benchmark.group = case.group
    benchmark.pedantic(package_epoch, setup=others, rounds=rounds, iterations=1)
    for event in events:  # what follows the last package epoch (and all of it with --benchmark-disable)
        run.run(*event)
    record = run.record()
    benchmark.extra_info.update(record)
    records.append(record)
    assert not record["gate"], "\n".join(record["gate"])
