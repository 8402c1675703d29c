"""ONNX export of a model's inference graph, built operator by operator with ``onnx.helper``.

The graph is the eval-mode forward pass: Dropout disappears; a BatchNorm right after a Linear is
folded into it (``s = gamma / sqrt(var + eps)``, ``W' = W·s``, ``b' = (b − mean)·s + beta``,
computed in float64); any other BatchNorm becomes ``BatchNormalization``. Linear becomes
``Gemm`` (weight (in, out) as B, no transpose), and ReLU, LeakyReLU, Sigmoid, Tanh and Softmax
(last axis) become ``Relu``, ``LeakyRelu``, ``Sigmoid``, ``Tanh``, ``Softmax``. One input
``input`` of shape (batch, in_features) and one output ``output`` of shape (batch, out_features),
with a symbolic batch dimension; the class names and the layer list are in ``metadata_props``.
ONNX float attributes are float32: a float64 model's BatchNormalization ``epsilon`` and
LeakyRelu ``alpha`` are rounded to float32 (a relative change of at most 6e-8).
Only this module of the package imports onnx, and only when ``export_onnx`` runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checkpoint import layer_list
from ..files import write_atomically
from ..layers import BatchNorm, Dropout, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from ..model import Sequential

if TYPE_CHECKING:
    import onnx

OPSET = 17
ACTIVATIONS = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh"}


@dataclass
class _Op:
    """One ONNX node before emission: its operator, name, weight inputs and attributes."""

    op_type: str
    name: str
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


def export_onnx(
    model: Sequential, path: str | os.PathLike, *, class_names: list[str] | None = None, opset: int = OPSET
) -> onnx.ModelProto:
    """Write ``model``'s inference graph to ``path`` (atomically) as an ONNX model of ``opset``
    (≥ 17), checked with ``onnx.checker`` (full check: shapes inferred); returns the model."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise ImportError('ONNX export needs onnx: pip install "mlp-xp[onnx]".') from exc
    from .. import __version__

    if opset < OPSET:
        raise ValueError(f"opset {opset} is too old; export_onnx writes opset {OPSET} or newer.")
    ops = _inference_ops(model)
    in_features = _in_features(model)
    out_features = model.output_features(in_features)
    if class_names is not None and len(class_names) != out_features:
        raise ValueError(f"{len(class_names)} class names for a model with {out_features} outputs.")
    dtype = np.dtype(model.dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    nodes, initializers, current = [], [], "input"
    for index, op in enumerate(ops):
        names = [f"{op.name}.{key}" for key in op.weights]
        initializers += [numpy_helper.from_array(w.astype(dtype), n) for n, w in zip(names, op.weights.values())]
        output = "output" if index == len(ops) - 1 else op.name
        nodes.append(helper.make_node(op.op_type, [current, *names], [output], name=op.name, **op.attributes))
        current = output
    graph = helper.make_graph(
        nodes,
        "mlp_xp",
        [helper.make_tensor_value_info("input", elem, ["batch", in_features])],
        [helper.make_tensor_value_info("output", elem, ["batch", out_features])],
        initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="mlp_xp",
        producer_version=__version__,
    )
    properties = {"mlp_xp.layers": json.dumps(layer_list(model))}
    if class_names is not None:
        properties["class_names"] = json.dumps(list(class_names))
    helper.set_model_props(proto, properties)
    onnx.checker.check_model(proto, full_check=True)
    write_atomically(path, proto.SerializeToString())
    return proto


def _inference_ops(model: Sequential) -> list[_Op]:
    """The eval-mode layer list as ONNX operators with host weights, BatchNorm folded where it
    follows a Linear."""
    if model.backend is None:
        raise RuntimeError("the model has no parameters yet: call model.init(backend) first.")
    ops: list[_Op] = []
    for layer in model.layers:
        arrays = {k: model.backend.to_numpy(v) for k, v in {**layer.params, **layer.buffers}.items()}
        if isinstance(layer, Linear):
            ops.append(_Op("Gemm", layer.name, {"weight": arrays["weight"], "bias": arrays["bias"]}))
        elif isinstance(layer, BatchNorm) and ops and ops[-1].op_type == "Gemm":
            ops[-1] = _fold(ops[-1], layer.name, arrays, layer.eps)
        elif isinstance(layer, BatchNorm):
            weights = {k: arrays[k] for k in ("gamma", "beta", "running_mean", "running_var")}
            ops.append(_Op("BatchNormalization", layer.name, weights, {"epsilon": layer.eps}))
        elif isinstance(layer, LeakyReLU):
            ops.append(_Op("LeakyRelu", layer.name, attributes={"alpha": layer.negative_slope}))
        elif isinstance(layer, Softmax):
            ops.append(_Op("Softmax", layer.name, attributes={"axis": -1}))
        elif type(layer) in ACTIVATIONS:
            ops.append(_Op(ACTIVATIONS[type(layer)], layer.name))
        elif not isinstance(layer, Dropout):
            raise ValueError(f"layer {layer.name!r} ({layer!r}) has no ONNX export.")
    if not ops:
        raise ValueError("the model has no layers that compute at inference (only Dropout).")
    return ops


def _fold(gemm: _Op, bn_name: str, bn: dict[str, np.ndarray], eps: float) -> _Op:
    """``gemm`` followed by a BatchNorm in eval mode, as one Gemm (float64 arithmetic)."""
    scale = bn["gamma"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + eps)
    weight = gemm.weights["weight"].astype(np.float64) * scale
    bias = (gemm.weights["bias"].astype(np.float64) - bn["running_mean"]) * scale + bn["beta"]
    return _Op("Gemm", f"{gemm.name}_{bn_name}", {"weight": weight, "bias": bias})


def _in_features(model: Sequential) -> int:
    """The input width: that of the first Linear or BatchNorm (activations keep widths)."""
    for layer in model.layers:
        width = getattr(layer, "in_features", None) or getattr(layer, "num_features", None)
        if width:
            return width
    raise ValueError("the model has no Linear or BatchNorm layer: its input width is unknown.")
