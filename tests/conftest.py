"""Shared fixtures: the backend matrix and real data.

``backend`` runs a test once per spec in ``BACKEND_SPECS`` (numpy, array-api-strict on its CPU
device, on the emulated ``device1`` and on the float32-only ``no_float64`` device, torch on the
CPU, CuPy); ``other_backend`` runs it on the same specs except NumPy, for tests that compare a
backend with a NumPy reference; ``backend64`` runs it on the float64-capable CPU specs (torch
among them: an implementation independent of NumPy). A backend that this machine cannot
provide is skipped with the reason; under ``CI=true`` a missing optional test library (torch,
JAX, array-api-strict) fails instead, and only a missing CUDA device still skips.

``--backend SPEC[,SPEC...]`` replaces the matrix, e.g. on a GPU machine::

    pytest --backend cuda,torch:cuda

``fashion_mnist`` loads the real data set from disk; it fails (not skips) under ``CI=true``.
``require_module`` imports an optional test library the same way (skip locally, fail in CI).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from pathlib import Path
from types import ModuleType

import pytest

import mlp_xp

BACKEND_SPECS = (
    "numpy",
    "array-api-strict",
    "array-api-strict:device1",
    "array-api-strict:no_float64",
    "torch",
    "jax",
    "cuda",
)
BACKEND64_SPECS = ("numpy", "array-api-strict", "array-api-strict:device1", "torch", "jax")
REFERENCE_SPEC = "numpy"
# the module each backend family needs; CI installs all of them, so there a missing one fails
LIBRARY_OF_FAMILY = {"torch": "torch", "jax": "jax", "array-api-strict": "array_api_strict"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="store",
        default=None,
        metavar="SPECS",
        help="comma-separated backend specs replacing the test matrix, e.g. 'cuda,torch:cuda'.",
    )


def _selected_specs(config: pytest.Config) -> list[str] | None:
    option = config.getoption("--backend")
    if not option:
        return None
    return [spec.strip() for spec in option.split(",") if spec.strip()]


def _supports_float64(spec: str) -> bool:
    return "no_float64" not in spec


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    selected = _selected_specs(metafunc.config)
    if "backend" in metafunc.fixturenames:
        specs = selected if selected is not None else list(BACKEND_SPECS)
        metafunc.parametrize("backend", specs, indirect=True, ids=specs)
    if "other_backend" in metafunc.fixturenames:
        specs = [s for s in (selected if selected is not None else BACKEND_SPECS) if s != REFERENCE_SPEC]
        metafunc.parametrize("other_backend", specs, indirect=True, ids=specs)
    if "backend64" in metafunc.fixturenames:
        specs = [s for s in selected if _supports_float64(s)] if selected is not None else list(BACKEND64_SPECS)
        metafunc.parametrize("backend64", specs, indirect=True, ids=specs)


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (where the progress bar shows)."""

    def isatty(self) -> bool:
        return True


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def require_module(name: str) -> ModuleType:
    """Import the optional test library ``name``; when it is missing, skip the test, or fail
    it under ``CI=true`` (CI installs every optional library the suite uses)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if in_ci():
            pytest.fail(f"CI needs {name} installed: {exc}")
        pytest.skip(f"{name} is not installed")


def needs_cuda(spec: str) -> bool:
    """Whether ``spec`` names a CUDA device (the one thing CI machines may lack)."""
    family, *device = spec.split(":")
    return family in ("cuda", "cupy") or any(part.startswith("cuda") for part in device)


def resolve_backend(spec: str) -> mlp_xp.Backend:
    """The backend for ``spec``, or a pytest skip naming why this machine cannot provide it.
    Under ``CI=true`` only a missing CUDA device skips; any other gap fails."""
    library = LIBRARY_OF_FAMILY.get(spec.split(":")[0])
    if library is not None:
        require_module(library)
    try:
        return mlp_xp.get_backend(spec)
    except mlp_xp.BackendUnavailableError as exc:
        if in_ci() and not needs_cuda(spec):
            pytest.fail(f"CI needs backend {spec!r}: {exc}")
        pytest.skip(f"backend {spec!r} unavailable: {exc}")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> mlp_xp.Backend:
    """Every backend of the matrix (see module docstring)."""
    return resolve_backend(request.param)


@pytest.fixture
def other_backend(request: pytest.FixtureRequest) -> mlp_xp.Backend:
    """Every backend of the matrix except the NumPy reference it is compared with."""
    return resolve_backend(request.param)


@pytest.fixture
def backend64(request: pytest.FixtureRequest) -> mlp_xp.Backend:
    """Backends that support float64, for gradient checks."""
    return resolve_backend(request.param)


@pytest.fixture
def numpy_backend() -> mlp_xp.Backend:
    return mlp_xp.get_backend("numpy")


@pytest.fixture(scope="session")
def fashion_mnist() -> mlp_xp.Dataset:
    """Fashion-MNIST from disk; missing data skips the test, or fails it when ``$CI`` is set."""
    try:
        return mlp_xp.load_dataset("fashion-mnist", download=False)
    except mlp_xp.DatasetNotFoundError as exc:
        if in_ci():
            pytest.fail(f"CI needs Fashion-MNIST on disk (apt-get install dataset-fashion-mnist): {exc}")
        pytest.skip(f"Fashion-MNIST is not on disk: {exc}")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory in which no file can be created (see ``read_only_dir_with``)."""
    with read_only_dir_with(tmp_path, lambda path: None) as path:
        yield path


@contextlib.contextmanager
def read_only_dir_with(tmp_path: Path, fill):
    """A directory that ``fill(path)`` writes files into, then made read-only: a tmpfs mounted
    there and remounted read-only when running as root (root ignores permission bits), else mode
    0o555. Skips where neither makes it read-only."""
    import subprocess

    path = tmp_path / "read-only"
    path.mkdir()
    mounted = False
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True)
        mounted = done.returncode == 0
    try:
        if not mounted and os.geteuid() == 0:
            pytest.skip("running as root, and mounting a tmpfs is not permitted here")
        fill(path)
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        else:
            path.chmod(0o555)
        try:
            (path / "probe").touch()
        except OSError:
            pass  # read-only; the test runs outside this handler
        else:
            pytest.skip(f"{path} accepts new files despite being made read-only")
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)
        else:
            path.chmod(0o755)
