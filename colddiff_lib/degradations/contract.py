"""The degradation contract, in one place: what every :class:`Degradation` must do.

:func:`check` runs a degradation through the contract and returns the problems it finds, each one a
sentence saying what to change. The tests run it over every registered degradation
(``tests/test_contract.py``), and chapter 7's checker (:func:`colddiff_lib.exercises.ch07.check_degradation`)
runs it on the reader's own.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ..checks import is_int
from .base import Degradation, check_images

__all__ = ["check"]

#: Largest number of levels t at which check_degradation measures the distance from x0.
_MAX_LEVELS = 51


def _default_images(channels: Optional[int]) -> torch.Tensor:
    """Eight held-out digits [8, C, 32, 32] in [-1, 1] (one per class 0..7), C = ``channels`` or 1."""
    from ..data import load_dataset

    x0 = load_dataset("mnist5k", split="test").images[:8].clone()
    if channels is not None and channels != 1:
        x0 = x0.repeat(1, channels, 1, 1)
    return x0


def _call(fn, what: str, problems: List[str]):
    """Run ``fn()``; on an exception, record it as a problem and return None."""
    try:
        return fn()
    # the student's code may raise anything: report it, do not crash
    except Exception as err:
        problems.append(f"{what} raised {type(err).__name__}: {err}")
        return None


def _explain_shape(D, x0: torch.Tensor, t: int, problems: List[str]) -> None:
    """After D(x0, t) failed: if degrade() itself returns images of another shape, say so."""
    try:
        out = D.degrade(x0.clone(), torch.full((x0.shape[0],), t, dtype=torch.long))
    except Exception:
        return
    if isinstance(out, torch.Tensor) and out.shape != x0.shape:
        problems.append(
            f"degrade(x0, t) returns shape {tuple(out.shape)} for x0 of shape {tuple(x0.shape)}: a "
            f"degradation keeps the shape of its input (upsample back what you downsample)"
        )


def _levels(T: int) -> List[int]:
    """0..T, or about _MAX_LEVELS levels spread evenly over it (0, 1, T // 3, T // 2, 2T // 3 and T included)."""
    if T + 1 <= _MAX_LEVELS:
        return list(range(T + 1))
    spread = {round(i * T / (_MAX_LEVELS - 1)) for i in range(_MAX_LEVELS)}
    return sorted(spread | {0, 1, T // 3, T // 2, (2 * T) // 3, T})


def _rms_from(x: torch.Tensor, x0: torch.Tensor) -> float:
    """Mean over the images of the root-mean-square difference x - x0 (in the [-1, 1] units)."""
    return float((x.double() - x0.double()).pow(2).flatten(1).mean(1).sqrt().mean())


def check(D, x0: Optional[torch.Tensor] = None) -> Tuple[List[str], str]:
    """Check that ``D`` follows the contract of :class:`colddiff_lib.degradations.Degradation`.

    It checks that ``D`` has ``T >= 1``; that ``D(x0, 0)`` returns ``x0`` exactly; that ``D(x0, t)``
    keeps the shape and dtype of ``x0`` (float32 and float64), returns finite values and leaves
    ``x0`` unchanged; that ``t`` may be an int or a ``LongTensor[B]`` holding a different level per
    image (image i of ``D(x0, t)`` must equal image i of ``D(x0, int(t[i]))``); that ``t = T + 1``
    and ``t = -1`` raise ``ValueError``; that two calls give the same images (for a random ``D``,
    after :meth:`~colddiff_lib.degradations.Degradation.freeze`); that the images move away from
    ``x0`` as ``t`` grows (the mean root-mean-square distance to ``x0`` never falls by more than 2 %
    of its largest value from one level to the next, and is not ~0 at every level); and, where ``D``
    says so, that it is linear (``D.linear``) and compositional (``D.compositional``:
    ``D.step(D(x0, t - 1), t) == D(x0, t)``).

    Args:
        D: an instance of a :class:`~colddiff_lib.degradations.Degradation` subclass.
        x0: test images [B, C, H, W] in [-1, 1] with B >= 2, or ``None`` for eight held-out digits
            [8, C, 32, 32] (C = ``D.channels``, or 1).
    It also checks that ``D`` has a registry name and that ``build(**D.config())`` rebuilds an
    operator that gives the same images: what a checkpoint needs to save and reload it.

    Returns:
        ``(problems, summary)``: the problems found (empty when ``D`` keeps the contract), each one
        sentence saying what to change, and a one-line summary of what was checked.
    Raises:
        ValueError: if ``D`` is not a Degradation instance (a class, a function...) or ``x0`` is not
            a batch of at least two images.
    """

    x0 = _test_images(D, x0)
    problems: List[str] = []
    name = type(D).__name__
    T = getattr(D, "T", None)
    if not is_int(T) or T < 1:
        problems.append(
            f"D.T must be a positive int (the number of steps), got {T!r}: call "
            f"super().__init__(T, channels) at the start of {name}.__init__"
        )
        return problems, ""
    random = bool(getattr(D, "random", False))
    Dz = D
    if random:
        Dz = _call(
            lambda: D.freeze(x0, torch.Generator().manual_seed(0)),
            "D.freeze(x0, generator)",
            problems,
        )
        if Dz is None:
            return problems, ""
    levels = _levels(T)
    outs = _outputs(Dz, x0, levels, problems)
    if problems:
        return problems, ""
    mid = max(1, T // 2)
    _check_float64(Dz, x0, mid, problems)
    _check_levels_per_image(Dz, x0, outs, problems)
    _check_range_refused(Dz, x0, T, problems)
    _check_repeatable(Dz, x0, outs, mid, random, problems)
    d_T = _check_moves_away(x0, outs, levels, problems)
    _check_flags(D, Dz, x0, outs, mid, problems)
    _check_export_form(D, x0, outs, mid, problems)
    _check_rebuilds(D, x0, outs, mid, random, problems)
    flags = [
        f"linear = {bool(getattr(D, 'linear', False))}",
        f"compositional = {bool(getattr(D, 'compositional', False))}",
        f"random = {random}",
    ]
    summary = (
        f"{name} (T = {T}; {', '.join(flags)}) returns x0 at t = 0, keeps shapes and dtypes, takes int "
        f"and LongTensor[B] levels, refuses t outside 0..T, and moves away from x0 as t grows (mean RMS "
        f"distance at T: {d_T:.3f})."
    )
    return problems, summary


def _test_images(D, x0: Optional[torch.Tensor]) -> torch.Tensor:
    """The images the contract is checked on (``x0``, or eight held-out digits), after checking ``D`` is an
    instance of a Degradation subclass (ValueError otherwise)."""
    if isinstance(D, type):
        raise ValueError(
            f"D must be an instance of a Degradation subclass, got the class {D.__name__} itself: "
            f"pass an instance, e.g. {D.__name__}(T=10)"
        )
    if not isinstance(D, Degradation):
        raise ValueError(
            f"D must be an instance of a subclass of colddiff_lib.degradations.Degradation, got "
            f"{type(D).__name__}: subclass dg.Degradation and override degrade(x0, t)"
        )
    if x0 is None:
        return _default_images(getattr(D, "channels", None))
    check_images(x0, "x0")
    if x0.shape[0] < 2:
        raise ValueError(
            f"x0 must hold at least two images (to test a different t per image), got {x0.shape[0]}"
        )
    return x0.detach().float().clone()


def _outputs(Dz, x0: torch.Tensor, levels: List[int], problems: List[str]) -> dict:
    """``{t: D(x0, t)}`` at every level measured, each checked for shape, dtype and finite values; then
    t = 0 must return x0 exactly, and x0 must be left as it was."""
    original = x0.clone()
    outs = {}
    for t in levels:
        out = _call(lambda: Dz(x0, t), f"D(x0, {t})", problems)
        if out is None:
            _explain_shape(Dz, x0, t, problems)
            break
        if not isinstance(out, torch.Tensor):
            problems.append(f"D(x0, {t}) returned {type(out).__name__}, not a tensor")
            break
        if out.shape != x0.shape:
            problems.append(
                f"D(x0, {t}) has shape {tuple(out.shape)} but x0 has shape {tuple(x0.shape)}: "
                f"a degradation keeps the shape of its input"
            )
            break
        if out.dtype != x0.dtype:
            problems.append(
                f"D(x0, {t}) has dtype {out.dtype} but x0 has dtype {x0.dtype}: keep the dtype"
            )
            break
        if not torch.isfinite(out).all():
            problems.append(f"D(x0, {t}) holds NaN or infinite values")
            break
        outs[t] = out
    if 0 in outs and not torch.equal(outs[0], x0):
        diff = float((outs[0] - x0).abs().max())
        problems.append(
            f"D(x0, 0) differs from x0 (max |diff| = {diff:.3g}); it must return x0 exactly. Override "
            f"degrade(x0, t) rather than __call__: the base class keeps t = 0 exact"
        )
    if not torch.equal(x0, original):
        problems.append(
            "D changed x0 in place (for example with x0.mul_(...) or x0[...] = ...): work on a copy"
        )
        x0.copy_(original)
    return outs


def _check_float64(Dz, x0, mid: int, problems: List[str]) -> None:
    """float64 in, float64 out."""
    out64 = _call(lambda: Dz(x0.double(), mid), f"D(x0.double(), {mid})", problems)
    if out64 is not None and getattr(out64, "dtype", None) != torch.float64:
        problems.append(
            f"D(x0.double(), {mid}) has dtype {getattr(out64, 'dtype', type(out64).__name__)}: "
            f"float64 images must stay float64"
        )


def _check_levels_per_image(Dz, x0, outs: dict, problems: List[str]) -> None:
    """A LongTensor[B] of different levels: image i must be D(x0, t_i)[i]."""
    T, B = Dz.T, x0.shape[0]
    mid = max(1, T // 2)
    pool = [
        t for t in (1, mid, T, max(1, T // 3), max(1, (2 * T) // 3), 0) if t in outs
    ] or [T]
    t_vec = torch.tensor([pool[i % len(pool)] for i in range(B)], dtype=torch.long)
    out_vec = _call(
        lambda: Dz(x0, t_vec),
        f"D(x0, t) with t = {t_vec.tolist()} (a LongTensor[B])",
        problems,
    )
    if isinstance(out_vec, torch.Tensor) and out_vec.shape == x0.shape:
        for i in range(B):
            ref = outs[int(t_vec[i])][i]
            diff = float((out_vec[i] - ref).abs().max())
            if diff > 1e-4 * (1 + float(ref.abs().max())):
                problems.append(
                    f"with t = {t_vec.tolist()} (a LongTensor[B]), image {i} differs from D(x0, "
                    f"{int(t_vec[i])})[{i}] (max |diff| = {diff:.3g}): degrade() gets one level per "
                    f"image; use each image's own t (e.g. t.view(-1, 1, 1, 1)), not t[0] or t.max()"
                )
                break
    elif out_vec is not None:
        problems.append(
            f"D(x0, t) with a LongTensor t returned {type(out_vec).__name__} of shape "
            f"{tuple(getattr(out_vec, 'shape', ()))}, not images shaped like x0"
        )


def _check_range_refused(Dz, x0, T: int, problems: List[str]) -> None:
    """Levels outside 0..T are refused with a ValueError."""
    for bad in (T + 1, -1):
        try:
            Dz(x0, bad)
        except ValueError:
            pass
        except Exception as err:
            problems.append(
                f"D(x0, {bad}) raised {type(err).__name__} ({err}); it must raise ValueError "
                f"(t lies in 0..T = 0..{T})"
            )
        else:
            problems.append(
                f"D(x0, {bad}) returned images; it must raise ValueError (t lies in 0..T = 0..{T}). "
                f"The base class checks t if you override degrade() and not __call__"
            )


def _check_repeatable(
    Dz, x0, outs: dict, mid: int, random: bool, problems: List[str]
) -> None:
    """Two calls, the same images (a random D once frozen)."""
    again = _call(lambda: Dz(x0, mid), f"D(x0, {mid}) (a second call)", problems)
    if (
        isinstance(again, torch.Tensor)
        and again.shape == x0.shape
        and not torch.allclose(again, outs[mid], atol=1e-6)
    ):
        if random:
            problems.append(
                f"two calls of the frozen D(x0, {mid}) gave different images: draw the random "
                f"quantities in freeze_state() and use those in degrade()"
            )
        else:
            problems.append(
                f"two calls of D(x0, {mid}) gave different images: if D draws random numbers, set "
                f"random = True and draw them in freeze_state() (samplers freeze D)"
            )


def _check_moves_away(x0, outs: dict, levels: List[int], problems: List[str]) -> float:
    """The images move away from x0 as t grows; returns the mean RMS distance at T."""
    dist = {t: _rms_from(outs[t], x0) for t in levels}
    d_max = max(dist.values())
    if d_max < 1e-3:
        problems.append(
            f"D(x0, t) is almost x0 at every t (mean RMS distance at most {d_max:.2g}): the images "
            f"should change with t"
        )
    else:
        tol = 0.02 * d_max
        for a, b in zip(levels, levels[1:]):
            if dist[b] < dist[a] - tol:
                problems.append(
                    f"the distance from x0 should grow with t (on average over the images), but it "
                    f"falls from {dist[a]:.3f} at t = {a} to {dist[b]:.3f} at t = {b}"
                )
                break
    return dist[levels[-1]]


def _check_flags(D, Dz, x0, outs: dict, mid: int, problems: List[str]) -> None:
    """``linear`` and ``compositional``, where D claims them."""
    if getattr(D, "linear", False):
        y0 = x0.flip(0)  # other images of the same shape
        lhs = _call(
            lambda: Dz(0.6 * x0 - 0.3 * y0, mid),
            "D(a x + b y, t) (D.linear is True)",
            problems,
        )
        if isinstance(lhs, torch.Tensor):
            diff = float((lhs - (0.6 * outs[mid] - 0.3 * Dz(y0, mid))).abs().max())
            if diff > 1e-4:
                problems.append(
                    f"D.linear is True, but D(a x + b y, t) differs from a D(x, t) + b D(y, t) by up to "
                    f"{diff:.3g}: set linear = False (an offset, a clamp or a rounding is not linear)"
                )
    if getattr(D, "compositional", False):
        for t in sorted({1, mid, D.T}):
            stepped = _call(
                lambda: Dz.step(Dz(x0, t - 1), t),
                f"D.step(D(x0, {t - 1}), {t}) (D.compositional is True)",
                problems,
            )
            if stepped is None:
                problems.append(
                    "a compositional degradation overrides step_op(x, t), one step applied to "
                    "x = D(x0, t - 1); write it, or set compositional = False"
                )
                break
            diff = float((stepped - outs[t]).abs().max())
            if diff > 1e-4:
                problems.append(
                    f"D.compositional is True, but D.step(D(x0, {t - 1}), {t}) differs from D(x0, {t}) by "
                    f"up to {diff:.3g}"
                )
                break


def _check_export_form(D, x0, outs: dict, mid: int, problems: List[str]) -> None:
    """A separable operator hands its per-axis matrices to the in-page sampler (colddiff_lib.export): they
    must reproduce D."""
    H, W = x0.shape[-2:]
    form = _call(lambda: D.export_form, "D.export_form", problems)
    if form not in (None, "separable"):
        problems.append(f"D.export_form must be 'separable' or None, got {form!r}")
    if form != "separable" or H != W:
        return
    mats = _call(
        lambda: D.axis_matrices(H, dtype=x0.dtype),
        "D.axis_matrices(n) (D.export_form is 'separable')",
        problems,
    )
    if mats is not None and not isinstance(mats, torch.Tensor):
        problems.append(
            f"D.axis_matrices(n) returned {type(mats).__name__}, not a tensor [T + 1, n, n]"
        )
        return
    for t in sorted({1, mid, D.T}) if mats is not None else ():
        diff = float((mats[t] @ x0 @ mats[t].T - outs[t]).abs().max())
        if diff > 1e-4:
            problems.append(
                f"D.axis_matrices(n)[{t}] does not reproduce D(x0, {t}) as M x0 M^T (max |diff| "
                f"= {diff:.3g}): return the per-axis matrices, or leave axis_matrices out"
            )
            break


def _check_rebuilds(
    D, x0, outs: dict, mid: int, random: bool, problems: List[str]
) -> None:
    """Saved and rebuilt from its config, as a checkpoint does: a registry name, and ``build(**D.config())``
    giving the same images."""
    name = type(D).__name__
    if type(D).name is None:
        problems.append(
            f"{name} has no registry name, so a checkpoint cannot save it: declare the class as "
            f'class {name}(Degradation, name="...")'
        )
        return
    config = _call(D.config, "D.config()", problems)
    if config is None:
        return
    from . import build

    rebuilt = _call(
        lambda: build(**config), f"build(**D.config()) with config {config}", problems
    )
    if rebuilt is not None:
        Dr = rebuilt.freeze(x0, torch.Generator().manual_seed(0)) if random else rebuilt
        same = _call(lambda: Dr(x0, mid), f"the rebuilt D(x0, {mid})", problems)
        if isinstance(same, torch.Tensor) and not torch.allclose(
            same, outs[mid], atol=1e-6
        ):
            problems.append(
                f"build(**D.config()) gives other images than D at t = {mid}: the constructor "
                f"must depend on its arguments only (config {config})"
            )
