"""The methods a case times: each trains the case's model from the same initial weights on the
same data in the same sample order, one whole epoch per ``epoch(e)`` call, finished on the
device (synchronized) and with the epoch's mean loss read back to the host (``last_loss``).
``weights()`` returns the current (weight (in, out), bias) pairs as host arrays.

``PackageEpoch``
    mlp_xp's user-facing loop through its public API: ``make_mlp`` + ``DeviceLoader`` +
    ``SoftmaxCrossEntropy`` + ``SGD``/``Adam`` + ``fit``; ``compile=True`` is ``fit(...,
    compile=True)`` (the package's compiled variant).
``HandEpoch``
    A hand-written loop in NumPy (CuPy on a GPU) doing the package's math operation for
    operation (so that the two agree to rounding), per parameter instead of on one flat
    buffer; ``metrics=True`` also keeps each step's loss and the correct count on the device.
``TorchEpoch``
    PyTorch eager: ``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD``/``optim.Adam``.
``JaxScanEpoch``
    Hand-written JAX, the compiled peer: ``jax.jit`` over a ``lax.scan`` of the epoch's full
    batches (``jax.value_and_grad`` of the loss), the last, smaller batch as one jitted step,
    per-step loss and correct count returned as arrays, as the package's compiled JAX epoch does.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from .. import DeviceLoader, SoftmaxCrossEntropy, fit
from ..backends import Backend
from .cases import ADAM_BETAS, ADAM_EPS, CLASSES, SEED, Case, epoch_order, package_model, package_optimizer

Weights = list[tuple[np.ndarray, np.ndarray]]


def weighted_mean(step_losses: np.ndarray, samples: int, batch_size: int) -> float:
    """An epoch's mean loss from its per-step mean losses (all steps full but the last)."""
    sizes = np.full(len(step_losses), float(batch_size))
    sizes[-1] = samples - (len(step_losses) - 1) * batch_size
    return float(np.dot(np.asarray(step_losses, dtype=np.float64), sizes) / samples)


class PackageEpoch:
    """mlp_xp's own loop (eager, or ``compile=True``)."""

    def __init__(self, backend: Backend, x: np.ndarray, y: np.ndarray, case: Case, compile: bool = False):
        self.backend, self.compile = backend, compile
        self.model = package_model(case.hidden).init(backend, seed=SEED)
        self.loader = DeviceLoader(x, y, backend, batch_size=case.batch_size, seed=SEED, num_classes=CLASSES)
        self.loss = SoftmaxCrossEntropy(check_labels=False)
        self.optimizer = package_optimizer(case, self.model)
        self.last_loss: float | None = None

    def epoch(self, epoch: int) -> None:
        history = fit(
            self.model,
            self.loss,
            self.optimizer,
            self.loader,
            epochs=epoch + 1,
            start_epoch=epoch,
            progress=False,
            log=None,
            compile=self.compile,
        )
        if history.interrupted:  # fit took the Ctrl-C: stop the benchmark, not just this epoch
            raise KeyboardInterrupt
        self.backend.synchronize(self.model.flat.data)
        self.last_loss = history.last["train_loss"]

    def weights(self) -> Weights:
        host = self.backend.to_numpy
        return [(host(layer.params["weight"]), host(layer.params["bias"])) for layer in self.model if layer.params]


