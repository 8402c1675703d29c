"""The example scripts in ``scripts/``: each one's ``--quick`` mode (with more epochs where the
quick run is too short to show the script's point) runs end to end on NumPy in a subprocess,
writes valid PNGs and prints a report that shows what the script is there to show, with
verdicts that agree with the printed figures; the scripts use only the public API and leave the
training loop to ``fit``.

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

pytestmark = pytest.mark.subprocess


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
    """Both runs (batch-1 SGD and mini-batches) make the "layer2" features linearly separable:
    the output unit and a fresh logistic probe on them classify the disc. Quick data, with the
    16 epochs (and mini-batches of 8) that this needs; full mode reaches 0.99 (README)."""
    out = run_script("disc.py", tmp_path, "--epochs", "16", "--batch-size", "8")
    assert_png(tmp_path / "disc.png")
    runs = re.findall(rf"^  (SGD \(batch 1\)|mini-batch \(8\))\s+test accuracy {FLOAT} \(train {FLOAT}\); "
                      rf"linear probe on layer2 features: {FLOAT}$", out, flags=re.M)
    assert [r[0] for r in runs] == ["SGD (batch 1)", "mini-batch (8)"]
    scores = [float(v) for r in runs for v in (r[1], r[3])]  # test accuracy and probe, per run
    assert all(v >= 0.96 for v in scores), runs  # 0.984 or better over seeds 0-2
    assert all(float(r[2]) >= 0.96 for r in runs), runs
    verdict, lowest = re.search(rf"linearly separable .*: (yes|no) \(lowest {FLOAT}\)", out).groups()
    assert float(lowest) == pytest.approx(min(scores), abs=1e-4)
    assert verdict == ("yes" if min(scores) >= 0.98 else "no")


@pytest.mark.realdata
def test_depth(tmp_path):
    """The two-hidden-layer network is the better one, and both overfit mildly (train accuracy
    above test accuracy): quick data, 20 epochs (README: 30 epochs on all the data)."""
    _require_fashion_mnist()
    out = run_script("depth.py", tmp_path, "--epochs", "20")
    assert_png(tmp_path / "depth.png")
    rows = re.findall(rf"^\s+(\d+)\s+{FLOAT}\s+{FLOAT}\s+{FLOAT}\s+{FLOAT}$", out, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(1, 21))
    for column in (1, 3):  # train accuracy of each network rises over the run
        assert float(rows[-1][column]) > float(rows[0][column]) + 0.05
    summaries = re.findall(
        rf"^  (784-[\d-]+): final train {FLOAT}, final test {FLOAT}, mean test over the last 5 epochs {FLOAT}, "
        rf".*train-test gap ([+-]\d\.\d+); .*: (overfits \(.+\)|no overfitting)$",
        out,
        flags=re.M,
    )
    assert [s[0] for s in summaries] == ["784-20-10", "784-40-20-10"]
    for name, _, final_test, _, gap, verdict in summaries:
        assert float(final_test) > 0.8, name  # 0.83-0.86 over seeds 0-4
        assert float(gap) > 0.01, name  # train above test: 0.031-0.054 over seeds 0-4
        assert ("train-test gap" in verdict) == (float(gap) > 0.03), (name, gap, verdict)
    better, diff, worse = re.search(rf"better: (784-[\d-]+) \(mean test accuracy over the last epochs "
                                    rf"\+{FLOAT} points over (784-[\d-]+)\)", out).groups()
    assert (better, worse) == ("784-40-20-10", "784-20-10")
    means = {s[0]: float(s[3]) for s in summaries}
    assert float(diff) == pytest.approx((means[better] - means[worse]) * 100, abs=0.02)


@pytest.mark.realdata
def test_autoencoder(tmp_path):
    """The 2-D autoencoder reconstructs better than PCA-2 (README: MSE 0.0298 vs 0.0461 in
    full mode; 0.0385 vs 0.0459 in quick mode), and PCA-2 explains about 47 % of the variance."""
    _require_fashion_mnist()
    out = run_script("autoencoder.py", tmp_path)
    for name in ("autoencoder_latent.png", "pca_latent.png", "autoencoder_traversal.png"):
        assert_png(tmp_path / name)
    ae = number(rf"autoencoder {FLOAT}, PCA-2", out)
    pca = number(rf"PCA-2 {FLOAT} \(", out)
    ratio = number(rf"autoencoder/PCA = {FLOAT}", out)
    explained = number(rf"PCA-2 explains {FLOAT}% of the variance", out)
    assert 0.040 < pca < 0.052
    assert 43.0 < explained < 51.0
    assert ae < 0.95 * pca
    assert ratio == pytest.approx(ae / pca, abs=2e-3)
    assert "autoencoder beats PCA-2: yes" in out
    latent_std = [float(v) for v in re.findall(rf"latent std after epoch \d+: {FLOAT}, {FLOAT}", out)[-1]]
    assert all(v > 0.05 for v in latent_std)  # the 2-D code did not collapse


@pytest.mark.realdata
def test_tune(tmp_path):
    """The study runs its trials, reports the best of them (trial, parameters, accuracy) and
    compares it with the untuned default on validation and test data."""
    _require_fashion_mnist()
    try:
        import optuna  # noqa: F401
    except ImportError:
        _require(False, 'Optuna (pip install "mlp-xp[optuna]")')
    out = run_script("tune.py", tmp_path)
    for name in ("tune_importance.png", "tune_history.png"):
        assert_png(tmp_path / name)
    trials = re.findall(rf"^  trial\s+(\d+): depth=(\d), width=(\d+), .*->  {FLOAT} \(2 epochs\)$", out, flags=re.M)
    assert [int(t[0]) for t in trials] == [0, 1, 2]
    assert "trials: 3 complete, 0 pruned" in out
    values = {int(t[0]): float(t[3]) for t in trials}
    best_number, best_depth, best_width = re.search(
        r"best trial (\d+): \{'depth': (\d), 'width': (\d+), 'lr': [\d.e-]+, 'weight_decay': [\d.e-]+\}", out
    ).groups()
    best, default = number(rf"validation accuracy: best {FLOAT}", out), number(rf"default {FLOAT}, gain", out)
    assert best == max(values.values()) == values[int(best_number)]
    assert trials[int(best_number)][1:3] == (best_depth, best_width)
    assert number(r"validation accuracy: .*gain ([+-]\d+\.\d+) points", out) == pytest.approx(
        (best - default) * 100, abs=0.02
    )
    assert min([default, *values.values()]) > 0.5  # every configuration learned: chance is 0.1 (0.59-0.73 at seed 0)
    test_best = number(rf"test accuracy: best {FLOAT}", out)
    assert abs(test_best - best) < 0.05  # the model evaluated on the test set is the best trial's
    assert number(rf"test accuracy: .*default {FLOAT}", out) > 0.6


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


def test_readme_library_table_names_only_top_level_api():
    """Each function and class README's library table lists is ``mlp_xp.<name>`` (the quick start
    imports ``mlp_xp as mx``); the others it names are methods of models and layers, or keywords."""
    readme = (SCRIPTS.parent / "README.md").read_text()
    table = readme.split("| kind | what there is |", 1)[1].split("\n\n", 1)[0]
    names = {name for name, after in re.findall(r"`([A-Za-z_]\w*)(.)", table) if after != "="}
    model = mlp_xp.make_mlp(2, [2], 2).init("numpy")
    methods = {name for name in names if hasattr(model, name) or hasattr(model.layers[0], name)}
    assert len(names - methods) > 30
    assert sorted(names - methods - set(mlp_xp.__all__)) == []
    assert all(hasattr(mlp_xp, name) for name in mlp_xp.__all__)
