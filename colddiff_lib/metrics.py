"""Image-quality metrics as the paper reports them: RMSE and SSIM on [0, 1] images, and PSNR.

All functions take images [B, C, H, W] with values in [-1, 1] (the library's convention), map them
to [0, 1], and return one float for the batch; every one takes the images judged first and the
reference they are compared with second, ``metric(x, reference)`` (torchmetrics' ``preds, target``). Two conventions: :func:`rmse` and :func:`ssim` (the
book's tables: per-image RMSE averaged, torchmetrics SSIM) and :func:`rmse_as_paper` and
:func:`ssim_as_paper` (computed as the paper's code does, for a like-for-like comparison).
"""

from __future__ import annotations

import torch

from .data.images import to_unit
from .degradations.base import check_images


def _unit_pair(x: torch.Tensor, reference: torch.Tensor):
    check_images(x, "x")
    check_images(reference, "reference")
    if x.shape != reference.shape:
        raise ValueError(
            f"x and reference must have the same shape, got {tuple(x.shape)} and "
            f"{tuple(reference.shape)}"
        )
    return to_unit(x.float()), to_unit(reference.float())


def rmse(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Root-mean-square error on [0, 1] images, averaged over the batch (per-image RMSE, then mean)."""
    a, b = _unit_pair(x, reference)
    return float((a - b).pow(2).flatten(1).mean(1).sqrt().mean())


def psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB on [0, 1] images, averaged over the batch."""
    a, b = _unit_pair(x, reference)
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((-10 * torch.log10(mse)).mean())


def ssim(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Structural similarity (Gaussian window 11, sigma 1.5) on [0, 1] images, via torchmetrics."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _unit_pair(x, reference)
    return float(structural_similarity_index_measure(a, b, data_range=1.0))


def rmse_as_paper(x: torch.Tensor, reference: torch.Tensor) -> float:
    """RMSE as the paper's code computes it: one square root of the mean squared error over every
    pixel of the whole set ([0, 1] images), not a mean of per-image RMSEs (:func:`rmse`)."""
    a, b = _unit_pair(x, reference)
    return float((a.double() - b.double()).pow(2).mean().sqrt())


def ssim_as_paper(
    x: torch.Tensor, reference: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> float:
    """SSIM as the paper's code computes it (``pytorch_msssim.ssim``, written here from its definition):
    a separable Gaussian window (11, sigma 1.5) applied without padding ("valid" positions only),
    K1 = 0.01, K2 = 0.03, data range 1 on [0, 1] images, the SSIM map averaged over positions and
    channels, then over the set. (The paper repeats grey images to 3 channels: identical channels
    give the same mean.) :func:`ssim` (torchmetrics) pads and crops its borders differently, so
    the two differ slightly, most on images whose borders matter."""
    import torch.nn.functional as F

    a, b = _unit_pair(x, reference)
    a, b = a.double(), b.double()
    C = a.shape[1]
    if min(a.shape[-2:]) < window:
        raise ValueError(
            f"images must be at least {window} pixels on a side for ssim_as_paper, got {tuple(a.shape[-2:])}"
        )
    coords = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    gx = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1)
    gy = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def filt(z):
        return F.conv2d(F.conv2d(z, gx, groups=C), gy, groups=C)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    ssim_map = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs
    return float(ssim_map.flatten(2).mean(-1).mean())


def image_metrics(x: torch.Tensor, reference: torch.Tensor) -> dict:
    """``{"rmse", "ssim", "psnr", "rmse_as_paper", "ssim_as_paper"}`` of images ``x`` against ``reference``
    (both [B, C, H, W] in [-1, 1]): the book's conventions and the paper code's."""
    return {
        "rmse": rmse(x, reference),
        "ssim": ssim(x, reference),
        "psnr": psnr(x, reference),
        "rmse_as_paper": rmse_as_paper(x, reference),
        "ssim_as_paper": ssim_as_paper(x, reference),
    }


class FIDReference:
    """The reference side of FID, computed once: the feature statistics of real images, against which many
    sets of images are then scored. ``FIDReference(reference, classifier)(x)`` is ``fid(x, reference,
    classifier)``; the generation tables score every setting of a model, and the real digits' rows,
    against the same 4,000 training digits, whose features cost more than the samples' (seconds each).

    Args:
        reference: the real images, [M, C, H, W] in [-1, 1].
        classifier, backend, batch_size: as in :func:`fid`.
    """

    def __init__(
        self,
        reference: torch.Tensor,
        classifier=None,
        backend: str = "classifier",
        batch_size: int = 500,
    ):
        from torchmetrics.image.fid import FrechetInceptionDistance

        check_images(reference, "reference")
        if backend == "classifier":
            from .classifier import UnitFeatures

            if classifier is None:
                raise ValueError(
                    "classifier: the 'classifier' backend needs the feature network, e.g. "
                    "fid(x, reference, colddiff_lib.zoo.load_classifier())"
                )
            feature = UnitFeatures(classifier)
            self.device = next(classifier.parameters()).device
        elif backend == "inception":
            feature = 2048
            self.device = torch.device("cpu")
        else:
            raise ValueError(
                f"backend must be 'classifier' or 'inception', got {backend!r}"
            )
        self.backend, self.batch_size = backend, batch_size
        # reset() then forgets the scored images only
        self.metric = FrechetInceptionDistance(
            feature=feature, normalize=True, reset_real_features=False
        ).to(self.device)
        self._update(reference, real=True)

    def _update(self, images: torch.Tensor, real: bool) -> None:
        for chunk in images.split(self.batch_size):
            chunk = to_unit(chunk.float()).to(self.device)
            if self.backend == "inception" and chunk.shape[1] == 1:
                chunk = chunk.repeat(1, 3, 1, 1)
            self.metric.update(chunk, real=real)

    def __call__(self, x: torch.Tensor) -> float:
        """FID of the images ``x`` [N, C, H, W] in [-1, 1] against the reference."""
        check_images(x, "x")
        self.metric.reset()
        self._update(x, real=False)
        return float(self.metric.compute())


def _versions(*tensors) -> tuple:
    """Each tensor's in-place version counter: a cached result of them is stale once one has moved."""
    return tuple(t._version for t in tensors)


# fid's memo of the last reference: [reference, classifier, (backend, batch_size, versions),
# FIDReference]; the tensor and the network are compared by identity
_LAST_REFERENCE: list = [None] * 4


def fid(
    x: torch.Tensor,
    reference,
    classifier=None,
    backend: str = "classifier",
    batch_size: int = 500,
) -> float:
    """Frechet distance between Gaussians fitted to features of the images ``x`` and the ``reference`` images.

    Args:
        x: the images judged (generated or restored), [N, C, H, W] in [-1, 1] (N of a few hundred at least;
            1,000 in the tables).
        reference: the real images they are compared with, [M, C, H, W] in [-1, 1], or their
            :class:`FIDReference` (then ``classifier``, ``backend`` and ``batch_size`` are its own). The
            features of the last reference images are kept: called again with the same tensor and feature
            network, neither changed in place, it is not passed through the network again.
        backend: ``"classifier"`` (offline: the penultimate features of the project's digit
            classifier, for 1 x 32 x 32 digits; values are NOT comparable with Inception FID) or
            ``"inception"`` (torchmetrics' InceptionV3, 2048 features; needs ``torch-fidelity`` and a
            weight download, so online only).
        classifier: the feature network for the ``"classifier"`` backend, a
            :class:`~colddiff_lib.classifier.DigitClassifier` (the shipped one is
            ``colddiff_lib.zoo.load_classifier()``).
        batch_size: images passed through the feature network at a time.
    """
    if isinstance(reference, FIDReference):
        return reference(x)
    check_images(x, "x")
    check_images(reference, "reference")
    state = (
        [*classifier.parameters(), *classifier.buffers()]
        if isinstance(classifier, torch.nn.Module)
        else []
    )
    settings = (backend, batch_size, _versions(reference, *state))
    held, network, held_settings, features = _LAST_REFERENCE
    if not (held is reference and network is classifier and held_settings == settings):
        features = FIDReference(reference, classifier, backend, batch_size)
        _LAST_REFERENCE[:] = [reference, classifier, settings, features]
    return features(x)
