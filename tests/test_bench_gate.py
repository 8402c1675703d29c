"""The benchmark gate's own logic (``mlp_xp.bench.report``): records built by hand for each
rule, and tiny real cases (no timing asserted) where a package that learns nothing must fail
and the package as it is must pass. Plus the ``mlp-xp bench`` flags around the gate."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import numpy as np
import pytest
from conftest import require_module

from mlp_xp import bench, cli
from mlp_xp.bench import report
from mlp_xp.bench.report import LEARNED_LOSS, LOSS_RTOL, SLOWNESS_LIMIT, WEIGHT_ATOL, WEIGHT_RTOL


def _record(library: str = "numpy", median: float = 1.0, min_min: float = 1.0, package_loss: float = 0.5,
            hand_loss: float = 0.5, tolerance_used: float = 0.0) -> dict:
    """A record as ``make_record`` writes it, reduced to what the gate reads."""
    return {
        "id": f"{library}-case",
        "library": library,
        "ratios": {"hand": {"median": median, "min_min": min_min}},
        "last_loss": {"package": package_loss, "hand": hand_loss},
        "agreement": {"hand": {"max_abs_diff": tolerance_used * WEIGHT_ATOL, "tolerance_used": tolerance_used}},
    }


def test_a_record_within_every_rule_passes():
    assert report.gate(_record()) == []


@pytest.mark.parametrize(
    ("median", "min_min", "fails"),
    [
        (1.6, 1.6, True),  # slower by both estimators
        (1.6, 1.4, False),  # one noisy estimator alone does not fail a run
        (1.4, 1.6, False),
        (SLOWNESS_LIMIT, 2.0, False),  # at the limit is within it
        (SLOWNESS_LIMIT * 1.01, SLOWNESS_LIMIT * 1.01, True),
    ],
)
def test_slowness_needs_both_estimators_over_the_limit(median, min_min, fails):
    found = report.gate(_record(median=median, min_min=min_min))
    assert bool(found) is fails
    assert all("hand loop's, over the 1.5x limit" in problem for problem in found)


@pytest.mark.parametrize("library", ["cupy", "numpy"])
def test_slowness_applies_to_the_hand_loops_libraries(library):
    assert report.slowness(_record(library, median=3.0, min_min=3.0)) is not None


@pytest.mark.parametrize("library", ["torch", "jax", "array-api-strict"])
def test_slowness_does_not_apply_to_other_libraries(library):
    assert report.slowness(_record(library, median=3.0, min_min=3.0)) is None


@pytest.mark.parametrize(
    ("hand_loss", "fails"),
    [(LEARNED_LOSS * 0.999, False), (LEARNED_LOSS, True), (math.log(10), True), (None, True), (math.nan, True)],
)
def test_the_hand_loop_must_have_learned(hand_loss, fails):
    found = report.not_learned(_record(hand_loss=hand_loss, package_loss=hand_loss))
    assert (found is not None) is fails


@pytest.mark.parametrize(
    ("tolerance_used", "package_loss", "fails"),
    [
        (1.0, 0.5, False),  # exactly at the weights' tolerance
        (1.0001, 0.5, True),
        (math.nan, 0.5, True),
        (0.0, 0.5 * (1 + 0.9 * LOSS_RTOL), False),
        (0.0, 0.5 * (1 + 1.1 * LOSS_RTOL), True),
        (0.0, 0.5 * (1 - 1.1 * LOSS_RTOL), True),
        (0.0, None, True),
    ],
)
def test_same_math_bounds_weights_and_loss(tolerance_used, package_loss, fails):
    found = report.wrong_math(_record(tolerance_used=tolerance_used, package_loss=package_loss))
    assert (found is not None) is fails


@pytest.mark.parametrize(("library", "checked"), [("numpy", True), ("cupy", True), ("array-api-strict", True),
                                                  ("torch", False), ("jax", False)])
def test_same_math_only_where_the_hand_loop_runs_in_the_same_library(library, checked):
    found = report.wrong_math(_record(library, tolerance_used=5.0))
    assert (found is not None) is checked


def test_a_case_without_a_hand_loop_has_nothing_to_gate():
    record = _record(median=9.0, min_min=9.0, hand_loss=9.0, tolerance_used=9.0)
    for key in ("ratios", "last_loss", "agreement"):
        del record[key]["hand"]
    assert report.gate(record) == []


def test_agreement_is_allclose_elementwise():
    hand = [(np.array([[1.0, -100.0]], np.float32), np.array([0.0], np.float32))]
    at_tolerance = [(np.array([[1.0 + WEIGHT_ATOL + WEIGHT_RTOL, -100.0 - (WEIGHT_ATOL + 100 * WEIGHT_RTOL)]]),
                     np.array([WEIGHT_ATOL]))]
    found = report.agreement(at_tolerance, hand)
    assert found["tolerance_used"] == pytest.approx(1.0, rel=1e-4)
    assert found["max_abs_diff"] == pytest.approx(WEIGHT_ATOL + 100 * WEIGHT_RTOL, rel=1e-4)
    # the same absolute difference on a small entry is far over: the rtol part is per element
    off = [(np.array([[1.0, -100.0]]), np.array([WEIGHT_ATOL + 100 * WEIGHT_RTOL]))]
    assert report.agreement(off, hand)["tolerance_used"] > 100


def test_ratios_are_median_of_rounds_and_min_over_min():
    times = {"package": [2.0, 4.0, 3.0], "hand": [1.0, 4.0, 1.0], "torch": [4.0, 8.0, 6.0]}
    found = report.ratios(times, "package")
    assert found["hand"] == {"median": 2.0, "min_min": 2.0}  # per-round ratios 2, 1, 3
    assert found["torch"] == {"median": 0.5, "min_min": 0.5}
    assert set(found) == {"hand", "torch"}


# -- tiny real cases (no timing asserted) ---------------------------------------------------------

TINY = bench.Case("numpy", (32,), 64, samples=2048)
COMPARATORS = (bench.TORCH, bench.JAX_SCAN)
COMPARATOR_ATOL, COMPARATOR_LOSS_RTOL = 1e-4, 1e-4  # float32 rounding on TINY: ~1e-6 (parameters and loss)


def _tiny_record(lr_factor: float = 1.0, optimizer: str = "sgd", comparators: bool = False) -> dict:
    """TINY run for two rounds; ``comparators``: with torch and the JAX scan epoch."""
    case = dataclasses.replace(TINY, optimizer=optimizer)
    run = bench.CaseRun(case, rounds=2, torch=comparators, compile=comparators)
    package = run.methods[bench.PACKAGE].optimizer
    package.lr *= lr_factor
    package.base_lr *= lr_factor
    return run.run_all()


@pytest.fixture(scope="module", params=bench.OPTIMIZERS)
def tiny_record(request) -> dict:
    """TINY with every comparator, per optimizer (torch and JAX required under CI)."""
    require_module("torch")
    require_module("jax")
    return _tiny_record(optimizer=request.param, comparators=True)


def test_the_package_as_it_is_does_the_hand_loops_math_on_learnable_data(tiny_record):
    record = tiny_record
    assert report.not_learned(record) is None and report.wrong_math(record) is None  # slowness: timing, not here
    assert record["last_loss"]["hand"] < LEARNED_LOSS
    assert record["agreement"]["hand"]["max_abs_diff"] <= WEIGHT_ATOL
    assert record["ops_per_step"] == record["ops"]["step_ops"] > 0


@pytest.mark.parametrize("name", COMPARATORS)
def test_torch_and_the_jax_scan_epoch_do_the_packages_math(tiny_record, name):
    """The comparators train from the package's initial weights with its update rule and rate:
    their final parameters and last-epoch loss are the package's up to float32 rounding."""
    assert name in tiny_record["methods"]
    assert tiny_record["agreement"][name]["max_abs_diff"] < COMPARATOR_ATOL
    package_loss = tiny_record["last_loss"][bench.PACKAGE]
    assert tiny_record["last_loss"][name] == pytest.approx(package_loss, rel=COMPARATOR_LOSS_RTOL)


