"""Issue acceptance 3: the compute path is written against the Array API standard only.

Every module of the package is on the compute path unless ``NON_COMPUTE`` names it, so a new
or renamed module is checked by default. A compute module must not import a concrete array
library: not directly, not through a name that another module of the package imported from one
(``from .errors import np``; relative imports are followed to where the name comes from), and
from the backend seam only through its interface (``from .backends import get_backend``, the
names of ``mlp_xp.backends.__all__``), never from a library-specific module of it
(``from .backends.numpy import xp``). Only ``backends/<library>.py`` may import CuPy, torch or JAX.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

import pytest

import mlp_xp

PACKAGE = Path(mlp_xp.__file__).resolve().parent
# modules that are not on the compute path (host-side I/O, the seam itself, tools around the
# package); paths relative to the package, fnmatch patterns ("*" also matches "/")
NON_COMPUTE = (
    "backends/*",
    "bench*",
    "cli.py",
    "checkpoint.py",
    "plotting.py",
    "data/idx.py",
    "data/datasets.py",
    "errors.py",
    "sklearn*",
    "export*",
    "distributed*",
    "onnx*",
    "torch_io*",
    "interop.py",
    "opcount.py",
)
SEAM = "backends"
FORBIDDEN = ("numpy", "cupy", "torch", "jax", "array_api_strict")
# array-api-compat's wrapped namespaces are the concrete libraries under another name
FORBIDDEN_COMPAT = tuple(f"array_api_compat.{name}" for name in ("numpy", "cupy", "torch", "dask", "jax"))
GPU_LIBRARIES = ("cupy", "torch", "jax")
# the seam: one module per library, each importing only its own library
SEAM_MODULES = {"backends/cupy.py": "cupy", "backends/torch.py": "torch", "backends/jax.py": "jax"}
# interchange with a foreign library's own types (nn.Module), off the compute path: one module each
INTERCHANGE = {"export/torch_io.py": "torch"}
# may import GPU libraries: the benchmark's comparators are library-specific on purpose
GPU_IMPORTERS_ALLOWED = ("bench.py", "bench/*")


def is_compute(relative: str) -> bool:
    """Whether the module at ``relative`` (a path inside the package) is on the compute path."""
    return not any(fnmatch(relative, pattern) for pattern in NON_COMPUTE)


def discover(package: Path) -> list[Path]:
    """Every compute module of ``package``: all of its ``.py`` files minus ``NON_COMPUTE``."""
    return sorted(p for p in package.rglob("*.py") if is_compute(p.relative_to(package).as_posix()))


COMPUTE_MODULES = discover(PACKAGE)


# -- reading imports ----------------------------------------------------------------------------


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


class PackageImports:
    """The imports of a package's modules, with relative imports resolved and imported names
    followed to the module that defines them (or the outside module they come from)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self._open: set[str] = set()  # modules whose bindings are being read (import cycles)

    def module_name(self, path: Path) -> str:
        parts = list(path.relative_to(self.root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join([self.name, *parts])

    def path_of(self, module: str) -> Path | None:
        """The file of an internal module (``pkg.a.b``), or None (outside, or no such module)."""
        if module != self.name and not module.startswith(self.name + "."):
            return None
        base = self.root.joinpath(*module.split(".")[1:])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def is_package(self, module: str) -> bool:
        path = self.path_of(module)
        return path is not None and path.name == "__init__.py"

    @cache  # noqa: B019 (a few instances per test run)
    def tree(self, module: str) -> ast.Module:
        return ast.parse(self.path_of(module).read_text(encoding="utf-8"))

    def absolute(self, module: str, node: ast.ImportFrom) -> str:
        """The module a ``from`` import in ``module`` names, with its dots resolved."""
        if node.level == 0:
            return node.module or ""
        package = module if self.is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    @cache  # noqa: B019
    def bindings(self, module: str) -> dict[str, tuple[str, str]]:
        """Names that ``module`` binds by importing, each mapped to ``origin``'s answer."""
        bound: dict[str, tuple[str, str]] = {}
        for node in ast.walk(self.tree(module)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name if alias.asname else alias.name.split(".")[0]
                    bound[alias.asname or target] = ("module", target)
            elif isinstance(node, ast.ImportFrom):
                source = self.absolute(module, node)
                for alias in node.names:
                    bound[alias.asname or alias.name] = self.origin(source, alias.name)
        return bound

    def origin(self, module: str, name: str) -> tuple[str, str]:
        """What ``from module import name`` gives, following re-exports through the package:
        ``("module", m)`` a module object, ``("outside", "m.name")`` a name from an outside
        module, or ``("defined", m)`` a name defined in the internal module ``m``."""
        if self.path_of(f"{module}.{name}") is not None:
            return ("module", f"{module}.{name}")
        if self.path_of(module) is None:
            return ("outside", f"{module}.{name}")
        if module in self._open:  # an import cycle (e.g. a function-local import): defined there
            return ("defined", module)
        self._open.add(module)
        try:
            return self.bindings(module).get(name, ("defined", module))
        finally:
            self._open.discard(module)

    def seam_interface(self) -> set[str]:
        """The names in the seam package's ``__all__``."""
        for node in ast.walk(self.tree(f"{self.name}.{SEAM}")):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                return set(ast.literal_eval(node.value))
        return set()

    def violations(self, path: Path) -> list[str]:
        """Why the compute module at ``path`` breaks the rules (empty when it does not)."""
        module, seam = self.module_name(path), f"{self.name}.{SEAM}"
        libraries = FORBIDDEN + FORBIDDEN_COMPAT
        problems = [f"imports {name}" for name in sorted(offending(imported_modules(path.read_text()), libraries))]
        problems += [
            f"imports the seam module {alias.name}: import names from {seam} instead"
            for node in ast.walk(self.tree(module))
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name == seam or alias.name.startswith(seam + ".")
        ]
        for node in ast.walk(self.tree(module)):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = self.absolute(module, node)
            if source.startswith(seam + "."):
                problems.append(f"imports from {source}: use the seam's interface, from {seam} import ...")
                continue
            for alias in node.names:
                kind, what = self.origin(source, alias.name)
                if kind != "defined" and offending({what}, libraries):
                    problems.append(f"imports {alias.name} from {source}, which is {what}")
                elif source == seam and alias.name not in self.seam_interface():
                    problems.append(f"imports {alias.name} from {seam}, which is not in its __all__ (the interface)")
                elif kind == "module" and (what == seam or what.startswith(seam + ".")):
                    problems.append(f"imports the seam module {what} as an object: import names from {seam}")
        return problems


PACKAGE_IMPORTS = PackageImports(PACKAGE, "mlp_xp")


# -- the package ------------------------------------------------------------------------------------


def test_compute_modules_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in COMPUTE_MODULES}
    expected = {"model.py", "losses.py", "optim.py", "init.py", "arrays.py", "train.py", "mlp.py", "data/loader.py"}
    assert expected <= names
    assert len([n for n in names if n.startswith("layers/")]) >= 6
    assert not {n for n in names if n.startswith(("backends/", "bench"))}


@pytest.mark.parametrize("path", COMPUTE_MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_compute_path_imports_no_array_library(path):
    problems = PACKAGE_IMPORTS.violations(path)
    assert not problems, f"{path.relative_to(PACKAGE)}: {problems}; go through the backend or array_namespace"


def test_only_the_seam_imports_gpu_libraries():
    """Each backends/<library>.py is the one place the package uses that library. bench may
    too: its comparators (a hand-written NumPy/CuPy loop and PyTorch eager) exist to be
    library-specific, and nothing in the package but the CLI imports bench."""
    importers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        bad = offending(imported_modules(path.read_text(encoding="utf-8")), GPU_LIBRARIES + FORBIDDEN_COMPAT[1:])
        if bad:
            importers[path.relative_to(PACKAGE).as_posix()] = sorted(bad)
    for module, library in {**SEAM_MODULES, **INTERCHANGE}.items():
        found = importers.pop(module, None)
        assert found, f"{module} imports nothing of {library}: the check does not see imports"
        assert all(name == library or name.startswith(f"{library}.") or name.endswith(f".{library}") for name in found)
    assert all(any(fnmatch(m, p) for p in GPU_IMPORTERS_ALLOWED) for m in importers), importers
    users_of_bench = sorted(
        relative
        for path in PACKAGE.rglob("*.py")
        if not any(fnmatch(relative := path.relative_to(PACKAGE).as_posix(), p) for p in ("cli.py", "bench*"))
        and _imports_bench(path.read_text())
    )
    assert not users_of_bench


def _imports_bench(source: str) -> bool:
    """Whether ``source`` imports mlp_xp's bench module (absolute or relative)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and "bench" in (node.module or "").split("."):
            return True
        if isinstance(node, ast.ImportFrom) and any(alias.name == "bench" for alias in node.names):
            return True
        if isinstance(node, ast.Import) and any("bench" in alias.name.split(".") for alias in node.names):
            return True
    return False


# -- the checker itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "compute"),
    [
        ("model.py", True),
        ("params.py", True),  # a new module is checked by default
        ("step.py", True),
        ("layers/conv.py", True),
        ("data/loader.py", True),
        ("data/batches.py", True),  # loader.py renamed: still checked
        ("__init__.py", True),
        ("backends/numpy.py", False),
        ("backends/__init__.py", False),
        ("bench.py", False),
        ("bench/runner.py", False),
        ("cli.py", False),
        ("data/idx.py", False),
        ("export_onnx.py", False),
    ],
)
def test_discovery_classifies_modules(relative, compute):
    assert is_compute(relative) is compute


def _package(tmp_path: Path, files: dict[str, str]) -> PackageImports:
    """A throw-away package ``pkg`` with the seam's interface and ``files`` (path: source)."""
    root = tmp_path / "pkg"
    sources = {
        "__init__.py": "",
        "backends/__init__.py": (
            "from . import numpy\nfrom .base import Backend, get_backend, host_rng\n"
            "__all__ = ['Backend', 'get_backend', 'host_rng']\n"
        ),
        "backends/base.py": "import numpy as np\nclass Backend: ...\ndef get_backend(): ...\ndef host_rng(): ...\n",
        "backends/numpy.py": "import numpy as np\nimport array_api_compat.numpy as xp\n",
        "errors.py": "import numpy as np\nclass Error(Exception): ...\n",
        "arrays.py": "from .errors import np\nArray = object\n",
        **files,
    }
    for relative, source in sources.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(source)
    return PackageImports(root, "pkg")


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np",
        "from .backends import numpy",
        "from .backends import np",
        "from .backends.numpy import xp",
        "from .backends.base import Backend",
        "from .backends import base",
        "from . import backends",
        "from .errors import np",
        "from .arrays import np",  # arrays re-exports errors' np: followed two steps
        "def f():\n    from .errors import np as numpy\n",
        "from array_api_compat import numpy",
        "import pkg.backends.numpy",
        "from pkg.errors import np",
    ],
)
def test_checker_catches(tmp_path, source):
    package = _package(tmp_path, {"compute.py": source, "sub/__init__.py": "", "sub/deep.py": ""})
    assert package.violations(tmp_path / "pkg" / "compute.py")


def test_checker_follows_the_seam_interface_to_the_library(tmp_path):
    seam = "import numpy as np\nfrom .base import get_backend\n__all__ = ['get_backend', 'np']\n"
    package = _package(tmp_path, {"backends/__init__.py": seam, "compute.py": "from .backends import get_backend, np"})
    assert package.violations(tmp_path / "pkg" / "compute.py") == ["imports np from pkg.backends, which is numpy"]


@pytest.mark.parametrize(
    "source",
    ["from ..backends import np", "from ..backends.numpy import xp", "from ..errors import np", "import torch"],
)
def test_checker_catches_in_subpackages(tmp_path, source):
    package = _package(tmp_path, {"sub/__init__.py": "", "sub/deep.py": source})
    assert package.violations(tmp_path / "pkg" / "sub" / "deep.py")


@pytest.mark.parametrize(
    "source",
    [
        "from .backends import get_backend, host_rng, Backend",
        "from .errors import Error",
        "from .arrays import Array",
        "from array_api_compat import array_namespace, device",
        "import math",
        "x = 'import numpy'",
    ],
)
def test_checker_allows(tmp_path, source):
    package = _package(tmp_path, {"compute.py": source})
    assert package.violations(tmp_path / "pkg" / "compute.py") == []


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
