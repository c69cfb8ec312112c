"""Metrics on [0, 1] images: RMSE, PSNR, SSIM and the classifier-feature FID."""

import math

import pytest
import torch

from colddiff_lib import zoo
from colddiff_lib.data import load_dataset
from colddiff_lib.metrics import fid, image_metrics, psnr, rmse, ssim


def test_rmse_psnr_ssim_known_values():
    x = torch.full((2, 1, 16, 16), -1.0)  # black
    y = torch.full((2, 1, 16, 16), 0.0)   # mid-grey: 0.5 away on [0, 1]
    assert rmse(x, y) == pytest.approx(0.5)
    assert psnr(x, y) == pytest.approx(-10 * math.log10(0.25))
    assert rmse(x, x) == 0 and ssim(y, y) == pytest.approx(1.0)
    noisy = (y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert ssim(noisy, y) < 0.5
    assert set(image_metrics(x, y)) == {"rmse", "ssim", "psnr"}
    with pytest.raises(ValueError, match="same shape"):
        rmse(x, y[:1])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k", split="test").images


def test_fid_is_near_zero_between_halves_and_large_for_other_images(digits):
    classifier = zoo.load_classifier()
    same = fid(digits[:500], digits[500:], classifier)
    blurred = fid(digits[:500], torch.nn.functional.avg_pool2d(digits[500:], 3, 1, 1), classifier)
    noise = fid(digits[:500], torch.rand(500, 1, 32, 32) * 2 - 1, classifier)
    assert 0 <= same < blurred < noise
    assert same < 0.1 * noise


def test_fid_backend_is_checked(digits):
    with pytest.raises(ValueError, match="backend"):
        fid(digits[:10], digits[10:20], backend="vgg")
    with pytest.raises(ValueError, match="needs the feature network"):
        fid(digits[:10], digits[10:20])
