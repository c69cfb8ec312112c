"""Chapter 6's checker: a flat-colour prior for generation from the collapsed blur."""

import time

import pytest
import torch

from colddiff_lib.data import load_dataset
from colddiff_lib.exercises.ch06 import check_flat_prior


@pytest.fixture(scope="module")
def train_images():
    # what chapter 6 fits its prior to
    return load_dataset("mnist5k", split="train").images


def gaussian_colours(mean, std, seed=0, clamp=True, channels=1):
    g = torch.Generator().manual_seed(seed)  # seeded once: every call draws new colours

    def prior(n):
        c = mean + std * torch.randn(n, channels, 1, 1, generator=g)
        c = c.clamp(-1, 1) if clamp else c
        return c.expand(n, channels, 32, 32).contiguous()

    return prior


def fitted(images, **kwargs):
    colours = images.mean(dim=(1, 2, 3))
    return gaussian_colours(float(colours.mean()), float(colours.std()), **kwargs)


def test_a_correct_prior_passes(train_images, capsys):
    assert check_flat_prior(gaussian_colours(0.0, 0.3)) is True
    assert check_flat_prior(fitted(train_images), reference=train_images) is True
    assert "Correct" in capsys.readouterr().out


def test_a_prior_on_the_global_rng_passes_and_the_global_state_is_left_alone(
    train_images,
):
    colours = train_images.mean(dim=(1, 2, 3))
    mu, sigma = float(colours.mean()), float(colours.std())
    state = torch.get_rng_state()
    assert check_flat_prior(
        lambda n: (
            (mu + sigma * torch.randn(n, 1, 1, 1)).clamp(-1, 1).expand(n, 1, 32, 32)
        ),
        reference=train_images,
    )
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("seed", range(20))
def test_the_missing_clamp_is_caught_whatever_the_seed(train_images, seed, capsys):
    """The issue's case: the fitted Gaussian without its clamp passed for 159 of 200 seeds (256 draws)."""
    assert (
        check_flat_prior(
            fitted(train_images, seed=seed, clamp=False), reference=train_images
        )
        is False
    )
    assert "clamp the colours" in capsys.readouterr().out


def _uniform(n):
    return (torch.rand(n, 1, 1, 1) * 2 - 1).expand(n, 1, 32, 32)


# The mutation table: a plausible wrong prior (given the training images), the words its
# message must contain.
MUTATIONS = [
    ("no channel axis", lambda images: lambda n: torch.zeros(n, 32, 32), "shape"),
    ("three channels", lambda images: fitted(images, channels=3), "shape"),
    (
        "integer colours",
        lambda images: lambda n: torch.zeros(n, 1, 32, 32, dtype=torch.long),
        "dtype",
    ),
    (
        "noise, not flat",
        lambda images: lambda n: torch.rand(n, 1, 32, 32) * 2 - 1,
        "not flat",
    ),
    (
        "one colour for all",
        lambda images: lambda n: torch.full((n, 1, 32, 32), -0.74),
        "same colour",
    ),
    ("no clamp", lambda images: fitted(images, clamp=False), "clamp the colours"),
    (
        "out of range",
        lambda images: lambda n: (torch.rand(n, 1, 1, 1) * 4 - 2).expand(n, 1, 32, 32),
        "[-1, 1]",
    ),
    ("NaN", lambda images: lambda n: torch.full((n, 1, 32, 32), float("nan")), "NaN"),
    ("uniform colours", lambda images: _uniform, "fit the mean"),
    (
        "colours in [0, 1]",
        lambda images: lambda n: torch.rand(n, 1, 1, 1).expand(n, 1, 32, 32),
        "fit the mean",
    ),
    (
        "the pixels' std",
        lambda images: gaussian_colours(float(images.mean()), float(images.std())),
        "spread of the pixels",
    ),
    (
        "the variance as std",
        lambda images: gaussian_colours(
            float(images.mean((1, 2, 3)).mean()), float(images.mean((1, 2, 3)).var())
        ),
        "variance",
    ),
    (
        "three times too wide",
        lambda images: gaussian_colours(
            float(images.mean((1, 2, 3)).mean()),
            3 * float(images.mean((1, 2, 3)).std()),
        ),
        "fit the spread",
    ),
]


@pytest.mark.parametrize(
    "make, hint", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_typical_mistakes_fail_with_a_useful_message(train_images, make, hint, capsys):
    assert check_flat_prior(make(train_images), reference=train_images) is False
    out = capsys.readouterr().out
    assert "Not yet" in out and hint in out, out


def test_without_a_reference_the_form_is_checked(capsys):
    assert check_flat_prior(gaussian_colours(0.0, 0.3, clamp=False)) is False
    assert "clamp" in capsys.readouterr().out
    assert check_flat_prior(lambda n: torch.rand(n, 1, 32, 32)) is False
    assert "not flat" in capsys.readouterr().out


def test_wrong_types_raise_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="prior"):
        check_flat_prior(torch.zeros(4, 1, 32, 32))
    with pytest.raises(ValueError, match="prior"):
        check_flat_prior(lambda n: [0.0] * n)
    with pytest.raises(ValueError, match="n must"):
        check_flat_prior(gaussian_colours(0, 0.3), n=4)
    with pytest.raises(ValueError, match="reference"):
        check_flat_prior(gaussian_colours(0, 0.3), reference=[1, 2])


def test_the_checker_is_fast(train_images):
    prior = fitted(train_images)
    check_flat_prior(prior, reference=train_images)
    start = time.process_time()
    check_flat_prior(prior, reference=train_images)
    assert time.process_time() - start < 1.0
