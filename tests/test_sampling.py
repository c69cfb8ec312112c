"""Algorithms 1 and 2: the paper's claim that Algorithm 2 tolerates any R when D(x, s) = x + s e."""

import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib.models import UNet
from colddiff_lib.sampling import direct, level_grid, sample, trajectory


class Shift:
    """The Taylor picture made exact: D(x, s) = x + s e, with a fixed image e."""

    def __init__(self, e: torch.Tensor, T: int):
        self.e, self.T = e, T

    def __call__(self, x0, t):
        t = torch.as_tensor(t).reshape(-1, 1, 1, 1).to(x0.dtype)
        return x0 + t * self.e


def arbitrary_restorers():
    torch.manual_seed(0)
    net = UNet.from_preset("tiny", channels=1).eval()  # random weights
    return {
        "random-weights U-Net": lambda x, t: net(x, t),
        "constant": lambda x, t: torch.full_like(x, 0.3),
        "noise": lambda x, t: torch.randn_like(x),
        "identity": lambda x, t: x,
    }


@pytest.fixture
def x0():
    return torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("name", list(arbitrary_restorers()))
def test_improved_lands_on_the_degradation_path_for_any_R(name, x0):
    R = arbitrary_restorers()[name]
    e = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.05
    D = Shift(e, T=10)
    steps = []
    sample(
        R,
        D,
        D(x0, D.T),
        D.T,
        algorithm="improved",
        clip_x0=False,
        callback=lambda info: steps.append((info["s"], info["x_next"])),
    )
    assert [s for s, _ in steps] == list(range(10, 0, -1))
    for s, x_next in steps:
        torch.testing.assert_close(x_next, D(x0, s - 1), atol=1e-5, rtol=0)
    naive = sample(R, D, D(x0, D.T), D.T, algorithm="naive", clip_x0=False)
    assert (naive - x0).abs().max() > 0.05, (
        "Algorithm 1 only recovers x0 when R is exact"
    )


@pytest.fixture(scope="module")
def digits():
    from colddiff_lib.data import load_dataset

    return load_dataset("mnist5k", split="test").images[:6]  # [6, 1, 32, 32]


@pytest.mark.parametrize("name", list(arbitrary_restorers()))
def test_improved_error_on_the_blur_is_a_difference_of_blurs(name, digits):
    """The blur is linear but not a shift, so the claim is not exact there: one step of Algorithm 2 from
    x_s = D(x0, s) misses D(x0, s-1) by D(e, s-1) - D(e, s), with e = R(x_s) - x0, while Algorithm 1
    misses by D(e, s-1). Past the first kernels one more blur changes an already blurred error
    little, so Algorithm 2's miss is a fraction of Algorithm 1's, whatever R is."""
    R = arbitrary_restorers()[name]
    x0 = digits
    D = dg.GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1)
    total_improved = total_naive = 0.0
    for s in range(1, D.T + 1):
        x_s = D(x0, s)
        with torch.no_grad():
            x0_hat = R(x_s, torch.full((len(x0),), s)).clamp(-1, 1)
        err = x0_hat - x0
        improved = x_s - D(x0_hat, s) + D(x0_hat, s - 1)
        naive = D(x0_hat, s - 1)
        torch.testing.assert_close(
            improved - D(x0, s - 1), D(err, s - 1) - D(err, s), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            naive - D(x0, s - 1), D(err, s - 1), atol=1e-5, rtol=0
        )
        miss_improved = float((improved - D(x0, s - 1)).norm())
        miss_naive = float((naive - D(x0, s - 1)).norm())
        if s >= 3:
            assert miss_improved < 0.5 * miss_naive, f"step {s}"
        total_improved += miss_improved
        total_naive += miss_naive
    assert total_improved < 0.6 * total_naive


def test_exact_R_makes_both_algorithms_exact(x0):
    D = dg.GaussianBlur(T=8, kernel_size=5, std=1.0)
    R = lambda x, t: x0  # noqa: E731 - an oracle
    for algorithm in ("naive", "improved"):
        torch.testing.assert_close(
            sample(R, D, D(x0, 8), 8, algorithm=algorithm), x0, atol=1e-5, rtol=0
        )


class CountingBlur(dg.GaussianBlur):
    calls = 0

    def degrade(self, x0, t):
        CountingBlur.calls += 1
        return super().degrade(x0, t)


@pytest.mark.parametrize("algorithm, per_step", [("naive", 1), ("improved", 2)])
def test_a_full_run_costs_O_T_evaluations(algorithm, per_step, x0):
    D = CountingBlur(T=12, kernel_size=5, std=1.0)
    R = lambda x, t: x  # noqa: E731
    CountingBlur.calls = 0
    sample(R, D, D(x0, 12), 12, algorithm=algorithm)
    # + the D(x0, 12) that made the start
    assert CountingBlur.calls == per_step * 12 + 1


