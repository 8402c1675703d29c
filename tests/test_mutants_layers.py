"""Layer behaviour that mutants surviving the NumPy-only mutmut run showed unchecked: BatchNorm
against its textbook definition and torch's running-statistic convention (training and eval
mode, ``eps``, ``momentum``, several batch dimensions, a batch split across two "processes"
through ``sync``), Dropout's masks, scaling, modes and errors, the activations' values and
derivatives at their edges, Linear's parameters and multi-dimensional batches, and the ``Layer``
base class (defaults, ``saved``, the exact messages of ``_check_input``). Parameters created on
array-api-strict's ``device1`` check that ``init`` passes the backend's device. All run in
process, in milliseconds."""

from __future__ import annotations

import threading

import array_api_strict
import numpy as np
import pytest
from conftest import require_module

import mlp_xp
from mlp_xp import BatchNorm, Dropout, Layer, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from mlp_xp.init import get_initializer
from mlp_xp.layers import sigmoid, softmax


def _device1() -> mlp_xp.Backend:
    """array-api-strict on its emulated non-CPU device (not the ``backend`` fixture: the NumPy-only
    mutmut run must still reach it)."""
    return mlp_xp.get_backend("array-api-strict:device1")


def _assert_float32_on(backend: mlp_xp.Backend, *arrays) -> None:
    """Every array is float32 on ``backend``'s device."""
    for array in arrays:
        assert array.dtype == array_api_strict.float32
        assert array.device == backend.device


def _x(shape, seed=0, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


# -- BatchNorm: reference ------------------------------------------------------------------------


def _bn_reference(x, gamma, beta, rmean, rvar, eps, momentum):
    """Textbook batch norm over every axis but the last, float64, and torch's running-stat update
    ``r ← (1 - m)·r + m·stat`` with the unbiased variance."""
    flat = x.reshape(-1, x.shape[-1])
    n = flat.shape[0]
    mean = flat.mean(axis=0)
    var = ((flat - mean) ** 2).mean(axis=0)
    y = gamma * (x - mean) / np.sqrt(var + eps) + beta
    new_mean = (1 - momentum) * rmean + momentum * mean
    new_var = (1 - momentum) * rvar + momentum * var * n / (n - 1)
    return y, new_mean, new_var


def _bn_backward_reference(x, gamma, dy, eps):
    """dx, dγ, dβ of training-mode batch norm (batch statistics), from the chain rule."""
    shape = x.shape
    flat, g = x.reshape(-1, shape[-1]), dy.reshape(-1, shape[-1])
    n = flat.shape[0]
    mean = flat.mean(axis=0)
    var = ((flat - mean) ** 2).mean(axis=0)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (flat - mean) * inv
    dxhat = g * gamma
    dvar = (dxhat * (flat - mean)).sum(axis=0) * -0.5 * inv**3
    dmean = -(dxhat * inv).sum(axis=0) + dvar * (-2.0 / n) * (flat - mean).sum(axis=0)
    dx = dxhat * inv + dvar * 2.0 * (flat - mean) / n + dmean / n
    return dx.reshape(shape), (g * xhat).sum(axis=0), g.sum(axis=0)


def _bn(numpy_backend, features=3, seed=1, **kwargs):
    """A float64 BatchNorm with non-trivial γ, β and running statistics."""
    layer = BatchNorm(features, **kwargs)
    layer.init(numpy_backend, np.random.default_rng(0), "float64")
    rng = np.random.default_rng(seed)
    layer.params["gamma"] = rng.uniform(0.5, 2.0, features)
    layer.params["beta"] = rng.standard_normal(features)
    layer.buffers["running_mean"] = rng.standard_normal(features)
    layer.buffers["running_var"] = rng.uniform(0.5, 2.0, features)
    return layer


# -- BatchNorm ------------------------------------------------------------------------------------


def test_batchnorm_defaults_repr_and_shapes():
    """eps 1e-5 and momentum 0.1 by default (torch's), no sync, γ and β of shape (F,)."""
    layer = BatchNorm(4)
    assert (layer.num_features, layer.eps, layer.momentum, layer.sync) == (4, 1e-5, 0.1, None)
    assert repr(layer) == "BatchNorm(4)"
    assert repr(BatchNorm(4, eps=1e-3)) == "BatchNorm(4, eps=0.001)"
    assert repr(BatchNorm(4, momentum=0.3)) == "BatchNorm(4, momentum=0.3)"
    assert repr(BatchNorm(4, eps=np.float64(1e-3), momentum=1)) == "BatchNorm(4, eps=0.001, momentum=1.0)"
    assert layer.param_shapes() == {"gamma": (4,), "beta": (4,)}
    assert layer.output_features(4) == 4


def test_batchnorm_init_values_dtype_and_device():
    """γ = 1, β = 0, running mean 0 and running variance 1, all float32 on the backend's device."""
    backend = _device1()
    layer = BatchNorm(3)
    layer.init(backend, np.random.default_rng(0), "float32")
    expected = {"gamma": 1.0, "beta": 0.0, "running_mean": 0.0, "running_var": 1.0}
    arrays = {**layer.params, **layer.buffers}
    assert set(arrays) == set(expected)
    for key, value in expected.items():
        _assert_float32_on(backend, arrays[key])
        np.testing.assert_array_equal(backend.to_numpy(arrays[key]), np.full(3, value, np.float32))


@pytest.mark.parametrize("shape", [(6, 3), (2, 4, 3)])
@pytest.mark.parametrize("kwargs", [{}, {"eps": 0.3, "momentum": 0.25}])
def test_batchnorm_training_forward_and_running_statistics(numpy_backend, shape, kwargs):
    """Training mode: batch statistics over every batch axis, and the running mean and unbiased
    variance updated with torch's momentum convention; default and custom eps and momentum."""
    layer = _bn(numpy_backend, **kwargs)
    x = _x(shape, scale=2.0, shift=0.5)
    gamma, beta = layer.params["gamma"].copy(), layer.params["beta"].copy()
    rmean, rvar = layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()
    y = layer.forward(x)
    ref_y, ref_mean, ref_var = _bn_reference(x, gamma, beta, rmean, rvar, layer.eps, layer.momentum)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_mean"], ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], ref_var, rtol=1e-12, atol=1e-12)


def test_batchnorm_running_statistics_after_two_steps(numpy_backend):
    """Two training steps from the initial 0/1 statistics compound the momentum update."""
    layer = BatchNorm(2, momentum=0.3)
    layer.init(numpy_backend, np.random.default_rng(0), "float64")
    rmean, rvar = np.zeros(2), np.ones(2)
    for seed in (1, 2):
        x = _x((5, 2), seed=seed, scale=3.0, shift=-1.0)
        layer.forward(x)
        _, rmean, rvar = _bn_reference(x, np.ones(2), np.zeros(2), rmean, rvar, 1e-5, 0.3)
    np.testing.assert_allclose(layer.buffers["running_mean"], rmean, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], rvar, rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3)])
