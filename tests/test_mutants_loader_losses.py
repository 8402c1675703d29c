"""``DeviceLoader`` and loss behaviour that mutants surviving the NumPy-only mutmut run showed
unchecked: the constructor's defaults (backend, batch size, seed), its error messages and
edge cases (an empty or single-sample dataset, ``batch_size`` 1, ``drop_last`` with exactly one
batch), the dtypes batches and labels are stored in, an explicit ``scale``, the shuffling order
of every epoch against NumPy's permutations, 2-D targets (multi-output regression) and the label
range check of ``num_classes``; for the losses, values and gradients against hand float64 NumPy
versions. All run on NumPy (array-api-strict where a device or a strict namespace matters), in
process, in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_xp
from mlp_xp import DeviceLoader

# -- helpers ---------------------------------------------------------------------------------------


def _batches(loader):
    """One epoch of ``loader`` as host arrays ``[(x, y), ...]``."""
    return [(loader.backend.to_numpy(x), loader.backend.to_numpy(y)) for x, y in loader]


def _ids(n):
    """Features whose row ``i`` is ``[i, i]`` (float32) and labels ``i`` (int64)."""
    ids = np.arange(n)
    return np.repeat(ids[:, None], 2, axis=1).astype(np.float32), ids


# -- DeviceLoader: defaults ------------------------------------------------------------------------


def test_loader_defaults_to_the_auto_backend_batches_of_256_and_seed_0(monkeypatch):
    """Without ``backend``, ``batch_size`` and ``seed`` the loader uses ``get_backend("auto")``
    (which ``MLP_XP_DEVICE`` replaces), batches of 256 and epoch 0's permutation of
    ``default_rng((0, 0))``."""
    monkeypatch.setenv("MLP_XP_DEVICE", "array-api-strict:device1")
    x, y = _ids(300)
    loader = DeviceLoader(x, y)
    assert loader.backend.spec == mlp_xp.get_backend("array-api-strict:device1").spec
    batches = _batches(loader)
    assert [len(yb) for _, yb in batches] == [256, 44]
    order = np.concatenate([yb for _, yb in batches])
    np.testing.assert_array_equal(order, np.random.default_rng((0, 0)).permutation(300))


def test_loader_epochs_follow_the_permutations_of_seed_and_epoch(numpy_backend):
    """Epoch ``e`` visits the samples in ``default_rng((seed, e)).permutation(n)``, for epochs 0..3."""
    x, y = _ids(12)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=5, seed=3)
    for epoch in range(4):
        order = np.concatenate([yb for _, yb in _batches(loader)])
        np.testing.assert_array_equal(order, np.random.default_rng((3, epoch)).permutation(12))
    assert loader.epoch == 4


# -- DeviceLoader: sizes and errors ----------------------------------------------------------------


def test_loader_accepts_batch_size_one_and_a_single_sample(numpy_backend):
    """``batch_size=1`` yields one sample per batch; a dataset of one sample is not empty."""
    x, y = _ids(3)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=1, shuffle=False)
    assert len(loader) == 3
    assert [yb.tolist() for _, yb in _batches(loader)] == [[0], [1], [2]]
    single = DeviceLoader(x[:1], y[:1], numpy_backend, batch_size=4, shuffle=False)
    assert [yb.tolist() for _, yb in _batches(single)] == [[0]]


def test_loader_rejects_an_empty_dataset(numpy_backend):
    """Zero samples raise ``ValueError("the dataset is empty.")``."""
    with pytest.raises(ValueError, match=r"^the dataset is empty\.$"):
        DeviceLoader(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), numpy_backend)


def test_drop_last_with_exactly_one_batch_of_samples(numpy_backend):
    """``drop_last`` with ``n == batch_size`` yields that one full batch; ``n < batch_size``
    raises an error naming the batch size and the sample count."""
    x, y = _ids(4)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, shuffle=False, drop_last=True)
    assert len(loader) == 1
    assert [yb.tolist() for _, yb in _batches(loader)] == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match=r"^drop_last with batch_size 5 leaves no batch of 4 samples\.$"):
        DeviceLoader(x, y, numpy_backend, batch_size=5, drop_last=True)


# -- DeviceLoader: dtypes and scaling --------------------------------------------------------------


def test_loader_stores_float64_features_and_int32_labels_as_float32_and_int64(numpy_backend):
    """Float64 host features become ``dtype`` (float32) on the device and integer labels int64,
    in storage and in every batch (shuffled or not)."""
    x = np.arange(6, dtype=np.float64).reshape(3, 2)
    y = np.array([2, 0, 1], dtype=np.int32)
    for shuffle in (False, True):
        loader = DeviceLoader(x, y, numpy_backend, batch_size=2, shuffle=shuffle)
        assert (loader.x.dtype, loader.y.dtype) == (np.float32, np.int64)
        for xb, yb in loader:
            assert (xb.dtype, yb.dtype) == (np.float32, np.int64)


def test_loader_stores_float_targets_in_dtype_keeping_fractions(numpy_backend):
    """Float64 regression targets are stored as ``dtype`` (float32) with their values, not as
    int64 labels."""
    x, _ = _ids(3)
    y = np.array([0.5, -1.25, 2.75])
    loader = DeviceLoader(x, y, numpy_backend, batch_size=3, shuffle=False)
    assert loader.y.dtype == np.float32
    ((_, yb),) = _batches(loader)
    assert yb.dtype == np.float32
    np.testing.assert_array_equal(yb, [0.5, -1.25, 2.75])


def test_loader_multiplies_float_features_by_an_explicit_scale(numpy_backend):
    """``scale=2.0`` doubles float features in every batch, shuffled or not."""
    x, y = _ids(4)
    for shuffle in (False, True):
        loader = DeviceLoader(x, y, numpy_backend, batch_size=4, shuffle=shuffle, scale=2.0)
        ((xb, yb),) = _batches(loader)
        assert xb.dtype == np.float32
        np.testing.assert_array_equal(xb, 2.0 * np.repeat(yb[:, None], 2, axis=1))


def test_loader_without_targets_or_shuffle_yields_inputs_as_targets(numpy_backend):
    """With ``y=None`` and no shuffling each batch is ``(x, x)``, in order."""
    x, _ = _ids(5)
    loader = DeviceLoader(x, None, numpy_backend, batch_size=2, shuffle=False)
    batches = list(loader)
    assert all(xb is yb for xb, yb in batches)
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), x)


def test_shuffled_loader_keeps_rows_of_two_dimensional_targets(numpy_backend):
    """Multi-output targets of shape (N, 2) (as the sklearn regressor passes) are gathered by
    row: each batch's target rows belong to its feature rows."""
    x, ids = _ids(7)
    y = np.stack([ids * 10.0, ids * 10.0 + 1.0], axis=1)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=3, seed=2)
    seen = []
    for xb, yb in _batches(loader):
        assert yb.shape == (xb.shape[0], 2)
        np.testing.assert_array_equal(yb, np.stack([xb[:, 0] * 10.0, xb[:, 0] * 10.0 + 1.0], axis=1))
        seen.extend(xb[:, 0].tolist())
    assert sorted(seen) == list(range(7))


