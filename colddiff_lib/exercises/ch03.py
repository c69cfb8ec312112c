"""Checkers for chapter 3, "The restoration operator and the l1 objective"."""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch

from . import report

__all__ = ["check_l1_objective"]


class _LevelRestorer(torch.nn.Module):
    """A test restorer R(x, t): a 3 x 3 convolution plus a large offset per level and channel.

    Its output depends strongly on ``t`` (consecutive levels differ by about 1.4), so a loss computed at
    the wrong level, or with one level for the whole batch, is far from the right one; and it leaves
    [-1, 1], so a clamp shows. Random weights from a fixed seed, gradients on.
    """

    def __init__(self, T: int, channels: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(
                0.3 * torch.randn(self.conv.weight.shape, generator=g)
            )
            self.conv.bias.copy_(0.1 * torch.randn(self.conv.bias.shape, generator=g))
        levels = torch.arange(T + 1, dtype=torch.float32).view(-1, 1)
        sign = 1 - 2 * (torch.arange(T + 1) % 2).view(-1, 1).float()
        self.offset = torch.nn.Parameter(
            0.7 * sign + 0.04 * levels + 0.15 * torch.arange(channels).float()
        )

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).long().reshape(-1).expand(x.shape[0])
        return 1.5 * self.conv(x) + self.offset[t].view(x.shape[0], -1, 1, 1)


def _test_cases() -> List[Tuple[torch.nn.Module, object, torch.Tensor, torch.Tensor]]:
    """Fixed inputs: level-aware test restorers, the book's MNIST blur (T = 20), smooth random images,
    one grey batch [4, 1, 16, 16] and one colour batch [3, 3, 16, 16], each image at its own level."""
    from ..degradations import GaussianBlur

    g = torch.Generator().manual_seed(3)
    D = GaussianBlur(T=20, kernel_size=11, std=7.0)
    cases = []
    for batch, channels, levels in ((4, 1, (20, 1, 7, 2)), (3, 3, (20, 1, 3))):
        coarse = torch.rand(batch, channels, 4, 4, generator=g) * 2 - 1
        # detail that one more blur changes
        fine = torch.rand(batch, channels, 16, 16, generator=g) * 2 - 1
        smooth = torch.nn.functional.interpolate(
            coarse, size=(16, 16), mode="bilinear", align_corners=False
        )
        x0 = (0.5 * smooth + 0.5 * fine).clamp(-1, 1)
        # different levels, the most degraded one first
        t = torch.tensor(levels, dtype=torch.long)
        # the layers' default initialisation draws from the global RNG
        with torch.random.fork_rng(devices=[]):
            R = _LevelRestorer(D.T, channels, seed=10 + channels)
        cases.append((R, D, x0, t))
    return cases


def _as_loss(value) -> torch.Tensor:
    """The student's loss as a 0-d tensor, or a string saying why it is not one."""
    if not isinstance(value, torch.Tensor):
        return (
            "your function returned a "
            + type(value).__name__
            + "; return a torch.Tensor holding one number "
            "(a Python float cannot be back-propagated: keep the tensor, do not call .item())."
        )
    if value.numel() != 1:
        return (
            f"your function returned a tensor of shape {tuple(value.shape)}; the objective is one number, "
            "the mean over the batch and over every pixel."
        )
    return value.reshape(())


