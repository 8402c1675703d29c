"""Finite-difference checks of every layer's and loss's backward pass, in float64.

Each check compares the analytic gradient with central differences of a scalar objective
(``sum(y * R)`` with a fixed random ``R`` for layers, the loss value for losses) using the
norm-based relative error ``|a - n| / max(|a| + |n|, tiny)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import mlp_xp
from mlp_xp import (
    MSE,
    BatchNorm,
    BinaryCrossEntropy,
    Dropout,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
)

EPS = 1e-6
TOL = 1e-6
ABS_FLOOR = 1e-9  # finite-difference noise of an O(1) objective with EPS = 1e-6
BATCH, FEATURES = 4, 5


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Norm-based relative error; 0 when both are zero up to the finite-difference noise
    (a gradient that is exactly zero in theory, such as a bias followed by BatchNorm)."""
    analytic, numeric = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    assert analytic.shape == numeric.shape, (analytic.shape, numeric.shape)
    diff = np.linalg.norm(analytic - numeric)
    if diff < ABS_FLOOR:
        return 0.0
    return float(diff / (np.linalg.norm(analytic) + np.linalg.norm(numeric)))


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar ``f`` at the host array ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        old = x[index]
        x[index] = old + EPS
        plus = f(x.copy())
        x[index] = old - EPS
        minus = f(x.copy())
        x[index] = old
        grad[index] = (plus - minus) / (2 * EPS)
    return grad


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.1) -> np.ndarray:
    """Random values with |v| >= low, so no ReLU kink lies within EPS of a sample."""
    return rng.uniform(low, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


def check_layer(backend: mlp_xp.Backend, layer: mlp_xp.Layer, x_host: np.ndarray, seed: int = 1) -> None:
    """Check dx and every parameter gradient of ``layer`` for the objective sum(y * R)."""
    rng = np.random.default_rng(seed)
    x = backend.asarray(x_host, "float64")
    y = layer.forward(x)
    r_host = rng.standard_normal(tuple(y.shape))
    r = backend.asarray(r_host, "float64")
    dx = layer.backward(r)
    assert dx.dtype == backend.xp.float64
    analytic = {"x": backend.to_numpy(dx)}
    analytic.update({k: backend.to_numpy(g) for k, g in layer.grads.items()})
    assert set(layer.grads) == set(layer.params), "backward must fill a gradient for every parameter"
    params_host = {k: backend.to_numpy(v).copy() for k, v in layer.params.items()}

    def objective(x_val: np.ndarray, **params: np.ndarray) -> float:
        for key, value in params_host.items():
            layer.params[key] = backend.asarray(params.get(key, value), "float64")
        out = layer.forward(backend.asarray(x_val, "float64"))
        return float(np.sum(backend.to_numpy(out) * r_host))

    numeric = {"x": numeric_grad(objective, x_host)}
    for key, value in params_host.items():
        numeric[key] = numeric_grad(lambda p, key=key: objective(x_host, **{key: p}), value)
    for key in numeric:
        err = rel_error(analytic[key], numeric[key])
        assert err < TOL, f"{layer!r} d{key}: relative error {err:.2e}"


def test_linear(backend64):
    layer = Linear(FEATURES, 3)
    layer.init(backend64, mlp_xp.backends.host_rng(0), "float64")
    # non-zero bias so db is not checked at a trivial point
    layer.params["bias"] = backend64.asarray(np.array([0.1, -0.2, 0.3]), "float64")
    x = np.random.default_rng(0).standard_normal((BATCH, FEATURES))
    check_layer(backend64, layer, x)


def test_linear_extra_batch_dims(backend64):
    layer = Linear(FEATURES, 3)
    layer.init(backend64, mlp_xp.backends.host_rng(0), "float64")
    x = np.random.default_rng(0).standard_normal((2, 3, FEATURES))
    check_layer(backend64, layer, x)


@pytest.mark.parametrize(
    "layer_factory",
    [ReLU, lambda: LeakyReLU(0.1), Sigmoid, Tanh, Softmax],
    ids=["relu", "leaky_relu", "sigmoid", "tanh", "softmax"],
)
def test_activation(backend64, layer_factory):
    x = away_from_zero(np.random.default_rng(2), (BATCH, FEATURES))
    check_layer(backend64, layer_factory(), x)


def test_relu_gradient_zero_where_negative(backend64):
    layer = ReLU()
    x = backend64.asarray(np.array([[-1.0, 2.0, -3.0, 4.0]]), "float64")
    layer.forward(x)
    dx = layer.backward(backend64.asarray(np.ones((1, 4)), "float64"))
    np.testing.assert_array_equal(backend64.to_numpy(dx), [[0.0, 1.0, 0.0, 1.0]])


def _batchnorm(backend: mlp_xp.Backend) -> BatchNorm:
    rng = np.random.default_rng(3)
    layer = BatchNorm(FEATURES)
    layer.init(backend, mlp_xp.backends.host_rng(0), "float64")
    layer.params["gamma"] = backend.asarray(rng.uniform(0.5, 1.5, FEATURES), "float64")
    layer.params["beta"] = backend.asarray(rng.standard_normal(FEATURES), "float64")
    return layer


def test_batchnorm_train(backend64):
    layer = _batchnorm(backend64)
    x = np.random.default_rng(4).standard_normal((6, FEATURES)) * 2.0 + 1.0
    check_layer(backend64, layer, x)


def test_batchnorm_train_extra_batch_dims(backend64):
    layer = _batchnorm(backend64)
    x = np.random.default_rng(4).standard_normal((2, 3, FEATURES))
    check_layer(backend64, layer, x)


def test_batchnorm_eval(backend64):
    layer = _batchnorm(backend64)
    rng = np.random.default_rng(5)
    layer.buffers["running_mean"] = backend64.asarray(rng.standard_normal(FEATURES), "float64")
    layer.buffers["running_var"] = backend64.asarray(rng.uniform(0.5, 2.0, FEATURES), "float64")
    layer.training = False
    x = rng.standard_normal((BATCH, FEATURES))
    check_layer(backend64, layer, x)


class FixedMask:
    """Stands in for a DeviceRandom: always returns (a fresh copy of) the same 0/1 mask."""

    def __init__(self, backend: mlp_xp.Backend, mask: np.ndarray) -> None:
        self.backend, self.mask, self.calls = backend, mask, 0

    def bernoulli_mask(self, shape, keep_prob, dtype="float32"):
        assert tuple(shape) == self.mask.shape
        self.calls += 1
        return self.backend.asarray(self.mask.copy(), dtype)


def test_dropout_fixed_mask(backend64):
    p = 0.4
    layer = Dropout(p)
    mask = (np.random.default_rng(6).random((BATCH, FEATURES)) >= p).astype(np.float64)
    layer.rng = FixedMask(backend64, mask)
    x = np.random.default_rng(7).standard_normal((BATCH, FEATURES))
    check_layer(backend64, layer, x)
    assert layer.rng.calls > 1
    # forward really applies the inverted-dropout scaling of the mask
    y = backend64.to_numpy(layer.forward(backend64.asarray(x, "float64")))
    np.testing.assert_allclose(y, x * mask / (1 - p), rtol=1e-12)


def test_dropout_backward_uses_stored_mask(backend64):
    p = 0.5
    layer = Dropout(p)
    layer.init(backend64, mlp_xp.backends.host_rng(0), "float64")
    x_host = np.random.default_rng(8).uniform(1.0, 2.0, (50, 40))
    y = backend64.to_numpy(layer.forward(backend64.asarray(x_host, "float64")))
    kept = y != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], x_host[kept] / (1 - p), rtol=1e-12)
    dy_host = np.random.default_rng(9).standard_normal((50, 40))
    dx = backend64.to_numpy(layer.backward(backend64.asarray(dy_host, "float64")))
    np.testing.assert_allclose(dx, np.where(kept, dy_host / (1 - p), 0.0), rtol=1e-12)


