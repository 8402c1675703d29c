"""JAX on the CPU or one CUDA GPU: explicit PRNG keys, ``jax.jit`` as the compiler.

JAX arrays are immutable; the generic code writes through rebinding (``x += y`` rebinds
where a library has no in-place operators) and ``arrays.set_item``. 64-bit types are switched
on when the backend is created, so that float64 (gradient checks) and int64 labels are what
they say (JAX would otherwise turn them silently into 32-bit types); every array the package
creates still names its dtype, so float32 stays the default. Matrix products run at full
precision (``jax_default_matmul_precision="highest"``, unless the user set it): on GPUs JAX's
default is TF32, about 1e-3 relative error in float32, where torch and CuPy compute in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Backend, BackendUnavailableError, DeviceRandom


class JaxRandom(DeviceRandom):
    """A ``jax.random`` key, split for every draw. The key is the generator's whole state:
    a compiled step takes it in and hands the advanced key back (``state``/``set_state``)."""

    def __init__(self, backend: JaxBackend, seed: int) -> None:
        super().__init__(backend, seed)
        import jax

        self._random = jax.random
        self._start(seed)

    def _start(self, seed: int) -> None:
        import jax

        with jax.default_device(self.backend.device):  # made there, not on JAX's default device
            self.key = self._random.PRNGKey(seed)

    def _next(self):
        self.key, sub = self._random.split(self.key)
        return sub

    def _normal(self, shape, dtype):
        return self._random.normal(self._next(), shape, dtype=dtype)

    def _uniform(self, shape, dtype):
        return self._random.uniform(self._next(), shape, dtype=dtype)

    def permutation(self, n):
        return self.backend.xp.astype(self._random.permutation(self._next(), n), self.backend.xp.int64)

    @property
    def state(self) -> Any:
        return self.key

    def set_state(self, key: Any) -> None:
        self.key = key


class JaxBackend(Backend):
    name = module = "jax"

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        import jax

        host = np.asarray(host)
        dtype = host.dtype.name if dtype is None else dtype
        return jax.device_put(host.astype(self.dtype(dtype), copy=False), self.device)  # straight to the device

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x, copy=True)

    def random(self, seed: int) -> JaxRandom:
        return JaxRandom(self, seed)

    def synchronize(self, *arrays: Any) -> None:
        """Wait for ``arrays`` (JAX has no device-wide barrier; pass what was computed)."""
        import jax

        jax.block_until_ready(arrays)

    def memory_in_use(self) -> int | None:
        stats = self.device.memory_stats() if self.is_gpu else None
        return int(stats["bytes_in_use"]) if stats else None

    @property
    def is_gpu(self) -> bool:
        return self.device.platform == "gpu"

    @property
    def compiles(self) -> bool:
        return True

    def compile_step(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        import jax

        return jax.jit(fn)

    @property
    def scans(self) -> bool:
        return True

    def scan(self, body: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any) -> tuple[Any, Any]:
        import jax

        return jax.lax.scan(body, carry, xs)

    def _facts(self) -> dict[str, Any]:
        return {"gpu": self.device.device_kind} if self.is_gpu else {}


def create(device: str = "cpu") -> JaxBackend:
    """``device`` is ``cpu``, ``cuda`` or ``cuda:N``."""
    try:
        import jax
    except ImportError as exc:
        raise BackendUnavailableError('the jax backend needs JAX: pip install "mlp-xp[jax]".') from exc
    jax.config.update("jax_enable_x64", True)
    if jax.config.jax_default_matmul_precision is None:  # unless the user chose one
        jax.config.update("jax_default_matmul_precision", "highest")
    platform, _, index = device.partition(":")
    if platform not in ("cpu", "cuda", "gpu"):
        raise ValueError(f"unknown jax device {device!r}; choose from cpu, cuda, cuda:N.")
    if index and not index.isdigit():
        raise ValueError(f"unknown jax device {device!r}: the device index must be a number (e.g. jax:cuda:0).")
    try:
        devices = jax.devices("cpu" if platform == "cpu" else "gpu")
    except RuntimeError as exc:
        raise BackendUnavailableError(
            f"jax:{device} was requested but JAX sees no such device ({exc}); install "
            '"mlp-xp[jax-cuda12]" or "[jax-cuda13]" on a GPU machine, or use --device jax for the CPU.'
        ) from exc
    number = int(index or 0)
    if number >= len(devices):
        raise BackendUnavailableError(f"jax:{device} was requested but JAX sees {len(devices)} such device(s).")
    import jax.numpy as xp

    spec = "jax" if platform == "cpu" else f"jax:cuda:{number}"
    return JaxBackend(xp, devices[number], spec)
