"""The book's offline image assets: photographs and LFW faces from ``skimage.data``, and the second
image sets that :class:`~colddiff_lib.degradations.Blend` mixes toward."""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .images import (
    _center_crop_square,
    _check_channels,
    _check_positive_int,
    _match_channels,
    _resize,
    from_unit,
)

#: Photographs from ``skimage.data`` that ship with scikit-image (no download).
PHOTOGRAPH_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "cat",
    "camera",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "colorwheel",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
    "clock",
    "page",
    "text",
    "cell",
    "horse",
    "logo",
    "retina",
)


def photographs(
    names: Sequence[str] = ("astronaut", "coffee", "chelsea"), size: int = 128
) -> Tensor:
    """Photographs from ``skimage.data`` (no download).

    Each image is center-cropped to a square and resized (bilinear,
    antialiased) to ``size``; grey images are repeated to 3 channels and an
    alpha channel is dropped.

    Args:
        names: names of ``skimage.data`` images, e.g. ``"astronaut"``,
            ``"coffee"``, ``"chelsea"``, ``"camera"`` (see ``PHOTOGRAPH_NAMES``).
        size: positive int, output height and width.

    Returns:
        float32 Tensor ``[N, 3, size, size]`` with values in ``[-1, 1]``.
    """
    import skimage.data
    from skimage.util import img_as_float32

    size = _check_positive_int(size, "size")
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError("`names` must contain at least one photograph name")
    unknown = [n for n in names if n not in PHOTOGRAPH_NAMES]
    if unknown:
        raise ValueError(
            f"`names` contains unknown photograph(s) {unknown}; valid names include "
            f"{', '.join(PHOTOGRAPH_NAMES[:8])}, ... (all: {', '.join(PHOTOGRAPH_NAMES)})"
        )
    out = []
    for n in names:
        a = img_as_float32(getattr(skimage.data, n)())  # [H, W] or [H, W, C] in [0, 1]
        x = torch.from_numpy(np.ascontiguousarray(a))
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)[:3]
        x = _match_channels(x, 3)
        x = _resize(_center_crop_square(x).unsqueeze(0), size)[0]
        out.append(from_unit(x).clamp(-1.0, 1.0))
    return torch.stack(out).contiguous()


@functools.lru_cache(maxsize=1)
def _lfw_raw() -> np.ndarray:
    import skimage.data

    # (200, 25, 25) in [0, 1]
    faces = np.asarray(skimage.data.lfw_subset(), dtype=np.float32)
    faces.setflags(write=False)
    return faces


LFW_FACES = 100  # skimage's lfw_subset: 100 faces, then 100 non-face patches


def lfw_faces(
    image_size: int = 32, n: Optional[int] = None, include_non_faces: bool = False
) -> Tensor:
    """The 100 grey LFW faces of ``skimage.data.lfw_subset()`` (offline, 25x25 originals).

    Used as the "second image set" for animorphosis-style blending of digits. The subset also holds
    100 non-face patches of the same size after the faces; ``include_non_faces=True`` appends them.

    Args:
        image_size: positive int, output height and width (bilinear, antialiased resize from 25x25).
        n: number of images to return (the first ``n``; ``None`` = all of them).
        include_non_faces: also return the 100 non-face patches (200 images in all).

    Returns:
        float32 Tensor ``[M, 1, image_size, image_size]`` with values in ``[-1, 1]``.
    """
    image_size = _check_positive_int(image_size, "image_size")
    faces = _lfw_raw() if include_non_faces else _lfw_raw()[:LFW_FACES]
    if n is not None:
        n = _check_positive_int(n, "n")
        if n > faces.shape[0]:
            raise ValueError(
                f"`n` must be at most {faces.shape[0]} (images available), got {n}"
            )
        faces = faces[:n]
    x = torch.from_numpy(faces.copy()).unsqueeze(1)
    x = _resize(x, image_size)
    return from_unit(x).clamp_(-1.0, 1.0).contiguous()


BLEND_SOURCES = ("lfw",)


def blend_targets(
    source: str = "lfw", image_size: int = 32, channels: int = 1
) -> Tensor:
    """The second image set that :class:`~colddiff_lib.degradations.Blend` mixes toward.

    Args:
        source: ``"lfw"`` (the 100 offline faces of :func:`lfw_faces`; the book's stand-in for the
            paper's animal faces).
        image_size: output height and width.
        channels: 1 (grey) or 3 (grey repeated).
    Returns:
        float32 Tensor [M, channels, image_size, image_size] in [-1, 1].
    """
    if source not in BLEND_SOURCES:
        raise ValueError(
            f"`source` must be one of {list(BLEND_SOURCES)}, got {source!r}"
        )
    return _match_channels(lfw_faces(image_size), _check_channels(channels))
