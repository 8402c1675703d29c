"""Tiny helpers shared by the namespace-generic modules."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as compat_device

Array = Any
"""Any array of a library that follows the Array API standard."""


def size(a: Array) -> int:
    """Number of elements (``a.size`` is None for some lazy libraries)."""
    return math.prod(a.shape)


_NAMESPACES: dict[type, Any] = {}


def namespace(x: Array) -> Any:
    """``array_namespace(x)`` for one array, cached by array type (the hot-path variant)."""
    try:
        return _NAMESPACES[type(x)]
    except KeyError:
        return _NAMESPACES.setdefault(type(x), array_namespace(x))


def register_namespace(array_type: type, xp: Any) -> None:
    """Make ``namespace`` answer ``xp`` for arrays of ``array_type``: a backend whose namespace
    is a faster drop-in for the compat one registers it when imported."""
    _NAMESPACES[array_type] = xp


def moved(arrays: dict[str, Array], source: Any, target: Any, dtype: str) -> dict[str, Array]:
    """``arrays`` of backend ``source`` as arrays of backend ``target`` in ``dtype``, copied
    through the host (what ``Sequential.to`` and an optimizer following it do)."""
    return {k: target.asarray(source.to_numpy(v), dtype) for k, v in arrays.items()}


def device(x: Array) -> Any:
    """The device of ``x``: its standard ``device`` attribute, read directly (the hot-path
    variant of ``array_api_compat.device``, which first asks which library ``x`` is from);
    the compat helper where the attribute is missing or not a plain value (JAX tracers)."""
    found = getattr(x, "device", None)
    return compat_device(x) if found is None or callable(found) else found


_KINDS: dict[tuple[int, Any, str], bool] = {}


def isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, remembered per namespace, dtype and kind (NumPy's is a
    Python function that costs microseconds, and losses ask on every call)."""
    key = (id(xp), dtype, kind)
    try:
        return _KINDS[key]
    except KeyError:
        return _KINDS.setdefault(key, bool(xp.isdtype(dtype, kind)))
