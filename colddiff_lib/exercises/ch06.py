"""Checkers for chapter 6 (generation)."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from . import report

# : How many times check_flat_prior calls the prior: enough draws that a colour
# distribution reaching past : [-1, 1] (the MNIST colours lie 3.1 standard deviations
# above -1) shows without its clamp.
ROUNDS = 4


def _clamped_std(mean: float, std: float) -> float:
    """The standard deviation of N(mean, std^2) clamped to [-1, 1] (100,000 fixed draws)."""
    z = torch.randn(
        100_000, generator=torch.Generator().manual_seed(6), dtype=torch.float64
    )
    return float((mean + std * z).clamp(-1, 1).std())


def check_flat_prior(
    prior: Callable, n: int = 4096, reference: Optional[torch.Tensor] = None
) -> bool:
    """Check a student's flat-colour prior for the blur that collapses to its mean.

    The prior is called :data:`ROUNDS` times for ``n`` images (16,384 draws by default, under a fixed
    global seed, so that the verdict does not change from run to run), so a distribution that reaches
    past [-1, 1] shows even where it does so rarely.

    Args:
        prior: a function ``prior(n) -> x_T`` returning ``n`` starting images [n, 1, 32, 32]: each one
            a single flat grey value (every pixel equal), values in [-1, 1] (clamped), random from image
            to image.
        n: how many images to ask for in each call (at least 16).
        reference: optional training images [N, 1, 32, 32] in [-1, 1]; when given, the mean and the
            spread of the colours must match those of the images' mean colours (what the blur
            collapses them to), within sampling error.
    Returns:
        True when ``prior`` passes every check.
    Raises:
        ValueError: if ``prior`` is not a function, returns something other than a tensor, or ``n`` or
            ``reference`` has the wrong type.
    """
    if not callable(prior):
        raise ValueError(
            f"prior must be a function prior(n) -> tensor [n, 1, 32, 32], got {type(prior).__name__}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 16:
        raise ValueError(f"n must be an int >= 16, got {n!r}")
    if reference is not None and (
        not isinstance(reference, torch.Tensor)
        or reference.dim() != 4
        or reference.shape[0] < 2
    ):
        raise ValueError(
            "reference must be a tensor of training images [N, C, H, W] with N >= 2, "
            f"got {type(reference).__name__}"
        )
    colours = []
    # a prior drawing from the global RNG gets a fixed seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        for _ in range(ROUNDS):
            x = prior(n)
            if not isinstance(x, torch.Tensor):
                raise ValueError(
                    f"prior must return a torch.Tensor [n, 1, 32, 32], got {type(x).__name__}"
                )
            if tuple(x.shape) != (n, 1, 32, 32):
                return report(
                    False,
                    "",
                    f"prior({n}) has shape {tuple(x.shape)}; expected [{n}, 1, 32, 32] "
                    "(n images, one grey channel, 32 x 32 pixels).",
                )
            if not x.is_floating_point():
                return report(
                    False,
                    "",
                    f"prior returned dtype {x.dtype}; images are floating-point tensors.",
                )
            x = x.detach().cpu()
            if not torch.isfinite(x).all():
                return report(False, "", "prior returned NaN or infinite values.")
            lo, hi = float(x.min()), float(x.max())
            if lo < -1 - 1e-6 or hi > 1 + 1e-6:
                return report(
                    False,
                    "",
                    f"values range from {lo:.3f} to {hi:.3f} (in {ROUNDS * n} draws); images "
                    "live in [-1, 1]: clamp the colours you draw, .clamp(-1, 1).",
                )
            spread = x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))
            worst = int(spread.argmax())
            if float(spread[worst]) > 1e-5:
                return report(
                    False,
                    "",
                    f"image {worst} is not flat: its pixels range over {float(spread[worst]):.4f}. "
                    "Draw one colour per image and expand it to every pixel.",
                )
            colours.append(x[:, 0, 0, 0].double())
    colours = torch.cat(colours)
    if float(colours.std()) < 1e-4:
        return report(
            False,
            "",
            f"every image has the same colour ({float(colours[0]):.4f}): the prior must be "
            "random, one colour drawn per image.",
        )
    if reference is not None:
        ref_images = reference.detach().double().cpu()
        ref = ref_images.mean(dim=(1, 2, 3))
        mean_tol = 4 * float(ref.std()) / len(colours) ** 0.5 + 0.02
        mu, sigma, mine = float(ref.mean()), float(ref.std()), float(colours.std())
        target = _clamped_std(mu, sigma)
        spread_off = not 0.8 < mine / target < 1.25
        why = "fit the spread to the data."
        if spread_off:  # a known slip first: its clamp also moves the mean
            if 0.85 < mine / _clamped_std(mu, float(ref_images.std())) < 1.15:
                why = (
                    f"that is the spread of the pixels (reference.std() = {float(ref_images.std()):.3f}), not of "
                    f"the images' mean colours ({sigma:.3f}): take the std of reference.mean(dim=(1, 2, 3))."
                )
            elif 0.85 < mine / _clamped_std(mu, sigma**2) < 1.15:
                why = (
                    f"that is the variance of the mean colours ({sigma**2:.4f}) used as a standard deviation: "
                    f"scale the Gaussian by the std, {sigma:.3f}."
                )
        spread = (
            f"your colours spread with std {mine:.3f}, the training images' mean colours with std "
            f"{sigma:.3f} ({target:.3f} once clamped): {why}"
        )
        if spread_off and why != "fit the spread to the data.":
            return report(False, "", spread)
        if abs(float(colours.mean() - ref.mean())) > mean_tol:
            return report(
                False,
                "",
                f"your colours average {float(colours.mean()):.3f}, the training images' mean "
                f"colours average {mu:.3f}: fit the mean to the data.",
            )
        if spread_off:
            return report(False, "", spread)
        return report(
            True,
            f"flat, in range, and distributed like the data (mean {float(colours.mean()):.3f}, "
            f"std {mine:.3f}; the data: {mu:.3f}, {sigma:.3f}).",
            "",
        )
    return report(
        True,
        f"{len(colours)} flat images with colours from {float(colours.min()):.3f} to "
        f"{float(colours.max()):.3f}.",
        "",
    )
