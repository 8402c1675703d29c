"""The layer protocol: explicit ``forward`` and ``backward``, parameters and gradients in dicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..arrays import Array, device, namespace


@dataclass(frozen=True)
class Skipped:
    """The steps of an epoch that ran before the run resumed: ``steps`` full batches, whose
    input to the layer had ``shape`` and ``dtype`` (the model's)."""

    steps: int
    shape: tuple[int, ...]
    dtype: Any


class Layer:
    """Base class of every layer.

    ``forward(x)`` keeps what ``backward`` needs in ``cache``; ``backward(dy)`` stores the
    parameter gradients in ``grads`` (same keys as ``params``) and returns ``dx``.
    ``Sequential.backward`` empties each cache once used, so that no array outlives its step
    (which matters for memory, and for tracing: a cached tracer would leak). Arrays have the batch
    dimension(s) first and features last. ``params`` is mutable: assigning an array into it
    replaces the parameter. ``buffers`` holds state that is saved but not trained
    (BatchNorm's running statistics). ``decay`` names the parameters weight decay applies to.
    """

    decay: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.cache: dict[str, Array] = {}
        self.training = True
        self.name: str = type(self).__name__.lower()

    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dy: Array) -> Array:
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def saved(self, key: str) -> Array:
        """``cache[key]`` as stored by the last ``forward``; a clear error without one."""
        try:
            return self.cache[key]
        except KeyError:
            raise RuntimeError(
                f"layer {self.name!r}: backward() called before forward() (each forward serves one backward)."
            ) from None

    def init(self, backend: Any, rng: Any, dtype: Any) -> None:
        """Create parameters on ``backend`` in ``dtype``, drawing from the host generator ``rng``."""

    def set_epoch(self, epoch: int, skipped: Skipped | None = None) -> None:
        """Called by ``fit`` as epoch ``epoch`` (0-based) begins (Dropout restarts its masks);
        ``skipped`` describes the steps of it that already ran (a resumed epoch)."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters ``init`` creates (known before ``init``)."""
        return {}

    def output_features(self, in_features: int) -> int:
        """Width of the output for an input of ``in_features`` (most layers keep it)."""
        return in_features

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _check_input(self, x: Array, features: int, reference: Array | None) -> Any:
        """Namespace of ``x`` after checking its width, and its namespace, dtype and device
        against the parameter ``reference``; errors name this layer."""
        if reference is None:
            raise RuntimeError(f"layer {self.name!r} has no parameters yet: call model.init(backend) first.")
        if x.shape[-1] != features:
            raise ValueError(
                f"layer {self.name!r} ({self!r}) expects input of shape (..., {features}), got {tuple(x.shape)}."
            )
        if type(x) is not type(reference):
            raise TypeError(
                f"layer {self.name!r} got a {type(x).__module__}.{type(x).__name__} input but its parameters are "
                f"{type(reference).__module__}.{type(reference).__name__}: move the input to the model's backend."
            )
        if x.dtype != reference.dtype:
            raise TypeError(f"layer {self.name!r} got {x.dtype} input but its parameters are {reference.dtype}.")
        if device(x) != device(reference):
            raise ValueError(
                f"layer {self.name!r} got input on device {device(x)} but its parameters are on {device(reference)}."
            )
        return namespace(x)
