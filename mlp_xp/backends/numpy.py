"""NumPy on the CPU: the reference backend and the host format of every other."""

from __future__ import annotations

from .base import Backend, tune_host_allocator


class NumpyBackend(Backend):
    name = module = "numpy"
    updates_per_parameter = True  # gathering the gradients into one buffer would cost a pass over them


def create() -> NumpyBackend:
    tune_host_allocator()
    import array_api_compat.numpy as xp

    return NumpyBackend(xp, "cpu", "numpy")
