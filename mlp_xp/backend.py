"""Backends: the one module that knows concrete array libraries.

Everything else in mlp_xp is written against the Python Array API standard and gets its
namespace from its input arrays. What the standard lacks lives here, behind a small surface:

``get_backend(spec)``
    Choose a library and a device from a spec string (see ``SPECS``).
``Backend.xp`` / ``.device`` / ``.name`` / ``.spec``
    The array-api-compat namespace, the device arrays are created on, the library name, and a
    spec string that ``get_backend`` turns back into the same backend.
``Backend.asarray(host, dtype)`` / ``Backend.to_numpy(x)``
    The way onto the device and the one way back to the host (NumPy is the host format).
``Backend.random(seed)``
    A seeded generator that creates arrays directly on the device (normal, uniform,
    permutation, Bernoulli masks).
``host_rng(seed)``
    A seeded host generator, for draws that must be identical on every backend (initial
    weights, per-epoch permutations).
``Backend.synchronize()`` / ``Backend.memory_in_use()`` / ``Backend.describe()``
    Wait for queued device work, device memory held by the library's pool, and versions,
    devices and BLAS threads for reports.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "SPECS",
    "Backend",
    "BackendUnavailableError",
    "DeviceRandom",
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
    "array-api-strict",
    "array-api-strict:device1",
    "array-api-strict:no_float64",
)

CUDA_INSTALL_HINT = (
    'install CuPy for your CUDA version (pip install "mlp-xp[cuda12]" or "mlp-xp[cuda13]"), '
    "or use --device auto to fall back to the CPU"
)


class BackendUnavailableError(RuntimeError):
    """The requested library or device cannot be used on this machine."""


def host_rng(seed: int | tuple[int, ...]) -> np.random.Generator:
    """Seeded host generator: the same draws on every backend (initial weights, permutations)."""
    return np.random.default_rng(seed)


class DeviceRandom:
    """Seeded random arrays created on a backend's device.

    Subclasses implement ``_normal``, ``_uniform`` and ``permutation``; shapes are tuples,
    dtypes are names (``"float32"``) or namespace dtypes.
    """

    def __init__(self, backend: Backend, seed: int) -> None:
        self.backend = backend
        self.seed = seed

    def normal(self, shape: tuple[int, ...], dtype: Any = "float32") -> Any:
        """Standard normal draws of ``shape``."""
        return self._normal(tuple(shape), self.backend.dtype(dtype))

    def uniform(self, shape: tuple[int, ...], dtype: Any = "float32") -> Any:
        """Uniform draws in [0, 1) of ``shape``."""
        return self._uniform(tuple(shape), self.backend.dtype(dtype))

    def bernoulli_mask(self, shape: tuple[int, ...], keep_prob: float, dtype: Any = "float32") -> Any:
        """Array of ``shape`` holding 1 with probability ``keep_prob`` and 0 otherwise."""
        dtype = self.backend.dtype(dtype)
        return self.backend.xp.astype(self._uniform(tuple(shape), dtype) < keep_prob, dtype)

    def permutation(self, n: int) -> Any:
        """A random permutation of ``range(n)`` as an int64 device array."""
        raise NotImplementedError

    def _normal(self, shape: tuple[int, ...], dtype: Any) -> Any:
        raise NotImplementedError

    def _uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        raise NotImplementedError


class HostDrawnRandom(DeviceRandom):
    """Draws with NumPy on the host and uploads: exact for NumPy (no copy), and the only
    option for array-api-strict, which has no random module. The same seed gives the same
    arrays on every backend, which tests use to make dropout masks equal across libraries."""

    def __init__(self, backend: Backend, seed: int) -> None:
        super().__init__(backend, seed)
        self._rng = np.random.default_rng(seed)

    def _normal(self, shape, dtype):
        return self.backend.asarray(self._rng.standard_normal(shape, dtype=np.float32), dtype)

    def _uniform(self, shape, dtype):
        return self.backend.asarray(self._rng.random(shape, dtype=np.float32), dtype)

    def permutation(self, n):
        return self.backend.asarray(self._rng.permutation(n), "int64")


class _CupyRandom(DeviceRandom):
    """cuRAND through ``cupy.random.RandomState`` (its ``Generator`` has no ``permutation``)."""

    def __init__(self, backend: Backend, seed: int) -> None:
        super().__init__(backend, seed)
        import cupy

        with backend.device:
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


class _TorchRandom(DeviceRandom):
    def __init__(self, backend: Backend, seed: int) -> None:
        super().__init__(backend, seed)
        import torch

        self._torch = torch
        self._gen = torch.Generator(device=backend.device).manual_seed(seed)

    def _normal(self, shape, dtype):
        return self._torch.randn(shape, generator=self._gen, device=self.backend.device, dtype=dtype)

    def _uniform(self, shape, dtype):
        return self._torch.rand(shape, generator=self._gen, device=self.backend.device, dtype=dtype)

    def permutation(self, n):
        return self._torch.randperm(n, generator=self._gen, device=self.backend.device)


@dataclass(frozen=True, eq=False)
class Backend:
    """An array library and a device. Create with :func:`get_backend`.

    ``xp`` is the array-api-compat namespace; ``device`` is the library's device object.
    """

    name: str
    xp: Any
    device: Any
    spec: str

    def __repr__(self) -> str:
        return f"Backend({self.spec!r}, device={self.device!r})"

    def dtype(self, dtype: Any) -> Any:
        """The namespace dtype for a name such as ``"float32"`` (dtypes pass through)."""
        return getattr(self.xp, dtype) if isinstance(dtype, str) else dtype

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        """Upload a host (NumPy) array or nested sequence to this backend's device.

        ``dtype`` defaults to the host array's dtype; a copy is made only where needed.
        """
        if dtype is None:
            dtype = np.asarray(host).dtype.name
        dtype = self.dtype(dtype)
        if self.name == "cupy":
            with self.device:
                return self.xp.asarray(host, dtype=dtype)
        if self.name == "array-api-strict":
            # array-api-strict accepts buffers, not NumPy arrays on other devices: go through CPU.
            cpu = self.xp.asarray(np.asarray(host, order="C"))
            return self.xp.asarray(self.xp.astype(cpu, dtype), device=self.device, copy=None)
        return self.xp.asarray(host, dtype=dtype, device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy a device array to a new host NumPy array (the only way back to the host;
        never a view of the device array, also on the CPU)."""
        if self.name == "cupy":
            return x.get()
        if self.name == "torch":
            return x.detach().cpu().numpy().copy()
        if self.name == "array-api-strict":
            return np.array(x.to_device(self.xp.Device("CPU_DEVICE")), copy=True)
        return np.array(x, copy=True)

    def random(self, seed: int) -> DeviceRandom:
        """A seeded generator that creates arrays on this backend's device."""
        if self.name == "cupy":
            return _CupyRandom(self, seed)
        if self.name == "torch":
            return _TorchRandom(self, seed)
        return HostDrawnRandom(self, seed)

    def synchronize(self) -> None:
        """Block until all queued work on the device has finished (no-op on the CPU)."""
        if self.name == "cupy":
            self.device.synchronize()
        elif self.name == "torch" and self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def memory_in_use(self) -> int | None:
        """Bytes of device memory held by the library's allocator (None on the CPU)."""
        if self.name == "cupy":
            import cupy

            return int(cupy.get_default_memory_pool().used_bytes())
        if self.name == "torch" and self.device.type == "cuda":
            import torch

            return int(torch.cuda.memory_allocated(self.device))
        return None

    @property
    def is_gpu(self) -> bool:
        """True when arrays live in GPU memory."""
        return self.name == "cupy" or (self.name == "torch" and self.device.type == "cuda")

    def describe(self) -> dict[str, Any]:
        """Library, version, device and thread facts for logs and benchmark records."""
        module = importlib.import_module({"array-api-strict": "array_api_strict"}.get(self.name, self.name))
        info: dict[str, Any] = {
            "backend": self.name,
            "spec": self.spec,
            "device": str(self.device),
            "version": getattr(module, "__version__", "?"),
            "numpy": np.__version__,
            "array_api_compat": array_api_compat.__version__,
        }
        if self.name == "cupy":
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(self.device.id)
            info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        if self.name == "torch":
            import torch

            info["torch_threads"] = torch.get_num_threads()
        info["blas"] = _blas_info()
        return info


