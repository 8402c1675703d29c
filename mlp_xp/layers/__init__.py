"""Layers: each with an explicit ``forward`` and ``backward`` (see ``Layer``)."""

from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, sigmoid, softmax
from .base import Layer
from .dropout import Dropout
from .linear import Linear
from .normalization import BatchNorm

__all__ = [
    "Layer",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "BatchNorm",
    "Dropout",
    "sigmoid",
    "softmax",
]
