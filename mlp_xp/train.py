"""The training loop: ``fit`` and ``evaluate``.

``train_step`` is the one training step (forward, loss, backward, update), run eagerly by
``fit`` or traced once and compiled (``fit(compile=True)``, see ``compiled.py``). Metrics stay
on the device during an epoch: each step's loss and correct-prediction count are device
scalars, kept in a list (no device work per step) and joined when read: once per epoch and
at progress-bar refreshes (about twice a second), which is also where a non-finite loss is
caught.

Data-parallel runs (a training loader with a communicator of several processes, see
``distributed``): each step's gradient is summed across processes before the update
(``train_step``), rank 0's state is broadcast when ``fit`` starts, the epoch's metrics are summed
across processes once per epoch, and a Ctrl-C stops every process at the same step.

A run that Ctrl-C stopped inside an epoch resumes at the next step: ``History.progress`` says how
far the epoch got (per process), and ``fit(..., start_epoch=e, resume=progress)`` skips the
batches that ran, moves the dropout streams past their masks and completes the epoch's record
from the sums that were saved, so that the run equals the uninterrupted one.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .arrays import Array
from .compiled import CompiledSteps
from .data.loader import DeviceLoader
from .distributed import Communicator, broadcast_buffers, broadcast_state
from .layers import BatchNorm
from .losses import BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from .model import Sequential
from .optim import Optimizer

__all__ = ["fit", "evaluate", "train_step", "History", "EpochProgress", "resume_point", "Callback", "TrainingDiverged"]

REFRESH_SECONDS = 0.5
DIVERGENCE_FACTOR = 100.0
"""Training stops when an epoch's mean loss exceeds this many times its reference (``_check_divergence``)."""


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite, or grew far beyond its start (``fit``'s divergence rule)."""


class Callback(Protocol):
    """Per-epoch hook. ``on_epoch_end`` gets the 0-based epoch and its stats (the dict that
    goes into ``History``); returning True stops training after that epoch (on every process
    of a data-parallel run, when it returns True on any)."""

    def on_epoch_end(self, epoch: int, stats: dict[str, float], model: Sequential) -> bool | None: ...


@dataclass
class EpochProgress:
    """How far one process got in an epoch: 0-based ``epoch``, the ``steps`` run (global
    batches), and the sums the epoch's record is made from: ``samples`` this process trained on,
    ``loss_sum`` (Σ step loss × step samples, in step order), ``correct`` (right predictions, of
    ``samples`` × the loss's predictions per sample; None where the loss has no accuracy) and
    ``seconds``."""

    epoch: int
    steps: int = 0
    samples: int = 0
    loss_sum: float = 0.0
    correct: float | None = 0.0
    seconds: float = 0.0


def resume_point(saved: list[EpochProgress], comm: Communicator | None = None) -> EpochProgress:
    """This process's ``fit(resume=...)`` from ``saved`` (an interrupted run's ``History.progress``):
    its own entry when as many processes run as saved it; otherwise rank 0 carries the sums of
    them all (the epoch's record then equals the uninterrupted one's up to rounding) and the
    other processes start the epoch's sums at zero."""
    comm = comm if comm is not None else Communicator()
    if len(saved) == comm.size:
        return replace(saved[comm.rank])
    first = saved[0]
    if not comm.is_root:
        return EpochProgress(first.epoch, first.steps, correct=None if first.correct is None else 0.0)
    return EpochProgress(
        epoch=first.epoch,
        steps=first.steps,
        samples=sum(p.samples for p in saved),
        loss_sum=math.fsum(p.loss_sum for p in saved),
        correct=None if first.correct is None else sum(p.correct or 0.0 for p in saved),
        seconds=first.seconds,
    )


@dataclass
class History:
    """Per-epoch records: ``epoch`` (1-based), ``train_loss``, ``train_acc``, then the
    held-out set's ``<name>_loss`` and ``<name>_acc`` (``fit``'s ``val_name``, ``test`` by
    default; None without a validation loader or accuracy), ``lr``, ``seconds``,
    ``samples_per_s``. ``interrupted`` is set when Ctrl-C stopped the run; ``progress`` then
    holds the stopped epoch's progress on every process (index = rank), to resume from."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    progress: list[EpochProgress] | None = None

    def __getitem__(self, key: str) -> list[Any]:
        return [record[key] for record in self.epochs]

    @property
    def last(self) -> dict[str, Any]:
        return self.epochs[-1]


def train_step(
    model: Sequential,
    loss: Loss,
    optimizer: Optimizer,
    x: Array,
    y: Array,
    comm: Communicator | None = None,
    share: float = 1.0,
) -> tuple[Array, Array | None]:
    """One training step on the batch ``(x, y)``: forward, loss, backward, optimizer update.
    Returns the batch's mean loss and correct-prediction count (None where the loss has no
    accuracy) as device scalars. Traceable: no host reads, no branching on array values.

    With ``comm`` of several processes, ``(x, y)`` is this process's ``share`` (its samples /
    the global batch's) of a global batch: the loss gradient is scaled by ``share`` and the
    flat gradient summed across processes, which gives every process the gradient of the
    global batch's mean loss."""
    pred = model.forward(x)
    value = loss.forward(pred, y)
    correct = loss.correct(pred, y)
    if comm is None or comm.size == 1:
        model.backward(loss.backward())
        optimizer.step()
    else:
        model.backward(loss.backward() * share)
        optimizer.apply(comm.allreduce(model.flat.grads(), model.backend))
    return value, correct


