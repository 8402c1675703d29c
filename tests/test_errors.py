"""Issue acceptance 4: clear errors for the usual mistakes, and Sequential's named access."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import device as array_device
from conftest import require_module

import mlp_xp
from mlp_xp import (
    SGD,
    BatchNorm,
    Dropout,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from mlp_xp.backends import SPECS, BackendUnavailableError


def small_model(backend, dtype="float32") -> Sequential:
    return Sequential(Linear(4, 6), BatchNorm(6), ReLU(), Linear(6, 3)).init(backend, seed=0, dtype=dtype)


def host_batch(n=5, features=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, features)).astype(np.float32)


# -- inputs that do not fit ----------------------------------------------------------------


def test_wrong_input_width_names_layer_and_shape(backend):
    model = small_model(backend)
    with pytest.raises(ValueError) as info:
        model.forward(backend.asarray(host_batch(features=5), "float32"))
    message = str(info.value)
    assert "linear0" in message
    assert "(..., 4)" in message
    assert "(5, 5)" in message


def test_wrong_width_in_the_middle_names_that_layer(numpy_backend):
    model = small_model(numpy_backend)
    with pytest.raises(ValueError, match=r"'linear3'.*\(\.\.\., 6\)"):
        model.forward(numpy_backend.asarray(host_batch(features=5), "float32"), start="linear3")


def test_batchnorm_wrong_width(numpy_backend):
    layer = BatchNorm(3)
    layer.init(numpy_backend, mlp_xp.backends.host_rng(0), "float32")
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        layer.forward(numpy_backend.asarray(host_batch(features=4), "float32"))


def test_linear_needs_batch_dimension(numpy_backend):
    model = small_model(numpy_backend)
    with pytest.raises(ValueError, match="batch dimension"):
        model.forward(numpy_backend.asarray(np.ones(4, dtype=np.float32)))


def test_batchnorm_single_sample_in_training(numpy_backend):
    model = small_model(numpy_backend)
    with pytest.raises(ValueError, match="more than one sample"):
        model.forward(numpy_backend.asarray(host_batch(n=1), "float32"))
    model.eval()
    assert tuple(model.forward(numpy_backend.asarray(host_batch(n=1), "float32")).shape) == (1, 3)


@pytest.mark.parametrize("bad", [10, -1, 3])
def test_labels_out_of_range(backend, bad):
    logits = backend.asarray(np.zeros((4, 3), dtype=np.float32), "float32")
    labels = backend.asarray(np.array([0, 1, bad, 2]), "int64")
    with pytest.raises(ValueError) as info:
        SoftmaxCrossEntropy().forward(logits, labels)
    assert "[0, 3)" in str(info.value)
    assert str(bad) in str(info.value)


def test_labels_wrong_shape(numpy_backend):
    logits = numpy_backend.asarray(np.zeros((4, 3), dtype=np.float32))
    cases = [
        np.zeros((4, 1), dtype=np.int64),  # a column of labels
        np.zeros((5,), dtype=np.int64),  # wrong batch size
        np.zeros((4, 2), dtype=np.float32),  # one-hot of the wrong width
    ]
    for target in cases:
        with pytest.raises(ValueError) as info:
            SoftmaxCrossEntropy().forward(logits, numpy_backend.asarray(target))
        assert str(tuple(target.shape)) in str(info.value)
        assert "(4, 3)" in str(info.value)


def test_float_labels_are_rejected(backend):
    """Non-integer labels of shape (batch,) would give all-zero one-hot rows: refuse them."""
    logits = backend.asarray(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="class labels must be integers, got dtype .*float32"):
        SoftmaxCrossEntropy().forward(logits, backend.asarray(np.array([0.5, 1.0], dtype=np.float32)))


def test_label_check_can_be_turned_off(numpy_backend):
    logits = numpy_backend.asarray(np.zeros((2, 3), dtype=np.float32))
    labels = numpy_backend.asarray(np.array([0, 2]))
    loss = SoftmaxCrossEntropy(check_labels=False).forward(logits, labels)
    np.testing.assert_allclose(float(loss), np.log(3), rtol=1e-6)


def test_float64_input_to_float32_model(backend):
    if "no_float64" in backend.spec:
        pytest.skip("float32-only device cannot hold the float64 input")
    model = small_model(backend, "float32")
    with pytest.raises(TypeError) as info:
        model.forward(backend.asarray(host_batch(), "float64"))
    message = str(info.value)
    assert "linear0" in message
    assert "float64" in message and "float32" in message


def test_strict_device_mismatch():
    model = small_model("array-api-strict")
    other = mlp_xp.get_backend("array-api-strict:device1")
    with pytest.raises(ValueError) as info:
        model.forward(other.asarray(host_batch(), "float32"))
    message = str(info.value)
    assert "linear0" in message
    assert "device1" in message and "CPU_DEVICE" in message


def test_numpy_input_to_torch_model():
    require_module("torch")
    model = small_model("torch")
    with pytest.raises(TypeError) as info:
        model.forward(host_batch())
    message = str(info.value)
    assert "numpy" in message and "torch" in message
    assert "linear0" in message


def test_numpy_input_to_strict_model():
    model = small_model("array-api-strict")
    with pytest.raises(TypeError, match="move the input to the model's backend"):
        model.forward(host_batch())


def test_unknown_backend_spec():
    with pytest.raises(ValueError) as info:
        small_model("tpu:0")
    for spec in SPECS:
        assert spec in str(info.value)


def test_cuda_without_gpu():
    try:
        mlp_xp.get_backend("cuda")
    except BackendUnavailableError as exc:
        message = str(exc)
        assert "--device auto" in message
        assert ("no usable CUDA device" in message) or ('pip install "mlp-xp[cuda12]"' in message)
        with pytest.raises(BackendUnavailableError):
            small_model("cuda")
    else:
        pytest.skip("a CUDA device is present")


# -- use before init -----------------------------------------------------------------------


@pytest.mark.parametrize("layer_factory", [lambda: Linear(4, 3), lambda: BatchNorm(4), lambda: Dropout(0.5)])
def test_forward_before_init(layer_factory):
    model = Sequential(layer_factory())
    with pytest.raises(RuntimeError, match=r"init\(backend\)"):
        model.forward(host_batch())


def test_model_methods_before_init():
    model = Sequential(Linear(4, 3))
    with pytest.raises(RuntimeError, match=r"init\(backend\)"):
        model.to("numpy")


def test_backward_before_forward(numpy_backend):
    layer = Linear(4, 3)
    layer.init(numpy_backend, mlp_xp.backends.host_rng(0), "float32")
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(numpy_backend.asarray(np.ones((2, 3), dtype=np.float32)))


def test_optimizer_step_before_backward(numpy_backend):
    model = small_model(numpy_backend)
    with pytest.raises(RuntimeError, match="no gradient"):
        SGD(model, lr=0.1).step()


@pytest.mark.parametrize(
    "make",
    [
        lambda m: SGD(m, lr=0.0),
        lambda m: SGD(m, lr=0.1, weight_decay=-1.0),
        lambda m: SGD(m, lr=0.1, nesterov=True),
    ],
)
def test_optimizer_argument_errors(numpy_backend, make):
    with pytest.raises(ValueError):
        make(small_model(numpy_backend))


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="Dropout"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="positive"):
        Linear(0, 3)
    with pytest.raises(ValueError, match="unknown initialiser"):
        Linear(3, 3, init="zeros")


# -- Sequential construction and named access ----------------------------------------------


def test_duplicate_names():
    with pytest.raises(ValueError, match="'enc'"):
        Sequential(("enc", Linear(4, 3)), ("enc", ReLU()))
    # an explicit name that collides with an automatic one
    with pytest.raises(ValueError, match="'linear0'"):
        Sequential(Linear(4, 3), ("linear0", ReLU()))


def test_sequential_construction_errors():
    with pytest.raises(ValueError):
        Sequential()
    with pytest.raises(TypeError, match="not a Layer"):
        Sequential(Linear(4, 3), "relu")


def test_names_and_lookup():
    model = Sequential(Linear(4, 3), ("act", ReLU()), Linear(3, 2))
    assert model.names == ["linear0", "act", "linear2"]
    assert model["act"] is model[1] is model[-2]
    with pytest.raises(KeyError, match="linear0"):
        model["missing"]
    with pytest.raises(IndexError):
        model[3]


def autoencoder(backend) -> Sequential:
    return Sequential(
        ("down", Linear(8, 3)),
        ("code", Tanh()),
        ("up", Linear(3, 8)),
        ("out", Sigmoid()),
    ).init(backend, seed=1, dtype="float32")


def test_forward_start_end_by_name(backend):
    model = autoencoder(backend)
    x = backend.asarray(np.random.default_rng(0).random((5, 8), dtype=np.float32), "float32")
    z = model.forward(x, end="code")
    assert tuple(z.shape) == (5, 3)
    decoded = model.forward(z, start="up")
    manual = model["out"].forward(model["up"].forward(z))
    np.testing.assert_allclose(backend.to_numpy(decoded), backend.to_numpy(manual), rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(decoded), backend.to_numpy(model.forward(x)), rtol=1e-6)
    # by index too, and a single layer
    np.testing.assert_allclose(backend.to_numpy(model.forward(z, start=2, end=3)), backend.to_numpy(manual), rtol=1e-6)
    only_up = model.forward(z, start="up", end="up")
    assert tuple(only_up.shape) == (5, 8)
    with pytest.raises(ValueError, match="comes after"):
        model.forward(x, start="up", end="down")


def test_backward_covers_only_the_forward_range(numpy_backend):
    model = autoencoder(numpy_backend)
    z = numpy_backend.asarray(np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32))
    out = model.forward(z, start="up")
    dz = model.backward(numpy_backend.xp.ones_like(out), input_grad=True)
    assert tuple(dz.shape) == (5, 3)
    assert set(model["up"].grads) == {"weight", "bias"}
    assert model["down"].grads == {}
    # dz equals the gradient through the decoder computed by hand
    y = 1 / (1 + np.exp(-(np.asarray(z) @ model["up"].params["weight"] + model["up"].params["bias"])))
    expected = (y * (1 - y)) @ model["up"].params["weight"].T
    np.testing.assert_allclose(dz, expected, rtol=1e-5)


def test_to_other_backend_keeps_predictions(other_backend):
    source = mlp_xp.get_backend("numpy")
    model = Sequential(Linear(4, 6), BatchNorm(6), ReLU(), Dropout(0.2), Linear(6, 3)).init(source, seed=0)
    x_host = host_batch(n=8)
    model.forward(source.asarray(x_host))  # train step: non-trivial BatchNorm running stats
    model.eval()
    expected = source.to_numpy(model.forward(source.asarray(x_host)))
    model.to(other_backend)
    assert model.backend is other_backend
    for key, value in model.state().items():
        assert array_device(value) == other_backend.device, key
        assert value.dtype == other_backend.xp.float32, key
    assert model["dropout3"].rng.backend is other_backend
    got = other_backend.to_numpy(model.forward(other_backend.asarray(x_host, "float32")))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # and back again
    model.to(source)
    np.testing.assert_allclose(source.to_numpy(model.forward(source.asarray(x_host))), expected, rtol=1e-5, atol=1e-6)


def test_to_other_dtype(numpy_backend):
    model = small_model(numpy_backend).eval()
    x_host = host_batch()
    expected = model.forward(numpy_backend.asarray(x_host))
    model.to(numpy_backend, dtype="float64")
    assert model.dtype == "float64"
    got = model.forward(numpy_backend.asarray(x_host, "float64"))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "int32", "bfloat16", "f8"])
def test_a_model_is_float32_or_float64(numpy_backend, dtype):
    """Other dtypes are refused by name, in init and in to (before: float16 and int32 models were
    made, and unknown names raised AttributeError)."""
    with pytest.raises(ValueError, match=rf"dtype '{dtype}' is not a model dtype: choose 'float32' .* or 'float64'"):
        small_model(numpy_backend, dtype=dtype)
    model = small_model(numpy_backend)
    with pytest.raises(ValueError, match=rf"dtype '{dtype}' is not a model dtype"):
        model.to(numpy_backend, dtype=dtype)
    assert model.dtype == "float32"


def test_float64_on_a_float32_only_device_is_refused_by_name():
    """A device without float64 (Apple's MPS, array-api-strict's no_float64) refuses a float64
    model in one line naming the backend, in init and in to; float32 goes there."""
    device = mlp_xp.get_backend("array-api-strict:no_float64")
    assert device.float_dtypes == ["float32"] and mlp_xp.get_backend("numpy").float_dtypes == ["float32", "float64"]
    with pytest.raises(ValueError, match=r"^array-api-strict:no_float64 has no float64 on its device; use float32"):
        small_model(device, dtype="float64")
    model = small_model("numpy", dtype="float64")
    with pytest.raises(ValueError, match=r"^array-api-strict:no_float64 has no float64 on its device"):
        model.to(device)
    assert model.to(device, dtype="float32").dtype == "float32"


def test_load_state_wrong_shapes(numpy_backend):
    model = Sequential(Linear(4, 6), BatchNorm(6), Linear(6, 3)).init(numpy_backend)
    other = Sequential(Linear(4, 5), BatchNorm(5), Linear(5, 3)).init(numpy_backend)
    with pytest.raises(ValueError) as info:
        model.load_state(other.state())
    message = str(info.value)
    for expected in (
        "linear0.weight: shape (4, 5) vs model (4, 6)",
        "linear0.bias: shape (5,) vs model (6,)",
        "batchnorm1.running_var: shape (5,) vs model (6,)",
        "linear2.weight: shape (5, 3) vs model (6, 3)",
    ):
        assert expected in message
    assert "linear2.bias" not in message  # it fits


def test_load_state_missing_and_unexpected(numpy_backend):
    model = small_model(numpy_backend)
    state = dict(model.state())
    del state["batchnorm1.running_mean"]
    state["extra.weight"] = state["linear0.weight"]
    with pytest.raises(ValueError) as info:
        model.load_state(state)
    assert "missing batchnorm1.running_mean" in str(info.value)
    assert "unexpected extra.weight" in str(info.value)


def test_load_state_round_trip(numpy_backend):
    a = small_model(numpy_backend)
    b = Sequential(Linear(4, 6), BatchNorm(6), ReLU(), Linear(6, 3)).init(numpy_backend, seed=5)
    b.load_state({k: np.array(v, copy=True) for k, v in a.state().items()})
    x = numpy_backend.asarray(host_batch())
    np.testing.assert_array_equal(a.eval().forward(x), b.eval().forward(x))


def test_mlp_xp_device_replacing_auto_is_named_in_its_errors(monkeypatch):
    monkeypatch.setenv("MLP_XP_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"^MLP_XP_DEVICE=tpu replaces --device auto: unknown backend/device spec"):
        mlp_xp.get_backend("auto")
    assert mlp_xp.get_backend("cpu").spec == "numpy"  # an explicit spec is not replaced
    monkeypatch.setenv("MLP_XP_DEVICE", "array-api-strict:device1")
    assert mlp_xp.get_backend().spec == "array-api-strict:device1"
    monkeypatch.setenv("MLP_XP_DEVICE", "auto")
    assert mlp_xp.get_backend().spec in ("numpy", "cupy:0")
