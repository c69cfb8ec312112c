"""Checkers for chapter 4, "Sampling: Algorithm 1 against Algorithm 2"."""

from __future__ import annotations

from typing import Callable

import torch

from . import report

__all__ = ["check_improved_step"]


class _BadRestorer:
    """A deliberately poor but deterministic R(x, t): x squashed, plus a fixed pattern and a level term.

    The pattern gives the estimate fine detail, so that blurring it once more changes it; the level term
    changes a lot from one level to the next, so that R called at the wrong level shows; and the output
    reaches +-1.6, outside [-1, 1], so that a step which forgets to clamp the estimate shows.
    Accepts ``t`` as an int or a LongTensor[B].
    """

    def __init__(self, size: int = 16, channels: int = 3):
        self.pattern = torch.randn(
            1, channels, size, size, generator=torch.Generator().manual_seed(5)
        )

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return 1.6 * torch.tanh(
            1.7 * x + 0.8 * self.pattern.to(x) + 0.5 * torch.cos(0.9 * t)
        )


def _library_step(R, D, x_s: torch.Tensor, s: int) -> torch.Tensor:
    """x_{s-1} of one Algorithm 2 step, taken from :func:`colddiff_lib.sampling.sample`'s first step."""
    from ..sampling import sample

    first = {}

    def keep(info):
        if info["s"] == s:
            first["x_next"] = info["x_next"]

    # Only the first step matters; starting at s and stopping after it keeps this cheap
    # enough.
    sample(R, D, x_s, s, algorithm="improved", callback=keep)
    return first["x_next"]