def test_batchnorm_eval_uses_running_statistics_and_eps(numpy_backend, shape):
    """Eval mode normalises with the running statistics (and eps), leaves them unchanged, and its
    backward is ``dy·γ/sqrt(running_var + eps)`` with dγ, dβ summed over the batch axes."""
    layer = _bn(numpy_backend, eps=0.4)
    layer.training = False
    x, dy = _x(shape, seed=3), _x(shape, seed=4)
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    rmean, rvar = layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()
    y = layer.forward(x)
    xhat = (x - rmean) / np.sqrt(rvar + 0.4)
    np.testing.assert_allclose(y, gamma * xhat + beta, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.buffers["running_mean"], rmean)
    np.testing.assert_array_equal(layer.buffers["running_var"], rvar)
    dx = layer.backward(dy)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(dx, dy * gamma / np.sqrt(rvar + 0.4), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["gamma"], (dy * xhat).sum(axis=axes), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["beta"], dy.sum(axis=axes), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 3), (2, 4, 3)])
def test_batchnorm_training_backward_matches_chain_rule(numpy_backend, shape):
    """Training-mode dx (through the batch mean and variance), dγ and dβ, for one and two batch
    axes, against the chain rule worked out step by step."""
    layer = _bn(numpy_backend, eps=0.2)
    x, dy = _x(shape, seed=5, scale=1.5), _x(shape, seed=6)
    layer.forward(x)
    dx = layer.backward(dy)
    ref_dx, ref_dgamma, ref_dbeta = _bn_backward_reference(x, layer.params["gamma"], dy, 0.2)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["gamma"], ref_dgamma, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["beta"], ref_dbeta, rtol=1e-12, atol=1e-12)


