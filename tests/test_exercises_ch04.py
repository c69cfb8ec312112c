"""Checker of chapter 4: one step of Algorithm 2; a right answer passes, the usual slips are named."""

import time

import pytest
import torch

from colddiff_lib.exercises.ch04 import _BadRestorer, check_improved_step


def improved(R, D, x_s, s):
    x0_hat = R(x_s, s).clamp(-1, 1)
    return x_s - D(x0_hat, s) + D(x0_hat, s - 1)


def test_algorithm_2_passes(capsys):
    assert check_improved_step(improved) is True
    assert capsys.readouterr().out.startswith("Correct")


def test_tensor_levels_torch_clip_and_an_in_place_clamp_of_the_estimate_pass_too():
    def step(R, D, x_s, s):
        s_vec = torch.full((len(x_s),), s)
        x0_hat = torch.clip(R(x_s, s_vec), -1, 1)
        return x_s - D(x0_hat, s_vec) + D(x0_hat, s_vec - 1)

    def in_place_on_its_own_tensor(R, D, x_s, s):
        x0_hat = R(x_s, s)
        x0_hat.clamp_(-1, 1)  # R's output is the function's own tensor: fine
        out = x_s.clone()
        out -= D(x0_hat, s)
        out += D(x0_hat, s - 1)
        return out

    assert check_improved_step(step)
    assert check_improved_step(in_place_on_its_own_tensor)


def clamped(R, x_s, s):
    return R(x_s, s).clamp(-1, 1)


# The mutation table: a plausible wrong step, the words its message must contain.
MUTATIONS = [
    ("Algorithm 1", lambda R, D, x_s, s: D(clamped(R, x_s, s), s - 1), "Algorithm 1"),
    ("Algorithm 1, no clamp", lambda R, D, x_s, s: D(R(x_s, s), s - 1), "Algorithm 1"),
    (
        "signs swapped",
        lambda R, D, x_s, s: (
            x_s + D(clamped(R, x_s, s), s) - D(clamped(R, x_s, s), s - 1)
        ),
        "signs are swapped",
    ),
    (
        "x_s left out",
        lambda R, D, x_s, s: D(clamped(R, x_s, s), s - 1) - D(clamped(R, x_s, s), s),
        "left out x_s",
    ),
    ("direct estimate", lambda R, D, x_s, s: clamped(R, x_s, s), "direct estimate"),
    (
        "R at s - 1",
        lambda R, D, x_s, s: (
            x_s - D(clamped(R, x_s, s - 1), s) + D(clamped(R, x_s, s - 1), s - 1)
        ),
        "level of its input",
    ),
    (
        "missing clamp",
        lambda R, D, x_s, s: x_s - D(R(x_s, s), s) + D(R(x_s, s), s - 1),
        "did not clamp",
    ),
    (
        "clamp of the result",
        lambda R, D, x_s, s: (x_s - D(R(x_s, s), s) + D(R(x_s, s), s - 1)).clamp(-1, 1),
        "you clamped x_(s-1)",
    ),
    (
        "clamp to [0, 1]",
        lambda R, D, x_s, s: (
            x_s - D(R(x_s, s).clamp(0, 1), s) + D(R(x_s, s).clamp(0, 1), s - 1)
        ),
        "not (0, 1)",
    ),
    (
        "degrades x_s",
        lambda R, D, x_s, s: x_s - D(x_s, s) + D(x_s, s - 1),
        "degraded x_s itself",
    ),
    (
        "both terms at s",
        lambda R, D, x_s, s: x_s - D(clamped(R, x_s, s), s) + D(clamped(R, x_s, s), s),
        "returns x_s unchanged",
    ),
    (
        "in place",
        lambda R, D, x_s, s: x_s.sub_(D(clamped(R, x_s, s), s)).add_(
            D(clamped(R, x_s, s), s - 1)
        ),
        "changed x_s in place",
    ),
    (
        "a small offset",
        lambda R, D, x_s, s: improved(R, D, x_s, s) + 0.01,
        "differs from the library's",
    ),
    (
        "a list",
        lambda R, D, x_s, s: improved(R, D, x_s, s).tolist(),
        "return the tensor",
    ),
    ("one image", lambda R, D, x_s, s: improved(R, D, x_s, s)[0], "shaped like x_s"),
]


@pytest.mark.parametrize(
    "fn, words", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_typical_slips_fail_with_a_useful_message(fn, words, capsys):
    assert check_improved_step(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


def test_the_test_restorer_needs_the_clamp_at_every_level_checked():
    """The restorer's estimates leave [-1, 1], so the clamp changes the step at s = 1 and 4 (the 16 px blur
    has flattened the images by s = 20, where it changes nothing that 1e-5 could see)."""
    from colddiff_lib.degradations import GaussianBlur

    R, D = _BadRestorer(), GaussianBlur(T=20, kernel_size=11, std=7.0)
    x_s = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for s in (1, 4):
        raw = R(x_s, s)
        assert float(raw.abs().max()) > 1.3
        with_clamp = improved(R, D, x_s, s)
        without = x_s - D(raw, s) + D(raw, s - 1)
        assert float((with_clamp - without).abs().max()) > 100 * 1e-5


def test_not_a_function_raises():
    with pytest.raises(ValueError, match="fn must be a function"):
        check_improved_step("x_s - D(x0_hat, s) + D(x0_hat, s - 1)")


def test_the_checker_is_fast():
    check_improved_step(improved)  # warm-up
    start = time.process_time()
    check_improved_step(improved)
    assert time.process_time() - start < 1.0
