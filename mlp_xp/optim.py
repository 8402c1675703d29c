"""Optimizers (SGD with momentum/Nesterov, Adam, AdamW) and learning-rate schedules.

Update rules follow torch's, so runs can be compared with torch step for step:
SGD momentum ``v ← μv + g; p ← p − lr·v`` (Nesterov: ``p ← p − lr·(g + μv)``); Adam with bias
correction and ``eps`` added after ``sqrt(v̂)``. Weight decay applies to each layer's
``decay`` parameters (weights, not biases or BatchNorm) unless ``decay_all=True``: as an L2
term added to the gradient (``g += λ·p``) for SGD and Adam, decoupled (``p ← p·(1 − lr·λ)``)
for AdamW. Updates are in place where the library allows (NumPy, CuPy, torch); state lives
on the parameters' device. ``step()`` may modify the gradients in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .arrays import Array, namespace

Schedule = Callable[[int], float]
"""Maps a 0-based epoch to a factor on the base learning rate."""

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "step_decay", "exponential_decay", "cosine_decay", "get_schedule"]


class Optimizer:
    """Base class. ``step()`` updates every parameter of ``model`` from its gradient;
    ``set_epoch(e)`` applies the schedule: ``lr = base_lr · schedule(e)``."""

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
        self.state: dict[str, dict[str, Array]] = {name: {} for name in self.state_names}
        self._slots: list[tuple[str, Any, str, bool]] = []

    def slots(self) -> list[tuple[str, Any, str, bool]]:
        """(full name, layer, key, decays?) for every parameter; listed once, on first use
        (after ``model.init``), since a model's layers and parameter names do not change."""
        if not self._slots:
            self._slots = [
                (f"{layer.name}.{key}", layer, key, self.decay_all or key in layer.decay)
                for layer in self.model.layers
                for key in layer.params
            ]
        return self._slots

    def set_epoch(self, epoch: int) -> None:
        """Set the learning rate for a 0-based epoch from the schedule."""
        if self.schedule is not None:
            self.lr = self.base_lr * self.schedule(epoch)

    def step(self) -> None:
        self.steps += 1
        for name, layer, key, decays in self.slots():
            grad = layer.grads.get(key)
            if grad is None:
                raise RuntimeError(f"no gradient for {name}: call model.backward() before optimizer.step().")
            param = layer.params[key]
            if decays and self.weight_decay:
                grad = self._apply_decay(param, grad)  # may scale param in place (AdamW)
            layer.params[key] = self._update(name, param, grad)

    def _apply_decay(self, param: Array, grad: Array) -> Array:
        grad += self.weight_decay * param
        return grad

    def _update(self, name: str, param: Array, grad: Array) -> Array:
        raise NotImplementedError

    def _buffer(self, which: str, name: str, like: Array) -> Array:
        store = self.state[which]
        if name not in store:
            store[name] = namespace(like).zeros_like(like)
        return store[name]

    def state_arrays(self) -> dict[str, Array]:
        """Optimizer state as ``"<state>/<param>"`` arrays, for checkpoints."""
        return {f"{which}/{name}": a for which, store in self.state.items() for name, a in store.items()}

    def load_state_arrays(self, arrays: dict[str, Array], steps: int) -> None:
        self.steps = steps
        for key, value in arrays.items():
            which, _, name = key.partition("/")
            if which not in self.state:
                raise ValueError(f"optimizer state {key!r} does not belong to {type(self).__name__}.")
            self.state[which][name] = value


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    state_names = ("momentum",)

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

    def _update(self, name: str, param: Array, grad: Array) -> Array:
        if self.momentum:
            velocity = self._buffer("momentum", name, param)
            velocity *= self.momentum
            velocity += grad
            self.state["momentum"][name] = velocity
            if not self.nesterov:
                param -= self.lr * velocity  # velocity is state: never scaled in place
                return param
            grad += self.momentum * velocity
        grad *= self.lr  # the gradient is ours to scale: no temporary
        param -= grad
        return param


class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch's bias correction; L2 weight decay added to the gradient."""

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

    def _update(self, name: str, param: Array, grad: Array) -> Array:
        xp = namespace(param)
        beta1, beta2 = self.betas
        m = self._buffer("exp_avg", name, param)
        v = self._buffer("exp_avg_sq", name, param)
        m *= beta1
        m += (1.0 - beta1) * grad
        v *= beta2
        v += (1.0 - beta2) * (grad * grad)
        self.state["exp_avg"][name], self.state["exp_avg_sq"][name] = m, v
        correction1 = 1.0 - beta1**self.steps
        correction2 = 1.0 - beta2**self.steps
        denom = xp.sqrt(v)
        denom *= 1.0 / math.sqrt(correction2)
        denom += self.eps
        param -= (self.lr / correction1) * (m / denom)
        return param


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p ← p·(1 − lr·λ)`` before
    the Adam step. Default ``weight_decay=0.01`` as in torch."""

    def __init__(self, model: Any, lr: float = 1e-3, *, weight_decay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(model, lr, weight_decay=weight_decay, **kwargs)

    def _apply_decay(self, param: Array, grad: Array) -> Array:
        param *= 1.0 - self.lr * self.weight_decay
        return grad


def step_decay(step: int = 1, gamma: float = 0.5) -> Schedule:
    """Multiply the learning rate by ``gamma`` every ``step`` epochs (``step=1, gamma=0.5``
    halves it after every epoch)."""
    return lambda epoch: gamma ** (epoch // step)


def exponential_decay(gamma: float) -> Schedule:
    """``lr = base_lr · gamma**epoch``."""
    return lambda epoch: gamma**epoch


def cosine_decay(epochs: int, min_factor: float = 0.0) -> Schedule:
    """Cosine annealing from ``base_lr`` (epoch 0) towards ``min_factor·base_lr`` at ``epochs``."""
    return lambda epoch: min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


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