def evaluate(model: Sequential, loss: Loss, loader: DeviceLoader) -> dict[str, float | None]:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode (one host read each)."""
    was_training = model.layers[0].training
    model.eval()
    totals: list[Array] = []
    counts: list[Array | None] = []
    try:
        for x, y in loader:
            pred = model.forward(x)
            totals.append(loss.forward(pred, y) * x.shape[0])
            counts.append(loss.correct(pred, y))
    finally:
        loss.cache = {}
        for layer in model.layers:  # nothing outlives evaluation (eval-mode layers keep what a backward would need)
            layer.cache.clear()
        if was_training:
            model.train()
    n = loader.num_samples
    total, correct = _host_sums(loader.backend, totals, counts)
    if loader.comm.size > 1:  # a sharded loader: every process evaluated its part
        total, correct, _ = _summed(loader.comm, total, correct, 0)
    return {"loss": total / n, "acc": _accuracy(correct, n, loss, model, loader)}


def fit(
    model: Sequential,
    loss: Loss,
    optimizer: Optimizer,
    train_loader: DeviceLoader,
    *,
    epochs: int,
    val_loader: DeviceLoader | None = None,
    val_name: str = "test",
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    start_epoch: int = 0,
    log: Callable[[str], None] | None = print,
    compile: bool = False,
    divergence_check: bool = True,
    resume: EpochProgress | None = None,
) -> History:
    """Train for ``epochs`` epochs (continuing at 0-based ``start_epoch`` when resuming;
    ``resume``, this process's entry of an interrupted run's ``History.progress``, continues
    that epoch after the steps it ran).

    Each epoch: set the learning rate from the optimizer's schedule, shuffle, run the steps
    (forward, loss, backward, optimizer step), evaluate on ``val_loader`` (recorded and
    logged as ``<val_name>_loss`` / ``<val_name>_acc``), log one line, call the callbacks.
    Ctrl-C stops cleanly at the next step boundary (a second Ctrl-C aborts at once) and
    returns the history with ``interrupted`` set. A NaN/inf loss
    raises ``TrainingDiverged`` naming the epoch, step and last finite loss; so does, with
    ``divergence_check``, an epoch whose mean training loss exceeds ``DIVERGENCE_FACTOR`` (100)
    times the larger of the first epoch's loss of this call (from the second epoch on) and the
    chance-level loss ln(classes) of a classification loss (see ``_check_divergence``).

    ``compile=True`` traces the step once and runs it compiled (JAX: a whole epoch as one
    program; torch: ``torch.compile``); other backends raise ``CompileUnsupportedError``.

    Data-parallel when ``train_loader`` has a communicator of several processes: every process
    calls ``fit`` with its loader; see the module docstring. Not with ``compile=True``.
    """
    comm = train_loader.comm
    if compile and comm.size > 1:
        raise ValueError("compiled training does not run data-parallel yet: drop compile=True (--compile) under MPI.")
    if resume is not None and resume.epoch != start_epoch:
        raise ValueError(f"resume holds the progress of epoch {resume.epoch}, but start_epoch is {start_epoch}.")
    _check_batch_statistics(model, train_loader)
    runner = CompiledSteps.reuse(model, loss, optimizer, train_loader) if compile else None
    broadcast_state(comm, model, optimizer)
    history = History()
    callbacks = list(callbacks)
    stop = _InterruptFlag(comm)
    with stop:
        for epoch in range(start_epoch, epochs):
            done = replace(resume) if resume is not None and epoch == start_epoch else EpochProgress(epoch)
            optimizer.set_epoch(epoch)
            train_loader.set_epoch(epoch, skip=done.steps)
            model.set_epoch(epoch, skip=done.steps, batch_shape=train_loader.batch_shape)
            model.train()
            started = time.perf_counter()
            batches = runner.epoch() if runner else _eager_epoch(model, loss, optimizer, train_loader)
            done = _run_epoch(train_loader, batches, done, epochs, progress, stop)
            done.seconds += time.perf_counter() - started
            if stop.stopped:
                history.interrupted = True
                history.progress = _gathered(comm, done)
                if log:
                    log(f"interrupted in epoch {epoch + 1}/{epochs} after {done.steps} of {len(train_loader)} steps")
                break
            total, correct, samples = _summed(comm, done.loss_sum, done.correct, done.samples)
            train_loss, train_acc = total / samples, _accuracy(correct, samples, loss, model, train_loader)
            broadcast_buffers(comm, model)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_acc": train_acc,
                f"{val_name}_loss": None,
                f"{val_name}_acc": None,
                "lr": optimizer.lr,
                "seconds": done.seconds,
                "samples_per_s": train_loader.num_samples / done.seconds,
            }
            if val_loader is not None:
                scores = evaluate(model, loss, val_loader)
                record[f"{val_name}_loss"], record[f"{val_name}_acc"] = scores["loss"], scores["acc"]
            history.epochs.append(record)
            if log:
                log(format_epoch(record, epochs))
            if divergence_check:
                _check_divergence(history, loss, model)
            if comm.any(any([bool(cb.on_epoch_end(epoch, record, model)) for cb in callbacks])):
                break  # every process stops when a callback on any asks
    return history


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """``epoch 3/10  loss 0.4267  train_acc 0.843  test_acc 0.861  12.3k samples/s``: the
    accuracies that exist, and a held-out loss where there is no accuracy."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['train_loss']:.4f}"]
    for key, value in record.items():
        if value is None or key in ("epoch", "train_loss", "lr", "seconds", "samples_per_s"):
            continue
        if key.endswith("_acc"):
            parts.append(f"{key} {value:.3f}")
        elif record.get(key[: -len("_loss")] + "_acc") is None:
            parts.append(f"{key} {value:.4f}")
    parts.append(f"{record['samples_per_s'] / 1000:.1f}k samples/s")
    return "  ".join(parts)


