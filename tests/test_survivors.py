"""Behaviour that mutants surviving the full mutmut run showed unchecked (README, "Test strength:
mutation testing"): the text a user reads (summaries, epoch lines, error messages), defaults,
boundaries, and helpers reached only through paths no other test took. Each test names what
it pins; all run on NumPy in milliseconds."""

from __future__ import annotations

import io
import json
import os
import re
import sys

import numpy as np
import pytest
from conftest import Terminal

import mlp_xp
from mlp_xp import (
    BatchNorm,
    BinaryCrossEntropy,
    DeviceLoader,
    Linear,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
    make_mlp,
)
from mlp_xp.checkpoint import NPZ_FORMAT, Checkpoint, LegacyCheckpointWarning, layer_list, restore
from mlp_xp.errors import FileFormatError
from mlp_xp.optim import get_schedule, step_decay
from mlp_xp.train import EpochProgress, _progress_bar, format_epoch

# -- Sequential: summary, repr, output width, zero_grad ------------------------------------------


def test_summary_table_text():
    """The whole table: header, rule, rows with output widths from the first layer's width
    (a BatchNorm's ``num_features`` here), thousands separators and the footer."""
    model = Sequential(("bn", BatchNorm(4)), ("fc", Linear(4, 3)), ("act", ReLU()))
    assert model.summary() == "\n".join(
        [
            "layer  type          output      params",
            "---------------------------------------",
            "bn     BatchNorm(4)  (batch, 4)  8",
            "fc     Linear(4, 3)  (batch, 3)  15",
            "act    ReLU()        (batch, 3)  0",
            "total parameters: 23 (not initialised)",
        ]
    )
    wide = make_mlp(784, [256], 10).init("numpy")
    assert wide.summary().splitlines()[2:] == [
        "hidden1  Linear(784, 256)  (batch, 256)  200,960",
        "act1     ReLU()            (batch, 256)  0",
        "output   Linear(256, 10)   (batch, 10)   2,570",
        "total parameters: 203,530 on numpy, float32",
    ]


def test_summary_without_a_known_input_width_shows_question_marks():
    """A first layer that does not know its input width leaves every output width unknown,
    even behind a Linear; ``in_features`` supplies it."""
    model = Sequential(ReLU(), Linear(4, 3))

    def outputs(table: str) -> list[str]:
        return [re.split(r"\s{2,}", row)[2] for row in table.splitlines()[2:4]]

    assert outputs(model.summary()) == ["?", "?"]
    assert outputs(model.summary(4)) == ["(batch, 4)", "(batch, 3)"]


def test_repr_lists_named_layers():
    model = Sequential(("bn", BatchNorm(4)), ("fc", Linear(4, 3)))
    assert repr(model) == "Sequential(\n  (bn): BatchNorm(4),\n  (fc): Linear(4, 3)\n)"


def test_output_features_passes_each_width_on():
    assert Sequential(Linear(4, 3), ReLU()).output_features(4) == 3
    assert make_mlp(784, [32], 10).output_features(784) == 10


def test_zero_grad_sets_zero_gradients_of_each_parameter_shape(numpy_backend):
    model = make_mlp(5, [4], 3, batchnorm=True).init(numpy_backend)
    model.zero_grad()
    for layer in model:
        assert set(layer.grads) == set(layer.params)
        for key, value in layer.params.items():
            grad = layer.grads[key]
            assert (grad.shape, grad.dtype) == (value.shape, value.dtype)
            np.testing.assert_array_equal(grad, 0.0)


def test_moving_an_uninitialised_model_says_to_init_it():
    with pytest.raises(RuntimeError, match=r"^the model has no parameters yet: call model\.init\(backend\) first\.$"):
        make_mlp(4, [3], 2).to("numpy")


def test_param_shapes_name_the_parameters_init_creates(numpy_backend):
    model = make_mlp(5, [4], 3, batchnorm=True).init(numpy_backend)
    for layer in model:
        assert layer.param_shapes() == {key: tuple(value.shape) for key, value in layer.params.items()}


