"""Inverting a degradation: one call of R, and the paper's Algorithms 1 and 2.

Samplers are plain functions (as in k-diffusion). They take any callable ``R(x, t) -> x0 estimate``
and any degradation with ``T`` and ``__call__(x0, t)``, and they report progress through an
optional ``callback`` that sees every x_s and every x0 estimate.

* Algorithm 1 (naive):     x_{s-1} = D(R(x_s, s), s - 1)
* Algorithm 2 (improved):  x_{s-1} = x_s - D(R(x_s, s), s) + D(R(x_s, s), s - 1)
* For a degradation with a noise schedule, D(x0, s) = clean(x0, s) + sigma_s z (the hot baseline,
  where clean(x0, s) = sqrt(abar_s) x0, or a cold degradation with noise on top, :class:`Noisy`),
  two samplers re-estimate z from x_s and x0_hat at every step, z_hat = (x_s - clean(x0_hat, s)) / sigma_s:

  - DDIM (Song et al. 2021, deterministic): x_{s-1} = clean(x0_hat, s - 1) + sigma_{s-1} z_hat.
    Algorithm 2 is the same step with z frozen instead of re-estimated.
  - ancestral (DDPM's sampler, Ho et al. 2020): part of z_hat is replaced by fresh noise,
    x_{s-1} = clean(x0_hat, s - 1) + sqrt(sigma_{s-1}^2 - c_s^2) z_hat + c_s e, e ~ N(0, I), with c_s^2 the
    variance of DDPM's posterior, sigma_{s-1}^2 (1 - SNR_s / SNR_{s-1}) (SNR: signal^2 / sigma^2).
    It is the "Algorithm 2 with a little fresh noise at every step" of chapter 6.

For D(x, s) = x + s e (the first-order Taylor picture) Algorithm 2 returns D(x0, s - 1) exactly,
whatever R is, because the x0 estimate cancels; Algorithm 1 only does if R is exact.
A full run costs T calls of R and O(T) calls of D (each O(1) in s for this library's operators).
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence

import torch

from .checks import is_int
from .degradations.base import TimeLike, as_time_tensor, check_images

ALGORITHMS = ("improved", "naive", "ddim", "ancestral")
#: The samplers that need ``D.noise_schedule()``.
NOISE_ALGORITHMS = ("ddim", "ancestral")


def _time(t: TimeLike, x: torch.Tensor, T: int) -> torch.Tensor:
    return as_time_tensor(t, x.shape[0], T, x.device)


def _check_frozen(D) -> None:
    if getattr(D, "random", False) and not getattr(D, "frozen", True):
        raise ValueError(
            "D draws random quantities (noise, mask centres, targets, snow): pass the frozen "
            "degradation that made x_t, D.freeze(x0), or D.freeze_to(x_T) for generation"
        )


@torch.no_grad()
def direct(
    R: Callable, D, x_t: torch.Tensor, t: TimeLike, clip_x0: bool = True
) -> torch.Tensor:
    """One call of the restoration network: the direct estimate R(x_t, t) of x0.

    The samplers' calling convention: ``(R, D, x_t, t)``, as :func:`sample` and :func:`trajectory`.

    Args:
        R: callable ``R(x [B, C, H, W], t LongTensor[B]) -> [B, C, H, W]``.
        D: the degradation that made x_t (for its ``T`` and ``channels``).
        x_t: degraded images [B, C, H, W] in [-1, 1].
        t: their levels, int or LongTensor[B] in 0..T.
        clip_x0: clamp the estimate to [-1, 1], as :func:`sample` does.
    Returns:
        [B, C, H, W], the x0 estimate.
    """
    check_images(x_t, "x_t", getattr(D, "channels", None))
    x0_hat = R(x_t, _time(t, x_t, D.T))
    return x0_hat.clamp(-1, 1) if clip_x0 else x0_hat


def noise_step(
    D,
    x: torch.Tensor,
    x0_hat: torch.Tensor,
    s: int,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    s_next: Optional[int] = None,
) -> torch.Tensor:
    """One step s -> s_next (default s - 1) that re-estimates the noise: DDIM (``eta = 0``) or ancestral
    (``eta = 1``).

    ``D`` has a :meth:`~colddiff_lib.degradations.Degradation.noise_schedule`; x, x0_hat are [B, C, H, W].
    """
    s_next = s - 1 if s_next is None else s_next
    schedule = D.noise_schedule()
    if schedule is None:
        raise ValueError(
            f"{type(D).__name__} has no noise schedule (D(x0, t) = clean + sigma_t z), so its noise "
            f"cannot be re-estimated: use algorithm 'improved' or 'naive'"
        )
    signal, sigma = (v.to(dtype=torch.float64) for v in schedule)
    a_s, a_next = signal[s], signal[s_next]
    sig_s, sig_next = sigma[s], sigma[s_next]
    z_hat = (x.double() - D.clean(x0_hat, s).double()) / sig_s
    # DDPM's posterior variance for the step s -> s_next (DDIM's sigma with eta)
    c2 = (
        (eta**2) * sig_next**2 * (1 - (a_s * sig_next / (a_next * sig_s)) ** 2)
        if s_next > 0
        else sig_next * 0
    )
    c2 = c2.clamp(min=0.0)
    x_next = (
        D.clean(x0_hat, s_next).double()
        + (sig_next**2 - c2).clamp(min=0).sqrt() * z_hat
    )
    if eta:
        x_next = x_next + c2.sqrt() * D.fresh_noise(x, generator).double()
    return x_next.to(x.dtype)


@torch.no_grad()
def sample(
    R: Callable,
    D,
    x_t: torch.Tensor,
    t: TimeLike,
    algorithm: str = "improved",
    callback: Optional[Callable[[dict], None]] = None,
    clip_x0: bool = True,
    generator: Optional[torch.Generator] = None,
    levels: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Run Algorithm 1 or 2 from level ``t`` down to 0 and return the final x_0.

    Args:
        R: callable ``R(x, t) -> x0 estimate`` on [B, C, H, W] and LongTensor[B].
        D: degradation with ``T`` and ``D(x0, t)``; a random one must be frozen
            (``D.freeze(x0)`` or ``D.freeze_to(x_T)``) so that every call uses the same noise.
        x_t: starting images [B, C, H, W] (degraded images, or a generation prior).
        t: starting level, int or LongTensor[B] (each image stops at 0 after its own t steps).
        algorithm: ``"improved"`` (Algorithm 2), ``"naive"`` (Algorithm 1), or, for a degradation with a
            noise schedule (``D.noise_schedule()``: the Gaussian-noise baseline, :class:`Noisy`), ``"ddim"``
            or ``"ancestral"`` (they re-estimate z from x_s, ignoring D's frozen z).
        callback: called once per step with a dict ``{"s", "x", "x0_hat", "x_next"}``: the level s,
            x_s [B, C, H, W], the estimate R(x_s, s), and the next iterate (x_{s-1}, or x at the next of
            ``levels``).
        clip_x0: clamp R's estimates to [-1, 1].
        generator: the fresh noise of ``"ancestral"`` (default: torch's global generator).
        levels: the levels visited, from ``t`` down to 0, e.g. ``[20, 10, 0]`` or :func:`level_grid`'s:
            each step s -> s' is the algorithm's step with s - 1 replaced by s' (Algorithm 2: x_{s'} =
            x_s - D(x0_hat, s) + D(x0_hat, s')), one call of R per step. Default: every level, t, t - 1,
            ..., 0. Needs one start level for the whole batch.
    Returns:
        [B, C, H, W], the restored images (the level-0 iterate).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}"
        )
    check_images(x_t, "x_t", getattr(D, "channels", None))
    if algorithm in NOISE_ALGORITHMS:
        if D.noise_schedule() is None:
            raise ValueError(
                f"algorithm {algorithm!r} re-estimates a noise, so it needs a degradation with a noise "
                f"schedule (D.noise_schedule() is not None), got {type(D).__name__}"
            )
    else:
        _check_frozen(D)
    starts = _time(t, x_t, D.T)
    x = x_t
    start = int(starts.max()) if starts.numel() else 0
    if levels is None:
        levels = range(start, -1, -1)
    else:
        levels = _check_levels(levels, starts, D.T)
    for s, s_next in zip(levels[:-1], levels[1:]):
        active = (starts >= s).view(-1, 1, 1, 1)
        s_vec = torch.full_like(starts, s)
        x0_hat = R(x, s_vec)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        if algorithm == "naive":
            x_next = D(x0_hat, s_next)
        elif algorithm in NOISE_ALGORITHMS:
            eta = 1.0 if algorithm == "ancestral" else 0.0
            x_next = noise_step(D, x, x0_hat, s, eta, generator, s_next)
        else:
            x_next = x - D(x0_hat, s) + D(x0_hat, s_next)
        x_next = torch.where(active, x_next, x)
        if callback is not None:
            callback({"s": s, "x": x, "x0_hat": x0_hat, "x_next": x_next})
        x = x_next
    return x


def level_grid(t: int, steps: int) -> List[int]:
    """``steps + 1`` levels from ``t`` down to 0, as evenly spaced as integers allow (``level_grid(20, 2)``
    is ``[20, 10, 0]``): a coarser run of :func:`sample` (its ``levels``), ``steps`` calls of R."""
    if not (is_int(t) and t >= 1):
        raise ValueError(f"t must be an int >= 1, got {t!r}")
    if not (is_int(steps) and 1 <= steps <= t):
        raise ValueError(f"steps must be an int in 1..t={t}, got {steps!r}")
    return [round(t * (1 - k / steps)) for k in range(steps + 1)]


def _check_levels(levels, starts: torch.Tensor, T: int) -> List[int]:
    """``levels`` as a list of ints, checked: strictly decreasing from the batch's one start level to 0."""
    try:
        out = [int(s) for s in levels]
        exact = all(int(s) == s for s in levels)
    except (TypeError, ValueError):
        out, exact = [], False
    first = int(starts[0]) if starts.numel() else 0
    if (
        not exact
        or len(out) < 2
        or out[-1] != 0
        or any(a <= b for a, b in zip(out, out[1:]))
        or out[0] > T
    ):
        raise ValueError(
            f"levels must be ints decreasing strictly from the start level t to 0 (e.g. [{first}, "
            f"{first // 2}, 0], or level_grid(t, steps)), got {levels!r}"
        )
    if bool((starts != out[0]).any()):
        raise ValueError(
            f"levels must start at the start level t, the same for the whole batch; got levels from "
            f"{out[0]} and t = {starts.unique().tolist()}"
        )
    return out


