"""mlp_xp: multilayer perceptrons written once against the Python Array API standard.

The same layers, losses, optimizers and training loop run on NumPy, CuPy, PyTorch and
array-api-strict; ``get_backend`` picks the library and device.
"""

from .backends import Backend, BackendUnavailableError, available_backends, get_backend
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .data import (
    Dataset,
    DatasetNotFoundError,
    DeviceLoader,
    disc,
    load_dataset,
    load_idx_dir,
    synthetic,
    train_val_split,
)
from .export import export_onnx, from_torch, to_torch
from .init import normal, uniform
from .interop import predict
from .layers import BatchNorm, Dropout, Layer, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .losses import MSE, BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from .mlp import make_mlp
from .model import Sequential
from .optim import SGD, Adam, AdamW, Optimizer, cosine_decay, exponential_decay, step_decay
from .train import EpochProgress, History, TrainingDiverged, evaluate, fit, resume_point, train_step

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "get_backend",
    "Layer",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "BatchNorm",
    "Dropout",
    "Sequential",
    "Loss",
    "SoftmaxCrossEntropy",
    "MSE",
    "BinaryCrossEntropy",
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "step_decay",
    "exponential_decay",
    "cosine_decay",
    "make_mlp",
    "normal",
    "uniform",
    "Dataset",
    "DatasetNotFoundError",
    "DeviceLoader",
    "load_dataset",
    "load_idx_dir",
    "synthetic",
    "disc",
    "train_val_split",
    "fit",
    "train_step",
    "evaluate",
    "History",
    "EpochProgress",
    "resume_point",
    "TrainingDiverged",
    "save_checkpoint",
    "load_checkpoint",
    "restore",
    "predict",
    "to_torch",
    "from_torch",
    "export_onnx",
]
