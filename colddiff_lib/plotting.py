"""Figures: image grids, degradation strips and loss curves (matplotlib, no display needed)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .checkpoint import atomic_write
from .data.images import to_unit
from .tables import html_table  # noqa: F401 (re-exported: the book imports it from here)


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """One image [C, H, W] in [-1, 1] -> an array [H, W] (grey) or [H, W, 3] in [0, 1] for imshow."""
    a = to_unit(x.detach().float().cpu())
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile images [B, C, H, W] in [-1, 1] into one array [H', W', 3] in [0, 1] (grey repeated), white padding."""
    from torchvision.utils import make_grid

    g = make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, normalize=True, value_range=(-1, 1),
                  pad_value=1.0)
    return to_numpy_image(g * 2 - 1)


def save_grid(images: torch.Tensor, path, nrow: int = 8) -> None:
    """Write images [B, C, H, W] in [-1, 1] as one PNG grid, atomically."""
    from PIL import Image

    a = (grid(images, nrow) * 255).round().astype(np.uint8)
    atomic_write(path, lambda f: Image.fromarray(a).save(f, format="PNG"))


def show_rows(rows: Sequence[torch.Tensor], labels: Optional[Sequence[str]] = None, titles=None, scale: float = 1.2):
    """A figure with one row per tensor [N, C, H, W] (N images each, in [-1, 1]); returns the figure."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols, scale * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                img = to_numpy_image(row[j])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            if j == 0 and labels is not None:
                ax.set_ylabel(labels[i], rotation=0, ha="right", va="center")
            if i == 0 and titles is not None and j < len(titles):
                ax.set_title(titles[j], fontsize=9)
    fig.tight_layout()
    return fig


def plot_history(history: dict, ax=None, label: str = "train"):
    """Plot the training loss (and held-out loss when recorded) of a history dict; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history["step"], history["loss"], label=f"{label} loss", lw=1)
    if history.get("val_loss"):
        ax.plot(history["val_step"], history["val_loss"], label="held-out loss", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    return ax


def save_figure(fig, path) -> None:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def level_axis(ax, label: str = "level t", axis: str = "x", reverse: bool = False) -> None:
    """Label a matplotlib axis of degradation levels and give it integer ticks only (levels are
    whole steps: no 2.5); ``reverse`` runs it from T down to 0, the samplers' direction."""
    from matplotlib.ticker import MaxNLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(integer=True))
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    if reverse:
        ax.invert_xaxis() if axis == "x" else ax.invert_yaxis()
