"""Counting device operations: how many array operations (each a kernel launch on a GPU) the
package issues per training step or per evaluation batch.

``counting_backend(inner)`` returns a backend whose namespace and arrays wrap ``inner``'s and
count every call: array-producing namespace functions and array operators as ``ops``, views
(``reshape``, basic slicing, ``.T``) as ``views`` (no kernel on any library), reads of values to
the host (``float``, ``bool``, ``int``, ``to_numpy``) as ``host_reads``. Counts are exact and
deterministic, so a test can hold them to a budget without timing anything. The counting
backend updates the whole flat buffer, as the GPU libraries do (``updates_per_parameter`` is
False), so these are the counts of the GPU step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from .backends import Backend, HostDrawnRandom

__all__ = ["OpCounter", "CountedArray", "counting_backend", "ops_per_call"]

VIEWS = frozenset({"reshape", "matrix_transpose", "T", "mT", "getitem[view]"})


class OpCounter:
    """Tallies by operation name; ``ops`` is every counted call that is neither a view nor a
    host read."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.host_reads = 0

    def add(self, name: str) -> None:
        self.calls[name] += 1

    @property
    def ops(self) -> int:
        return sum(n for name, n in self.calls.items() if name not in VIEWS)

    @property
    def views(self) -> int:
        return sum(n for name, n in self.calls.items() if name in VIEWS)

    def snapshot(self) -> tuple[int, int, int]:
        return self.ops, self.views, self.host_reads


def _unwrap(value: Any) -> Any:
    if isinstance(value, CountedArray):
        return value.array
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


