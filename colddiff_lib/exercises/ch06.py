"""Checkers for chapter 6 (generation)."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from . import report


def check_flat_prior(prior: Callable, n: int = 256, reference: Optional[torch.Tensor] = None) -> bool:
    """Check a student's flat-colour prior for the blur that collapses to its mean.

    Args:
        prior: a function ``prior(n) -> x_T`` returning ``n`` starting images [n, 1, 32, 32]: each one
            a single flat grey value (every pixel equal), values in [-1, 1], random from image to image.
        n: how many images to ask for (at least 16).
        reference: optional training images [N, 1, 32, 32] in [-1, 1]; when given, the mean and the
            spread of the colours must match those of the images' mean colours (what the blur
            collapses them to), within sampling error.
    Returns:
        True when ``prior`` passes every check.
    """
    if not callable(prior):
        raise ValueError(f"prior must be a function prior(n) -> tensor [n, 1, 32, 32], got {type(prior).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 16:
        raise ValueError(f"n must be an int >= 16, got {n!r}")
    if reference is not None and (not isinstance(reference, torch.Tensor) or reference.dim() != 4
                                  or reference.shape[0] < 2):
        raise ValueError("reference must be a tensor of training images [N, C, H, W] with N >= 2, "
                         f"got {type(reference).__name__}")
    x = prior(n)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"prior must return a torch.Tensor [n, 1, 32, 32], got {type(x).__name__}")
    if tuple(x.shape) != (n, 1, 32, 32):
        return report(False, "", f"prior({n}) has shape {tuple(x.shape)}; expected [{n}, 1, 32, 32] "
                                 "(n images, one grey channel, 32 x 32 pixels).")
    if not x.is_floating_point():
        return report(False, "", f"prior returned dtype {x.dtype}; images are floating-point tensors.")
    x = x.detach().double().cpu()
    if not torch.isfinite(x).all():
        return report(False, "", "prior returned NaN or infinite values.")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - 1e-6 or hi > 1 + 1e-6:
        return report(False, "", f"values range from {lo:.3f} to {hi:.3f}; images live in [-1, 1] "
                                 "(clamp the colours you draw).")
    spread = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    worst = int(spread.argmax())
    if float(spread[worst]) > 1e-5:
        return report(False, "", f"image {worst} is not flat: its pixels range over {float(spread[worst]):.4f}. "
                                 "Draw one colour per image and expand it to every pixel.")
    colours = x[:, 0, 0, 0]
    if float(colours.std()) < 1e-4:
        return report(False, "", f"every image has the same colour ({float(colours[0]):.4f}): the prior must be "
                                 "random, one colour drawn per image.")
    if reference is not None:
        ref = reference.detach().double().cpu().mean(dim=(1, 2, 3))
        mean_tol = 4 * float(ref.std()) / n ** 0.5 + 0.02
        if abs(float(colours.mean() - ref.mean())) > mean_tol:
            return report(False, "", f"your colours average {float(colours.mean()):.3f}, the training images' mean "
                                     f"colours average {float(ref.mean()):.3f}: fit the mean to the data.")
        ratio = float(colours.std() / ref.std())
        if not 0.6 < ratio < 1.6:
            return report(False, "", f"your colours spread with std {float(colours.std()):.3f}, the training images' "
                                     f"mean colours with std {float(ref.std()):.3f}: fit the spread to the data.")
        return report(True, f"flat, in range, and distributed like the data (mean {float(colours.mean()):.3f}, "
                            f"std {float(colours.std()):.3f}).", "")
    return report(True, f"{n} flat images with colours from {float(colours.min()):.3f} to "
                        f"{float(colours.max()):.3f}.", "")