def test_batchnorm_float32_in_float32_out():
    """A float32 layer on device1 keeps float32 and the device through forward and backward."""
    backend = _device1()
    layer = BatchNorm(3)
    layer.init(backend, np.random.default_rng(0), "float32")
    x = backend.asarray(_x((4, 3)), "float32")
    for training in (True, False):
        layer.training = training
        y = layer.forward(x)
        dx = layer.backward(y)
        _assert_float32_on(backend, y, dx, layer.grads["gamma"], layer.buffers["running_var"])


def test_batchnorm_training_needs_two_samples(numpy_backend):
    """One sample (also 1×1 over two batch axes) is refused with the exact message; two work."""
    layer = BatchNorm(2)
    layer.init(numpy_backend, np.random.default_rng(0), "float64")
    for shape in [(1, 2), (1, 1, 2)]:
        with pytest.raises(ValueError) as caught:
            layer.forward(np.ones(shape))
        assert str(caught.value) == "layer 'batchnorm' needs more than one sample per batch in training mode."
    y = layer.forward(np.array([[0.0, 1.0], [2.0, 5.0]]))
    np.testing.assert_allclose(y, [[-1.0, -1.0], [1.0, 1.0]], atol=1e-5)
    layer.training = False
    np.testing.assert_allclose(layer.forward(np.ones((1, 2))).shape, (1, 2))


