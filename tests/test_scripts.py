"""The example scripts in ``scripts/``: each one's ``--quick`` mode runs end to end on NumPy in a
subprocess, writes valid PNGs and prints its report; the scripts use only the public API and
leave the training loop to ``fit``.

Scripts that need Fashion-MNIST (or Optuna) are skipped when it is missing, except in CI
(``$CI`` set), where a missing prerequisite fails the test.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import in_ci

import mlp_xp
from mlp_xp.data import find_files

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
EXAMPLES = ("disc.py", "depth.py", "autoencoder.py", "tune.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FLOAT = r"(\d+\.\d+)"


def _require(ok: bool, what: str) -> None:
    if not ok:
        if in_ci():
            pytest.fail(f"CI needs {what}")
        pytest.skip(f"{what} is missing")


def _require_fashion_mnist() -> None:
    _require(find_files("fashion-mnist") is not None,
             "Fashion-MNIST on disk (apt-get install dataset-fashion-mnist, or set MLP_XP_DATA)")


def run_script(name: str, tmp_path: Path, *extra: str) -> str:
    """Run ``scripts/<name> --quick --device numpy --out tmp_path``; returns its stdout."""
    env = dict(os.environ)
    env.pop("MLP_XP_DEVICE", None)
    # small matrices: BLAS threads cost more than they give, and a loaded runner makes it far worse
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    command = [sys.executable, str(SCRIPTS / name), "--quick", "--device", "numpy", "--out", str(tmp_path), *extra]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", f"{path} is a truncated PNG"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 300 and height >= 200, f"{path} is only {width}x{height}"
    from PIL import Image  # matplotlib depends on Pillow

    with Image.open(path) as image:
        image.verify()


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no match for {pattern!r} in:\n{text}"
    return float(match.group(1))


def test_disc(tmp_path):
    out = run_script("disc.py", tmp_path)
    assert_png(tmp_path / "disc.png")
    sgd = number(rf"SGD \(batch 1\)\s+test accuracy {FLOAT}", out)
    mini = number(rf"mini-batch \(32\)\s+test accuracy {FLOAT}", out)
    probes = [float(p) for p in re.findall(rf"linear probe on layer2 features: {FLOAT}", out)]
    assert len(probes) == 2 and all(0.0 <= p <= 1.0 for p in probes)
    assert 0.0 <= mini <= 1.0
    assert sgd > 0.7  # batch-size-1 SGD learns a lot even in 4 quick epochs
    assert re.search(r"linearly separable .*: (yes|no)", out)


@pytest.mark.realdata
def test_depth(tmp_path):
    _require_fashion_mnist()
    out = run_script("depth.py", tmp_path)
    assert_png(tmp_path / "depth.png")
    rows = re.findall(rf"^\s+(\d+)\s+{FLOAT}\s+{FLOAT}\s+{FLOAT}\s+{FLOAT}$", out, flags=re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    assert all(0.0 < float(v) <= 1.0 for r in rows for v in r[1:])
    verdicts = re.findall(r"^  (784-[\d-]+): final train .*: (overfits \(.+\)|no overfitting)$", out, flags=re.M)
    assert [v[0] for v in verdicts] == ["784-20-10", "784-40-20-10"]
    assert re.search(r"better: 784-[\d-]+ \(mean test accuracy", out)


@pytest.mark.realdata
def test_autoencoder(tmp_path):
    _require_fashion_mnist()
    out = run_script("autoencoder.py", tmp_path)
    for name in ("autoencoder_latent.png", "pca_latent.png", "autoencoder_traversal.png"):
        assert_png(tmp_path / name)
    ae = number(rf"autoencoder {FLOAT}, PCA-2", out)
    pca = number(rf"PCA-2 {FLOAT} \(", out)
    assert 0.0 < ae < pca < 0.1


@pytest.mark.realdata
def test_tune(tmp_path):
    _require_fashion_mnist()
    try:
        import optuna  # noqa: F401
    except ImportError:
        _require(False, 'Optuna (pip install "mlp-xp[optuna]")')
    out = run_script("tune.py", tmp_path)
    for name in ("tune_importance.png", "tune_history.png"):
        assert_png(tmp_path / name)
    assert len(re.findall(r"^  trial\s+\d+: depth=", out, flags=re.M)) == 3
    assert re.search(r"best trial \d+: \{'depth': \d, 'width': \d+, 'lr': [\d.e-]+, 'weight_decay': [\d.e-]+\}", out)
    best, default = number(rf"validation accuracy: best {FLOAT}", out), number(rf"default {FLOAT}, gain", out)
    assert 0.1 < default <= 1.0 and best >= 0.1
    number(rf"test accuracy: best {FLOAT}, default", out)


# -- static checks -----------------------------------------------------------------------------


def _trees():
    return {name: ast.parse((SCRIPTS / name).read_text(), filename=name) for name in (*EXAMPLES, "_common.py")}


@pytest.mark.parametrize("name", [*EXAMPLES, "_common.py"])
def test_scripts_use_only_public_api(name):
    tree = _trees()[name]
    public = set(mlp_xp.__all__)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mlp_xp":
            assert not any(part.startswith("_") for part in node.module.split(".")), f"{name}: {node.module}"
            if node.module == "mlp_xp":
                assert {a.name for a in node.names} <= public, f"{name} imports non-exported names"
            assert not any(a.name.startswith("_") for a in node.names), f"{name} imports a private name"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            pytest.fail(f"{name}:{node.lineno} reaches into the private attribute {node.attr}")


@pytest.mark.parametrize("name", [*EXAMPLES, "_common.py"])
def test_scripts_leave_the_training_loop_to_fit(name):
    calls = {
        node.func.attr
        for node in ast.walk(_trees()[name])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"backward", "step", "zero_grad"}, f"{name} runs its own training loop"
    if name != "_common.py":
        names = {n.id for n in ast.walk(_trees()[name]) if isinstance(n, ast.Name)}
        assert "fit" in names, f"{name} does not train with fit"