def _blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: pool.get(k) for k in ("internal_api", "num_threads", "architecture")}
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    ]


def _cupy_backend(index: int) -> Backend:
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
    return Backend("cupy", xp, device, f"cupy:{index}")


def _torch_backend(device: str) -> Backend:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError('the torch backend needs PyTorch: pip install "mlp-xp[torch]".') from exc
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "torch:cuda was requested but PyTorch sees no CUDA device "
                f"(torch {torch.__version__}); use --device torch for the CPU."
            )
        if dev.index is None:
            dev = torch.device("cuda", 0)
        if dev.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"{device} was requested but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
    import array_api_compat.torch as xp

    return Backend("torch", xp, dev, "torch" if dev.type == "cpu" else f"torch:{dev}")


def _strict_backend(device: str) -> Backend:
    try:
        import array_api_strict as xp
    except ImportError as exc:
        raise BackendUnavailableError(
            "the array-api-strict backend needs array-api-strict: pip install array-api-strict."
        ) from exc
    try:
        dev = xp.Device(device)
    except ValueError as exc:
        raise ValueError(f"array-api-strict has no device {device!r}: {exc}") from exc
    spec = "array-api-strict" if device == "CPU_DEVICE" else f"array-api-strict:{device}"
    return Backend("array-api-strict", xp, dev, spec)


