"""NumPy on the CPU: the reference backend and the host format of every other.

Its namespace, ``xp``, is ``array_api_compat.numpy`` with the functions a training step calls
(``sum``, ``max``, ``min``, ``argmax``, ``take``, ``astype``, ``eye``, ``arange``) bound straight to
NumPy's ufunc reductions and array methods: the same results, without the Python dispatch of ``np.sum``
and friends or compat's wrappers (1 to 2 µs a call, several calls a step, where a 784-100-10
step takes about 400 µs). Row maxima of a matrix (``max`` over its last axis, the softmax's shift)
are picked at each row's ``argmax``, which NumPy vectorises along a row where it does not
vectorise ``maximum.reduce``. ``xp`` is registered as the namespace of ``np.ndarray``
(``arrays.namespace``), so layers and losses use it too.
"""

from __future__ import annotations

import types
from typing import Any

import array_api_compat.numpy as compat_numpy
import numpy as np

from ..arrays import register_namespace
from .base import Backend, tune_host_allocator


def _sum(x: np.ndarray, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> np.ndarray:
    return np.add.reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


_ROWS_FOR_GATHER = 16  # row maxima of fewer rows: one reduce call costs less than argmax, arange and a gather


def _max(x: np.ndarray, /, *, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    if axis in (1, -1) and x.ndim == 2 and x.shape[0] >= _ROWS_FOR_GATHER and x.shape[1] and x.dtype.kind == "f":
        # each row's maximum picked at its argmax: NumPy's argmax is vectorised along a row and
        # maximum.reduce is not (64×10: 3.3 µs against 6.1; 1024×10: 23 against 80)
        top = x[np.arange(x.shape[0]), x.argmax(axis=1)]
        return top[:, None] if keepdims else top
    return np.maximum.reduce(x, axis=axis, keepdims=keepdims)


def _min(x: np.ndarray, /, *, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    return np.minimum.reduce(x, axis=axis, keepdims=keepdims)


def _argmax(x: np.ndarray, /, *, axis: int | None = None, keepdims: bool = False) -> np.ndarray:
    return x.argmax(axis=axis, keepdims=keepdims)


def _take(x: np.ndarray, indices: np.ndarray, /, *, axis: int | None = None) -> np.ndarray:
    return x.take(indices, axis=axis)


def _astype(x: np.ndarray, dtype: Any, /, *, copy: bool = True, device: Any = None) -> np.ndarray:
    _check_device(device)
    return x.astype(dtype, copy=copy)


def _arange(
    start: float, /, stop: float | None = None, step: float = 1, *, dtype: Any = None, device: Any = None
) -> np.ndarray:
    _check_device(device)
    return np.arange(start, stop, step, dtype=dtype)


def _eye(n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None, device: Any = None) -> np.ndarray:
    _check_device(device)
    return np.eye(n_rows, n_cols, k=k, dtype=dtype)


def _check_device(device: Any) -> None:
    if device not in (None, "cpu"):
        raise ValueError(f"Unsupported device for NumPy: {device!r}")


xp = types.ModuleType(compat_numpy.__name__, compat_numpy.__doc__)
xp.__dict__.update(vars(compat_numpy))
xp.sum, xp.max, xp.min, xp.argmax = _sum, _max, _min, _argmax
xp.take, xp.astype, xp.eye, xp.arange = _take, _astype, _eye, _arange
register_namespace(np.ndarray, xp)


class NumpyBackend(Backend):
    name = module = "numpy"
    updates_per_parameter = True  # gathering the gradients into one buffer would cost a pass over them


def create() -> NumpyBackend:
    tune_host_allocator()
    return NumpyBackend(xp, "cpu", "numpy")
