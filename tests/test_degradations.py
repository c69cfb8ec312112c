"""Degradations: identity at t = 0, closed forms equal to the step-by-step definitions, input checks."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colddiff_lib import degradations as dg
from colddiff_lib.degradations.noisy import Noisy
from conftest import library_degradations, quick_instance


# : Degradations in settings other than their defaults, for the tests of what those
# settings do.
VARIANTS = {
    "blur_mnist": lambda: dg.GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1),
    "blur_reflect_collapse": lambda: dg.GaussianBlur(
        T=10,
        kernel_size=5,
        std=0.5,
        schedule="incremental",
        padding="reflect",
        collapse_at_T=True,
    ),
    "blur_exponential": lambda: dg.GaussianBlur(
        T=30, kernel_size=7, std=0.05, schedule="exponential"
    ),
    "inpaint_random": lambda: dg.Inpainting(T=20, std=0.3, random_centre=True),
    "superres_bicubic": lambda: dg.SuperResolution(T=2, mode="bicubic"),
    "noisy_blur": lambda: Noisy(std=0.2),
    "noisy_fill": lambda: Noisy(
        base=dg.InpaintingFill(T=30, std=0.2).config(), std=0.1, power=0.0
    ),
    "noisy_superres": lambda: Noisy(
        base=dg.SuperResolution(T=4).config(), std=0.3, power=2.0
    ),
}


def make_all():
    """Every degradation of the library, read from the registry and built from its defaults (at most 20
    levels), and the VARIANTS: a degradation added as a module of its own is tested here with no edit."""
    return {
        **{name: quick_instance(cls) for name, cls in library_degradations().items()},
        **{name: make() for name, make in VARIANTS.items()},
    }


ALL = make_all()


def test_every_registered_degradation_is_tested_here():
    assert {type(D).name for D in ALL.values()} == set(library_degradations())


@pytest.fixture
def x0():
    return torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("name", sorted(ALL))
def test_identity_at_zero_and_shape_dtype_kept(name, x0):
    D = ALL[name].freeze(x0, torch.Generator().manual_seed(1))
    assert torch.equal(D(x0, 0), x0)
    out = D(x0, torch.tensor([0, 1, D.T // 2, D.T]))
    assert out.shape == x0.shape and out.dtype == x0.dtype
    assert torch.equal(out[0], x0[0])
    assert not torch.equal(out[3], x0[3]), "the last level must change the image"
    x64 = x0.double()
    D64 = ALL[name].freeze(x64, torch.Generator().manual_seed(1))
    assert D64(x64, D.T).dtype == torch.float64


@pytest.mark.parametrize("name", sorted(ALL))
def test_per_sample_levels_equal_separate_calls(name, x0):
    D = ALL[name].freeze(x0, torch.Generator().manual_seed(2))
    t = torch.tensor([min(3, D.T), 0, D.T, 1])
    batched = D(x0, t)
    for i in range(4):
        single = D(x0, int(t[i]))[i]
        torch.testing.assert_close(batched[i], single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding", ["circular", "reflect"])
@pytest.mark.parametrize("collapse", [False, True])
def test_blur_closed_form_equals_kernels_applied_one_after_another(padding, collapse):
    x0 = torch.rand(3, 2, 24, 20, dtype=torch.float64) * 2 - 1
    D = dg.GaussianBlur(
        T=25,
        kernel_size=9,
        std=1.5,
        schedule="incremental",
        padding=padding,
        collapse_at_T=collapse,
    )
    x = x0
    for t in range(1, D.T + 1):
        x = D.step(x, t)
        torch.testing.assert_close(D(x0, t), x, atol=1e-5, rtol=0)
    if collapse:
        # The last step flattens x_{T-1} to its per-channel mean (equal to x0's for
        # circular padding).
        flat = D(x0, D.T - 1).mean(dim=(-2, -1), keepdim=True).expand_as(x0)
        torch.testing.assert_close(D(x0, D.T), flat)


def test_blur_step_is_the_paper_convolution():
    """One step equals a depthwise conv2d with the normalised outer-product Gaussian kernel."""
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    D = dg.GaussianBlur(
        T=3, kernel_size=5, std=1.0, schedule="constant", padding="circular"
    )
    i = torch.arange(5, dtype=torch.float64) - 2
    g = torch.exp(-(i**2) / 2)
    k = torch.outer(g, g)
    k = (k / k.sum()).expand(3, 1, 5, 5)
    ref = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (2, 2, 2, 2), mode="circular"), k, groups=3
    )
    torch.testing.assert_close(D.step(x, 1), ref)
    torch.testing.assert_close(D(x, 1), ref)


def test_blur_schedules():
    assert dg.blur_sigmas(3, 7.0, "constant") == [7.0, 7.0, 7.0]
    assert dg.blur_sigmas(3, 0.5, "incremental") == [0.5, 1.0, 1.5]
    assert dg.blur_sigmas(2, 0.01, "exponential") == pytest.approx(
        [1.0, 1.01005], rel=1e-5
    )


def test_blur_float32_matches_float64_and_keeps_mass():
    x0 = torch.rand(2, 1, 32, 32) * 2 - 1
    D = dg.GaussianBlur(T=20, kernel_size=11, std=7.0)
    torch.testing.assert_close(
        D(x0, 20).double(), D(x0.double(), 20), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        D(x0, 20).mean(dim=(-2, -1)), x0.mean(dim=(-2, -1)), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("random_centre", [False, True])
def test_inpainting_cumulative_mask_equals_steps(random_centre, x0):
    D = dg.Inpainting(T=30, std=0.2, random_centre=random_centre).freeze(
        x0, torch.Generator().manual_seed(3)
    )
    x = x0
    for t in range(1, D.T + 1):
        x = D.step(x, t)
        torch.testing.assert_close(D(x0, t), x, atol=1e-6, rtol=0)
    mask = D(torch.ones_like(x0), D.T)
    assert mask.min() >= 0 and mask.max() <= 1
    if not random_centre:  # the hole is at the centre
        assert mask[0, 0, 16, 16] < 0.05 and mask[0, 0, 0, 0] > mask[0, 0, 16, 16]


@pytest.mark.parametrize("fill", [False, True])
def test_random_holes_at_per_image_levels_are_the_cumulative_masks(fill, x0):
    """D(x0, t) with a level per image multiplies by each image's own a_t, read from
    cumulative_masks (a_0 = 1; the fill variant's a_T = 0, so x_T is its colour)."""
    D = (dg.InpaintingFill if fill else dg.Inpainting)(
        T=30, std=0.2, random_centre=True
    )
    batch = x0.repeat(2, 1, 1, 1)[:6]
    D = D.freeze(batch, torch.Generator().manual_seed(5))
    t = torch.tensor([0, 1, 7, 29, 30, 30])
    a = D.cumulative_masks(batch)[torch.arange(6), t].unsqueeze(1).to(batch.dtype)
    colour = D.colours.view(6, 1, 1, 1) if fill else 0
    torch.testing.assert_close(
        D(batch, t), a * batch + (1 - a) * colour, atol=1e-6, rtol=0
    )
    if fill:
        torch.testing.assert_close(D(batch, t)[4:], colour[4:].expand_as(batch[4:]))
    assert torch.equal(D(batch, torch.zeros(6, dtype=torch.long)), batch)


def test_inpainting_fill_ends_at_the_colour(x0):
    D = dg.InpaintingFill(T=40, std=0.2)
    colour = D.prior(4, (1, 32, 32), generator=torch.Generator().manual_seed(0))
    Df = D.freeze_to(colour)
    torch.testing.assert_close(Df(x0, D.T), colour)
    assert colour.abs().max() <= 0.5


def test_superres_halves_the_resolution_and_composes(x0):
    D = dg.SuperResolution(T=3)
    x = x0
    for t in range(1, 4):
        x = D.step(x, t)
        torch.testing.assert_close(D(x0, t), x, atol=1e-6, rtol=0)
        f = 2**t
        blocks = D(x0, t).unfold(2, f, f).unfold(3, f, f)  # [B, C, 32/f, 32/f, f, f]
        assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks)), (
            "constant f x f blocks"
        )
    torch.testing.assert_close(
        D(x0, 3)[..., ::8, ::8], torch.nn.functional.avg_pool2d(x0, 8)
    )
    with pytest.raises(ValueError, match="divisible"):
        D(torch.zeros(1, 1, 20, 20), 1)


