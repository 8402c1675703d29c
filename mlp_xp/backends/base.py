"""The seam's base: ``Backend`` and the random-number interface every library module fills in.

A ``Backend`` is an array library plus a device. The generic code uses only ``xp`` (the
array-api-compat namespace) and ``device``; everything the standard leaves out is a method
here, overridden by the one module per library (``numpy``, ``cupy``, ``torch``, ``strict``,
``jax``) where that library does it differently:

``asarray(host, dtype)`` / ``to_numpy(x)`` / ``float_dtypes``
    The way onto the device and the one way back to the host (NumPy is the host format); the
    floating dtypes the device holds.
``random(seed)``
    A seeded ``DeviceRandom`` that creates arrays on the device (normal, uniform, permutation,
    Bernoulli masks).
``synchronize()`` / ``memory_in_use()`` / ``describe()`` / ``is_gpu``
    Wait for queued device work; bytes held by the library's allocator; versions, devices and
    BLAS threads for reports; whether arrays live in GPU memory.
``updates_per_parameter``
    Whether the optimizer should update parameter by parameter (views of its flat buffers)
    rather than on the whole flat buffer: True where a call is cheap and arrays update in place
    (NumPy), False where every operation is a kernel launch (GPUs) or arrays are immutable.
``compile_step(fn)`` / ``compiles`` / ``scan(body, carry, xs)`` / ``scans``
    Trace a pure step function once and run it as one compiled program (JAX, torch); the
    libraries without a compiler raise ``CompileUnsupportedError``. ``scan`` runs ``body``
    over the leading axis of ``xs`` inside a compiled program (JAX's ``lax.scan``).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "derived_seed",
    "tune_host_allocator",
    "Backend",
    "BackendUnavailableError",
    "CompileUnsupportedError",
    "DeviceRandom",
    "HostDrawnRandom",
    "host_rng",
]

COMPILING_BACKENDS = ("jax", "jax:cuda", "torch", "torch:cuda")


class BackendUnavailableError(RuntimeError):
    """The requested library or device cannot be used on this machine."""


class CompileUnsupportedError(ValueError):
    """The backend's library has no compiler (NumPy, CuPy, array-api-strict)."""


def host_rng(seed: int | tuple[int, ...]) -> np.random.Generator:
    """Seeded host generator: the same draws on every backend (initial weights, permutations)."""
    return np.random.default_rng(seed)


