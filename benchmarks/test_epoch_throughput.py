"""Full training epochs of mlp_xp (make_mlp + DeviceLoader + SoftmaxCrossEntropy + SGD + fit)
against a same-math hand loop, the reference hand loop and PyTorch eager, interleaved.

pytest-benchmark times the package's epochs; the comparators run in its per-round ``setup``, so
every round holds one epoch of each method (order rotating). The record (samples/s, GFLOP/s,
share of the measured sgemm peak, ratios, versions) goes into ``extra_info``.

The only failure rule is a catastrophic regression: the package more than 1.5x slower than the
in-run same-math hand loop (NumPy or CuPy backends); and the hand loop must reach the same loss.
"""

from __future__ import annotations

import pytest

from mlp_xp import BackendUnavailableError, bench


def test_epoch_throughput(benchmark, case: bench.Case, rounds: int, records: list) -> None:
    try:
        run = bench.CaseRun(case, rounds)
    except BackendUnavailableError as exc:
        pytest.skip(f"backend {case.spec!r} unavailable: {exc}")
    run.warmup()
    events = run.schedule()
    package_round: list[int] = []

    def comparators() -> None:  # pytest-benchmark's untimed setup: this round's events up to the package
        package_round.clear()
        for r, name in events:
            if name == bench.PACKAGE:
                package_round.append(r)
                return
            run.run(r, name)

    def package_epoch() -> None:
        if package_round:
            run.run(package_round[0], bench.PACKAGE)

    benchmark.group = f"{case.model} B{case.batch_size}"
    benchmark.pedantic(package_epoch, setup=comparators, rounds=rounds, iterations=1)
    for event in events:  # what follows the last package epoch (and all of it with --benchmark-disable)
        run.run(*event)
    record = run.record()
    benchmark.extra_info.update(record)
    records.append(record)
    mismatch = bench.loss_mismatch(record)
    assert mismatch is None, mismatch
    problem = bench.regression(record)
    assert problem is None, problem