def _accuracy(correct: float | None, samples: int, loss: Loss, model: Sequential, loader: DeviceLoader) -> float | None:
    """``correct`` right predictions over the ``samples`` samples of ``loader`` as a fraction:
    over ``samples`` × the predictions ``loss`` counts per sample (several with extra batch
    dimensions, (N, T, C) logits, or a multi-output BinaryCrossEntropy), from the shape of the
    model's output for one sample (its input's shape with the model's output width last)."""
    if correct is None:
        return None
    features = tuple(loader.x.shape[1:])
    one = (1, *features[:-1], model.output_features(features[-1])) if features else (1,)
    return correct / (samples * loss.predictions(one))


def _eager_epoch(model, loss, optimizer, loader) -> Iterator[tuple[Array, Array | None, int]]:
    """``(loss, correct, batch size)`` of each step of one epoch, run eagerly (this process's
    part of each batch in a data-parallel run)."""
    for step, (x, y) in enumerate(loader, start=loader.skip):  # a resumed epoch starts ``skip`` steps in
        share = x.shape[0] / loader.global_batch_size(step)
        value, count = train_step(model, loss, optimizer, x, y, loader.comm, share)
        yield value, count, x.shape[0]


def _run_epoch(loader, batches, done: EpochProgress, epochs, progress, stop) -> EpochProgress:
    """Drain one epoch's ``batches`` (loss, count, size per step or block of steps) with the
    progress bar and Ctrl-C check, continuing ``done`` (the steps that ran before a resume;
    none in a new epoch); returns the epoch's progress, whole or up to the stop."""
    backend = loader.backend
    losses: list[Array] = []
    counts: list[Array | None] = []
    sizes: list[int] = []
    bar = _progress_bar(loader, done, epochs) if progress else None
    last_refresh = time.perf_counter()
    try:
        for value, count, samples in batches:
            losses.append(value)
            counts.append(count)
            sizes.append(samples)
            if bar is not None:
                bar.update(samples)
                now = time.perf_counter()
                if now - last_refresh >= REFRESH_SECONDS:
                    last_refresh = now
                    mean = _loss_sum(backend, losses, sizes, done) / (done.samples + sum(sizes))
                    bar.set_postfix_str(f"loss {mean:.4f}", refresh=False)
            if stop.requested():
                break
    finally:
        if bar is not None:
            bar.close()
    if not sizes:
        return done
    _, correct = _host_sums(backend, [], counts)
    return EpochProgress(
        epoch=done.epoch,
        steps=done.steps + sum(math.prod(v.shape) for v in losses),
        samples=done.samples + sum(sizes),
        loss_sum=_loss_sum(backend, losses, sizes, done),
        correct=None if correct is None or done.correct is None else done.correct + correct,
        seconds=done.seconds,
    )


