"""Argument checks shared by every module: one way to say what a value must be, and the nearest known name.

``True`` is an ``int`` to Python, and the string ``"false"`` is true: a config file's ``steps = true`` or
``collapse_at_T = "false"`` must be refused, not obeyed. :func:`is_int` and :func:`is_number` are the one test
for "a real int" and "a real number" (bools excluded) that every check in the library uses; the ``check_*``
helpers raise ``ValueError`` naming the argument. A leaf module: it imports nothing else from the library.
"""

from __future__ import annotations

import difflib
import math
from typing import Iterable, Optional, Sequence

__all__ = [
    "did_you_mean",
    "is_int",
    "is_number",
    "check_int",
    "check_bool",
    "check_choice",
    "check_positive",
]


def did_you_mean(word, choices: Iterable, cutoff: float = 0.6) -> str:
    """``" (did you mean 'steps'?)"`` for the known name nearest to ``word`` among ``choices`` (difflib's
    similarity at least ``cutoff``, else one that differs only in case); ``""`` when none is near. What every
    "unknown key" and "unknown name" error of the library appends."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=cutoff)
    close = close or [name for name in names if name.lower() == str(word).lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_int(value) -> bool:
    """Whether ``value`` is a Python int, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether ``value`` is an int or a float (NaN and infinities included), and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(
    value, name: str, low: Optional[int] = None, high: Optional[int] = None
) -> int:
    """``value`` when it is an int in ``low..high`` (either bound optional); ValueError naming ``name`` otherwise."""
    if (
        not is_int(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        bounds = (
            f" in {low}..{high}"
            if low is not None and high is not None
            else f" >= {low}"
            if low is not None
            else f" <= {high}"
            if high is not None
            else ""
        )
        raise ValueError(f"{name} must be an int{bounds}, got {value!r}")
    return int(value)


def check_bool(value, name: str) -> bool:
    """A real bool: the string "false" is not False (a bool() of it would be True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false (a bool), got {value!r}")
    return value


def check_choice(value, name: str, choices: Sequence) -> None:
    """``value`` must be one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {list(choices)}, got {value!r}{did_you_mean(value, choices)}"
        )


def check_positive(value, name: str, at_most: Optional[float] = None) -> None:
    """A finite number > 0 (and <= ``at_most``): NaN and infinity are refused, bools are not numbers."""
    if (
        not is_number(value)
        or not 0 < value < math.inf
        or (at_most is not None and value > at_most)
    ):
        bound = f" of at most {at_most:g}" if at_most is not None else ""
        raise ValueError(
            f"{name} must be a positive number{bound} (finite), got {value!r}"
        )
