"""Snowification: an ImageNet-C-style snow layer, written in torch, that thickens with t.

The layer S_t is made of Gaussian noise (drawn once per image), zoomed to flake size, thresholded
(the threshold falls linearly with t, so more flakes appear) and motion-blurred along a random
direction (the streak length grows with t). As in the paper's code, a copy rotated by 180 degrees is
added too and the result clipped: x_t = clip(x0 + S_t + rot180(S_t)) in [0, 1] image units.
Each t is applied to x0 directly: snow is neither linear nor compositional.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..checks import is_number
from .base import Degradation, check_positive, draw


class Snow(Degradation, name="snow"):
    """Snow that thickens with t; reproducible under a seed through :meth:`freeze`.

    Args:
        T: number of steps (200 in the paper for CIFAR-10 and CelebA).
        flake_size: zoom of the noise field, in pixels per noise sample.
        threshold: (at t = 0, at t = T) thresholds on the N(loc, scale) noise field.
        max_streak: length in pixels of the motion blur at t = T (1 pixel at t = 0).
        loc, scale: mean and standard deviation of the noise field.
        channels: number of channels expected, or ``None``.

    Images are [B, C, H, W] in [-1, 1].
    """

    random = True

    def __init__(
        self,
        T: int = 200,
        flake_size: float = 1.5,
        threshold=(1.05, 0.45),
        max_streak: float = 6.0,
        loc: float = 0.05,
        scale: float = 0.3,
        channels: Optional[int] = None,
    ):
        super().__init__(T, channels)
        check_positive(flake_size, "flake_size", at_most=1000.0)
        # more noise samples than pixels: 4x for 0.5, and a 1e-300 would ask for 1e600
        if flake_size < 0.5:
            raise ValueError(
                f"flake_size must be at least 0.5 pixels, got {flake_size!r}"
            )
        # one shifted copy of the layer per pixel
        check_positive(max_streak, "max_streak", at_most=100.0)
        check_positive(scale, "scale", at_most=100.0)
        if not is_number(loc) or not -100 <= loc <= 100:
            raise ValueError(f"loc must be a number in [-100, 100], got {loc!r}")
        if (
            not isinstance(threshold, (list, tuple))
            or len(threshold) != 2
            or any(not is_number(v) or not math.isfinite(v) for v in threshold)
            or not threshold[0] >= threshold[1]
        ):
            raise ValueError(
                f"threshold must be a pair of numbers (at t=0, at t=T) that does not increase, got "
                f"{threshold!r}"
            )
        self.flake_size = float(flake_size)
        self.threshold = (float(threshold[0]), float(threshold[1]))
        self.max_streak = float(max_streak)
        self.loc = float(loc)
        self.scale = float(scale)
        # [B, 1, H, W] zoomed noise, set by freeze()
        self.field: Optional[torch.Tensor] = None
        self.angle: Optional[torch.Tensor] = None  # [B] radians

    def freeze_state(self, like, generator):
        B, _, H, W = like.shape
        h, w = (
            max(1, math.ceil(H / self.flake_size)),
            max(1, math.ceil(W / self.flake_size)),
        )
        noise = (
            draw("randn", (B, 1, h, w), generator, like.device) * self.scale + self.loc
        )
        field = F.interpolate(noise, size=(H, W), mode="bilinear", align_corners=False)
        angle = (draw("rand", (B,), generator, like.device) * 90 - 135) * math.pi / 180
        return {"field": field, "angle": angle}

    def snow_layer(
        self, field: torch.Tensor, angle: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """S_t for noise fields [B, 1, H, W], angles [B] and levels t [B]: [B, 1, H, W] in [0, inf)."""
        frac = (t.to(field.dtype) / self.T).view(-1, 1, 1, 1)
        thr = self.threshold[0] + (self.threshold[1] - self.threshold[0]) * frac
        flakes = torch.where(field > thr, field, torch.zeros_like(field))
        # Motion blur: a weighted mean of copies shifted along the streak direction.
        length = 1 + (self.max_streak - 1) * frac.view(-1)  # [B] pixels
        n_shift = int(math.ceil(float(length.max())))
        B, _, H, W = field.shape
        theta = torch.zeros(B, 2, 3, dtype=field.dtype, device=field.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        out = torch.zeros_like(flakes)
        total = torch.zeros(B, 1, 1, 1, dtype=field.dtype, device=field.device)
        for k in range(n_shift):
            # [B]
            weight = torch.exp(-(k**2) / (2 * (length / 2) ** 2)) * (k < length)
            shifted = flakes
            if k:
                th = theta.clone()  # translate by k pixels (grid units are 2 / size)
                th[:, 0, 2] = k * torch.cos(angle) * 2 / W
                th[:, 1, 2] = k * torch.sin(angle) * 2 / H
                grid = F.affine_grid(th, list(flakes.shape), align_corners=False)
                shifted = F.grid_sample(
                    flakes,
                    grid,
                    mode="bilinear",
                    padding_mode="zeros",
                    align_corners=False,
                )
            out = out + weight.view(-1, 1, 1, 1) * shifted
            total = total + weight.view(-1, 1, 1, 1)
        return out / total

    def degrade(self, x0, t):
        state = {"field": self.field, "angle": self.angle}
        if self.field is None:
            state = self.freeze_state(x0, None)
        field = state["field"].to(device=x0.device, dtype=torch.float32)
        if field.shape[-2:] != x0.shape[-2:] or field.shape[0] != x0.shape[0]:
            raise ValueError(
                f"the frozen snow field has shape {tuple(field.shape)}, images have {tuple(x0.shape)}"
            )
        layer = self.snow_layer(field, state["angle"].to(x0.device, torch.float32), t)
        layer = layer + torch.flip(layer, dims=(-2, -1))  # the 180-degree-rotated copy
        x01 = (x0.float() + 1) / 2
        return ((x01 + layer).clamp(0, 1) * 2 - 1).to(x0.dtype)
