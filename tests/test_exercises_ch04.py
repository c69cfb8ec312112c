"""Checker of chapter 4: one step of Algorithm 2; a right answer passes, the usual slips are named."""

import pytest
import torch

from colddiff_lib.exercises.ch04 import check_improved_step


def improved(R, D, x_s, s):
    x0_hat = R(x_s, s)
    return x_s - D(x0_hat, s) + D(x0_hat, s - 1)


def test_algorithm_2_passes(capsys):
    assert check_improved_step(improved) is True
    assert capsys.readouterr().out.startswith("Correct")


def test_clamping_the_estimate_and_tensor_levels_pass_too():
    def step(R, D, x_s, s):
        s_vec = torch.full((len(x_s),), s)
        x0_hat = R(x_s, s_vec).clamp(-1, 1)
        return x_s - D(x0_hat, s_vec) + D(x0_hat, s_vec - 1)

    assert check_improved_step(step)


@pytest.mark.parametrize("fn, words", [
    (lambda R, D, x_s, s: D(R(x_s, s), s - 1), "Algorithm 1"),
    (lambda R, D, x_s, s: x_s + D(R(x_s, s), s) - D(R(x_s, s), s - 1), "signs are swapped"),
    (lambda R, D, x_s, s: D(R(x_s, s), s - 1) - D(R(x_s, s), s), "left out x_s"),
    (lambda R, D, x_s, s: R(x_s, s), "direct estimate"),
    (lambda R, D, x_s, s: x_s - D(R(x_s, s - 1), s) + D(R(x_s, s - 1), s - 1), "level of its input"),
    (lambda R, D, x_s, s: x_s - D(R(x_s, s), s) + D(R(x_s, s), s - 1) + 0.01, "differs from the library's"),
    (lambda R, D, x_s, s: (x_s - D(R(x_s, s), s) + D(R(x_s, s), s - 1)).tolist(), "return the tensor"),
    (lambda R, D, x_s, s: (x_s - D(R(x_s, s), s) + D(R(x_s, s), s - 1))[0], "shaped like x_s"),
])
def test_typical_slips_fail_with_a_useful_message(fn, words, capsys):
    assert check_improved_step(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


def test_not_a_function_raises():
    with pytest.raises(ValueError, match="fn must be a function"):
        check_improved_step("x_s - D(x0_hat, s) + D(x0_hat, s - 1)")
