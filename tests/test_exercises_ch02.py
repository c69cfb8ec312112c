"""Checkers of chapter 2: effective blur width and masked fraction; right answers pass, slips are named."""

import math

import numpy as np
import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib.exercises.ch02 import check_effective_sigma, check_masked_fraction


# --- check_effective_sigma
# ---------------------------------------------------------------------
def test_constant_schedule_ideal_gaussians(capsys):
    assert check_effective_sigma(3.0, 1.0, t=9) is True
    assert "Correct" in capsys.readouterr().out


def test_sequence_of_widths_in_any_container():
    widths = [0.5, 1.0, 1.5, 2.0]
    answer = math.sqrt(sum(w * w for w in widths))
    for container in (widths, tuple(widths), np.array(widths), torch.tensor(widths)):
        assert check_effective_sigma(answer, container)
    assert check_effective_sigma(torch.tensor(answer), widths)


def test_truncated_kernels_use_the_discrete_variance():
    k = dg.gaussian_kernel_1d(11, 7.0)
    i = torch.arange(11, dtype=torch.float64) - 5
    answer = math.sqrt(20 * float((k * i**2).sum()))
    assert check_effective_sigma(answer, 7.0, t=20, kernel_size=11)
    assert check_effective_sigma(answer, [7.0] * 20, kernel_size=11)


def test_agrees_with_the_composed_operator_on_an_impulse():
    """The checker's truncated answer is the standard deviation of the library's composed blur kernel."""
    D = dg.GaussianBlur(T=6, kernel_size=7, std=0.8, schedule="incremental")
    n = 129
    profile = D.composed_matrices(n, dtype=torch.float64)[D.T][:, n // 2]
    i = torch.arange(n, dtype=torch.float64) - n // 2
    assert check_effective_sigma(
        float((profile * i**2).sum().sqrt()), D.sigmas, kernel_size=7
    )


@pytest.mark.parametrize(
    "answer, kwargs, words",
    [
        (9.0, dict(sigmas=1.0, t=9), "added the widths"),
        (9.0 * 1.0, dict(sigmas=[1.0] * 9), "added the widths"),
        (7.5, dict(sigmas=[0.5, 1.0, 1.5, 2.0]), "variance"),
        (4.0, dict(sigmas=[0.5, 1.0, 1.5, 2.0]), "sqrt(t)"),
        (2.0, dict(sigmas=[0.5, 1.0, 1.5, 2.0]), "one blur's width"),
        (math.sqrt(20) * 7, dict(sigmas=7.0, t=20, kernel_size=11), "ideal Gaussians"),
        (math.sqrt(8), dict(sigmas=1.0, t=9), "that is 8 blurs"),
        (math.sqrt(10), dict(sigmas=1.0, t=9), "that is 10 blurs"),
        (
            math.sqrt(0.25 + 1 + 2.25),
            dict(sigmas=[0.5, 1.0, 1.5, 2.0]),
            "left out the last blur",
        ),
        (
            math.sqrt(
                19
                * float(
                    (
                        dg.gaussian_kernel_1d(11, 7.0) * (torch.arange(11.0) - 5) ** 2
                    ).sum()
                )
            ),
            dict(sigmas=7.0, t=20, kernel_size=11),
            "that is 19 blurs",
        ),
        (-3.0, dict(sigmas=1.0, t=9), "positive"),
        (3.5, dict(sigmas=1.0, t=9), "too large"),
        (2.5, dict(sigmas=1.0, t=9), "too small"),
    ],
)
def test_typical_wrong_sigmas_fail_with_a_useful_message(answer, kwargs, words, capsys):
    assert check_effective_sigma(answer, **kwargs) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(answer="3", sigmas=1.0, t=9), "answer"),
        (dict(answer=3.0, sigmas=1.0), "t"),
        (dict(answer=3.0, sigmas="1.0", t=9), "sigmas"),
        (dict(answer=3.0, sigmas=[], t=None), "sigmas"),
        (dict(answer=3.0, sigmas=[1.0, -1.0]), "sigmas"),
        (dict(answer=3.0, sigmas=[1.0, 2.0], t=3), "t"),
        (dict(answer=3.0, sigmas=1.0, t=9, kernel_size=10), "kernel_size"),
    ],
)
def test_effective_sigma_wrong_types_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        check_effective_sigma(**kwargs)


# --- check_masked_fraction
# ---------------------------------------------------------------------
def fraction(t, threshold=0.5):
    D = dg.Inpainting(T=50, std=0.1, initial_mask=11.0)
    a = D.cumulative_masks(torch.zeros(1, 1, 32, 32))[0, t]
    return float((a < threshold).double().mean())


@pytest.mark.parametrize("t", [0, 10, 25, 50])
def test_masked_fraction_correct(t, capsys):
    assert check_masked_fraction(fraction(t), t) is True
    assert "Correct" in capsys.readouterr().out


def test_masked_fraction_other_threshold_and_pixel_count():
    assert check_masked_fraction(fraction(25, 0.1), 25, threshold=0.1)
    # within half a pixel
    assert check_masked_fraction(round(fraction(25) * 1024) / 1024 + 0.4 / 1024, 25)


def test_the_book_answers_rounded_pass():
    assert check_effective_sigma(2.739, [0.5, 1.0, 1.5, 2.0])  # sqrt(7.5) = 2.7386
    assert check_masked_fraction(round(fraction(25), 4), 25)


def test_masked_fraction_typical_slips(capsys):
    D = dg.Inpainting(T=50, std=0.1, initial_mask=11.0)
    step = float((D.step_masks(torch.zeros(1, 1, 32, 32))[0, 24] < 0.5).double().mean())
    assert (
        len({round(v, 6) for v in (fraction(24), fraction(25), fraction(26), step)})
        == 4
    ), "slips must differ"
    cases = [
        (1 - fraction(25), "kept"),
        (step, "cumulative"),
        (fraction(24), "off by one"),
        (fraction(26), "that is a_26"),
        (1024 * fraction(25), "number of masked pixels"),
        (100 * fraction(25), "percentage"),
        (0.9, "too large"),
        (0.0, "too small"),
    ]
    for answer, words in cases:
        assert check_masked_fraction(answer, 25) is False
        out = capsys.readouterr().out
        assert out.startswith("Not yet") and words in out, (answer, out)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(answer=None, t=25), "answer"),
        (dict(answer=0.1, t=51), "t"),
        (dict(answer=0.1, t="25"), "t"),
        (dict(answer=0.1, t=25, threshold=0.0), "threshold"),
    ],
)
def test_masked_fraction_wrong_types_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        check_masked_fraction(**kwargs)


def test_the_checkers_are_fast():
    import time

    check_masked_fraction(fraction(25), 25)
    start = time.process_time()
    check_masked_fraction(fraction(25), 25)
    check_effective_sigma(3.0, 1.0, t=9)
    check_effective_sigma(2.0, 7.0, t=12, kernel_size=11)
    assert time.process_time() - start < 1.0
