"""``Sequential``: a chain of layers with a forward pass, a backward pass and named access."""

from __future__ import annotations

import math
from collections.abc import Iterator

from .arrays import Array, moved, size
from .backends import Backend, get_backend, host_rng
from .layers.base import Layer, Skipped
from .params import FlatParameters

DTYPES = ("float32", "float64")
"""The dtypes a model is made in: float32 by default, float64 where asked (gradient checks)."""


def check_dtype(backend: Backend, dtype: str) -> None:
    """``ValueError`` unless ``dtype`` is one of ``DTYPES`` and ``backend``'s device holds it."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not a model dtype: choose 'float32' (the default) or 'float64'.")
    if dtype not in backend.float_dtypes:
        raise ValueError(f"{backend.spec} has no {dtype} on its device; use float32 there.")


def default_layer_name(layer: Layer, index: int) -> str:
    """The name ``Sequential`` gives an unnamed layer at ``index``: ``linear0``, ``relu1``..."""
    return f"{type(layer).__name__.lower()}{index}"


class Sequential:
    """Layers applied in order. Entries are layers or ``(name, layer)`` pairs; unnamed layers
    are called ``<type><index>`` (``linear0``, ``relu1``, ...).

    Create the parameters with :meth:`init` for a backend, dtype and seed. ``forward(x,
    start=, end=)`` runs a sub-range (both ends inclusive, by name or index), and ``backward``
    goes back through the range that the last ``forward`` ran.
    """

    def __init__(self, *layers: Layer | tuple[str, Layer]) -> None:
        if not layers:
            raise ValueError("Sequential needs at least one layer.")
        self.layers: list[Layer] = []
        for index, entry in enumerate(layers):
            name, layer = entry if isinstance(entry, tuple) else (default_layer_name(entry, index), entry)
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential entry {index} is a {type(layer).__name__}, not a Layer.")
            if name in self.names:
                raise ValueError(f"two layers are named {name!r}.")
            layer.name = name
            self.layers.append(layer)
        self.backend: Backend | None = None
        self.dtype: str | None = None
        self.flat: FlatParameters | None = None
        self._range = (0, len(self.layers) - 1)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, key: int | str) -> Layer:
        return self.layers[self._index(key)]

    def _index(self, key: int | str) -> int:
        if isinstance(key, str):
            try:
                return self.names.index(key)
            except ValueError:
                raise KeyError(f"no layer named {key!r}; layers are {self.names}.") from None
        if not -len(self.layers) <= key < len(self.layers):
            raise IndexError(f"layer index {key} out of range for {len(self.layers)} layers.")
        return key % len(self.layers)

    # -- parameters -------------------------------------------------------------------------

    def init(self, backend: Backend | str = "auto", seed: int = 0, dtype: str = "float32") -> Sequential:
        """Create every parameter on ``backend`` in ``dtype``; the same seed gives the same
        initial weights on every backend (drawn on the host, uploaded once)."""
        backend = get_backend(backend)
        check_dtype(backend, dtype)
        rng = host_rng(seed)
        for layer in self.layers:
            layer.init(backend, rng, dtype)
        self.backend, self.dtype = backend, dtype
        self.flat = FlatParameters(self.layers) if self.parameters() else None
        return self

    def parameters(self) -> dict[str, Array]:
        """Trainable arrays by ``"<layer>.<param>"`` name (the arrays themselves, not copies:
        views of the flat buffer ``flat`` once initialised)."""
        return {f"{layer.name}.{key}": value for layer in self.layers for key, value in layer.params.items()}

    def state(self) -> dict[str, Array]:
        """Parameters and buffers (e.g. BatchNorm running stats) by ``"<layer>.<key>"`` name."""
        state = self.parameters()
        state.update({f"{layer.name}.{key}": value for layer in self.layers for key, value in layer.buffers.items()})
        return state

    def load_state(self, state: dict[str, Array]) -> None:
        """Replace parameters and buffers from ``state`` (arrays already on this backend).
        The names and shapes must match exactly; the error lists what differs."""
        mine = self.state()
        problems = [f"missing {k}" for k in mine if k not in state]
        problems += [f"unexpected {k}" for k in state if k not in mine]
        problems += [
            f"{k}: shape {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in mine.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ]
        if problems:
            raise ValueError("state does not fit this model: " + "; ".join(problems))
        for layer in self.layers:
            for store in (layer.params, layer.buffers):
                for key in store:
                    store[key] = state[f"{layer.name}.{key}"]
        if self.flat is not None:
            self.flat.sync()

    def to(self, backend: Backend | str, dtype: str | None = None) -> Sequential:
        """Move parameters, buffers and random generators to another backend (and dtype)."""
        self._require_init()
        source, target = self.backend, get_backend(backend)
        dtype = dtype or self.dtype
        check_dtype(target, dtype)
        self.load_state(moved(self.state(), source, target, dtype))
        for layer in self.layers:
            if getattr(layer, "rng", None) is not None:
                layer.rng = target.random(layer.rng.seed)
        self.backend, self.dtype = target, dtype
        return self

    def zero_grad(self) -> None:
        """Reset every gradient to zeros (``backward`` overwrites gradients; it never adds)."""
        for layer in self.layers:
            for key, value in layer.params.items():
                layer.grads[key] = self.backend.xp.zeros_like(value)

    def num_parameters(self) -> int:
        return sum(size(v) for v in self.parameters().values())

    # -- passes -----------------------------------------------------------------------------

    def train(self) -> Sequential:
        """Training mode (dropout on, BatchNorm uses batch statistics)."""
        for layer in self.layers:
            layer.training = True
        return self

    def set_epoch(self, epoch: int, skip: int = 0, batch_shape: tuple[int, ...] | None = None) -> None:
        """Tell every layer that epoch ``epoch`` (0-based) begins (``fit`` does, each epoch):
        Dropout restarts its masks at a stream of its seed and the epoch. ``skip`` steps on
        full batches of ``batch_shape`` (the model's input) already ran in it when a run
        resumes inside the epoch: Dropout moves its stream past the masks they drew."""
        shape = batch_shape
        for layer in self.layers:
            skipped = None if not skip or shape is None else Skipped(skip, shape, self.dtype)
            layer.set_epoch(epoch, skipped)
            if shape is not None:
                shape = (*shape[:-1], layer.output_features(shape[-1]))

    def eval(self) -> Sequential:
        """Evaluation mode (dropout off, BatchNorm uses running statistics)."""
        for layer in self.layers:
            layer.training = False
        return self

    def forward(self, x: Array, start: int | str | None = None, end: int | str | None = None) -> Array:
        """Run layers ``start`` .. ``end`` (inclusive; names or indices; default all) on ``x``."""
        first = 0 if start is None else self._index(start)
        last = len(self.layers) - 1 if end is None else self._index(end)
        if first > last:
            raise ValueError(f"start layer {self.names[first]!r} comes after end layer {self.names[last]!r}.")
        self._range = (first, last)
        for layer in self.layers[first : last + 1]:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy: Array, input_grad: bool = False) -> Array | None:
        """Back-propagate ``dy`` (gradient of the loss w.r.t. the last forward's output)
        through the layers that forward ran, filling each layer's ``grads``. Returns the
        gradient w.r.t. the input when ``input_grad`` is true, else None (and skips its cost).
        Each layer's forward cache is emptied once its backward has run."""
        first, last = self._range
        for index in range(last, first - 1, -1):
            layer = self.layers[index]
            if hasattr(layer, "input_grad"):
                layer.input_grad = input_grad or index != first
            dy = layer.backward(dy)
            layer.cache.clear()
            if dy is None:
                return None
        return dy if input_grad else None

    # -- description ------------------------------------------------------------------------

    def output_features(self, in_features: int) -> int:
        for layer in self.layers:
            in_features = layer.output_features(in_features)
        return in_features

    def summary(self, in_features: int | None = None) -> str:
        """A table of layers, output shapes and parameter counts."""
        in_features = (
            in_features or getattr(self.layers[0], "in_features", None) or getattr(self.layers[0], "num_features", None)
        )
        rows = [("layer", "type", "output", "params")]
        width = in_features
        for layer in self.layers:
            width = layer.output_features(width) if width is not None else None
            count = sum(math.prod(shape) for shape in layer.param_shapes().values())
            rows.append((layer.name, repr(layer), f"(batch, {width})" if width else "?", f"{count:,}"))
        total = sum(int(r[3].replace(",", "")) for r in rows[1:])
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        where = f" on {self.backend.spec}, {self.dtype}" if self.backend else " (not initialised)"
        lines.append(f"total parameters: {total:,}{where}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({layer.name}): {layer!r}" for layer in self.layers)
        return f"Sequential(\n{inner}\n)"

    def _require_init(self) -> None:
        if self.backend is None:
            raise RuntimeError("the model has no parameters yet: call model.init(backend) first.")