def _numpy_backend() -> Backend:
    import array_api_compat.numpy as xp

    return Backend("numpy", xp, "cpu", "numpy")


def _cuda_index(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ValueError(f"unknown device {spec!r}: the CUDA device index must be a number (e.g. cuda:0).")
    return int(text)


def get_backend(spec: str = "auto") -> Backend:
    """Select an array library and device.

    ``spec`` is one of ``SPECS``: ``auto`` (CuPy when a CUDA device is usable, else NumPy),
    ``cpu``/``numpy``, ``cuda``/``cuda:N``/``cupy``/``cupy:N``, ``torch``/``torch:cpu``/
    ``torch:cuda``/``torch:cuda:N``, ``array-api-strict`` (its CPU device) or
    ``array-api-strict:DEVICE`` (``device1``, ``device2`` are emulated non-CPU devices,
    ``no_float64`` a float32-only one). The environment variable ``MLP_XP_DEVICE`` replaces
    ``auto``.

    Raises ``BackendUnavailableError`` when the library or device is missing, with the fix in
    the message, and ``ValueError`` for an unknown spec.
    """
    if isinstance(spec, Backend):
        return spec
    spec = spec.strip().lower()
    if spec == "auto" and os.environ.get("MLP_XP_DEVICE"):
        spec = os.environ["MLP_XP_DEVICE"].strip().lower()
    if spec == "auto":
        try:
            return _cupy_backend(0)
        except BackendUnavailableError:
            return _numpy_backend()
    if spec in ("cpu", "numpy"):
        return _numpy_backend()
    head, _, rest = spec.partition(":")
    if head in ("cuda", "cupy"):
        return _cupy_backend(_cuda_index(rest, spec) if rest else 0)
    if head == "torch":
        return _torch_backend(rest or "cpu")
    if head in ("array-api-strict", "array_api_strict", "strict"):
        names = {"device1": "device1", "device2": "device2", "no_float64": "no_float64"}
        names.update({"": "CPU_DEVICE", "cpu": "CPU_DEVICE", "cpu_device": "CPU_DEVICE"})
        if rest not in names:
            raise ValueError(f"unknown array-api-strict device {rest!r}; choose from device1, device2, no_float64.")
        return _strict_backend(names[rest])
    raise ValueError(f"unknown backend/device spec {spec!r}; choose from: {', '.join(SPECS)}.")


def available_backends() -> dict[str, str]:
    """Every spec family this machine can use, mapped to 'ok' or the reason it cannot."""
    found = {}
    for spec in ("numpy", "cuda", "torch", "torch:cuda", "array-api-strict"):
        try:
            get_backend(spec)
            found[spec] = "ok"
        except (BackendUnavailableError, ValueError) as exc:
            found[spec] = str(exc)
    return found
