"""Chapter 5's checker: a hand-written RMSE on [0, 1] images, the book's per-image convention."""

import time

import pytest
import torch

from colddiff_lib.exercises.ch05 import _test_pairs, check_rmse
from colddiff_lib.metrics import rmse, rmse_as_paper


def good_rmse(x, y):
    a, b = ((x + 1) / 2).clamp(0, 1), ((y + 1) / 2).clamp(0, 1)
    return float((a - b).pow(2).flatten(1).mean(1).sqrt().mean())


def unit(x):
    return ((x + 1) / 2).clamp(0, 1)


def test_a_correct_rmse_passes(capsys):
    assert check_rmse(good_rmse) is True
    assert "Correct" in capsys.readouterr().out
    # A 0-d tensor is a fine answer too, and so is the library itself.
    assert check_rmse(lambda x, y: torch.tensor(good_rmse(x, y))) is True
    assert check_rmse(rmse) is True


# The mutation table: a plausible wrong RMSE, the words its message must contain.
MUTATIONS = [
    (
        "on [-1, 1]",
        lambda x, y: float(
            (x.clamp(-1, 1) - y.clamp(-1, 1)).pow(2).flatten(1).mean(1).sqrt().mean()
        ),
        "[0, 1]",
    ),
    (
        "on [-1, 1], no clamp",
        lambda x, y: float((x - y).pow(2).flatten(1).mean(1).sqrt().mean()),
        "[0, 1]",
    ),
    (
        "no clamp",
        lambda x, y: float(((x - y) / 2).pow(2).flatten(1).mean(1).sqrt().mean()),
        "did not clamp",
    ),
    (
        "whole batch",
        lambda x, y: float((unit(x) - unit(y)).pow(2).mean().sqrt()),
        "rmse_as_paper",
    ),
    ("rmse_as_paper", rmse_as_paper, "rmse_as_paper"),
    (
        "per channel",
        lambda x, y: float((unit(x) - unit(y)).pow(2).mean(dim=(2, 3)).sqrt().mean()),
        "per channel",
    ),
    (
        "per channel, one channel",
        lambda x, y: float(
            (unit(x) - unit(y))[:, :1].pow(2).flatten(1).mean(1).sqrt().mean()
        ),
        "instead of",
    ),
    (
        "batch first",
        lambda x, y: float((unit(x) - unit(y)).pow(2).mean(0).sqrt().mean()),
        "batch first",
    ),
    (
        "mse",
        lambda x, y: float((unit(x) - unit(y)).pow(2).flatten(1).mean(1).mean()),
        "mean squared error",
    ),
    (
        "mae",
        lambda x, y: float((unit(x) - unit(y)).abs().flatten(1).mean(1).mean()),
        "absolute",
    ),
    (
        "sum over the batch",
        lambda x, y: float((unit(x) - unit(y)).pow(2).flatten(1).mean(1).sqrt().sum()),
        "summed",
    ),
    (
        "only x rescaled",
        lambda x, y: float((unit(x) - y).pow(2).flatten(1).mean(1).sqrt().mean()),
        "rescale both",
    ),
    (
        "in place",
        lambda x, y: good_rmse(x.add_(0), y.clamp_(-1, 1)),
        "changed y in place",
    ),
    (
        "in place on x",
        lambda x, y: float(
            (x.add_(1).div_(2).clamp(0, 1) - unit(y))
            .pow(2)
            .flatten(1)
            .mean(1)
            .sqrt()
            .mean()
        ),
        "changed x in place",
    ),
    ("a constant", lambda x, y: 0.123, "instead of"),
]


