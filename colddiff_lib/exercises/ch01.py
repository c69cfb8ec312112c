"""Checkers for chapter 1, "From hot to cold diffusion"."""

from __future__ import annotations

import math
import numbers

from . import report

__all__ = ["check_alpha_bar"]


def _as_float(value, name: str) -> float:
    """A real number (int, float, NumPy scalar or one-element array/tensor) as a float; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a real number, got a bool")
    if isinstance(value, numbers.Real):
        return float(value)
    numel = getattr(value, "numel", None)
    size = numel() if callable(numel) else getattr(value, "size", None)
    if size == 1 and hasattr(value, "item"):
        item = value.item()
        if isinstance(item, numbers.Real) and not isinstance(item, bool):
            return float(item)
    raise ValueError(
        f"{name} must be a real number (a float), got {type(value).__name__}"
        + (f" with {size} elements" if isinstance(size, int) else "")
    )


def _as_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return int(value)


def _f(t: int, T: int, s: float) -> float:
    return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


def _decimals(value: float) -> int:
    """How many decimals ``value`` was written with (0.847 -> 3; a computed float has many)."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        mantissa, exponent = text.lower().split("e")
        digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return max(0, digits - int(exponent))
    return len(text.split(".")[1]) if "." in text else 0


def check_alpha_bar(answer, t: int, T: int = 200, s: float = 0.008) -> bool:
    """Check a hand computation of the cosine schedule's abar_t (Nichol & Dhariwal).

    abar_t = f(t) / f(0) with f(t) = cos^2(((t / T + s) / (1 + s)) * pi / 2); abar_T is set to 0 exactly.

    Args:
        answer: your abar_t, a real number in [0, 1] (a float, NumPy scalar or one-element tensor),
            computed (any precision) or rounded to three decimals or more (0.847).
        t: the level, an int in 0..T.
        T: the number of steps (200 in the paper's noise and blending experiments).
        s: the schedule's offset (0.008).
    Returns:
        True if ``answer`` matches :func:`colddiff_lib.degradations.cosine_alpha_bar` to 1e-6, or equals
        it rounded to the decimals given (three at least).
    Raises:
        ValueError: if an argument has the wrong type or ``t`` is outside 0..T.
    """
    value = _as_float(answer, "answer")
    T = _as_int(T, "T")
    if T < 1:
        raise ValueError(f"T must be a positive int, got {T}")
    t = _as_int(t, "t")
    if not 0 <= t <= T:
        raise ValueError(f"t must lie in 0..T = 0..{T}, got {t}")
    s = _as_float(s, "s")

    from ..degradations import cosine_alpha_bar

    table = cosine_alpha_bar(T, s)
    expected = float(table[t])
    exact = 1e-6
    decimals = _decimals(value) if math.isfinite(value) else 0
    rounding = 0.5 * 10.0**-decimals + 1e-12  # half a unit in the last decimal given

    def correct(how: str) -> bool:
        return report(
            True,
            f"abar_{t} = {expected:.6f}{how} for T = {T}: the signal keeps a weight "
            f"sqrt(abar) = {math.sqrt(expected):.4f} and the noise sqrt(1 - abar) = "
            f"{math.sqrt(1 - expected):.4f}.",
            "",
        )

    if math.isfinite(value) and abs(value - expected) <= exact:
        return correct("")

    # The usual slips, in the order they are most likely.
    slips = []
    if t < T:  # abar_T is forced to 0, so these formulas do not apply there
        degrees = (
            math.cos((t / T + s) / (1 + s) * 90) ** 2 / math.cos(s / (1 + s) * 90) ** 2
        )
        slips += [
            (
                _f(t, T, s),
                "you computed f(t) but did not divide by f(0): abar_t = f(t) / f(0) "
                "(so that abar_0 = 1 exactly).",
            ),
            (
                math.cos(t / T * math.pi / 2) ** 2,
                "you left out the offset s: the angle is "
                "((t / T + s) / (1 + s)) * pi / 2.",
            ),
            (
                degrees,
                "you multiplied by 90, as if the angle were in degrees; math.cos takes radians: "
                "multiply by pi / 2.",
            ),
        ]
    slips += [
        (
            math.sqrt(expected),
            "that is sqrt(abar_t) (a cos, not a cos^2), the weight of x0 in x_t; the question "
            "asks for abar_t itself.",
        ),
        (
            1 - expected,
            "that is 1 - abar_t, the variance of the noise part; abar_t is the weight of the signal "
            "(it starts at 1 and falls to 0).",
        ),
        (
            math.sqrt(1 - expected),
            "that is sqrt(1 - abar_t), the weight of the noise z; abar_t is the signal's "
            "squared weight.",
        ),
        (expected * 100, "give abar_t as a fraction in [0, 1], not a percentage."),
    ]
    if t >= 1:
        slips.append(
            (
                float(table[t - 1]),
                f"that is abar_{t - 1}: off by one level, use t = {t}.",
            )
        )
    if t < T:
        slips.append(
            (
                float(table[t + 1]),
                f"that is abar_{t + 1}: off by one level, use t = {t}.",
            )
        )
    # First the slips computed to full precision, then a rounded answer, then rounded
    # slips.
    for wrong, message in slips:
        if abs(wrong - expected) > exact and abs(value - wrong) <= exact:
            return report(False, "", message)
    if math.isfinite(value) and decimals >= 3 and abs(value - expected) <= rounding:
        return correct(f" (you gave it rounded to {decimals} decimals)")
    if math.isfinite(value) and decimals < 3 and abs(value - expected) <= rounding:
        return report(
            False,
            "",
            f"{value!r} is abar_{t} rounded to {decimals} decimal{'s' if decimals != 1 else ''}: "
            "give at least three decimals, so that the slips can be told apart.",
        )
    for wrong, message in slips:
        if abs(wrong - expected) > rounding and abs(value - wrong) <= rounding:
            return report(False, "", message)
    if not (math.isfinite(value) and 0 <= value <= 1):
        return report(
            False,
            "",
            f"abar_t is a squared cosine ratio, so it lies in [0, 1]; you gave {value!r}.",
        )
    if t == T:
        return report(
            False,
            "",
            "at t = T the signal is gone: the library sets abar_T to exactly 0.",
        )
    return report(
        False,
        "",
        f"{value:.6f} is off by {abs(value - expected):.2g}. Recompute "
        "f(t) = cos^2(((t / T + s) / (1 + s)) * pi / 2) and abar_t = f(t) / f(0), "
        "with the angle in radians.",
    )
