"""PyTorch interchange: ``to_torch`` / ``from_torch`` and files in torch's ``state_dict`` layout.

Layer for layer: ``Linear`` ↔ ``torch.nn.Linear`` (weight transposed: mlp_xp keeps (in, out),
torch (out, in)), ``BatchNorm`` ↔ ``BatchNorm1d`` (gamma/beta as weight/bias, the running
statistics, ``num_batches_tracked``), ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Softmax``
(last axis) and ``Dropout`` ↔ the torch modules of the same names. Layer names become the
``nn.Sequential``'s child names, so state-dict keys read ``hidden1.weight``. ``torch_state_dict``,
``save_torch_state`` and ``torch_source`` need no torch: ``mlp-xp export --format torch`` writes
the state dict as safetensors and prints the ``nn.Sequential`` that loads it. Only this module of
the package imports torch, and only when a function needs it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.numpy

from ..backends import Backend
from ..files import write_atomically
from ..layers import BatchNorm, Dropout, Layer, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from ..model import Sequential, default_layer_name

if TYPE_CHECKING:
    import torch

TORCH_MODULES: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    Linear: ("Linear", lambda layer: {"in_features": layer.in_features, "out_features": layer.out_features}),
    BatchNorm: (
        "BatchNorm1d",
        lambda layer: {"num_features": layer.num_features, "eps": layer.eps, "momentum": layer.momentum},
    ),
    ReLU: ("ReLU", lambda layer: {}),
    LeakyReLU: ("LeakyReLU", lambda layer: {"negative_slope": layer.negative_slope}),
    Sigmoid: ("Sigmoid", lambda layer: {}),
    Tanh: ("Tanh", lambda layer: {}),
    Softmax: ("Softmax", lambda layer: {"dim": -1}),
    Dropout: ("Dropout", lambda layer: {"p": layer.p}),
}
"""mlp_xp layer type -> (``torch.nn`` class name, its constructor arguments for a layer)."""

TORCH_KEYS: dict[type, dict[str, str]] = {
    Linear: {"weight": "weight", "bias": "bias"},
    BatchNorm: {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"},
}
"""mlp_xp parameter/buffer key -> torch state-dict key, per layer type (Linear weights are transposed)."""


def torch_modules(model: Sequential) -> list[tuple[str, str, dict[str, Any]]]:
    """``(layer name, torch.nn class name, constructor arguments)`` for every layer."""
    specs = []
    for layer in model.layers:
        if type(layer) not in TORCH_MODULES:
            raise ValueError(
                f"layer {layer.name!r} ({layer!r}) has no torch counterpart; supported: "
                f"{', '.join(t.__name__ for t in TORCH_MODULES)}."
            )
        cls, arguments = TORCH_MODULES[type(layer)]
        specs.append((layer.name, cls, arguments(layer)))
    return specs


def torch_state_dict(model: Sequential, batches_tracked: int = 0) -> dict[str, np.ndarray]:
    """The ``state_dict`` of ``to_torch(model)`` as host arrays: ``<layer>.weight`` of shape
    (out, in) for Linear layers, BatchNorm's weight, bias, running stats and a 0-d int64
    ``num_batches_tracked`` (``batches_tracked``: the training steps, which mlp_xp does not count)."""
    torch_modules(model)  # every layer has a counterpart
    state = {}
    for layer in model.layers:
        for key, torch_key in TORCH_KEYS.get(type(layer), {}).items():
            value = model.backend.to_numpy({**layer.params, **layer.buffers}[key])
            state[f"{layer.name}.{torch_key}"] = _torch_layout(layer, key, value)
        if isinstance(layer, BatchNorm):
            state[f"{layer.name}.num_batches_tracked"] = np.array(batches_tracked, dtype=np.int64)
    return state


def save_torch_state(model: Sequential, path: str | os.PathLike, batches_tracked: int = 0) -> Path:
    """Write ``torch_state_dict(model)`` as a safetensors file (atomically), for
    ``nn.Sequential.load_state_dict(safetensors.torch.load_file(path))``."""
    data = safetensors.numpy.save(torch_state_dict(model, batches_tracked), metadata={"format": "pt"})
    return write_atomically(path, data)


def torch_source(model: Sequential, weights: str | os.PathLike) -> str:
    """Python source that builds ``to_torch(model)`` and loads the state dict file ``weights``."""
    lines = ["from collections import OrderedDict", "", "import torch", "from safetensors.torch import load_file", ""]
    lines.append("model = torch.nn.Sequential(OrderedDict([")
    for name, cls, arguments in torch_modules(model):
        text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        lines.append(f"    ({name!r}, torch.nn.{cls}({text})),")
    lines.append(f"])){'.double()' if model.dtype == 'float64' else ''}")
    lines += [f"model.load_state_dict(load_file({str(weights)!r}))", "model.eval()"]
    return "\n".join(lines)


def to_torch(model: Sequential, batches_tracked: int = 0) -> torch.nn.Sequential:
    """A ``torch.nn.Sequential`` on the CPU with ``model``'s layers, names, weights, dtype and
    train/eval mode (see the module docstring for the mapping)."""
    torch = _torch()
    if model.backend is None:
        raise RuntimeError("the model has no parameters yet: call model.init(backend) first.")
    modules = OrderedDict((name, getattr(torch.nn, cls)(**arguments)) for name, cls, arguments in torch_modules(model))
    seq = torch.nn.Sequential(modules).to(getattr(torch, model.dtype))
    seq.load_state_dict({k: torch.from_numpy(v) for k, v in torch_state_dict(model, batches_tracked).items()})
    return seq.train(any(layer.training for layer in model.layers))


def from_torch(seq: torch.nn.Sequential, backend: Backend | str = "auto", dtype: str | None = None) -> Sequential:
    """An mlp_xp ``Sequential`` on ``backend`` from a ``torch.nn.Sequential`` of the supported
    modules, in ``dtype`` (default: the torch parameters' float32 or float64). Children named by
    torch's default digits get mlp_xp's default names (or keep the digits where another child
    already has that name), others keep theirs. Any other module raises ``ValueError`` naming it."""
    torch = _torch()
    if not isinstance(seq, torch.nn.Sequential):
        raise TypeError(f"from_torch needs a torch.nn.Sequential, got {type(seq).__name__}.")
    children = list(seq.named_children())
    if not children:
        raise ValueError("from_torch: the torch.nn.Sequential is empty.")
    layers = [_layer(torch, index, name, module) for index, (name, module) in enumerate(children)]
    model = Sequential(*zip(_layer_names(children, layers), layers))
    host = {k: v.detach().cpu() for k, v in seq.state_dict().items()}
    model.init(backend, dtype=dtype or _float_dtype(host))
    state = {}
    for (torch_name, _), layer in zip(children, model.layers):
        for key, torch_key in TORCH_KEYS.get(type(layer), {}).items():
            value = host.get(f"{torch_name}.{torch_key}")
            value = np.zeros(layer.out_features) if value is None else _torch_layout(layer, key, value.double().numpy())
            state[f"{layer.name}.{key}"] = model.backend.asarray(value, model.dtype)
    model.load_state(state)
    return model.train() if seq.training else model.eval()


def _layer_names(children: list[tuple[str, Any]], layers: list[Layer]) -> list[str]:
    """mlp_xp's default name (``linear0``...) for each digit-named child, unless a child is named
    that already; every other child keeps its torch name."""
    taken = {name for name, _ in children}
    names = []
    for index, ((name, _), layer) in enumerate(zip(children, layers)):
        default = default_layer_name(layer, index)
        names.append(default if name.isdigit() and default not in taken else name)
    return names


def _torch_layout(layer: Layer, key: str, value: np.ndarray) -> np.ndarray:
    """A Linear weight transposed between (in, out) and (out, in); anything else as it is."""
    return np.ascontiguousarray(value.T) if isinstance(layer, Linear) and key == "weight" else value


def _layer(torch: Any, index: int, name: str, module: Any) -> Layer:
    """The mlp_xp layer for one torch module (of exactly a supported class), or ``ValueError``
    naming what is unsupported."""
    nn, kind = torch.nn, type(module)
    where = f"from_torch: module {index} ({name!r}) is a {kind.__name__}"
    build: dict[type, Callable[[Any], Layer]] = {
        nn.Linear: lambda m: Linear(m.in_features, m.out_features),
        nn.BatchNorm1d: lambda m: BatchNorm(m.num_features, eps=m.eps, momentum=m.momentum),
        nn.ReLU: lambda m: ReLU(),
        nn.LeakyReLU: lambda m: LeakyReLU(m.negative_slope),
        nn.Sigmoid: lambda m: Sigmoid(),
        nn.Tanh: lambda m: Tanh(),
        nn.Softmax: lambda m: Softmax(),
        nn.Dropout: lambda m: Dropout(m.p),
    }
    if kind not in build:
        supported = ", ".join(cls.__name__ for cls in build)
        raise ValueError(f"{where}, which mlp_xp cannot import; supported modules: {supported}.")
    if kind is nn.BatchNorm1d and not (module.affine and module.track_running_stats and module.momentum is not None):
        raise ValueError(f"{where} without affine=True, track_running_stats=True and a momentum; unsupported.")
    if kind is nn.Softmax and module.dim not in (-1, 1, None):  # None: torch's implicit dim, 1 for 2-D input
        raise ValueError(f"{where} over dim={module.dim}; mlp_xp's Softmax is over the last axis (dim=-1).")
    return build[kind](module)


def _float_dtype(state: dict[str, Any]) -> str:
    """float32 or float64: the dtype of the torch parameters (float32 when there are none)."""
    names = {str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()} or {"float32"}
    if len(names) != 1 or not names <= {"float32", "float64"}:
        raise ValueError(f"from_torch: parameters of dtype {sorted(names)}; pass dtype='float32' or 'float64'.")
    return names.pop()


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError('PyTorch interchange needs torch: pip install "mlp-xp[torch]".') from exc
    return torch