def test_dropout_eval_is_identity(backend64):
    layer = Dropout(0.5)
    layer.init(backend64, mlp_xp.backends.host_rng(0), "float64")
    layer.training = False
    x_host = np.random.default_rng(10).standard_normal((BATCH, FEATURES))
    y = layer.forward(backend64.asarray(x_host, "float64"))
    np.testing.assert_array_equal(backend64.to_numpy(y), x_host)
    dx = layer.backward(backend64.asarray(x_host * 2, "float64"))
    np.testing.assert_array_equal(backend64.to_numpy(dx), x_host * 2)


# -- losses --------------------------------------------------------------------------------


def check_loss(backend: mlp_xp.Backend, loss: mlp_xp.Loss, pred_host: np.ndarray, target) -> float:
    """Check d loss / d pred; ``target`` is a device array. Returns the loss value."""
    value = loss.forward(backend.asarray(pred_host, "float64"), target)
    assert tuple(value.shape) == ()
    assert value.dtype == backend.xp.float64
    analytic = backend.to_numpy(loss.backward())

    def objective(p: np.ndarray) -> float:
        return float(backend.to_numpy(loss.forward(backend.asarray(p, "float64"), target)))

    numeric = numeric_grad(objective, pred_host)
    err = rel_error(analytic, numeric)
    assert err < TOL, f"{loss!r}: relative error {err:.2e}"
    return float(backend.to_numpy(value))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_softmax_cross_entropy_labels(backend64):
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((6, 4)) * 3
    labels = np.array([0, 3, 1, 2, 3, 0])
    value = check_loss(backend64, SoftmaxCrossEntropy(), logits, backend64.asarray(labels, "int64"))
    expected = -_log_softmax(logits)[np.arange(6), labels].mean()
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_softmax_cross_entropy_labels_extra_batch_dims(backend64):
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((2, 3, 4))
    labels = rng.integers(0, 4, (2, 3))
    value = check_loss(backend64, SoftmaxCrossEntropy(), logits, backend64.asarray(labels, "int64"))
    expected = -np.take_along_axis(_log_softmax(logits), labels[..., None], axis=-1).mean()
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_softmax_cross_entropy_one_hot(backend64):
    rng = np.random.default_rng(13)
    logits = rng.standard_normal((6, 4)) * 3
    labels = np.array([0, 3, 1, 2, 3, 0])
    one_hot = np.eye(4)[labels]
    value = check_loss(backend64, SoftmaxCrossEntropy(), logits, backend64.asarray(one_hot, "float64"))
    expected = -_log_softmax(logits)[np.arange(6), labels].mean()
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_softmax_cross_entropy_soft_targets(backend64):
    rng = np.random.default_rng(14)
    logits = rng.standard_normal((5, 4))
    soft = rng.random((5, 4))
    soft /= soft.sum(axis=-1, keepdims=True)
    value = check_loss(backend64, SoftmaxCrossEntropy(), logits, backend64.asarray(soft, "float64"))
    np.testing.assert_allclose(value, -(soft * _log_softmax(logits)).sum(axis=-1).mean(), rtol=1e-12)