def test_noise_and_blend_follow_the_cosine_schedule(x0):
    abar = dg.cosine_alpha_bar(200)
    assert abar[0] == 1 and abar[-1] == 0 and torch.all(abar[1:] <= abar[:-1])
    D = dg.GaussianNoise(T=200).freeze(x0, torch.Generator().manual_seed(0))
    t = 77
    torch.testing.assert_close(
        D(x0, t), abar[t].sqrt().float() * x0 + (1 - abar[t]).sqrt().float() * D.source
    )
    torch.testing.assert_close(D(x0, 200), D.source)
    targets = torch.rand(3, 1, 32, 32) * 2 - 1
    B = dg.Blend(targets, T=200).freeze(x0, torch.Generator().manual_seed(0))
    out = B(x0, 200)
    assert all(any(torch.equal(o, y) for y in targets) for o in out)


def test_freeze_fixes_randomness_and_seeds_reproduce(x0):
    for D in (
        dg.Snow(T=30),
        dg.GaussianNoise(T=10),
        dg.Inpainting(T=10, random_centre=True),
    ):
        a = D.freeze(x0, torch.Generator().manual_seed(5))
        b = D.freeze(x0, torch.Generator().manual_seed(5))
        c = D.freeze(x0, torch.Generator().manual_seed(6))
        assert torch.equal(a(x0, 7), a(x0, 7))
        assert torch.equal(a(x0, 7), b(x0, 7))
        assert not torch.equal(a(x0, 7), c(x0, 7))
        with pytest.raises(ValueError, match="frozen for a batch of 4"):
            a(x0[:2], 1)


