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

from ..checks import is_number
from ..runtime import resolve_device
from .base import Degradation, as_time_tensor, check_images, draw, per_sample


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
        if not is_number(s) or not 0 <= s <= 1:  # NaN fails too
            raise ValueError(
                f"s must be a number in [0, 1] (the cosine schedule's offset, 0.008 in the paper), "
                f"got {s!r}"
            )
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

    def noise_schedule(self):
        """``(sqrt(abar) [T + 1], sqrt(1 - abar) [T + 1])``: D(x0, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) z."""
        return self.alpha_bar.sqrt(), (1 - self.alpha_bar).sqrt()

    def clean(self, x0, t):
        """sqrt(abar_t) x0 [B, C, H, W]: D without its second signal."""
        t = as_time_tensor(t, x0.shape[0], self.T, x0.device)
        return per_sample(self.alpha_bar, t, x0).sqrt() * x0

    def fresh_noise(self, like, generator=None):
        """A new second signal z shaped like ``like`` (noise, or blend targets)."""
        return self.draw_source(like, generator)

    def degrade(self, x0, t):
        z = self.source if self.source is not None else self.draw_source(x0, None)
        if z.shape != x0.shape:
            raise ValueError(
                f"the frozen source has shape {tuple(z.shape)} but x0 has shape {tuple(x0.shape)}"
            )
        a = per_sample(self.alpha_bar, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * z.to(device=x0.device, dtype=x0.dtype)


class GaussianNoise(Mixing, name="noise"):
    """The hot baseline: ``D(x0, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) z``, z ~ N(0, I).

    Args:
        T: number of steps (200 in the paper).
        s: offset of the cosine schedule.
        channels: number of channels expected, or ``None``.
    """

    def draw_source(self, like, generator):
        return draw("randn", like.shape, generator, like.device).to(like.dtype)

    def prior(
        self, n: int, shape: Sequence[int], generator=None, device="cpu"
    ) -> torch.Tensor:
        """Standard Gaussian noise [n, C, H, W] (D(x0, T) is exactly z)."""
        return draw("randn", (n, *shape), generator, device)


class Blend(Mixing, name="blend"):
    """Animorphosis: ``D(x0, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) y`` toward images y of a second set.

    Args:
        targets: the second set: a source name (``"lfw"``, the offline faces of
            :func:`colddiff_lib.data.blend_targets`), loaded at the size and channels of the images
            it meets, so the degradation saves and rebuilds from its config; or a tensor
            [M, C, H, W] in [-1, 1] (works the same, but cannot be saved in a checkpoint).
            Each image draws one target uniformly.
        T: number of steps (200 in the paper).
        s: offset of the cosine schedule.
        channels: number of channels expected, or ``None``.
    """

    def __init__(
        self,
        targets="lfw",
        T: int = 200,
        s: float = 0.008,
        channels: Optional[int] = None,
    ):
        if isinstance(targets, torch.Tensor):
            check_images(targets, "targets", channels)
        else:
            from ..data import BLEND_SOURCES

            if not isinstance(targets, str) or targets not in BLEND_SOURCES:
                raise ValueError(
                    f"targets must be a tensor [M, C, H, W] or one of {list(BLEND_SOURCES)}, "
                    f"got {targets!r}"
                )
        super().__init__(T, s, channels)
        self._targets = targets
        self._resolved: dict = {}  # (C, H, W) -> targets loaded from a source name

    @classmethod
    def upgrade_config(cls, config: dict, stored: dict) -> dict:
        """Files written before a Blend's config named its targets kept their source beside it, as the
        checkpoint's or card's ``blend_targets``; the config takes it (``"lfw"`` when neither says)."""
        if "targets" not in config:
            config = {
                **config,
                "targets": ((stored or {}).get("blend_targets") or {}).get(
                    "source", "lfw"
                ),
            }
        return config

    def targets_like(self, shape: Sequence[int]) -> torch.Tensor:
        """The target images [M, C, H, W] for images of shape ``shape`` = (C, H, W)."""
        C, H, W = (int(v) for v in shape)
        if isinstance(self._targets, torch.Tensor):
            if tuple(self._targets.shape[1:]) != (C, H, W):
                raise ValueError(
                    f"images of shape {(C, H, W)} cannot blend toward targets of shape "
                    f"{tuple(self._targets.shape[1:])}"
                )
            return self._targets
        if H != W:
            raise ValueError(
                f"targets {self._targets!r} are square images; got images of shape {(C, H, W)}"
            )
        if (C, H, W) not in self._resolved:
            from ..data import blend_targets

            self._resolved[(C, H, W)] = blend_targets(
                self._targets, image_size=H, channels=C
            )
        return self._resolved[(C, H, W)]

    @property
    def targets(self) -> torch.Tensor:
        """The target images at the size of the data this degradation is built for (32 px, or the tensor)."""
        if isinstance(self._targets, torch.Tensor):
            return self._targets
        return self.targets_like((self.channels or 1, 32, 32))

    def draw_source(self, like, generator):
        targets = self.targets_like(like.shape[1:])
        idx = (
            draw("rand", (like.shape[0],), generator, targets.device) * len(targets)
        ).long()
        return targets[idx.clamp_max(len(targets) - 1)].to(
            device=like.device, dtype=like.dtype
        )

    def prior(
        self, n: int, shape: Sequence[int], generator=None, device="cpu"
    ) -> torch.Tensor:
        """Random target images [n, C, H, W]: animorphosis starts from an image of the second set."""
        targets = self.targets_like(shape)
        idx = torch.randint(len(targets), (n,), generator=generator)
        return targets[idx].to(resolve_device(device))
