"""Checkers for chapter 2, "Degradation operators"."""

from __future__ import annotations

import math
import numbers
from typing import List, Optional

import torch

from . import report
from .ch01 import _as_float, _as_int

__all__ = ["check_effective_sigma", "check_masked_fraction"]


def _sigma_list(sigmas, t) -> List[float]:
    """The per-step widths as a list of positive floats (``sigmas`` a number repeated ``t`` times, or a sequence)."""
    if isinstance(sigmas, bool):
        raise ValueError(
            "sigmas must be a positive number or a sequence of positive numbers, got a bool"
        )
    if isinstance(sigmas, numbers.Real):
        if t is None:
            raise ValueError(
                "t is needed when sigmas is one number (the constant schedule): "
                "pass t, the number of composed blurs"
            )
        t = _as_int(t, "t")
        if t < 1:
            raise ValueError(
                f"t must be a positive int (the number of composed blurs), got {t}"
            )
        values = [float(sigmas)] * t
    else:
        if isinstance(sigmas, torch.Tensor):
            sigmas = sigmas.detach().cpu().reshape(-1).tolist()
        # NumPy arrays
        elif hasattr(sigmas, "tolist") and not isinstance(sigmas, (str, bytes)):
            sigmas = sigmas.tolist()
        if isinstance(sigmas, (str, bytes)) or not hasattr(sigmas, "__iter__"):
            raise ValueError(
                f"sigmas must be a positive number or a sequence of positive numbers, "
                f"got {type(sigmas).__name__}"
            )
        values = [_as_float(v, "sigmas[i]") for v in sigmas]
        if not values:
            raise ValueError("sigmas must hold at least one width")
        if t is not None and _as_int(t, "t") != len(values):
            raise ValueError(
                f"t = {t} but sigmas lists {len(values)} widths: give one or the other"
            )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"sigmas must be positive, got {values}")
    return values


def _kernel_variance(kernel_size: int, sigma: float) -> float:
    """Variance (in pixels^2) of the library's normalised, truncated 1-D kernel."""
    from ..degradations import gaussian_kernel_1d

    k = gaussian_kernel_1d(kernel_size, sigma)
    i = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    return float((k * i**2).sum())


def check_effective_sigma(
    answer, sigmas, t: Optional[int] = None, kernel_size: Optional[int] = None
) -> bool:
    """Check the width of one Gaussian blur equivalent to t Gaussian blurs applied one after another.

    Args:
        answer: your effective width sigma_eff in pixels, a positive real number.
        sigmas: the per-step widths, either one number (the constant schedule; then give ``t``) or a
            sequence sigma_1..sigma_t (a list, tuple, NumPy array or 1-D tensor), in pixels.
        t: the number of blurs when ``sigmas`` is one number.
        kernel_size: ``None`` for ideal (untruncated) Gaussian kernels, for which
            sigma_eff = sqrt(sum_i sigma_i^2); or the odd width of the library's truncated kernels
            (:func:`colddiff_lib.degradations.gaussian_kernel_1d`), for which the variances to add are
            those of the truncated kernels.
    Returns:
        True if ``answer`` is within 0.1 % of sigma_eff.
    Raises:
        ValueError: if an argument has the wrong type or value.
    """
    value = _as_float(answer, "answer")
    widths = _sigma_list(sigmas, t)
    constant = isinstance(sigmas, numbers.Real)
    if kernel_size is not None:
        kernel_size = _as_int(kernel_size, "kernel_size")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be a positive odd int, got {kernel_size}"
            )
        variances = [_kernel_variance(kernel_size, s) for s in widths]
    else:
        variances = [s * s for s in widths]
    expected = math.sqrt(sum(variances))

    def close(a, b):
        return math.isfinite(a) and abs(a - b) <= 1e-3 * abs(b)

    n = len(widths)
    where = f"{n} blur{'s' if n > 1 else ''}"
    if close(value, expected):
        extra = ""
        if kernel_size is not None:
            ideal = math.sqrt(sum(s * s for s in widths))
            if not close(ideal, expected):
                extra = (
                    f" (ideal Gaussians would give {ideal:.3f}: the {kernel_size}-tap kernels are cut off, "
                    f"so each step blurs less than its nominal sigma)"
                )
        return report(True, f"sigma_eff = {expected:.4f} px for {where}{extra}.", "")

    slips = [
        (
            sum(widths),
            "you added the widths. Convolving Gaussians adds their variances, not their standard "
            "deviations: sigma_eff^2 = sum_i sigma_i^2.",
        ),
        (
            sum(variances),
            "that is the variance sigma_eff^2; take its square root to get a width in pixels.",
        ),
        (
            math.sqrt(n) * widths[-1],
            "that scales the last width by sqrt(t), which holds only when all the widths "
            "are equal; add the squares of the widths one by one.",
        ),
        (widths[-1], "one blur's width is not the total: every step widens the blur."),
    ]
    if n >= 2:
        if constant:
            slips.append(
                (
                    math.sqrt(variances[0] * (n - 1)),
                    f"off by one: that is {n - 1} blurs; t = {n} blurs add "
                    f"{n} variances.",
                )
            )
        else:
            slips += [
                (
                    math.sqrt(sum(variances[1:])),
                    "you left out the first blur: add the variances of all "
                    f"{n} widths.",
                ),
                (
                    math.sqrt(sum(variances[:-1])),
                    f"you left out the last blur: add the variances of all {n} widths.",
                ),
            ]
    if constant:
        slips.append(
            (
                math.sqrt(variances[0] * (n + 1)),
                f"off by one: that is {n + 1} blurs; t = {n} blurs add {n} variances.",
            )
        )
    if kernel_size is not None:
        slips.insert(
            0,
            (
                math.sqrt(sum(s * s for s in widths)),
                f"that is the answer for ideal Gaussians. The {kernel_size}-tap kernel is cut off at "
                f"+-{kernel_size // 2} px, so its variance is sum_i k_i i^2 over the taps, smaller than "
                "sigma^2 when sigma is not small next to the kernel; add those variances.",
            ),
        )
    for wrong, message in slips:
        if close(value, wrong):
            return report(False, "", message)
    if not (math.isfinite(value) and value > 0):
        return report(
            False, "", f"a width is a positive number of pixels; you gave {value!r}."
        )
    direction = "large" if value > expected else "small"
    return report(
        False,
        "",
        f"{value:.4f} px is too {direction}. Add the variances of the {where} and take the "
        "square root.",
    )


