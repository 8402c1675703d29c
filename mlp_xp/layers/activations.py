"""Element-wise activations and softmax. Each caches its output (or a mask) for ``backward``.

Masks are applied as ``dy * astype(mask, dtype)``: standard (no bool-float mixing) and, on
NumPy, an order of magnitude faster than ``where`` with a scalar branch.
"""

from __future__ import annotations

from ..arrays import Array, namespace
from .base import Layer


class ReLU(Layer):
    """``y = max(x, 0)``. Training computes it as ``x · mask`` with ``mask = (x > 0)`` in
    ``x``'s dtype, the local derivative, cached for ``dx = dy · mask``: as many operations per
    step as ``maximum`` and a mask from ``y``, and no Python scalar in a function call (which
    array-api-compat's torch wrappers turn into a torch.compile graph break). In eval mode it
    is one ``maximum`` and caches its output ``y`` (a reference, no operation): a backward
    there (input gradients, saliency) builds the mask ``y > 0`` then, so evaluation pays
    nothing for gradients it does not ask for."""

    def forward(self, x: Array) -> Array:
        xp = namespace(x)
        if not self.training:
            self.cache.pop("mask", None)  # a training forward's mask, never backpropagated
            y = self.cache["y"] = xp.maximum(x, 0.0)
            return y
        mask = self.cache["mask"] = xp.astype(x > 0, x.dtype)
        return x * mask

    def backward(self, dy: Array) -> Array:
        mask = self.cache.get("mask")
        if mask is None:  # the forward ran in eval mode
            y = self.saved("y")
            mask = namespace(y).astype(y > 0, y.dtype)
        return dy * mask


class LeakyReLU(Layer):
    """``y = x`` for ``x > 0``, else ``negative_slope · x``."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def __repr__(self) -> str:
        return f"LeakyReLU({self.negative_slope})"

    def forward(self, x: Array) -> Array:
        # slope factor: 1 where x > 0, negative_slope elsewhere; also the local derivative
        factor = namespace(x).astype(x > 0, x.dtype)
        factor *= 1.0 - self.negative_slope
        factor += self.negative_slope
        self.cache["factor"] = factor
        return x * factor

    def backward(self, dy: Array) -> Array:
        return dy * self.saved("factor")


class Sigmoid(Layer):
    """Logistic ``y = 1 / (1 + exp(-x))``, computed without overflow; ``dx = dy · y(1-y)``."""

    def forward(self, x: Array) -> Array:
        y = self.cache["y"] = sigmoid(x)
        return y

    def backward(self, dy: Array) -> Array:
        y = self.saved("y")
        return dy * (y * (1.0 - y))


class Tanh(Layer):
    """``y = tanh(x)``; ``dx = dy · (1 - y²)``."""

    def forward(self, x: Array) -> Array:
        y = self.cache["y"] = namespace(x).tanh(x)
        return y

    def backward(self, dy: Array) -> Array:
        y = self.saved("y")
        return dy * (1.0 - y * y)


class Softmax(Layer):
    """Softmax over the last axis; ``dx = y · (dy - Σ dy·y)``.

    For classification, prefer a linear output with ``SoftmaxCrossEntropy``, which fuses the
    two stably.
    """

    def forward(self, x: Array) -> Array:
        y = self.cache["y"] = softmax(x)
        return y

    def backward(self, dy: Array) -> Array:
        xp = namespace(dy)
        y = self.saved("y")
        return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


def sigmoid(x: Array) -> Array:
    """Logistic function as ``(1 + tanh(x/2)) / 2``: exact, and no overflow for any ``x``."""
    y = namespace(x).tanh(0.5 * x)
    y += 1.0
    y *= 0.5
    return y


def softmax(x: Array) -> Array:
    """Softmax over the last axis, shifted by the row maximum for stability."""
    xp = namespace(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    e /= xp.sum(e, axis=-1, keepdims=True)
    return e
