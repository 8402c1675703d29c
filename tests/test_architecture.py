"""Issue acceptance 3: the compute path is written against the Array API standard only.

The modules that compute (layers, model, losses, optimizers, initialisers, helpers, the
training loop, the model builder and the device loader) must not import a concrete array library; only
``mlp_xp/backend.py`` may import CuPy or torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlp_xp

PACKAGE = Path(mlp_xp.__file__).resolve().parent
FORBIDDEN = ("numpy", "cupy", "torch", "jax", "array_api_strict")
# array-api-compat's wrapped namespaces are the concrete libraries under another name
FORBIDDEN_COMPAT = tuple(f"array_api_compat.{name}" for name in ("numpy", "cupy", "torch", "dask", "jax"))
GPU_LIBRARIES = ("cupy", "torch", "jax")
# the seam: one module per library, each importing only its own library
SEAM = {"backends/cupy.py": "cupy", "backends/torch.py": "torch", "backends/jax.py": "jax"}
# interchange with a foreign library's own types (nn.Module), off the compute path: one module each
INTERCHANGE = {"export/torch_io.py": "torch"}

COMPUTE_MODULES = sorted(
    [*(PACKAGE / "layers").glob("*.py")]
    + [PACKAGE / name for name in ("model.py", "losses.py", "optim.py", "init.py", "arrays.py")]
    + [p for p in (PACKAGE / "train.py", PACKAGE / "mlp.py", PACKAGE / "data" / "loader.py") if p.exists()]
)


def imported_modules(source: str) -> set[str]:
    """Absolute module names imported by ``source``: import statements, ``from`` imports
    (with the imported names, since ``from array_api_compat import numpy`` imports a module),
    and ``importlib.import_module`` / ``__import__`` calls with a literal name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in ("import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def offending(modules: set[str], libraries: tuple[str, ...]) -> set[str]:
    """The names in ``modules`` that are ``libraries`` or their submodules."""
    return {m for m in modules if any(m == lib or m.startswith(lib + ".") for lib in libraries)}


def test_compute_modules_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in COMPUTE_MODULES}
    assert {"model.py", "losses.py", "optim.py", "init.py", "arrays.py", "layers/linear.py"} <= names
    assert len([n for n in names if n.startswith("layers/")]) >= 6


@pytest.mark.parametrize("path", COMPUTE_MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_compute_path_imports_no_array_library(path):
    modules = imported_modules(path.read_text(encoding="utf-8"))
    bad = offending(modules, FORBIDDEN + FORBIDDEN_COMPAT)
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}; go through the backend or array_namespace"


def test_only_the_seam_imports_gpu_libraries():
    """Each backends/<library>.py is the one place the package uses that library. bench.py may
    too: its comparators (a hand-written NumPy/CuPy loop and PyTorch eager) exist to be
    library-specific, and nothing in the package imports bench."""
    importers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        bad = offending(imported_modules(path.read_text(encoding="utf-8")), GPU_LIBRARIES + FORBIDDEN_COMPAT[1:])
        if bad:
            importers[path.relative_to(PACKAGE).as_posix()] = sorted(bad)
    for module, library in {**SEAM, **INTERCHANGE}.items():
        assert importers.pop(module), f"{module} imports nothing of {library}: the check does not see imports"
        assert all(name.split(".")[-1] == library or name == library for name in importers.get(module, []))
    assert set(importers) <= {"bench.py"}, importers
    users_of_bench = sorted(
        path.name for path in PACKAGE.rglob("*.py") if path.name != "cli.py" and _imports_bench(path.read_text())
    )
    assert not users_of_bench


def _imports_bench(source: str) -> bool:
    """Whether ``source`` imports mlp_xp's bench module (absolute or relative)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "bench":
            return True
        if isinstance(node, ast.ImportFrom) and any(alias.name == "bench" for alias in node.names):
            return True
        if isinstance(node, ast.Import) and any(alias.name.endswith(".bench") for alias in node.names):
            return True
    return False


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import numpy as np", {"numpy"}),
        ("import numpy.linalg", {"numpy.linalg"}),
        ("from numpy import float32", {"numpy"}),
        ("from numpy.random import default_rng", {"numpy.random"}),
        ("def f():\n    import torch\n", {"torch"}),
        ("import importlib\nxp = importlib.import_module('cupy')", {"cupy"}),
        ("from importlib import import_module\nxp = import_module('array_api_strict')", {"array_api_strict"}),
        ("xp = __import__('torch')", {"torch"}),
        ("import array_api_compat.numpy as xp", {"array_api_compat.numpy"}),
        ("from array_api_compat import torch", {"array_api_compat.torch"}),
        ("try:\n    import cupy\nexcept ImportError:\n    cupy = None\n", {"cupy"}),
    ],
)
def test_detector_catches(source, expected):
    assert expected <= offending(imported_modules(source), FORBIDDEN + FORBIDDEN_COMPAT)


@pytest.mark.parametrize(
    "source",
    [
        "import numpyro",
        "from array_api_compat import array_namespace, device",
        "from .backends import host_rng",
        "from ..arrays import Array",
        "x = 'import numpy'",
        "import torchvision_like_name_without_dot",
    ],
)
def test_detector_allows(source):
    assert not offending(imported_modules(source), FORBIDDEN + FORBIDDEN_COMPAT)
