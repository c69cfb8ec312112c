"""Image tensors: the [-1, 1] <-> [0, 1] conversions (one home for them), resizing, channels."""

from __future__ import annotations

import contextlib
import warnings
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import is_int

# Luma weights (ITU-R BT.601) used for RGB -> grey.
_LUMA = (0.299, 0.587, 0.114)

# : The only formats an image file is decoded as, whatever its content claims to be:
# Pillow otherwise picks : its decoder from the content, and a "preview.png" that holds
# PostScript would run Ghostscript.
IMAGE_FORMATS = ("PNG", "JPEG")
# : The largest image (in pixels) that is decoded: 4096 x 4096. A 400-megapixel PNG is
# refused from its header.
MAX_IMAGE_PIXELS = 4096 * 4096


def to_unit(x: Tensor) -> Tensor:
    """Map ``x`` with values in ``[-1, 1]`` to ``[0, 1]`` (clamped). Any shape."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def from_unit(x: Tensor) -> Tensor:
    """Map ``x`` with values in ``[0, 1]`` to ``[-1, 1]``. Any shape."""
    return x * 2.0 - 1.0


@contextlib.contextmanager
def _opened(path):
    """Pillow's lazy image of ``path`` (its header read, no pixel decoded yet), opened as PNG or JPEG only and
    checked against :data:`MAX_IMAGE_PIXELS`; every problem, while opening or decoding, a ValueError naming it."""
    from PIL import Image, UnidentifiedImageError

    decode_errors = (OSError, SyntaxError, EOFError)  # truncated or damaged data
    too_large = (
        f"more than the {MAX_IMAGE_PIXELS:,} pixels an image may have (not decoded)"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path, formats=list(IMAGE_FORMATS))
    except UnidentifiedImageError:
        raise ValueError(
            f"image {path}: not a PNG or JPEG image (whatever its name says); only "
            f"{', '.join(IMAGE_FORMATS)} files are read"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"image {path}: {too_large}") from None
    except decode_errors as err:
        raise ValueError(
            f"image {path}: not a readable image ({type(err).__name__}: {err})"
        ) from None
    with im:
        width, height = im.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ValueError(f"image {path}: {width} x {height} pixels, {too_large}")
        try:
            yield im
        except decode_errors as err:
            raise ValueError(
                f"image {path}: not a readable image ({type(err).__name__}: {err})"
            ) from None


def image_size(path) -> tuple:
    """``(width, height)`` of the PNG or JPEG file ``path``, from its header (see :func:`open_image`)."""
    with _opened(path) as im:
        return im.size


def open_image(path, mode: str = "RGB"):
    """Decode the PNG or JPEG file ``path`` into a Pillow image in ``mode`` (``"RGB"`` or ``"L"``).

    Only :data:`IMAGE_FORMATS` are tried (never a format guessed from the content, such as PostScript,
    which Pillow hands to Ghostscript), and an image of more than :data:`MAX_IMAGE_PIXELS` pixels is
    refused from its header, before it is decoded. Every problem is a ValueError naming the file.
    """
    with _opened(path) as im:
        return im.convert(mode)


def _check_positive_int(value, arg: str) -> int:
    if not (is_int(value) or isinstance(value, np.integer)) or value <= 0:
        raise ValueError(f"`{arg}` must be a positive int, got {value!r}")
    return int(value)


def _check_channels(channels) -> Optional[int]:
    if channels is None:
        return None
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"`channels` must be None, 1 or 3, got {channels!r}")
    return int(channels)


def _resize(x: Tensor, size: int, chunk: int = 8192) -> Tensor:
    """Resize a float batch ``[N, C, h, w]`` to ``[N, C, size, size]``.

    Bilinear with antialiasing (``align_corners=False``); a no-op if the
    spatial size already matches. Processed in chunks to bound memory.
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    outs = [
        F.interpolate(
            x[i : i + chunk],
            size=(size, size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        for i in range(0, x.shape[0], chunk)
    ]
    return torch.cat(outs, dim=0) if outs else x.new_empty((0, x.shape[1], size, size))


def _match_channels(x: Tensor, channels: Optional[int]) -> Tensor:
    """Convert ``x`` of shape ``[..., C, H, W]`` (C in {1, 3}) to ``channels`` channels.

    1 -> 3 repeats the grey channel; 3 -> 1 uses luma weights 0.299, 0.587,
    0.114 (they sum to one, so the value range is kept). ``None`` keeps ``x``.
    """
    if channels is None:
        return x
    c = x.shape[-3]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        reps = [1] * x.dim()
        reps[-3] = 3
        return x.repeat(*reps)
    if c == 3 and channels == 1:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * w).sum(dim=-3, keepdim=True)
    raise ValueError(
        f"cannot convert images with {c} channels to `channels`={channels}"
    )


def _uint8_to_images(data, size: int) -> Tensor:
    """uint8 array/tensor ``[N, H, W]`` or ``[N, H, W, C]`` in ``[0, 255]``
    -> float32 ``[N, C, size, size]`` in ``[-1, 1]``."""
    x = torch.as_tensor(np.asarray(data))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4:
        x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(
            f"expected images [N, H, W] or [N, H, W, C], got shape {tuple(x.shape)}"
        )
    x = x.to(torch.float32) / 255.0
    x = _resize(x, size)
    return from_unit(x).clamp_(-1.0, 1.0).contiguous()


# --------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------


def _center_crop_square(x: Tensor) -> Tensor:
    """Center-crop ``[..., H, W]`` to a square ``[..., s, s]`` with ``s = min(H, W)``."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]
