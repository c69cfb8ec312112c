"""colddiff_lib.checks: one test for "a real int" and "a real number", one "did you mean", used everywhere."""

import math
import re
from pathlib import Path

import pytest

from colddiff_lib.checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    did_you_mean,
    is_int,
    is_number,
)

ROOT = Path(__file__).resolve().parents[1]


def test_bools_are_neither_ints_nor_numbers():
    assert is_int(3) and not is_int(True) and not is_int(3.0) and not is_int("3")
    assert (
        is_number(3)
        and is_number(0.5)
        and is_number(math.nan)
        and not is_number(False)
        and not is_number("1")
    )


def test_the_checks_name_the_argument_and_what_it_must_be():
    assert check_int(4, "dim", 1, 8) == 4
    for value, bounds in (
        (0, (1, 8)),
        (True, (1, 8)),
        (2.0, (None, None)),
        (-1, (0, None)),
    ):
        with pytest.raises(ValueError, match=r"^dim must be an int.*, got "):
            check_int(value, "dim", *bounds)
    with pytest.raises(ValueError, match=r"dim must be an int in 1\.\.8, got 9"):
        check_int(9, "dim", 1, 8)
    with pytest.raises(
        ValueError, match=r"collapse_at_T must be true or false \(a bool\), got 'false'"
    ):
        check_bool("false", "collapse_at_T")
    with pytest.raises(
        ValueError,
        match=r"padding must be one of \['circular', 'reflect'\], got 'circle' "
        r"\(did you mean 'circular'\?\)",
    ):
        check_choice("circle", "padding", ("circular", "reflect"))
    for bad in (0, -1, math.inf, math.nan, True, "1"):
        with pytest.raises(ValueError, match="std must be a positive number"):
            check_positive(bad, "std")


def test_did_you_mean():
    assert did_you_mean("stpes", ["steps", "seed"]) == " (did you mean 'steps'?)"
    # case only
    assert did_you_mean("quick", ["QUICK", "DEVICE"], 0.5) == " (did you mean 'QUICK'?)"
    assert did_you_mean("zzz", ["steps"]) == ""


def test_no_module_repeats_the_checks_or_the_hint():
    """The library says "not a bool" and "did you mean" through this module only (the chapters' exercise
    checkers word their own hints for readers)."""
    raw = re.compile(
        r"isinstance\([^()]*, bool\) or not isinstance|and not isinstance\([^()]*, bool\)|"
        r"get_close_matches"
    )
    found = []
    for path in sorted((ROOT / "colddiff_lib").rglob("*.py")):
        if path.name == "checks.py" or "exercises" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if raw.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
