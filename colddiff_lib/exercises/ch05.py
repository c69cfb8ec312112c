"""Checkers for chapter 5 (reconstruction experiments)."""

from __future__ import annotations

import math
from typing import Callable

import torch

from . import report


def _test_pairs():
    """Image pairs [B, 1, 16, 16] in [-1, 1] with per-image errors of very different sizes."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    y = x.clone()
    y[0] = (y[0] + 0.05 * torch.randn(1, 16, 16, generator=g)).clamp(-1, 1)  # a small error
    y[1] = -y[1]                                                             # a large error
    y[2] = y[2]                                                              # no error
    y[3] = torch.rand(1, 16, 16, generator=g) * 2 - 1                        # an unrelated image
    return x, y


def _as_float(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must return one number (a float or a 0-d tensor), "
                             f"got a tensor of shape {tuple(value.shape)}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must return one number (a float or a 0-d tensor), got {type(value).__name__}")
    return float(value)


def check_rmse(my_rmse: Callable) -> bool:
    """Check a hand-written RMSE against :func:`colddiff_lib.metrics.rmse`.

    Args:
        my_rmse: a function ``my_rmse(x, y) -> float`` taking two batches of images
            [B, C, H, W] with values in [-1, 1]. It should map them to [0, 1], compute the RMSE of
            each image, and return the mean over the batch (the paper's convention).
    Returns:
        True when it agrees with ``metrics.rmse`` to 1e-5 on a few test batches.
    """
    from ..metrics import rmse

    if not callable(my_rmse):
        raise ValueError(f"my_rmse must be a function my_rmse(x, y) -> float, got {type(my_rmse).__name__}")
    x, y = _test_pairs()
    want = rmse(x, y)
    got = _as_float(my_rmse(x.clone(), y.clone()), "my_rmse")
    if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):
        # One more batch, so that a lucky constant cannot pass.
        x2, y2 = x[:2], y[:2]
        got2 = _as_float(my_rmse(x2.clone(), y2.clone()), "my_rmse")
        ok = math.isclose(got2, rmse(x2, y2), rel_tol=1e-5, abs_tol=1e-6)
        return report(ok, f"your RMSE is {got:.5f}, as metrics.rmse says.",
                      f"right on one batch but {got2:.5f} instead of {rmse(x2, y2):.5f} on another.")
    a, b = (x + 1) / 2, (y + 1) / 2
    per_image = (a - b).pow(2).flatten(1).mean(1)
    diagnoses = [
        ((x - y).pow(2).flatten(1).mean(1).sqrt().mean(), "you measured on [-1, 1]: map the images to [0, 1] "
                                                          "first, (x + 1) / 2, which halves every error."),
        ((a - b).pow(2).mean().sqrt(), "you took one RMSE over the whole batch: the paper's RMSE is computed per "
                                       "image and then averaged (the square root does not commute with the mean)."),
        (per_image.mean(), "you returned the mean squared error: take the square root of each image's MSE."),
        ((a - b).abs().flatten(1).mean(1).mean(), "you returned the mean absolute error: square, average, "
                                                  "then take the square root."),
        (per_image.sqrt().sum(), "you summed over the batch: average the per-image RMSEs instead."),
    ]
    for value, message in diagnoses:
        if math.isclose(got, float(value), rel_tol=1e-4, abs_tol=1e-6):
            return report(False, "", f"{got:.5f} instead of {want:.5f}: {message}")
    return report(False, "", f"{got:.5f} instead of {want:.5f}. Map to [0, 1], square the differences, "
                             "average each image's pixels, take the square root, then average over the batch.")
