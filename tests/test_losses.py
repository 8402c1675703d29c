"""Losses and the accuracy built on them, on every backend: accuracy is right predictions over
predictions (several per sample with extra batch dimensions or several BCE outputs), in ``fit``
(eager, compiled, resumed, data-parallel) and ``evaluate``; ReLU backpropagates after an eval-mode
forward; narrow integer labels (uint8, int8) neither wrap the class ids nor the range check;
integer and float64 targets are cast to the predictions' dtype (no type-promotion error on strict
libraries, no float64 loss or gradient in a float32 model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import resolve_backend

import mlp_xp
from mlp_xp import (
    MSE,
    SGD,
    BinaryCrossEntropy,
    DeviceLoader,
    EpochProgress,
    Linear,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
    evaluate,
    fit,
)
from mlp_xp.distributed import Communicator

TINY_LR = 1e-12  # an update far below float32's resolution of the weights: the model stays as it was


class _Twin(Communicator):
    """Rank 0 of 2 whose partner holds exactly what this rank holds: every sum doubles."""

    def __init__(self) -> None:
        super().__init__()
        self.rank, self.size = 0, 2

    def allreduce(self, array, backend):
        return array * 2.0

    def sum_floats(self, values):
        return [2.0 * v for v in values]


def _host(backend, model, x):
    """The model's predictions for host inputs ``x``, read back to the host."""
    return backend.to_numpy(model.forward(backend.asarray(x, "float32")))


def _labels_with_known_accuracy(backend, model, x, right):
    """(N, T) labels of 2 classes that the model's argmax gets right exactly where ``right`` is true."""
    predicted = np.argmax(_host(backend, model, x), axis=-1)
    return np.where(right, predicted, 1 - predicted)


def _sequence_case(backend, n=40, t=5):
    """A 3→8→2 model on (n, t, 3) inputs and labels (n, t) of which exactly 70 of n·t are right."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, t, 3)).astype(np.float32)
    model = Sequential(Linear(3, 8), ReLU(), Linear(8, 2)).init(backend, seed=0)
    right = np.zeros(n * t, bool)
    right[rng.permutation(n * t)[:70]] = True
    return model, x, _labels_with_known_accuracy(backend, model.eval(), x, right.reshape(n, t))


# -- 1. accuracy = right predictions / predictions -------------------------------------------------


@pytest.mark.parametrize("onehot", [False, True], ids=["labels", "onehot"])
def test_accuracy_with_extra_batch_dimensions_counts_every_prediction(backend, onehot):
    """(40, 5) labels for (40, 5, 2) logits are 200 predictions, 70 of them right: train and test
    accuracy 0.35 (not 70 / 40 = 1.75), also from one-hot (40, 5, 2) targets."""
    model, x, y = _sequence_case(backend)
    targets = np.eye(2, dtype=np.float32)[y] if onehot else y
    loader = DeviceLoader(x, targets, backend, batch_size=8)
    history = fit(model, SoftmaxCrossEntropy(), SGD(model, lr=TINY_LR), loader, epochs=1, val_loader=loader, log=None)
    assert history.last["train_acc"] == pytest.approx(70 / 200, abs=1e-12)
    assert history.last["test_acc"] == pytest.approx(70 / 200, abs=1e-12)
    assert evaluate(model, SoftmaxCrossEntropy(), loader)["acc"] == pytest.approx(70 / 200, abs=1e-12)


def test_multi_output_bce_accuracy_counts_every_output(backend):
    """4 outputs per sample, 40 samples: 160 predictions, 100 right; accuracy 0.625 (not 100 / 40)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    model = Sequential(Linear(3, 4)).init(backend, seed=0)
    right = np.zeros(160, bool)
    right[rng.permutation(160)[:100]] = True
    positive = _host(backend, model, x) > 0
    y = np.where(right.reshape(40, 4), positive, ~positive).astype(np.float32)
    loader = DeviceLoader(x, y, backend, batch_size=16)
    history = fit(model, BinaryCrossEntropy(), SGD(model, lr=TINY_LR), loader, epochs=1, val_loader=loader, log=None)
    assert history.last["train_acc"] == pytest.approx(100 / 160, abs=1e-12)
    assert history.last["test_acc"] == pytest.approx(100 / 160, abs=1e-12)


def test_single_output_bce_accuracy_is_per_sample(numpy_backend):
    """(N, 1) logits for (N,) targets are one prediction per sample: 3 right of 4."""
    model = Sequential(Linear(1, 1)).init(numpy_backend, seed=0)
    model.layers[0].params["weight"][:] = 1.0
    model.layers[0].params["bias"][:] = 0.0
    x = np.array([[1.0], [-1.0], [2.0], [-2.0]], np.float32)
    loader = DeviceLoader(x, np.array([1.0, 0.0, 1.0, 1.0], np.float32), numpy_backend, batch_size=4, shuffle=False)
    assert evaluate(model, BinaryCrossEntropy(), loader)["acc"] == 0.75


