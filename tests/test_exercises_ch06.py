"""Chapter 6's checker: a flat-colour prior for generation from the collapsed blur."""

import pytest
import torch

from colddiff_lib.exercises.ch06 import check_flat_prior


def gaussian_colours(mean, std, seed=0):
    def prior(n):
        g = torch.Generator().manual_seed(seed)
        c = (mean + std * torch.randn(n, 1, 1, 1, generator=g)).clamp(-1, 1)
        return c.expand(n, 1, 32, 32).contiguous()
    return prior


@pytest.fixture(scope="module")
def train_images():
    # Stand-ins for digits: grey images with a bright square of random size.
    g = torch.Generator().manual_seed(1)
    x = torch.full((400, 1, 32, 32), -0.5)
    sizes = torch.randint(6, 16, (400,), generator=g)
    for i, s in enumerate(sizes.tolist()):
        x[i, :, 8:8 + s, 8:8 + s] = 1.0
    return x


def test_a_correct_prior_passes(train_images, capsys):
    assert check_flat_prior(gaussian_colours(0.0, 0.3)) is True
    colours = train_images.mean(dim=(1, 2, 3))
    fitted = gaussian_colours(float(colours.mean()), float(colours.std()))
    assert check_flat_prior(fitted, reference=train_images) is True
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("prior, hint", [
    (lambda n: torch.zeros(n, 32, 32), "shape"),
    (lambda n: torch.zeros(n, 1, 32, 32, dtype=torch.long), "dtype"),
    (lambda n: torch.rand(n, 1, 32, 32) * 2 - 1, "not flat"),
    (lambda n: torch.full((n, 1, 32, 32), 0.2), "same colour"),
    (lambda n: (torch.rand(n, 1, 1, 1) * 4 - 2).expand(n, 1, 32, 32), "[-1, 1]"),
    (lambda n: torch.full((n, 1, 32, 32), float("nan")), "NaN"),
])
def test_typical_mistakes_fail_with_a_useful_message(prior, hint, capsys):
    assert check_flat_prior(prior) is False
    out = capsys.readouterr().out
    assert "Not yet" in out and hint in out


def test_a_prior_that_ignores_the_data_fails_against_a_reference(train_images, capsys):
    uniform = lambda n: (torch.rand(n, 1, 1, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1).expand(
        n, 1, 32, 32)
    assert check_flat_prior(uniform, reference=train_images) is False
    assert "fit the mean" in capsys.readouterr().out
    colours = train_images.mean(dim=(1, 2, 3))
    too_wide = gaussian_colours(float(colours.mean()), 3 * float(colours.std()))
    assert check_flat_prior(too_wide, reference=train_images) is False
    assert "spread" in capsys.readouterr().out


def test_wrong_types_raise_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="prior"):
        check_flat_prior(torch.zeros(4, 1, 32, 32))
    with pytest.raises(ValueError, match="prior"):
        check_flat_prior(lambda n: [0.0] * n)
    with pytest.raises(ValueError, match="n must"):
        check_flat_prior(gaussian_colours(0, 0.3), n=4)
    with pytest.raises(ValueError, match="reference"):
        check_flat_prior(gaussian_colours(0, 0.3), reference=[1, 2])