def test_snow_grows_with_t(x0):
    D = dg.Snow(T=30).freeze(x0, torch.Generator().manual_seed(0))
    change = [float((D(x0, t) - x0).abs().mean()) for t in (1, 10, 20, 30)]
    assert change == sorted(change) and change[-1] > 5 * change[0]
    assert D(x0, 30).min() >= -1 and D(x0, 30).max() <= 1


@pytest.mark.parametrize("name", sorted(name for name, D in ALL.items() if D.linear))
@settings(max_examples=15, deadline=None)
@given(a=st.floats(-2, 2), b=st.floats(-2, 2), t=st.integers(0, 3))
def test_linear_degradations_are_linear(name, a, b, t):
    t = min(t, ALL[name].T)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
    # a random one (a mask's centre) draws once for all three calls
    D = ALL[name].freeze(x, g)
    torch.testing.assert_close(
        D(a * x + b * y, t), a * D(x, t) + b * D(y, t), atol=1e-4, rtol=1e-4
    )


def test_build_rebuilds_from_config():
    for name, D in ALL.items():
        cfg = D.config()
        rebuilt = dg.build(**cfg)
        assert type(rebuilt) is type(D) and rebuilt.config() == D.config()
    with pytest.raises(ValueError, match="name must be one of"):
        dg.build("sharpen")


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: on the CPU every tensor is on it",
)
def test_cuda_images_stay_on_the_gpu_and_a_cpu_generator_drives_them():
    """Images on the GPU give images on the GPU at every level, and a frozen draw from a CPU generator is the
    same whichever device the images are on (reproducible everywhere)."""
    x = torch.rand(2, 1, 32, 32)
    for name, D in make_all().items():
        t = torch.tensor([1, D.T])
        on_cpu = D.freeze(x, torch.Generator().manual_seed(0))(x, t)
        on_gpu = D.freeze(x.cuda(), torch.Generator().manual_seed(0))(
            x.cuda(), t.cuda()
        )
        assert on_gpu.device.type == "cuda", name
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-4, msg=name)