def test_throughput_follows_from_the_package_epochs_and_the_peak(tiny_record):
    """samples/s and GFLOP/s are the work over the package's median epoch; the share of peak is
    GFLOP/s over the median sgemm rate, i.e. samples/s over the peak's samples/s."""
    record = tiny_record
    median_s = statistics.median(record["seconds"][bench.PACKAGE])
    assert record["package_s"] == median_s
    assert record["samples_per_s"] == pytest.approx(TINY.samples / median_s, rel=1e-12)
    assert record["gflops"] == pytest.approx(bench.epoch_flops(TINY.sizes, TINY.samples) / median_s / 1e9, rel=1e-12)
    assert record["epoch_gflop"] == pytest.approx(record["gflops"] * median_s, rel=1e-12)
    assert record["peak_share"] == pytest.approx(record["gflops"] / record["peak_gflops"], rel=1e-12)
    assert record["peak_share"] == pytest.approx(record["samples_per_s"] / record["peak_samples_per_s"], rel=1e-12)
    assert 0 < record["peak_share"] <= 1.2  # a whole epoch does not beat its biggest GEMM's sgemm rate


def test_benchmark_groups_hold_the_same_work_only():
    """pytest-benchmark's relative column compares a group's members: the backend and the data
    storage may differ within one, the samples, model, batch size and optimizer may not."""
    case = bench.Case("numpy", (256,), 256)
    same = [dataclasses.replace(case, spec="array-api-strict"), dataclasses.replace(case, storage="uint8")]
    other = [dataclasses.replace(case, samples=4096), dataclasses.replace(case, hidden=(100,)),
             dataclasses.replace(case, batch_size=64), dataclasses.replace(case, optimizer="adam")]
    assert {c.group for c in same} == {case.group}
    assert case.group not in {c.group for c in other}