def test_resumed_epoch_accuracy_adds_the_saved_count_of_predictions(numpy_backend):
    """A run resumed after 2 of 5 batches carries their right predictions (counted per
    prediction, as the rest); the record divides the whole count by 40 samples × 5: 0.35."""
    model, x, y = _sequence_case(numpy_backend)
    first = int(np.sum(np.argmax(_host(numpy_backend, model, x[:16]), axis=-1) == y[:16]))
    saved = EpochProgress(epoch=0, steps=2, samples=16, loss_sum=0.0, correct=float(first), seconds=0.0)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=8, shuffle=False)
    history = fit(model, SoftmaxCrossEntropy(), SGD(model, lr=TINY_LR), loader, epochs=1, resume=saved, log=None)
    assert history.last["train_acc"] == pytest.approx(70 / 200, abs=1e-12)


def test_data_parallel_accuracy_counts_predictions_of_both_processes(numpy_backend):
    """Rank 0 of 2 (an identical partner) takes rows 0–3 of each batch of 8: its count over
    those 20 samples × 5 predictions, doubled, over 40 samples × 5, in training and evaluation."""
    model, x, y = _sequence_case(numpy_backend)
    rows = np.concatenate([np.arange(start, start + 4) for start in range(0, 40, 8)])
    right = int(np.sum(np.argmax(_host(numpy_backend, model, x[rows]), axis=-1) == y[rows]))
    loader = DeviceLoader(x, y, numpy_backend, batch_size=8, shuffle=False, comm=_Twin())
    history = fit(model, SoftmaxCrossEntropy(), SGD(model, lr=TINY_LR), loader, epochs=1, log=None)
    assert history.last["train_acc"] == pytest.approx(right / 100, abs=1e-12)
    assert evaluate(model, SoftmaxCrossEntropy(), loader)["acc"] == pytest.approx(right / 100, abs=1e-12)


@pytest.mark.parametrize("spec", ["jax", "torch"])
def test_compiled_accuracy_with_extra_batch_dimensions(spec):
    """The compiled epoch's counts are divided the same way: 70 of 200 predictions."""
    backend = resolve_backend(spec)
    model, x, y = _sequence_case(backend)
    loader = DeviceLoader(x, y, backend, batch_size=8)
    loss = SoftmaxCrossEntropy(check_labels=False)
    history = fit(model, loss, SGD(model, lr=TINY_LR), loader, epochs=1, log=None, progress=False, compile=True)
    assert history.last["train_acc"] == pytest.approx(70 / 200, abs=1e-12)


# -- 2. ReLU backpropagates after an eval-mode forward ----------------------------------------------


def test_relu_backward_after_eval_forward(backend):
    """Input gradients in eval mode (saliency): dx = dy · (x > 0), as in training."""
    model = Sequential(ReLU()).init(backend)
    x = backend.asarray(np.array([[-1.0, 2.0, -3.0, 4.0, 0.0]]), "float32")
    dy = backend.asarray(np.array([[5.0, 6.0, 7.0, 8.0, 9.0]]), "float32")
    model.eval()
    y = model.forward(x)
    np.testing.assert_array_equal(backend.to_numpy(y), [[0.0, 2.0, 0.0, 4.0, 0.0]])
    dx = model.backward(dy, input_grad=True)
    assert dx.dtype == x.dtype
    np.testing.assert_array_equal(backend.to_numpy(dx), [[0.0, 6.0, 0.0, 8.0, 0.0]])


def test_relu_eval_backward_uses_the_eval_forward_not_a_stale_training_mask(numpy_backend):
    """A training forward that was never backpropagated leaves no mask an eval forward's
    backward would pick up; a training forward after an eval one uses its own mask."""
    relu = ReLU()
    relu.forward(np.ones((1, 4), np.float32))  # training: mask of ones, no backward
    relu.training = False
    relu.forward(np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32))
    np.testing.assert_array_equal(relu.backward(np.ones((1, 4), np.float32)), [[0.0, 1.0, 0.0, 1.0]])
    relu.training = True
    relu.forward(np.array([[1.0, -2.0, 3.0, -4.0]], np.float32))
    np.testing.assert_array_equal(relu.backward(np.ones((1, 4), np.float32)), [[1.0, 0.0, 1.0, 0.0]])


def test_mlp_input_gradient_in_eval_mode_equals_training_mode(backend):
    """Without dropout or BatchNorm the two modes compute the same function and gradient."""
    model = mlp_xp.make_mlp(3, [6, 5], 2).init(backend, seed=0)
    x = backend.asarray(np.random.default_rng(0).standard_normal((7, 3)), "float32")
    dy = backend.asarray(np.random.default_rng(1).standard_normal((7, 2)), "float32")
    grads = {}
    for mode in ("train", "eval"):
        getattr(model, mode)()
        model.forward(x)
        grads[mode] = backend.to_numpy(model.backward(dy, input_grad=True))
    np.testing.assert_allclose(grads["eval"], grads["train"], rtol=1e-6, atol=1e-7)


# -- 3. narrow integer labels ------------------------------------------------------------------------