# -- calling layers and losses -------------------------------------------------------------------


def test_layers_and_losses_are_callable(numpy_backend):
    x = np.array([[-1.0, 2.0, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(ReLU()(x), [[0.0, 2.0, 0.5]])
    labels = np.array([1])
    assert float(SoftmaxCrossEntropy()(x, labels)) == pytest.approx(float(SoftmaxCrossEntropy().forward(x, labels)))
    assert repr(SoftmaxCrossEntropy()) == "SoftmaxCrossEntropy()" and repr(mlp_xp.MSE()) == "MSE()"


def test_binary_accuracy_counts_the_threshold_itself_as_negative(numpy_backend):
    """A logit of exactly 0 (probability exactly 0.5) predicts class 0: positive means > threshold."""
    negatives = np.zeros(2, dtype=np.float32)
    assert int(BinaryCrossEntropy(from_logits=True).correct(np.zeros(2, dtype=np.float32), negatives)) == 2
    assert int(BinaryCrossEntropy(from_logits=False).correct(np.full(2, 0.5, dtype=np.float32), negatives)) == 2
    target = np.array([0.0, 1.0], dtype=np.float32)
    assert int(BinaryCrossEntropy(from_logits=False).correct(np.array([0.4, 0.6], dtype=np.float32), target)) == 2


def test_binary_accuracy_of_mismatched_shapes_names_the_loss():
    pred, target = np.zeros((4, 1), dtype=np.float32), np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"^BinaryCrossEntropy: predictions of shape \(4, 1\) do not match targets"):
        BinaryCrossEntropy().correct(pred, target)


# -- training output -----------------------------------------------------------------------------


def test_epoch_line_text():
    """The accuracies that exist, else the held-out loss; never the epoch, lr or timing keys."""
    record = {
        "epoch": 3,
        "train_loss": 0.42671,
        "train_acc": 0.8431,
        "test_loss": 0.39,
        "test_acc": 0.8612,
        "lr": 0.1,
        "seconds": 2.0,
        "samples_per_s": 12345.0,
    }
    assert format_epoch(record, 10) == "epoch 3/10  loss 0.4267  train_acc 0.843  test_acc 0.861  12.3k samples/s"
    regression = {
        "epoch": 1,
        "train_loss": 0.1,
        "train_acc": None,
        "val_loss": 0.25,
        "val_acc": None,
        "lr": 0.1,
        "seconds": 1.0,
        "samples_per_s": 100_000.0,
    }
    assert format_epoch(regression, 2) == "epoch 1/2  loss 0.1000  val_loss 0.2500  100.0k samples/s"


def test_progress_bar_on_a_terminal(monkeypatch, numpy_backend):
    """On a terminal the bar counts the epoch's samples, scaled, and disappears when done."""
    monkeypatch.setattr(sys, "stderr", Terminal())
    loader = DeviceLoader(np.zeros((10, 2), dtype=np.float32), np.zeros(10, dtype=np.int64), numpy_backend)
    bar = _progress_bar(loader, EpochProgress(1, steps=1, samples=4), 3)
    assert bar is not None
    assert (bar.total, bar.n, bar.desc, bar.unit, bar.unit_scale, bar.leave, bar.mininterval) == (
        10,
        4,  # a resumed epoch's bar starts at the samples done before
        "epoch 2/3",
        "sample",
        True,
        False,
        0.5,
    )
    assert callable(bar.dynamic_ncols)  # follows the terminal's width
    bar.close()
    assert "sample/s" in sys.stderr.getvalue()


def test_no_progress_bar_off_a_terminal(monkeypatch, numpy_backend):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    loader = DeviceLoader(np.zeros((10, 2), dtype=np.float32), np.zeros(10, dtype=np.int64), numpy_backend)
    assert _progress_bar(loader, EpochProgress(0), 1) is None
    assert sys.stderr.getvalue() == ""


# -- data, schedules -----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "drop_last", "batches"), [(8, False, 2), (9, False, 3), (9, True, 2), (10, False, 3)])
def test_loader_length_counts_a_partial_last_batch(numpy_backend, n, drop_last, batches):
    x, y = np.zeros((n, 2), dtype=np.float32), np.zeros(n, dtype=np.int64)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, drop_last=drop_last)
    assert len(loader) == batches == len(list(loader))


def test_schedule_defaults_halve_every_epoch():
    assert [step_decay()(e) for e in range(3)] == [1.0, 0.5, 0.25]
    assert [get_schedule("step", 10)(e) for e in range(3)] == [1.0, 0.5, 0.25]
    assert [get_schedule("exp", 10)(e) for e in range(3)] == [1.0, 0.5, 0.25]


# -- checkpoints: restore, fit check, legacy files ------------------------------------------------


def _state(model) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model.state().items()}


