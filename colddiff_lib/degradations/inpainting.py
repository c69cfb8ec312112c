"""Inpainting: multiply by Gaussian masks of growing width.

Step i multiplies by m_i = 1 - G_{sigma_i} / max G_{sigma_i}, a Gaussian hole of width
sigma_i = std * (i - 1 + initial_mask) around a centre, so that x_t = x0 * prod_{i<=t} m_i and the
hole grows with t. The cumulative products are precomputed, so every t costs one multiplication.
Masked pixels go to 0, mid-grey in [-1, 1].

:class:`InpaintingFill` is the generation variant: x_t = a_t x0 + (1 - a_t) c with a_t the cumulative
mask and c a flat random colour, reaching x_T = c.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import Degradation, FlatEnd, check_bool, check_positive, draw


def gaussian_hole(size, sigma: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Masks 1 - G/max G on an H x W grid.

    Args:
        size: (H, W).
        sigma: widths [S] in pixels, the same for every image, or [B, S], one row per image.
        centre: (row, col) centres [B, 2] in pixels.
    Returns:
        [B, S, H, W] with 0 at the centre and values in [0, 1).
    """
    H, W = size
    # the Gaussian is separable: H + W exponentials per mask instead of H * W
    two_var = 2 * _floor(sigma).unsqueeze(-1) ** 2  # [S, 1] or [B, S, 1]
    rows = torch.arange(H, dtype=sigma.dtype, device=sigma.device).view(1, 1, H)
    cols = torch.arange(W, dtype=sigma.dtype, device=sigma.device).view(1, 1, W)
    g_rows = torch.exp(-((rows - centre[:, :1, None]) ** 2) / two_var)  # [B, S, H]
    g_cols = torch.exp(-((cols - centre[:, 1:, None]) ** 2) / two_var)  # [B, S, W]
    return 1 - g_rows.unsqueeze(-1) * g_cols.unsqueeze(-2)


def _floor(sigma: torch.Tensor) -> torch.Tensor:
    """Widths floored where their square underflows to 0 (a hole far below a pixel wide is one pixel;
    without the floor the centre would be 0 / 0)."""
    return sigma.clamp(min=1e-100 if sigma.dtype == torch.float64 else 1e-15)