def check_masked_fraction(
    answer,
    t: int,
    threshold: float = 0.5,
    T: int = 50,
    std: float = 0.1,
    initial_mask: float = 11.0,
    size: int = 32,
) -> bool:
    """Check the fraction of pixels that the centred Gaussian inpainting masks at level t.

    A pixel counts as masked when its cumulative mask a_t = prod_{i<=t} m_i is below ``threshold``
    (a_t = 1: untouched, a_t = 0: erased). The defaults are the widths of the book's MNIST operator
    (the zoo's ``mnist-inpaint``: T = 50, std = 0.1, initial_mask = 11, 32 x 32 images), with the
    hole in the middle (the zoo's model draws its centre at random per image).

    Args:
        answer: your fraction, a real number in [0, 1].
        t: the level, an int in 0..T.
        threshold: a pixel is masked when a_t < threshold (in (0, 1]).
        T, std, initial_mask: the :class:`~colddiff_lib.degradations.Inpainting` arguments.
        size: image height and width in pixels.
    Returns:
        True if ``answer`` is within 0.5 / size^2 of the fraction (half a pixel).
    Raises:
        ValueError: if an argument has the wrong type or value.
    """
    value = _as_float(answer, "answer")
    t = _as_int(t, "t")
    size = _as_int(size, "size")
    threshold = _as_float(threshold, "threshold")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if size < 1:
        raise ValueError(f"size must be a positive int, got {size}")
    from ..degradations import Inpainting

    D = Inpainting(
        T=_as_int(T, "T"),
        std=_as_float(std, "std"),
        initial_mask=_as_float(initial_mask, "initial_mask"),
    )
    if not 0 <= t <= D.T:
        raise ValueError(f"t must lie in 0..T = 0..{D.T}, got {t}")
    like = torch.zeros(1, 1, size, size)
    a = D.cumulative_masks(like)[0]  # [T + 1, H, W]
    expected = float((a[t] < threshold).double().mean())
    tol = 0.5 / size**2
    if math.isfinite(value) and abs(value - expected) <= tol:
        n = round(expected * size * size)
        return report(
            True,
            f"{expected:.4f} of the pixels ({n} of {size * size}) have a_{t} < {threshold} at t = {t}.",
            "",
        )
    slips = [
        (
            1 - expected,
            "that is the fraction of pixels kept (a_t >= threshold); the question asks for the "
            "masked ones.",
        )
    ]
    if t >= 1:
        step = D.step_masks(like)[0, t - 1]
        slips.append(
            (
                float((step < threshold).double().mean()),
                f"that uses the single step mask m_{t} alone. The image at level t has been multiplied by "
                "every mask so far: use the cumulative product a_t = m_1 m_2 ... m_t.",
            )
        )
        slips.append(
            (
                float((a[t - 1] < threshold).double().mean()),
                "off by one step: a_t includes the masks m_1 up to and including m_t.",
            )
        )
    if t < D.T:
        slips.append(
            (
                float((a[t + 1] < threshold).double().mean()),
                f"off by one step: that is a_{t + 1}; a_t includes the masks m_1 up to and including m_t "
                f"(cumulative_masks(...)[0, t] is a_t, index 0 being a_0 = 1).",
            )
        )
    slips.append(
        (
            float((a[t] <= 1 - threshold).double().mean())
            if threshold != 0.5
            else float("nan"),
            f"you compared with 1 - threshold; a pixel is masked when a_t < {threshold}.",
        )
    )
    slips.append((expected * 100, "give a fraction in [0, 1], not a percentage."))
    slips.append(
        (
            expected * size * size,
            f"that is the number of masked pixels; divide by the {size * size} "
            "pixels of the image for the fraction.",
        )
    )
    for wrong, message in slips:
        if abs(value - wrong) <= tol and abs(wrong - expected) > tol:
            return report(False, "", message)
    if not (math.isfinite(value) and 0 <= value <= 1):
        return report(False, "", f"a fraction lies in [0, 1]; you gave {value!r}.")
    direction = "large" if value > expected else "small"
    return report(
        False,
        "",
        f"{value:.4f} is too {direction}. Build the cumulative mask a_t of the {size} x {size} "
        f"image and count the pixels below {threshold}.",
    )