def check_improved_step(fn: Callable) -> bool:
    """Check one step of Algorithm 2 (the improved sampler).

    ``fn(R, D, x_s, s)`` must return ``x_{s-1} = x_s - D(x0_hat, s) + D(x0_hat, s - 1)`` with
    ``x0_hat = R(x_s, s)`` clamped to [-1, 1], as :func:`colddiff_lib.sampling.sample` does, and leave
    ``x_s`` unchanged.

    Args:
        fn: your function. It is called with ``R`` a callable ``R(x, s) -> [B, C, H, W]`` (``s`` an int;
            its estimates reach +-1.6, outside the image range, so the clamp matters), ``D`` the book's
            MNIST blur (:class:`~colddiff_lib.degradations.GaussianBlur`, T = 20), ``x_s`` = D(x0, s),
            images [3, 3, 16, 16], and ``s`` an int in 1..T.
    Returns:
        True if ``fn`` matches the library to 1e-5 at s = 4, 1 and T.
    Raises:
        ValueError: if ``fn`` is not callable.
    """
    if not callable(fn):
        raise ValueError(
            f"fn must be a function fn(R, D, x_s, s) -> x_(s-1), got {type(fn).__name__}"
        )
    from ..degradations import GaussianBlur

    R = _BadRestorer()
    D = GaussianBlur(T=20, kernel_size=11, std=7.0)
    g = torch.Generator().manual_seed(4)
    coarse = torch.rand(3, 3, 4, 4, generator=g) * 2 - 1
    fine = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    smooth = torch.nn.functional.interpolate(
        coarse, size=(16, 16), mode="bilinear", align_corners=False
    )
    x0 = (0.6 * smooth + 0.4 * fine).clamp(-1, 1)
    clamp_hint = " (and clamp the estimate to [-1, 1], as sample() does)"
    # the blur saturates on 16 px: the first levels tell the most apart
    levels = (4, 1, D.T)
    inputs, outputs, expected = {}, {}, {}
    for s in levels:
        x_s = D(x0, s)
        x_in = x_s.clone()
        with torch.no_grad():
            got = fn(R, D, x_in, s)
        if not torch.equal(x_in, x_s):
            return report(
                False,
                "",
                f"at s = {s} your function changed x_s in place (x_s -= ..., x_s.sub_(...)): "
                "the caller's x_s must stay as it was; build x_(s-1) as a new tensor, "
                "x_s - D(x0_hat, s) + D(x0_hat, s - 1).",
            )
        if not isinstance(got, torch.Tensor):
            return report(
                False,
                "",
                f"your function returned a {type(got).__name__}; return the tensor "
                f"x_(s-1), shaped like x_s {tuple(x_s.shape)}.",
            )
        if got.shape != x_s.shape:
            return report(
                False,
                "",
                f"at s = {s} your x_(s-1) has shape {tuple(got.shape)}; it should be "
                f"shaped like x_s, {tuple(x_s.shape)}.",
            )
        inputs[s], outputs[s], expected[s] = (
            x_s,
            got.detach().float(),
            _library_step(R, D, x_s, s),
        )

    def close(a, b):
        return torch.allclose(a, b.float(), atol=1e-5, rtol=0)

    wrong_at = [s for s in levels if not close(outputs[s], expected[s])]
    if not wrong_at:
        return report(
            True,
            "your step equals colddiff_lib.sampling.sample's Algorithm 2 (estimate clamped) at "
            "s = 4, 1 and 20.",
            "",
        )

    def slips(s):
        """(x_(s-1) of a usual slip, what the slip is) at level s."""
        x_s = inputs[s]
        raw = R(x_s, s)
        x0_hat = raw.clamp(-1, 1)
        earlier = R(x_s, s - 1).clamp(-1, 1)
        out = [
            (
                (x_s - D(x0_hat, s) + D(x0_hat, s - 1)).clamp(-1, 1),
                "you clamped x_(s-1), the step's result; clamp "
                "the estimate x0_hat = R(x_s, s) instead.",
            ),
            (
                (x_s - D(raw, s) + D(raw, s - 1)).clamp(-1, 1),
                "you clamped x_(s-1), the step's result; clamp the "
                "estimate x0_hat = R(x_s, s) instead.",
            ),
            (
                x_s - D(raw, s) + D(raw, s - 1),
                "you did not clamp the estimate: sample() uses "
                "x0_hat = R(x_s, s).clamp(-1, 1), and R's guesses can leave the "
                "image range.",
            ),
            (
                x_s - D(raw.clamp(0, 1), s) + D(raw.clamp(0, 1), s - 1),
                "images live in [-1, 1]: clamp the estimate "
                "with .clamp(-1, 1), not (0, 1).",
            ),
            (
                x_s,
                "your step returns x_s unchanged: the two D terms must be at different levels, D(x0_hat, s) "
                "and D(x0_hat, s - 1).",
            ),
        ]
        for estimate, hint in ((x0_hat, ""), (raw, clamp_hint)):
            out += [
                (
                    D(estimate, s - 1),
                    "that is Algorithm 1 (degrade the estimate to s - 1). Algorithm 2 starts from "
                    "x_s and adds the change of the estimate's degradation: "
                    "x_s - D(x0_hat, s) + D(x0_hat, s - 1)" + hint + ".",
                ),
                (
                    x_s + D(estimate, s) - D(estimate, s - 1),
                    "the signs are swapped: subtract D(x0_hat, s) and add "
                    "D(x0_hat, s - 1), which is the less degraded one" + hint + ".",
                ),
                (
                    D(estimate, s - 1) - D(estimate, s),
                    "you left out x_s: the step moves x_s itself by "
                    "D(x0_hat, s - 1) - D(x0_hat, s)" + hint + ".",
                ),
                (
                    estimate,
                    "that is the direct estimate R(x_s, s); one step only goes from level s to level s - 1"
                    + hint
                    + ".",
                ),
            ]
        out += [
            (
                x_s - D(earlier, s) + D(earlier, s - 1),
                "you called R at level s - 1; R must be told the level of "
                "its input, R(x_s, s).",
            ),
            (
                x_s - D(x_s, s) + D(x_s, s - 1),
                "you degraded x_s itself; the step degrades the estimate "
                "x0_hat = R(x_s, s).clamp(-1, 1).",
            ),
        ]
        return out

    table = {s: slips(s) for s in levels}
    first = wrong_at[0]
    # A slip that explains every level first (one level alone can be ambiguous), then
    # one that explains the first level where the step is wrong.
    for k, (_, message) in enumerate(table[first]):
        if all(close(outputs[s], table[s][k][0]) for s in levels):
            return report(False, "", f"at s = {first}: {message}")
    for wrong, message in table[first]:
        if close(outputs[first], wrong):
            return report(False, "", f"at s = {first}: {message}")
    gap = float((outputs[first] - expected[first]).abs().max())
    return report(
        False,
        "",
        f"at s = {first} your x_(s-1) differs from the library's by up to {gap:.4g}. "
        "Compute x0_hat = R(x_s, s).clamp(-1, 1), then x_s - D(x0_hat, s) + D(x0_hat, s - 1).",
    )