class Inpainting(Degradation, name="inpaint"):
    """Gaussian masks of growing width, multiplied: ``D(x0, t) = x0 * prod_{i<=t} m_i``.

    Args:
        T: number of steps.
        std: growth of the mask width, sigma_i = std * (i - 1 + initial_mask) pixels.
        initial_mask: offset of the width schedule (in steps).
        random_centre: draw the centre uniformly per image (fixed for that image by :meth:`freeze`)
            instead of the image centre.
        channels: number of channels expected, or ``None``.

    Images are [B, C, H, W] in [-1, 1]; linear and compositional.
    """

    linear = True
    compositional = True
    # the mask's position is known to the restorer, as in the paper
    state_is_observed = True
    # a_T forced to 0, so that nothing of x0 is left at T (the fill variant)
    covers_at_T = False

    def __init__(
        self,
        T: int = 50,
        std: float = 0.1,
        initial_mask: float = 1.0,
        random_centre: bool = False,
        channels: Optional[int] = None,
    ):
        super().__init__(T, channels)
        check_positive(std, "std")
        check_positive(initial_mask, "initial_mask")
        check_bool(random_centre, "random_centre")
        self.std = float(std)
        self.initial_mask = float(initial_mask)
        self.random_centre = bool(random_centre)
        self.random = self.random_centre
        self.sigmas = torch.tensor(
            [self.std * (i + self.initial_mask) for i in range(T)], dtype=torch.float64
        )
        self.centres: Optional[torch.Tensor] = None  # [B, 2], set by freeze()

    def freeze_state(self, like, generator):
        H, W = like.shape[-2:]
        u = draw("rand", (like.shape[0], 2), generator, like.device)
        return {
            "centres": u
            * torch.tensor([H - 1, W - 1], device=like.device, dtype=u.dtype)
        }

    def _centres(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if self.random_centre:
            # unfrozen: a fresh random centre per image and call
            if self.centres is None:
                return self.freeze_state(x, None)["centres"]
            return self.centres.to(x.device)
        return torch.tensor([[(H - 1) / 2, (W - 1) / 2]], device=x.device).expand(
            x.shape[0], 2
        )

    def step_masks(self, x: torch.Tensor) -> torch.Tensor:
        """m_1..m_T for the images ``x``: [B, T, H, W] (float64)."""
        centres = self._centres(x).to(torch.float64)
        return gaussian_hole(x.shape[-2:], self.sigmas.to(x.device), centres)

    def cumulative_masks(self, x: torch.Tensor) -> torch.Tensor:
        """a_t = prod_{i<=t} m_i for t = 0..T: [B, T + 1, H, W] (float64, a_0 = 1)."""
        m = self.step_masks(x)
        ones = torch.ones_like(m[:, :1])
        a = torch.cumprod(torch.cat([ones, m], dim=1), dim=1)
        if self.covers_at_T:
            a[:, -1] = 0
        return a

    def _mask_at(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # one mask set for the whole batch: cache it per size and device
        if not self.random_centre:
            key = (tuple(x.shape[-2:]), x.device)
            if getattr(self, "_cache_key", None) != key:
                self._cache = self.cumulative_masks(x[:1])[0]
                self._cache_key = key
            return self._cache[t].unsqueeze(1)
        # a mask set per image: multiply each image's own m_1..m_t, and no further level
        # than the batch needs (cumprod over every level cost ten times as much)
        last = int(t.max())
        centres = self._centres(x).to(torch.float64)
        m = gaussian_hole(x.shape[-2:], self.sigmas[:last].to(x.device), centres)
        levels = torch.arange(1, last + 1, device=x.device).view(1, -1, 1, 1)
        m = torch.where(levels <= t.view(-1, 1, 1, 1), m, torch.ones((), dtype=m.dtype))
        a = m.prod(dim=1, keepdim=True)
        if self.covers_at_T:
            a = torch.where(
                t.view(-1, 1, 1, 1) == self.T, torch.zeros((), dtype=a.dtype), a
            )
        return a

    def degrade(self, x0, t):
        return x0 * self._mask_at(x0, t).to(x0.dtype)

    def step_op(self, x, t):
        centres = self._centres(x).to(torch.float64)
        # image b needs the mask of its own step t[b]
        sigma = self.sigmas.to(x.device)[t - 1].view(-1, 1)
        mask = gaussian_hole(x.shape[-2:], sigma, centres)  # [B, 1, H, W]
        return x * mask.to(x.dtype)


class InpaintingFill(FlatEnd, Inpainting, name="inpaint_fill"):
    """Generation variant: ``D(x0, t) = a_t x0 + (1 - a_t) c`` with a flat random colour c.

    a_t is the cumulative mask of :class:`Inpainting`, forced to 0 at t = T so that x_T = c exactly.
    c is uniform in ``[-colour_range, colour_range]`` per channel and image, fixed by :meth:`freeze`.
    Affine (not linear) because of c; not compositional.
    """

    linear = False
    compositional = False
    random = True
    state_is_observed = False  # the fill colour is the corruption
    covers_at_T = True

    def __init__(
        self,
        T: int = 750,
        std: float = 0.05,
        initial_mask: float = 1.0,
        random_centre: bool = False,
        colour_range: float = 0.5,
        channels: Optional[int] = None,
    ):
        super().__init__(T, std, initial_mask, random_centre, channels)
        check_positive(colour_range, "colour_range")
        self.random = True
        self.colour_range = float(colour_range)
        self.colours: Optional[torch.Tensor] = None  # [B, C], set by freeze()

    def freeze_state(self, like, generator):
        state = super().freeze_state(like, generator) if self.random_centre else {}
        u = draw("rand", like.shape[:2], generator, like.device)
        state["colours"] = (u * 2 - 1) * self.colour_range
        return state

    def freeze_to(self, x_T):
        """A copy whose fill colour is x_T's (flat) colour, so that D(x0, T) == x_T."""
        frozen = self.freeze(x_T)
        frozen.colours = x_T.mean(dim=(-2, -1))
        return frozen

    def freeze_at(self, x_t, t):
        """A copy whose fill colour is read off the pixels of ``x_t`` that level ``t`` has masked completely
        (a_t < 1e-4, where x_t shows only the colour): the start of a generation run below T."""
        if t == self.T:
            return self.freeze_to(x_t)
        if self.random_centre:
            raise NotImplementedError(
                "InpaintingFill with random_centre cannot recover its mask centres from an image"
            )
        a = self._mask_at(x_t[:1], torch.tensor([t], device=x_t.device))[0, 0]
        hidden = a < 1e-4
        if not bool(hidden.any()):
            raise ValueError(
                f"level {t} masks no pixel completely, so x_t does not show its fill colour; start at a "
                f"higher level"
            )
        frozen = self.freeze(x_t)
        frozen.colours = x_t[:, :, hidden].mean(-1)
        return frozen

    def degrade(self, x0, t):
        a = self._mask_at(x0, t).to(x0.dtype)
        c = self.colours
        if c is None:
            c = self.freeze_state(x0, None)["colours"]
        c = c.to(device=x0.device, dtype=x0.dtype).view(x0.shape[0], x0.shape[1], 1, 1)
        return a * x0 + (1 - a) * c

    def prior(
        self, n: int, shape: Sequence[int], generator=None, device="cpu"
    ) -> torch.Tensor:
        """Flat images of a random colour, uniform in ``[-colour_range, colour_range]``: [n, C, H, W]."""
        return self.flat_prior(n, shape, self.colour_range, generator, device)
