"""The suite's own machinery (tests/conftest.py): what skips, what fails under ``CI=true``, and
which backends the comparisons and float64 checks run on."""

from __future__ import annotations

import sys

import pytest
from conftest import BACKEND64_SPECS, REFERENCE_SPEC, require_module, resolve_backend

SKIPPED, FAILED = pytest.skip.Exception, pytest.fail.Exception


def outcome(function, *args) -> tuple[type | None, str]:
    """The pytest outcome (skip or fail) that ``function(*args)`` raises, and its message;
    caught here, so that a skip cannot escape and skip the test that checks for a failure."""
    try:
        function(*args)
    except (SKIPPED, FAILED) as exc:
        return type(exc), str(exc)
    return None, ""


@pytest.fixture
def in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")


@pytest.fixture
def not_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


@pytest.mark.parametrize(("spec", "module"), [("torch", "torch"), ("torch:cpu", "torch"), ("jax", "jax"),
                                              ("array-api-strict", "array_api_strict")])
def test_a_missing_backend_library_fails_under_ci(in_ci, monkeypatch, spec, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
    kind, message = outcome(resolve_backend, spec)
    assert kind is FAILED and f"CI needs {module}" in message


@pytest.mark.parametrize(("spec", "module"), [("torch", "torch"), ("array-api-strict", "array_api_strict")])
def test_a_missing_backend_library_skips_elsewhere(not_in_ci, monkeypatch, spec, module):
    monkeypatch.setitem(sys.modules, module, None)
    kind, message = outcome(resolve_backend, spec)
    assert kind is SKIPPED and f"{module} is not installed" in message


def test_require_module_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setenv("CI", "1")
    assert outcome(require_module, "torch")[0] is FAILED
    monkeypatch.setenv("CI", "false")
    assert outcome(require_module, "torch")[0] is SKIPPED


@pytest.mark.parametrize("spec", ["cuda", "cupy:1"])
def test_a_missing_cuda_device_still_skips_under_ci(in_ci, monkeypatch, spec):
    monkeypatch.setitem(sys.modules, "cupy", None)
    kind, message = outcome(resolve_backend, spec)
    assert kind is SKIPPED and "unavailable" in message


def test_torch_cuda_without_a_gpu_skips_under_ci(monkeypatch):
    torch = require_module("torch")  # before CI is switched on: this test's own need follows the real $CI
    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device")
    monkeypatch.setenv("CI", "true")
    kind, message = outcome(resolve_backend, "torch:cuda")
    assert kind is SKIPPED and "unavailable" in message


def test_comparisons_with_numpy_never_run_numpy_against_itself(other_backend):
    assert other_backend.spec != REFERENCE_SPEC
    assert other_backend.name != "numpy"


def test_float64_checks_include_a_library_that_does_not_compute_with_numpy():
    """array-api-strict wraps NumPy; torch is an independent implementation."""
    assert "torch" in BACKEND64_SPECS