@pytest.mark.parametrize(
    "wrong, hint", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_typical_mistakes_fail_with_a_useful_message(wrong, hint, capsys):
    assert check_rmse(wrong) is False
    out = capsys.readouterr().out
    assert "Not yet" in out and hint in out, out


def test_the_test_batches_tell_the_conventions_apart():
    """Colour images with unequal channel errors, and a y that overshoots: each slip changes the number."""
    (x, y), (x2, y2) = _test_pairs()
    assert x.shape[1] == 3 and x2.shape[1] == 3
    right = rmse(x, y)
    per_channel = float((unit(x) - unit(y)).pow(2).mean(dim=(2, 3)).sqrt().mean())
    assert abs(per_channel - right) > 0.01 and abs(rmse_as_paper(x, y) - right) > 0.01
    assert float(y2.abs().max()) > 1.3
    no_clamp = float(((x2 - y2) / 2).pow(2).flatten(1).mean(1).sqrt().mean())
    assert abs(no_clamp - rmse(x2, y2)) > 0.01


def test_a_constant_equal_to_the_first_answer_does_not_pass(capsys):
    (x, y), _ = _test_pairs()
    value = rmse(x, y)
    assert check_rmse(lambda a, b: value) is False
    assert "another" in capsys.readouterr().out


def test_wrong_types_raise_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="my_rmse"):
        check_rmse(0.25)
    with pytest.raises(ValueError, match="my_rmse"):
        check_rmse(lambda x, y: "0.25")
    with pytest.raises(ValueError, match="my_rmse"):
        check_rmse(lambda x, y: (x - y).flatten(1).mean(1))


def test_the_checker_is_fast():
    check_rmse(good_rmse)
    start = time.process_time()
    check_rmse(good_rmse)
    assert time.process_time() - start < 1.0


# ---------------------------------------------------------------- the coarse step
def _estimate(R, x, s):
    return R(x, torch.full((x.shape[0],), s, dtype=torch.long))


def good_step(R, D, x, s, s_next):
    x0_hat = _estimate(R, x, s).clamp(-1, 1)
    return x - D(x0_hat, s) + D(x0_hat, s_next)


def _with(estimate_at, f):
    """A step built from R's estimate at a level chosen by estimate_at(s, s_next), clamped."""
    return lambda R, D, x, s, s_next: f(
        D, x, _estimate(R, x, estimate_at(s, s_next)).clamp(-1, 1), s, s_next
    )


# The wrong steps people write, and the words their message must contain.
WRONG_STEPS = [
    (
        "to s - 1",
        _with(lambda s, n: s, lambda D, x, h, s, n: x - D(h, s) + D(h, s - 1)),
        "you stepped to s - 1",
    ),
    (
        "Algorithm 1",
        _with(lambda s, n: s, lambda D, x, h, s, n: D(h, n)),
        "Algorithm 1's step",
    ),
    (
        "signs swapped",
        _with(lambda s, n: s, lambda D, x, h, s, n: x + D(h, s) - D(h, n)),
        "signs are swapped",
    ),
    (
        "no clamp",
        lambda R, D, x, s, n: (lambda h: x - D(h, s) + D(h, n))(_estimate(R, x, s)),
        "not clamped",
    ),
    (
        "R at s_next",
        _with(lambda s, n: n, lambda D, x, h, s, n: x - D(h, s) + D(h, n)),
        "R(x_s, s)",
    ),
    (
        "the estimate",
        _with(lambda s, n: s, lambda D, x, h, s, n: h),
        "you returned the estimate",
    ),
    ("x unchanged", lambda R, D, x, s, n: x.clone(), "away from the library's"),
    (
        "in place",
        _with(lambda s, n: s, lambda D, x, h, s, n: x.sub_(D(h, s)).add_(D(h, n))),
        "changed x in place",
    ),
]


def test_a_correct_coarse_step_passes(capsys):
    from colddiff_lib.exercises.ch05 import check_coarse_step

    assert check_coarse_step(good_step) is True
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, words",
    [(f, w) for _, f, w in WRONG_STEPS],
    ids=[n for n, _, _ in WRONG_STEPS],
)
def test_each_wrong_coarse_step_is_named(wrong, words, capsys):
    from colddiff_lib.exercises.ch05 import check_coarse_step

    assert check_coarse_step(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet: ") and words in out, out


def test_a_coarse_step_of_the_wrong_kind_is_refused():
    from colddiff_lib.exercises.ch05 import check_coarse_step

    with pytest.raises(ValueError, match=r"my_step must be a function"):
        check_coarse_step("x - D(h, s) + D(h, s_next)")
    with pytest.raises(
        ValueError, match=r"a tensor of x's shape \(3, 1, 16, 16\), got float"
    ):
        check_coarse_step(lambda R, D, x, s, n: 0.5)
    with pytest.raises(ValueError, match=r"got Tensor\(1, 16, 16\)"):
        check_coarse_step(lambda R, D, x, s, n: good_step(R, D, x, s, n)[0])