def test_per_sample_start_levels_equal_separate_runs(x0):
    torch.manual_seed(0)
    net = UNet.from_preset("tiny", channels=1).eval()
    D = dg.GaussianBlur(T=6, kernel_size=5, std=1.0)
    t = torch.tensor([6, 0, 3])
    together = sample(net, D, D(x0, t), t)
    for i in range(3):
        alone = sample(net, D, D(x0[i : i + 1], int(t[i])), int(t[i]))
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-5)
    assert torch.equal(together[1], x0[1])


def test_random_degradations_must_be_frozen(x0):
    D = dg.GaussianNoise(T=5)
    with pytest.raises(ValueError, match="freeze"):
        sample(lambda x, t: x, D, x0, 5)
    Df = D.freeze(x0, torch.Generator().manual_seed(0))
    out = sample(lambda x, t: x0, Df, Df(x0, 5), 5)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_argument_checks(x0):
    D = dg.GaussianBlur(T=4, kernel_size=3, std=1.0, channels=1)
    with pytest.raises(ValueError, match="algorithm"):
        sample(lambda x, t: x, D, x0, 4, algorithm="ddim")
    with pytest.raises(ValueError, match=r"0\.\.T"):
        sample(lambda x, t: x, D, x0, 5)
    with pytest.raises(ValueError, match="channels=1"):
        sample(lambda x, t: x, D, x0.repeat(1, 3, 1, 1), 4)
    with pytest.raises(ValueError, match="rank 4"):
        direct(lambda x, t: x, D, x0[0], 1)


def test_trajectory_records_every_iterate(x0):
    D = dg.GaussianBlur(T=6, kernel_size=5, std=1.0)
    out, xs, hats, levels = trajectory(lambda x, t: x, D, D(x0, 6), 6, every=2)
    assert levels == [6, 4, 2, 1, 0]
    assert xs.shape == (5, 3, 1, 16, 16) and hats.shape == (4, 3, 1, 16, 16)
    assert torch.equal(xs[-1], out)


def test_ddim_follows_the_path_with_an_exact_restorer_and_differs_from_algorithm_2_otherwise(
    x0,
):
    """DDIM re-estimates z from x_s and x0_hat: with an exact R it lands on D(x0, s-1) at every step (as
    Algorithm 2 does); with a biased R the two differ, since Algorithm 2 keeps its frozen z."""
    D = dg.GaussianNoise(T=20, channels=1)
    Df = D.freeze(x0, torch.Generator().manual_seed(0))
    x_T = Df(x0, D.T)
    steps = []
    out = sample(lambda x, t: x0, Df, x_T, D.T, algorithm="ddim", callback=steps.append)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    for info in steps:
        torch.testing.assert_close(
            info["x_next"], Df(x0, info["s"] - 1), atol=1e-5, rtol=0
        )

    def imperfect(x, t):  # depends on its input, as a real network does
        return (0.7 * x0 + 0.3 * x).clamp(-1, 1)

    ddim = sample(imperfect, Df, x_T, D.T, algorithm="ddim")
    alg2 = sample(imperfect, Df, x_T, D.T, algorithm="improved")
    assert float((ddim - alg2).abs().max()) > 1e-3
    for algorithm in ("ddim", "ancestral"):
        with pytest.raises(
            ValueError,
            match=f"'{algorithm}' re-estimates a noise, so it needs a degradation with a noise",
        ):
            sample(
                lambda x, t: x,
                dg.GaussianBlur(T=4, kernel_size=3, std=1.0),
                x0,
                4,
                algorithm=algorithm,
            )


@pytest.mark.parametrize(
    "make",
    [
        lambda: dg.GaussianNoise(T=20, channels=1),
        lambda: dg.build(
            "noisy",
            base={
                "name": "blur",
                "T": 8,
                "kernel_size": 5,
                "std": 1.0,
                "collapse_at_T": True,
            },
            std=0.3,
            channels=1,
        ),
    ],
)
def test_ancestral_steps_have_the_posterior_spread_and_repeat_with_their_generator(
    x0, make
):
    """With an exact R, each ancestral step lands on clean(x0, s-1) plus noise of standard deviation sigma_{s-1}
    (the fresh part and the kept part of z together), the run ends on x0, and the same generator repeats it."""
    D = make()
    Df = D.freeze(x0, torch.Generator().manual_seed(0))
    x_T = Df(x0, D.T)
    _, sigma = D.noise_schedule()
    steps = []
    out = sample(
        lambda x, t: x0,
        Df,
        x_T,
        D.T,
        algorithm="ancestral",
        callback=steps.append,
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    for info in steps[1:-1]:  # s = T - 1 .. 2: a fresh part was drawn
        s = info["s"]
        spread = float((info["x_next"] - D.clean(x0, s - 1)).std())
        assert abs(spread / float(sigma[s - 1]) - 1) < 0.1, (
            s,
            spread,
            float(sigma[s - 1]),
        )

    def imperfect(x, t):
        return (0.7 * x0 + 0.3 * x).clamp(-1, 1)

    runs = [
        sample(
            imperfect,
            Df,
            x_T,
            D.T,
            algorithm="ancestral",
            generator=torch.Generator().manual_seed(k),
        )
        for k in (3, 3, 4)
    ]
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)
    assert float((runs[0] - runs[2]).abs().max()) > 1e-3
    ddim = sample(imperfect, Df, x_T, D.T, algorithm="ddim")
    assert float((runs[0] - ddim).abs().max()) > 1e-3


