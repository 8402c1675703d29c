"""array-api-strict: the standard and nothing else, on its CPU device or an emulated one."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, BackendUnavailableError, tune_host_allocator

DEVICES = {"": "CPU_DEVICE", "cpu": "CPU_DEVICE", "cpu_device": "CPU_DEVICE"}
DEVICES.update({name: name for name in ("device1", "device2", "no_float64")})


class StrictBackend(Backend):
    name = "array-api-strict"
    module = "array_api_strict"

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        # array-api-strict accepts buffers, not NumPy arrays on other devices: go through CPU.
        if dtype is None:
            dtype = np.asarray(host).dtype.name
        cpu = self.xp.asarray(np.asarray(host, order="C"))
        return self.xp.asarray(self.xp.astype(cpu, self.dtype(dtype)), device=self.device, copy=None)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x.to_device(self.xp.Device("CPU_DEVICE")), copy=True)


def create(device: str = "") -> StrictBackend:
    """``device`` is empty/``cpu`` or one of the emulated ``device1``, ``device2``, ``no_float64``."""
    if device not in DEVICES:
        raise ValueError(f"unknown array-api-strict device {device!r}; choose from device1, device2, no_float64.")
    try:
        import array_api_strict as xp
    except ImportError as exc:
        raise BackendUnavailableError(
            "the array-api-strict backend needs array-api-strict: pip install array-api-strict."
        ) from exc
    tune_host_allocator()
    name = DEVICES[device]
    spec = "array-api-strict" if name == "CPU_DEVICE" else f"array-api-strict:{name}"
    return StrictBackend(xp, xp.Device(name), spec)