class HandEpoch:
    """Hand-written loop in NumPy (or CuPy: ``lib`` is the module, ``device`` its Device).

    ``metrics=False`` is the reference's ``numpy_epoch`` (shared/reference/epoch_reference.py)
    generalised to any depth; ``metrics=True`` adds what the package's loop also computes:
    each step's loss written into a device array and the correct-prediction count added to a
    device scalar, read once at the end of the epoch. SGD or Adam in the package's arrangement
    (``Adam`` in optim.py), per parameter."""

    def __init__(self, lib: Any, x, y, weights: Weights, case: Case, metrics: bool, device: Any = None):
        self.lib, self.batch_size, self.metrics, self.device = lib, case.batch_size, metrics, device
        self.optimizer, self.lr, self.steps = case.optimizer, case.lr, 0
        with self._on_device():
            self.x, self.labels = lib.asarray(x), lib.asarray(y)
            self.onehot = lib.eye(CLASSES, dtype=lib.float32)[self.labels]
            self.params = [lib.array(a, dtype=lib.float32) for pair in weights for a in pair]
            self.moments = [(lib.zeros_like(p), lib.zeros_like(p)) for p in self.params]
        self.last_loss: float | None = None
        self.last_accuracy: float | None = None

    def _on_device(self):
        return self.device if self.device is not None else contextlib.nullcontext()

    def epoch(self, epoch: int) -> None:
        lib, B = self.lib, self.batch_size
        n = len(self.x)
        with self._on_device():
            perm = lib.asarray(epoch_order(n, epoch))
            steps = -(-n // B)
            losses = lib.zeros(steps, dtype=lib.float32)
            correct = lib.zeros((), dtype=lib.int64)
            for step in range(steps):
                idx = perm[step * B : (step + 1) * B]
                logits = self._step(self.x[idx], self.onehot[idx], losses, step)
                if self.metrics:
                    correct += lib.count_nonzero(logits.argmax(1) == self.labels[idx])
            if self.metrics:
                host = losses.get() if hasattr(losses, "get") else losses
                self.last_loss = weighted_mean(host, n, B)
                self.last_accuracy = int(correct) / n
            if self.device is not None:
                self.device.synchronize()

    def _step(self, x, target, losses, step: int) -> Any:
        """One training step on the batch ``x`` (one-hot ``target``); returns the logits."""
        lib, params = self.lib, self.params
        acts = [x]
        for w, b in zip(params[:-2:2], params[1:-2:2]):
            z = acts[-1] @ w
            z += b
            acts.append(lib.maximum(z, 0.0))
        z = acts[-1] @ params[-2]
        z += params[-1]
        shifted = z - z.max(1, keepdims=True)
        g = lib.exp(shifted)
        total = g.sum(1, keepdims=True)
        if self.metrics:
            losses[step] = (target * (lib.log(total) - shifted)).sum() / len(x)
        g /= total
        g -= target
        g *= 1.0 / len(x)
        grads = [None] * len(params)
        for i in range(len(acts) - 1, -1, -1):
            w = params[2 * i]
            grads[2 * i], grads[2 * i + 1] = acts[i].T @ g, g.sum(0)
            if i:
                g = (g @ w.T) * (acts[i] > 0)
        self.steps += 1
        for p, grad, moments in zip(params, grads, self.moments):
            self._update(p, grad, *moments)
        return z

    def _update(self, p, g, m, v) -> None:
        if self.optimizer == "sgd":
            g *= self.lr
            p -= g
            return
        (beta1, beta2), t = ADAM_BETAS, self.steps
        m *= beta1
        m += (1.0 - beta1) * g
        squared = g * g
        squared *= 1.0 - beta2
        v *= beta2
        v += squared
        root2 = (1.0 - beta2**t) ** 0.5
        denom = self.lib.sqrt(v)
        denom += ADAM_EPS * root2
        step = m / denom
        step *= self.lr * root2 / (1.0 - beta1**t)
        p -= step

    def weights(self) -> Weights:
        host = [p.get() if hasattr(p, "get") else np.array(p) for p in self.params]
        return list(zip(host[::2], host[1::2]))


class TorchEpoch:
    """PyTorch eager on ``device`` ("cpu" or "cuda:N"), the package's initial weights."""

    def __init__(self, device: str, x, y, weights: Weights, case: Case):
        import torch

        self.torch, self.device, self.batch_size = torch, torch.device(device), case.batch_size
        layers: list[Any] = []
        for w, b in weights:
            linear = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T.copy()))
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers[:-1]).to(self.device)
        if case.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=case.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=case.lr)
        self.lossf = torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        self.last_loss: float | None = None

    def epoch(self, epoch: int) -> None:
        torch, B, n = self.torch, self.batch_size, len(self.x)
        perm = torch.from_numpy(epoch_order(n, epoch)).to(self.device)
        steps = -(-n // B)
        losses = torch.zeros(steps, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for step in range(steps):
            idx = perm[step * B : (step + 1) * B]
            xb, yb = self.x[idx], self.y[idx]
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(xb)
            loss = self.lossf(out, yb)
            loss.backward()
            self.optimizer.step()
            losses[step] = loss.detach()
            correct += (out.argmax(1) == yb).sum()
        self.last_loss = weighted_mean(losses.cpu().numpy(), n, B)  # also waits for the device

    def weights(self) -> Weights:
        linears = [m for m in self.model if isinstance(m, self.torch.nn.Linear)]
        return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy()) for m in linears]


