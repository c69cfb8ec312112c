"""Super-resolution: halve the resolution at every step.

D(x0, t) downsamples x0 to N / 2^t pixels a side and upsamples back to N with nearest neighbours,
so a 32 px image becomes blocks of 2, 4, 8 pixels (16, 8, 4 px of information). With ``"area"``
downsampling the steps compose exactly (the mean of block means is the block mean).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .base import Degradation, check_choice, draw

MODES = ("area", "bicubic")


class SuperResolution(Degradation, name="superres"):
    """Halve the resolution each step: ``D(x0, t) = up_nearest(down(x0, N / 2^t))``.

    Args:
        T: number of halvings; images must be divisible by 2^T (T = 3 takes 32 px to 4 px).
        mode: ``"area"`` (block means; compositional) or ``"bicubic"`` (antialiased).
        channels: number of channels expected, or ``None``.

    Images are [B, C, H, W] in [-1, 1]; linear.
    """

    linear = True

    def __init__(self, T: int = 3, mode: str = "area", channels: Optional[int] = None):
        super().__init__(T, channels)
        check_choice(mode, "mode", MODES)
        self.mode = mode
        self.compositional = mode == "area"

    def _check_size(self, x: torch.Tensor) -> None:
        H, W = x.shape[-2:]
        f = 2**self.T
        if H % f or W % f:
            raise ValueError(
                f"images must be divisible by 2^T = {f} pixels for T = {self.T}, got {H} x {W}"
            )

    def _down_up(self, x: torch.Tensor, level: int) -> torch.Tensor:
        if level == 0:
            return x
        H, W = x.shape[-2:]
        f = 2**level
        if self.mode == "area":
            low = F.avg_pool2d(x, f)
        else:
            low = F.interpolate(
                x,
                size=(H // f, W // f),
                mode="bicubic",
                antialias=True,
                align_corners=False,
            )
        return F.interpolate(low, scale_factor=f, mode="nearest")

    def degrade(self, x0, t):
        self._check_size(x0)
        out = torch.empty_like(x0)
        for level in t.unique().tolist():
            sel = t == level
            out[sel] = self._down_up(x0[sel], level)
        return out

    def step_op(self, x, t):
        # area means of block means: one halving applied to x_{t-1}
        return self.degrade(x, t)

    def axis_matrices(self, n: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
        """Block means then nearest upsampling along one axis (``"area"`` mode): ``M_t[i, j] = 2^-t`` where
        i and j share a block of 2^t pixels. [T + 1, n, n]."""
        if self.mode != "area":
            raise NotImplementedError(
                f"superres mode {self.mode!r} has no axis_matrices (only 'area' is a block mean)"
            )
        i = torch.arange(n)
        mats = [
            ((i.view(-1, 1) // 2**t) == (i.view(1, -1) // 2**t)).double() / 2**t
            for t in range(self.T + 1)
        ]
        return torch.stack(mats).to(device=device, dtype=dtype)

    @property
    def export_form(self):
        """``"separable"`` with ``"area"`` downsampling (block means, :meth:`axis_matrices`), else None."""
        return "separable" if self.mode == "area" else None

    def low_resolution(self, x: torch.Tensor) -> torch.Tensor:
        """The N / 2^T image that x_T [B, C, H, W] is made of: [B, C, H / 2^T, W / 2^T]."""
        f = 2**self.T
        return x[..., ::f, ::f]

    def latent(self, x_T: torch.Tensor) -> torch.Tensor:
        return self.low_resolution(x_T).flatten(1)

    def from_latent(self, z: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        C, H, W = shape
        f = 2**self.T
        return F.interpolate(
            z.view(-1, C, H // f, W // f), scale_factor=f, mode="nearest"
        )

    def prior(
        self, n: int, shape: Sequence[int], generator=None, device="cpu"
    ) -> torch.Tensor:
        """A random (N / 2^T)-pixel image, uniform in [-1, 1], upsampled: [n, C, H, W]."""
        C, H, W = shape
        f = 2**self.T
        if H % f or W % f:
            raise ValueError(
                f"shape must be divisible by 2^T = {f} pixels, got {H} x {W}"
            )
        z = draw("rand", (n, C * (H // f) * (W // f)), generator, device) * 2 - 1
        return self.from_latent(z, shape)