def test_bad_input_raises_clear_errors(x0):
    D = dg.GaussianBlur(T=20, channels=1)
    with pytest.raises(ValueError, match="rank 4"):
        D(x0[0], 1)
    with pytest.raises(ValueError, match=r"0\.\.T = 0\.\.20"):
        D(x0, 21)
    with pytest.raises(ValueError, match=r"0\.\.T"):
        D(x0, torch.tensor([0, 1, -1, 2]))
    with pytest.raises(ValueError, match="channels=1"):
        D(torch.rand(2, 3, 32, 32), 1)
    with pytest.raises(ValueError, match="integers"):
        D(x0, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        D(x0, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="floating-point"):
        D(torch.zeros(1, 1, 8, 8, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="1..T"):
        D.step(x0, 0)
    with pytest.raises(ValueError, match="kernel_size"):
        dg.GaussianBlur(kernel_size=4)
    with pytest.raises(ValueError, match="schedule"):
        dg.GaussianBlur(schedule="linear")
    with pytest.raises(ValueError, match="padding"):
        dg.GaussianBlur(padding="zeros")
    with pytest.raises(ValueError, match="T must be"):
        dg.Inpainting(T=0)
    with pytest.raises(NotImplementedError, match="not compositional"):
        dg.Snow(T=5).step(x0, 1)


class Darken(dg.Degradation):
    """A reader's degradation: fade toward black, written by overriding one method."""

    linear = True

    def degrade(self, x0, t):
        return x0 - 0.1 * t.view(-1, 1, 1, 1).to(x0.dtype)


def test_a_new_degradation_needs_one_method(x0):
    D = Darken(T=5)
    assert torch.equal(D(x0, 0), x0)
    torch.testing.assert_close(D(x0, 3), x0 - 0.3)
    with pytest.raises(ValueError):
        D(x0, 6)


@pytest.mark.parametrize(
    "name", sorted(name for name in VARIANTS if name.startswith("noisy_"))
)
def test_noisy_is_its_base_plus_noise_of_the_scheduled_spread(name):
    """D(x0, t) - B(x0, t) is the frozen z times sigma_t = std (t / T)^power; D.freeze_to(x_T) reaches x_T at T."""
    D = ALL[name]
    x0 = torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    Df = D.freeze(x0, torch.Generator().manual_seed(4))
    for t in (1, D.T // 2, D.T):
        residual = Df(x0, t) - Df.clean(x0, t)
        expected = D.std * (t / D.T) ** D.power
        assert abs(float(residual.std()) / expected - 1) < 0.02, (
            t,
            float(residual.std()),
            expected,
        )
        torch.testing.assert_close(residual, expected * Df.noise, atol=1e-5, rtol=0)
    x_T = Df(x0, D.T)
    # from any image whose end state is x_T's noise-free part, D reaches x_T
    again = D.freeze_to(x_T)
    start = D.from_latent(D.latent(x_T), x_T.shape[1:])
    torch.testing.assert_close(again(start, D.T), x_T, atol=1e-5, rtol=0)
    assert D.symmetry_noise == D.std
    assert dg.build(**D.config()).config() == D.config()


def test_noisy_refuses_bad_arguments():
    for kwargs, message in [
        ({"base": {"T": 4}}, "base must be a degradation's config"),
        ({"base": {"name": "noisy"}}, "not another noisy one"),
        ({"std": 0}, "std must be a positive number"),
        ({"power": -1}, "power must be a number in"),
        ({"base": {"name": "blurr"}}, "did you mean 'blur'"),
    ]:
        with pytest.raises(ValueError, match=message):
            dg.build("noisy", **kwargs)