def test_restore_of_another_architecture_lists_each_difference(numpy_backend):
    saved = make_mlp(4, [3], 2).init(numpy_backend)
    checkpoint = Checkpoint({"layers": layer_list(saved)}, _state(saved), {})
    with pytest.raises(ValueError) as longer:
        restore(checkpoint, make_mlp(4, [3, 3], 2).init(numpy_backend))
    assert str(longer.value) == (
        "checkpoint does not match the model architecture: layer 2: checkpoint has 'output: Linear(3, 2)', "
        "model has 'hidden2: Linear(3, 3)'; checkpoint has 3 layers, model has 5"
    )
    with pytest.raises(ValueError) as wider:
        restore(checkpoint, make_mlp(4, [5], 2).init(numpy_backend))
    assert str(wider.value) == (
        "checkpoint does not match the model architecture: layer 0: checkpoint has 'hidden1: Linear(4, 3)', "
        "model has 'hidden1: Linear(4, 5)'; layer 2: checkpoint has 'output: Linear(3, 2)', "
        "model has 'output: Linear(5, 2)'"
    )


def test_restore_lists_every_tensor_that_does_not_fit(numpy_backend):
    model = make_mlp(4, [3], 2).init(numpy_backend)
    tensors = _state(model)
    del tensors["hidden1.bias"]
    tensors["output.weight"] = np.zeros((2, 3), dtype=np.float32)
    tensors["extra.weight"] = np.zeros(1, dtype=np.float32)
    with pytest.raises(FileFormatError) as caught:
        restore(Checkpoint({"layers": layer_list(model)}, tensors, {}, "run.ckpt"), model)
    assert str(caught.value) == (
        "run.ckpt: tensors do not fit the layers it names: missing tensor hidden1.bias; unexpected tensor "
        "extra.weight; output.weight has shape (2, 3), the model needs (3, 2)."
    )


def test_restore_converts_to_the_model_dtype(numpy_backend):
    """A float32 checkpoint restored into a float64 model (and its optimizer) becomes float64."""
    source = make_mlp(4, [3], 2).init(numpy_backend)
    optimizer = mlp_xp.SGD(source, 0.1, momentum=0.9)
    optimizer.prepare()
    states = {f"momentum/{k}": np.ones(v.shape, np.float32) for k, v in source.parameters().items()}
    checkpoint = Checkpoint(
        {"layers": layer_list(source), "optimizer": {"type": "SGD", "steps": 3}}, _state(source), states
    )
    model = make_mlp(4, [3], 2).init(numpy_backend, dtype="float64")
    target = mlp_xp.SGD(model, 0.1, momentum=0.9)
    restore(checkpoint, model, target)
    assert {v.dtype.name for v in model.state().values()} == {"float64"}
    assert {v.dtype.name for v in target.state_arrays().values()} == {"float64"} and target.steps == 3


def test_restore_of_optimizer_state_without_its_type(numpy_backend):
    model = make_mlp(4, [3], 2).init(numpy_backend)
    states = {f"momentum/{k}": np.zeros(v.shape, np.float32) for k, v in model.parameters().items()}
    checkpoint = Checkpoint({"layers": layer_list(model)}, _state(model), states)
    with pytest.raises(ValueError, match=r"^checkpoint holds None state; cannot load it into SGD\.$"):
        restore(checkpoint, model, mlp_xp.SGD(model, 0.1, momentum=0.9))


