"""Image-quality metrics as the paper reports them: RMSE and SSIM on [0, 1] images, and PSNR.

All functions take images [B, C, H, W] with values in [-1, 1] (the library's convention), map them
to [0, 1], and return the mean over the batch as a float.
"""

from __future__ import annotations

import torch

from .degradations.base import check_images


def _unit_pair(x: torch.Tensor, y: torch.Tensor):
    check_images(x, "x")
    check_images(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return ((x.float() + 1) / 2).clamp(0, 1), ((y.float() + 1) / 2).clamp(0, 1)


def rmse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Root-mean-square error on [0, 1] images, averaged over the batch (per-image RMSE, then mean)."""
    a, b = _unit_pair(x, y)
    return float((a - b).pow(2).flatten(1).mean(1).sqrt().mean())


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB on [0, 1] images, averaged over the batch."""
    a, b = _unit_pair(x, y)
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((-10 * torch.log10(mse)).mean())


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Structural similarity (Gaussian window 11, sigma 1.5) on [0, 1] images, via torchmetrics."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _unit_pair(x, y)
    return float(structural_similarity_index_measure(a, b, data_range=1.0))


def image_metrics(x: torch.Tensor, reference: torch.Tensor) -> dict:
    """``{"rmse", "ssim", "psnr"}`` of images ``x`` against ``reference`` (both [B, C, H, W] in [-1, 1])."""
    return {"rmse": rmse(x, reference), "ssim": ssim(x, reference), "psnr": psnr(x, reference)}
