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
    assert check_l1_objective(
        lambda R, D, x0, t: torch.nn.functional.l1_loss(R(D(x0, t), t), x0)
    )


def test_the_checker_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    check_l1_objective(right)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    "fn, words",
    [
        (lambda R, D, x0, t: (R(D(x0, t), t) - x0).pow(2).mean(), "squared"),
        (lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().sum(), "summed the absolute"),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().flatten(1).sum(1).mean(),
            "average over the pixels",
        ),
        (lambda R, D, x0, t: (R(D(x0, t), t) - x0).mean().abs(), "cancel"),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - D(x0, t)).abs().mean(),
            "not the degraded",
        ),
        (lambda R, D, x0, t: (R(x0, t) - x0).abs().mean(), "Degrade it first"),
        (
            lambda R, D, x0, t: (D(x0, t) - x0).abs().mean(),
            "error of the degraded image",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean() * 2,
            "the objective is",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean().item(),
            "cannot be back-propagated",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean(dim=(1, 2, 3)),
            "one number",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean().detach(),
            "no gradient",
        ),
        # off by one in t, one level for the whole batch, a clamp, a per-channel
        # reduction, in-place edits
        (
            lambda R, D, x0, t: (R(D(x0, t), t - 1) - x0).abs().mean(),
            "told R the level t - 1",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t - 1), t) - x0).abs().mean(),
            "degraded to t - 1",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t - 1), t - 1) - x0).abs().mean(),
            "t - 1 for both",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, int(t[0])), int(t[0])) - x0).abs().mean(),
            "first image's level t[0]",
        ),
        (
            lambda R, D, x0, t: (
                (R(D(x0, int(t.max())), int(t.max())) - x0).abs().mean()
            ),
            "for the whole batch",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t), t).clamp(-1, 1) - x0).abs().mean(),
            "clamped R's output",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - x0).abs().mean(dim=(0, 2, 3)).sum(),
            "summed over the channels",
        ),
        (
            lambda R, D, x0, t: x0.sub_(R(D(x0, t), t)).abs().mean(),
            "changed x0 in place",
        ),
        (
            lambda R, D, x0, t: (R(D(x0, t), t) - x0.clamp_(-0.5, 0.5)).abs().mean(),
            "changed x0 in place",
        ),
    ],
)
def test_typical_slips_fail_with_a_useful_message(fn, words, capsys):
    assert check_l1_objective(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


def test_not_a_function_raises():
    with pytest.raises(ValueError, match="fn must be a function"):
        check_l1_objective(0.25)


def test_the_test_batches_separate_every_wrong_level_far_beyond_the_tolerance():
    """On each test batch, a loss at a wrong level (t - 1, t + 1 where valid, one level for the batch)
    differs from the right one by far more than the checker's tolerance of 1e-5."""
    from colddiff_lib.exercises.ch03 import _test_cases

    tol = 1e-5
    for R, D, x0, t in _test_cases():
        assert len(set(t.tolist())) == len(t), "every image has its own level"
        with torch.no_grad():
            right = float(torch.nn.functional.l1_loss(R(D(x0, t), t), x0))
            variants = {
                "R at t - 1": R(D(x0, t), t - 1),
                "D at t - 1": R(D(x0, t - 1), t),
                "both at t - 1": R(D(x0, t - 1), t - 1),
                "both at t + 1": R(
                    D(x0, (t + 1).clamp(max=D.T)), (t + 1).clamp(max=D.T)
                ),
                "t[0] for all": R(D(x0, int(t[0])), int(t[0])),
                "t.min() for all": R(D(x0, int(t.min())), int(t.min())),
                "clamped": R(D(x0, t), t).clamp(-1, 1),
            }
            for name, pred in variants.items():
                gap = abs(float((pred - x0).abs().mean()) - right)
                assert gap > 100 * tol, (name, gap)
            assert float(R(D(x0, t), t).abs().max()) > 1.2, (
                "R's output leaves [-1, 1], so a clamp shows"
            )


def test_the_checker_is_fast():
    import time

    check_l1_objective(right)  # warm-up
    start = time.process_time()
    check_l1_objective(right)
    assert time.process_time() - start < 1.0
