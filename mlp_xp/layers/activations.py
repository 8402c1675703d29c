"""Element-wise activations and softmax. Each caches its output (or input) for ``backward``."""

from __future__ import annotations

from array_api_compat import array_namespace

from ..arrays import Array
from .base import Layer


class ReLU(Layer):
    """``y = max(x, 0)``; ``dx = dy`` where ``y > 0``, else 0."""

    def forward(self, x: Array) -> Array:
        self._y = array_namespace(x).maximum(x, 0.0)
        return self._y

    def backward(self, dy: Array) -> Array:
        return array_namespace(dy).where(self._y > 0, dy, 0.0)


class LeakyReLU(Layer):
    """``y = x`` for ``x > 0``, else ``negative_slope · x``."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def __repr__(self) -> str:
        return f"LeakyReLU({self.negative_slope})"

    def forward(self, x: Array) -> Array:
        self._x = x
        return array_namespace(x).where(x > 0, x, self.negative_slope * x)

    def backward(self, dy: Array) -> Array:
        return array_namespace(dy).where(self._x > 0, dy, self.negative_slope * dy)


class Sigmoid(Layer):
    """Logistic ``y = 1 / (1 + exp(-x))``, computed without overflow; ``dx = dy · y(1-y)``."""

    def forward(self, x: Array) -> Array:
        self._y = sigmoid(x)
        return self._y

    def backward(self, dy: Array) -> Array:
        y = self._y
        return dy * (y * (1.0 - y))


class Tanh(Layer):
    """``y = tanh(x)``; ``dx = dy · (1 - y²)``."""

    def forward(self, x: Array) -> Array:
        self._y = array_namespace(x).tanh(x)
        return self._y

    def backward(self, dy: Array) -> Array:
        y = self._y
        return dy * (1.0 - y * y)


class Softmax(Layer):
    """Softmax over the last axis; ``dx = y · (dy - Σ dy·y)``.

    For classification, prefer a linear output with ``SoftmaxCrossEntropy``, which fuses the
    two stably.
    """

    def forward(self, x: Array) -> Array:
        self._y = softmax(x)
        return self._y

    def backward(self, dy: Array) -> Array:
        xp = array_namespace(dy)
        y = self._y
        return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


def sigmoid(x: Array) -> Array:
    """Numerically stable logistic function (no overflow for large ``|x|``)."""
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(x: Array) -> Array:
    """Softmax over the last axis, shifted by the row maximum for stability."""
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    e /= xp.sum(e, axis=-1, keepdims=True)
    return e
