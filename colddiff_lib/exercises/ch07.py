"""Checkers for chapter 7, "Your own degradation", and for Appendix A1, "Reproducing the paper on a GPU"."""

from __future__ import annotations

import math
from typing import Optional

import torch

from . import report
from .ch01 import _as_float, _as_int

__all__ = ["check_degradation", "check_training_time"]

# : How far past [-1, 1] a linear degradation's images may go (a bicubic resampling
# rings at sharp edges).
RINGING = 0.25

# : The formulas of chapter 7's exercises, by name: (formula(D, x0, t) for an int level
# t, how it reads).
FORMULAS = {
    "darken": (
        lambda D, x0, t: -1 + (1 - getattr(D, "kappa", 0.9) * t / D.T) * (x0 + 1),
        "D(x0, t) = -1 + (1 - kappa t / T)(x0 + 1), kappa = 0.9",
    ),
}


def _darken_slips(D, x0, t):
    """(D(x0, t) of a usual slip in the Darken exercise, what it is)."""
    kappa, T = getattr(D, "kappa", 0.9), D.T
    return [
        (
            (1 - kappa * t / T) * x0,
            "it fades toward 0 (mid-grey); the exercise fades toward black, -1: "
            "-1 + (1 - kappa t / T)(x0 + 1)",
        ),
        (
            -1 + (1 - kappa * (t - 1) / T) * (x0 + 1),
            "off by one level: you used (t - 1) / T; level t darkens by kappa t / T",
        ),
        (
            -1 + (1 - kappa * (t + 1) / T) * (x0 + 1),
            "off by one level: you used (t + 1) / T; level t darkens by kappa t / T",
        ),
        (
            -1 + (1 - t / T) * (x0 + 1),
            "you left out kappa: at t = T the image keeps a tenth of its contrast, "
            "1 - kappa = 0.1",
        ),
        (
            -1 + (1 - kappa * t / T) * x0,
            "the offset is missing: darken the distance to black, (x0 + 1), "
            "then add -1 back",
        ),
    ]


def _end_state(D, Dz, x0: torch.Tensor) -> Optional[str]:
    """A problem with the end state that ``D`` claims (``has_latent``: latent()/from_latent(), for instance
    the FlatEnd mixin's flat colour), or None. A class may claim it for some configurations only (its
    ``has_latent`` property: a blur claims it where it collapses at T)."""
    from ..degradations.base import Degradation, FlatEnd

    name = type(D).__name__
    noisy = D.noise_schedule() is not None
    if D.has_latent:
        claim = (
            "the FlatEnd mixin says D(x0, T) is one flat colour per image and channel"
            if isinstance(D, FlatEnd)
            else "has_latent says latent() summarises D(x0, T)"
        )
        try:
            x_T = Dz.clean(x0, D.T) if noisy else Dz(x0, D.T)
            back = D.from_latent(D.latent(x_T), tuple(x_T.shape[1:]))
            gap = float((back - x_T).abs().max())
        except Exception as err:
            return f"{claim}, but from_latent(latent(x_T), shape) raised {type(err).__name__}: {err}"
        if gap > 1e-4:
            spread = float((x_T.amax(dim=(-2, -1)) - x_T.amin(dim=(-2, -1))).max())
            what = (
                f" (its pixels still range over {spread:.3g} inside one image)"
                if isinstance(D, FlatEnd)
                else ""
            )
            return (
                f"{claim}, but D(x0, {D.T}) is not that end state{what}: from_latent(latent(D(x0, T))) differs "
                f"from it by up to {gap:.3g}. Make the last level reach it, or drop the claim (the mixin, or "
                f"latent/from_latent) from {name}"
            )
    if type(D).prior is not Degradation.prior:
        shape = tuple(x0.shape[1:])
        try:
            p = D.prior(4, shape, generator=torch.Generator().manual_seed(0))
        except Exception as err:
            return (
                f"D.prior(4, {shape}, generator=...) raised {type(err).__name__}: {err}"
            )
        if not isinstance(p, torch.Tensor) or tuple(p.shape) != (4, *shape):
            return (
                f"D.prior(4, {shape}) returned {tuple(getattr(p, 'shape', ())) or type(p).__name__}; it must "
                f"return 4 starting images [4, {', '.join(map(str, shape))}]"
            )
        if not noisy and (float(p.min()) < -1 - 1e-5 or float(p.max()) > 1 + 1e-5):
            return (
                f"D.prior draws starting images from {float(p.min()):.3f} to {float(p.max()):.3f}; end states of "
                f"images in [-1, 1] stay in [-1, 1]: clamp what you draw"
            )
        if D.has_latent:
            gap = float((D.from_latent(D.latent(p), shape) - p).abs().max())
            if gap > 1e-4:
                return (
                    f"D.prior's images are not end states that latent() describes: from_latent(latent(prior)) "
                    f"differs from them by up to {gap:.3g} (a flat end wants flat starting images)"
                )
    return None


