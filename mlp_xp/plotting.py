"""PNG figures (matplotlib, from the ``plot`` extra): training curves and prediction grids."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import write_atomically


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a clear ImportError."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError('plots need matplotlib: pip install "mlp-xp[plot]".') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically (see ``write_atomically``) and close it."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return write_atomically(path, png.getvalue())


def plot_history(epochs: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Loss (left) and accuracy (right) per epoch for the training set and the held-out set
    (``test_*`` or ``val_*`` keys), from ``History.epochs``."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["epoch"] for r in epochs]
    for name in ("train", "val", "test"):
        for metric, ax in (("loss", ax_loss), ("acc", ax_acc)):
            values = [r.get(f"{name}_{metric}") for r in epochs]
            if all(v is not None for v in values):
                ax.plot(x, values, marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_predictions(
    images: np.ndarray,
    predicted: Sequence[int],
    true: Sequence[int],
    class_names: Sequence[str],
    path: str | os.PathLike,
    columns: int = 8,
) -> Path:
    """A grid of 28×28 images titled ``predicted / true`` (red where wrong)."""
    plt = pyplot()
    n = len(images)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    side = int(round(images.shape[1] ** 0.5))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].reshape(side, side), cmap="gray_r")
            ok = predicted[i] == true[i]
            ax.set_title(
                f"{class_names[predicted[i]]}\n({class_names[true[i]]})", fontsize=7, color="black" if ok else "red"
            )
    fig.suptitle("predicted (true)")
    return save_figure(fig, path)