def test_a_package_that_learns_nothing_fails_the_gate():
    record = _tiny_record(lr_factor=1e-9)
    found = report.wrong_math(record)
    assert found is not None and "final parameters differ" in found and "last-epoch loss" in found
    assert any("not the hand loop's math" in problem for problem in record["gate"])
    assert record["last_loss"]["package"] > 2.0  # near ln 10: it did not learn


def test_make_data_is_learnable_pixels_with_noisy_labels():
    x8, y = bench.make_data(2000, "uint8")
    x, y32 = bench.make_data(2000, "float32")
    assert x8.dtype == np.uint8 and x.dtype == np.float32 and x.shape == (2000, 784)
    np.testing.assert_array_equal(x, x8.astype(np.float32) * np.float32(1 / 255))
    assert y is y32 and set(np.unique(y)) == set(range(10))
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert 0.85 < np.mean(nearest == y) < 0.97  # the clusters separate; a tenth of the labels is noise


# -- mlp-xp bench --------------------------------------------------------------------------------

TINY_ARGS = ["bench", "--device", "numpy", "--hidden", "8", "--batch-size", "64", "--samples", "512",
             "--rounds", "1", "--no-torch"]


def test_skip_unavailable_skips_with_one_line(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [*TINY_ARGS, "--json", str(out)]
    argv[2] = "numpy,cuda:99"
    assert cli.main([*argv, "--skip-unavailable"]) == 0
    err = capsys.readouterr().err
    assert "mlp-xp bench: skipped cuda:99: " in err
    document = json.loads(out.read_text())
    assert [r["backend"] for r in document["records"]] == ["numpy"] and list(document["skipped"]) == ["cuda:99"]
    assert cli.main(argv) == 2  # without the flag: a usage error, as before
    assert "mlp-xp bench: error: " in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "code"), [([], 0), (["--gate"], 1)])
def test_gate_flag_turns_a_gate_failure_into_exit_1(monkeypatch, capsys, flag, code):
    monkeypatch.setattr(report, "gate", lambda record: [f"{record['id']}: planted failure"])
    assert cli.main([*TINY_ARGS, *flag]) == code
    assert "mlp-xp bench: gate: numpy-784-8-10-B64-N512: planted failure" in capsys.readouterr().err


def test_compile_seconds_are_first_epoch_less_median_for_compiled_methods_only():
    first = {"package_compiled": 3.0, "jax_scan": 1.0, "hand": 9.0}
    medians = {"package_compiled": 1.0, "jax_scan": 2.0, "hand": 1.0}
    assert report.compile_seconds(first, medians) == {"package_compiled": 2.0, "jax_scan": 0.0}


def test_a_compiled_cpu_run_times_mlp_xp_eager_on_numpy_beside_it():
    """Compiled JAX on the CPU is measured against mlp_xp's NumPy eager epoch in the same rounds
    (the ratio issue 9 sets a target for): the comp/np column, from the same work and weights."""
    require_module("jax")
    run = bench.CaseRun(dataclasses.replace(TINY, spec="jax"), rounds=2, torch=False, compile=True)
    assert run.methods[bench.PACKAGE_NUMPY].backend.name == "numpy"
    record = run.run_all()
    ratio = record["compiled_ratios"][bench.PACKAGE_NUMPY]
    times = record["seconds"]
    per_round = [a / b for a, b in zip(times[bench.PACKAGE_COMPILED], times[bench.PACKAGE_NUMPY])]
    assert ratio["median"] == pytest.approx(statistics.median(per_round), rel=1e-12)
    assert record["agreement"][bench.PACKAGE_NUMPY]["max_abs_diff"] < COMPARATOR_ATOL
    header, _, row = bench.format_table([record]).splitlines()[:3]
    end = header.index("comp/np") + len("comp/np")  # columns of numbers are right-aligned
    assert row[:end].split()[-1] == f"{ratio['median']:.2f}"
