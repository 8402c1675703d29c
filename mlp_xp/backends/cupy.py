"""CuPy on one CUDA GPU: cuRAND draws, explicit current device, the memory pool."""

from __future__ import annotations

from typing import Any

from .base import Backend, BackendUnavailableError, DeviceRandom

CUDA_INSTALL_HINT = (
    'install CuPy for your CUDA version (pip install "mlp-xp[cuda12]" or "mlp-xp[cuda13]"), '
    "or use --device auto to fall back to the CPU"
)


class CupyRandom(DeviceRandom):
    """cuRAND through ``cupy.random.RandomState`` (its ``Generator`` has no ``permutation``)."""

    def __init__(self, backend: CupyBackend, seed: int) -> None:
        super().__init__(backend, seed)
        self._start(seed)

    def _start(self, seed: int) -> None:
        import cupy

        with self.backend.device:
            self._state = cupy.random.RandomState(seed)

    def _normal(self, shape, dtype):
        with self.backend.device:
            return self._state.standard_normal(shape, dtype=dtype)

    def _uniform(self, shape, dtype):
        with self.backend.device:
            return self._state.random_sample(shape, dtype=dtype)

    def permutation(self, n):
        with self.backend.device:
            return self.backend.xp.astype(self._state.permutation(n), self.backend.xp.int64)


class CupyBackend(Backend):
    name = module = "cupy"

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        # array-api-compat's creation functions ignore device= for CuPy (#293, #337)
        with self.device:
            return super().asarray(host, dtype)

    def to_numpy(self, x: Any):
        return x.get()

    def random(self, seed: int) -> CupyRandom:
        return CupyRandom(self, seed)

    def synchronize(self, *arrays: Any) -> None:
        self.device.synchronize()

    def memory_in_use(self) -> int:
        import cupy

        return int(cupy.get_default_memory_pool().used_bytes())

    @property
    def is_gpu(self) -> bool:
        return True

    def _facts(self) -> dict[str, Any]:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(self.device.id)["name"]
        return {"gpu": name.decode() if isinstance(name, bytes) else name}


def create(index: int = 0) -> CupyBackend:
    """GPU ``index`` through CuPy; a clear error when CuPy, a driver or that GPU is missing."""
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(f"CUDA was requested but CuPy is not installed: {CUDA_INSTALL_HINT}.") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, missing driver libraries, ...
        raise BackendUnavailableError(
            f"CUDA was requested but no usable CUDA device was found ({type(exc).__name__}: {exc}); "
            "check the NVIDIA driver, or use --device auto to fall back to the CPU."
        ) from exc
    if index >= count:
        raise BackendUnavailableError(
            f"CUDA device {index} was requested but this machine has {count} CUDA device(s); "
            "use --device auto to fall back to the CPU."
        )
    import array_api_compat.cupy as xp

    device = cupy.cuda.Device(index)
    # CuPy creates arrays on the *current* device and array-api-compat's creation functions
    # ignore device= for CuPy (array-api-compat #293, #337): make the chosen GPU current.
    device.use()
    return CupyBackend(xp, device, f"cupy:{index}")