def _loss_sum(backend, losses: list[Array], sizes: list[int], done: EpochProgress) -> float:
    """``done.loss_sum`` plus Σ step loss × step samples over ``losses`` (one host read), added in
    step order (so a resumed epoch sums what the uninterrupted one did); raises
    ``TrainingDiverged`` at the first non-finite loss. ``losses[i]`` is a step's loss, or a
    compiled block's per-step losses whose steps hold ``sizes[i]`` samples together."""
    values = backend.to_numpy(_joined(backend, losses)).tolist()
    weights = [w for v, n in zip(losses, sizes) for w in _per_step(v, n)]
    finite = [math.isfinite(v) for v in values]
    if not all(finite):
        bad = finite.index(False)
        last = f"{values[bad - 1]:.4f} at step {done.steps + bad}" if bad else "none in this epoch"
        raise TrainingDiverged(
            f"the loss became {values[bad]} at epoch {done.epoch + 1}, step {done.steps + bad + 1}; last finite "
            f"loss: {last}. Lower the learning rate, or check the inputs for NaN/inf."
        )
    return float(sum((v * w for v, w in zip(values, weights)), done.loss_sum))


def _per_step(value: Array, samples: int) -> list[float]:
    """Sample counts of the steps behind ``value`` (a scalar, or a block of equal steps)."""
    steps = math.prod(value.shape)
    return [samples / steps] * steps


def _joined(backend, arrays: list[Array]) -> Array:
    """Device scalars, or 1-D blocks of them, as one 1-D array (one ``concat``)."""
    xp = backend.xp
    return xp.concat([xp.reshape(a, (-1,)) for a in arrays])


def _host_sums(backend, totals: list[Array], counts: list[Array | None]) -> tuple[float, float | None]:
    """The sum of ``totals`` and of ``counts`` (None when any count is None), each read from
    the device once."""
    xp = backend.xp
    total = float(backend.to_numpy(xp.sum(_joined(backend, totals)))) if totals else 0.0
    if not counts or any(c is None for c in counts):
        return total, None
    return total, float(backend.to_numpy(xp.sum(_joined(backend, counts))))


def _gathered(comm: Communicator, done: EpochProgress) -> list[EpochProgress]:
    """Every process's ``done`` in rank order (the epoch and step are the same on all), from
    one sum of host numbers in which each process fills its own slots (so each value is exact)."""
    own = [float(done.samples), done.loss_sum, done.correct or 0.0, done.seconds]
    slots = [0.0] * (len(own) * comm.size)
    slots[comm.rank * len(own) : (comm.rank + 1) * len(own)] = own
    values = comm.sum_floats(slots)
    return [
        EpochProgress(
            epoch=done.epoch,
            steps=done.steps,
            samples=round(values[i]),
            loss_sum=values[i + 1],
            correct=None if done.correct is None else values[i + 2],
            seconds=values[i + 3],
        )
        for i in range(0, len(values), len(own))
    ]