class _TwoProcessSum:
    """An all-reduce between two threads: ``sync(sums, count)`` returns both callers' sums and
    counts added, as ``comm.sum_with_count`` does across processes."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=10)
        self.slots = [None, None]
        self.calls = [0, 0]

    def for_rank(self, rank):
        def sync(sums, count):
            self.calls[rank] += 1
            self.slots[rank] = (np.array(sums, copy=True), count)
            self.barrier.wait()
            total = self.slots[0][0] + self.slots[1][0], self.slots[0][1] + self.slots[1][1]
            self.barrier.wait()
            return total

        return sync


def test_batchnorm_sync_equals_one_process_with_the_whole_batch(numpy_backend):
    """Two layers whose ``sync`` adds their sums (a batch of 7 split 3 + 4 rows, the parts with
    different means) give the outputs, running statistics and dx rows of one layer on the whole
    batch; three reductions per step (mean, variance, backward)."""
    x = np.concatenate([_x((3, 2), seed=7, shift=2.0), _x((4, 2), seed=8, scale=3.0)])
    dy = _x((7, 2), seed=9)
    whole = _bn(numpy_backend, features=2, eps=0.1, momentum=0.2)
    y, dx = whole.forward(x), None
    dx = whole.backward(dy)
    parts = [_bn(numpy_backend, features=2, eps=0.1, momentum=0.2) for _ in range(2)]
    comm = _TwoProcessSum()
    for rank, layer in enumerate(parts):
        layer.sync = comm.for_rank(rank)
    rows = [slice(0, 3), slice(3, 7)]
    results = [None, None]

    def run(rank):
        out = parts[rank].forward(x[rows[rank]])
        results[rank] = out, parts[rank].backward(dy[rows[rank]])

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert comm.calls == [3, 3]
    for rank in range(2):
        out, part_dx = results[rank]
        np.testing.assert_allclose(out, y[rows[rank]], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(part_dx, dx[rows[rank]], rtol=1e-10, atol=1e-12)
        for key in ("running_mean", "running_var"):
            np.testing.assert_allclose(parts[rank].buffers[key], whole.buffers[key], rtol=1e-12)


def test_batchnorm_sync_counts_every_batch_axis(numpy_backend):
    """With two batch axes, ``sync`` receives the local sample count (their product)."""
    counts = []

    def sync(sums, count):
        counts.append(count)
        return sums, count

    layer = _bn(numpy_backend, features=2)
    reference = _bn(numpy_backend, features=2)
    layer.sync = sync
    x, dy = _x((2, 3, 2), seed=10), _x((2, 3, 2), seed=11)
    np.testing.assert_allclose(layer.forward(x), reference.forward(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), reference.backward(dy), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], reference.buffers["running_var"], rtol=1e-12)
    assert counts == [6, 6, 6]


# -- Dropout --------------------------------------------------------------------------------------


def test_dropout_probability_bounds_and_messages():
    """p in [0, 1): 0 is accepted, 1 and negative values are refused with the exact message."""
    assert Dropout(0.0).p == 0.0
    assert Dropout().p == 0.5
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError) as caught:
            Dropout(p)
        assert str(caught.value) == f"Dropout probability must be in [0, 1), got {p}."


def test_dropout_repr_and_no_generator_before_init():
    """``Dropout(p)`` repr; forward in training mode without ``init`` names the fix."""
    layer = Dropout(0.25)
    assert repr(layer) == "Dropout(0.25)"
    assert layer.rng is None
    with pytest.raises(RuntimeError) as caught:
        layer.forward(np.ones((2, 2)))
    assert str(caught.value) == "layer 'dropout' has no random generator yet: call model.init(backend) first."


def test_dropout_init_seeds_the_device_generator_from_the_host_generator(numpy_backend):
    """``init`` draws one integer below 2**31 from the host generator as the device seed."""
    layer = Dropout(0.3)
    layer.init(numpy_backend, np.random.default_rng(42), "float32")
    assert layer.rng.seed == int(np.random.default_rng(42).integers(2**31))
    assert layer.rng.backend is numpy_backend


@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout_training_mask_and_inverted_scaling(numpy_backend, p):
    """Training mode keeps each element where a uniform draw is below 1 - p and scales it by
    1/(1 - p); backward multiplies by the same mask; float32 stays float32."""
    layer = Dropout(p)
    layer.init(numpy_backend, np.random.default_rng(3), "float32")
    seed = layer.rng.seed
    x = _x((8, 5), seed=1).astype(np.float32)
    dy = _x((8, 5), seed=2).astype(np.float32)
    y = layer.forward(x)
    keep = np.random.default_rng(seed).random((8, 5), dtype=np.float32) < np.float32(1.0 - p)
    mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - p))
    assert y.dtype == np.float32
    assert 0 < keep.sum() < keep.size
    np.testing.assert_allclose(y, x * mask, rtol=1e-6)
    dx = layer.backward(dy)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, dy * mask, rtol=1e-6)


def test_dropout_float64_mask_is_float64(numpy_backend):
    """A float64 input gets a float64 mask and scale 1/(1 - p) exact to float64 (p = 1/3)."""
    p = 1.0 / 3.0
    layer = Dropout(p)
    layer.init(numpy_backend, np.random.default_rng(4), "float64")
    x = _x((6, 4), seed=3)
    y = layer.forward(x)
    keep = np.random.default_rng(layer.rng.seed).random((6, 4), dtype=np.float32) < 1.0 - p
    assert layer.cache["mask"].dtype == np.float64
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, x * keep * (1.0 / (1.0 - p)), rtol=1e-15, atol=0)


def test_dropout_eval_and_zero_probability_are_the_identity(numpy_backend):
    """Eval mode, and p = 0 in training mode, return the input itself, draw nothing, and drop the
    mask of an earlier training step, so that backward returns ``dy`` unchanged."""
    x, dy = np.ones((4, 3)), np.full((4, 3), 2.0)
    layer = Dropout(0.5)
    layer.init(numpy_backend, np.random.default_rng(0), "float64")
    layer.forward(x)
    assert "mask" in layer.cache
    layer.training = False
    assert layer.forward(x) is x
    assert "mask" not in layer.cache
    assert layer.backward(dy) is dy
    zero = Dropout(0.0)
    zero.forward(x)  # no generator needed: nothing is drawn
    assert zero.forward(x) is x
    assert zero.backward(dy) is dy


# -- activations ----------------------------------------------------------------------------------


EDGES = np.array([[-3.0, -0.5, 0.0, 0.5, 3.0], [-1e-3, 1e-3, 0.0, 2.0, -2.0]])


def test_relu_forward_and_zero_gradient_at_zero():
    """``max(x, 0)``; the derivative is 1 for x > 0 and 0 for x ≤ 0 (0 at x = 0)."""
    layer = ReLU()
    y = layer.forward(EDGES)
    np.testing.assert_array_equal(y, np.maximum(EDGES, 0.0))
    dy = np.arange(1.0, 11.0).reshape(2, 5)
    np.testing.assert_array_equal(layer.backward(dy), dy * (EDGES > 0))


def test_relu_float32_in_float32_out():
    """ReLU keeps float32 in forward and backward."""
    layer = ReLU()
    x = EDGES.astype(np.float32)
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(x).dtype == np.float32


@pytest.mark.parametrize("slope", [None, 0.2])
def test_leaky_relu_forward_backward_and_repr(slope):
    """``x`` for x > 0, ``slope·x`` otherwise (the slope also at x = 0, 0.01 by default); the
    derivative is the same factor; float32 stays float32."""
    layer = LeakyReLU() if slope is None else LeakyReLU(slope)
    s = 0.01 if slope is None else slope
    assert layer.negative_slope == s
    assert repr(layer) == f"LeakyReLU({s})"
    factor = np.where(EDGES > 0, 1.0, s)
    np.testing.assert_allclose(layer.forward(EDGES), EDGES * factor, rtol=1e-15)
    dy = np.arange(1.0, 11.0).reshape(2, 5)
    np.testing.assert_allclose(layer.backward(dy), dy * factor, rtol=1e-15)
    x32 = EDGES.astype(np.float32)
    assert layer.forward(x32).dtype == np.float32
    assert layer.backward(x32).dtype == np.float32


def test_sigmoid_values_derivative_and_no_overflow():
    """Sigmoid equals ``1/(1 + exp(-x))``, its derivative is ``y(1 - y)``, and ±1000 give exactly
    1 and 0 without warnings."""
    layer = Sigmoid()
    y = layer.forward(EDGES)
    ref = 1.0 / (1.0 + np.exp(-EDGES))
    np.testing.assert_allclose(y, ref, rtol=1e-14)
    dy = np.arange(1.0, 11.0).reshape(2, 5)
    np.testing.assert_allclose(layer.backward(dy), dy * ref * (1.0 - ref), rtol=1e-13)
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


def test_tanh_values_and_derivative():
    """``tanh(x)`` and derivative ``1 - y²``."""
    layer = Tanh()
    y = layer.forward(EDGES)
    np.testing.assert_allclose(y, np.tanh(EDGES), rtol=1e-15)
    dy = np.arange(1.0, 11.0).reshape(2, 5)
    np.testing.assert_allclose(layer.backward(dy), dy * (1.0 - np.tanh(EDGES) ** 2), rtol=1e-14)


def test_softmax_last_axis_values_stability_and_jacobian():
    """Softmax over the last axis of a 3-D input (rows of 1000s stay finite), and backward equal
    to the Jacobian ``diag(y) - y yᵀ`` applied to ``dy`` row by row."""
    x = _x((2, 3, 4), seed=12, scale=2.0)
    x[0, 0] += 1000.0
    layer = Softmax()
    y = layer.forward(x)
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    ref = shifted / shifted.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(y, ref, rtol=1e-13)
    np.testing.assert_allclose(softmax(x), ref, rtol=1e-13)
    dy = _x((2, 3, 4), seed=13)
    expected = np.empty_like(dy)
    for i in range(2):
        for j in range(3):
            p = ref[i, j]
            expected[i, j] = (np.diag(p) - np.outer(p, p)) @ dy[i, j]
    np.testing.assert_allclose(layer.backward(dy), expected, rtol=1e-12, atol=1e-14)


def test_activations_need_forward_before_backward():
    """Each activation's backward before any forward raises the ``saved`` error naming it."""
    for layer in (ReLU(), LeakyReLU(), Sigmoid(), Tanh(), Softmax()):
        with pytest.raises(RuntimeError, match=f"layer '{layer.name}': backward"):
            layer.backward(np.ones((2, 2)))


