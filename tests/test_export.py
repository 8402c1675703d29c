"""Models and data that travel: torch round trips, ONNX export checked in onnxruntime, the
``mlp-xp export`` command, DLPack inputs to ``DeviceLoader`` and ``predict``.

torch, onnx and onnxruntime are optional: their tests skip when missing, and fail under ``$CI``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_module

import mlp_xp
from mlp_xp.cli import main

IN, CLASSES = 20, 4
RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, IN)).astype(np.float32)
Y = RNG.integers(0, CLASSES, 64)


PRECISIONS = {
    "float32": {"dtype": "float32"},
    "float64-bn-eps1e-3-momentum0.3": {"dtype": "float64", "eps": 1e-3, "momentum": 0.3},
}
"""The default model, and one whose dtype, BatchNorm eps and momentum each differ from the defaults."""


@pytest.fixture(params=list(PRECISIONS))
def precision(request):
    return PRECISIONS[request.param]


def _trained(backend, steps=8, dtype="float32", eps=1e-5, momentum=0.1, **config):
    """A BatchNorm(eps, momentum) + LeakyReLU + Dropout MLP in ``dtype`` after a few SGD steps
    (running stats far from 0/1)."""
    config = {"activation": "leaky_relu", "batchnorm": True, "dropout": 0.2, **config}
    model = mlp_xp.make_mlp(IN, [16, 8], CLASSES, **config)
    for layer in model.layers:
        if isinstance(layer, mlp_xp.BatchNorm):
            layer.eps, layer.momentum = eps, momentum
    model.init(backend, seed=1, dtype=dtype)
    optimizer, loss = mlp_xp.SGD(model, 0.1, momentum=0.9), mlp_xp.SoftmaxCrossEntropy()
    x, y = backend.asarray(X + 2.0, dtype), backend.asarray(Y, "int64")
    for _ in range(steps):
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        optimizer.step()
    return model.eval()


def _assert_same_logits(actual, expected, float64_rtol=1e-10):
    """Same dtype, argmax identical; logits equal to 1e-5 (float32) or ``float64_rtol`` (float64)
    relative to their scale."""
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual.argmax(axis=1), expected.argmax(axis=1))
    tolerance = float64_rtol if expected.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


@pytest.fixture(scope="module")
def torch():
    return require_module("torch")


# -- PyTorch -----------------------------------------------------------------------------------


def test_to_torch_computes_what_mlp_xp_computes(torch, numpy_backend, precision):
    model = _trained(numpy_backend, **precision)
    seq = mlp_xp.to_torch(model, batches_tracked=8)
    assert [name for name, _ in seq.named_children()] == model.names and not seq.training
    assert torch.equal(seq.hidden1.weight, torch.from_numpy(model["hidden1"].params["weight"].T))
    assert {str(p.dtype) for p in seq.parameters()} == {f"torch.{model.dtype}"}
    assert (seq.bn1.eps, seq.bn1.momentum) == (model["bn1"].eps, model["bn1"].momentum)
    assert seq.bn1.num_batches_tracked.item() == 8
    assert seq.drop1.p == 0.2 and seq.act1.negative_slope == 0.01
    x = X.astype(model.dtype)
    with torch.no_grad():
        logits = seq(torch.from_numpy(x)).numpy()
    _assert_same_logits(logits, model.forward(x))


def test_mlp_xp_to_torch_to_mlp_xp_is_exact(torch, backend, numpy_backend, precision):
    """Exact in the model's dtype; a float64 model goes to a float32-only device when asked to."""
    model = _trained(numpy_backend, **precision)
    dtype = None if model.dtype in backend.float_dtypes else "float32"  # None: the torch parameters' dtype
    back = mlp_xp.from_torch(mlp_xp.to_torch(model), backend=backend, dtype=dtype)
    assert back.names == model.names and [repr(a) for a in back] == [repr(b) for b in model]
    assert (back["bn1"].eps, back["bn1"].momentum) == (model["bn1"].eps, model["bn1"].momentum)
    assert back.dtype == (dtype or model.dtype) and not back.layers[0].training
    for key, value in model.state().items():
        np.testing.assert_array_equal(backend.to_numpy(back.state()[key]), value.astype(back.dtype))


