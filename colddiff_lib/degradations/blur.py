"""Gaussian blur as a composition of T Gaussian kernels, evaluated in closed form.

Step i convolves with a normalised Gaussian kernel G_i (depthwise, ``kernel_size`` x ``kernel_size``),
so x_t = G_t * ... * G_1 * x0. The paper's code applies the t convolutions one after another, which
makes a training batch cost O(T) and Algorithm 2 cost O(T^2) convolutions.

Here the kernel is separable (an outer product g g^T) and so is the padding (circular or reflect),
so one step acts on an image as ``x -> A_i x A_i^T`` with an N x N matrix A_i per axis. The composed
operator is therefore ``x -> M_t x M_t^T`` with ``M_t = A_t ... A_1``: T + 1 small matrices computed
once (in float64), after which D(x0, t) costs two matrix products whatever t is. The matrices are
built by running the very convolution of :meth:`GaussianBlur.step` on the identity, so the closed
form equals the step-by-step definition up to rounding.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .base import Degradation, FlatEnd, check_bool, check_choice, check_positive, is_int

SCHEDULES = ("constant", "incremental", "exponential")
PADDINGS = ("circular", "reflect")
#: The widest kernel accepted, in pixels.
MAX_KERNEL = 255
# : exp(MAX_EXPONENT) is about 1e304: the exponential schedule's sigma_T = exp(std * (T
# - 1)) must stay below it.
MAX_EXPONENT = 700.0
#: Bytes the cached blur matrices [T + 1, n, n] (float64) of one image size may take.
MAX_MATRIX_BYTES = 2 * 2**30


def blur_sigmas(T: int, std: float, schedule: str) -> List[float]:
    """Per-step kernel widths sigma_1..sigma_T of the paper's schedules.

    constant: sigma_i = std; incremental: sigma_i = std * i; exponential: sigma_i = exp(std * (i - 1)).
    """
    check_choice(schedule, "schedule", SCHEDULES)
    if schedule == "constant":
        return [float(std)] * T
    if schedule == "incremental":
        return [float(std) * (i + 1) for i in range(T)]
    return [math.exp(float(std) * i) for i in range(T)]


def gaussian_kernel_1d(
    kernel_size: int, sigma: float, dtype=torch.float64
) -> torch.Tensor:
    """Normalised 1-D Gaussian ``exp(-(i - k//2)^2 / (2 sigma^2))``, shape [kernel_size].

    A width far below a pixel is the identity (a one at the centre): sigma is floored where its square
    would underflow to 0 and make the centre 0 / 0."""
    i = torch.arange(kernel_size, dtype=dtype) - kernel_size // 2
    sigma = max(float(sigma), 1e-100 if dtype == torch.float64 else 1e-15)
    g = torch.exp(-(i**2) / (2 * sigma**2))
    return g / g.sum()


class GaussianBlur(FlatEnd, Degradation, name="blur"):
    """Blur by T Gaussian kernels, composed: ``D(x0, t) = G_t * ... * G_1 * x0``.

    Args:
        T: number of steps.
        kernel_size: odd kernel width in pixels.
        std: the schedule's parameter (sigma for ``constant``; see :func:`blur_sigmas`).
        schedule: ``"constant"``, ``"incremental"`` or ``"exponential"``.
        padding: ``"circular"`` (the paper's default) or ``"reflect"``.
        channels: number of channels expected, or ``None`` for any.
        collapse_at_T: replace the last step by the per-channel mean (the paper's generation
            setting), so that D(x0, T) is a flat colour.

    Images are [B, C, H, W] in [-1, 1]; the operator is linear and compositional.
    """

    linear = True
    compositional = True

    def __init__(
        self,
        T: int = 20,
        kernel_size: int = 11,
        std: float = 7.0,
        schedule: str = "constant",
        padding: str = "circular",
        channels: Optional[int] = None,
        collapse_at_T: bool = False,
    ):
        super().__init__(T, channels)
        if (
            not is_int(kernel_size)
            or not 1 <= kernel_size <= MAX_KERNEL
            or kernel_size % 2 == 0
        ):
            raise ValueError(
                f"kernel_size must be a positive odd int of at most {MAX_KERNEL}, got {kernel_size!r}"
            )
        check_positive(std, "std")
        check_choice(schedule, "schedule", SCHEDULES)
        check_choice(padding, "padding", PADDINGS)
        check_bool(collapse_at_T, "collapse_at_T")
        if schedule == "exponential" and std * (T - 1) > MAX_EXPONENT:
            raise ValueError(
                f"std: the exponential schedule's last width exp(std * (T - 1)) = exp({std * (T - 1):g}) "
                f"overflows; std * (T - 1) must be at most {MAX_EXPONENT:g}, got std = {std!r}, T = {T}"
            )
        self.kernel_size = kernel_size
        self.std = float(std)
        self.schedule = schedule
        self.padding = padding
        self.collapse_at_T = bool(collapse_at_T)
        self.sigmas = blur_sigmas(T, std, schedule)
        # [T, k] f64
        self._kernels = torch.stack(
            [gaussian_kernel_1d(kernel_size, s) for s in self.sigmas]
        )
        self._composed: Dict[Tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    # --- one step, exactly as defined (the reference the closed form is tested against)
    # ---------
    def _check_size(self, size: int) -> None:
        pad = self.kernel_size // 2
        if self.padding == "reflect" and pad >= size:
            raise ValueError(
                f"reflect padding needs images larger than kernel_size // 2 = {pad} pixels, got {size}"
            )
        if self.padding == "circular" and pad > size:
            raise ValueError(
                f"circular padding needs images of at least kernel_size // 2 = {pad} pixels, got {size}"
            )

    def _conv_step(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Convolve ``x`` [B, C, H, W] with kernel i (1-based) and the configured padding."""
        if self.collapse_at_T and i == self.T:
            return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
        k1 = self._kernels[i - 1].to(device=x.device, dtype=x.dtype)
        kernel = torch.outer(k1, k1).expand(
            x.shape[1], 1, self.kernel_size, self.kernel_size
        )
        pad = self.kernel_size // 2
        return F.conv2d(
            F.pad(x, (pad, pad, pad, pad), mode=self.padding), kernel, groups=x.shape[1]
        )

    def step_op(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_size(min(x.shape[-2:]))
        out = torch.empty_like(x)
        for i in t.unique().tolist():
            sel = t == i
            out[sel] = self._conv_step(x[sel], i)
        return out

    # --- the composed operator
    # -------------------------------------------------------------------
    def _step_matrix(self, i: int, n: int) -> torch.Tensor:
        """The N x N matrix of step i along one axis (float64): A[:, j] = step(e_j)."""
        if self.collapse_at_T and i == self.T:
            return torch.full((n, n), 1.0 / n, dtype=torch.float64)
        pad = self.kernel_size // 2
        # [n, 1, n]: basis vectors e_j
        eye = torch.eye(n, dtype=torch.float64).unsqueeze(1)
        k = self._kernels[i - 1].view(1, 1, -1)
        # [n, 1, n]: row j = A e_j
        cols = F.conv1d(F.pad(eye, (pad, pad), mode=self.padding), k)
        return cols[:, 0, :].T.contiguous()

    def composed_matrices(
        self, n: int, device="cpu", dtype=torch.float32
    ) -> torch.Tensor:
        """``M_t`` for t = 0..T along an axis of length ``n``: [T + 1, n, n], ``M_0 = I``."""
        self._check_size(n)
        if (self.T + 1) * n * n * 8 > MAX_MATRIX_BYTES:
            raise ValueError(
                f"images of {n} pixels a side with T = {self.T} need {(self.T + 1) * n * n * 8 / 2**30:.1f} "
                f"GiB of blur matrices, more than {MAX_MATRIX_BYTES / 2**30:g} GiB: use smaller images or T"
            )
        key = (n, torch.device(device), dtype)
        if key not in self._composed:
            mats = [torch.eye(n, dtype=torch.float64)]
            for i in range(1, self.T + 1):
                mats.append(self._step_matrix(i, n) @ mats[-1])
            self._composed[key] = torch.stack(mats).to(device=key[1], dtype=dtype)
        return self._composed[key]

    axis_matrices = composed_matrices  # D(x0, t) = M_t x0 M_t^T: the blur is separable

    def degrade(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        H, W = x0.shape[-2:]
        compute_dtype = (
            torch.float32 if x0.dtype in (torch.float16, torch.bfloat16) else x0.dtype
        )
        MH = self.composed_matrices(H, x0.device, compute_dtype)[t]  # [B, H, H]
        MW = MH if W == H else self.composed_matrices(W, x0.device, compute_dtype)[t]
        x = x0.to(compute_dtype)
        # x_t = M_t x M_t^T on every channel.
        return torch.einsum("bij,bcjk,blk->bcil", MH, x, MW)

    @property
    def symmetry_noise(self) -> float:
        """0.002 (the paper's) when the blur collapses to a flat colour at T, else 0."""
        return 0.002 if self.collapse_at_T else 0.0

    @property
    def has_latent(self) -> bool:
        """Only a blur that collapses at T ends in a flat colour that :meth:`latent` summarises; without the
        collapse D(x0, T) still shows the digit."""
        return self.collapse_at_T

    def prior(
        self,
        n: int,
        shape: Sequence[int],
        generator: Optional[torch.Generator] = None,
        device="cpu",
    ) -> torch.Tensor:
        """Flat images of a uniform random colour in [-1, 1] per channel: [n, C, H, W].

        Meaningful when ``collapse_at_T`` is set (then D(x0, T) is exactly such an image);
        :mod:`colddiff_lib.generation` fits a better colour distribution to the data.
        """
        return self.flat_prior(n, shape, 1.0, generator, device)
