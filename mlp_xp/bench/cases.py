"""What a benchmark case trains: the model, optimizer, batch size, data, initial weights and
sample order that every method of the case shares, and the work (FLOPs) of one epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import SGD, Adam, make_mlp
from ..backends import host_rng

FEATURES, CLASSES, SEED = 784, 10, 0
MODELS = ((256,), (100,), (1024, 1024))
BATCH_SIZES = (64, 256, 1024)
GPU_BATCH_SIZES = (*BATCH_SIZES, 4096)
OPTIMIZERS = ("sgd", "adam")
LEARNING_RATES = {"sgd": 0.1, "adam": 1e-3}
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8

# the data: class clusters (see make_data)
_SEPARATION = 30.0  # distance of two class means, in noise standard deviations
_NOISE = 0.2 * 255  # pixel noise standard deviation
_LABEL_NOISE = 0.1  # share of samples whose label is drawn anew (uniformly)


@dataclass(frozen=True)
class Case:
    """One configuration to measure: backend spec, hidden widths, batch size, samples per
    epoch, data storage on the device and optimizer."""

    spec: str
    hidden: tuple[int, ...]
    batch_size: int
    samples: int = 60000
    storage: str = "float32"  # or "uint8": pixels stored as bytes, converted per batch
    optimizer: str = "sgd"

    @property
    def sizes(self) -> tuple[int, ...]:
        return (FEATURES, *self.hidden, CLASSES)

    @property
    def model(self) -> str:
        return "-".join(map(str, self.sizes))

    @property
    def lr(self) -> float:
        return LEARNING_RATES[self.optimizer]

    @property
    def group(self) -> str:
        """The pytest-benchmark group: cases of the same work (model, batch size, samples,
        optimizer) on any backend or storage, so that its relative column compares equal work."""
        return f"{self.model} B{self.batch_size} N{self.samples} {self.optimizer}"

    @property
    def id(self) -> str:
        extra = "" if self.storage == "float32" else f"-{self.storage}"
        extra += "" if self.samples == 60000 else f"-N{self.samples}"
        extra += "" if self.optimizer == "sgd" else f"-{self.optimizer}"
        return f"{self.spec}-{self.model}-B{self.batch_size}{extra}"


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"256"`` → (256,); ``"1024,1024"`` or ``"784-1024-1024-10"`` → (1024, 1024)."""
    parts = [int(p) for p in text.replace("-", ",").split(",") if p.strip()]
    if len(parts) > 2 and parts[0] == FEATURES and parts[-1] == CLASSES:
        parts = parts[1:-1]
    if not parts or min(parts) < 1:
        raise ValueError(f"bad model spec {text!r}: give hidden widths such as 256 or 1024,1024.")
    return tuple(parts)


# -- work ----------------------------------------------------------------------------------


def epoch_flops(sizes: tuple[int, ...], samples: int) -> int:
    """Matmul FLOPs of one epoch: forward 2·N·Σ in·out, backward dW 2·N·Σ in·out, and dX
    2·N·in·out for every Linear except the first (its input needs no gradient)."""
    products = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * samples * (2 * sum(products) + sum(products[1:]))


def biggest_gemm(sizes: tuple[int, ...], batch_size: int) -> tuple[int, int, int]:
    """(m, k, n) of the model's largest forward GEMM at this batch size."""
    k, n = max(zip(sizes[:-1], sizes[1:]), key=lambda kn: kn[0] * kn[1])
    return batch_size, k, n


# -- data, weights, order ------------------------------------------------------------------

_DATA: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}


def make_data(samples: int, storage: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Learnable Fashion-MNIST-shaped data: x (samples, 784), y (samples,) int64 in [0, 10); cached.

    Ten class clusters: a grey image shared by all classes plus a class offset, with Gaussian
    pixel noise, as uint8 pixels; class means lie ``_SEPARATION`` noise standard deviations
    apart, and a tenth of the labels is redrawn at random, so a 784-H-10 MLP learns it within
    an epoch or two but its loss stays near 0.5 (the label noise): every step keeps a real
    gradient, and a package that does not learn ends far from one that does.
    (``mlp_xp.synthetic`` has no label noise: its loss falls to ~0.001, where steps barely move.)

    ``uint8``: the pixels; ``float32``: pixels times float32(1/255), bit for bit what
    ``DeviceLoader`` computes per batch from the uint8 pixels.
    """
    key = (samples, storage)
    if key in _DATA:
        return _DATA[key]
    if storage == "uint8":
        rng = np.random.default_rng(SEED)
        grey = rng.uniform(0.35 * 255, 0.65 * 255, FEATURES).astype(np.float32)
        offsets = rng.normal(0.0, _SEPARATION * _NOISE / math.sqrt(2 * FEATURES), (CLASSES, FEATURES))
        truth = rng.permutation(np.arange(samples) % CLASSES)
        x = rng.standard_normal((samples, FEATURES), dtype=np.float32)
        x *= _NOISE
        x += offsets.astype(np.float32)[truth]
        x += grey
        np.clip(np.rint(x, out=x), 0, 255, out=x)
        y = np.where(rng.random(samples) < _LABEL_NOISE, rng.integers(0, CLASSES, samples), truth)
        _DATA[key] = (x.astype(np.uint8), y.astype(np.int64))
    elif storage == "float32":
        x8, y = make_data(samples, "uint8")
        _DATA[key] = (x8.astype(np.float32) * np.float32(1.0 / 255.0), y)
    else:
        raise ValueError(f"unknown storage {storage!r}; use float32 or uint8.")
    return _DATA[key]


def package_model(hidden: tuple[int, ...]) -> Any:
    """The benchmark's model, unitialised: ``make_mlp`` with ReLU and He-normal weights."""
    return make_mlp(FEATURES, hidden, CLASSES, init="he")


def package_optimizer(case: Case, model: Any) -> Any:
    """The case's optimizer over ``model``: SGD (no momentum) or Adam, at the case's rate."""
    if case.optimizer == "adam":
        return Adam(model, lr=case.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    return SGD(model, lr=case.lr)


def initial_weights(hidden: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight (in, out), bias) per Linear, exactly as the package initialises them (host copies)."""
    model = package_model(hidden).init("numpy", seed=SEED)
    return [(np.array(layer.params["weight"]), np.array(layer.params["bias"])) for layer in model if layer.params]


def epoch_order(samples: int, epoch: int) -> np.ndarray:
    """The sample order of ``epoch``: DeviceLoader's documented permutation for ``SEED``."""
    return host_rng((SEED, epoch)).permutation(samples)