def _summed(comm: Communicator, total: float, correct: float | None, samples: int) -> tuple[float, float | None, int]:
    """``total``, ``correct`` (None stays None) and ``samples`` summed across the processes of
    ``comm``, in one message."""
    total, correct_sum, samples_sum = comm.sum_floats([total, correct or 0.0, samples])
    return total, (None if correct is None else correct_sum), round(samples_sum)


def _progress_bar(loader: DeviceLoader, done: EpochProgress, epochs: int):
    """A tqdm bar over the epoch's samples (starting at those ``done``), or None where it would
    not show (not a terminal): then the loop skips the refresh reads as well."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=loader.local_samples,
        initial=done.samples,
        desc=f"epoch {done.epoch + 1}/{epochs}",
        unit="sample",
        unit_scale=True,
        leave=False,
        disable=None,  # only on a terminal: no bar frames in logs and CI output
        dynamic_ncols=True,
        mininterval=REFRESH_SECONDS,
    )
    return None if bar.disable else bar


class _InterruptFlag:
    """Turns the first Ctrl-C into a flag the loop checks between steps (main thread only);
    a second Ctrl-C raises KeyboardInterrupt as usual. ``requested()`` asks every process of
    ``comm`` (one tiny reduction per step when there are several), so that all stop at the same
    step; ``stopped`` is its last answer."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm
        self.raised = False
        self.stopped = False
        self._previous: Any = None

    def requested(self) -> bool:
        self.stopped = self.comm.any(self.raised)
        return self.stopped

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _check_batch_statistics(model: Sequential, loader: DeviceLoader) -> None:
    """Refuse before training what a BatchNorm layer would refuse at the end of the first
    epoch: a batch of one sample (this process's part of the smallest batch, or that whole
    batch where the layer synchronises its statistics across processes)."""
    smallest, size = loader.smallest_batch_size, loader.comm.size
    per_row = math.prod(loader.x.shape[1:-1])  # the extra batch dimensions of (N, ..., F) inputs
    for layer in model.layers:
        if isinstance(layer, BatchNorm) and (smallest if layer.sync else smallest // size) * per_row < 2:
            where = f"the last batch of each epoch holds {smallest} of {loader.num_samples} samples"
            remedy = "choose another batch size (--batch-size), or leave that batch out (DeviceLoader(drop_last=True))"
            if size > 1 and not layer.sync:
                where += f", split across {size} processes"
                remedy += ", or synchronise the statistics across processes (--sync-batchnorm)"
            raise ValueError(
                f"layer {layer.name!r} needs two samples of every batch for its batch statistics, but {where}: "
                f"{remedy}."
            )


def _check_divergence(history: History, loss: Loss, model: Sequential) -> None:
    """Raise ``TrainingDiverged`` when the last epoch's mean training loss exceeds
    ``DIVERGENCE_FACTOR`` times its reference: the larger of the first epoch's loss in
    ``history`` (from the second epoch on) and the chance-level loss, ln(classes) for
    ``SoftmaxCrossEntropy`` (classes: the model's output width) and ln 2 for
    ``BinaryCrossEntropy``. Other losses have no chance level: their first epoch is not checked."""
    references = {"the first epoch's loss": history.epochs[0]["train_loss"]} if len(history.epochs) > 1 else {}
    if isinstance(loss, (SoftmaxCrossEntropy, BinaryCrossEntropy)):
        classes = 2 if isinstance(loss, BinaryCrossEntropy) else max(2, _output_width(model))
        references[f"ln({classes}), the loss of a uniform guess"] = math.log(classes)
    if not references:
        return
    name, reference = max(references.items(), key=lambda item: item[1])
    last = history.last
    if last["train_loss"] > DIVERGENCE_FACTOR * reference:
        raise TrainingDiverged(
            f"training diverged: the loss rose to {last['train_loss']:.4g} in epoch {last['epoch']}, more than "
            f"{DIVERGENCE_FACTOR:g} times {name} ({reference:.4g}), at learning rate {last['lr']:g}. "
            "Lower the learning rate; divergence_check=False (--no-divergence-check) turns this check off."
        )


def _output_width(model: Sequential) -> int:
    """The number of outputs of ``model``: the width of its last layer with a weight (2 without one)."""
    widths = (int(layer.params["weight"].shape[-1]) for layer in reversed(model.layers) if "weight" in layer.params)
    return next(widths, 2)