# -- DeviceLoader: label checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "found", "index", "low", "high"),
    [([0, 12, 3], 12, 1, 0, 12), ([1, 10, 2], 10, 1, 1, 10), ([0, 3, -1], -1, 2, -1, 3)],
)
def test_loader_label_check_names_the_first_label_outside_the_classes(numpy_backend, labels, found, index, low, high):
    """With ``num_classes=10`` a label of 10 or more, or below 0, is rejected, naming the first
    such label, its index and the labels' range; label 0 is valid."""
    message = rf"found {found} at index {index} \(range {low}\.\.{high}\)\.$"
    with pytest.raises(ValueError, match=message):
        DeviceLoader(np.zeros((3, 2), np.float32), np.array(labels), numpy_backend, num_classes=10)


def test_loader_label_check_accepts_labels_up_to_num_classes_minus_one(numpy_backend):
    """Labels ``0 .. num_classes - 1`` pass the check."""
    loader = DeviceLoader(np.zeros((3, 2), np.float32), np.array([0, 9, 4]), numpy_backend, num_classes=10)
    assert loader.y.tolist() == [0, 9, 4]


def test_loader_label_check_rejects_float_labels_naming_the_dtype(numpy_backend):
    """Float labels with ``num_classes`` raise ``TypeError`` naming their dtype."""
    with pytest.raises(TypeError, match=r"^class labels must be integers, got dtype float64\.$"):
        DeviceLoader(np.zeros((2, 2), np.float32), np.array([0.0, 1.0]), numpy_backend, num_classes=2)


