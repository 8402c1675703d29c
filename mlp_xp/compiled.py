"""Compiled training: ``train_step`` traced once and run as one program (``jax.jit``,
``torch.compile``); on JAX a whole epoch of full batches runs as one ``lax.scan``.

The package's objects keep their state as attributes: the flat parameters, BatchNorm's
running statistics, the optimizer's buffers, learning rate and step count, dropout's RNG key.
``CompiledSteps`` turns ``train_step`` into a pure function of that state: the state goes in
as arrays, is bound to the objects while the step runs (or is traced), and comes back out as
arrays; afterwards the objects get concrete arrays back, so no tracer stays on an object and
eager code (evaluation, checkpoints) sees the current state between calls.

A scan carries the parameters and the optimizer's buffers per parameter (split from the flat
buffers once at entry, joined once at exit): under XLA, slicing the carried buffer for every
matrix multiply and concatenating the gradients every step cost more than the few whole-buffer
updates save. The optimizer then updates each parameter with the same rule (``parts`` mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Number
from typing import Any

from .arrays import Array, isdtype, namespace

State = dict[str, Any]


class CompiledSteps:
    """The training steps of ``model``/``loss``/``optimizer`` over ``loader``, compiled for
    the loader's backend. ``epoch()`` yields ``(losses, corrects, samples)`` per compiled call:
    one block of per-step values for a scanned epoch, or one step's scalars."""

    def __init__(self, model: Any, loss: Any, optimizer: Any, loader: Any) -> None:
        self.model, self.loss, self.optimizer, self.loader = model, loss, optimizer, loader
        self.backend = loader.backend
        self._compile()  # CompileUnsupportedError where the backend has no compiler
        if getattr(loss, "check_labels", False):
            raise ValueError(
                "a compiled step cannot check labels on the host: use SoftmaxCrossEntropy(check_labels=False) "
                "with a DeviceLoader given num_classes, which validates the labels once."
            )
        optimizer.prepare()
        if loader.y is not None:  # a memo first filled inside a trace fails torch's guard on the next call
            isdtype(namespace(loader.y), loader.y.dtype, "integral")
        self._scalars: dict[str, tuple[float, Array]] = {}

    def _compile(self) -> None:
        """Compile the step (and on JAX the scan); they trace on their first call, with the
        objects' ``settings`` of then (which ``epoch`` records)."""
        self.settings: list[dict[str, Any]] | None = None
        self.step = self.backend.compile_step(self._pure_step)
        self.scan = self.backend.compile_step(self._pure_scan) if self.backend.scans else None

    @classmethod
    def reuse(cls, model: Any, loss: Any, optimizer: Any, loader: Any) -> CompiledSteps:
        """The steps an earlier ``fit`` compiled for these same objects (kept on the optimizer),
        else new ones: a run split over several ``fit`` calls compiles once, not once per call
        (and torch, whose recompiles are capped, does not fall back to eager)."""
        held = getattr(optimizer, "_compiled_steps", None)
        if held is not None and held.model is model and held.loss is loss and held.loader is loader:
            return held
        optimizer._compiled_steps = steps = cls(model, loss, optimizer, loader)
        return steps

    # -- state: objects <-> arrays -----------------------------------------------------------

    def _read(self) -> State:
        """The state the step reads and writes, as held by the objects now: the flat buffers,
        or per-parameter arrays while a scan carries them (``optimizer.parts`` is set)."""
        optimizer, flat = self.optimizer, self.model.flat
        parts = optimizer.parts
        state: State = {
            "params": flat.data if parts is None else flat.arrays(),
            "buffers": [dict(layer.buffers) for layer in self.model.layers],
            "optim": dict(optimizer.state) if parts is None else {which: dict(p) for which, p in parts.items()},
            "lr": optimizer.lr,
            "steps": optimizer.steps,
            "rng": [generator.state for generator in self._generators()],
        }
        if optimizer.weight_decay:  # 0 ↔ λ changes the state's structure: a retrace, not a stale trace
            state["decay"] = optimizer._decay
        return state

    def _generators(self) -> list[Any]:
        """The layers' random generators that carry a state (Dropout's), as the layers hold them
        now: ``model.to`` or an assignment may have replaced one since the steps were compiled."""
        rngs = (getattr(layer, "rng", None) for layer in self.model.layers)
        return [rng for rng in rngs if getattr(rng, "state", None) is not None]

    def _write(self, state: State) -> None:
        """Bind ``state`` to the objects, all but the parameters (``FlatParameters`` binds those)."""
        optimizer = self.optimizer
        for layer, buffers in zip(self.model.layers, state["buffers"]):
            layer.buffers.update(buffers)
        if isinstance(state["params"], dict):
            optimizer.parts = {which: dict(p) for which, p in state["optim"].items()}
        else:
            optimizer.parts, optimizer.state = None, dict(state["optim"])
        optimizer.lr, optimizer.steps = state["lr"], state["steps"]
        for generator, key in zip(self._generators(), state["rng"]):
            generator.set_state(key)
        if "decay" in state:
            optimizer._decay = state["decay"]

    def _device_state(self, per_parameter: bool = False) -> State:
        """The objects' state with the learning rate, the step count and (for a per-parameter
        update) the weight decay λ as device scalars in the parameters' dtype, uploaded only
        when their host values change: a trace never bakes them in. The optimizer is prepared
        here, outside any trace (its weight decay may have changed since)."""
        optimizer = self.optimizer
        optimizer.prepare()
        state = self._read()
        hosts = {"lr": optimizer.lr, "steps": optimizer.steps}
        if "decay" in state and per_parameter:
            hosts["decay"] = optimizer.weight_decay
        for name, host in hosts.items():
            cached = self._scalars.get(name)
            if cached is None or cached[0] != host:
                cached = self._scalars[name] = (host, self._scalar(host))
            state[name] = cached[1]
        return state

    def _scalar(self, value: float) -> Array:
        return self.backend.asarray(value, self.model.flat.data.dtype)

    def _accept(self, state: State, steps: int) -> None:
        """Bind a call's concrete output state; the host keeps counting steps itself, and the
        weight decay stays as prepared (a step never changes it)."""
        host_lr, host_steps = self.optimizer.lr, self.optimizer.steps + steps
        self._scalars["steps"] = (host_steps, state["steps"])
        self.model.flat.install(state["params"])
        self._write({name: value for name, value in state.items() if name != "decay"})
        self.optimizer.lr, self.optimizer.steps = host_lr, host_steps

    # -- the pure functions that are compiled ----------------------------------------------------

    def _pure_step(self, state: State, x: Array, y: Array) -> tuple[State, Array, Array | None]:
        """One ``train_step`` as a function of ``state`` (flat or per-parameter, as it comes)."""
        from .train import train_step

        flat = self.model.flat
        outside, parameters = self._read(), flat.snapshot()
        if isinstance(state["params"], dict):
            flat.bind(state["params"])
        else:
            flat.install(state["params"])
        self._write(state)
        try:
            value, correct = train_step(self.model, self.loss, self.optimizer, x, y)
            return self._read(), value, correct
        finally:  # the objects get back what they held, as they held it: no tracer stays on them
            self._write(outside)
            flat.restore(parameters)
            for layer in self.model.layers:  # _call gave them none
                layer.grads = {}

    def _pure_scan(self, state: State, data: tuple[Array, Array], index: Array) -> tuple[State, Array, Any]:
        """``_pure_step`` over the rows of ``index`` (one batch each), carrying the parameters
        and optimizer buffers per parameter; flat state in and out, with the per-step losses
        and correct counts."""
        loader, flat = self.loader, self.model.flat

        def body(carry: State, rows: Array) -> tuple[State, Any]:
            outside = loader.x, loader.y
            loader.x, loader.y = data
            try:
                x, y = loader.gather(rows)
            finally:
                loader.x, loader.y = outside
            carry, value, correct = self._pure_step(carry, x, y)
            return carry, (value, correct)

        split = {which: flat.split(buffer) for which, buffer in state["optim"].items()}
        carry = dict(state, params=flat.split(state["params"]), optim=split)
        carry, (values, counts) = self.backend.scan(body, carry, index)
        joined = {which: flat.join(parts) for which, parts in carry["optim"].items()}
        return dict(carry, params=flat.join(carry["params"]), optim=joined), values, counts

    # -- one epoch --------------------------------------------------------------------------------

    def epoch(self) -> Iterator[tuple[Array, Array | None, int]]:
        """Run one epoch of ``loader`` (its next order, from the batch it starts at); yields per
        compiled call."""
        now = settings(self.model, self.loss, self.optimizer)
        if self.settings is not None and now != self.settings:  # the traces hold them as constants
            self._compile()
        self.settings = now
        loader, xp = self.loader, self.backend.xp
        size = loader.batch_size
        order, start = loader.start()
        if order is None:
            order = xp.arange(loader.n, dtype=xp.int64, device=self.backend.device)
        end = loader.num_samples // size * size  # the end of the full batches
        if self.scan is not None and end > start:
            steps = (end - start) // size
            index = xp.reshape(order[start:end], (steps, size))
            values, counts = self._call(self.scan, steps, (loader.x, loader.y), index)
            yield values, counts, end - start
            start = end
        for first in range(start, loader.num_samples, size):
            x, y = loader.gather(order[first : first + size])
            value, count = self._call(self.step, 1, x, y)
            yield value, count, x.shape[0]

    def _call(self, compiled: Any, steps: int, *args: Any) -> tuple[Any, ...]:
        """``compiled(state, *args)`` on the device state, its output state accepted; returns
        the other outputs. Meanwhile the optimizer holds its learning rate and step count as
        the device scalars and the layers hold no gradients and no forward caches (an eager
        step's gradients and an evaluation's caches come back after): a compiler that replays
        the Python (torch.compile) then sees the same objects on every call, not host numbers
        that change per call or arrays left by eager work (each a recompile)."""
        optimizer, layers = self.optimizer, self.model.layers
        state = self._device_state(per_parameter=compiled is self.scan)
        host, held = (optimizer.lr, optimizer.steps), [(layer.grads, layer.cache) for layer in layers]
        optimizer.lr, optimizer.steps = state["lr"], state["steps"]
        for layer in layers:
            layer.grads, layer.cache = {}, {}
        try:
            state, *outputs = compiled(state, *args)
        finally:
            optimizer.lr, optimizer.steps = host
            for layer, (grads, cache) in zip(layers, held):
                layer.grads, layer.cache = grads, cache
        self._accept(state, steps)
        return tuple(outputs)


NOT_SETTINGS = frozenset({"lr", "base_lr", "steps", "training", "input_grad", "name"})
"""Attributes ``settings`` leaves out: the steps take the learning rate and step count as device
scalars, ``fit`` sets the mode, each backward sets ``input_grad``, and names are not computed with."""


def settings(model: Any, loss: Any, optimizer: Any) -> list[dict[str, Any]]:
    """The public numbers, flags, strings and tuples of the optimizer, the loss and each layer
    (momentum, betas, eps, decay_all, Dropout's p, BatchNorm's momentum...): a trace bakes them
    in as constants, so the steps are compiled again when one changes."""
    def setting(name: str, value: Any) -> bool:
        constant = isinstance(value, (bool, Number, str, tuple))  # NumPy scalars (from a grid) are Numbers too
        return constant and not name.startswith("_") and name not in NOT_SETTINGS

    return [{k: v for k, v in vars(o).items() if setting(k, v)} for o in (optimizer, loss, *model.layers)]
