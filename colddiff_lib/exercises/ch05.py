"""Checkers for chapter 5 (reconstruction experiments)."""

from __future__ import annotations

import math
from typing import Callable

import torch

from . import report


def _test_pairs():
    """Two fixed batches of colour image pairs (x, y), [B, 3, 16, 16].

    The first is in [-1, 1], with per-image errors of very different sizes and, inside an image, channels
    with very different errors (so that a per-channel RMSE or a whole-set RMSE gives another number).
    The second ``y`` is a raw restoration that overshoots [-1, 1], as a network's output can, so that a
    missing clamp shows.
    """
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    y = x.clone()
    # one channel wrong, two right
    y[0, 0] = -y[0, 0]
    # and a small error
    y[0, 1] = (y[0, 1] + 0.05 * torch.randn(16, 16, generator=g)).clamp(-1, 1)
    # a large error
    y[1] = -y[1]
    # two channels off
    y[2, 1:] = (y[2, 1:] + 0.3 * torch.randn(2, 16, 16, generator=g)).clamp(-1, 1)
    # an unrelated image
    y[3] = torch.rand(3, 16, 16, generator=g) * 2 - 1
    x2 = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    y2 = 1.4 * x2 + 0.2 * torch.randn(3, 3, 16, 16, generator=g)  # reaches beyond +-1.4
    y2[0, 2] = x2[0, 2]
    return [(x, y), (x2, y2)]


def _as_float(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must return one number (a float or a 0-d tensor), "
                f"got a tensor of shape {tuple(value.shape)}"
            )
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{name} must return one number (a float or a 0-d tensor), got {type(value).__name__}"
        )
    return float(value)


def _diagnoses(x: torch.Tensor, y: torch.Tensor):
    """(value, what it is) of the usual wrong RMSEs on the batch pair (x, y)."""
    # what metrics.rmse compares
    a, b = ((x + 1) / 2).clamp(0, 1), ((y + 1) / 2).clamp(0, 1)
    # the same, without the clamp
    ua, ub = (x + 1) / 2, (y + 1) / 2
    per_image = (a - b).pow(2).flatten(1).mean(1)
    return [
        (
            (ua - ub).pow(2).flatten(1).mean(1).sqrt().mean(),
            "you did not clamp: after mapping to [0, 1], clamp to "
            "[0, 1] (a restoration can overshoot [-1, 1]; "
            "metrics.rmse clamps, as the table's images are).",
        ),
        (
            (x.clamp(-1, 1) - y.clamp(-1, 1)).pow(2).flatten(1).mean(1).sqrt().mean(),
            "you measured on [-1, 1]: map the images to [0, 1] first, (x + 1) / 2, which halves every error.",
        ),
        (
            (x - y).pow(2).flatten(1).mean(1).sqrt().mean(),
            "you measured on [-1, 1]: map the images to [0, 1] "
            "first, (x + 1) / 2 (then clamp), which halves every "
            "error.",
        ),
        (
            (a - b).pow(2).mean().sqrt(),
            "you took one square root over the whole batch: that is "
            "metrics.rmse_as_paper, the convention of the paper's code; this exercise "
            "asks for metrics.rmse, one RMSE per image, then the mean over the images "
            "(the square root does not commute with the mean).",
        ),
        (
            (a - b).pow(2).mean(dim=(2, 3)).sqrt().mean(),
            "you took an RMSE per channel: an image's RMSE averages the "
            "squared errors over all its channels and pixels before the "
            "square root (flatten(1), not mean over H and W).",
        ),
        (
            (a - b).pow(2).mean(0).sqrt().mean(),
            "you averaged over the batch first, pixel by pixel: average over "
            "each image's pixels, take the root, then average the images.",
        ),
        (
            per_image.mean(),
            "you returned the mean squared error: take the square root of each image's MSE.",
        ),
        (
            (a - b).abs().flatten(1).mean(1).mean(),
            "you returned the mean absolute error: square, average, "
            "then take the square root.",
        ),
        (
            per_image.sqrt().sum(),
            "you summed over the batch: average the per-image RMSEs instead.",
        ),
        (
            (ua.clamp(0, 1) - y).pow(2).flatten(1).mean(1).sqrt().mean(),
            "you mapped x to [0, 1] but not y: rescale both images.",
        ),
    ]