class CountedArray:
    """An array that counts its operations on ``counter`` (see the module docstring)."""

    __slots__ = ("array", "namespace")

    def __init__(self, array: Any, namespace: CountingNamespace) -> None:
        self.array = array
        self.namespace = namespace

    def __array_namespace__(self, api_version: str | None = None) -> CountingNamespace:
        return self.namespace

    def _wrap(self, value: Any) -> Any:
        return self.namespace.wrap(value)

    def _count(self, name: str) -> None:
        self.namespace.counter.add(name)

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    size = property(lambda self: self.array.size)
    device = property(lambda self: self.namespace.device)

    @property
    def T(self) -> CountedArray:
        self._count("T")
        return self._wrap(self.array.T)

    def __getitem__(self, key: Any) -> CountedArray:
        keys = key if isinstance(key, tuple) else (key,)
        basic = all(isinstance(k, (int, slice, type(Ellipsis), type(None))) for k in keys)
        self._count("getitem[view]" if basic else "getitem[gather]")
        return self._wrap(self.array[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._count("setitem")
        self.array[_unwrap(key)] = _unwrap(value)

    def __float__(self) -> float:
        self.namespace.counter.host_reads += 1
        return float(self.array)

    def __int__(self) -> int:
        self.namespace.counter.host_reads += 1
        return int(self.array)

    def __bool__(self) -> bool:
        self.namespace.counter.host_reads += 1
        return bool(self.array)

    def __index__(self) -> int:
        return self.__int__()

    def __len__(self) -> int:
        return len(self.array)

    def __repr__(self) -> str:
        return f"CountedArray({self.array!r})"


def _binary(name: str) -> Callable[..., Any]:
    def op(self: CountedArray, other: Any) -> Any:
        self._count(name)
        result = getattr(self.array, name)(_unwrap(other))
        return NotImplemented if result is NotImplemented else self._wrap(result)

    return op


def _inplace(name: str) -> Callable[..., Any]:
    def op(self: CountedArray, other: Any) -> CountedArray:
        self._count(name)
        method = getattr(self.array, name, None)
        result = method(_unwrap(other)) if method is not None else NotImplemented
        if result is NotImplemented:  # immutable arrays: rebind
            result = getattr(self.array, name.replace("__i", "__", 1))(_unwrap(other))
        self.array = result
        return self

    return op


def _unary(name: str) -> Callable[..., Any]:
    def op(self: CountedArray) -> CountedArray:
        self._count(name)
        return self._wrap(getattr(self.array, name)())

    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor"):
    for _form in (f"__{_name}__", f"__r{_name}__"):
        setattr(CountedArray, _form, _binary(_form))
    setattr(CountedArray, f"__i{_name}__", _inplace(f"__i{_name}__"))
for _form in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(CountedArray, _form, _binary(_form))
for _form in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(CountedArray, _form, _unary(_form))
CountedArray.__hash__ = None  # type: ignore[assignment]


class CountingNamespace:
    """Wraps an Array API namespace: functions that return arrays are counted and their
    results wrapped; everything else (dtypes, constants, ``isdtype``) passes through."""

    def __init__(self, xp: Any, device: Any, counter: OpCounter) -> None:
        self.xp = xp
        self.device = device
        self.counter = counter
        # a class of its own per namespace: namespace look-ups are cached by array type
        self.array_type = type("CountedArray", (CountedArray,), {"__slots__": ()})

    def wrap(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(self.wrap(v) for v in value)
        if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, CountedArray):
            return self.array_type(value, self)
        return value

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.xp, name)
        if not callable(target) or isinstance(target, type):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            result = target(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
            wrapped = self.wrap(result)
            if wrapped is not result:
                self.counter.add(name)
            return wrapped

        return call


class _CountingBackend(Backend):
    """``inner`` with every array wrapped in ``CountedArray``; host draws stay uncounted
    uploads (random masks are host-drawn so that counts do not depend on the library)."""

    def __init__(self, inner: Backend, counter: OpCounter) -> None:
        super().__init__(CountingNamespace(inner.xp, inner.device, counter), inner.device, inner.spec)
        self.inner = inner
        self.name = inner.name
        self.counter = counter

    def dtype(self, dtype: Any) -> Any:
        return self.inner.dtype(dtype)

    def asarray(self, host: Any, dtype: Any = None) -> CountedArray:
        self.counter.add("asarray")  # an upload: a transfer on a GPU
        return self.xp.wrap(self.inner.asarray(host, dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        self.counter.host_reads += 1
        return self.inner.to_numpy(_unwrap(x))

    def random(self, seed: int) -> HostDrawnRandom:
        return HostDrawnRandom(self, seed)


def counting_backend(inner: Backend | None = None) -> _CountingBackend:
    """A backend that counts the operations of everything built on it (``.counter``);
    ``inner`` defaults to NumPy."""
    from .backends import get_backend

    return _CountingBackend(inner or get_backend("numpy"), OpCounter())


def ops_per_call(counter: OpCounter, run: Callable[[int], Any], small: int = 2, large: int = 5) -> tuple[int, int, int]:
    """(ops, views, host reads) per unit of ``run(n)`` (e.g. n steps), from the difference of
    a run with ``large`` and one with ``small`` units: fixed per-run costs cancel out."""
    before = counter.snapshot()
    run(small)
    middle = counter.snapshot()
    run(large)
    after = counter.snapshot()
    units = large - small
    per = [((a - m) - (m - b)) for b, m, a in zip(before, middle, after)]
    if any(p % units for p in per):
        raise AssertionError(f"operation counts are not linear in the number of units: {per} over {units}")
    return tuple(p // units for p in per)  # type: ignore[return-value]


STEP_CONFIGS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": "sgd"},
    "sgd-momentum": {"optimizer": "sgd", "momentum": 0.9},
    "adam": {"optimizer": "adam"},
    "sgd+bn+dropout": {"optimizer": "sgd", "batchnorm": True, "dropout": 0.2},
    "sgd-momentum+bn+dropout": {"optimizer": "sgd", "momentum": 0.9, "batchnorm": True, "dropout": 0.2},
    "adam+bn+dropout": {"optimizer": "adam", "batchnorm": True, "dropout": 0.2},
}
"""The configurations whose per-step counts are recorded (784-256-10, batch 64)."""


def step_counts(config: dict[str, Any], hidden: tuple[int, ...] = (256,), batch_size: int = 64) -> dict[str, int]:
    """Operations per training step of ``fit`` and per evaluation batch of ``evaluate`` for a
    784-hidden-10 classifier built from ``config`` (optimizer, momentum, batchnorm, dropout)."""
    from .data.loader import DeviceLoader
    from .losses import SoftmaxCrossEntropy
    from .mlp import make_mlp
    from .optim import SGD, Adam
    from .train import evaluate, fit

    backend = counting_backend()
    model = make_mlp(784, hidden, 10, batchnorm=config.get("batchnorm", False), dropout=config.get("dropout", 0.0))
    model.init(backend, seed=0)
    if config["optimizer"] == "adam":
        optimizer = Adam(model, lr=1e-3)
    else:
        optimizer = SGD(model, lr=0.1, momentum=config.get("momentum", 0.0))
    loss = SoftmaxCrossEntropy(check_labels=False)
    rng = np.random.default_rng(0)

    def loader(batches: int) -> DeviceLoader:
        n = batches * batch_size
        x = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        return DeviceLoader(x, rng.integers(0, 10, n), backend, batch_size=batch_size, num_classes=10)

    def train(steps: int) -> None:
        fit(model, loss, optimizer, loader(steps), epochs=1, progress=False, log=None)

    def evaluate_batches(batches: int) -> None:
        evaluate(model, loss, loader(batches))

    train(2)  # first-use set-up (optimizer state) outside the counts
    ops, views, reads = ops_per_call(backend.counter, train)
    eval_ops, _, eval_reads = ops_per_call(backend.counter, evaluate_batches)
    return {"step_ops": ops, "step_views": views, "step_host_reads": reads, "eval_ops": eval_ops,
            "eval_host_reads": eval_reads}