def check_l1_objective(fn: Callable) -> bool:
    """Check an implementation of the training objective on one batch.

    ``fn(R, D, x0, t)`` must return the mean absolute error ``mean |R(D(x0, t), t) - x0|`` as a
    0-d tensor that can be back-propagated (the same number as
    :func:`colddiff_lib.training.degradation_loss` with ``loss="l1"``).

    Args:
        fn: your function. It is called with ``R`` a small network ``R(x, t)`` (random weights, gradients
            on; its output depends strongly on t and leaves [-1, 1]), ``D`` a deterministic
            :class:`~colddiff_lib.degradations.GaussianBlur` with T = 20, ``x0`` images [B, C, 16, 16] in
            [-1, 1] (one grey batch, one with three channels) and ``t`` a LongTensor[B] in 1..T, a
            different level per image.
    Returns:
        True if ``fn`` matches the library to 1e-5 on every test batch, leaves ``x0`` and ``t`` unchanged
        and its result has a gradient.
    Raises:
        ValueError: if ``fn`` is not callable.
    """
    if not callable(fn):
        raise ValueError(
            f"fn must be a function fn(R, D, x0, t) -> loss, got {type(fn).__name__}"
        )
    from ..training import degradation_loss

    for model, D, x0, t in _test_cases():
        model.zero_grad(set_to_none=True)
        x0_in, t_in = x0.clone(), t.clone()
        value = _as_loss(fn(model, D, x0_in, t_in))
        if not torch.equal(x0_in, x0) or not torch.equal(t_in, t):
            which = "x0" if not torch.equal(x0_in, x0) else "t"
            return report(
                False,
                "",
                f"your function changed {which} in place (an in-place operation such as "
                f"{which}.sub_(...), {which} -= ... or {which}.clamp_(...)): the caller's batch "
                "must stay as it was; compute new tensors instead.",
            )
        if isinstance(value, str):
            return report(False, "", value)
        with torch.no_grad():
            expected = float(degradation_loss(model, D, x0, t, None, "l1"))
            x_t = D(x0, t)
            pred = model(x_t, t)
            diff = pred - x0
            slips = [
                (
                    diff.pow(2).mean(),
                    "that is the mean squared error (l2). The paper's objective is the l1 norm: "
                    "the mean of |R(D(x0, t), t) - x0|, with no square.",
                ),
                (
                    diff.abs().sum(),
                    "you summed the absolute errors; take their mean over the batch and the pixels, "
                    "so that the loss does not grow with the batch or image size.",
                ),
                (
                    diff.abs().flatten(1).sum(1).mean(),
                    "you summed over the pixels of each image; average over the "
                    "pixels too (torch's .mean() over the whole tensor).",
                ),
                (
                    diff.mean().abs(),
                    "you took the absolute value of the mean error, so positive and negative errors "
                    "cancel; take the mean of the absolute errors instead.",
                ),
                (
                    (pred - x_t).abs().mean(),
                    "the target is the clean image x0, not the degraded x_t: R learns to undo "
                    "the degradation.",
                ),
                (
                    (model(x0, t) - x0).abs().mean(),
                    "you fed R the clean image. Degrade it first: R sees "
                    "x_t = D(x0, t) and must return x0.",
                ),
                (
                    (x_t - x0).abs().mean(),
                    "that is the error of the degraded image itself; the objective measures "
                    "R's output R(D(x0, t), t) against x0.",
                ),
                (
                    (model(x_t, t - 1) - x0).abs().mean(),
                    "you told R the level t - 1: R(x_t, t) gets the level of "
                    "its input, the same t that degraded it (off by one).",
                ),
                (
                    (model(D(x0, t - 1), t) - x0).abs().mean(),
                    "you degraded to t - 1: the input is x_t = D(x0, t), "
                    "at the image's own level (off by one).",
                ),
                (
                    (model(D(x0, t - 1), t - 1) - x0).abs().mean(),
                    "you used t - 1 for both D and R: the levels run "
                    "over 1..T as given, use t itself (off by one).",
                ),
                (
                    (model(D(x0, int(t[0])), int(t[0])) - x0).abs().mean(),
                    "you used the first image's level t[0] for the whole batch: each image has its own level, "
                    "pass the LongTensor t to D and R as it is.",
                ),
                (
                    (model(D(x0, int(t.max())), int(t.max())) - x0).abs().mean(),
                    "you used the largest level t.max() for the whole batch: each image has its own level, "
                    "pass the LongTensor t to D and R as it is.",
                ),
                (
                    (pred.clamp(-1, 1) - x0).abs().mean(),
                    "you clamped R's output: the objective takes the raw output "
                    "(a clamp has no gradient where it bites, so R would not learn "
                    "to stay in range); clamping belongs to sampling.",
                ),
                (
                    diff.abs().mean(dim=(0, 2, 3)).sum(),
                    "you summed over the channels: take the mean over every "
                    "pixel of every channel (one .mean() over the whole tensor).",
                ),
            ]
        got = float(value.detach())
        if abs(got - expected) > 1e-5 * max(1.0, abs(expected)):
            for wrong, message in slips:
                if abs(got - float(wrong)) <= 1e-5 * max(1.0, abs(float(wrong))):
                    return report(False, "", message)
            return report(
                False,
                "",
                f"on a test batch of {len(x0)} images of {x0.shape[-1]} x {x0.shape[-1]} pixels "
                f"your loss is {got:.6f}, the objective is {expected:.6f}. Compute "
                "x_t = D(x0, t), then the mean of |R(x_t, t) - x0|.",
            )
        if not value.requires_grad:
            return report(
                False,
                "",
                "the value is right but has no gradient: do not compute it under "
                "torch.no_grad() or .detach() it, or training cannot back-propagate.",
            )
        value.backward()
        if not any(
            p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()
        ):
            return report(
                False,
                "",
                "the value is right but back-propagating it gives R no gradient.",
            )
    return report(
        True,
        "your objective equals colddiff_lib.training.degradation_loss(..., loss='l1') and "
        "back-propagates into R.",
        "",
    )
