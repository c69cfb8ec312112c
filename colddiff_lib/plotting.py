"""Figures: image grids, degradation strips and loss curves (matplotlib, no display needed)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .files import atomic_write
from .data.images import to_unit
from .tables import html_table  # noqa: F401 (the book imports it from here)


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """One image [C, H, W] in [-1, 1] -> an array [H, W] (grey) or [H, W, 3] in [0, 1] for imshow."""
    a = to_unit(x.detach().float().cpu())
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile images [B, C, H, W] in [-1, 1] into one array [H', W', 3] in [0, 1] (grey repeated), white padding."""
    from torchvision.utils import make_grid

    g = make_grid(
        images.detach().float().cpu(),
        nrow=nrow,
        padding=padding,
        normalize=True,
        value_range=(-1, 1),
        pad_value=1.0,
    )
    return to_numpy_image(g * 2 - 1)


def save_grid(
    images: torch.Tensor, path, nrow: int = 8, labels: Optional[Sequence[str]] = None
) -> None:
    """Write images [B, C, H, W] in [-1, 1] as one PNG grid (``nrow`` images a row), atomically.

    ``labels``: one label per row of the grid, kept in the PNG's text metadata (``read_grid`` returns
    them), so that a page that shows the grid can name its rows."""
    import json

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    a = (grid(images, nrow) * 255).round().astype(np.uint8)
    info = PngInfo()
    info.add_text(
        "colddiff-grid",
        json.dumps(
            {
                "tile": list(images.shape[-2:]),
                "padding": 2,
                "nrow": nrow,
                "labels": list(labels) if labels is not None else None,
            }
        ),
    )
    atomic_write(path, lambda f: Image.fromarray(a).save(f, format="PNG", pnginfo=info))


def read_grid(path, tile: int = 32, padding: int = 2):
    """The images of a grid that :func:`save_grid` wrote: ``(rows, labels)``, ``rows`` a tensor
    [rows, columns, C, tile, tile] in [-1, 1] (C = 1 for a grey grid) and ``labels`` the row labels the
    PNG records (None when it records none). A grid without metadata is read with ``tile`` and ``padding``.
    """
    import json

    from PIL import Image

    with Image.open(path) as im:
        meta = (
            json.loads(im.text.get("colddiff-grid", "null") or "null")
            if hasattr(im, "text")
            else None
        )
        a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    if meta:
        tile, padding = int(meta["tile"][0]), int(meta["padding"])
    step = tile + padding
    n_rows, n_cols = (a.shape[0] - padding) // step, (a.shape[1] - padding) // step
    if n_rows < 1 or n_cols < 1:
        raise ValueError(
            f"{path}: {a.shape[1]} x {a.shape[0]} pixels hold no {tile}-pixel tile"
        )
    grey = bool(np.allclose(a[..., 0], a[..., 1]) and np.allclose(a[..., 0], a[..., 2]))
    # [C, H, W] in [-1, 1]
    x = torch.from_numpy(a).permute(2, 0, 1)[: 1 if grey else 3] * 2 - 1
    rows = torch.stack(
        [
            torch.stack(
                [
                    x[
                        :,
                        padding + i * step : padding + i * step + tile,
                        padding + j * step : padding + j * step + tile,
                    ]
                    for j in range(n_cols)
                ]
            )
            for i in range(n_rows)
        ]
    )
    return rows, (meta or {}).get("labels")