class Trajectory(NamedTuple):
    """What :func:`trajectory` returns (it unpacks as ``x0, xs, x0_hats, levels = trajectory(...)``)."""

    x0: torch.Tensor  #: the restored images [B, C, H, W] (what :func:`sample` returns)
    # : the iterates x_s [K + 1, B, C, H, W] on the CPU, the last one x0
    xs: torch.Tensor
    x0_hats: torch.Tensor  #: the estimates R(x_s, s) [K, B, C, H, W] on the CPU
    levels: List[int]  #: the K + 1 levels of ``xs``, from the start down to 0


def trajectory(
    R: Callable,
    D,
    x_t: torch.Tensor,
    t: TimeLike,
    algorithm: str = "improved",
    clip_x0: bool = True,
    every: int = 1,
) -> Trajectory:
    """Run :func:`sample` and keep the iterates: a :class:`Trajectory` ``(x0, xs, x0_hats, levels)``.

    ``xs`` and ``x0_hats`` are [K, B, C, H, W] on the CPU for the recorded levels (every ``every``-th
    step, the first and last always), ``levels`` the list of those s. Arguments as :func:`sample`'s.
    """
    xs, hats, levels = [], [], []
    start = int(_time(t, x_t, D.T).max())

    def keep(info):
        s = info["s"]
        if (start - s) % every == 0 or s == 1:
            xs.append(info["x"].detach().cpu())
            hats.append(info["x0_hat"].detach().cpu())
            levels.append(s)

    out = sample(R, D, x_t, t, algorithm=algorithm, callback=keep, clip_x0=clip_x0)
    xs.append(out.detach().cpu())
    levels.append(0)
    return Trajectory(
        out, torch.stack(xs), torch.stack(hats) if hats else torch.empty(0), levels
    )
