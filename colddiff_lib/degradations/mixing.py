"""Mixing toward a second signal: Gaussian noise (the "hot" baseline) and blending (animorphosis).

Both are ``D(x0, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) z`` with the cosine schedule of
Nichol & Dhariwal (s = 0.008), where z is Gaussian noise for :class:`GaussianNoise` and an image
of another set (an animal face in the paper) for :class:`Blend`. z is drawn per image and kept
fixed by :meth:`~colddiff_lib.degradations.Degradation.freeze`, as Algorithm 2 requires.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .base import Degradation, check_images, draw, per_sample


def cosine_alpha_bar(T: int, s: float = 0.008) -> torch.Tensor:
    """abar_t for t = 0..T: [T + 1] float64, abar_0 = 1, abar_T = 0 (up to rounding)."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    abar[-1] = 0.0
    return abar.clamp(0, 1)


class Mixing(Degradation):
    """Base of the mixing degradations; subclasses say how to draw z (:meth:`draw_source`)."""

    random = True

    def __init__(self, T: int = 200, s: float = 0.008, channels: Optional[int] = None):
        super().__init__(T, channels)
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
            raise ValueError(f"s must be a non-negative number, got {s!r}")
        self.s = float(s)
        self.alpha_bar = cosine_alpha_bar(T, self.s)
        self.source: Optional[torch.Tensor] = None  # z [B, C, H, W], set by freeze()

    def draw_source(self, like: torch.Tensor, generator) -> torch.Tensor:
        raise NotImplementedError

    def freeze_state(self, like, generator):
        return {"source": self.draw_source(like, generator)}

    def freeze_to(self, x_T: torch.Tensor) -> "Mixing":
        """A copy frozen so that D(x0, T) == x_T for every x0 (z = x_T): the generation start."""
        check_images(x_T, "x_T", self.channels)
        frozen = self.freeze(x_T)
        frozen.source = x_T
        return frozen

    def degrade(self, x0, t):
        z = self.source if self.source is not None else self.draw_source(x0, None)
        if z.shape != x0.shape:
            raise ValueError(f"the frozen source has shape {tuple(z.shape)} but x0 has shape {tuple(x0.shape)}")
        a = per_sample(self.alpha_bar, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * z.to(device=x0.device, dtype=x0.dtype)


class GaussianNoise(Mixing):
    """The hot baseline: ``D(x0, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) z``, z ~ N(0, I).

    Args:
        T: number of steps (200 in the paper).
        s: offset of the cosine schedule.
        channels: number of channels expected, or ``None``.
    """

    def config(self) -> dict:
        return dict(name="noise", T=self.T, s=self.s, channels=self.channels)

    def draw_source(self, like, generator):
        return draw("randn", like.shape, generator, like.device).to(like.dtype)

    def prior(self, n: int, shape: Sequence[int], generator=None, device="cpu") -> torch.Tensor:
        """Standard Gaussian noise [n, C, H, W] (D(x0, T) is exactly z)."""
        return draw("randn", (n, *shape), generator, device)


class Blend(Mixing):
    """Animorphosis: ``D(x0, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) y`` toward images y of a second set.

    Args:
        targets: the second set, [M, C, H, W] in [-1, 1]; each image draws one uniformly.
        T: number of steps (200 in the paper).
        s: offset of the cosine schedule.
    """

    def __init__(self, targets: torch.Tensor, T: int = 200, s: float = 0.008, channels: Optional[int] = None):
        check_images(targets, "targets", channels)
        super().__init__(T, s, channels)
        self.targets = targets

    def config(self) -> dict:
        return dict(name="blend", T=self.T, s=self.s, channels=self.channels)

    def _check_target_shape(self, like):
        if like.shape[1:] != self.targets.shape[1:]:
            raise ValueError(f"images of shape {tuple(like.shape[1:])} cannot blend toward targets of shape "
                             f"{tuple(self.targets.shape[1:])}")

    def draw_source(self, like, generator):
        self._check_target_shape(like)
        idx = (draw("rand", (like.shape[0],), generator, self.targets.device) * len(self.targets)).long()
        return self.targets[idx.clamp_max(len(self.targets) - 1)].to(device=like.device, dtype=like.dtype)

    def prior(self, n: int, shape: Sequence[int], generator=None, device="cpu") -> torch.Tensor:
        """Random target images [n, C, H, W]: animorphosis starts from an image of the second set."""
        if tuple(shape) != tuple(self.targets.shape[1:]):
            raise ValueError(f"shape must be the targets' shape {tuple(self.targets.shape[1:])}, got {tuple(shape)}")
        idx = torch.randint(len(self.targets), (n,), generator=generator)
        return self.targets[idx].to(device)