def grid_html(
    rows: Sequence[torch.Tensor],
    labels: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    per_line: int = 8,
    digit_px: int = 48,
):
    """Rows of images as an IPython ``HTML`` figure: each row's label above its images, ``per_line``
    images a line, each drawn ``digit_px`` pixels wide with crisp pixels (shrunk with the column on a
    phone). A readable size whatever the images' own: a 32-pixel digit at 48 px.

    Args:
        rows: tensors [N, C, H, W] in [-1, 1], one per row (the rows of :func:`read_grid`, or samples).
        labels: one label per row; title: a caption above the figure.
    """
    import base64
    import html
    import io

    from IPython.display import HTML
    from PIL import Image

    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    parts = ['<figure class="colddiff-grid" style="margin: 0.6em 0;">']
    if title:
        parts.append(
            f'<figcaption style="font-weight: bold; margin-bottom: 0.3em;">{html.escape(title)}'
            "</figcaption>"
        )
    for i, row in enumerate(rows):
        row = row.detach().float().cpu()
        tile = int(row.shape[-1])
        a = (grid(row, nrow=per_line) * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        width = round(a.shape[1] * digit_px / tile)
        label = html.escape(labels[i]) if labels is not None else ""
        src = base64.b64encode(buf.getvalue()).decode()
        parts.append(
            '<div class="colddiff-grid-row" style="margin: 0 0 0.5em 0;">'
            f'<div class="colddiff-grid-label" style="font-size: 0.9em;">{label}</div>'
            f'<img class="colddiff-grid-images" data-tile="{tile}" data-per-line="{min(per_line, len(row))}" '
            f'width="{width}" alt="{label}: {len(row)} images" src="data:image/png;base64,{src}" '
            'style="image-rendering: pixelated; max-width: 100%; height: auto; display: block;"></div>'
        )
    parts.append("</figure>")
    return HTML("".join(parts))


def show_rows(
    rows: Sequence[torch.Tensor],
    labels: Optional[Sequence[str]] = None,
    titles=None,
    scale: float = 1.2,
):
    """A figure with one row per tensor [N, C, H, W] (N images each, in [-1, 1]); returns the figure."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(scale * n_cols, scale * n_rows), squeeze=False
    )
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

    atomic_write(
        path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    )
    plt.close(fig)


def level_axis(
    ax, label: str = "level t", axis: str = "x", reverse: bool = False
) -> None:
    """Label a matplotlib axis of degradation levels and give it integer ticks only (levels are
    whole steps: no 2.5); ``reverse`` runs it from T down to 0, the samplers' direction."""
    from matplotlib.ticker import MaxNLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(integer=True))
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    if reverse:
        ax.invert_xaxis() if axis == "x" else ax.invert_yaxis()


def sampling_step_diagram(ax=None, s: int = 4):
    """One step of Algorithms 1 and 2 drawn as points and arrows, for a toy 2-D degradation.

    ``D(x, k) = (1 - 0.08 k) x + k e`` (a shift with a mild shrink, so increments depend a little on
    the image): the true path ``D(x0, k)``, the path of a wrong guess ``D(x0_hat, k)``, and from
    ``x_s = D(x0, s)`` the two updates. Returns the points ``{name: (x, y)}`` it drew.
    """
    import matplotlib.pyplot as plt

    e = np.array([1.0, 0.35])
    x0, x0_hat = np.array([0.0, 0.0]), np.array([0.9, 1.3])

    def D(x, k):
        return (1 - 0.08 * k) * x + k * e

    ks = np.arange(0, s + 2)
    true_path, guess_path = (
        np.array([D(x0, k) for k in ks]),
        np.array([D(x0_hat, k) for k in ks]),
    )
    x_s = D(x0, s)
    points = {
        "x_s": x_s,
        "D(x0, s-1)": D(x0, s - 1),
        "D(x0_hat, s)": D(x0_hat, s),
        "D(x0_hat, s-1)": D(x0_hat, s - 1),
        "x0": x0,
        "x0_hat": x0_hat,
    }
    points["Algorithm 1"] = D(x0_hat, s - 1)
    points["Algorithm 2"] = x_s - D(x0_hat, s) + D(x0_hat, s - 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = ALGORITHM_COLOURS
    ax.plot(*true_path.T, "o-", color="0.35", ms=4, lw=1, label="true path D(x0, k)")
    ax.plot(
        *guess_path.T,
        "o--",
        color="0.7",
        ms=4,
        lw=1,
        label="path of the guess D(x0_hat, k)",
    )

    def arrow(a, b, colour, style="-"):
        ax.annotate(
            "",
            xy=b,
            xytext=a,
            arrowprops=dict(arrowstyle="->", color=colour, lw=1.8, ls=style),
        )

    # the increment, measured on the guess
    arrow(points["D(x0_hat, s)"], points["D(x0_hat, s-1)"], "0.5", "--")
    # ... added to x_s: Algorithm 2
    arrow(x_s, points["Algorithm 2"], colours["improved"])
    # jump to the guess's path: Algorithm 1
    arrow(x_s, points["Algorithm 1"], colours["naive"])
    for name, offset in (
        ("x_s", (6, -12)),
        ("D(x0, s-1)", (-70, 8)),
        ("x0", (6, -10)),
        ("x0_hat", (6, 4)),
        ("D(x0_hat, s)", (6, 4)),
        ("D(x0_hat, s-1)", (-30, 10)),
    ):
        ax.annotate(
            name, points[name], textcoords="offset points", xytext=offset, fontsize=8
        )
    ax.plot(
        *points["Algorithm 2"],
        "s",
        color=colours["improved"],
        ms=7,
        label="Algorithm 2: x_s + increment",
    )
    ax.plot(
        *points["Algorithm 1"],
        "s",
        color=colours["naive"],
        ms=7,
        label="Algorithm 1: D(x0_hat, s-1)",
    )
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"One step from level s = {s}", fontsize=10)
    return points