def test_mse(backend64):
    rng = np.random.default_rng(15)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    value = check_loss(backend64, MSE(), pred, backend64.asarray(target, "float64"))
    np.testing.assert_allclose(value, np.mean((pred - target) ** 2), rtol=1e-12)


@pytest.mark.parametrize("column", [False, True], ids=["flat", "column"])
def test_bce_from_logits(backend64, column):
    rng = np.random.default_rng(16)
    logits = rng.standard_normal(8) * 3
    target = rng.integers(0, 2, 8).astype(np.float64)
    pred = logits[:, None] if column else logits
    value = check_loss(backend64, BinaryCrossEntropy(from_logits=True), pred, backend64.asarray(target, "float64"))
    prob = 1 / (1 + np.exp(-logits))
    expected = -np.mean(target * np.log(prob) + (1 - target) * np.log(1 - prob))
    np.testing.assert_allclose(value, expected, rtol=1e-10)


def test_bce_from_logits_integer_targets(backend64):
    rng = np.random.default_rng(17)
    logits = rng.standard_normal((8, 1))
    target = rng.integers(0, 2, 8)
    check_loss(backend64, BinaryCrossEntropy(), logits, backend64.asarray(target, "int64"))


def test_bce_on_probabilities(backend64):
    rng = np.random.default_rng(18)
    prob = rng.uniform(0.05, 0.95, (8, 1))
    target = rng.integers(0, 2, 8).astype(np.float64)
    value = check_loss(backend64, BinaryCrossEntropy(from_logits=False), prob, backend64.asarray(target, "float64"))
    p = prob[:, 0]
    np.testing.assert_allclose(value, -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)), rtol=1e-10)