def check_rmse(my_rmse: Callable) -> bool:
    """Check a hand-written RMSE against :func:`colddiff_lib.metrics.rmse`, the book's convention.

    That convention (the tables' "RMSE (per img)" column) maps images to [0, 1], clamps, computes the
    RMSE of each image over all its channels and pixels, and averages over the batch. The paper's code
    takes one square root over every pixel of the set instead (:func:`colddiff_lib.metrics.rmse_as_paper`);
    this checker names that as a different answer.

    Args:
        my_rmse: a function ``my_rmse(x, y) -> float`` taking two batches of images [B, C, H, W]
            (values in [-1, 1]; ``y`` may be a raw restoration that overshoots) and returning one number.
            It must not change ``x`` or ``y``.
    Returns:
        True when it agrees with ``metrics.rmse`` to 1e-5 on two test batches of colour images.
    Raises:
        ValueError: if ``my_rmse`` is not a function, or returns something other than one number.
    """
    from ..metrics import rmse

    if not callable(my_rmse):
        raise ValueError(
            f"my_rmse must be a function my_rmse(x, y) -> float, got {type(my_rmse).__name__}"
        )
    pairs = _test_pairs()
    results = []
    for x, y in pairs:
        x_in, y_in = x.clone(), y.clone()
        got = _as_float(my_rmse(x_in, y_in), "my_rmse")
        if not (torch.equal(x_in, x) and torch.equal(y_in, y)):
            which = "x" if not torch.equal(x_in, x) else "y"
            return report(
                False,
                "",
                f"your function changed {which} in place (for example {which}.add_(1) or "
                f"{which} += 1): the caller's images must stay as they were; compute "
                f"(x + 1) / 2 into a new tensor.",
            )
        results.append((got, rmse(x, y)))

    def close(a, b):
        return math.isclose(a, float(b), rel_tol=1e-5, abs_tol=1e-6)

    wrong = [i for i, (got, want) in enumerate(results) if not close(got, want)]
    if not wrong:
        return report(
            True,
            f"your RMSE is {results[0][0]:.5f} and {results[1][0]:.5f} on the two test batches, "
            "as metrics.rmse says (per image, then the mean).",
            "",
        )
    if len(wrong) < len(results) and len({round(got, 9) for got, _ in results}) == 1:
        return report(
            False,
            "",
            f"right on one batch but {results[wrong[0]][0]:.5f} instead of "
            f"{results[wrong[0]][1]:.5f} on another: compute it from x and y.",
        )
    table = [_diagnoses(x, y) for x, y in pairs]
    first = wrong[0]
    got, want = results[first]
    # A slip that explains both batches first, then one that explains the first wrong
    # batch.
    for k, (_, message) in enumerate(table[first]):
        if all(close(results[i][0], table[i][k][0]) for i in range(len(pairs))):
            return report(False, "", f"{got:.5f} instead of {want:.5f}: {message}")
    for value, message in table[first]:
        if close(got, value):
            return report(False, "", f"{got:.5f} instead of {want:.5f}: {message}")
    if len(wrong) < len(results):
        return report(
            False,
            "",
            f"right on one batch but {got:.5f} instead of {want:.5f} on another.",
        )
    return report(
        False,
        "",
        f"{got:.5f} instead of {want:.5f}. Map to [0, 1] and clamp, square the differences, "
        "average each image's channels and pixels, take the square root, then average over "
        "the batch.",
    )


def _step_cases():
    """(R, D, x_s, s, s_next) on which to try a hand-written coarse step: a 16 px blur of T = 10, a
    restorer that depends on its input and its level and overshoots [-1, 1] (so a missing clamp shows),
    and steps of one level and of several (so that a step to s - 1 shows)."""
    from ..degradations import GaussianBlur

    g = torch.Generator().manual_seed(7)
    D = GaussianBlur(T=10, kernel_size=5, std=1.0, channels=1)
    x0 = torch.rand(3, 1, 16, 16, generator=g) * 2 - 1

    def R(x, t):
        level = t.float().view(-1, 1, 1, 1) / D.T
        return 1.6 * x0.flip(0) * (1 - level) + 0.5 * x * level

    return [(R, D, D(x0, s), s, s_next) for s, s_next in ((10, 4), (6, 0), (3, 2))]