@pytest.mark.parametrize("name", list(arbitrary_restorers()))
def test_a_coarser_grid_of_levels_keeps_algorithm_2_on_the_path(name, x0):
    """levels: each step s -> s' of Algorithm 2 lands on D(x0, s') for any R where D(x, s) = x + s e, as the
    unit steps do; the default grid is every level; DDIM with an exact R lands on the path at every level
    of the grid too. One call of R per step."""
    R = arbitrary_restorers()[name]
    e = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.05
    D = Shift(e, T=10)
    for grid in ([10, 0], [10, 7, 3, 0], level_grid(10, 4)):
        steps = []
        sample(
            R,
            D,
            D(x0, 10),
            10,
            clip_x0=False,
            levels=grid,
            callback=lambda info: steps.append((info["s"], info["x_next"])),
        )
        assert [s for s, _ in steps] == grid[:-1]
        for (s, x_next), s_next in zip(steps, grid[1:]):
            torch.testing.assert_close(x_next, D(x0, s_next), atol=1e-5, rtol=0)
    net = UNet.from_preset("tiny", channels=1).eval()
    blur = dg.GaussianBlur(T=6, kernel_size=5, std=1.0)
    for algorithm in ("improved", "naive"):
        torch.testing.assert_close(
            sample(net, blur, blur(x0, 6), 6, algorithm, levels=range(6, -1, -1)),
            sample(net, blur, blur(x0, 6), 6, algorithm),
        )
    noise = dg.GaussianNoise(T=20, channels=1)
    frozen = noise.freeze(x0, torch.Generator().manual_seed(0))
    seen = []
    out = sample(
        lambda x, t: x0,
        frozen,
        frozen(x0, 20),
        20,
        "ddim",
        levels=[20, 12, 5, 0],
        callback=seen.append,
    )
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(seen[0]["x_next"], frozen(x0, 12), atol=1e-5, rtol=0)


def test_level_grid_and_bad_levels(x0):
    assert level_grid(20, 2) == [20, 10, 0] and level_grid(20, 20) == list(
        range(20, -1, -1)
    )
    assert level_grid(10, 3) == [10, 7, 3, 0] and level_grid(5, 1) == [5, 0]
    with pytest.raises(ValueError, match=r"steps must be an int in 1\.\.t=20, got 0"):
        level_grid(20, 0)
    with pytest.raises(ValueError, match=r"steps must be an int in 1\.\.t=20, got 40"):
        level_grid(20, 40)
    with pytest.raises(ValueError, match="t must be an int >= 1, got 2.5"):
        level_grid(2.5, 1)
    # True == 1 to Python, but a flag passed for a level is a mistake
    with pytest.raises(ValueError, match="t must be an int >= 1, got True"):
        level_grid(True, 1)
    with pytest.raises(
        ValueError, match=r"steps must be an int in 1\.\.t=20, got True"
    ):
        level_grid(20, True)
    D = dg.GaussianBlur(T=6, kernel_size=5, std=1.0)
    x_t = D(x0, 6)
    # the wrong grids people write: not ending at 0, increasing, from another level, fractions, one level
    for bad in ([6, 3], [0, 3, 6], [6, 3, 3, 0], [6, 2.5, 0], [6], "6,0", [7, 0]):
        with pytest.raises(ValueError, match="levels must be ints decreasing strictly"):
            sample(lambda x, t: x, D, x_t, 6, levels=bad)
    with pytest.raises(
        ValueError,
        match=r"levels must start at the start level t.*from 5 and t = \[6\]",
    ):
        sample(lambda x, t: x, D, x_t, 6, levels=[5, 0])
    with pytest.raises(ValueError, match=r"t = \[3, 6\]"):
        sample(lambda x, t: x, D, x_t[:2], torch.tensor([6, 3]), levels=[6, 0])
