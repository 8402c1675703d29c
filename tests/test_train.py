"""DeviceLoader, fit/evaluate, resume and the CLI end to end (checkpoint files: test_checkpoint.py)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import warnings

import array_api_compat
import numpy as np
import pytest

import mlp_xp
from mlp_xp import DeviceLoader, SoftmaxCrossEntropy, fit
from mlp_xp.cli import _one_line_warnings, build_parser, main
from mlp_xp.data import write_idx

# -- DeviceLoader -----------------------------------------------------------------------------


def _ids_loader(backend, n=103, batch_size=10, **kwargs):
    ids = np.arange(n)
    x = np.repeat(ids[:, None], 3, axis=1).astype(np.float32)
    return DeviceLoader(x, ids, backend, batch_size=batch_size, **kwargs)


def _epoch_ids(loader):
    batches = [(loader.backend.to_numpy(x), loader.backend.to_numpy(y)) for x, y in loader]
    for x, y in batches:
        np.testing.assert_array_equal(x[:, 0], y)  # features and labels stay paired
    return np.concatenate([y for _, y in batches])


def test_loader_yields_every_sample_once_per_epoch_on_the_device(backend):
    loader = _ids_loader(backend, seed=1)
    assert len(loader) == 11
    sizes = []
    for x, _ in loader:
        assert array_api_compat.device(x) == backend.device
        assert x.dtype == backend.xp.float32
        sizes.append(x.shape[0])
    assert sizes == [10] * 10 + [3]
    order = _epoch_ids(loader)
    np.testing.assert_array_equal(np.sort(order), np.arange(103))


def test_loader_orders_differ_by_epoch_and_repeat_by_seed(numpy_backend):
    first, second = _ids_loader(numpy_backend, seed=5), _ids_loader(numpy_backend, seed=5)
    epoch0, epoch1 = _epoch_ids(first), _epoch_ids(first)
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(epoch0, _epoch_ids(second))
    np.testing.assert_array_equal(epoch1, _epoch_ids(second))
    second.set_epoch(0)  # resuming at an epoch reproduces its order
    np.testing.assert_array_equal(epoch0, _epoch_ids(second))
    assert not np.array_equal(epoch0, _epoch_ids(_ids_loader(numpy_backend, seed=6)))


def test_loader_orders_are_identical_across_backends(other_backend, numpy_backend):
    np.testing.assert_array_equal(
        _epoch_ids(_ids_loader(other_backend, seed=3)), _epoch_ids(_ids_loader(numpy_backend, seed=3))
    )


def test_loader_without_shuffle_and_with_drop_last(numpy_backend):
    plain = _ids_loader(numpy_backend, shuffle=False)
    np.testing.assert_array_equal(_epoch_ids(plain), np.arange(103))
    dropped = _ids_loader(numpy_backend, drop_last=True)
    assert len(dropped) == 10 and dropped.num_samples == 100
    assert len(np.unique(_epoch_ids(dropped))) == 100


def test_loader_scales_uint8_pixels_per_batch(backend):
    x = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    loader = DeviceLoader(x, np.array([0, 1]), backend, batch_size=2, shuffle=False)
    assert loader.x.dtype == backend.xp.uint8  # stored compactly on the device
    ((xb, _),) = list(loader)
    assert xb.dtype == backend.xp.float32
    np.testing.assert_allclose(backend.to_numpy(xb), [[0.0, 1.0], [0.2, 0.4]], rtol=1e-6)


def test_loader_without_targets_yields_inputs_as_targets(numpy_backend):
    loader = DeviceLoader(np.ones((4, 2), np.uint8), None, numpy_backend, batch_size=4)
    ((xb, yb),) = list(loader)
    assert xb is yb


def test_loader_rejects_bad_labels_and_sizes(numpy_backend):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\) for 10 classes; found 12 at index 1"):
        DeviceLoader(np.zeros((3, 2), np.float32), np.array([1, 12, 3]), numpy_backend, num_classes=10)
    with pytest.raises(ValueError, match="x has 3 samples but y has 2"):
        DeviceLoader(np.zeros((3, 2), np.float32), np.array([1, 2]), numpy_backend)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        DeviceLoader(np.zeros((3, 2), np.float32), np.array([1, 2, 0]), numpy_backend, batch_size=0)


# -- fit / evaluate ---------------------------------------------------------------------------

TINY = mlp_xp.synthetic(600, d=24, classes=4, seed=0, n_test=200)


def _train(backend, epochs=3, hidden=(16,), seed=0, **fit_kwargs):
    model = mlp_xp.make_mlp(24, list(hidden), 4, batchnorm=True).init(backend, seed=seed)
    optimizer = mlp_xp.SGD(model, 0.1, momentum=0.9, weight_decay=1e-4)
    train = DeviceLoader(TINY.x_train, TINY.y_train, backend, batch_size=32, seed=seed, num_classes=4)
    test = DeviceLoader(TINY.x_test, TINY.y_test, backend, batch_size=64, shuffle=False)
    history = fit(
        model,
        SoftmaxCrossEntropy(),
        optimizer,
        train,
        epochs=epochs,
        val_loader=test,
        progress=False,
        log=None,
        **fit_kwargs,
    )
    return model, history


def test_fit_learns_and_records_history(numpy_backend):
    _, history = _train(numpy_backend, epochs=4)
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4]
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history.last["test_acc"] > 0.9
    assert all(r["samples_per_s"] > 0 and r["seconds"] > 0 for r in history.epochs)


def test_same_trajectory_on_every_backend(other_backend, numpy_backend):
    """Device-resident training end to end: the same losses and accuracies everywhere
    (array-api-strict's device1 raises on any device mixing or host conversion)."""
    model, history = _train(other_backend)
    _, reference = _train(numpy_backend)
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(history[key], reference[key], rtol=2e-4)
    for key in ("train_acc", "test_acc"):
        np.testing.assert_allclose(history[key], reference[key], atol=2 / 200)
    for value in model.state().values():
        assert array_api_compat.device(value) == other_backend.device


def test_fit_log_line_format(numpy_backend):
    lines = []
    model = mlp_xp.make_mlp(24, [8], 4).init(numpy_backend)
    loader = DeviceLoader(TINY.x_train, TINY.y_train, numpy_backend)
    fit(
        model,
        SoftmaxCrossEntropy(),
        mlp_xp.SGD(model, 0.1),
        loader,
        epochs=2,
        val_loader=loader,
        progress=False,
        log=lines.append,
    )
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2  loss ")
    assert "train_acc " in lines[1] and "test_acc " in lines[1] and lines[1].endswith("samples/s")


def test_nan_loss_stops_with_epoch_step_and_last_finite_loss(numpy_backend):
    x = TINY.x_train[:100].astype(np.float32) / 255
    x[35] = np.nan  # in the fourth batch of 10 when not shuffled
    model = mlp_xp.make_mlp(24, [8], 4).init(numpy_backend)
    loader = DeviceLoader(x, TINY.y_train[:100], numpy_backend, batch_size=10, shuffle=False)
    with pytest.raises(
        mlp_xp.TrainingDiverged, match=r"loss became nan at epoch 1, step 4; last finite loss: \d\.\d+ at step 3"
    ):
        fit(model, SoftmaxCrossEntropy(), mlp_xp.SGD(model, 0.1), loader, epochs=2, progress=False, log=None)


def test_ctrl_c_stops_cleanly_at_a_step_boundary(numpy_backend):
    class InterruptAfterFirstEpoch:
        """One Ctrl-C, once: a second one would raise KeyboardInterrupt (by design), and a loop
        that ignored the first would then end pytest itself instead of failing this test."""

        sent = False

        def on_epoch_end(self, epoch, record, model):
            if not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)

    lines = []
    handler = signal.getsignal(signal.SIGINT)  # default_int_handler; SIG_IGN when started in the background
    model = mlp_xp.make_mlp(24, [8], 4).init(numpy_backend)
    loader = DeviceLoader(TINY.x_train, TINY.y_train, numpy_backend, batch_size=32)
    history = fit(
        model,
        SoftmaxCrossEntropy(),
        mlp_xp.SGD(model, 0.1),
        loader,
        epochs=5,
        progress=False,
        callbacks=[InterruptAfterFirstEpoch()],
        log=lines.append,
    )
    assert history.interrupted
    assert len(history.epochs) == 1
    assert lines[-1] == "interrupted in epoch 2/5 after 1 of 19 steps"
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_callback_can_stop_training_and_schedule_sets_lr(numpy_backend):
    model = mlp_xp.make_mlp(24, [8], 4).init(numpy_backend)
    optimizer = mlp_xp.SGD(model, 0.4, schedule=mlp_xp.step_decay(1, 0.5))
    loader = DeviceLoader(TINY.x_train, TINY.y_train, numpy_backend)

    class StopAtThree:
        def on_epoch_end(self, epoch, record, model):
            return record["epoch"] == 3

    history = fit(
        model, SoftmaxCrossEntropy(), optimizer, loader, epochs=10, callbacks=[StopAtThree()], progress=False, log=None
    )
    assert history["lr"] == [0.4, 0.2, 0.1]


