"""sklearn's training math on mlp_xp's pieces: the batch objective (data loss + alpha's L2
term), sklearn's poisson loss, the end-of-iteration ``fit`` callback, and sklearn's way of
changing the learning rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..arrays import Array, namespace
from ..layers import Linear
from ..losses import Loss
from ..model import Sequential
from ..optim import SGD, Optimizer

if TYPE_CHECKING:
    from ._base import BaseMLP


class Objective(Loss):
    """sklearn's batch objective around a data loss: ``loss_scale·data + alpha/(2n)·Σ‖W‖²``.

    The data gradient is multiplied by ``grad_scale``. ``before_step(n)`` runs for each batch
    of n samples, before the optimizer step: it applies sklearn's per-batch optimizer rules (the
    L2 gradient ``(alpha/n)·W`` as weight decay).
    """

    def __init__(
        self,
        data: Loss,
        loss_scale: float,
        grad_scale: float,
        alpha: float,
        weights: list[Linear],
        before_step: Callable[[int], None],
    ):
        self.data, self.loss_scale, self.grad_scale, self.alpha = data, loss_scale, grad_scale, alpha
        self.weights, self.before_step = weights, before_step

    def forward(self, pred: Array, target: Array) -> Array:
        value = self.data.forward(pred, target)
        if self.loss_scale != 1.0:
            value = value * self.loss_scale
        n = pred.shape[0]
        self.before_step(n)
        if self.alpha:
            xp = namespace(pred)
            flat = [xp.reshape(layer.params["weight"], (-1,)) for layer in self.weights]
            value = value + (0.5 * self.alpha / n) * sum(xp.vecdot(w, w) for w in flat)
        return value

    def backward(self) -> Array:
        grad = self.data.backward()
        if self.grad_scale != 1.0:
            grad *= self.grad_scale
        return grad


class HalfPoissonDeviance(Loss):
    """sklearn's poisson loss on raw outputs ``z`` (prediction ``exp(z)``): ``Σ(y·log y − y·z − y
    + exp(z)) / n`` over all outputs; gradient ``(exp(z) − y) / n``."""

    def forward(self, pred: Array, target: Array) -> Array:
        xp, n = namespace(pred), pred.shape[0]
        mean = xp.exp(pred)
        positive = target > 0
        y_log_y = xp.where(
            positive, target * xp.log(xp.where(positive, target, xp.ones_like(target))), xp.zeros_like(target)
        )
        self._grad = (mean - target) / n
        return xp.sum(y_log_y - target * pred - target + mean) / n

    def backward(self) -> Array:
        return self._grad


class EndOfIteration:
    """``fit`` callback doing sklearn's end-of-iteration work: ``n_iter_``, ``t_``, ``loss_curve_``,
    the verbose line, the no-improvement count (training loss, or validation score with early
    stopping, keeping the best weights), learning-rate updates and stopping."""

    def __init__(self, est: BaseMLP, optimizer: Optimizer, n_samples: int, validation: Any, incremental: bool):
        self.est, self.optimizer, self.n_samples = est, optimizer, n_samples
        self.validation, self.incremental = validation, incremental
        self.best_state: dict[str, Array] | None = None
        self.stopped = False

    def on_epoch_end(self, epoch: int, stats: dict[str, Any], model: Sequential) -> bool:
        est = self.est
        est.n_iter_ += 1
        est.t_ += self.n_samples
        est.loss_ = stats["train_loss"]
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        self._count_no_improvement(model)
        sgd = est.solver == "sgd"
        if sgd and est.learning_rate == "invscaling":
            set_lr(self.optimizer, est.learning_rate_init / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change:
            watched = "Validation score" if est.early_stopping else "Training loss"
            msg = f"{watched} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive epochs."
            if not (sgd and est.learning_rate == "adaptive"):
                return self._stop(msg + " Stopping.")
            if self.optimizer.lr <= 1e-6:
                return self._stop(msg + " Learning rate too small. Stopping.")
            set_lr(self.optimizer, self.optimizer.lr / 5.0)
            est._no_improvement_count = 0
            if est.verbose:
                print(f"{msg} Setting learning rate to {self.optimizer.lr:f}")
        return False

    def _stop(self, msg: str) -> bool:
        if self.est.verbose:
            print(msg)
        self.stopped = True
        return True

    def _count_no_improvement(self, model: Sequential) -> None:
        est = self.est
        if self.validation is None:
            last = est.loss_curve_[-1]
            est._no_improvement_count = est._no_improvement_count + 1 if last > est.best_loss_ - est.tol else 0
            est.best_loss_ = min(est.best_loss_, last)
            return
        x_val, y_val = self.validation
        score = est._score_output(est._forward(model, x_val), y_val)
        est.validation_scores_.append(score)
        if est.verbose:
            print(f"Validation score: {score:f}")
        not_better = score < est.best_validation_score_ + est.tol  # False for NaN, as in sklearn
        est._no_improvement_count = est._no_improvement_count + 1 if not_better else 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            xp = model.backend.xp
            self.best_state = {k: xp.asarray(v, copy=True) for k, v in model.state().items()}


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Change the learning rate as sklearn does: its SGD velocity holds ``lr·g`` terms, mlp_xp's
    (torch's) holds ``g`` terms, so the momentum state is rescaled by ``old lr / new lr``."""
    if isinstance(optimizer, SGD) and optimizer.momentum:
        factor = optimizer.lr / lr
        optimizer.load_state_arrays({k: v * factor for k, v in optimizer.state_arrays().items()}, optimizer.steps)
    optimizer.lr = lr
