"""Checkers for chapter 3, "The restoration operator and the l1 objective"."""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch

from . import report

__all__ = ["check_l1_objective"]


def _test_cases() -> List[Tuple[torch.nn.Module, object, torch.Tensor, torch.Tensor]]:
    """Small fixed inputs: a random-weight tiny U-Net, the book's MNIST blur, smooth random images."""
    from ..degradations import GaussianBlur
    from ..models import UNet

    g = torch.Generator().manual_seed(3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = UNet.from_preset("tiny", channels=1)
    D = GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1)
    cases = []
    for batch, size in ((4, 16), (3, 32)):
        coarse = torch.rand(batch, 1, size // 4, size // 4, generator=g) * 2 - 1
        x0 = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        t = torch.randint(1, D.T + 1, (batch,), generator=g)
        t[0] = D.T  # always include the most degraded level
        cases.append((model, D, x0, t))
    return cases


def _as_loss(value) -> torch.Tensor:
    """The student's loss as a 0-d tensor, or a string saying why it is not one."""
    if not isinstance(value, torch.Tensor):
        return ("your function returned a " + type(value).__name__ + "; return a torch.Tensor holding one number "
                "(a Python float cannot be back-propagated: keep the tensor, do not call .item()).")
    if value.numel() != 1:
        return (f"your function returned a tensor of shape {tuple(value.shape)}; the objective is one number, "
                "the mean over the batch and over every pixel.")
    return value.reshape(())


def check_l1_objective(fn: Callable) -> bool:
    """Check an implementation of the training objective on one batch.

    ``fn(R, D, x0, t)`` must return the mean absolute error ``mean |R(D(x0, t), t) - x0|`` as a
    0-d tensor that can be back-propagated (the same number as
    :func:`colddiff_lib.training.degradation_loss` with ``loss="l1"``).

    Args:
        fn: your function. It is called with ``R`` a :class:`~colddiff_lib.models.UNet` (random
            weights, gradients on), ``D`` a deterministic :class:`~colddiff_lib.degradations.GaussianBlur`
            with T = 20, ``x0`` images [B, 1, H, W] in [-1, 1] and ``t`` a LongTensor[B] in 1..T.
    Returns:
        True if ``fn`` matches the library to 1e-5 on every test batch and its result has a gradient.
    Raises:
        ValueError: if ``fn`` is not callable.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a function fn(R, D, x0, t) -> loss, got {type(fn).__name__}")
    from ..training import degradation_loss

    for model, D, x0, t in _test_cases():
        model.zero_grad(set_to_none=True)
        value = _as_loss(fn(model, D, x0.clone(), t.clone()))
        if isinstance(value, str):
            return report(False, "", value)
        with torch.no_grad():
            expected = float(degradation_loss(model, D, x0, t, None, "l1"))
            x_t = D(x0, t)
            pred = model(x_t, t)
            diff = pred - x0
            slips = [
                (diff.pow(2).mean(), "that is the mean squared error (l2). The paper's objective is the l1 norm: "
                                     "the mean of |R(D(x0, t), t) - x0|, with no square."),
                (diff.abs().sum(), "you summed the absolute errors; take their mean over the batch and the pixels, "
                                   "so that the loss does not grow with the batch or image size."),
                (diff.abs().flatten(1).sum(1).mean(), "you summed over the pixels of each image; average over the "
                                                      "pixels too (torch's .mean() over the whole tensor)."),
                (diff.mean().abs(), "you took the absolute value of the mean error, so positive and negative errors "
                                    "cancel; take the mean of the absolute errors instead."),
                ((pred - x_t).abs().mean(), "the target is the clean image x0, not the degraded x_t: R learns to undo "
                                            "the degradation."),
                ((model(x0, t) - x0).abs().mean(), "you fed R the clean image. Degrade it first: R sees "
                                                   "x_t = D(x0, t) and must return x0."),
                ((x_t - x0).abs().mean(), "that is the error of the degraded image itself; the objective measures "
                                          "R's output R(D(x0, t), t) against x0."),
            ]
        got = float(value.detach())
        if abs(got - expected) > 1e-5 * max(1.0, abs(expected)):
            for wrong, message in slips:
                if abs(got - float(wrong)) <= 1e-5 * max(1.0, abs(float(wrong))):
                    return report(False, "", message)
            return report(False, "", f"on a test batch of {len(x0)} images of {x0.shape[-1]} x {x0.shape[-1]} pixels "
                                     f"your loss is {got:.6f}, the objective is {expected:.6f}. Compute "
                                     "x_t = D(x0, t), then the mean of |R(x_t, t) - x0|.")
        if not value.requires_grad:
            return report(False, "", "the value is right but has no gradient: do not compute it under "
                                     "torch.no_grad() or .detach() it, or training cannot back-propagate.")
        value.backward()
        if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()):
            return report(False, "", "the value is right but back-propagating it gives R no gradient.")
    return report(True, "your objective equals colddiff_lib.training.degradation_loss(..., loss='l1') and "
                        "back-propagates into R.", "")