# -- Linear ---------------------------------------------------------------------------------------


def test_linear_sizes_must_be_positive():
    """Sizes of 1 are accepted; 0 or negative in either is refused with the exact message."""
    layer = Linear(1, 1)
    assert (layer.in_features, layer.out_features, layer.input_grad) == (1, 1, True)
    for sizes in [(0, 3), (3, 0), (-1, 2)]:
        with pytest.raises(ValueError) as caught:
            Linear(*sizes)
        assert str(caught.value) == (
            f"Linear needs positive sizes, got in_features={sizes[0]}, out_features={sizes[1]}."
        )


def test_linear_repr_shapes_decay_and_output_features():
    """Repr, parameter shapes (in, out) and (out,), weight decay on the weight only, output width."""
    layer = Linear(3, 5)
    assert repr(layer) == "Linear(3, 5)"
    assert layer.param_shapes() == {"weight": (3, 5), "bias": (5,)}
    assert layer.decay == ("weight",)
    assert layer.output_features(3) == 5


@pytest.mark.parametrize(("init", "kwargs"), [("he", {}), ("normal", {"std": 0.5})])
def test_linear_init_draws_the_weight_and_zero_bias_on_the_device(init, kwargs):
    """The weight is the initializer's host draw (keyword arguments reach it), the bias zeros;
    both float32 on the backend's device."""
    backend = _device1()
    layer = Linear(3, 4, init=init, **kwargs)
    layer.init(backend, np.random.default_rng(5), "float32")
    expected = get_initializer(init, **kwargs)(np.random.default_rng(5), 3, 4)
    weight, bias = layer.params["weight"], layer.params["bias"]
    _assert_float32_on(backend, weight, bias)
    np.testing.assert_allclose(backend.to_numpy(weight), expected.astype(np.float32), rtol=1e-7)
    np.testing.assert_array_equal(backend.to_numpy(bias), np.zeros(4, np.float32))


