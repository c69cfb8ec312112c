"""Generation: GaussianPrior (at T and below it, in one linear form) and generate(), from any degradation's start."""

import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib.degradations import Degradation
from colddiff_lib.degradations.base import FlatEnd
from colddiff_lib.generation import (
    GaussianPrior,
    Generated,
    adds_second_signal,
    generate,
)
from conftest import library_degradations, quick_instance

WITH_PRIOR = sorted(
    name
    for name, cls in library_degradations().items()
    if cls.prior is not Degradation.prior
)


@pytest.mark.parametrize("name", WITH_PRIOR)
def test_generate_starts_from_the_prior_and_runs_from_T(name):
    """Every library degradation with a prior generates from it: T steps, the start returned beside the
    samples (a named pair), the default symmetry noise the degradation's own."""
    D = quick_instance(library_degradations()[name])
    seen = []
    out = generate(
        lambda x, t: x.clamp(-1, 1),
        D,
        4,
        (1, 16, 16),
        generator=torch.Generator().manual_seed(0),
        callback=lambda info: seen.append(info["s"]),
    )
    assert isinstance(out, Generated) and out.x0.shape == out.x_T.shape == (
        4,
        1,
        16,
        16,
    )
    x0, x_T = out  # unpacks as the pair it always was
    assert seen == list(range(D.T, 0, -1))
    again = generate(
        lambda x, t: x.clamp(-1, 1),
        D,
        4,
        (1, 16, 16),
        generator=torch.Generator().manual_seed(0),
        noise_std=D.symmetry_noise,
    )
    assert torch.equal(again.x_T, x_T)  # the default noise is D.symmetry_noise


def test_gaussian_prior_matches_the_data_colours():
    g = torch.Generator().manual_seed(0)
    colours = torch.rand(500, 3, 1, 1, generator=g) * 0.4 + torch.tensor(
        [0.2, -0.5, 0.0]
    ).view(1, 3, 1, 1)
    images = colours.expand(500, 3, 8, 8) + 0.05 * torch.randn(
        500, 3, 8, 8, generator=g
    )
    D = dg.GaussianBlur(T=4, kernel_size=3, std=1.0, collapse_at_T=True)
    prior = GaussianPrior(D, images)
    x_T = prior(2000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(x_T, x_T.mean(dim=(-2, -1), keepdim=True)), "flat images"
    torch.testing.assert_close(
        x_T.mean(dim=(0, 2, 3)), colours.mean(dim=(0, 2, 3)), atol=0.02, rtol=0
    )
    with pytest.raises(ValueError, match="latent"):
        GaussianPrior(dg.Snow(T=3), images)
    # Two clusters of colours: a two-component mixture puts its samples near both, not
    # between.
    two = torch.cat([torch.full((200, 1, 4, 4), -0.6), torch.full((200, 1, 4, 4), 0.6)])
    two = two + 0.02 * torch.randn(two.shape, generator=g)
    D1 = dg.GaussianBlur(T=2, kernel_size=3, std=1.0, collapse_at_T=True)
    colours = GaussianPrior(D1, two, components=2)(
        1000, generator=torch.Generator().manual_seed(2)
    )[:, 0, 0, 0]
    assert (colours.abs() > 0.4).float().mean() > 0.95
    with pytest.raises(ValueError, match="components"):
        GaussianPrior(D1, two, components=0)


def test_gaussian_prior_below_T_models_the_degraded_images_and_generation_starts_there():
    """Fitted at level t0 < T, the prior's starts have the mean and the spread of the training images at t0
    (in the principal components it keeps), and generate() runs the sampler from t0 down."""
    D = dg.GaussianBlur(T=6, kernel_size=5, std=1.0, collapse_at_T=True, channels=1)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(300, 1, 16, 16, generator=g) * 2 - 1).clamp(-1, 1)
    prior = GaussianPrior(D, images, level=2, dims=8)
    assert prior.level == 2 and prior.basis.shape == (8, 256)
    starts = prior(4000, generator=torch.Generator().manual_seed(1))
    target = D(images, 2).flatten(1)
    torch.testing.assert_close(
        starts.flatten(1).mean(0), target.mean(0), atol=0.02, rtol=0
    )

    def spread(x):
        return ((x.flatten(1).double() - prior.offset) @ prior.basis.T).std(0)

    torch.testing.assert_close(spread(starts), spread(target), rtol=0.1, atol=0)
    seen = []
    out, x_start = generate(
        lambda x, t: x.clamp(-1, 1),
        D,
        3,
        (1, 16, 16),
        prior=prior,
        noise_std=0.0,
        callback=lambda info: seen.append(info["s"]),
    )
    assert seen == [2, 1] and out.shape == x_start.shape == (3, 1, 16, 16)
    for bad, message in [
        (dict(level=0), "level must be an int in 1..T"),
        (dict(level=7), "level must be an int"),
        (dict(dims=0), "dims must be a positive int"),
    ]:
        with pytest.raises(ValueError, match=message):
            GaussianPrior(D, images, **bad)
    with pytest.raises(ValueError, match="cannot recover its random state"):
        GaussianPrior(dg.Snow(T=10, channels=1), images, level=3)


