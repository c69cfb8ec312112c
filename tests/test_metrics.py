"""Metrics on [0, 1] images: RMSE, PSNR, SSIM and the classifier-feature FID."""

import math

import pytest
import torch

from colddiff_lib import zoo
from colddiff_lib.data import load_dataset
from colddiff_lib.metrics import FIDReference, fid, image_metrics, psnr, rmse, ssim


def test_rmse_psnr_ssim_known_values():
    x = torch.full((2, 1, 16, 16), -1.0)  # black
    y = torch.full((2, 1, 16, 16), 0.0)  # mid-grey: 0.5 away on [0, 1]
    assert rmse(x, y) == pytest.approx(0.5)
    assert psnr(x, y) == pytest.approx(-10 * math.log10(0.25))
    assert rmse(x, x) == 0 and ssim(y, y) == pytest.approx(1.0)
    noisy = (
        y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    ).clamp(-1, 1)
    assert ssim(noisy, y) < 0.5
    assert set(image_metrics(x, y)) == {
        "rmse",
        "ssim",
        "psnr",
        "rmse_as_paper",
        "ssim_as_paper",
    }
    with pytest.raises(ValueError, match="same shape"):
        rmse(x, y[:1])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k", split="test").images


def test_fid_is_near_zero_between_halves_and_large_for_other_images(digits):
    classifier = zoo.load_classifier()
    same = fid(digits[500:], digits[:500], classifier)
    blurred = fid(
        torch.nn.functional.avg_pool2d(digits[500:], 3, 1, 1), digits[:500], classifier
    )
    noise = fid(torch.rand(500, 1, 32, 32) * 2 - 1, digits[:500], classifier)
    assert 0 <= same < blurred < noise
    assert same < 0.1 * noise


def test_fid_reference_is_computed_once_and_forgotten_when_stale(digits, monkeypatch):
    """An FIDReference scores as fid does; fid keeps the last reference's features (the generation tables
    score several settings against the same training digits) and computes them again when the images or
    the network have changed in place, or other images are passed."""
    from colddiff_lib import classifier as classifier_module

    classifier = zoo.load_classifier()
    reference, x = digits[:400].clone(), digits[400:600]
    expected = FIDReference(reference, classifier)(x)
    passed = []
    forward = classifier_module.UnitFeatures.forward
    monkeypatch.setattr(
        classifier_module.UnitFeatures,
        "forward",
        lambda self, images: passed.append(len(images)) or forward(self, images),
    )
    assert fid(x, reference, classifier) == pytest.approx(expected, rel=1e-6)
    assert fid(x, reference, classifier) == pytest.approx(expected, rel=1e-6)
    assert sum(passed) == 400 + 2 * 200  # the reference once, the judged images twice
    passed.clear()
    reference[:10] = -1  # edited in place: its features are stale
    changed = fid(x, reference, classifier)
    assert sum(passed) == 400 + 200 and changed != pytest.approx(expected, rel=1e-6)
    passed.clear()
    with torch.no_grad():  # the network edited in place, as load_state_dict does
        classifier.body[0][0].weight.mul_(0.5)
    fid(x, reference, classifier)
    assert sum(passed) == 400 + 200
    passed.clear()
    fid(
        x, reference.clone(), classifier
    )  # equal images in another tensor: not trusted as the same
    assert sum(passed) == 400 + 200
    with pytest.raises(ValueError, match=r"x must have rank 4 \(\[B, C, H, W\]\)"):
        FIDReference(reference, classifier)(x[0])


def test_fid_backend_is_checked(digits):
    with pytest.raises(ValueError, match="backend"):
        fid(digits[:10], digits[10:20], backend="vgg")
    with pytest.raises(ValueError, match="needs the feature network"):
        fid(digits[:10], digits[10:20])


def test_paper_metrics_follow_the_paper_code(digits):
    """ssim_as_paper equals pytorch_msssim.ssim (the paper's SSIM: [0, 1] images repeated to 3 channels,
    data range 1); rmse_as_paper is one square root over every pixel of the set."""
    from pytorch_msssim import ssim as reference_ssim

    from colddiff_lib import degradations as dg
    from colddiff_lib.metrics import rmse_as_paper, ssim_as_paper

    x0 = digits[:100]
    for D in (
        dg.build("blur", T=20, kernel_size=11, std=7.0, channels=1),
        dg.build("superres", T=3, channels=1),
    ):
        x = D(x0, D.T)
        a, b = (
            ((x + 1) / 2).clamp(0, 1).repeat(1, 3, 1, 1),
            ((x0 + 1) / 2).clamp(0, 1).repeat(1, 3, 1, 1),
        )
        assert (
            abs(
                ssim_as_paper(x, x0)
                - float(reference_ssim(a, b, data_range=1.0, size_average=True))
            )
            < 1e-6
        )
        assert abs(rmse_as_paper(x, x0) - float(((a - b) ** 2).mean().sqrt())) < 1e-6
    assert ssim_as_paper(x0, x0) == pytest.approx(1.0)
    # The global RMSE weighs every pixel alike; the per-image mean (rmse) does not: they
    # differ.
    noisy = x0 + torch.linspace(0, 0.5, 100).view(-1, 1, 1, 1) * torch.randn(
        x0.shape, generator=torch.Generator().manual_seed(0)
    )
    assert rmse_as_paper(noisy, x0) > rmse(noisy, x0)
