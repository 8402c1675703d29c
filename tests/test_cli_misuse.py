"""Every misuse of the command line answered in one line on stderr, with its documented exit code.

``CASES`` is the misuse table of README's "Exit codes and errors" section: each case runs
``mlp-xp`` in-process on a tiny IDX dataset and must exit with its code, print exactly one line
to stderr that contains its message, and (for usage errors) do no work: nothing on stdout.
``test_readme_table_lists_every_case`` keeps the README table and this list in step.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

import mlp_xp
from mlp_xp.cli import EXIT_FAILED, EXIT_USAGE, main
from mlp_xp.data import write_idx

TRAIN = "train --dataset idx --data-dir {data} --device cpu --hidden 8 --quiet"
EVAL = "eval --dataset idx --data-dir {data} --device cpu"
PREDICT = "predict --dataset idx --data-dir {data} --device cpu --load {ckpt}"

CASES = [
    # (id, arguments, exit code, what stderr's one line says)
    ("epochs-0", f"{TRAIN} --epochs 0", 2, "--epochs 0 is below 1: nothing would be trained"),
    ("metrics-json-dir", f"{TRAIN} --metrics-json {{tmp}}", 2, "is a directory; give a file name inside it"),
    ("lr-1e6-diverges", f"{TRAIN} --optimizer sgd --lr 1e6", 1, "training diverged: the loss rose to"),
    ("save-under-a-file", f"{TRAIN} --save {{ckpt}}/run.ckpt", 2, "is a file, not a directory"),
    ("batch-size-0", f"{TRAIN} --batch-size 0", 2, "--batch-size 0 is below 1"),
    ("hidden-0", f"{TRAIN} --hidden 8 0", 2, "--hidden 0 is below 1: every hidden layer needs a width"),
    ("dropout-1", f"{TRAIN} --dropout 1", 2, "--dropout 1.0 is not a probability in [0, 1)"),
    ("lr-negative", f"{TRAIN} --lr -0.1", 2, "--lr -0.1 must be a finite number above 0"),
    ("lr-nan", f"{TRAIN} --lr nan", 2, "--lr nan must be a finite number above 0"),
    ("init-std-0", f"{TRAIN} --init normal --init-std 0", 2, "--init-std 0.0 must be a finite number above 0"),
    ("momentum-with-adam", f"{TRAIN} --momentum 0.9", 2, "--momentum is an sgd option; --optimizer adam"),
    ("momentum-1", f"{TRAIN} --optimizer sgd --momentum 1", 2, "--momentum 1.0 is not in [0, 1)"),
    ("nesterov-alone", f"{TRAIN} --optimizer sgd --nesterov", 2, "--nesterov needs --optimizer sgd with --momentum"),
    ("weight-decay-negative", f"{TRAIN} --weight-decay -1", 2, "--weight-decay -1.0 must be a finite number >= 0"),
    ("lr-gamma-0", f"{TRAIN} --lr-decay step --lr-gamma 0", 2, "--lr-gamma 0.0 is not a decay factor in (0, 1]"),
    ("lr-step-0", f"{TRAIN} --lr-decay step --lr-step 0", 2, "--lr-step 0 is below 1"),
    ("val-split-beyond-data", f"{TRAIN} --val-split 100000", 2,
     "--val-split 100000 leaves no training samples: the training set has 360"),
    ("resume-equals-metrics", f"{TRAIN} --resume {{ckpt}} --epochs 2 --metrics-json {{ckpt}}", 2,
     "--resume and --metrics-json name the same file"),
    ("seed-negative", f"{TRAIN} --seed -1", 2, "--seed -1 is below 0"),
    ("save-equals-metrics", f"{TRAIN} --save {{tmp}}/a --metrics-json {{tmp}}/a", 2,
     "--save and --metrics-json name the same file"),
    ("plot-not-png", f"{TRAIN} --plot {{tmp}}/curves.pdf", 2, "figures are written as PNG; give a path ending in .png"),
    ("data-dir-missing", "train --dataset idx --data-dir {tmp}/nowhere", 2, "/nowhere is not a directory"),
    ("idx-without-data-dir", "train --dataset idx", 2, "--dataset idx reads your own IDX files: give their directory"),
    ("synthetic-with-data-dir", "train --dataset synthetic --data-dir {data}", 2,
     "--data-dir conflicts with --dataset synthetic"),
    ("synthetic-size-0", "train --dataset synthetic --synthetic-size 0", 2, "--synthetic-size 0 is below 1"),
    ("out-of-memory", "train --dataset synthetic --synthetic-size 10000000000000000 --device cpu --quiet", 1,
     "out of memory (Unable to allocate"),
    ("resume-missing", f"{TRAIN} --resume {{tmp}}/none.ckpt", 2, "--resume {tmp}/none.ckpt: no such file"),
    ("resume-nothing-left", f"{TRAIN} --resume {{ckpt}} --epochs 1", 2,
     "already holds 1 epoch, so nothing is left to train; ask for more than 1"),
    ("resume-other-architecture", f"{TRAIN} --resume {{ckpt}} --epochs 2 --hidden 4", 2,
     "checkpoint does not match the model architecture"),
    ("resume-config-types", f"{TRAIN} --resume {{types_config}} --epochs 2", 2,
     "{types_config}: its config has invalid batchnorm=1, seed='y'; the file was not written by `mlp-xp train`"),
    ("resume-config-range", f"{TRAIN} --resume {{range_config}} --epochs 2", 2,
     "--lr -1.0 must be a finite number above 0 (the arguments not given are taken from {range_config})"),
    ("device-unknown", f"{TRAIN} --device tpu", 2, "unknown backend/device spec 'tpu'"),
    ("torch-device-unknown", f"{TRAIN} --device torch:mps", 2, "unknown torch device 'mps'; choose from cpu, cuda"),
    ("torch-device-index", f"{TRAIN} --device torch:cuda:x", 2,
     "unknown torch device 'cuda:x': the device index must be a number (e.g. torch:cuda:0)."),
    ("compile-without-compiler", f"{TRAIN} --compile", 2, "numpy has no compiler: --compile works on jax, jax:cuda"),
    ("resume-compiled-without-compiler", f"{TRAIN} --resume {{compiled}} --epochs 2", 2,
     "numpy has no compiler, and {compiled} holds a compiled run; give --no-compile to resume it eagerly here."),
    ("float64-on-a-float32-device", f"{TRAIN} --device array-api-strict:no_float64 --dtype float64", 2,
     "array-api-strict:no_float64 has no float64 on its device; give --dtype float32"),
    ("resume-float64-on-a-float32-device", f"{TRAIN} --resume {{float64}} --device array-api-strict:no_float64 "
     "--epochs 2", 2, "has no float64 on its device, and {float64} holds a float64 run; give --dtype float32"),
    ("eval-float64-on-a-float32-device", f"{EVAL} --load {{float64}} --device array-api-strict:no_float64", 2,
     "{float64} holds a float64 model, and array-api-strict:no_float64 has no float64 on its device; choose a "
     "--device that has it (e.g. --device cpu)"),
    ("epochs-not-a-number", "train --epochs ten", 2, "argument --epochs: invalid int value: 'ten'"),
    ("unknown-option", "train --bogus", 2, "unrecognized arguments: --bogus"),
    ("eval-truncated-checkpoint", f"{EVAL} --load {{truncated}}", 2, "(truncated file)"),
    ("eval-not-a-checkpoint", f"{EVAL} --load {{data}}/t10k-labels-idx1-ubyte", 2, "not a safetensors file"),
    ("eval-missing-checkpoint", f"{EVAL} --load {{tmp}}/none.ckpt", 2, "--load {tmp}/none.ckpt: no such file"),
    ("eval-load-dir", f"{EVAL} --load {{tmp}}", 2, "is a directory, not a file"),
    ("eval-load-fifo", f"{EVAL} --load {{fifo}}", 2, "--load {fifo} is not a regular file (a FIFO, socket or device)"),
    ("eval-model-config-keys", f"{EVAL} --load {{keys}}", 2,
     "{keys}: its model_config lacks out_features; has unknown outputs; the file was not written by `mlp-xp train`"),
    ("predict-model-config-types", f"{PREDICT} --load {{types}}", 2,
     "{types}: its model_config has invalid hidden='8', batchnorm=1;"),
    ("eval-model-config-names", f"{EVAL} --load {{names}}", 2,
     "{names}: its model_config does not describe an MLP: unknown activation 'swish'"),
    ("eval-batch-size-0", f"{EVAL} --load {{ckpt}} --batch-size 0", 2, "--batch-size 0 is below 1"),
    ("eval-other-dataset", "eval --dataset idx --data-dir {small} --device cpu --load {ckpt}", 2,
     "holds a model of 784 input features, but small has 16"),
    ("eval-other-classes", "eval --dataset idx --data-dir {four} --device cpu --load {ckpt}", 2,
     "holds a model of 3 classes, but four has 4"),
    ("predict-count-beyond-data", f"{PREDICT} --count 100000", 2,
     "--count 100000 from --start 0 goes past the end of the test set (60 samples); at most 60 are left"),
    ("predict-count-0", f"{PREDICT} --count 0", 2, "--count 0 is below 1"),
    ("predict-start-negative", f"{PREDICT} --start -1", 2, "--start -1 is below 0"),
    ("predict-start-past-end", f"{PREDICT} --start 60", 2, "--start 60 is past the end of the test set (60 samples"),
    ("predict-out-dir", f"{PREDICT} --out {{tmp}}", 2, "--out {tmp} is a directory"),
    ("predict-out-not-png", f"{PREDICT} --out {{tmp}}/grid.jpg", 2, "give a path ending in .png"),
    ("export-over-its-checkpoint", "export --load {ckpt} --format torch -o {ckpt}", 2,
     "--load and --out name the same file"),
    ("export-out-dir", "export --load {ckpt} --format onnx -o {tmp}", 2, "--out {tmp} is a directory"),
    ("export-missing-checkpoint", "export --load {tmp}/none.ckpt --format onnx -o {tmp}/m.onnx", 2,
     "--load {tmp}/none.ckpt: no such file"),
    ("bench-rounds-0", "bench --device cpu --rounds 0", 2, "--rounds 0 is below 1"),
    ("bench-batch-size-0", "bench --device cpu --batch-size 0", 2, "--batch-size 0 is below 1"),
    ("bench-json-dir", "bench --device cpu --json {tmp}", 2, "--json {tmp} is a directory"),
    ("bench-bad-model", "bench --device cpu --hidden x", 2, "--hidden x is not a model: give hidden widths"),
    ("no-command", "", 2, "the following arguments are required: command"),
    ("unknown-command", "fly", 2, "argument command: invalid choice: 'fly'"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """A tiny 28x28 IDX dataset (360 train / 60 test, 3 classes), a 4x4 one, a 28x28 one of 4
    classes, a 1-epoch checkpoint of the first, a truncated copy of it, checkpoints whose
    model_config has wrong keys, types or names, checkpoints whose config has wrong types or
    values, a FIFO and an empty scratch directory."""
    root = tmp_path_factory.mktemp("misuse")
    paths = {"data": root / "data", "small": root / "small", "four": root / "four", "tmp": root / "tmp"}
    for name, side, classes in (("data", 28, 3), ("small", 4, 3), ("four", 28, 4)):
        data = mlp_xp.synthetic(360, d=side * side, classes=classes, seed=1, n_test=60)
        paths[name].mkdir()
        write_idx(paths[name] / "train-images-idx3-ubyte", data.x_train.reshape(-1, side, side))
        write_idx(paths[name] / "train-labels-idx1-ubyte", data.y_train)
        write_idx(paths[name] / "t10k-images-idx3-ubyte", data.x_test.reshape(-1, side, side))
        write_idx(paths[name] / "t10k-labels-idx1-ubyte", data.y_test)
    paths["tmp"].mkdir()
    ckpt = root / "run.ckpt"
    argv = TRAIN.format(data=paths["data"]).split() + ["--epochs", "1", "--save", str(ckpt)]
    assert main(argv) == 0
    truncated = root / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    model = mlp_xp.make_mlp(784, [8], 3).init("numpy")
    good = {"in_features": 784, "hidden": [8], "out_features": 3}
    odd = {"keys": {"in_features": 784, "hidden": [8], "outputs": 3},
           "types": {**good, "hidden": "8", "batchnorm": 1},
           "names": {**good, "activation": "swish"}}
    for name, model_config in odd.items():
        paths[name] = mlp_xp.save_checkpoint(root / f"{name}.ckpt", model, epoch=1, model_config=model_config)
    config = mlp_xp.load_checkpoint(ckpt).meta["config"]
    altered = {"types_config": {"seed": "y", "batchnorm": 1}, "range_config": {"lr": -1.0},
               "compiled": {"compile": True}}
    for name, changes in altered.items():
        paths[name] = mlp_xp.save_checkpoint(
            root / f"{name}.ckpt", model, epoch=1, model_config=good, config={**config, **changes}
        )
    float64 = mlp_xp.make_mlp(784, [8], 3).init("numpy", dtype="float64")
    paths["float64"] = mlp_xp.save_checkpoint(
        root / "float64.ckpt", float64, epoch=1, model_config=good, config={**config, "dtype": "float64"}
    )
    os.mkfifo(root / "pipe")
    paths["fifo"] = root / "pipe"
    return {**{k: str(v) for k, v in paths.items()}, "ckpt": str(ckpt), "truncated": str(truncated)}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``mlp-xp argv`` in-process: (exit code, stdout, stderr); argparse's exits included."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("arguments", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_misuse_is_one_line_with_its_exit_code(places, capsys, monkeypatch, tmp_path, arguments, code, message):
    monkeypatch.chdir(tmp_path)  # nothing lands in the working directory even if a check is missing
    argv = shlex.split(arguments.format(**places))
    exit_code, out, err = run_cli(argv, capsys)
    assert (exit_code, err.count("\n")) == (code, 1), err
    assert re.match(r"mlp-xp( (\w+))?: error: ", err) and message.format(**places) in err, err
    if code == EXIT_USAGE:
        assert out == "", "a usage error must be reported before any work"


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_take_the_data_dir_of_a_dataset_given_anew(places, capsys, command, tmp_path):
    """``--dataset idx`` repeated without ``--data-dir`` reads the directory the checkpoint was
    trained on, instead of asking for it."""
    out = ["--out", str(tmp_path / "grid.png")] if command == "predict" else []
    argv = [command, "--dataset", "idx", "--device", "cpu", "--load", places["ckpt"], *out]
    code, stdout, err = run_cli(argv, capsys)
    assert (code, err) == (0, ""), err
    assert "accuracy" in stdout if command == "eval" else "right" in stdout


def test_divergence_check_can_be_turned_off(places, capsys):
    argv = shlex.split(TRAIN.format(**places)) + ["--optimizer", "sgd", "--lr", "1e6", "--no-divergence-check"]
    code, out, err = run_cli(argv, capsys)
    assert (code, err) == (0, "")
    assert out.startswith("done: 10 epochs")


def test_divergence_message_names_the_learning_rate(places, capsys):
    argv = shlex.split(TRAIN.format(**places)) + ["--optimizer", "sgd", "--lr", "1e6"]
    code, _, err = run_cli(argv, capsys)
    assert code == EXIT_FAILED
    assert "at learning rate 1e+06. Lower the learning rate" in err and "--no-divergence-check" in err


def test_predict_draws_at_most_64_images_and_prints_every_prediction(places, capsys, tmp_path):
    grid = tmp_path / "grid.png"
    code, out, err = run_cli(shlex.split(PREDICT.format(**places)) + ["--count", "60", "--out", str(grid)], capsys)
    assert (code, err) == (0, "")
    assert out.count("predicted ") == 60
    assert f"wrote {grid}" in out and "(the first 64" not in out
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_grid_is_capped(places, capsys, tmp_path, monkeypatch):
    """More images than PREDICT_GRID_MAX: all predictions printed, only the first ones drawn."""
    drawn = []
    monkeypatch.setattr("mlp_xp.cli.PREDICT_GRID_MAX", 8)
    monkeypatch.setattr("mlp_xp.plotting.plot_predictions", lambda images, *args: drawn.append(len(images)))
    code, out, _ = run_cli(shlex.split(PREDICT.format(**places)) + ["--count", "20", "--out", str(tmp_path / "g.png")],
                           capsys)
    assert code == 0 and out.count("predicted ") == 20
    assert drawn == [8] and "(the first 8 of 20 images)" in out


README_PLACES = {
    "data": "DATA", "small": "SMALL", "four": "FOUR", "tmp": "TMP", "ckpt": "run.ckpt", "truncated": "cut.ckpt",
    "keys": "keys.ckpt", "types": "types.ckpt", "names": "names.ckpt", "fifo": "PIPE",
    "types_config": "config.ckpt", "range_config": "lr.ckpt", "compiled": "compiled.ckpt",
    "float64": "float64.ckpt",
}
"""How the README table writes the places of ``places``."""


def test_readme_table_lists_every_case():
    """README's "Exit codes and errors" table holds each case's message and exit code."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Exit codes and errors", 1)[1].split("\n## ", 1)[0]
    rows = [row for row in section.splitlines() if row.startswith("|")]
    for case_id, _, code, message in CASES:
        fragment = message.format(**README_PLACES)
        assert any(fragment in row and row.rstrip().endswith(f"| {code} |") for row in rows), case_id