def test_bce_logits_stable_for_large_scores(backend64):
    logits = np.array([-800.0, 800.0, -50.0, 50.0])
    target = np.array([1.0, 0.0, 0.0, 1.0])
    loss = BinaryCrossEntropy()
    value = float(backend64.to_numpy(loss.forward(backend64.asarray(logits, "float64"), backend64.asarray(target))))
    assert np.isfinite(value)
    np.testing.assert_allclose(value, (800 + 800 + 0 + 0) / 4, rtol=1e-12, atol=1e-12)
    grad = backend64.to_numpy(loss.backward())
    assert np.all(np.isfinite(grad))


# -- a whole model -------------------------------------------------------------------------


def test_sequential(backend64):
    model = Sequential(Linear(FEATURES, 6), BatchNorm(6), Tanh(), Linear(6, 3)).init(backend64, seed=0, dtype="float64")
    model["batchnorm1"].params["gamma"] = backend64.asarray(np.linspace(0.5, 1.5, 6), "float64")
    model["batchnorm1"].params["beta"] = backend64.asarray(np.linspace(-0.3, 0.3, 6), "float64")
    rng = np.random.default_rng(19)
    x_host = rng.standard_normal((6, FEATURES))
    y = model.forward(backend64.asarray(x_host, "float64"))
    r_host = rng.standard_normal(tuple(y.shape))
    dx = model.backward(backend64.asarray(r_host, "float64"), input_grad=True)
    assert dx is not None
    analytic = {"x": backend64.to_numpy(dx)}
    slots = [(layer, key) for layer in model for key in layer.params]
    assert len(slots) == 6
    analytic.update({f"{layer.name}.{key}": backend64.to_numpy(layer.grads[key]) for layer, key in slots})
    start = {f"{layer.name}.{key}": backend64.to_numpy(layer.params[key]).copy() for layer, key in slots}

    def objective(x_val: np.ndarray, override: tuple[str, np.ndarray] | None = None) -> float:
        for layer, key in slots:
            name = f"{layer.name}.{key}"
            value = override[1] if override and override[0] == name else start[name]
            layer.params[key] = backend64.asarray(value, "float64")
        return float(np.sum(backend64.to_numpy(model.forward(backend64.asarray(x_val, "float64"))) * r_host))

    numeric = {"x": numeric_grad(objective, x_host)}
    for name, value in start.items():
        numeric[name] = numeric_grad(lambda p, name=name: objective(x_host, (name, p)), value)
    for name in numeric:
        err = rel_error(analytic[name], numeric[name])
        assert err < TOL, f"d{name}: relative error {err:.2e}"
    # BatchNorm removes the mean, so the bias of the Linear before it gets no gradient
    assert np.abs(analytic["linear0.bias"]).max() < 1e-12
    assert np.linalg.norm(analytic["linear0.weight"]) > 1e-3


def test_sequential_backward_without_input_grad(backend64):
    model = Sequential(Linear(FEATURES, 6), ReLU(), Linear(6, 3)).init(backend64, seed=0, dtype="float64")
    y = model.forward(backend64.asarray(np.random.default_rng(20).standard_normal((4, FEATURES)), "float64"))
    assert model.backward(backend64.xp.ones_like(y)) is None
    assert set(model["linear0"].grads) == {"weight", "bias"}


def test_checker_detects_a_wrong_gradient(numpy_backend):
    class WrongTanh(Tanh):
        def backward(self, dy):
            y = self.saved("y")
            return dy * (1.0 - 0.99 * y * y)

    x = away_from_zero(np.random.default_rng(21), (BATCH, FEATURES))
    with pytest.raises(AssertionError, match="relative error"):
        check_layer(numpy_backend, WrongTanh(), x)