def test_partial_flag_round_trips(tmp_path, numpy_backend):
    model = make_mlp(4, [3], 2).init(numpy_backend)
    assert mlp_xp.load_checkpoint(mlp_xp.save_checkpoint(tmp_path / "a", model, epoch=1)).meta["partial"] is False
    path = mlp_xp.save_checkpoint(tmp_path / "b", model, epoch=1, partial=True)
    assert mlp_xp.load_checkpoint(path).meta["partial"] is True


def _npz(path, meta) -> str:
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return str(path)


@pytest.mark.parametrize("meta", [{"format": "mlp_xp.checkpoint/9", "note": "x" * 100}, ["a", "list"]])
def test_npz_whose_meta_is_not_a_format_1_header(tmp_path, meta):
    path = _npz(tmp_path / "run.npz", meta)
    message = f"{path}: its 'meta' entry is not an mlp_xp format-1 header ({str(meta)[:80]})."
    with pytest.raises(FileFormatError, match=f"^{re.escape(message)}$"):
        mlp_xp.load_checkpoint(path)


def test_npz_checkpoint_keeps_its_path(tmp_path):
    path = _npz(tmp_path / "run.npz", {"format": NPZ_FORMAT, "epoch": 1, "dtype": "float32", "layers": []})
    with pytest.warns(LegacyCheckpointWarning):
        assert mlp_xp.load_checkpoint(path).path == path


# -- optimizer state ------------------------------------------------------------------------------


def test_optimizer_state_round_trips_with_slashes_in_layer_names(numpy_backend):
    model = Sequential(("enc/fc", Linear(4, 3)), ("out", Linear(3, 2))).init(numpy_backend)
    optimizer = mlp_xp.SGD(model, 0.1, momentum=0.9)
    optimizer.prepare()
    arrays = {k: np.full(v.shape, 2.0, np.float32) for k, v in optimizer.state_arrays().items()}
    assert "momentum/enc/fc.weight" in arrays
    optimizer.load_state_arrays(arrays, steps=5)
    np.testing.assert_array_equal(optimizer.state_arrays()["momentum/enc/fc.weight"], 2.0)


def test_optimizer_state_errors_name_the_state(numpy_backend):
    model = make_mlp(4, [3], 2).init(numpy_backend)
    adam = mlp_xp.Adam(model)
    weight = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"^optimizer state 'velocity/hidden1\.weight' does not belong to Adam\.$"):
        adam.load_state_arrays({"velocity/hidden1.weight": weight}, steps=1)
    only_first = {f"exp_avg/{k}": np.asarray(v) for k, v in model.parameters().items()}
    with pytest.raises(ValueError, match=r"^optimizer state lacks \['exp_avg_sq'\]\.$"):
        adam.load_state_arrays(only_first, steps=1)


def test_loss_shape_and_type_errors_name_the_loss():
    pred = np.zeros((2, 1), dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"^MSE: predictions of shape \(2, 1\) do not match targets of shape \(2,\)\.$"
    ):
        mlp_xp.MSE().forward(pred, np.zeros(2, dtype=np.float32))
    with pytest.raises(TypeError, match=r"^MSE: predictions are numpy\.ndarray but targets are builtins\.list; put"):
        mlp_xp.MSE().forward(pred, [[0.0], [0.0]])


@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="mutmut's trampolines add stack frames")
def test_legacy_warning_names_the_line_that_loaded_the_file(tmp_path):
    path = _npz(tmp_path / "run.npz", {"format": NPZ_FORMAT, "epoch": 1, "dtype": "float32", "layers": []})
    with pytest.warns(LegacyCheckpointWarning) as caught:
        mlp_xp.load_checkpoint(path)
    assert caught[0].filename == __file__
