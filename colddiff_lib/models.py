"""The restoration network R_theta(x_t, t) ~ x0: a time-conditioned U-Net.

A compact DDPM-style U-Net: sinusoidal time embedding, residual blocks with GroupNorm whose
features are scaled and shifted by the time embedding, optional self-attention at low resolution,
strided-convolution downsampling and nearest-neighbour upsampling with skip connections.
Sizes come from presets (:data:`PRESETS`): ``tiny`` and ``web`` train on a CPU, ``cpu`` is the zoo's, and
``paper`` is near the paper's CIFAR-10 network in size and smaller than its MNIST one (``paper.toml`` gives
both; :func:`count_parameters` counts a preset).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_int, is_int, is_number
from .degradations.base import as_time_tensor

PRESETS = {
    # name: dim, dim_mults, num_blocks, attention at the lowest resolution(s)
    "tiny": dict(dim=16, dim_mults=(1, 2, 2), num_blocks=1, attn_levels=()),
    "small": dict(dim=32, dim_mults=(1, 2, 2), num_blocks=2, attn_levels=(2,)),
    "base": dict(dim=64, dim_mults=(1, 2, 2), num_blocks=2, attn_levels=(2,)),
    "paper": dict(dim=128, dim_mults=(1, 2, 2, 2), num_blocks=2, attn_levels=(1,)),
    # CPU presets: a space-to-depth stem (patch 2) runs the U-Net on 16 x 16 maps of 4C
    # channels, a quarter of the full-resolution FLOPs, which at 32 px costs little
    # quality (benchmarks/README.md).
    "cpu": dict(dim=32, dim_mults=(1, 2, 2), num_blocks=1, attn_levels=(), patch=2),
    "cpu-wide": dict(
        dim=48, dim_mults=(1, 2, 2), num_blocks=2, attn_levels=(), patch=2
    ),
    # The in-page sampler's network (colddiff_lib.export): the cpu preset at half the
    # width, 31 MFLOP a call, so that T = 20 steps of Algorithm 2 run in well under 200
    # ms in a browser's WebAssembly.
    "web": dict(dim=16, dim_mults=(1, 2, 2), num_blocks=1, attn_levels=(), patch=2),
}


# : The parameter budget: a model config asking for more is refused before anything is
# allocated (the : ``paper`` preset has 38M; a checkpoint's ``dim = 200000`` would ask
# for tens of billions).
MAX_PARAMETERS = 200_000_000
# : Bounds on the constructor's sizes, so that even counting the parameters (on the meta
# device) is quick.
LIMITS = {
    "channels": 64,
    "dim": 4096,
    "num_blocks": 32,
    "patch": 16,
    "levels": 8,
    "dim_mult": 64,
    "groups": 1024,
}


def sinusoidal_embedding(
    t: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """Embed levels ``t`` (LongTensor[B]) as [B, dim] sines and cosines of geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, device=t.device, dtype=torch.float32)
        / half
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def _groups(channels: int, groups: int) -> int:
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, the second normalisation modulated by the time embedding."""

    def __init__(
        self, cin: int, cout: int, temb_dim: int, groups: int = 8, dropout: float = 0.0
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin, groups), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(temb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout, groups), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a low-resolution feature map."""

    def __init__(self, channels: int, heads: int = 4, groups: int = 8):
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = (
            self.qkv(self.norm(x))
            .reshape(B, 3, self.heads, C // self.heads, H * W)
            .unbind(1)
        )
        h = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """Time-conditioned U-Net: ``model(x_t, t) -> x0 estimate``.

    Args:
        channels: image channels C (input and output).
        dim: feature width of the first level.
        dim_mults: width multiplier of each level; images must be divisible by 2^(levels - 1).
        num_blocks: residual blocks per level.
        attn_levels: levels (0 = full resolution) that get self-attention; the middle always
            does when any level does.
        dropout: dropout rate inside the residual blocks.
        groups: GroupNorm groups.
        patch: space-to-depth factor of the stem: the image [B, C, H, W] enters as
            [B, C * patch^2, H / patch, W / patch] (pixel unshuffle) and leaves through the inverse
            (pixel shuffle); 1 keeps full resolution.

    Forward: ``x`` [B, C, H, W] in [-1, 1], ``t`` int or LongTensor[B] -> [B, C, H, W].
    """

    def __init__(
        self,
        channels: int = 1,
        dim: int = 32,
        dim_mults: Sequence[int] = (1, 2, 2),
        num_blocks: int = 2,
        attn_levels: Sequence[int] = (),
        dropout: float = 0.0,
        groups: int = 8,
        patch: int = 1,
    ):
        super().__init__()
        check_config(
            channels=channels,
            dim=dim,
            dim_mults=dim_mults,
            num_blocks=num_blocks,
            attn_levels=attn_levels,
            dropout=dropout,
            groups=groups,
            patch=patch,
        )
        self._config = dict(
            channels=channels,
            dim=dim,
            dim_mults=tuple(dim_mults),
            num_blocks=num_blocks,
            attn_levels=tuple(attn_levels),
            dropout=float(dropout),
            groups=groups,
            patch=patch,
        )
        # the budget, counted on the meta device before a single weight is allocated
        if not _COUNTING:
            n = parameter_count(self._config)
            if n > MAX_PARAMETERS:
                raise ValueError(
                    f"this model config has {n:,} parameters ({n * 4 / 2**30:.1f} GiB of float32 "
                    f"weights), more than the budget of {MAX_PARAMETERS:,}: lower dim, dim_mults or "
                    f"num_blocks"
                )
        self.channels = channels
        self.levels = len(dim_mults)
        self.patch = patch
        temb = 4 * dim
        self.time_mlp = nn.Sequential(
            nn.Linear(dim, temb), nn.SiLU(), nn.Linear(temb, temb)
        )
        self.conv_in = nn.Conv2d(channels * patch**2, dim, 3, padding=1)

        widths = [dim * m for m in dim_mults]
        self.down = nn.ModuleList()
        skips = [dim]
        cin = dim
        for level, w in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_blocks):
                blocks.append(ResBlock(cin, w, temb, groups, dropout))
                blocks.append(
                    Attention(w, groups=groups)
                    if level in attn_levels
                    else nn.Identity()
                )
                cin = w
                skips.append(w)
            down = (
                nn.Conv2d(w, w, 3, stride=2, padding=1)
                if level < self.levels - 1
                else nn.Identity()
            )
            if level < self.levels - 1:
                skips.append(w)
            self.down.append(nn.ModuleDict(dict(blocks=blocks, down=down)))

        self.mid1 = ResBlock(cin, cin, temb, groups, dropout)
        self.mid_attn = Attention(cin, groups=groups) if attn_levels else nn.Identity()
        self.mid2 = ResBlock(cin, cin, temb, groups, dropout)

        self.up = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(num_blocks + 1):
                blocks.append(ResBlock(cin + skips.pop(), w, temb, groups, dropout))
                blocks.append(
                    Attention(w, groups=groups)
                    if level in attn_levels
                    else nn.Identity()
                )
                cin = w
            up = (
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(w, w, 3, padding=1),
                )
                if level > 0
                else nn.Identity()
            )
            self.up.append(nn.ModuleDict(dict(blocks=blocks, up=up)))

        self.norm_out = nn.GroupNorm(_groups(cin, groups), cin)
        self.conv_out = nn.Conv2d(cin, channels * patch**2, 3, padding=1)

    @classmethod
    def from_preset(cls, name: str, channels: int = 1, **overrides) -> "UNet":
        """Build the preset ``name``, optionally overriding arguments (``overrides``: any UNet argument).

        The presets (:data:`PRESETS`): ``tiny`` (the tests'), ``small``, ``base``, ``paper`` (the paper's
        width, 38M parameters), ``cpu`` and ``cpu-wide`` (a space-to-depth stem, patch 2: the zoo's CPU
        models) and ``web`` (the cpu preset at half the width: the book's in-page sampler)."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {name!r}")
        return cls(channels=channels, **{**PRESETS[name], **overrides})

    def config(self) -> dict:
        """The constructor arguments: ``UNet(**model.config())`` rebuilds the architecture."""
        return dict(self._config)

    def _check(self, x: torch.Tensor, t) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(
                f"x must be a tensor [B, C, H, W], got shape {tuple(getattr(x, 'shape', ()))}"
            )
        weight = self.conv_in.weight
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"x has dtype {x.dtype} but the model's weights are {weight.dtype}: convert one to the "
                f"other (x.to({weight.dtype}) or model.to({x.dtype}))"
            )
        if x.shape[1] != self.channels:
            raise ValueError(
                f"x has {x.shape[1]} channels but the model was built with channels={self.channels}"
            )
        f = self.patch * 2 ** (self.levels - 1)
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"image height and width must be divisible by {f} for {self.levels} levels "
                f"and patch {self.patch}, got {tuple(x.shape[-2:])}"
            )
        # the degradations' rules for t
        return as_time_tensor(t, x.shape[0], None, x.device)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = self._check(x, t)
        temb = self.time_mlp(
            sinusoidal_embedding(t, self.conv_in.out_channels).to(x.dtype)
        )
        x_in = F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x
        # The stem runs in the input's precision even under bf16 autocast: a heavily
        # blurred digit differs from its flat mean by about 0.01, which bf16 (8 bits of
        # mantissa) rounds away when it rides on the mean.
        with torch.autocast(x.device.type, enabled=False):
            h = self.conv_in(x_in)
        hs = [h]
        for stage in self.down:
            for i in range(0, len(stage["blocks"]), 2):
                h = stage["blocks"][i + 1](stage["blocks"][i](h, temb))
                hs.append(h)
            if not isinstance(stage["down"], nn.Identity):
                h = stage["down"](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for stage in self.up:
            for i in range(0, len(stage["blocks"]), 2):
                h = stage["blocks"][i + 1](
                    stage["blocks"][i](torch.cat([h, hs.pop()], dim=1), temb)
                )
            h = stage["up"](h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


_COUNTING = False


def check_config(
    channels=1,
    dim=32,
    dim_mults=(1, 2, 2),
    num_blocks=2,
    attn_levels=(),
    dropout=0.0,
    groups=8,
    patch=1,
) -> None:
    """Check the :class:`UNet` arguments' types and ranges (ValueError naming the argument); no budget."""
    check_int(channels, "channels", 1, LIMITS["channels"])
    check_int(dim, "dim", 1, LIMITS["dim"])
    check_int(num_blocks, "num_blocks", 1, LIMITS["num_blocks"])
    check_int(patch, "patch", 1, LIMITS["patch"])
    # 0 would divide by zero in GroupNorm's group count
    check_int(groups, "groups", 1, LIMITS["groups"])
    if (
        not isinstance(dim_mults, (list, tuple))
        or not 1 <= len(dim_mults) <= LIMITS["levels"]
        or any(not is_int(m) or not 1 <= m <= LIMITS["dim_mult"] for m in dim_mults)
    ):
        raise ValueError(
            f"dim_mults must be a list of 1 to {LIMITS['levels']} ints in 1..{LIMITS['dim_mult']}, "
            f"got {dim_mults!r}"
        )
    if not isinstance(attn_levels, (list, tuple)) or any(
        not is_int(level) or level not in range(len(dim_mults)) for level in attn_levels
    ):
        raise ValueError(
            f"attn_levels must be level indices in 0..{len(dim_mults) - 1}, got {attn_levels!r}"
        )
    if not is_number(dropout) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")


def parameter_count(config: dict) -> int:
    """The number of parameters of ``UNet(**config)``, counted on the meta device (nothing is allocated)."""
    global _COUNTING
    check_config(**config)
    before, _COUNTING = _COUNTING, True
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in UNet(**config).parameters())
    finally:
        _COUNTING = before


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