def _linear(numpy_backend, inp=3, out=2):
    layer = Linear(inp, out)
    layer.init(numpy_backend, np.random.default_rng(0), "float64")
    layer.params["bias"] = np.random.default_rng(1).standard_normal(out)
    return layer


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)])
def test_linear_forward_backward_over_batch_axes(numpy_backend, shape):
    """``y = x W + b``, ``dW = Σ xᵀ dy``, ``db = Σ dy`` and ``dx = dy Wᵀ`` over every batch axis."""
    layer = _linear(numpy_backend)
    weight, bias = layer.params["weight"], layer.params["bias"]
    x, dy = _x(shape, seed=2), _x((*shape[:-1], 2), seed=3)
    np.testing.assert_allclose(layer.forward(x), x @ weight + bias, rtol=1e-13)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, dy @ weight.T, rtol=1e-13)
    np.testing.assert_allclose(layer.grads["weight"], x.reshape(-1, 3).T @ dy.reshape(-1, 2), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], dy.reshape(-1, 2).sum(axis=0), rtol=1e-12)


def test_linear_backward_folds_batch_axes_with_standard_reshape():
    """On torch (whose ``reshape`` accepts only -1 as the unknown size, as the standard says),
    the parameter gradients of a (2, 5, 3) input equal the NumPy float64 sums over both axes."""
    require_module("torch")  # a missing torch skips here, and fails in CI
    torch_backend = mlp_xp.get_backend("torch")
    layer = Linear(3, 2)
    layer.init(torch_backend, np.random.default_rng(0), "float64")
    weight = torch_backend.to_numpy(layer.params["weight"])
    x, dy = _x((2, 5, 3), seed=2), _x((2, 5, 2), seed=3)
    layer.forward(torch_backend.asarray(x))
    dx = layer.backward(torch_backend.asarray(dy))
    np.testing.assert_allclose(torch_backend.to_numpy(dx), dy @ weight.T, rtol=1e-13)
    grad_w = torch_backend.to_numpy(layer.grads["weight"])
    np.testing.assert_allclose(grad_w, x.reshape(-1, 3).T @ dy.reshape(-1, 2), rtol=1e-12)
    np.testing.assert_allclose(torch_backend.to_numpy(layer.grads["bias"]), dy.sum(axis=(0, 1)), rtol=1e-12)


def test_linear_without_input_gradient_still_sets_parameter_gradients(numpy_backend):
    """With ``input_grad = False`` backward returns None but still fills dW and db."""
    layer = _linear(numpy_backend)
    layer.input_grad = False
    x, dy = _x((4, 3), seed=4), _x((4, 2), seed=5)
    layer.forward(x)
    assert layer.backward(dy) is None
    np.testing.assert_allclose(layer.grads["weight"], x.T @ dy, rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], dy.sum(axis=0), rtol=1e-12)


