"""Optimizers (SGD with momentum/Nesterov, Adam, AdamW) and learning-rate schedules.

Update rules follow torch's, so runs can be compared with torch step for step:
SGD momentum ``v ← μv + g; p ← p − lr·v`` (Nesterov: ``p ← p − lr·(g + μv)``); Adam with bias
correction and ``eps`` added after ``sqrt(v̂)``. Weight decay applies to each layer's
``decay`` parameters (weights, not biases or BatchNorm) unless ``decay_all=True``: as an L2
term added to the gradient (``g += λ·p``) for SGD and Adam, decoupled (``p ← p·(1 − lr·λ)``)
for AdamW.

Every update works on the model's whole flat parameter buffer (``model.flat``) and a flat
gradient, with flat state buffers of the same layout: a handful of whole-buffer operations per
step, whatever the number of layers. Updates are in place where the library allows; the
result is installed through ``FlatParameters.install`` (which rebinds where arrays are
immutable). ``lr`` and ``steps`` may be device scalars while a compiled step is traced.

Where the backend says ``updates_per_parameter`` (NumPy: a call costs little there, and
gathering the gradients into one buffer costs a pass over all of them), ``step()`` runs the
same update on each parameter's views of those buffers instead, with the same result. A
compiled scan does the same on the per-parameter arrays it carries (``parts``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from .arrays import Array, moved, namespace

Schedule = Callable[[int], float]
"""Maps a 0-based epoch to a factor on the base learning rate."""

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "step_decay", "exponential_decay", "cosine_decay", "get_schedule"]


class Optimizer:
    """Base class. ``step()`` updates every parameter of ``model`` from its gradient;
    ``set_epoch(e)`` applies the schedule: ``lr = base_lr · schedule(e)``.

    ``state`` maps each name of ``state_names`` to a flat buffer in the parameters' layout,
    created by ``prepare()`` (called by the first step). While a compiled scan runs, ``parts``
    holds that state per parameter instead (``{state name: {"<layer>.<key>": array}}``), and
    ``step()`` updates the per-parameter arrays the layers hold."""

    state_names: tuple[str, ...] = ()

    def __init__(
        self,
        model: Any,
        lr: float,
        weight_decay: float = 0.0,
        decay_all: bool = False,
        schedule: Schedule | None = None,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}.")
        if weight_decay < 0:
            raise ValueError(f"weight decay must be non-negative, got {weight_decay}.")
        self.model = model
        self.base_lr = self.lr = lr
        self.weight_decay = weight_decay
        self.decay_all = decay_all
        self.schedule = schedule
        self.steps = 0
        self.state: dict[str, Array] = {}
        self.parts: dict[str, dict[str, Array]] | None = None
        self._decay: Array | float = weight_decay  # the flat mask × λ once prepared (unless decay_all)
        self._decay_for: tuple[float, bool] | None = None  # the (λ, decay_all) that _decay was made for
        self._mask: Array | None = None
        self._on: tuple[Any, str] | None = None  # the model's (backend, dtype) the state was made on
        self._plan_key: tuple[Array, ...] | None = None  # the buffers _plan_steps views
        self._plan_steps: list[tuple[Any, Array, dict[str, Array]]] = []

    def set_epoch(self, epoch: int) -> None:
        """Set the learning rate for a 0-based epoch from the schedule."""
        if self.schedule is not None:
            self.lr = self.base_lr * self.schedule(epoch)

    def prepare(self) -> None:
        """Create the state buffers (zeros) and the weight-decay factors on the parameters'
        device, once, and move them after ``model.to(...)``; a compiled step calls this before
        tracing so that nothing is created inside the trace."""
        flat = self._flat()
        flat.sync()
        on = (self.model.backend, self.model.dtype)
        if self._on is not None and (on[0] is not self._on[0] or on[1] != self._on[1]):
            self._follow_model(self._on[0])
        self._on = on
        if not self.state and self.state_names:
            xp = namespace(flat.data)
            self.state = {name: xp.zeros_like(flat.data) for name in self.state_names}
        if self._decay_for != (self.weight_decay, self.decay_all):  # either may change between steps
            if self.decay_all or not self.weight_decay:
                self._decay = self.weight_decay
            else:
                if self._mask is None:
                    self._mask = flat.decay_mask()
                self._decay = self._mask * self.weight_decay
            self._decay_for = (self.weight_decay, self.decay_all)

    def _follow_model(self, source: Any) -> None:
        """After ``model.to(...)``: the state moves to the model's new backend and dtype (its
        values kept, through the host), and the decay factors are made again there."""
        self.state = moved(self.state, source, self.model.backend, self.model.dtype)
        self._mask = self._decay_for = None

    def _flat(self) -> Any:
        """The model's flat parameter buffer; a clear error before ``model.init``."""
        if self.model.flat is None:
            raise RuntimeError("the model has no parameters to optimize: call model.init(backend) first.")
        return self.model.flat

    def step(self) -> None:
        """Update the parameters from the gradients the last ``model.backward`` stored. The
        step may use the layers' gradients as scratch space (the per-parameter update scales
        them in place): read them before the step, not after."""
        flat = self._flat()
        if self.parts is not None:  # inside a compiled scan: prepared outside, nothing to create
            self.steps += 1
            flat.bind(self._update_parts(flat, self.parts, self._decay))
        elif self.model.backend.updates_per_parameter:
            self.prepare()
            self.steps += 1
            for slot, param, state in self._plan(flat):
                if self._update_one(slot, param, flat.gradient(slot), state, self.weight_decay) is not param:
                    raise RuntimeError(
                        f"{self.model.backend.spec} asks for per-parameter updates, but its arrays do not update "
                        "in place: its backend must leave updates_per_parameter False."
                    )
        else:
            self.apply(flat.grads())

    def apply(self, grads: Array) -> None:
        """Update the parameters from a flat gradient in ``model.flat``'s layout (which the
        update may modify in place): the step after any gradient reduction across processes."""
        self.prepare()
        self.steps += 1
        flat = self.model.flat
        params = flat.data
        if self.weight_decay:
            params, grads = self._apply_decay(params, grads, self._decay)
        flat.install(self._update(params, grads, self.state))

    def _plan(self, flat: Any) -> list[tuple[Any, Array, dict[str, Array]]]:
        """Each parameter's slot, its view of the buffer and its views of the state buffers
        (``{state name: view}``), for the per-parameter update: made once, and again when the
        buffer or the state buffers are replaced (eager NumPy only, where no tracer exists)."""
        key = (flat.data, *self.state.values())
        if self._plan_key is None or len(key) != len(self._plan_key) or not all(map(operator.is_, key, self._plan_key)):
            views = {which: flat.split(buffer) for which, buffer in self.state.items()}
            params = flat.arrays()
            self._plan_steps = [
                (slot, params[slot.name], {which: views[which][slot.name] for which in views}) for slot in flat
            ]
            self._plan_key = key
        return self._plan_steps

    def _update_parts(self, flat: Any, parts: dict[str, dict[str, Array]], decay: Array | float) -> dict[str, Array]:
        """``apply``'s update parameter by parameter on the arrays a compiled scan carries:
        the layers' parameters and gradients, and ``parts`` (``{state name: {parameter name:
        array}}``, updated there). Returns the new parameters by name."""
        updated = {}
        for slot in flat:
            state = {which: arrays[slot.name] for which, arrays in parts.items()}
            updated[slot.name] = self._update_one(slot, slot.layer.params[slot.key], flat.gradient(slot), state, decay)
            for which, array in state.items():
                parts[which][slot.name] = array
        return updated

    def _update_one(self, slot: Any, param: Array, grad: Array, state: dict[str, Array], decay: Array | float) -> Array:
        """One parameter's update, with weight decay ``decay`` (λ) where it applies to it."""
        if self.weight_decay and (self.decay_all or slot.decays):
            param, grad = self._apply_decay(param, grad, decay)
        return self._update(param, grad, state)

    def _apply_decay(self, params: Array, grads: Array, decay: Array | float) -> tuple[Array, Array]:
        """Weight decay with factor ``decay`` (λ, or the flat mask × λ)."""
        grads += decay * params
        return params, grads

    def _update(self, params: Array, grads: Array, state: dict[str, Array]) -> Array:
        """The update of ``params`` (the flat buffer, or one parameter) from ``grads`` and the
        matching buffers in ``state`` (``{state name: array}``), which it updates in place or
        rebinds there; returns the new parameters (``params`` itself where updated in place)."""
        raise NotImplementedError

    def state_arrays(self) -> dict[str, Array]:
        """Optimizer state as ``"<state>/<layer>.<key>"`` arrays (views), for checkpoints."""
        flat = self.model.flat
        return {f"{which}/{name}": a for which, buffer in self.state.items() for name, a in flat.split(buffer).items()}

    def load_state_arrays(self, arrays: dict[str, Array], steps: int) -> None:
        """Replace the state and ``steps`` from ``state_arrays``-style arrays (every parameter of
        every state, or no arrays at all); a ``ValueError`` leaves the optimizer as it was."""
        grouped: dict[str, dict[str, Array]] = {}
        for key, value in arrays.items():
            which, _, name = key.partition("/")
            if which not in self.state_names:
                raise ValueError(f"optimizer state {key!r} does not belong to {type(self).__name__}.")
            grouped.setdefault(which, {})[name] = value
        if grouped and set(grouped) != set(self.state_names):
            raise ValueError(f"optimizer state lacks {sorted(set(self.state_names) - set(grouped))}.")
        flat = self.model.flat
        state = {which: flat.join(parts) for which, parts in grouped.items()}  # join raises for a missing parameter
        self.state, self._on, self.steps = state, (self.model.backend, self.model.dtype), steps


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(
        self,
        model: Any,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        decay_all: bool = False,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__(model, lr, weight_decay, decay_all, schedule)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0.")
        self.momentum = momentum
        self.nesterov = nesterov
        self.state_names = ("momentum",) if momentum else ()

    def _update(self, params: Array, grads: Array, state: dict[str, Array]) -> Array:
        if self.momentum:
            velocity = state["momentum"]
            velocity *= self.momentum
            velocity += grads
            state["momentum"] = velocity
            if not self.nesterov:
                params -= self.lr * velocity  # velocity is state: never scaled in place
                return params
            grads += self.momentum * velocity
        grads *= self.lr  # the gradient is ours to scale: no temporary
        params -= grads
        return params


class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch's bias correction; L2 weight decay added to the gradient.

    Computed as ``p ← p − (lr·√c₂/c₁) · m / (√v + eps·√c₂)`` (c = 1 − βᵗ), which equals torch's
    ``p ← p − (lr/c₁) · m / (√v/√c₂ + eps)`` with one whole-buffer operation fewer."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        model: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decay_all: bool = False,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__(model, lr, weight_decay, decay_all, schedule)
        self.betas = betas
        self.eps = eps

    def _update(self, params: Array, grads: Array, state: dict[str, Array]) -> Array:
        xp = namespace(params)
        beta1, beta2 = self.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # m ← β₁m + (1−β₁)g and v ← β₂v + (1−β₂)g², in place (as torch's lerp_/addcmul_: the
        # shorter β(m − g) + g cancels while v ≪ g², 500 float32 ulps off at β₂ = 0.999)
        squared = grads * grads
        squared *= 1.0 - beta2
        grads *= 1.0 - beta1  # the gradient is ours to scale (as SGD's): no second temporary
        m *= beta1
        m += grads
        v *= beta2
        v += squared
        state["exp_avg"], state["exp_avg_sq"] = m, v
        root2 = (1.0 - beta2**self.steps) ** 0.5
        denom = xp.sqrt(v)
        denom += self.eps * root2
        step = m / denom
        step *= self.lr * root2 / (1.0 - beta1**self.steps)
        params -= step
        return params


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p ← p·(1 − lr·λ)`` before
    the Adam step. Default ``weight_decay=0.01`` as in torch."""

    def __init__(self, model: Any, lr: float = 1e-3, *, weight_decay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(model, lr, weight_decay=weight_decay, **kwargs)

    def _apply_decay(self, params: Array, grads: Array, decay: Array | float) -> tuple[Array, Array]:
        params -= self.lr * (decay * params)
        return params, grads


def step_decay(step: int = 1, gamma: float = 0.5) -> Schedule:
    """Multiply the learning rate by ``gamma`` every ``step`` epochs (``step=1, gamma=0.5``
    halves it after every epoch)."""
    _check_schedule("step_decay", step=step, gamma=gamma)
    return lambda epoch: gamma ** (epoch // step)


def exponential_decay(gamma: float) -> Schedule:
    """``lr = base_lr · gamma**epoch``."""
    _check_schedule("exponential_decay", gamma=gamma)
    return lambda epoch: gamma**epoch


def cosine_decay(epochs: int, min_factor: float = 0.0) -> Schedule:
    """Cosine annealing from ``base_lr`` (epoch 0) towards ``min_factor·base_lr`` at ``epochs``."""
    _check_schedule("cosine_decay", epochs=epochs, min_factor=min_factor)
    return lambda epoch: min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


def _check_schedule(name: str, **values: float) -> None:
    """``ValueError`` for a schedule argument out of range: ``step`` and ``epochs`` at least 1,
    ``gamma`` in (0, 1] (a decay), ``min_factor`` in [0, 1]."""
    allowed = {
        "step": (lambda v: v >= 1, "at least 1"),
        "epochs": (lambda v: v >= 1, "at least 1"),
        "gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
        "min_factor": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    }
    for key, value in values.items():
        holds, where = allowed[key]
        if not holds(value):
            raise ValueError(f"{name}: {key}={value} must be {where}.")


def get_schedule(name: str | None, epochs: int, gamma: float = 0.5, step: int = 1) -> Schedule | None:
    """A schedule by CLI name: ``none``, ``step``, ``exp`` or ``cosine``."""
    if name in (None, "none"):
        return None
    if name == "step":
        return step_decay(step, gamma)
    if name == "exp":
        return exponential_decay(gamma)
    if name == "cosine":
        return cosine_decay(epochs)
    raise ValueError(f"unknown learning-rate schedule {name!r}; choose from none, step, exp, cosine.")
