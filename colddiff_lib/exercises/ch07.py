"""Checkers for chapter 7, "Your own degradation", and for Appendix A1, "Reproducing the paper on a GPU"."""

from __future__ import annotations

import math
from typing import Optional

import torch

from . import report
from .ch01 import _as_float, _as_int

__all__ = ["check_degradation", "check_training_time"]

def check_degradation(D, x0: Optional[torch.Tensor] = None) -> bool:
    """Check that ``D`` follows the contract of :class:`colddiff_lib.degradations.Degradation`
    (:func:`colddiff_lib.degradations.contract.check` says what is checked).

    Args:
        D: an instance of a :class:`~colddiff_lib.degradations.Degradation` subclass.
        x0: test images [B, C, H, W] in [-1, 1] with B >= 2, or ``None`` for eight held-out digits.
    Returns:
        True if every check passes; otherwise prints each problem found and returns False.
    Raises:
        ValueError: if ``D`` is not a Degradation instance (a class, a function...) or ``x0`` is not
            a batch of at least two images.
    """
    from ..degradations import contract

    problems, summary = contract.check(D, x0)
    return report(not problems, summary, "\n".join(problems))


def _rates(card: dict):
    """(slow, fast) steps per second of a zoo card: the whole command, and the training loop alone."""
    history = card.get("history") or {}
    steps_logged = (history.get("step") or [0])[-1]
    elapsed = (history.get("elapsed") or [0.0])[-1]
    reached = max(int(card["step"]), int(steps_logged))
    slow = reached / float(card["train_seconds"])
    fast = steps_logged / elapsed if steps_logged and elapsed else slow
    return min(slow, fast), max(slow, fast)


def check_training_time(answer, steps: int, name: str = "mnist-superres") -> bool:
    """Check an estimate of how long ``steps`` training steps of a zoo model take on the card's machine.

    The rate comes from the model's card (``zoo.card(name)``): the steps it reached in
    ``train_seconds`` (the whole training command, start-up included), or the last logged step over
    its ``history["elapsed"]`` (the training loop alone). Any estimate between the two, give or
    take 5 %, is accepted.

    Args:
        answer: your estimate in seconds, a positive real number.
        steps: the number of training steps, a positive int.
        name: a zoo model with a training card (e.g. ``"mnist-superres"``, ``"mnist-blur"``).
    Returns:
        True if ``answer`` lies in the accepted range.
    Raises:
        ValueError: if an argument has the wrong type or value.
    """
    from .. import zoo

    value = _as_float(answer, "answer")
    steps = _as_int(steps, "steps")
    if steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps}")
    if not isinstance(name, str):
        raise ValueError(f"name must be a zoo model name (a str), got {type(name).__name__}")
    card = zoo.card(name)
    if not card.get("train_seconds") or "step" not in card:
        raise ValueError(f"name must be a zoo model with a training card, but {name!r} has no step/train_seconds")
    slow, fast = _rates(card)
    lo, hi = 0.95 * steps / fast, 1.05 * steps / slow
    if not math.isfinite(value) or value <= 0:
        return report(False, "", f"answer must be a positive number of seconds, got {value}")
    if lo <= value <= hi:
        return report(True, f"{steps} steps at {slow:.1f} to {fast:.1f} steps/s take {steps / fast:.0f} to "
                            f"{steps / slow:.0f} s ({steps / fast / 60:.1f} to {steps / slow / 60:.1f} min).", "")
    for unit, factor in (("minutes", 60.0), ("hours", 3600.0)):
        if lo <= value * factor <= hi:
            return report(False, "", f"{value:g} looks like a time in {unit}: give the answer in seconds")
    if 0.95 * steps * slow <= value <= 1.05 * steps * fast:
        return report(False, "", "you multiplied the steps by the rate: time = steps / (steps per second)")
    direction = "long" if value > hi else "short"
    return report(False, "", f"{value:g} s is too {direction}: read the rate from zoo.card({name!r}) "
                             f"(card['step'] steps in card['train_seconds'] seconds) and divide the steps by it")
