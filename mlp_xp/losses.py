"""Losses: ``forward(pred, target) -> scalar array`` (mean over the batch), ``backward() -> dpred``.

``correct(pred, target)`` counts right predictions as a device scalar (for accuracy) where
the loss defines one. Nothing here reads values back to the host, except the optional label
range check of ``SoftmaxCrossEntropy``.
"""

from __future__ import annotations

from array_api_compat import array_namespace, device

from .layers.activations import sigmoid
from .arrays import Array, size


class Loss:
    """Base class: call ``forward`` then ``backward`` (which uses what forward cached)."""

    def forward(self, pred: Array, target: Array) -> Array:
        raise NotImplementedError

    def backward(self) -> Array:
        raise NotImplementedError

    def __call__(self, pred: Array, target: Array) -> Array:
        return self.forward(pred, target)

    def correct(self, pred: Array, target: Array) -> Array | None:
        """Number of right predictions in the batch, as a device scalar, or None."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy, fused and stable. ``pred`` are logits (batch..., C);
    ``target`` integer labels (batch...) or one-hot/probabilities (batch..., C).
    Gradient: ``(softmax(pred) - onehot) / n``.

    ``check_labels`` verifies integer labels lie in [0, C); it reads one boolean back from
    the device, so turn it off in GPU loops whose labels were validated already
    (``DeviceLoader`` validates them once).
    """

    def __init__(self, check_labels: bool = True) -> None:
        self.check_labels = check_labels

    def forward(self, pred: Array, target: Array) -> Array:
        xp = array_namespace(pred, target)
        classes = pred.shape[-1]
        shifted = pred - xp.max(pred, axis=-1, keepdims=True)
        exp = xp.exp(shifted)
        total = xp.sum(exp, axis=-1, keepdims=True)
        n = _batch_count(pred)
        if xp.isdtype(target.dtype, "integral"):
            if tuple(target.shape) != tuple(pred.shape[:-1]):
                raise ValueError(
                    f"SoftmaxCrossEntropy: labels of shape {tuple(target.shape)} do not match logits of shape "
                    f"{tuple(pred.shape)} (expected labels of shape {tuple(pred.shape[:-1])})."
                )
            if self.check_labels and bool(xp.any((target < 0) | (target >= classes))):
                raise ValueError(
                    f"SoftmaxCrossEntropy: labels must lie in [0, {classes}) for {classes} logits; "
                    f"got values from {int(xp.min(target))} to {int(xp.max(target))}."
                )
            picked = xp.take_along_axis(shifted, xp.expand_dims(target, axis=-1), axis=-1)
            loss = xp.sum(xp.log(total) - picked) / n
            # softmax - onehot without materialising the one-hot: subtract 1 at the label
            hit = xp.expand_dims(target, axis=-1) == xp.arange(classes, dtype=target.dtype, device=device(target))
            self._grad = xp.where(hit, exp / total - 1.0, exp / total)
        else:
            if tuple(target.shape) != tuple(pred.shape):
                raise ValueError(
                    f"SoftmaxCrossEntropy: one-hot targets of shape {tuple(target.shape)} do not match logits of shape {tuple(pred.shape)}."
                )
            loss = xp.sum(target * (xp.log(total) - shifted)) / n
            self._grad = exp / total - target
        self._grad /= n
        return loss

    def backward(self) -> Array:
        return self._grad

    def correct(self, pred: Array, target: Array) -> Array:
        xp = array_namespace(pred, target)
        if not xp.isdtype(target.dtype, "integral"):
            target = xp.argmax(target, axis=-1)
        return xp.sum(xp.astype(xp.argmax(pred, axis=-1) == target, xp.int32))


class MSE(Loss):
    """Mean squared error, averaged over every element (as torch and Keras do);
    the gradient is ``2 (pred - target) / size``."""

    def forward(self, pred: Array, target: Array) -> Array:
        xp = array_namespace(pred, target)
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"MSE: predictions of shape {tuple(pred.shape)} do not match targets of shape {tuple(target.shape)}.")
        diff = pred - target
        size = size(pred)
        self._grad = diff * (2.0 / size)
        return xp.sum(diff * diff) / size

    def backward(self) -> Array:
        return self._grad


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy, mean over the batch. ``pred`` is (batch...) or (batch..., 1);
    ``target`` holds 0/1 (any dtype, same batch shape).

    ``from_logits=True`` (default) takes raw scores and is stable for any magnitude:
    ``max(z,0) - z·t + log(1 + exp(-|z|))``, gradient ``(sigmoid(z) - t)/n``.
    ``from_logits=False`` takes probabilities from a ``Sigmoid`` output layer, clipped to
    ``[eps, 1-eps]``, gradient ``(p - t) / (p(1-p)) / n``.
    """

    def __init__(self, from_logits: bool = True, eps: float = 1e-7) -> None:
        self.from_logits = from_logits
        self.eps = eps

    def forward(self, pred: Array, target: Array) -> Array:
        xp = array_namespace(pred, target)
        target = _as_pred_shape(xp, pred, target, "BinaryCrossEntropy")
        n = size(pred)
        if self.from_logits:
            loss = xp.sum(xp.maximum(pred, 0.0) - pred * target + xp.log1p(xp.exp(-xp.abs(pred)))) / n
            self._grad = (sigmoid(pred) - target) / n
        else:
            p = xp.clip(pred, self.eps, 1.0 - self.eps)
            loss = -xp.sum(target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p)) / n
            self._grad = (p - target) / (p * (1.0 - p)) / n
        return loss

    def backward(self) -> Array:
        return self._grad

    def correct(self, pred: Array, target: Array) -> Array:
        xp = array_namespace(pred, target)
        target = _as_pred_shape(xp, pred, target, "BinaryCrossEntropy")
        threshold = 0.0 if self.from_logits else 0.5
        return xp.sum(xp.astype((pred > threshold) == (target > 0.5), xp.int32))


def _as_pred_shape(xp, pred: Array, target: Array, name: str) -> Array:
    """Targets of shape (batch...) for predictions of shape (batch..., 1), cast to pred's dtype."""
    if tuple(target.shape) != tuple(pred.shape):
        if pred.shape[-1] == 1 and tuple(target.shape) == tuple(pred.shape[:-1]):
            target = xp.expand_dims(target, axis=-1)
        else:
            raise ValueError(f"{name}: predictions of shape {tuple(pred.shape)} do not match targets of shape {tuple(target.shape)}.")
    return xp.astype(target, pred.dtype)


def _batch_count(pred: Array) -> int:
    return size(pred) // pred.shape[-1]

