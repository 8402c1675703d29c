"""Backends: the seam between the generic code and concrete array libraries.

One module per library (``numpy``, ``cupy``, ``torch``, ``strict``, ``jax``), each a subclass
of ``base.Backend`` overriding only what its library does differently. Nothing else in the
package imports an array library; ``get_backend(spec)`` is the way in.
"""

from __future__ import annotations

import os

from . import cupy, jax, numpy, strict, torch
from .base import (
    Backend,
    BackendUnavailableError,
    CompileUnsupportedError,
    DeviceRandom,
    HostDrawnRandom,
    derived_seed,
    host_rng,
)

__all__ = [
    "SPECS",
    "Backend",
    "BackendUnavailableError",
    "CompileUnsupportedError",
    "DeviceRandom",
    "HostDrawnRandom",
    "derived_seed",
    "get_backend",
    "available_backends",
    "host_rng",
]

SPECS = (
    "auto",
    "cpu",
    "numpy",
    "cuda",
    "cuda:N",
    "cupy",
    "cupy:N",
    "torch",
    "torch:cpu",
    "torch:cuda",
    "torch:cuda:N",
    "jax",
    "jax:cpu",
    "jax:cuda",
    "jax:cuda:N",
    "array-api-strict",
    "array-api-strict:device1",
    "array-api-strict:no_float64",
)


def _cuda_index(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ValueError(f"unknown device {spec!r}: the CUDA device index must be a number (e.g. cuda:0).")
    return int(text)


def get_backend(spec: str | Backend = "auto") -> Backend:
    """Select an array library and device.

    ``spec`` is one of ``SPECS``: ``auto`` (CuPy when a CUDA device is usable, else NumPy),
    ``cpu``/``numpy``, ``cuda``/``cuda:N``/``cupy``/``cupy:N``, ``torch``/``torch:cpu``/
    ``torch:cuda``/``torch:cuda:N``, ``jax``/``jax:cpu``/``jax:cuda``/``jax:cuda:N``,
    ``array-api-strict`` (its CPU device) or ``array-api-strict:DEVICE`` (``device1``,
    ``device2`` are emulated non-CPU devices, ``no_float64`` a float32-only one). The
    environment variable ``MLP_XP_DEVICE`` replaces ``auto``.

    Raises ``BackendUnavailableError`` when the library or device is missing, with the fix in
    the message, and ``ValueError`` for an unknown spec.
    """
    if isinstance(spec, Backend):
        return spec
    spec = spec.strip().lower()
    override = os.environ.get("MLP_XP_DEVICE", "").strip().lower()
    if spec == "auto" and override not in ("", "auto"):
        try:
            return _create(override)
        except (BackendUnavailableError, ValueError) as exc:
            raise type(exc)(f"MLP_XP_DEVICE={override} replaces --device auto: {exc} Unset MLP_XP_DEVICE to let "
                            "auto choose.") from exc  # fmt: skip
    return _create(spec)


def _create(spec: str) -> Backend:
    """The backend of a lower-case ``spec`` (``get_backend`` after the override)."""
    if spec == "auto":
        try:
            return cupy.create(0)
        except BackendUnavailableError:
            return numpy.create()
    if spec in ("cpu", "numpy"):
        return numpy.create()
    head, _, rest = spec.partition(":")
    if head in ("cuda", "cupy"):
        return cupy.create(_cuda_index(rest, spec) if rest else 0)
    if head == "torch":
        return torch.create(rest or "cpu")
    if head == "jax":
        return jax.create(rest or "cpu")
    if head in ("array-api-strict", "array_api_strict", "strict"):
        return strict.create(rest)
    raise ValueError(f"unknown backend/device spec {spec!r}; choose from: {', '.join(SPECS)}.")


def available_backends() -> dict[str, str]:
    """Every spec family this machine can use, mapped to 'ok' or the reason it cannot."""
    found = {}
    for spec in ("numpy", "cuda", "torch", "torch:cuda", "jax", "jax:cuda", "array-api-strict"):
        try:
            get_backend(spec)
            found[spec] = "ok"
        except (BackendUnavailableError, ValueError) as exc:
            found[spec] = str(exc)
    return found
