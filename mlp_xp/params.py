"""``FlatParameters``: every trainable parameter of a model in one 1-D buffer.

Parameters are laid out in layer order, each flattened row-major; the layers hold views into
the buffer (``reshape(data[start:stop], shape)``), so an optimizer updates all of them with a
few whole-buffer operations, and a distributed run reduces one contiguous gradient buffer per
step. Gradients are gathered into a buffer of the same layout with one ``concat``.

Where arrays are immutable (JAX) or a view cannot alias (the update returned a new array),
``install`` rebinds the layers' views to the new buffer: the one place parameters are written.
A parameter assigned from outside (``layer.params[key] = array``) is noticed by ``sync`` (an
identity check per parameter, no device work) and copied into the buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .arrays import Array, device, namespace, size


@dataclass(frozen=True)
class Slot:
    """Where one parameter lives in the buffer: ``data[start:stop]`` reshaped to ``shape``."""

    name: str
    layer: Any
    key: str
    start: int
    stop: int
    shape: tuple[int, ...]
    decays: bool


class FlatParameters:
    """The parameters of ``layers`` (initialised) gathered into ``data``, a 1-D array on their
    device and in their dtype; the layers' ``params`` become views of it."""

    def __init__(self, layers: list[Any]) -> None:
        self.slots: list[Slot] = []
        start = 0
        for layer in layers:
            for key, value in layer.params.items():
                stop = start + size(value)
                name = f"{layer.name}.{key}"
                self.slots.append(Slot(name, layer, key, start, stop, tuple(value.shape), key in layer.decay))
                start = stop
        self.size = start
        self._views: list[Array] = []
        self.data = self.join({slot.name: slot.layer.params[slot.key] for slot in self.slots})
        self._bind()

    def __iter__(self) -> Iterator[Slot]:
        return iter(self.slots)

    def join(self, arrays: dict[str, Array]) -> Array:
        """One flat array from per-parameter arrays named ``"<layer>.<key>"`` (this layout)."""
        missing = [slot.name for slot in self.slots if slot.name not in arrays]
        if missing:
            raise ValueError(f"no array for parameter(s) {', '.join(missing)}.")
        first = arrays[self.slots[0].name]
        xp = namespace(first)
        return xp.concat([xp.reshape(arrays[slot.name], (-1,)) for slot in self.slots])

    def split(self, flat: Array) -> dict[str, Array]:
        """Per-parameter views (by ``"<layer>.<key>"``) of a flat array in this layout."""
        xp = namespace(flat)
        return {slot.name: xp.reshape(flat[slot.start : slot.stop], slot.shape) for slot in self.slots}

    def arrays(self) -> dict[str, Array]:
        """The parameters the layers hold now, by ``"<layer>.<key>"``."""
        return {slot.name: slot.layer.params[slot.key] for slot in self.slots}

    def bind(self, arrays: dict[str, Array]) -> None:
        """Give the layers ``arrays`` (by ``"<layer>.<key>"``) as their parameters and leave
        the buffer as it is: a compiled scan carries per-parameter arrays this way (``restore``
        undoes it)."""
        for slot in self.slots:
            slot.layer.params[slot.key] = arrays[slot.name]

    def gradient(self, slot: Slot) -> Array:
        """The gradient ``model.backward`` stored for ``slot``'s parameter (the layer's own array)."""
        grad = slot.layer.grads.get(slot.key)
        if grad is None:
            raise RuntimeError(f"no gradient for {slot.name}: call model.backward() before optimizer.step().")
        return grad

    def gradients(self) -> dict[str, Array]:
        """The layers' gradients by ``"<layer>.<key>"``."""
        return {slot.name: self.gradient(slot) for slot in self.slots}

    def grads(self) -> Array:
        """The layers' gradients gathered into one flat array (one ``concat``)."""
        return self.join(self.gradients())

    def decay_mask(self) -> Array:
        """1 for the entries of parameters that weight decay applies to (layers' ``decay``), else 0."""
        xp = namespace(self.data)
        parts = [
            (xp.ones if slot.decays else xp.zeros)((slot.stop - slot.start,), dtype=self.data.dtype, device=self.device)
            for slot in self.slots
        ]
        return xp.concat(parts)

    @property
    def device(self) -> Any:
        return device(self.data)

    def sync(self) -> None:
        """Copy parameters assigned since the last bind into the buffer (no device work when
        none was: an identity check per parameter). An assigned array must keep its
        parameter's shape, and all parameters one dtype (``model.to`` changes them together);
        else ``ValueError`` naming the parameter."""
        assigned = [slot for slot, view in zip(self.slots, self._views) if slot.layer.params[slot.key] is not view]
        if not assigned:
            return
        arrays = self.arrays()
        dtypes = [array.dtype for array in arrays.values()]
        for slot in assigned:
            value = arrays[slot.name]
            if tuple(value.shape) != slot.shape or dtypes.count(value.dtype) != len(dtypes):
                raise ValueError(
                    f"parameter {slot.name} was assigned an array of shape {tuple(value.shape)} and dtype "
                    f"{value.dtype}; it must keep shape {slot.shape} and the dtype of the other parameters."
                )
        self.data = self.join(arrays)
        self._bind()

    def install(self, data: Array) -> None:
        """Make ``data`` the buffer. The same array updated in place needs nothing; a new
        array (immutable libraries, or any out-of-place update) is bound to the layers."""
        if data is not self.data:
            self.data = data
            self._bind()

    def snapshot(self) -> tuple[Array, list[Array]]:
        """The buffer and the views the layers hold, to ``restore`` later as they are (no
        array operation: inside a trace, even slicing a concrete array makes a tracer)."""
        return self.data, list(self._views)

    def restore(self, snapshot: tuple[Array, list[Array]]) -> None:
        self.data, views = snapshot
        self._views = list(views)
        for slot, view in zip(self.slots, views):
            slot.layer.params[slot.key] = view

    def _bind(self) -> None:
        self._views = []
        for slot, view in zip(self.slots, self.split(self.data).values()):
            slot.layer.params[slot.key] = view
            self._views.append(view)
