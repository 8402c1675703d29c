"""``DeviceLoader``: the dataset on the device once; shuffling and batching happen there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from array_api_compat import array_namespace

from ..arrays import Array
from ..backends import Backend, get_backend, host_rng
from ..distributed import Communicator
from ..interop import to_backend


class DeviceLoader:
    """Mini-batches ``(x, y)`` of a dataset that lives on ``backend``'s device.

    ``x`` (N, D) and ``y`` (N,) are host arrays, uploaded once at construction, or arrays of any
    library with DLPack (torch, CuPy, JAX, array-api-strict), taken over without a copy where the
    backend can read their memory (``interop.to_backend``); with
    ``y=None`` the targets are the inputs themselves (autoencoders: batches ``(x, x)``). Integer pixel
    data (uint8) stays uint8 on the device (a quarter of float32's memory and gather
    traffic) and each batch is converted to ``dtype`` and multiplied by ``scale``
    (default 1/255 for uint8, else 1); float features are stored in ``dtype`` directly.
    Labels are stored as int64 (or ``dtype`` when they are floats, for regression targets).

    With ``shuffle``, epoch ``e`` visits the samples in the order of a permutation drawn on
    the host from ``seed`` and ``e`` (identical on every backend, and reproducible when a run
    resumes at epoch ``e``), uploaded once per epoch; batches are gathered on the device
    with ``take``. No other transfer happens while iterating. ``set_epoch(e, skip=k)`` starts
    the next pass at batch ``k`` of epoch ``e`` (a run resumed inside that epoch).

    With a communicator of several processes (``comm``, see ``distributed``), ``batch_size`` is
    the global batch: every process draws the same permutation and yields its contiguous part
    of each global batch (process ``r`` of ``P`` takes rows ``[m·r//P, m·(r+1)//P)`` of a batch
    of ``m``). ``len`` and ``num_samples`` count global batches and samples; ``local_samples``
    counts this process's.
    """

    def __init__(
        self,
        x: Any,
        y: Any | None,
        backend: Backend | str = "auto",
        *,
        batch_size: int = 256,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        dtype: str = "float32",
        scale: float | None = None,
        num_classes: int | None = None,
        comm: Communicator | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if y is not None and x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}.")
        if x.shape[0] == 0:
            raise ValueError("the dataset is empty.")
        if num_classes is not None and y is not None:
            _check_labels(y, num_classes)
        self.backend = get_backend(backend)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        self.n = x.shape[0]
        pixels = _is_dtype(x, "integral")
        self.dtype = self.backend.dtype(dtype)
        self.scale = scale if scale is not None else (1.0 / 255.0 if x.dtype == array_namespace(x).uint8 else 1.0)
        self._convert = pixels or self.scale != 1.0
        self.x = to_backend(x, self.backend, None if pixels else dtype)
        self.y = None
        if y is not None:
            self.y = to_backend(y, self.backend, "int64" if _is_dtype(y, ("integral", "bool")) else dtype)
        if drop_last and self.n < batch_size:
            raise ValueError(f"drop_last with batch_size {batch_size} leaves no batch of {self.n} samples.")
        self.comm = comm if comm is not None else Communicator()
        smallest = self.smallest_batch_size
        if smallest < self.comm.size:
            raise ValueError(
                f"a batch of {smallest} samples (batch size {batch_size}, {self.num_samples} samples) cannot be "
                f"split across {self.comm.size} processes: choose a batch size that leaves at least "
                f"{self.comm.size} samples in every batch."
            )

    def __len__(self) -> int:
        """Number of batches per epoch."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    @property
    def num_samples(self) -> int:
        """Samples yielded per epoch (fewer than ``n`` with ``drop_last``)."""
        return self.n - (self.n % self.batch_size if self.drop_last else 0)

    @property
    def local_samples(self) -> int:
        """Samples this process yields per epoch (``num_samples`` with one process)."""
        return sum(stop - start for start, stop in map(self._shard, range(0, self.num_samples, self.batch_size)))

    @property
    def smallest_batch_size(self) -> int:
        """Samples of an epoch's smallest (its last) batch, over all processes."""
        return min(self.batch_size, self.num_samples - (len(self) - 1) * self.batch_size)

    def global_batch_size(self, step: int) -> int:
        """Samples of the 0-based ``step``'s batch over all processes."""
        return min(self.batch_size, self.num_samples - step * self.batch_size)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Shape of this process's part of a full batch of ``x``."""
        start, stop = self._shard(0)
        return (stop - start, *self.x.shape[1:])

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the shuffling order of a 0-based epoch (``fit`` calls this); the next pass
        leaves out its first ``skip`` batches (those a resumed run has trained on)."""
        if not 0 <= skip <= len(self):
            raise ValueError(f"cannot skip {skip} batches of an epoch of {len(self)}.")
        self.epoch, self.skip = epoch, skip

    def start(self) -> tuple[Array | None, int]:
        """Begin a pass: this epoch's sample order as an int64 device array (one upload; None
        without shuffling) and the position in it of the first batch to yield (``skip`` batches
        in; then 0 again); advances to the next epoch."""
        order = None
        if self.shuffle:
            order = self.backend.asarray(host_rng((self.seed, self.epoch)).permutation(self.n), "int64")
        begin = self.skip * self.batch_size
        self.epoch, self.skip = self.epoch + 1, 0
        return order, begin

    def __iter__(self) -> Iterator[tuple[Array, Array]]:
        order, begin = self.start()
        for first in range(begin, self.num_samples, self.batch_size):
            start, stop = self._shard(first)
            if order is None:
                xb = self._features(self.x[start:stop, ...])
                yield xb, (xb if self.y is None else self.y[start:stop, ...])
            else:
                yield self.gather(order[start:stop])

    def _shard(self, first: int) -> tuple[int, int]:
        """This process's rows ``[start, stop)`` of the global batch that begins at ``first``."""
        size, rank = self.comm.size, self.comm.rank
        rows = min(first + self.batch_size, self.n) - first
        return first + rows * rank // size, first + rows * (rank + 1) // size

    def gather(self, index: Array) -> tuple[Array, Array]:
        """The batch ``(x, y)`` of the samples at device indices ``index`` (a gather on the device)."""
        take = self.backend.xp.take
        xb = self._features(take(self.x, index, axis=0))
        return xb, (xb if self.y is None else take(self.y, index, axis=0))

    def _features(self, xb: Array) -> Array:
        if not self._convert:
            return xb
        xb = self.backend.xp.astype(xb, self.dtype)
        xb *= self.scale
        return xb


def _is_dtype(a: Any, kind: str | tuple[str, ...]) -> bool:
    """``isdtype`` of ``a``'s dtype in ``a``'s own namespace (host or device arrays)."""
    return array_namespace(a).isdtype(a.dtype, kind)


def _check_labels(y: Any, num_classes: int) -> None:
    if not _is_dtype(y, "integral"):
        raise TypeError(f"class labels must be integers, got dtype {y.dtype}.")
    xp = array_namespace(y)
    low, high = int(xp.min(y)), int(xp.max(y))
    if low < 0 or high >= num_classes:
        bad = int(xp.argmax(xp.astype((y < 0) | (y >= num_classes), xp.int8)))
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for {num_classes} classes; found {int(y[bad])} at index {bad} "
            f"(range {low}..{high})."
        )