# : One colour per sampler, used by every figure of the book (Algorithm 1 red, Algorithm
# 2 blue).
ALGORITHM_COLOURS = {"naive": "tab:red", "improved": "tab:blue", "ddim": "tab:green"}


def level_player(
    frames,
    titles: Sequence[str],
    labels: Optional[Sequence[str]] = None,
    scale: float = 1.6,
    interval: int = 250,
):
    """A slider over t that works without a kernel: precomputed frames in matplotlib's JavaScript player.

    Args:
        frames: one list of images per level, each image [C, H, W] in [-1, 1] (images of different sizes
            are fine: a digit and a photograph); every frame has the same number of images.
        titles: one title per frame (e.g. ``"t = 5"``), shown above the images.
        labels: one label per image position, under each image.
    Returns:
        an IPython ``HTML`` object: a player with a frame slider and play buttons, the same in Jupyter,
        Colab and the static book (frames are JPEG, so that a page of players stays light).
    """
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib import animation

    if not frames or not titles or len(frames) != len(titles):
        raise ValueError(
            f"frames and titles must be non-empty and of the same length, got {len(frames)} and "
            f"{len(titles)}"
        )
    n = len(frames[0])
    fig, axes = plt.subplots(1, n, figsize=(scale * n, scale + 0.5), squeeze=False)
    shown = []
    for k, ax in enumerate(axes[0]):
        a = to_numpy_image(frames[0][k])
        shown.append(ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1))
        ax.set_xticks([])
        ax.set_yticks([])
        if labels is not None:
            ax.set_xlabel(labels[k], fontsize=9)
    heading = fig.suptitle(titles[0], fontsize=11)
    fig.tight_layout()

    def draw(i):
        for image, picture in zip(shown, frames[i]):
            image.set_data(to_numpy_image(picture))
        heading.set_text(titles[i])
        return shown

    anim = animation.FuncAnimation(fig, draw, frames=len(frames), interval=interval)
    with plt.rc_context({"animation.frame_format": "jpeg", "savefig.dpi": 100}):
        html = animation_html(anim, default_mode="once")
    plt.close(fig)
    return HTML(html)


# matplotlib's player takes its button icons from a CDN stylesheet (Font Awesome); the
# book loads nothing from a CDN, so the icons become Unicode symbols.
_PLAYER_ICONS = {
    "fa fa-fast-backward": "\u23ee",
    "fa fa-step-backward": "\u23f4\ufe0e|",
    "fa fa-play fa-flip-horizontal": "\u25c0",
    "fa fa-pause": "\u23f8",
    "fa fa-play": "\u25b6",
    "fa fa-step-forward": "|\u23f5\ufe0e",
    "fa fa-fast-forward": "\u23ed",
    "fa fa-minus": "\u2212",
    "fa fa-plus": "+",
}


def animation_html(anim, default_mode: str = "loop") -> str:
    """``anim.to_jshtml()`` without its CDN stylesheet (Unicode symbols on the buttons instead): a
    player that works offline, in Jupyter, Colab and the static book."""
    import re

    html = anim.to_jshtml(default_mode=default_mode)
    html = re.sub(
        r'<link rel="stylesheet"\s*href="https?://[^"]*font-awesome[^"]*">', "", html
    )
    for css, symbol in _PLAYER_ICONS.items():
        html = html.replace(f'<i class="{css}"></i>', symbol)
    return html
