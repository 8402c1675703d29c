"""Checkpoints: ``.npz`` files read with ``allow_pickle=False`` and written atomically.

A checkpoint holds the model's parameters and buffers (``model/<layer>.<key>``), the
optimizer state (``optimizer/<state>/<layer>.<key>``) and a JSON document (``meta``): format
version, completed epochs, the run config, the model config and layer list, optimizer
steps and learning rate, and the history so far. Arrays are stored on the host as NumPy.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .model import Sequential
from .optim import Optimizer

FORMAT = "mlp_xp.checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``meta`` (dict), host arrays for the model and optimizer."""

    meta: dict[str, Any]
    model: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]


def layer_list(model: Sequential) -> list[str]:
    """``"<name>: <repr>"`` for every layer: the architecture a checkpoint must match."""
    return [f"{layer.name}: {layer!r}" for layer in model.layers]


def save_checkpoint(
    path: str | os.PathLike,
    model: Sequential,
    optimizer: Optimizer | None = None,
    *,
    epoch: int,
    config: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    partial: bool = False,
) -> Path:
    """Write ``model`` (and ``optimizer``) after ``epoch`` completed epochs to ``path``
    atomically: a temporary file in the same directory, then a rename. ``partial`` marks a
    save from inside an epoch (Ctrl-C)."""
    backend = model.backend
    arrays = {f"model/{k}": backend.to_numpy(v) for k, v in model.state().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "epoch": epoch,
        "partial": partial,
        "dtype": model.dtype,
        "layers": layer_list(model),
        "config": config or {},
        "model_config": model_config,
        "history": history or [],
    }
    if optimizer is not None:
        arrays.update({f"optimizer/{k}": backend.to_numpy(v) for k, v in optimizer.state_arrays().items()})
        meta["optimizer"] = {"type": type(optimizer).__name__, "steps": optimizer.steps, "lr": optimizer.lr}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint without executing code (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}.") from None
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable mlp_xp checkpoint: {exc}") from exc
    if "meta" not in arrays:
        raise ValueError(f"{path} is not an mlp_xp checkpoint (no 'meta' entry).")
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has checkpoint format {meta.get('format')!r}; this version reads {FORMAT!r}.")
    model = {k.removeprefix("model/"): v for k, v in arrays.items() if k.startswith("model/")}
    optimizer = {k.removeprefix("optimizer/"): v for k, v in arrays.items() if k.startswith("optimizer/")}
    return Checkpoint(meta, model, optimizer)


def restore(checkpoint: Checkpoint, model: Sequential, optimizer: Optimizer | None = None) -> None:
    """Load a checkpoint's arrays into an initialised ``model`` (and ``optimizer``) on the
    model's backend. A different architecture raises ``ValueError`` saying what differs."""
    saved, mine = checkpoint.meta["layers"], layer_list(model)
    if saved != mine:
        diff = [
            f"layer {i}: checkpoint has {a!r}, model has {b!r}" for i, (a, b) in enumerate(zip(saved, mine)) if a != b
        ]
        if len(saved) != len(mine):
            diff.append(f"checkpoint has {len(saved)} layers, model has {len(mine)}")
        raise ValueError("checkpoint does not match the model architecture: " + "; ".join(diff))
    backend = model.backend
    model.load_state({k: backend.asarray(v, model.dtype) for k, v in checkpoint.model.items()})
    if optimizer is not None and checkpoint.optimizer:
        saved_type = checkpoint.meta.get("optimizer", {}).get("type")
        if saved_type != type(optimizer).__name__:
            raise ValueError(f"checkpoint holds {saved_type} state; cannot load it into {type(optimizer).__name__}.")
        optimizer.load_state_arrays(
            {k: backend.asarray(v, model.dtype) for k, v in checkpoint.optimizer.items()},
            checkpoint.meta["optimizer"]["steps"],
        )