def test_evaluate_uses_eval_mode_and_restores_training(numpy_backend):
    model, history = _train(numpy_backend, epochs=1)
    test = DeviceLoader(TINY.x_test, TINY.y_test, numpy_backend, batch_size=64, shuffle=False)
    scores = mlp_xp.evaluate(model, SoftmaxCrossEntropy(), test)
    assert scores["acc"] == pytest.approx(history.last["test_acc"])
    assert all(layer.training for layer in model.layers)


# -- CLI end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """A tiny IDX dataset in the MNIST layout: 16x16 images of 3 classes."""
    data = mlp_xp.synthetic(900, d=256, classes=3, seed=4, n_test=150)
    root = tmp_path_factory.mktemp("tiny-idx")
    write_idx(root / "train-images-idx3-ubyte.gz", data.x_train.reshape(-1, 16, 16), gzip=True)
    write_idx(root / "train-labels-idx1-ubyte.gz", data.y_train, gzip=True)
    write_idx(root / "t10k-images-idx3-ubyte", data.x_test.reshape(-1, 16, 16))
    write_idx(root / "t10k-labels-idx1-ubyte", data.y_test)
    return root


def _cli_train(idx_dir, *extra):
    args = [
        "train",
        "--dataset",
        "idx",
        "--data-dir",
        str(idx_dir),
        "--hidden",
        "32",
        "--batch-size",
        "64",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]
    return main(args)