def test_loader_label_check_on_array_api_strict_labels():
    """Labels given as array-api-strict arrays are checked in their own namespace: the first
    bad label and its index are reported."""
    import array_api_strict as xps

    backend = mlp_xp.get_backend("array-api-strict:device1")
    x = xps.zeros((3, 2), dtype=xps.float32, device=backend.device)
    y = xps.asarray([1, 12, 3], device=backend.device)
    with pytest.raises(ValueError, match=r"found 12 at index 1 \(range 1\.\.12\)\.$"):
        DeviceLoader(x, y, backend, num_classes=10)


# -- losses ----------------------------------------------------------------------------------------


def _strict_device1():
    """The array-api-strict namespace and its emulated non-CPU device ``device1``."""
    import array_api_strict as xps

    return xps, mlp_xp.get_backend("array-api-strict:device1").device


def _softmax_cross_entropy(logits, onehot):
    """Hand float64 mean cross-entropy over the batch and its gradient."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    softmax = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    n = logits.size // logits.shape[-1]
    return -(onehot * np.log(softmax)).sum() / n, (softmax - onehot) / n


@pytest.mark.parametrize(
    ("loss", "name"),
    [(mlp_xp.SoftmaxCrossEntropy(), "SoftmaxCrossEntropy"), (mlp_xp.BinaryCrossEntropy(), "BinaryCrossEntropy")],
)
def test_loss_rejects_targets_of_another_library_naming_both_types(loss, name):
    """NumPy predictions with array-api-strict targets raise ``TypeError`` naming the loss and
    both array types."""
    xps, _ = _strict_device1()
    message = (
        rf"^{name}: predictions are numpy\.ndarray but targets are array_api_strict\._array_object\.Array; "
        r"put both on the same backend\.$"
    )
    with pytest.raises(TypeError, match=message):
        loss.forward(np.zeros((2, 1)), xps.asarray([0, 1]))


def test_binary_cross_entropy_shape_error_names_the_loss():
    """Targets that fit no prediction shape raise ``ValueError`` naming the loss and both shapes."""
    message = r"^BinaryCrossEntropy: predictions of shape \(2, 1\) do not match targets of shape \(3,\)\.$"
    with pytest.raises(ValueError, match=message):
        mlp_xp.BinaryCrossEntropy().forward(np.zeros((2, 1)), np.zeros(3))


def test_binary_cross_entropy_takes_batch_shaped_targets_for_3d_predictions():
    """Predictions (B, T, 1) with targets (B, T) give the loss and gradient of targets (B, T, 1)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 1))
    t = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    loss = mlp_xp.BinaryCrossEntropy()
    value, grad = float(loss.forward(z, t)), loss.backward()
    sig = 1.0 / (1.0 + np.exp(-z))
    t3 = t[..., None]
    expected = -(t3 * np.log(sig) + (1.0 - t3) * np.log(1.0 - sig)).mean()
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert grad.shape == (2, 3, 1)
    np.testing.assert_allclose(grad, (sig - t3) / 6, rtol=1e-12)


def test_binary_cross_entropy_casts_integer_targets_to_float32_predictions():
    """Int64 targets of float32 predictions give a float32 loss and float32 gradient."""
    z = np.array([[0.5], [-1.0]], np.float32)
    loss = mlp_xp.BinaryCrossEntropy()
    value = loss.forward(z, np.array([1, 0]))
    assert value.dtype == np.float32
    assert loss.backward().dtype == np.float32


