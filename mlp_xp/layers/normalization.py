"""Batch normalisation over the feature axis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..arrays import Array, namespace
from .base import Layer


class BatchNorm(Layer):
    """``y = gamma · (x - mean) / sqrt(var + eps) + beta`` per feature; ``x`` is (batch..., F).

    Training mode uses the batch mean and biased batch variance over all batch dimensions and
    updates ``running_mean`` and the unbiased ``running_var`` with ``momentum`` (torch's
    convention: ``r ← (1 - momentum)·r + momentum·stat``). Eval mode uses the running stats.

    ``sync`` (None by default) makes the batch statistics those of a batch split across
    processes: ``sync(sums, count)`` returns ``sums`` (a per-feature array) and ``count`` summed
    over the processes (``distributed.synchronise_batchnorm`` sets it); the batch means of the
    forward and backward passes are then global sums divided by the global count.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.sync: Callable[[Array, int], tuple[Array, int]] | None = None

    def __repr__(self) -> str:
        """``BatchNorm(F)``, with ``eps`` and ``momentum`` where they differ from the defaults."""
        changed = [("eps", self.eps, 1e-5), ("momentum", self.momentum, 0.1)]
        extra = "".join(f", {name}={float(value)!r}" for name, value, default in changed if value != default)
        return f"BatchNorm({self.num_features}{extra})"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"gamma": (self.num_features,), "beta": (self.num_features,)}

    def init(self, backend: Any, rng: Any, dtype: Any) -> None:
        xp, dt, dev = backend.xp, backend.dtype(dtype), backend.device
        shape = (self.num_features,)
        self.params["gamma"] = xp.ones(shape, dtype=dt, device=dev)
        self.params["beta"] = xp.zeros(shape, dtype=dt, device=dev)
        self.buffers["running_mean"] = xp.zeros(shape, dtype=dt, device=dev)
        self.buffers["running_var"] = xp.ones(shape, dtype=dt, device=dev)

    def forward(self, x: Array) -> Array:
        xp = self._check_input(x, self.num_features, self.params.get("gamma"))
        axes = tuple(range(x.ndim - 1))
        if self.training:
            n = 1
            for size in x.shape[:-1]:
                n *= size
            self.cache["n"] = n
            mean, n_batch = self._batch_mean(xp, x, axes, n)
            if n_batch < 2:
                raise ValueError(f"layer {self.name!r} needs more than one sample per batch in training mode.")
            centred = x - mean
            var, _ = self._batch_mean(xp, centred * centred, axes, n)
            m = self.momentum
            running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
            running_mean *= 1.0 - m
            running_mean += m * mean
            running_var *= 1.0 - m
            running_var += (m * n_batch / (n_batch - 1)) * var
            self.buffers["running_mean"], self.buffers["running_var"] = running_mean, running_var
        else:
            centred = x - self.buffers["running_mean"]
            var = self.buffers["running_var"]
        inv_std = self.cache["inv_std"] = 1.0 / xp.sqrt(var + self.eps)
        xhat = self.cache["xhat"] = centred * inv_std
        return xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy: Array) -> Array:
        xp = namespace(dy)
        xhat, inv_std = self.saved("xhat"), self.saved("inv_std")
        axes = tuple(range(dy.ndim - 1))
        self.grads["gamma"] = xp.sum(dy * xhat, axis=axes)
        self.grads["beta"] = xp.sum(dy, axis=axes)
        dxhat = dy * self.params["gamma"]
        if not self.training:
            return dxhat * inv_std
        # dx = inv_std · (dxhat - mean(dxhat) - xhat · mean(dxhat · xhat)), means over the batch
        if self.sync is None:
            return inv_std * (dxhat - xp.mean(dxhat, axis=axes) - xhat * xp.mean(dxhat * xhat, axis=axes))
        f = self.num_features
        sums, n = self.sync(xp.concat([xp.sum(dxhat, axis=axes), xp.sum(dxhat * xhat, axis=axes)]), self.saved("n"))
        return inv_std * (dxhat - sums[:f] / n - xhat * (sums[f:] / n))

    def _batch_mean(self, xp: Any, values: Array, axes: tuple[int, ...], n: int) -> tuple[Array, int]:
        """The mean over ``axes`` (the batch: ``n`` samples in this process) and the batch
        size; with ``sync``, over the batch of every process."""
        if self.sync is None:
            return xp.mean(values, axis=axes), n
        sums, n = self.sync(xp.sum(values, axis=axes), n)
        return sums / n, n