def test_torch_model_imports_with_default_names_and_same_outputs(torch, backend):
    nn = torch.nn
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Linear(IN, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Dropout(0.1), nn.Linear(12, 8), nn.ReLU(),
        nn.Linear(8, 6), nn.LeakyReLU(0.2), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, CLASSES, bias=False),
        nn.Softmax(dim=1),
    )  # fmt: skip
    seq(torch.from_numpy(X))  # one training-mode pass moves the running stats
    seq.eval()
    model = mlp_xp.from_torch(seq, backend=backend)
    assert model.names[:3] == ["linear0", "batchnorm1", "tanh2"]
    with torch.no_grad():
        expected = seq(torch.from_numpy(X)).numpy()
    _assert_same_logits(backend.to_numpy(model.forward(backend.asarray(X))), expected)


def test_torch_model_with_names_that_clash_with_defaults_imports(torch):
    """A digit-named child keeps its digits where another child has its default name; Softmax()
    without a dim (torch's implicit dim 1 on 2-D input) is mlp_xp's Softmax."""
    from collections import OrderedDict

    nn = torch.nn
    torch.manual_seed(0)
    children = [("0", nn.Linear(IN, 8)), ("linear0", nn.Linear(8, CLASSES)), ("2", nn.Softmax())]
    seq = nn.Sequential(OrderedDict(children)).eval()
    model = mlp_xp.from_torch(seq, backend="numpy")
    assert model.names == ["0", "linear0", "softmax2"]
    with torch.no_grad():
        expected = seq(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.forward(X), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "module, message",
    [
        ("Conv1d(1, 1, 3)", r"module 1 \('1'\) is a Conv1d, which mlp_xp cannot import; supported modules: Linear"),
        ("BatchNorm1d(4, affine=False)", r"module 1 \('1'\) is a BatchNorm1d without affine=True"),
        ("Softmax(dim=0)", r"is a Softmax over dim=0"),
    ],
)
def test_from_torch_names_what_it_cannot_import(torch, module, message):
    seq = torch.nn.Sequential(torch.nn.Linear(3, 4), eval(f"torch.nn.{module}"))
    with pytest.raises(ValueError, match=message):
        mlp_xp.from_torch(seq, backend="numpy")


def test_torch_state_file_loads_into_the_printed_sequential(torch, tmp_path, numpy_backend, precision):
    from mlp_xp.export import save_torch_state, torch_source

    model = _trained(numpy_backend, **precision)
    path = save_torch_state(model, tmp_path / "weights.safetensors", batches_tracked=8)
    namespace: dict = {}
    exec(torch_source(model, path), namespace)  # load_state_dict is strict: every key and shape must fit
    x = X.astype(model.dtype)
    with torch.no_grad():
        logits = namespace["model"](torch.from_numpy(x)).numpy()  # in the model's dtype: load_state_dict would cast
    _assert_same_logits(logits, model.forward(x))


# -- ONNX --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnxruntime():
    require_module("onnx")
    return require_module("onnxruntime")


