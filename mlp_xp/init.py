"""Weight initialisers: draws made on the host from a seeded NumPy generator.

Each initialiser is ``init(rng, fan_in, fan_out) -> host array of shape (fan_in, fan_out)``.
Drawing on the host and uploading once gives the same initial weights on every backend for
the same seed (Thinc does the same on purpose). Biases start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Initializer = Callable[[Any, int, int], Any]

__all__ = ["Initializer", "normal", "uniform", "he_normal", "xavier_uniform", "get_initializer"]


def normal(std: float = 0.01) -> Initializer:
    """N(0, std²) entries (the d2l recipe uses std=0.01)."""

    def draw(rng: Any, fan_in: int, fan_out: int) -> Any:
        return rng.standard_normal((fan_in, fan_out)) * std

    return draw


def uniform(limit: float | None = None) -> Initializer:
    """U(-limit, limit) entries; ``limit`` defaults to 1/sqrt(fan_in) (torch's Linear default)."""

    def draw(rng: Any, fan_in: int, fan_out: int) -> Any:
        bound = limit if limit is not None else 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, (fan_in, fan_out))

    return draw


def he_normal() -> Initializer:
    """He/Kaiming normal: N(0, 2/fan_in), for ReLU-family activations."""

    def draw(rng: Any, fan_in: int, fan_out: int) -> Any:
        return rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)

    return draw


def xavier_uniform() -> Initializer:
    """Xavier/Glorot uniform: U(±sqrt(6/(fan_in+fan_out))), for tanh and sigmoid."""

    def draw(rng: Any, fan_in: int, fan_out: int) -> Any:
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, (fan_in, fan_out))

    return draw


_BY_NAME: dict[str, Callable[..., Initializer]] = {
    "normal": normal,
    "uniform": uniform,
    "he": he_normal,
    "kaiming": he_normal,
    "xavier": xavier_uniform,
    "glorot": xavier_uniform,
}


def get_initializer(init: str | Initializer, **kwargs: Any) -> Initializer:
    """An initialiser from a name (``normal``, ``uniform``, ``he``/``kaiming``,
    ``xavier``/``glorot``) and its keyword arguments, or a callable passed through."""
    if callable(init):
        return init
    try:
        return _BY_NAME[init](**kwargs)
    except KeyError:
        raise ValueError(f"unknown initialiser {init!r}; choose from {', '.join(_BY_NAME)}.") from None
