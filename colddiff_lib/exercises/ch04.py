"""Checkers for chapter 4, "Sampling: Algorithm 1 against Algorithm 2"."""

from __future__ import annotations

from typing import Callable

import torch

from . import report

__all__ = ["check_improved_step"]


class _BadRestorer:
    """A deliberately poor but deterministic R(x, t): x squashed, plus a fixed pattern, in [-1, 1].

    The pattern gives the estimate fine detail, so that blurring it once more changes it.
    Accepts ``t`` as an int or a LongTensor[B]; its output never needs clamping.
    """

    def __init__(self, size: int = 16):
        self.pattern = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(5))

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return torch.tanh(1.7 * x + 0.8 * self.pattern.to(x) + 0.02 * t) * 0.9


def _library_step(R, D, x_s: torch.Tensor, s: int) -> torch.Tensor:
    """x_{s-1} of one Algorithm 2 step, taken from :func:`colddiff_lib.sampling.sample`'s first step."""
    from ..sampling import sample

    first = {}

    def keep(info):
        if info["s"] == s:
            first["x_next"] = info["x_next"]

    # Only the first step matters; starting at s and stopping after it keeps this cheap enough.
    sample(R, D, x_s, s, algorithm="improved", callback=keep)
    return first["x_next"]


def check_improved_step(fn: Callable) -> bool:
    """Check one step of Algorithm 2 (the improved sampler).

    ``fn(R, D, x_s, s)`` must return ``x_{s-1} = x_s - D(x0_hat, s) + D(x0_hat, s - 1)`` with
    ``x0_hat = R(x_s, s)``, as :func:`colddiff_lib.sampling.sample` does.

    Args:
        fn: your function. It is called with ``R`` a callable ``R(x, s) -> [B, C, H, W]`` (values in
            [-1, 1]; ``s`` an int), ``D`` the book's MNIST blur
            (:class:`~colddiff_lib.degradations.GaussianBlur`, T = 20), ``x_s`` = D(x0, s), images
            [B, 1, 16, 16], and ``s`` an int in 1..T.
    Returns:
        True if ``fn`` matches the library to 1e-5 at s = 1, a middle level and s = T.
    Raises:
        ValueError: if ``fn`` is not callable.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a function fn(R, D, x_s, s) -> x_(s-1), got {type(fn).__name__}")
    from ..degradations import GaussianBlur

    R = _BadRestorer()
    D = GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1)
    g = torch.Generator().manual_seed(4)
    coarse = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    x0 = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    for s in (D.T, 7, 1):
        x_s = D(x0, s)
        with torch.no_grad():
            got = fn(R, D, x_s.clone(), s)
        if not isinstance(got, torch.Tensor):
            return report(False, "", f"your function returned a {type(got).__name__}; return the tensor "
                                     f"x_(s-1), shaped like x_s {tuple(x_s.shape)}.")
        if got.shape != x_s.shape:
            return report(False, "", f"at s = {s} your x_(s-1) has shape {tuple(got.shape)}; it should be "
                                     f"shaped like x_s, {tuple(x_s.shape)}.")
        expected = _library_step(R, D, x_s, s)
        got = got.detach().float()
        if torch.allclose(got, expected, atol=1e-5, rtol=0):
            continue
        x0_hat = R(x_s, s)
        earlier = R(x_s, s - 1)
        slips = [
            (D(x0_hat, s - 1), "that is Algorithm 1 (degrade the estimate to s - 1). Algorithm 2 starts from x_s and "
                               "adds the change of the estimate's degradation: x_s - D(x0_hat, s) + D(x0_hat, s - 1)."),
            (x_s + D(x0_hat, s) - D(x0_hat, s - 1), "the signs are swapped: subtract D(x0_hat, s) and add "
                                                    "D(x0_hat, s - 1), which is the less degraded one."),
            (D(x0_hat, s - 1) - D(x0_hat, s), "you left out x_s: the step moves x_s itself by "
                                              "D(x0_hat, s - 1) - D(x0_hat, s)."),
            (x0_hat, "that is the direct estimate R(x_s, s); one step only goes from level s to level s - 1."),
            (x_s - D(earlier, s) + D(earlier, s - 1), "you called R at level s - 1; R must be told the level of "
                                                      "its input, R(x_s, s)."),
        ]
        for wrong, message in slips:
            if torch.allclose(got, wrong.float(), atol=1e-5, rtol=0):
                return report(False, "", f"at s = {s}: {message}")
        gap = float((got - expected).abs().max())
        return report(False, "", f"at s = {s} your x_(s-1) differs from the library's by up to {gap:.4g}. "
                                 "Compute x0_hat = R(x_s, s), then x_s - D(x0_hat, s) + D(x0_hat, s - 1).")
    return report(True, "your step equals colddiff_lib.sampling.sample's Algorithm 2 at s = 20, 7 and 1.", "")