def test_cli_train_eval_predict_end_to_end(idx_dir, tmp_path, capsys):
    metrics, plot, ckpt = tmp_path / "m.json", tmp_path / "curves.png", tmp_path / "run.npz"
    assert (
        _cli_train(idx_dir, "--epochs", "3", "--metrics-json", str(metrics), "--plot", str(plot), "--save", str(ckpt))
        == 0
    )
    document = json.loads(metrics.read_text())
    assert document["config"]["hidden"] == [32] and document["config"]["backend"] == "numpy"
    assert [e["epoch"] for e in document["epochs"]] == [1, 2, 3]
    assert set(document["epochs"][0]) >= {
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "seconds",
        "samples_per_s",
    }
    assert document["epochs"][-1]["test_acc"] > 0.9
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()

    assert main(["eval", "--load", str(ckpt), "--dataset", "idx", "--data-dir", str(idx_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(document["epochs"][-1]["test_acc"], abs=1e-4)

    grid = tmp_path / "pred.png"
    assert (
        main(
            [
                "predict",
                "--load",
                str(ckpt),
                "--dataset",
                "idx",
                "--data-dir",
                str(idx_dir),
                "--count",
                "6",
                "--out",
                str(grid),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = re.findall(r"^\s*\d+  predicted (\S+)\s+true (\S+)\s*(✗)?$", out, flags=re.M)
    assert len(rows) == 6
    assert all((predicted != true) == bool(mark) for predicted, true, mark in rows)  # ✗ marks the wrong ones
    right = int(re.search(r"^(\d)/6 right$", out, flags=re.M).group(1))
    assert right == sum(predicted == true for predicted, true, _ in rows)
    assert right >= 5  # the model scores > 0.9 on this test set


@pytest.mark.parametrize("model", [(), ("--dropout", "0.3")])
def test_cli_resume_gives_the_same_weights_as_an_uninterrupted_run(idx_dir, tmp_path, model):
    straight, resumed = tmp_path / "straight.npz", tmp_path / "resumed.npz"
    assert _cli_train(idx_dir, *model, "--epochs", "4", "--save", str(straight)) == 0
    assert _cli_train(idx_dir, *model, "--epochs", "2", "--save", str(resumed)) == 0
    assert _cli_train(idx_dir, *model, "--epochs", "4", "--resume", str(resumed), "--save", str(resumed)) == 0
    a, b = mlp_xp.load_checkpoint(straight), mlp_xp.load_checkpoint(resumed)
    assert b.meta["epoch"] == 4 and len(b.meta["history"]) == 4
    for key in a.model:
        np.testing.assert_array_equal(a.model[key], b.model[key])
    for key in a.optimizer:
        np.testing.assert_array_equal(a.optimizer[key], b.optimizer[key])


def test_cli_cuda_without_a_gpu_is_one_clear_line(capsys):
    try:
        mlp_xp.get_backend("cuda")
    except mlp_xp.BackendUnavailableError:
        pass
    else:
        pytest.skip("a CUDA device is usable here: --device cuda trains")
    assert main(["train", "--device", "cuda", "--dataset", "synthetic", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlp-xp train: error: CUDA was requested") and "--device auto" in err


def test_cli_errors_are_one_clear_line(idx_dir, tmp_path, capsys):
    assert main(["train", "--device", "tpu", "--dataset", "synthetic"]) == 2
    assert "unknown backend/device spec 'tpu'" in capsys.readouterr().err
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "MLP_XP_DATA" in err
    wrong = tmp_path / "other.npz"
    assert _cli_train(idx_dir, "--epochs", "1", "--save", str(wrong)) == 0
    assert _cli_train(idx_dir, "--epochs", "2", "--hidden", "8", "--resume", str(wrong)) == 2
    assert "does not match the model architecture" in capsys.readouterr().err


def test_cli_diverging_run_prints_no_numpy_warnings_and_warnings_are_one_line(capsys):
    """Overflow in a diverging NumPy run is what the NaN check reports, in one line; other
    warnings (a legacy checkpoint, say) are one line each, not Python's two with a source line."""
    argv = ["train", "--dataset", "synthetic", "--synthetic-size", "600", "--device", "cpu", "--quiet", "--hidden",
            "16", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "2", "--no-divergence-check"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 1
        warnings.warn("a warning outside the command", stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning outside the command"]  # NumPy's overflow: silenced
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlp-xp train: error: the loss became nan"), err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _one_line_warnings("eval"):
            warnings.warn("checkpoint format 1 is read-only", stacklevel=1)
    assert not caught and capsys.readouterr().err == "mlp-xp eval: warning: checkpoint format 1 is read-only\n"


def test_cli_data_dir_may_start_with_a_tilde(idx_dir, monkeypatch, capsys):
    """``--data-dir=~/d``: the shell leaves the ``~`` after ``=`` to mlp-xp."""
    monkeypatch.setenv("HOME", str(idx_dir.parent))
    assert _cli_train(idx_dir, "--epochs", "1", f"--data-dir=~/{idx_dir.name}") == 0
    assert capsys.readouterr().out.startswith("done: 1 epoch")


def test_cli_out_of_memory_is_one_line_with_exit_code_1(monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("mlp_xp.cli.synthetic", no_memory)
    assert main(["train", "--dataset", "synthetic", "--device", "cpu", "--quiet"]) == 1
    assert capsys.readouterr().err == (
        "mlp-xp train: error: out of memory (an allocation failed); try a smaller dataset, batch or model\n"
    )


@pytest.mark.parametrize("command", ["train", "eval", "predict", "export"])
def test_cli_help_shows_every_default(command):
    """Every option with a default (None and a flag's False aside) ends its help with it."""
    (commands,) = build_parser()._subparsers._group_actions
    parser = commands.choices[command]
    options = parser.format_help().split("options:\n", 1)[1]
    helps = {block.split()[0].rstrip(","): " ".join(block.split()) for block in re.split(r"\n(?=  -)", options)}
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in helps[action.option_strings[0]], action.option_strings
    assert "(default: None)" not in options and "(default: False)" not in options


@pytest.mark.realdata
def test_cli_mnist_refuses_a_fashion_mnist_directory(fashion_mnist, monkeypatch, capsys):
    """The real data's hashes: MLP_XP_DATA (or --data-dir) at Fashion-MNIST does not pass for
    MNIST, and `mlp-xp info` says so."""
    monkeypatch.setenv("MLP_XP_DATA", fashion_mnist.source)
    quick = ["--device", "cpu", "--quiet", "--epochs", "1", "--hidden", "8"]  # should it train after all
    for extra in ([], ["--data-dir", fashion_mnist.source]):
        assert main(["train", "--dataset", "mnist", *quick, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{fashion_mnist.source} holds fashion-mnist" in err, err
    assert main(["info"]) == 0  # the files are checked as training would check them
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  dataset ")]
    assert lines[0] == ["dataset", "fashion-mnist", fashion_mnist.source]
    assert lines[1][:4] == ["dataset", "mnist", f"{fashion_mnist.source}:", "unusable:"]


def test_cli_info_lists_backends_and_datasets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "auto selects:" in out and "dataset fashion-mnist" in out


# -- real data --------------------------------------------------------------------------------


@pytest.mark.realdata
def test_one_epoch_on_fashion_mnist_reaches_80_percent(fashion_mnist):
    backend = mlp_xp.get_backend("numpy")
    model = mlp_xp.make_mlp(784, [256], 10).init(backend, seed=0)
    train = DeviceLoader(fashion_mnist.x_train, fashion_mnist.y_train, backend, batch_size=256, num_classes=10)
    test = DeviceLoader(fashion_mnist.x_test, fashion_mnist.y_test, backend, batch_size=1000, shuffle=False)
    history = fit(
        model,
        SoftmaxCrossEntropy(check_labels=False),
        mlp_xp.Adam(model, 1e-3),
        train,
        epochs=1,
        val_loader=test,
        progress=False,
        log=None,
    )
    assert history.last["test_acc"] > 0.80


@pytest.mark.subprocess
def test_cli_ctrl_c_saves_a_checkpoint_to_resume_from(tmp_path):
    """A real SIGINT to a running `mlp-xp train --save`: exit 130, a checkpoint, a resume hint."""
    import subprocess
    import sys

    ckpt = tmp_path / "run.npz"
    command = [
        sys.executable,
        "-m",
        "mlp_xp.cli",
        "train",
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "6000",
        "--hidden",
        "64",
        "--batch-size",
        "16",
        "--epochs",
        "200",
        "--device",
        "cpu",
        "--save",
        str(ckpt),
    ]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        for line in proc.stdout:  # wait until an epoch has finished and been saved
            if line.startswith("epoch 1/200"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"continue with --resume {ckpt}" in err
    meta = mlp_xp.load_checkpoint(ckpt).meta
    assert meta["partial"] and meta["epoch"] >= 1 and len(meta["history"]) == meta["epoch"]


def test_cli_eval_and_predict_default_to_the_data_the_checkpoint_was_trained_on(tmp_path, capsys):
    ckpt = str(tmp_path / "run.safetensors")
    train = ["train", "--dataset", "synthetic", "--synthetic-size", "600", "--hidden", "8", "--epochs", "1"]
    assert main([*train, "--device", "cpu", "--quiet", "--save", ckpt]) == 0
    capsys.readouterr()
    assert main(["eval", "--load", ckpt, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("synthetic test: ") and "(100 samples" in out, out
    assert main(["eval", "--load", ckpt, "--device", "cpu", "--synthetic-size", "1200"]) == 0
    assert "(200 samples" in capsys.readouterr().out  # given anew: used


def test_unshuffled_loader_yields_targets_of_several_dimensions(backend):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    loader = DeviceLoader(x, y, backend, batch_size=4, shuffle=False)
    batches = [(backend.to_numpy(xb), backend.to_numpy(yb)) for xb, yb in loader]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)


def test_evaluate_leaves_no_layer_caches(numpy_backend):
    model = mlp_xp.make_mlp(4, [5], 3, batchnorm=True, dropout=0.2).init(numpy_backend)
    rng = np.random.default_rng(0)
    loader = DeviceLoader(rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 3, 20), numpy_backend,
                          batch_size=8, shuffle=False)  # fmt: skip
    mlp_xp.evaluate(model, SoftmaxCrossEntropy(), loader)
    assert all(not layer.cache for layer in model.layers) and model.layers[0].training
