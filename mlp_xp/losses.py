"""Losses: ``forward(pred, target) -> scalar array`` (mean over the batch), ``backward() -> dpred``.

``forward`` keeps what the gradient needs in ``cache`` and ``backward`` computes the gradient
from it and empties the cache (evaluation, which never calls ``backward``, pays nothing for
gradients; nothing outlives a step, so a traced step leaks no tracer). ``correct(pred,
target)`` counts right predictions as a device scalar (for accuracy) where the loss defines
one. Nothing here reads values back to the host, except the optional label range check of
``SoftmaxCrossEntropy``.
"""

from __future__ import annotations

import math
from typing import Any

from .arrays import Array, device, isdtype, namespace, size
from .layers.activations import sigmoid


class Loss:
    """Base class: call ``forward`` then ``backward`` (which uses what forward cached)."""

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}

    def forward(self, pred: Array, target: Array) -> Array:
        raise NotImplementedError

    def backward(self) -> Array:
        raise NotImplementedError

    def _saved(self) -> dict[str, Any]:
        """The last forward's cache, handed over once (then emptied)."""
        if not self.cache:
            raise RuntimeError(
                f"{type(self).__name__}: backward() called before forward() (each forward serves one backward)."
            )
        saved, self.cache = self.cache, {}
        return saved

    def __call__(self, pred: Array, target: Array) -> Array:
        return self.forward(pred, target)

    def correct(self, pred: Array, target: Array) -> Array | None:
        """Number of right predictions in the batch, as a device scalar, or None."""
        return None

    def predictions(self, pred_shape: tuple[int, ...]) -> int:
        """How many predictions ``correct`` counts in a batch of predictions of shape
        ``pred_shape`` (the accuracy's denominator, known on the host from the shape): one per
        row of outputs, i.e. per position of the batch dimensions (batch..., outputs)."""
        return math.prod(pred_shape[:-1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy, fused and stable. ``pred`` are logits (batch..., C);
    ``target`` integer labels (batch...) of any integer dtype, or one-hot/probabilities
    (batch..., C) of any dtype (cast to ``pred``'s). Gradient: ``(softmax(pred) - onehot) / n``.

    ``check_labels`` verifies integer labels lie in [0, C); it reads one boolean back from
    the device, so turn it off in GPU loops whose labels were validated already
    (``DeviceLoader`` validates them once).
    """

    def __init__(self, check_labels: bool = True) -> None:
        super().__init__()
        self.check_labels = check_labels

    def forward(self, pred: Array, target: Array) -> Array:
        xp = _namespace(pred, target, "SoftmaxCrossEntropy")
        classes = pred.shape[-1]
        shifted = pred - xp.max(pred, axis=-1, keepdims=True)
        exp = xp.exp(shifted)
        total = xp.sum(exp, axis=-1, keepdims=True)
        n = size(pred) // classes
        if target.ndim == pred.ndim - 1:  # integer labels
            if tuple(target.shape) != tuple(pred.shape[:-1]):
                raise ValueError(
                    f"SoftmaxCrossEntropy: labels of shape {tuple(target.shape)} do not fit logits of shape "
                    f"{tuple(pred.shape)} (expected labels of shape {tuple(pred.shape[:-1])})."
                )
            if not isdtype(xp, target.dtype, "integral"):
                raise ValueError(f"SoftmaxCrossEntropy: class labels must be integers, got dtype {target.dtype}.")
            if target.dtype != xp.int64 and xp.iinfo(target.dtype).max < classes:
                # a narrow dtype (uint8, int8) would wrap the class ids and the range check's bound
                target = xp.astype(target, xp.int64, device=device(target))
            if self.check_labels and bool(xp.any((target < 0) | (target >= classes))):
                raise ValueError(
                    f"SoftmaxCrossEntropy: labels must lie in [0, {classes}) for {classes} logits; "
                    f"got values from {int(xp.min(target))} to {int(xp.max(target))}."
                )
            # this batch's one-hot as a float mask (batch..., C), from one comparison
            class_ids = xp.arange(classes, dtype=target.dtype, device=device(target))
            target = xp.astype(target[..., None] == class_ids, pred.dtype)
        elif tuple(target.shape) != tuple(pred.shape):
            raise ValueError(
                f"SoftmaxCrossEntropy: one-hot targets of shape {tuple(target.shape)} "
                f"do not match logits of shape {tuple(pred.shape)}."
            )
        else:
            target = _as_dtype(xp, target, pred.dtype)
        self.cache = {"exp": exp, "total": total, "target": target, "n": n}
        return xp.sum(target * (xp.log(total) - shifted)) / n

    def backward(self) -> Array:
        saved = self._saved()
        grad = saved["exp"]  # ours to overwrite: the softmax, then the gradient, in place
        grad /= saved["total"]
        grad -= saved["target"]
        grad *= 1.0 / saved["n"]
        return grad

    def correct(self, pred: Array, target: Array) -> Array:
        xp = namespace(pred)
        if target.ndim == pred.ndim:  # one-hot or probabilities
            target = xp.argmax(target, axis=-1)
        return xp.count_nonzero(xp.argmax(pred, axis=-1) == target)


class MSE(Loss):
    """Mean squared error, averaged over every element (as torch and Keras do);
    the gradient is ``2 (pred - target) / size``. Targets of any dtype are cast to ``pred``'s."""

    def forward(self, pred: Array, target: Array) -> Array:
        xp = _namespace(pred, target, "MSE")
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(
                f"MSE: predictions of shape {tuple(pred.shape)} do not match targets of shape {tuple(target.shape)}."
            )
        diff = pred - _as_dtype(xp, target, pred.dtype)
        count = size(pred)
        self.cache = {"diff": diff, "count": count}
        return xp.sum(diff * diff) / count

    def backward(self) -> Array:
        saved = self._saved()
        return saved["diff"] * (2.0 / saved["count"])


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy, mean over the batch. ``pred`` is (batch...) or (batch..., 1);
    ``target`` holds 0/1 (any dtype, same batch shape).

    ``from_logits=True`` (default) takes raw scores and is stable for any magnitude:
    ``max(z,0) - z·t + log(1 + exp(-|z|))``, gradient ``(sigmoid(z) - t)/n``.
    ``from_logits=False`` takes probabilities from a ``Sigmoid`` output layer, clipped to
    ``[eps, 1-eps]``, gradient ``(p - t) / (p(1-p)) / n``.
    """

    def __init__(self, from_logits: bool = True, eps: float = 1e-7) -> None:
        super().__init__()
        self.from_logits = from_logits
        self.eps = eps

    def forward(self, pred: Array, target: Array) -> Array:
        xp = _namespace(pred, target, "BinaryCrossEntropy")
        target = _as_pred_shape(xp, pred, target, "BinaryCrossEntropy")
        n = size(pred)
        if self.from_logits:
            loss = xp.sum(xp.maximum(pred, 0.0) - pred * target + xp.log1p(xp.exp(-xp.abs(pred)))) / n
            self.cache = {"pred": pred, "target": target, "n": n}
        else:
            p = xp.clip(pred, self.eps, 1.0 - self.eps)
            loss = -xp.sum(target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p)) / n
            self.cache = {"pred": p, "target": target, "n": n}
        return loss

    def backward(self) -> Array:
        saved = self._saved()
        p, target, n = saved["pred"], saved["target"], saved["n"]
        if self.from_logits:
            return (sigmoid(p) - target) / n
        return (p - target) / (p * (1.0 - p)) / n

    def correct(self, pred: Array, target: Array) -> Array:
        xp = namespace(pred)
        target = _as_pred_shape(xp, pred, target, "BinaryCrossEntropy")
        threshold = 0.0 if self.from_logits else 0.5
        return xp.count_nonzero((pred > threshold) == (target > 0.5))

    def predictions(self, pred_shape: tuple[int, ...]) -> int:
        """One prediction per output (a multi-output model makes several per sample)."""
        return math.prod(pred_shape)


def _namespace(pred: Array, target: Array, name: str) -> Any:
    """Namespace of ``pred`` after checking that ``target`` is an array of the same library."""
    if type(target) is not type(pred):
        raise TypeError(
            f"{name}: predictions are {type(pred).__module__}.{type(pred).__name__} but targets are "
            f"{type(target).__module__}.{type(target).__name__}; put both on the same backend."
        )
    return namespace(pred)


def _as_pred_shape(xp: Any, pred: Array, target: Array, name: str) -> Array:
    """Targets of shape (batch...) for predictions of shape (batch..., 1), cast to pred's dtype."""
    if tuple(target.shape) != tuple(pred.shape):
        if pred.shape[-1] == 1 and tuple(target.shape) == tuple(pred.shape[:-1]):
            target = xp.expand_dims(target, axis=-1)
        else:
            raise ValueError(
                f"{name}: predictions of shape {tuple(pred.shape)} do not match targets of shape {tuple(target.shape)}."
            )
    return _as_dtype(xp, target, pred.dtype)


def _as_dtype(xp: Any, target: Array, dtype: Any) -> Array:
    """``target`` in ``dtype`` (the predictions'): integer targets would not promote with float
    predictions on strict libraries and would upcast to float64 on NumPy, as would float64
    targets of a float32 model. No operation when it has that dtype already."""
    return target if target.dtype == dtype else xp.astype(target, dtype)
