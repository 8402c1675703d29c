"""PyTorch tensors on the CPU or one CUDA GPU; ``torch.compile`` as the compiler."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from . import counter
from .base import Backend, BackendUnavailableError, DeviceRandom


class TorchRandom(DeviceRandom):
    """A seeded ``torch.Generator`` on the backend's device, and for the masks drawn inside
    ``torch.compile`` (where dynamo cannot trace a generator) a counter-based key that the
    compiled step carries (``state``/``set_state``, see ``counter``). The same seed gives the
    same run either way; compiled masks differ from eager ones."""

    def __init__(self, backend: TorchBackend, seed: int) -> None:
        super().__init__(backend, seed)
        import torch

        self._torch = torch
        self._gen = torch.Generator(device=backend.device)
        self._start(seed)

    def _start(self, seed: int) -> None:
        self._gen.manual_seed(seed)
        self.key = counter.new_key(self.backend, seed)

    def bernoulli_mask(self, shape, keep_prob, dtype="float32"):
        if not self._torch.compiler.is_compiling():
            return super().bernoulli_mask(shape, keep_prob, dtype)
        mask, self.key = counter.bernoulli_mask(self.key, tuple(shape), keep_prob, self.backend.dtype(dtype))
        return mask

    def skip(self, shape, dtype, draws):
        super().skip(shape, dtype, draws)  # the generator, outside torch.compile
        self.key = counter.skipped(self.key, draws)

    @property
    def state(self) -> Any:
        return self.key

    def set_state(self, key: Any) -> None:
        self.key = key

    def _normal(self, shape, dtype):
        return self._torch.randn(shape, generator=self._gen, device=self.backend.device, dtype=dtype)

    def _uniform(self, shape, dtype):
        return self._torch.rand(shape, generator=self._gen, device=self.backend.device, dtype=dtype)

    def permutation(self, n):
        return self._torch.randperm(n, generator=self._gen, device=self.backend.device)


class TorchBackend(Backend):
    name = module = "torch"

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        """As ``Backend.asarray``; a NumPy view with negative strides (``x[:, ::-1]``), which
        torch cannot wrap, is copied first."""
        import numpy as np

        if isinstance(host, np.ndarray) and any(stride < 0 for stride in host.strides):
            host = np.ascontiguousarray(host)
        return super().asarray(host, dtype)

    def to_numpy(self, x: Any):
        return x.detach().cpu().numpy().copy()

    def random(self, seed: int) -> TorchRandom:
        return TorchRandom(self, seed)

    def synchronize(self, *arrays: Any) -> None:
        if self.is_gpu:
            import torch

            torch.cuda.synchronize(self.device)

    def memory_in_use(self) -> int | None:
        if not self.is_gpu:
            return None
        import torch

        return int(torch.cuda.memory_allocated(self.device))

    @property
    def is_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def compiles(self) -> bool:
        return True

    def compile_step(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``torch.compile`` with inductor; CUDA graphs (``reduce-overhead``) on a GPU. Each call
        compiles a copy of ``fn`` with a code object of its own: dynamo keeps one cache per code
        object and runs a function eagerly once that cache holds ``recompile_limit`` (8) graphs,
        which the steps of four models (two batch shapes each) sharing one method would reach."""
        import torch

        return torch.compile(_with_own_code(fn), mode="reduce-overhead" if self.is_gpu else None, dynamic=False)

    def _facts(self) -> dict[str, Any]:
        import torch

        facts: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
        if self.is_gpu:
            facts["gpu"] = torch.cuda.get_device_name(self.device)
        return facts


def _with_own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a function or a bound method) as a new function on a copy of its code object."""
    func = getattr(fn, "__func__", fn)
    copy = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                              func.__closure__)  # fmt: skip
    owner = getattr(fn, "__self__", None)
    return copy if owner is None else types.MethodType(copy, owner)


def create(device: str = "cpu") -> TorchBackend:
    """``device`` is ``cpu``, ``cuda`` or ``cuda:N``."""
    platform, _, index = device.partition(":")
    if platform not in ("cpu", "cuda") or (platform == "cpu" and index):
        raise ValueError(f"unknown torch device {device!r}; choose from cpu, cuda, cuda:N.")
    if index and not index.isdigit():
        raise ValueError(f"unknown torch device {device!r}: the device index must be a number (e.g. torch:cuda:0).")
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

    return TorchBackend(xp, dev, "torch" if dev.type == "cpu" else f"torch:{dev}")