def test_linear_needs_a_batch_dimension(numpy_backend):
    """A 1-D input is refused with the exact message."""
    layer = _linear(numpy_backend)
    with pytest.raises(ValueError) as caught:
        layer.forward(np.ones(3))
    assert str(caught.value) == "layer 'linear' needs a batch dimension; got input of shape (3,)."


def test_linear_float32_in_float32_out_on_device1():
    """A float32 Linear on device1 keeps float32 and the device in forward and backward."""
    backend = _device1()
    layer = Linear(3, 2)
    layer.init(backend, np.random.default_rng(0), "float32")
    x = backend.asarray(_x((4, 3)), "float32")
    y = layer.forward(x)
    dx = layer.backward(y)
    _assert_float32_on(backend, y, dx, layer.grads["weight"], layer.grads["bias"])


# -- Layer base class -----------------------------------------------------------------------------


class _Plain(Layer):
    """A subclass that overrides nothing."""


def test_layer_defaults():
    """Empty dicts, training mode, the lower-cased class name, no decay, identity widths, no
    parameters, ``init`` a no-op, and forward/backward left to subclasses."""
    layer = _Plain()
    assert (layer.params, layer.grads, layer.buffers, layer.cache) == ({}, {}, {}, {})
    assert layer.training is True
    assert layer.name == "_plain"
    assert layer.decay == ()
    assert repr(layer) == "_Plain()"
    assert layer.param_shapes() == {}
    assert layer.output_features(7) == 7
    assert layer.init(None, None, None) is None
    for method in (layer.forward, layer.backward, layer):
        with pytest.raises(NotImplementedError):
            method(np.ones(2))


def test_layer_call_is_forward():
    """Calling a layer runs its forward."""
    layer = ReLU()
    x = np.array([[-1.0, 2.0]])
    np.testing.assert_array_equal(layer(x), [[0.0, 2.0]])
    np.testing.assert_array_equal(layer.saved("mask"), [[0.0, 1.0]])


def test_saved_without_forward_message():
    """``saved`` of a missing key names the layer and the fix, without a chained KeyError."""
    layer = _Plain()
    layer.name = "hidden"
    with pytest.raises(RuntimeError) as caught:
        layer.saved("x")
    assert str(caught.value) == "layer 'hidden': backward() called before forward() (each forward serves one backward)."
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_check_input_messages(numpy_backend):
    """Each check of ``_check_input`` with its exact message: no parameters, width, array type,
    dtype and device; a matching input returns its namespace."""
    layer = Linear(3, 2)
    with pytest.raises(RuntimeError) as caught:
        layer.forward(np.ones((2, 3)))
    assert str(caught.value) == "layer 'linear' has no parameters yet: call model.init(backend) first."
    layer.init(numpy_backend, np.random.default_rng(0), "float64")
    with pytest.raises(ValueError) as caught:
        layer.forward(np.ones((2, 4)))
    assert str(caught.value) == "layer 'linear' (Linear(3, 2)) expects input of shape (..., 3), got (2, 4)."
    strict_x = array_api_strict.ones((2, 3), dtype=array_api_strict.float64)
    with pytest.raises(TypeError) as caught:
        layer.forward(strict_x)
    assert str(caught.value) == (
        "layer 'linear' got a array_api_strict._array_object.Array input but its parameters are "
        "numpy.ndarray: move the input to the model's backend."
    )
    with pytest.raises(TypeError) as caught:
        layer.forward(np.ones((2, 3), np.float32))
    assert str(caught.value) == "layer 'linear' got float32 input but its parameters are float64."
    assert layer._check_input(np.ones((2, 3)), 3, layer.params["weight"]) is numpy_backend.xp


def test_check_input_device_message():
    """An input on another device than the parameters is refused, naming both devices."""
    backend = _device1()
    layer = BatchNorm(3)
    layer.init(backend, np.random.default_rng(0), "float32")
    cpu = array_api_strict.ones((2, 3), dtype=array_api_strict.float32)
    with pytest.raises(ValueError) as caught:
        layer.forward(cpu)
    assert str(caught.value) == (
        f"layer 'batchnorm' got input on device {cpu.device} but its parameters are on {backend.device}."
    )