def check_degradation(D, x0: Optional[torch.Tensor] = None, formula=None) -> bool:
    """Check that ``D`` follows the contract of :class:`colddiff_lib.degradations.Degradation`
    (:func:`colddiff_lib.degradations.contract.check` says what is checked), and three things more:

    * its images stay in [-1, 1] at every level (unless ``D`` adds Gaussian noise, i.e. has a
      ``noise_schedule()``, whose images may leave it; a linear ``D`` may ring past it by
      :data:`RINGING` at most, as a bicubic resampling does at sharp edges);
    * the end state it claims is there: with ``has_latent`` (``latent``/``from_latent``, e.g. the
      :class:`~colddiff_lib.degradations.base.FlatEnd` mixin's flat colour), D(x0, T) must be what
      ``from_latent(latent(...))`` paints; a ``prior`` must draw such end states, in [-1, 1];
    * where an exercise gives a formula, D(x0, t) equals it at every level.

    Args:
        D: an instance of a :class:`~colddiff_lib.degradations.Degradation` subclass.
        x0: test images [B, C, H, W] in [-1, 1] with B >= 2, or ``None`` for eight held-out digits.
        formula: ``None``; the name of an exercise's formula (``"darken"``: chapter 7's
            -1 + (1 - kappa t / T)(x0 + 1), with ``D.kappa`` or 0.9); or a function ``formula(x0, t)`` of
            the images and an int level giving the D(x0, t) you meant.
    Returns:
        True if every check passes; otherwise prints each problem found and returns False.
    Raises:
        ValueError: if ``D`` is not a Degradation instance (a class, a function...), ``x0`` is not a batch
            of at least two images, or ``formula`` is neither None, a known name nor a function.
    """
    from ..degradations import contract

    if formula is not None and not callable(formula) and formula not in FORMULAS:
        raise ValueError(
            f"formula must be None, a function formula(x0, t) or one of {sorted(FORMULAS)}, "
            f"got {formula!r}"
        )
    problems, summary = contract.check(D, x0)
    if problems:
        return report(False, "", "\n".join(problems))
    if x0 is None:
        x0 = contract._default_images(getattr(D, "channels", None))
    x0 = x0.detach().float().clone()
    Dz = D.freeze(x0, torch.Generator().manual_seed(0)) if D.random else D
    levels = contract._levels(D.T)
    outs = {t: Dz(x0, t) for t in levels}
    checked = []

    if D.noise_schedule() is None and float(x0.min()) >= -1 and float(x0.max()) <= 1:
        # A linear resampling (bicubic) rings a little past sharp edges: a quarter of
        # slack for linear ones.
        slack = RINGING if getattr(D, "linear", False) else 1e-5
        excess = {
            t: max(-1 - float(outs[t].min()), float(outs[t].max()) - 1) for t in levels
        }
        worst = max(levels, key=lambda t: excess[t])
        if excess[worst] > slack:
            lo, hi = float(outs[worst].min()), float(outs[worst].max())
            ringing = (
                f"; a linear one may ring past it by {RINGING} at most"
                if slack > 1e-5
                else ""
            )
            problems.append(
                f"D(x0, {worst}) leaves [-1, 1] (values from {lo:.3f} to {hi:.3f}, the farthest of any "
                f"level): a degradation keeps images in [-1, 1] at every level; check the signs and "
                f"constants of your formula (only one that adds Gaussian noise, with a noise_schedule(), "
                f"may leave it{ringing})"
            )
        else:
            checked.append("its images stay in [-1, 1]")

    end = _end_state(D, Dz, x0)
    if end:
        problems.append(end)
    elif D.has_latent:
        checked.append("D(x0, T) is the end state its latent() describes")

    if formula is not None and not problems:
        reference, text = (
            FORMULAS[formula]
            if isinstance(formula, str)
            else (lambda D_, x, t: formula(x, t), "your formula(x0, t)")
        )
        for t in levels:
            want = reference(D, x0, t)
            gap = float((outs[t] - want).abs().max())
            if gap > 1e-5:
                why = ""
                if formula == "darken":
                    for wrong, slip in _darken_slips(D, x0, t):
                        if float((outs[t] - wrong).abs().max()) <= 1e-5:
                            why = f": {slip}"
                            break
                problems.append(
                    f"D(x0, {t}) differs from the exercise's formula {text} by up to {gap:.3g}{why}"
                )
                break
        else:
            checked.append(f"D(x0, t) equals {text} at every level")

    if problems:
        return report(False, "", "\n".join(problems))
    return report(
        True,
        summary + ("" if not checked else " Also: " + "; ".join(checked) + "."),
        "",
    )


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
        raise ValueError(
            f"name must be a zoo model name (a str), got {type(name).__name__}"
        )
    card = zoo.card(name)
    if not card.get("train_seconds") or "step" not in card:
        raise ValueError(
            f"name must be a zoo model with a training card, but {name!r} has no step/train_seconds"
        )
    slow, fast = _rates(card)
    lo, hi = 0.95 * steps / fast, 1.05 * steps / slow
    if not math.isfinite(value) or value <= 0:
        return report(
            False, "", f"answer must be a positive number of seconds, got {value}"
        )
    if lo <= value <= hi:
        return report(
            True,
            f"{steps} steps at {slow:.1f} to {fast:.1f} steps/s take {steps / fast:.0f} to "
            f"{steps / slow:.0f} s ({steps / fast / 60:.1f} to {steps / slow / 60:.1f} min).",
            "",
        )
    for unit, factor in (("minutes", 60.0), ("hours", 3600.0)):
        if lo <= value * factor <= hi:
            return report(
                False,
                "",
                f"{value:g} looks like a time in {unit}: give the answer in seconds",
            )
    if 0.95 * steps * slow <= value <= 1.05 * steps * fast:
        return report(
            False,
            "",
            "you multiplied the steps by the rate: time = steps / (steps per second)",
        )
    direction = "long" if value > hi else "short"
    return report(
        False,
        "",
        f"{value:g} s is too {direction}: read the rate from zoo.card({name!r}) "
        f"(card['step'] steps in card['train_seconds'] seconds) and divide the steps by it",
    )
