"""Arrays of other libraries in and out of a backend through DLPack, and ``predict``.

An array of any library that implements ``__dlpack__`` (torch, CuPy, JAX, array-api-strict, ...)
crosses into a backend with the backend's ``from_dlpack``: a view of the same memory where the
backend's library can read it (a torch CPU tensor into NumPy, a torch CUDA tensor into CuPy on the
same GPU), then an explicit ``to_device`` when it landed on another device of that library. Where the
backend cannot read the memory at all (a GPU tensor into NumPy), the producer is asked for a host
copy through the DLPack device request and that is uploaded; if that fails too, one ``ValueError``
names the array, its device and the backend. NumPy arrays and nested sequences are host data and
go through ``Backend.asarray`` as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_array_api_obj, to_device

from .arrays import Array, namespace
from .backends import Backend
from .model import Sequential

DLPACK_CPU = 1
"""``kDLCPU``, the device type of host memory in ``__dlpack_device__()``."""
_DLPACK_FAILURES = (BufferError, RuntimeError, TypeError, ValueError)
"""What ``from_dlpack`` raises, depending on the library, for memory it cannot read."""


def to_backend(x: Any, backend: Backend, dtype: str | None = None) -> Array:
    """``x`` as an array of ``backend`` on its device, in ``dtype`` (default: ``x``'s dtype).

    No copy when ``x`` already is such an array or its memory is readable in place (DLPack);
    a conversion to ``dtype`` copies."""
    xp = backend.xp
    host_data = isinstance(x, np.ndarray) and not _of_namespace(x, xp)
    if host_data or not (is_array_api_obj(x) or hasattr(x, "__dlpack__")):
        return backend.asarray(x, dtype)
    y = _into(x, xp, backend.device, backend.spec, backend.asarray)
    if dtype is not None and y.dtype != backend.dtype(dtype):
        y = xp.astype(y, backend.dtype(dtype))
    return y


def predict(model: Sequential, x: Any) -> Any:
    """``model``'s eval-mode output for a batch ``x`` of shape (N, in_features).

    ``x`` may be an array of any DLPack library (or host data); the result is an array of
    ``x``'s library on ``x``'s device (NumPy for anything else), without copies where DLPack
    allows. Layers are put back in the mode they were in."""
    modes = [layer.training for layer in model.layers]
    model.eval()
    try:
        y = model.forward(to_backend(x, model.backend, model.dtype))
    finally:
        for layer, mode in zip(model.layers, modes):
            layer.training = mode
    if not is_array_api_obj(x):
        return model.backend.to_numpy(y)
    xp, where = array_namespace(x), device(x)
    return _into(y, xp, where, _describe(x), xp.asarray)


def _into(x: Any, xp: Any, where: Any, target: str, upload: Any) -> Array:
    """``x`` as an array of namespace ``xp`` on device ``where``: a DLPack view where ``xp``
    can read ``x``'s memory, else ``upload(host copy)``; then an explicit ``to_device`` when it is
    on another device. ``target`` names the destination in the error."""
    if not _of_namespace(x, xp):
        try:
            x = xp.from_dlpack(x)
        except _DLPACK_FAILURES as exc:
            x = upload(_host_copy(x, target, exc))
    return x if device(x) == where else to_device(x, where)


def _of_namespace(x: Any, xp: Any) -> bool:
    return is_array_api_obj(x) and namespace(x) is xp


def _host_copy(x: Any, target: str, reason: Exception) -> np.ndarray:
    """``x`` on the host: a view where it lives on the CPU, else a copy made by its own library
    at NumPy's DLPack request for the CPU (NumPy 2.1 or newer)."""
    try:
        on_cpu = x.__dlpack_device__()[0] == DLPACK_CPU
        return np.from_dlpack(x) if on_cpu else np.from_dlpack(x, device="cpu")
    except _DLPACK_FAILURES as exc:
        remedy = "detach it first (x.detach())" if getattr(x, "requires_grad", False) else (
            "move it to the CPU or to the backend's device first"
        )  # fmt: skip
        raise ValueError(
            f"cannot move a {_describe(x)} to {target}: its library exports it neither there ({reason}) "
            f"nor to the host ({exc}); {remedy}."
        ) from exc


def _describe(x: Any) -> str:
    """``module.Type on <device>`` for messages; the device as DLPack reports it."""
    try:
        where = device(x)
    except (TypeError, AttributeError):
        where = f"DLPack device {x.__dlpack_device__()}"
    return f"{type(x).__module__}.{type(x).__name__} on {where}"