def _step_diagnoses(R, D, x, s, s_next):
    """(value, what it is) of the usual wrong coarse steps of Algorithm 2 from level s to s_next."""
    t = torch.full((x.shape[0],), s, dtype=torch.long)
    raw = R(x, t)
    h = raw.clamp(-1, 1)
    late = R(x, torch.full_like(t, s_next)).clamp(-1, 1)
    return [
        (
            x - D(h, s) + D(h, s - 1),
            "you stepped to s - 1: a coarse step goes to s_next, x - D(x0_hat, s) + D(x0_hat, s_next).",
        ),
        (
            D(h, s_next),
            "that is Algorithm 1's step, D(x0_hat, s_next); Algorithm 2 keeps x_s and moves it by "
            "D(x0_hat, s_next) - D(x0_hat, s).",
        ),
        (
            x + D(h, s) - D(h, s_next),
            "the signs are swapped: subtract D(x0_hat, s), add D(x0_hat, s_next).",
        ),
        (
            x - D(raw, s) + D(raw, s_next),
            "R's estimate was not clamped: clamp x0_hat to [-1, 1] first, as sample() does "
            "(a network can overshoot the range of an image).",
        ),
        (
            x - D(late, s) + D(late, s_next),
            "you called R at level s_next: the estimate comes from x_s, so R(x_s, s).",
        ),
        (h, "you returned the estimate x0_hat: return the next iterate, x_{s_next}."),
    ]


def check_coarse_step(my_step: Callable) -> bool:
    """Check a hand-written step of Algorithm 2 over a coarser grid of levels.

    The step from level s to a lower level s_next (:func:`colddiff_lib.sampling.sample` with ``levels``)
    is x_{s_next} = x_s - D(x0_hat, s) + D(x0_hat, s_next) with x0_hat = R(x_s, s) clamped to [-1, 1].

    Args:
        my_step: ``my_step(R, D, x, s, s_next) -> x_next``: ``R(x, t)`` a restorer (x [B, C, H, W], t
            LongTensor[B]), ``D`` the degradation, ``x`` the iterate x_s [B, C, H, W], ``s`` and
            ``s_next`` ints with ``s_next < s``; it returns x_{s_next} [B, C, H, W].
    Returns:
        True when it agrees with the library's step to 1e-5 on a blur with steps of one and of several
        levels.
    Raises:
        ValueError: if ``my_step`` is not a function, or returns something other than a tensor of x's shape.
    """
    from ..sampling import sample

    if not callable(my_step):
        raise ValueError(
            f"my_step must be a function my_step(R, D, x, s, s_next) -> x_next, got "
            f"{type(my_step).__name__}"
        )
    for R, D, x, s, s_next in _step_cases():
        x_in = x.clone()
        got = my_step(R, D, x_in, s, s_next)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            raise ValueError(
                f"my_step must return the next iterate, a tensor of x's shape {tuple(x.shape)}, got "
                f"{type(got).__name__}{tuple(got.shape) if isinstance(got, torch.Tensor) else ''}"
            )
        if not torch.equal(x_in, x):
            return report(
                False,
                "",
                "your function changed x in place (for example x -= ...): the caller's iterate must "
                "stay as it was; compute x - D(...) + D(...) into a new tensor.",
            )
        # the library's first step of a run over the levels s, s_next (, 0)
        steps = []
        sample(
            R, D, x, s, levels=[s, s_next] + [0] * (s_next > 0), callback=steps.append
        )
        want = steps[0]["x_next"]
        if torch.allclose(got.float(), want, atol=1e-5, rtol=0):
            continue
        for value, message in _step_diagnoses(R, D, x, s, s_next):
            if torch.allclose(got.float(), value, atol=1e-5, rtol=0):
                return report(False, "", f"from level {s} to {s_next}, {message}")
        error = float((got.float() - want).abs().max())
        return report(
            False,
            "",
            f"from level {s} to {s_next} your x_next is up to {error:.4f} away from the library's. "
            "Clamp x0_hat = R(x_s, s) to [-1, 1], then return x_s - D(x0_hat, s) + D(x0_hat, s_next).",
        )
    return report(
        True,
        "your step lands where sample(levels=[s, s_next, ...]) steps, for long steps and for "
        "one-level ones.",
        "",
    )
