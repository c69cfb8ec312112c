"""Checker of chapter 3: the l1 objective; a right answer passes, the usual slips are named."""

import pytest
import torch

from colddiff_lib.exercises.ch03 import check_l1_objective

pytestmark = pytest.mark.usefixtures("single_thread")


def right(R, D, x0, t):
    return (R(D(x0, t), t) - x0).abs().mean()


def test_the_objective_passes(capsys):
    assert check_l1_objective(right) is True
    assert capsys.readouterr().out.startswith("Correct")


def test_f_l1_loss_passes_too():
    assert check_l1_objective(lambda R, D, x0, t: torch.nn.functional.l1_loss(R(D(x0, t), t), x0))


def test_the_checker_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    check_l1_objective(right)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("fn, words", [
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).pow(2).mean(), "squared"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().sum(), "summed the absolute"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().flatten(1).sum(1).mean(), "average over the pixels"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).mean().abs(), "cancel"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - D(x0, t)).abs().mean(), "not the degraded"),
    (lambda R, D, x0, t: (R(x0, t) - x0).abs().mean(), "Degrade it first"),
    (lambda R, D, x0, t: (D(x0, t) - x0).abs().mean(), "error of the degraded image"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean() * 2, "the objective is"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean().item(), "cannot be back-propagated"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean(dim=(1, 2, 3)), "one number"),
    (lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean().detach(), "no gradient"),
])
def test_typical_slips_fail_with_a_useful_message(fn, words, capsys):
    assert check_l1_objective(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


def test_not_a_function_raises():
    with pytest.raises(ValueError, match="fn must be a function"):
        check_l1_objective(0.25)