def test_a_blend_starts_below_T_from_the_digits_part_plus_a_target_it_is_frozen_on():
    """Blend's image at level t0 < T cannot show which target it holds, so the prior models the digit's part
    D.clean(x, t0) alone and adds a target drawn as D draws it, with D frozen on it: a sampler then removes
    exactly that target. With R = 0, Algorithm 2 from x_t0 ends at x_t0 - D(0, t0) + D(0, 0), the start's
    digit part; what it took away is sigma_t0 times one of the targets."""
    g = torch.Generator().manual_seed(0)
    targets = torch.rand(3, 1, 16, 16, generator=g) * 2 - 1
    D = dg.Blend(targets=targets, T=10, channels=1)
    images = (torch.rand(400, 1, 16, 16, generator=g) * 2 - 1) * 0.5
    prior = GaussianPrior(D, images, level=6, dims=8)
    assert prior.second_signal and not adds_second_signal(D, 10)
    starts, frozen = prior.start(500, generator=torch.Generator().manual_seed(1))
    assert frozen.frozen and starts.shape == (500, 1, 16, 16)
    digit = starts - frozen(torch.zeros_like(starts), 6)
    torch.testing.assert_close(
        digit.flatten(1).mean(0),
        D.clean(images, 6).flatten(1).mean(0),
        atol=0.02,
        rtol=0,
    )
    out, start = generate(
        lambda x, t: torch.zeros_like(x),
        D,
        50,
        (1, 16, 16),
        prior=prior,
        generator=torch.Generator().manual_seed(2),
    )
    sigma = D.noise_schedule()[1][6].item()
    removed = ((start - out) / sigma).flatten(1)
    gap = torch.cdist(removed.double(), targets.flatten(1).double()).min(1).values
    assert float(gap.max()) < 1e-4, (
        "the sampler removed a target other than the start's"
    )
    with pytest.raises(ValueError, match="no linear form"):
        prior.linear_form()


def test_inpainting_fill_starts_below_T_from_the_colour_its_hole_shows():
    """InpaintingFill.freeze_at reads the fill colour off the completely masked pixels, so that D(x0, t) of the
    frozen copy reproduces x_t wherever the mask hides x0; a level whose hole hides no pixel is refused."""
    D = dg.InpaintingFill(T=20, std=0.3, channels=1)
    x0 = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    Df = D.freeze(x0, torch.Generator().manual_seed(1))
    x_t = Df(x0, 12)
    again = D.freeze_at(x_t, 12)
    torch.testing.assert_close(
        again.colours, Df.colours.to(again.colours.dtype), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(again(x0, 12), x_t, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="masks no pixel completely"):
        D.freeze_at(Df(x0, 1), 1)
    prior = GaussianPrior(
        D,
        torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1,
        level=12,
        dims=16,
    )
    out, start = generate(
        lambda x, t: x.clamp(-1, 1), D, 3, (1, 16, 16), prior=prior, noise_std=0.0
    )
    assert out.shape == start.shape == (3, 1, 16, 16)


@pytest.mark.parametrize("level", [None, 1])
def test_the_linear_form_paints_the_priors_own_starts(level):
    """At T (offset = from_latent(0), basis rows from_latent(e_i) - offset) and below T (the mean image and the
    principal components): clamp(offset + z @ basis) is what the prior draws, from the same z."""
    D = dg.SuperResolution(T=2, channels=1)
    images = (
        torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    prior = GaussianPrior(D, images, components=2, level=level, dims=6)
    offset, basis = prior.linear_form()
    d = 16 if level is None else 6  # a 4 x 4 latent image at T, six components below
    assert (
        offset.shape == (256,)
        and basis.shape == (d, 256)
        and offset.dtype == basis.dtype == torch.float64
    )
    z = prior.draw_latents(200, torch.Generator().manual_seed(1))
    painted = (offset + z @ basis).clamp(-1, 1).float().view(-1, 1, 16, 16)
    torch.testing.assert_close(
        painted,
        prior(200, generator=torch.Generator().manual_seed(1)),
        atol=1e-6,
        rtol=0,
    )


class Squared(FlatEnd, Degradation):
    """A flat end whose from_latent is not affine (the colour squared): it has no linear form."""

    def __init__(self, T=3, channels=None):
        super().__init__(T, channels)

    def degrade(self, x0, t):
        u = (t.to(x0.dtype) / self.T).view(-1, 1, 1, 1)
        return (1 - u) * x0 + u * x0.mean(dim=(-2, -1), keepdim=True)

    def from_latent(self, z, shape):
        return super().from_latent(z * z.abs(), shape)


def test_a_start_that_is_not_affine_in_its_latent_has_no_linear_form():
    prior = GaussianPrior(
        Squared(),
        torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1,
    )
    with pytest.raises(
        ValueError, match="Squared.from_latent is not affine in its latent"
    ):
        prior.linear_form()