def test_binary_cross_entropy_on_probabilities_clips_zero_and_one():
    """``from_logits=False`` clips probabilities 0 and 1 to ``[eps, 1 - eps]``: the loss of
    confidently wrong predictions is finite, ``-log(eps)``; right ones cost ``-log(1 - eps)``."""
    eps = 1e-7
    p = np.array([0.0, 1.0, 0.0, 1.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    loss = mlp_xp.BinaryCrossEntropy(from_logits=False, eps=eps)
    value = float(loss.forward(p, t))
    np.testing.assert_allclose(value, (2 * -np.log(eps) + 2 * -np.log1p(-eps)) / 4, rtol=1e-9)
    grad = loss.backward()
    clipped = np.array([eps, 1 - eps, eps, 1 - eps])
    np.testing.assert_allclose(grad, (clipped - t) / (clipped * (1 - clipped)) / 4, rtol=1e-9)


def test_backward_before_forward_names_the_loss():
    """``backward`` without a ``forward`` raises ``RuntimeError`` naming the loss class."""
    message = r"^MSE: backward\(\) called before forward\(\) \(each forward serves one backward\)\.$"
    with pytest.raises(RuntimeError, match=message):
        mlp_xp.MSE().backward()


class _AbsoluteError(mlp_xp.losses.Loss):
    """A user loss built on the base class, filling ``cache`` key by key as layers do."""

    def forward(self, pred, target):
        self.cache["sign"] = np.sign(pred - target)
        self.cache["n"] = pred.size
        return np.abs(pred - target).mean()

    def backward(self):
        saved = self._saved()
        return saved["sign"] / saved["n"]


def test_user_loss_fills_the_base_class_cache():
    """``Loss()`` starts with an empty dict ``cache`` that a subclass's ``forward`` writes into,
    and ``_saved`` hands it over once."""
    loss = _AbsoluteError()
    assert loss.cache == {}
    assert float(loss(np.array([1.0, -2.0]), np.array([0.0, 0.0]))) == 1.5
    np.testing.assert_array_equal(loss.backward(), [0.5, -0.5])
    assert loss.cache == {}


def test_softmax_cross_entropy_counts_correct_3d_predictions():
    """``correct`` takes the argmax over the last (class) axis of (B, T, C) logits, for integer
    labels and for one-hot targets."""
    logits = np.zeros((2, 3, 4))
    winners = np.array([[0, 3, 1], [2, 2, 0]])
    np.put_along_axis(logits, winners[..., None], 1.0, axis=-1)
    labels = np.array([[0, 3, 2], [2, 1, 0]])  # 4 of 6 right
    onehot = np.eye(4)[labels]
    loss = mlp_xp.SoftmaxCrossEntropy()
    assert int(loss.correct(logits, labels)) == 4
    assert int(loss.correct(logits, onehot)) == 4


def test_softmax_cross_entropy_label_shape_error_names_the_expected_shape():
    """Labels of the wrong shape for (B, T, C) logits raise an error naming shape (B, T)."""
    message = (
        r"^SoftmaxCrossEntropy: labels of shape \(2, 2\) do not fit logits of shape \(2, 3, 4\) "
        r"\(expected labels of shape \(2, 3\)\)\.$"
    )
    with pytest.raises(ValueError, match=message):
        mlp_xp.SoftmaxCrossEntropy().forward(np.zeros((2, 3, 4)), np.zeros((2, 2), np.int64))


def test_softmax_cross_entropy_keeps_float32_for_integer_labels():
    """Float32 logits with int64 labels give a float32 loss and gradient of the right values."""
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32)
    labels = np.array([1, 2])
    loss = mlp_xp.SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    grad = loss.backward()
    assert (value.dtype, grad.dtype) == (np.float32, np.float32)
    expected, expected_grad = _softmax_cross_entropy(logits, np.eye(3)[labels])
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("label_dtype", ["int64", "uint64"])
def test_softmax_cross_entropy_on_array_api_strict_device1(label_dtype):
    """On array-api-strict's ``device1`` integer labels (also uint64, which the standard does not
    promote with int64) build their one-hot on the labels' device, in their dtype: loss and
    gradient match the float64 reference and stay on ``device1``."""
    xps, device1 = _strict_device1()
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = np.array([1, 2])
    pred = xps.asarray(logits, device=device1)
    target = xps.asarray(labels, dtype=getattr(xps, label_dtype), device=device1)
    loss = mlp_xp.SoftmaxCrossEntropy()
    value = loss.forward(pred, target)
    grad = loss.backward()
    assert value.device == device1 and grad.device == device1
    expected, expected_grad = _softmax_cross_entropy(logits, np.eye(3)[labels])
    np.testing.assert_allclose(float(value), expected, rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(xps.asarray(grad, device=xps.Device("CPU_DEVICE"))), expected_grad, rtol=1e-12
    )