def derived_seed(*entropy: int) -> int:
    """A seed in [0, 2**31) derived from several integers (a seed and an epoch or a rank)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0] >> 1)


_HOST_ALLOCATOR_TUNED = False


def tune_host_allocator() -> None:
    """Keep glibc's malloc from returning freed memory to the OS after every training step.

    A step allocates and frees a few temporaries the size of the parameter buffer (hundreds of
    KB). With glibc's defaults these often land above its dynamic mmap threshold or get trimmed
    from the top of the heap, so every step pays fresh page faults: measured here, a 784-100-10
    Adam epoch at batch 64 took 1.7x as long. Large blocks below 32 MiB then come from the heap,
    and up to 256 MiB of freed heap stays with the process. Linux/glibc only, once per process;
    ``MLP_XP_MALLOC_TUNING=0`` leaves the allocator alone."""
    global _HOST_ALLOCATOR_TUNED
    if _HOST_ALLOCATOR_TUNED or os.environ.get("MLP_XP_MALLOC_TUNING", "1") == "0" or sys.platform != "linux":
        return
    _HOST_ALLOCATOR_TUNED = True
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)


class DeviceRandom:
    """Seeded random arrays created on a backend's device.

    Subclasses implement ``_start`` (set the stream to a seed; called with ``seed`` on
    creation and by ``restart``), ``_normal``, ``_uniform`` and ``permutation``; shapes are
    tuples, dtypes are names (``"float32"``) or namespace dtypes. ``state``/``set_state``
    expose the generator state as an array where a compiled step must carry it (JAX keys;
    torch's counter-based key for masks drawn under ``torch.compile``, see ``counter``).
    """

    def __init__(self, backend: Backend, seed: int) -> None:
        self.backend = backend
        self.seed = seed

    def restart(self, epoch: int) -> None:
        """Restart the stream at a seed derived from ``seed`` and ``epoch`` (``seed`` is kept):
        ``fit`` restarts the dropout generators every epoch, so a run resumed at an epoch
        boundary draws the masks that the uninterrupted run drew, on every library."""
        self._start(derived_seed(self.seed, epoch))

    def _start(self, seed: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _start(seed) to (re)start its stream.")

    def skip(self, shape: tuple[int, ...], dtype: Any, draws: int) -> None:
        """Move the stream past ``draws`` masks of ``shape`` and ``dtype`` (as if
        ``bernoulli_mask`` had drawn them: a resumed epoch's dropout continues where it stopped)."""
        for _ in range(draws):
            self.bernoulli_mask(shape, 0.5, dtype)

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
        self._start(seed)

    def _start(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def _normal(self, shape, dtype):
        return self.backend.asarray(self._rng.standard_normal(shape, dtype=np.float32), dtype)

    def _uniform(self, shape, dtype):
        return self.backend.asarray(self._rng.random(shape, dtype=np.float32), dtype)

    def permutation(self, n):
        return self.backend.asarray(self._rng.permutation(n), "int64")


class Backend:
    """An array library and a device. Create with :func:`mlp_xp.get_backend`.

    ``xp`` is the array-api-compat namespace, ``device`` the library's device object,
    ``name`` the library (``numpy``, ``cupy``, ``torch``, ``array-api-strict``, ``jax``) and
    ``spec`` a string that ``get_backend`` turns back into the same backend.
    """

    name: str = "?"
    module: str = "?"
    """The library's import name (for its version)."""
    updates_per_parameter: bool = False
    """See the module docstring; ``Optimizer.step`` reads it."""

    def __init__(self, xp: Any, device: Any, spec: str) -> None:
        self.xp = xp
        self.device = device
        self.spec = spec

    def __repr__(self) -> str:
        return f"Backend({self.spec!r}, device={self.device!r})"

    @property
    def float_dtypes(self) -> list[str]:
        """Names of the real floating dtypes this device holds (``["float32"]`` on a float32-only
        device), from the standard's inspection API."""
        return list(self.xp.__array_namespace_info__().dtypes(device=self.device, kind="real floating"))

    def dtype(self, dtype: Any) -> Any:
        """The namespace dtype for a name such as ``"float32"`` (dtypes pass through)."""
        return getattr(self.xp, dtype) if isinstance(dtype, str) else dtype

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        """Upload a host (NumPy) array or nested sequence to this backend's device.

        ``dtype`` defaults to the host array's dtype; a copy is made only where needed.
        """
        if dtype is None:
            dtype = np.asarray(host).dtype.name
        return self.xp.asarray(host, dtype=self.dtype(dtype), device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy a device array to a new host NumPy array (the only way back to the host;
        never a view of the device array, also on the CPU)."""
        return np.array(x, copy=True)

    def random(self, seed: int) -> DeviceRandom:
        """A seeded generator that creates arrays on this backend's device."""
        return HostDrawnRandom(self, seed)

    def synchronize(self, *arrays: Any) -> None:
        """Block until all queued work on the device has finished (no-op on the CPU); JAX,
        which has no device-wide barrier, waits for ``arrays`` (what was computed)."""

    def memory_in_use(self) -> int | None:
        """Bytes of device memory held by the library's allocator (None on the CPU)."""
        return None

    @property
    def is_gpu(self) -> bool:
        """True when arrays live in GPU memory."""
        return False

    @property
    def compiles(self) -> bool:
        """Whether ``compile_step`` is available (the library has a tracing compiler)."""
        return False

    def compile_step(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` (a pure function of arrays and pytrees of arrays) traced once and run as one
        compiled program. Raises ``CompileUnsupportedError`` where the library has no compiler."""
        raise CompileUnsupportedError(
            f"{self.spec} has no compiler: --compile works on {', '.join(COMPILING_BACKENDS)} "
            "(install mlp-xp[jax] or mlp-xp[torch]); drop --compile to train eagerly here."
        )

    @property
    def scans(self) -> bool:
        """Whether ``scan`` is available (a loop that compiles into one program)."""
        return False

    def scan(self, body: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any) -> tuple[Any, Any]:
        """``body(carry, x) -> (carry, y)`` over the leading axis of ``xs``, inside a traced
        function; returns the last carry and the stacked ``y``."""
        raise CompileUnsupportedError(f"{self.spec} has no compiled loop (scan).")

    def describe(self) -> dict[str, Any]:
        """Library, version, device and thread facts for logs and benchmark records."""
        module = importlib.import_module(self.module)
        info: dict[str, Any] = {
            "backend": self.name,
            "spec": self.spec,
            "device": str(self.device),
            "version": getattr(module, "__version__", "?"),
            "numpy": np.__version__,
            "array_api_compat": array_api_compat.__version__,
        }
        info.update(self._facts())
        info["blas"] = _blas_info()
        return info

    def _facts(self) -> dict[str, Any]:
        """Library-specific entries of ``describe`` (GPU name, threads)."""
        return {}


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