def _run_onnx(onnxruntime, path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


ONNX_FLOAT64_RTOL = 1e-8
"""ONNX float attributes (LeakyRelu's alpha, BatchNormalization's epsilon) are float32: a float64
model's outputs move by a few 1e-9 relative (3.7e-9 seen)."""


def test_onnx_graph_folds_batchnorm_drops_dropout_and_matches(onnxruntime, tmp_path, numpy_backend, precision):
    from onnx import helper

    model = _trained(numpy_backend, **precision)
    proto = mlp_xp.export_onnx(model, tmp_path / "m.onnx", class_names=["a", "b", "c", "d"])
    assert [node.op_type for node in proto.graph.node] == ["Gemm", "LeakyRelu", "Gemm", "LeakyRelu", "Gemm"]
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.input[0].type.tensor_type.elem_type == helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    assert json.loads({p.key: p.value for p in proto.metadata_props}["class_names"]) == ["a", "b", "c", "d"]
    x = X.astype(model.dtype)
    for rows in (1, 64):  # the batch dimension is dynamic
        actual = _run_onnx(onnxruntime, tmp_path / "m.onnx", x[:rows])
        _assert_same_logits(actual, model.forward(x[:rows]), ONNX_FLOAT64_RTOL)


def test_onnx_unfoldable_batchnorm_and_every_activation(onnxruntime, tmp_path, numpy_backend, precision):
    bn = {key: precision[key] for key in ("eps", "momentum") if key in precision}
    model = mlp_xp.Sequential(
        mlp_xp.BatchNorm(IN, **bn), mlp_xp.Linear(IN, 10), mlp_xp.ReLU(), mlp_xp.Linear(10, 8), mlp_xp.Sigmoid(),
        mlp_xp.Linear(8, 6), mlp_xp.LeakyReLU(0.3), mlp_xp.Linear(6, 6), mlp_xp.Tanh(), mlp_xp.Linear(6, CLASSES),
        mlp_xp.Softmax(),
    ).init(numpy_backend, seed=2, dtype=precision["dtype"])  # fmt: skip
    x = X.astype(model.dtype)
    model.train().forward(x + 1.0)  # running stats that are not 0 and 1
    model.eval()
    proto = mlp_xp.export_onnx(model, tmp_path / "m.onnx")
    ops = " ".join(node.op_type for node in proto.graph.node)
    assert ops == "BatchNormalization Gemm Relu Gemm Sigmoid Gemm LeakyRelu Gemm Tanh Gemm Softmax"
    _assert_same_logits(_run_onnx(onnxruntime, tmp_path / "m.onnx", x), model.forward(x), ONNX_FLOAT64_RTOL)


def test_onnx_export_refuses_what_it_cannot_write(onnxruntime, tmp_path, numpy_backend):
    model = _trained(numpy_backend)
    with pytest.raises(ValueError, match="3 class names for a model with 4 outputs"):
        mlp_xp.export_onnx(model, tmp_path / "m.onnx", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="opset 16 is too old"):
        mlp_xp.export_onnx(model, tmp_path / "m.onnx", opset=16)
    assert not (tmp_path / "m.onnx").exists()


# -- mlp-xp export ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A Fashion-MNIST-shaped checkpoint as `mlp-xp train` writes it (untrained weights suffice)."""
    config = {"in_features": 784, "hidden": [8], "out_features": 10, "batchnorm": True, "dropout": 0.1}
    model = mlp_xp.make_mlp(**config).init("numpy", seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "run.safetensors"
    return mlp_xp.save_checkpoint(path, model, epoch=1, config={"dataset": "fashion-mnist"}, model_config=config)


def test_cli_export_onnx_prints_the_graph_and_keeps_class_names(onnxruntime, tmp_path, checkpoint, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "--load", str(checkpoint), "--format", "onnx", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ONNX opset 17, 3 nodes: Gemm -> Relu -> Gemm" in printed and "T-shirt/top" in printed
    import onnx

    properties = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(properties["class_names"])[:2] == ["T-shirt/top", "Trouser"]


def test_cli_export_torch_writes_a_state_dict_file(torch, tmp_path, checkpoint, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "weights.safetensors"
    assert main(["export", "--load", str(checkpoint), "--format", "torch", "-o", str(out)]) == 0
    assert "torch.nn.BatchNorm1d(num_features=8, eps=1e-05, momentum=0.1)" in capsys.readouterr().out
    model = mlp_xp.make_mlp(784, [8], 10, batchnorm=True, dropout=0.1).init("numpy")
    seq = mlp_xp.to_torch(model)
    seq.load_state_dict(load_file(out))
    saved = mlp_xp.load_checkpoint(checkpoint).model["hidden1.weight"]
    np.testing.assert_array_equal(seq.hidden1.weight.detach().numpy(), saved.T)


# -- DLPack ------------------------------------------------------------------------------------


def test_loader_takes_torch_tensors_without_a_copy_and_trains_the_same(torch, numpy_backend):
    data = mlp_xp.synthetic(400, d=IN, classes=CLASSES, seed=3, n_test=50)
    x, y = torch.from_numpy(data.x_train.copy()), torch.from_numpy(data.y_train.astype(np.int64))
    loader = mlp_xp.DeviceLoader(x, y, numpy_backend, batch_size=32, num_classes=CLASSES)
    assert type(loader.x) is np.ndarray and loader.x.dtype == np.uint8
    assert loader.x.ctypes.data == x.data_ptr() and loader.y.ctypes.data == y.data_ptr()
    reference = mlp_xp.DeviceLoader(data.x_train, data.y_train, numpy_backend, batch_size=32, num_classes=CLASSES)
    losses = []
    for train in (loader, reference):
        model = mlp_xp.make_mlp(IN, [16], CLASSES).init(numpy_backend, seed=0)
        history = mlp_xp.fit(
            model, mlp_xp.SoftmaxCrossEntropy(), mlp_xp.Adam(model, 1e-2), train, epochs=2, progress=False, log=None
        )
        losses.append(history["train_loss"])
    assert losses[0] == losses[1]


def test_loader_takes_strict_arrays_into_numpy_without_a_copy(numpy_backend):
    xps = require_module("array_api_strict")
    x, y = xps.asarray(X), xps.asarray(Y)
    loader = mlp_xp.DeviceLoader(x, y, numpy_backend, batch_size=16, num_classes=CLASSES)
    assert loader.x.ctypes.data == np.from_dlpack(x).ctypes.data
    assert loader.y.ctypes.data == np.from_dlpack(y).ctypes.data


def test_torch_into_strict_is_a_view_and_moves_to_another_device_explicitly(torch):
    from mlp_xp.interop import to_backend

    tensor = torch.from_numpy(X)
    on_cpu = to_backend(tensor, mlp_xp.get_backend("array-api-strict"))
    assert np.from_dlpack(on_cpu).ctypes.data == tensor.data_ptr()
    strict1 = mlp_xp.get_backend("array-api-strict:device1")
    moved = to_backend(tensor, strict1, "float32")
    assert moved.device == strict1.device
    np.testing.assert_array_equal(strict1.to_numpy(moved), X)


def test_memory_no_library_can_export_is_one_clear_error(torch, numpy_backend):
    with pytest.raises(ValueError, match=r"cannot move a torch.Tensor on meta to numpy: .*move it to the CPU"):
        mlp_xp.DeviceLoader(torch.empty((4, 3), device="meta"), None, numpy_backend)


def test_a_tensor_that_requires_grad_is_refused_with_the_remedy(torch, numpy_backend):
    model = mlp_xp.make_mlp(4, [3], 2).init(numpy_backend)
    with pytest.raises(ValueError, match=r"torch.Tensor on cpu to numpy: .*; detach it first \(x.detach\(\)\)"):
        mlp_xp.predict(model, torch.ones((2, 4), requires_grad=True))


def test_predict_answers_in_the_input_library(torch, numpy_backend):
    model = _trained(numpy_backend).train()
    expected = _trained(numpy_backend).forward(X)
    out = mlp_xp.predict(model, torch.from_numpy(X))
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu"
    np.testing.assert_array_equal(out.numpy(), expected)
    assert all(layer.training for layer in model.layers)  # its mode is restored
    np.testing.assert_array_equal(mlp_xp.predict(model, X.tolist()), expected)
    xps = require_module("array_api_strict")
    strict_out = mlp_xp.predict(model, xps.asarray(X))
    assert isinstance(strict_out, type(xps.asarray(0.0)))
    on_torch = mlp_xp.from_torch(mlp_xp.to_torch(model.eval()), backend="torch")
    host_out = mlp_xp.predict(on_torch, X)
    assert type(host_out) is np.ndarray
    _assert_same_logits(host_out, expected)