class JaxScanEpoch:
    """Hand-written JAX on ``device`` (a ``jax.Device``): the compiled peer of the package's
    ``fit(compile=True)`` on JAX. The carry is (parameters, Adam moments, step count)."""

    def __init__(self, device: Any, x, y, weights: Weights, case: Case):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp, self.device, self.batch_size = jax, jnp, device, case.batch_size
        put = lambda a: jax.device_put(a, device)  # noqa: E731
        params = [(put(w), put(b)) for w, b in weights]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.carry = (params, zeros, zeros, put(np.zeros((), np.float32)))
        self.x, self.y = put(x), put(y)
        step = self._make_step(case)

        def scan_epoch(carry, xs, ys, index):
            return jax.lax.scan(lambda c, rows: step(c, xs[rows], ys[rows]), carry, index)

        self.scan, self.step = jax.jit(scan_epoch), jax.jit(step)
        self.last_loss: float | None = None

    def _make_step(self, case: Case):
        jax, jnp = self.jax, self.jnp
        lr, optimizer = case.lr, case.optimizer
        (beta1, beta2), eps = ADAM_BETAS, ADAM_EPS

        def loss_fn(params, x, y):
            a = x
            for w, b in params[:-1]:
                a = jnp.maximum(a @ w + b, 0.0)
            z = a @ params[-1][0] + params[-1][1]
            logp = jax.nn.log_softmax(z)
            loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
            return loss, jnp.sum(jnp.argmax(z, axis=1) == y)

        def step(carry, x, y):
            params, m, v, t = carry
            (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
            if optimizer == "sgd":
                params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
            else:
                t = t + 1
                m = jax.tree_util.tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, m, grads)
                v = jax.tree_util.tree_map(lambda v, g: beta2 * v + (1 - beta2) * g * g, v, grads)
                c1, c2 = 1 - beta1**t, 1 - beta2**t
                params = jax.tree_util.tree_map(
                    lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), params, m, v
                )
            return (params, m, v, t), (loss, correct)

        return step

    def epoch(self, epoch: int) -> None:
        jnp, B, n = self.jnp, self.batch_size, self.x.shape[0]
        perm = self.jax.device_put(epoch_order(n, epoch), self.device)
        full = n // B
        losses = []
        if full:
            self.carry, (values, _) = self.scan(self.carry, self.x, self.y, jnp.reshape(perm[: full * B], (full, B)))
            losses.append(values)
        if n % B:
            rows = perm[full * B :]
            self.carry, (value, _) = self.step(self.carry, self.x[rows], self.y[rows])
            losses.append(jnp.reshape(value, (1,)))
        self.jax.block_until_ready(self.carry)
        self.last_loss = weighted_mean(np.asarray(jnp.concatenate(losses)), n, B)

    def weights(self) -> Weights:
        return [(np.array(w), np.array(b)) for w, b in self.carry[0]]
