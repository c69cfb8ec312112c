"""Checkers of chapter 1: a correct abar_t passes, the usual slips fail with a message that names them."""

import math

import numpy as np
import pytest
import torch

from colddiff_lib.degradations import cosine_alpha_bar
from colddiff_lib.exercises.ch01 import check_alpha_bar


def by_hand(t, T=200, s=0.008):
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0)


@pytest.mark.parametrize("t", [0, 1, 50, 100, 199])
def test_correct_answer_passes(t, capsys):
    assert check_alpha_bar(by_hand(t), t) is True
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer",
    [0.847, 0.8470, 0.84701, round(by_hand(50), 5), float(np.float32(by_hand(50)))],
)
def test_a_rounded_answer_passes(answer, capsys):
    """abar_50 = 0.847012...: the answer rounded to three decimals or more is right."""
    assert check_alpha_bar(answer, 50) is True
    assert capsys.readouterr().out.startswith("Correct")


def test_accepts_numpy_and_tensor_scalars():
    assert check_alpha_bar(np.float32(by_hand(100)), 100)
    assert check_alpha_bar(cosine_alpha_bar(200)[100], 100)
    assert check_alpha_bar(torch.tensor([by_hand(100)]), 100)


def test_last_level_is_zero(capsys):
    assert check_alpha_bar(0.0, 200)
    assert check_alpha_bar(by_hand(200), 200)  # cos(pi / 2)^2: zero up to rounding
    assert check_alpha_bar(0.5, 10, T=10) is False
    assert "t = T" in capsys.readouterr().out


def degrees(t, T=200, s=0.008):
    # 90 "degrees" fed to a radian cosine
    f = lambda u: math.cos((u / T + s) / (1 + s) * 90) ** 2  # noqa: E731
    return f(t) / f(0)


# The mutation table: each plausible wrong answer, the words its message must contain.
MUTATIONS = [
    (
        "f(t), not divided by f(0)",
        lambda t: math.cos((t / 200 + 0.008) / 1.008 * math.pi / 2) ** 2,
        "f(0)",
    ),
    ("no offset s", lambda t: math.cos(t / 200 * math.pi / 2) ** 2, "offset s"),
    ("angle in degrees", degrees, "radians"),
    (
        "cos, not cos^2",
        lambda t: (
            math.cos((t / 200 + 0.008) / 1.008 * math.pi / 2)
            / math.cos(0.008 / 1.008 * math.pi / 2)
        ),
        "sqrt(abar_t)",
    ),
    ("sqrt(abar)", lambda t: math.sqrt(by_hand(t)), "sqrt(abar_t)"),
    ("1 - abar", lambda t: 1 - by_hand(t), "1 - abar_t"),
    ("sqrt(1 - abar)", lambda t: math.sqrt(1 - by_hand(t)), "sqrt(1 - abar_t)"),
    ("a percentage", lambda t: 100 * by_hand(t), "percentage"),
    ("t - 1", lambda t: by_hand(t - 1), "off by one level"),
    ("t + 1", lambda t: by_hand(t + 1), "off by one level"),
    ("two decimals", lambda t: round(by_hand(t), 2), "at least three decimals"),
    ("rounded t - 1", lambda t: round(by_hand(t - 1), 3), "off by one level"),
    ("out of range", lambda t: 1.5, "[0, 1]"),
    ("a wrong number", lambda t: by_hand(t) + 0.01, "off by"),
]


@pytest.mark.parametrize(
    "wrong, words", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_typical_wrong_answers_fail_with_a_useful_message(wrong, words, capsys):
    assert check_alpha_bar(wrong(50), 50) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(answer="0.8", t=50), "answer"),
        (dict(answer=[0.8, 0.7], t=50), "answer"),
        (dict(answer=True, t=50), "answer"),
        (dict(answer=0.8, t=50.0), "t"),
        (dict(answer=0.8, t=201), "t"),
        (dict(answer=0.8, t=5, T=0), "T"),
    ],
)
def test_wrong_types_raise_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        check_alpha_bar(**kwargs)


def test_the_checker_is_fast():
    import time

    check_alpha_bar(0.847, 50)
    start = time.process_time()
    for t in (0, 50, 199, 200):
        check_alpha_bar(by_hand(t), t)
    assert time.process_time() - start < 1.0
