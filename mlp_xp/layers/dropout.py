"""Inverted dropout."""

from __future__ import annotations

from typing import Any

from ..arrays import Array
from .base import Layer, Skipped


class Dropout(Layer):
    """Zero each activation with probability ``p`` and scale the rest by ``1/(1-p)`` in
    training mode; identity in eval mode. Masks are drawn on the device by ``rng``
    (a ``DeviceRandom``, set by ``init``; assign another to control the masks), restarted
    by ``set_epoch`` at a stream of its seed and the epoch, and moved past the masks of the
    steps that ran where a run resumes inside an epoch."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}.")
        self.p = p
        self.rng: Any = None

    def __repr__(self) -> str:
        return f"Dropout({self.p})"

    def init(self, backend: Any, rng: Any, dtype: Any) -> None:
        self.rng = backend.random(int(rng.integers(2**31)))

    def set_epoch(self, epoch: int, skipped: Skipped | None = None) -> None:
        if self.rng is None:
            return
        self.rng.restart(epoch)
        if skipped is not None and self.p:
            self.rng.skip(skipped.shape, skipped.dtype, skipped.steps)

    def forward(self, x: Array) -> Array:
        if not self.training or self.p == 0.0:
            self.cache.pop("mask", None)
            return x
        if self.rng is None:
            raise RuntimeError(f"layer {self.name!r} has no random generator yet: call model.init(backend) first.")
        mask = self.rng.bernoulli_mask(tuple(x.shape), 1.0 - self.p, x.dtype)
        mask *= 1.0 / (1.0 - self.p)
        self.cache["mask"] = mask
        return x * mask

    def backward(self, dy: Array) -> Array:
        mask = self.cache.get("mask")
        return dy if mask is None else dy * mask
