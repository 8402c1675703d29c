"""``make_mlp``: the standard fully connected classifier, built from a plain config dict
(which checkpoints store, so ``mlp-xp eval`` can rebuild the model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .layers import BatchNorm, Dropout, Layer, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .model import Sequential

ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def make_mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float = 0.0,
    init: str = "he",
    init_std: float = 0.01,
) -> Sequential:
    """``in → [Linear → (BatchNorm) → activation → (Dropout)] per hidden width → Linear → out``.

    Layers are named ``hidden<i>``, ``bn<i>``, ``act<i>``, ``drop<i>`` (i from 1) and
    ``output``. ``init`` is ``normal`` (with ``init_std``), ``uniform``, ``he`` or ``xavier``;
    the output layer returns logits (pair it with ``SoftmaxCrossEntropy``).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}.")
    init_kwargs: dict[str, Any] = {"std": init_std} if init == "normal" else {}
    layers: list[tuple[str, Layer]] = []
    width = in_features
    for i, size in enumerate(hidden, start=1):
        layers.append((f"hidden{i}", Linear(width, size, init=init, **init_kwargs)))
        if batchnorm:
            layers.append((f"bn{i}", BatchNorm(size)))
        layers.append((f"act{i}", ACTIVATIONS[activation]()))
        if dropout > 0:
            layers.append((f"drop{i}", Dropout(dropout)))
        width = size
    layers.append(("output", Linear(width, out_features, init=init, **init_kwargs)))
    return Sequential(*layers)
