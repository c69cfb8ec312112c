"""A cold degradation with a little Gaussian noise on top: ``D(x0, t) = B(x0, t) + sigma_t z``.

Pure cold generation is deterministic after x_T: a flat start decides the digit through the tiny
symmetry-breaking noise alone, and the small models of this book often draw strokes, not digits
(chapter 6). The related work keeps some noise in the process: blurring diffusion (Hoogeboom and
Salimans, 2022), soft diffusion (Daras et al., 2022), inverse heat dissipation (Rissanen et al., 2023).
:class:`Noisy` wraps any degradation B (blur, inpainting fill, super-resolution) with noise whose
standard deviation grows with t, ``sigma_t = std (t / T) ** power`` (constant for t >= 1 with power 0). It has a noise schedule, so the
samplers that draw fresh noise at every step apply (``sample(..., algorithm="ancestral")``), and
Algorithm 2 works on it as on any degradation.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..checks import is_number
from .base import Degradation, check_images, check_positive, draw, per_sample
from .blur import GaussianBlur


#: The base of ``Noisy()``: the MNIST blur of generation (it ends at a flat colour).
DEFAULT_BASE = GaussianBlur(T=20, kernel_size=11, std=7.0, collapse_at_T=True).config()


class Noisy(Degradation, name="noisy"):
    """``D(x0, t) = B(x0, t) + sigma_t z`` with ``sigma_t = std * (t / T) ** power`` and z ~ N(0, I), frozen per batch.

    Args:
        base: the cold degradation B, as its config (``{"name": "blur", "T": 20, ...}``, what
            ``B.config()`` returns) so that this one saves and rebuilds from plain data; by default the
            paper's MNIST blur that collapses to a flat colour.
        std: sigma_T, the noise at the last level.
        power: the shape of the schedule (1: linear in t; 0: the same noise at every level t >= 1).
        T: number of steps, replacing the base's (default: the base's).
        channels: number of channels expected, or ``None``.

    Images are [B, C, H, W] in [-1, 1]; x_t leaves [-1, 1] by the noise.
    """

    random = True
    state_is_observed = False  # the noise is the corruption

    def __init__(
        self,
        base: Optional[dict] = None,
        std: float = 0.2,
        power: float = 1.0,
        T: Optional[int] = None,
        channels: Optional[int] = None,
    ):
        from . import build

        if base is not None and not isinstance(base, dict):
            raise ValueError(
                f"base must be a degradation's config (a table), e.g. {{'name': 'blur', 'T': 20}}, "
                f"got {base!r}"
            )
        base = dict(DEFAULT_BASE if base is None else base)
        if not base.get("name"):
            raise ValueError(
                f"base must be a degradation's config, e.g. {{'name': 'blur', 'T': 20}}, got {base!r}"
            )
        if base["name"] == type(self).name:
            raise ValueError("base must be a cold degradation, not another noisy one")
        if T is not None:
            base["T"] = T
        check_positive(std, "std")
        if not is_number(power) or not 0 <= power <= 10:
            raise ValueError(
                f"power must be a number in [0, 10] (0: the same noise at every level t >= 1), got {power!r}"
            )
        self.base = build(
            **{**base, **({"channels": channels} if channels is not None else {})}
        )
        super().__init__(self.base.T, channels)
        self.std = float(std)
        self.power = float(power)
        levels = torch.arange(self.T + 1, dtype=torch.float64) / self.T
        self.sigmas = self.std * levels**self.power  # [T + 1]
        self.sigmas[0] = 0.0  # D(x0, 0) = x0
        self.noise: Optional[torch.Tensor] = None  # z [B, C, H, W], set by freeze()

    # --- the parts of D(x0, t) = clean(x0, t) + sigma_t z
    # ------------------------------------------
    def noise_schedule(self):
        """``(signal [T + 1], sigma [T + 1])``: D(x0, t) = clean(x0, t) + sigma_t z, with clean's gain 1."""
        return torch.ones(self.T + 1, dtype=torch.float64), self.sigmas

    def clean(self, x0: torch.Tensor, t) -> torch.Tensor:
        """The noise-free part B(x0, t) [B, C, H, W] (with the frozen base's random state, if any)."""
        base = self._frozen_base()
        return base(x0, t) if isinstance(t, int) else base(x0, t.to(x0.device))

    def fresh_noise(self, like: torch.Tensor, generator=None) -> torch.Tensor:
        """A new z [B, C, H, W] ~ N(0, I) shaped like ``like``: what an ancestral step draws."""
        return draw("randn", like.shape, generator, like.device).to(like.dtype)

    @property
    def symmetry_noise(self) -> float:
        """Generation starts from the base's end state plus its own noise, sigma_T."""
        return self.std

    # --- Degradation hooks
    # ------------------------------------------------------------------------
    def _frozen_base(self) -> Degradation:
        base = getattr(self, "base_frozen", None)
        if base is None:
            if self.base.random:
                raise ValueError(
                    f"{self!r} is not frozen: its base {type(self.base).__name__} draws random "
                    f"quantities; pass D.freeze(x0) or D.freeze_to(x_T)"
                )
            return self.base
        return base

    def freeze_state(self, like, generator):
        state = {"noise": self.fresh_noise(like, generator)}
        if self.base.random:
            state["base_frozen"] = self.base.freeze(like, generator)
        return state

    def degrade(self, x0, t):
        z = self.noise if self.noise is not None else self.fresh_noise(x0)
        if z.shape != x0.shape:
            raise ValueError(
                f"the frozen noise has shape {tuple(z.shape)} but x0 has shape {tuple(x0.shape)}"
            )
        return self.clean(x0, t) + per_sample(self.sigmas, t, x0) * z.to(
            device=x0.device, dtype=x0.dtype
        )

    @property
    def has_latent(self) -> bool:
        return self.base.has_latent

    def latent(self, x_T: torch.Tensor) -> torch.Tensor:
        """The base's latent of x_T (a colour, a tiny image): the noise averages out of it."""
        return self.base.latent(x_T)

    def from_latent(self, z: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The base's noise-free end state; generation adds sigma_T noise (:attr:`symmetry_noise`)."""
        return self.base.from_latent(z, shape)

    def prior(
        self, n: int, shape: Sequence[int], generator=None, device="cpu"
    ) -> torch.Tensor:
        """The base's noise-free start [n, C, H, W]; generation adds sigma_T noise (:attr:`symmetry_noise`)."""
        return self.base.prior(n, shape, generator=generator, device=device)

    def freeze_to(self, x_T: torch.Tensor) -> "Noisy":
        """A copy frozen so that D(x0, T) == x_T where the base's end state forgets x0: the noise is
        x_T minus its clean part (read from the base's latent), and the base is frozen to that part."""
        check_images(x_T, "x_T", self.channels)
        if not self.base.has_latent:
            raise NotImplementedError(
                f"{type(self.base).__name__} has no latent end state to start from"
            )
        clean = self.base.from_latent(self.base.latent(x_T), x_T.shape[1:])
        frozen = self.freeze(x_T)
        frozen.noise = (x_T - clean) / self.std
        if self.base.random:
            frozen.base_frozen = self.base.freeze_to(clean)
        return frozen
