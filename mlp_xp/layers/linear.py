"""Fully connected layer."""

from __future__ import annotations

from typing import Any

from ..arrays import Array, namespace
from ..init import Initializer, get_initializer
from .base import Layer


class Linear(Layer):
    """``y = x @ weight + bias`` with ``weight`` of shape (in, out) and ``bias`` of shape (out,).

    ``x`` is (batch..., in), ``y`` is (batch..., out). Backward over the whole batch:
    ``dW = xᵀ·dy``, ``db = Σ dy``, ``dx = dy·Wᵀ``. ``input_grad = False`` skips ``dx``
    (``Sequential`` sets it for its first layer, whose input needs no gradient).
    """

    decay = ("weight",)

    def __init__(self, in_features: int, out_features: int, init: str | Initializer = "he", **init_kwargs: Any):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear needs positive sizes, got in_features={in_features}, out_features={out_features}."
            )
        self.in_features = in_features
        self.out_features = out_features
        self.initializer = get_initializer(init, **init_kwargs)
        self.input_grad = True

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"

    def init(self, backend: Any, rng: Any, dtype: Any) -> None:
        weight = self.initializer(rng, self.in_features, self.out_features)
        self.params["weight"] = backend.asarray(weight, dtype)
        self.params["bias"] = backend.xp.zeros((self.out_features,), dtype=backend.dtype(dtype), device=backend.device)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.in_features, self.out_features), "bias": (self.out_features,)}

    def output_features(self, in_features: int) -> int:
        return self.out_features

    def forward(self, x: Array) -> Array:
        weight = self.params.get("weight")
        self._check_input(x, self.in_features, weight)
        if x.ndim < 2:
            raise ValueError(f"layer {self.name!r} needs a batch dimension; got input of shape {tuple(x.shape)}.")
        self.cache["x"] = x
        y = x @ weight
        y += self.params["bias"]
        return y

    def backward(self, dy: Array) -> Array | None:
        x, weight = self.saved("x"), self.params["weight"]
        xp = namespace(dy)
        x2, dy2 = x, dy
        if x.ndim > 2:  # fold extra leading batch dimensions into one
            x2 = xp.reshape(x, (-1, self.in_features))
            dy2 = xp.reshape(dy, (-1, self.out_features))
        self.grads["weight"] = x2.T @ dy2
        self.grads["bias"] = xp.sum(dy2, axis=0)
        if not self.input_grad:
            return None
        return dy @ weight.T
