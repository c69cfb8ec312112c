"""Tests for colddiff_lib.models: the time-conditioned U-Net R_theta(x_t, t)."""

import pytest
import torch

from colddiff_lib.models import PRESETS, UNet, count_parameters, sinusoidal_embedding


pytestmark = pytest.mark.usefixtures("single_thread")


def _images(b=2, c=1, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32)])
def test_output_shape_equals_input_shape(preset, channels, size):
    torch.manual_seed(0)
    m = UNet.from_preset(preset, channels=channels).eval()
    x = _images(2, channels, size)
    with torch.no_grad():
        y = m(x, torch.tensor([1, 5]))
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_non_square_images_keep_shape():
    m = UNet.from_preset("tiny").eval()
    x = torch.zeros(1, 1, 16, 24)
    with torch.no_grad():
        assert m(x, 3).shape == (1, 1, 16, 24)


def test_parameter_counts_of_presets():
    counts = {name: count_parameters(UNet.from_preset(name)) for name in PRESETS}
    assert counts["tiny"] < 1_000_000
    assert counts["paper"] > 30_000_000
    # Presets grow in size.
    assert counts["tiny"] < counts["small"] < counts["base"] < counts["paper"]
    # count_parameters counts only trainable parameters.
    m = UNet.from_preset("tiny")
    m.conv_in.requires_grad_(False)
    frozen = sum(p.numel() for p in m.conv_in.parameters())
    assert count_parameters(m) == counts["tiny"] - frozen


def test_int_and_tensor_t_give_the_same_output():
    torch.manual_seed(0)
    m = UNet.from_preset("tiny").eval()
    x = _images(3)
    with torch.no_grad():
        a = m(x, 7)
        b = m(x, torch.full((3,), 7, dtype=torch.long))
    assert torch.equal(a, b)


def test_time_conditioning_changes_the_output():
    torch.manual_seed(0)
    m = UNet.from_preset("tiny").eval()
    # Fresh ResBlocks have random time projections, so t matters even before training.
    x = _images(2)
    with torch.no_grad():
        y1 = m(x, 1)
        y20 = m(x, 20)
        mixed = m(x, torch.tensor([1, 20]))
    assert (y1 - y20).abs().max() > 1e-4
    # Each image is conditioned on its own t.
    assert torch.allclose(mixed[0], y1[0], atol=1e-5)
    assert torch.allclose(mixed[1], y20[1], atol=1e-5)


def test_batch_elements_are_independent():
    torch.manual_seed(0)
    m = UNet.from_preset("tiny").eval()
    x = _images(4)
    t = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        full = m(x, t)
        single = m(x[2:3], t[2:3])
    assert torch.allclose(full[2:3], single, atol=1e-5)


def test_sinusoidal_embedding_shape_and_odd_dim():
    t = torch.tensor([0, 1, 10])
    e = sinusoidal_embedding(t, 16)
    assert e.shape == (3, 16)
    # t = 0: sines 0, cosines 1.
    assert torch.allclose(e[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    assert sinusoidal_embedding(t, 7).shape == (3, 7)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_config_rebuilds_identical_architecture(preset):
    torch.manual_seed(0)
    m = UNet.from_preset(preset, channels=3, dropout=0.0).eval()
    torch.manual_seed(1)
    rebuilt = UNet(**m.config()).eval()
    assert rebuilt.config() == m.config()
    rebuilt.load_state_dict(m.state_dict(), strict=True)
    x = _images(2, 3, 16)
    with torch.no_grad():
        assert torch.equal(m(x, 4), rebuilt(x, 4))
    assert count_parameters(rebuilt) == count_parameters(m)


def test_config_is_a_copy():
    m = UNet.from_preset("tiny")
    cfg = m.config()
    cfg["dim"] = 999
    assert m.config()["dim"] == PRESETS["tiny"]["dim"]


def test_preset_overrides_apply():
    m = UNet.from_preset("tiny", dim=8)
    assert m.config()["dim"] == 8
    assert m.config()["dim_mults"] == PRESETS["tiny"]["dim_mults"]


# ------------------------------------------------------------------ errors
@pytest.fixture(scope="module")
def tiny():
    return UNet.from_preset("tiny").eval()


def test_wrong_rank_input(tiny):
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        tiny(torch.zeros(1, 16, 16), 1)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        tiny(torch.zeros(1, 1, 1, 16, 16), 1)


def test_channel_mismatch(tiny):
    with pytest.raises(ValueError, match="3 channels.*channels=1"):
        tiny(torch.zeros(2, 3, 16, 16), 1)


def test_image_size_not_divisible(tiny):
    # tiny has 3 levels: sizes must be divisible by 4.
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny(torch.zeros(1, 1, 18, 16), 1)
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny(torch.zeros(1, 1, 16, 14), 1)


def test_bad_preset_name():
    with pytest.raises(ValueError, match="preset must be one of.*'huge'"):
        UNet.from_preset("huge")


@pytest.mark.parametrize(
    "t",
    [
        torch.tensor([1, 2, 3]),
        torch.tensor([[1], [2]]),
        torch.tensor([1.0, 2.0]),
        "1",
        1.5,
    ],
)
def test_t_of_wrong_shape_or_type(tiny, t):
    # The network takes t by the degradations' rules (degradations.base.as_time_tensor),
    # without a range.
    with pytest.raises(
        ValueError, match="t must (be an int or a LongTensor|hold integers)"
    ):
        tiny(torch.zeros(2, 1, 16, 16), t)


def test_t_as_int_or_scalar_tensor_is_broadcast(tiny):
    x = torch.zeros(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(tiny(x, 3), tiny(x, torch.tensor(3))) and torch.equal(
            tiny(x, 3), tiny(x, torch.tensor([3, 3]))
        )


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(channels=0), "channels"),
        (dict(dim=0), "dim"),
        (dict(num_blocks=True), "num_blocks"),
        (dict(dim_mults=()), "dim_mults"),
        (dict(dim_mults=(1, 0)), "dim_mults"),
        (dict(attn_levels=(5,)), "attn_levels"),
    ],
)
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        UNet(**kwargs)