def test_uint8_labels_of_300_classes_do_not_wrap(backend):
    """Uniform logits over 300 classes cost ln 300 whatever the label, and the gradient has
    exactly one -1/n·(1 - 1/300) entry per row (label 5 does not also match id 261 = 5 + 256)."""
    loss = SoftmaxCrossEntropy()
    pred = backend.asarray(np.zeros((2, 300)), "float32")
    value = loss(pred, backend.asarray(np.array([0, 5]), "uint8"))
    assert float(value) == pytest.approx(math.log(300), rel=1e-6)
    grad = backend.to_numpy(loss.backward())
    expected = np.full((2, 300), 1 / 600, np.float32)
    expected[0, 0] = expected[1, 5] = (1 / 300 - 1) / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-9)
    assert int(loss.correct(backend.asarray(np.eye(300)[[0, 5]], "float32"), backend.asarray([0, 5], "uint8"))) == 2


def test_int8_labels_of_200_classes_pass_the_range_check(backend):
    """Label 100 < 200 is valid (the bound 200 does not fit int8); negative labels still fail."""
    loss = SoftmaxCrossEntropy()
    pred = backend.asarray(np.zeros((2, 200)), "float32")
    assert float(loss(pred, backend.asarray(np.array([100, 3]), "int8"))) == pytest.approx(math.log(200), rel=1e-6)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 200\)"):
        loss(pred, backend.asarray(np.array([-1, 3]), "int8"))


def test_uint8_labels_of_256_classes_and_out_of_range_labels(backend):
    """Label 255 of 256 classes is valid (uint8's largest); label 250 of 200 classes is not."""
    loss = SoftmaxCrossEntropy()
    pred = backend.asarray(np.zeros((1, 256)), "float32")
    assert float(loss(pred, backend.asarray(np.array([255]), "uint8"))) == pytest.approx(math.log(256), rel=1e-6)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 200\)"):
        loss(backend.asarray(np.zeros((1, 200)), "float32"), backend.asarray(np.array([250]), "uint8"))


# -- 4. integer and other-float targets are cast to the predictions' dtype --------------------------


def test_integer_onehot_targets_give_the_label_loss_in_float32(backend):
    """int64 one-hot targets: the same loss and gradient as the labels, in float32."""
    rng = np.random.default_rng(0)
    pred = backend.asarray(rng.standard_normal((4, 3)), "float32")
    labels = np.array([0, 2, 1, 2])
    by_label = SoftmaxCrossEntropy()
    expected = float(by_label(pred, backend.asarray(labels, "int64")))
    expected_grad = backend.to_numpy(by_label.backward())
    loss = SoftmaxCrossEntropy()
    value = loss(pred, backend.asarray(np.eye(3)[labels], "int64"))
    grad = loss.backward()
    assert value.dtype == pred.dtype and grad.dtype == pred.dtype
    assert float(value) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(backend.to_numpy(grad), expected_grad, rtol=1e-6, atol=1e-8)


def test_integer_regression_targets_give_a_float32_mse(backend):
    """MSE of float32 predictions and int64 targets: (0.5² + 1.5² + 1² + 3²) / 4 in float32, gradient too."""
    loss = MSE()
    pred = backend.asarray(np.array([[0.5, 1.5], [2.0, -1.0]]), "float32")
    value = loss(pred, backend.asarray(np.array([[0, 0], [1, 2]]), "int64"))
    grad = loss.backward()
    assert value.dtype == pred.dtype and grad.dtype == pred.dtype
    assert float(value) == pytest.approx((0.25 + 2.25 + 1.0 + 9.0) / 4, rel=1e-7)
    np.testing.assert_allclose(backend.to_numpy(grad), [[0.25, 0.75], [0.5, -1.5]], rtol=1e-7)


def test_float64_targets_do_not_upcast_a_float32_model(backend64):
    """float64 probabilities (SoftmaxCrossEntropy) and regression targets (MSE) of a float32
    model: the loss and gradient stay float32."""
    pred = backend64.asarray(np.array([[0.5, -0.5], [1.0, 2.0]]), "float32")
    target = backend64.asarray(np.array([[0.25, 0.75], [1.0, 0.0]]), "float64")
    for loss in (SoftmaxCrossEntropy(), MSE()):
        value = loss(pred, target)
        assert value.dtype == pred.dtype, type(loss).__name__
        assert loss.backward().dtype == pred.dtype, type(loss).__name__


def test_fit_with_integer_onehot_targets_equals_fit_with_labels(backend):
    """A DeviceLoader keeps integer one-hot targets as int64: training on them is training on
    the labels, one prediction per sample (accuracy over 40, not 40 × 3)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    runs = []
    for targets in (labels, np.eye(3, dtype=np.int64)[labels]):
        model = mlp_xp.make_mlp(4, [6], 3).init(backend, seed=0)
        loader = DeviceLoader(x, targets, backend, batch_size=8)
        runs.append(fit(model, SoftmaxCrossEntropy(), SGD(model, lr=0.1), loader, epochs=2, log=None).last)
    assert runs[1]["train_loss"] == pytest.approx(runs[0]["train_loss"], rel=1e-5)
    assert runs[1]["train_acc"] == runs[0]["train_acc"]
    assert 0.0 <= runs[1]["train_acc"] <= 1.0
