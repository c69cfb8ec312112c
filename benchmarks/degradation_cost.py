#!/usr/bin/env python
"""Cost of D(x0, t) at t = 1, ceil(T/2) and T: the library's closed form against the step-by-step definition.

For every degradation of :mod:`colddiff_lib.degradations` this script times ``D(x0, t)`` at three
levels and, for the compositional ones (``D.compositional`` is True: blur, inpainting,
super-resolution with area downsampling), the step-by-step definition the paper's code uses::

    x = x0
    for i in range(1, t + 1):
        x = D.step(x, i)          # t operator applications: O(t)

It also prints the largest absolute difference between the two results (rounding only, ~1e-6).
Snow, noise and blend have no step-by-step form: D(x0, t) is their definition.

Settings (printed with the results):

* 32 px: batch 32, 1 channel (MNIST-like); 128 px: batch 8, 3 channels (CelebA-like);
* blur, T = 300: at 32 px kernel 11, constant std 7 (MNIST-like);
  at 128 px kernel 27, exponential schedule with std 0.01 and the last step replaced by the
  per-channel mean (the paper's 128 px generation setting); each with circular and reflect padding;
* inpainting, T = 50, fixed centre: std 0.1 at 32 px, 0.4 at 128 px (the same hole, relative to the image);
* super-resolution, area mode: T = 3 at 32 px, T = 5 at 128 px (down to 4 x 4 pixels of information);
* snow, noise and blend, T = 200 (blend toward 16 random target images); frozen for the batch,
  as a sampler uses them, so the timed call draws nothing.

Timing: one warm-up call (which also gives the result compared), then the median of repeated calls,
as many as fit in about a second (at least 5, at most 200; ``--quick``: 0.2 s, 3 to 20). Calls that
take more than half a second (the step-by-step blur at large t) are repeated only 3 times (``--quick``:
once), the warm-up call counting as one. The one-time costs (the blur's composed matrices, the
inpainting masks, freezing the random degradations) are timed separately, once.

Usage::

    .venv/bin/python benchmarks/degradation_cost.py [--device cpu|cuda] [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

# run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colddiff_lib.runtime import cpu_model  # noqa: E402
from colddiff_lib.degradations import (
    Blend,
    GaussianBlur,
    GaussianNoise,
    Inpainting,
    Snow,
    SuperResolution,
)  # noqa: E402

SIZES = {32: dict(batch=32, channels=1), 128: dict(batch=8, channels=3)}
SLOW_S = 0.5  # a call slower than this is repeated only a few times


def machine_lines(device: torch.device) -> list:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    lines = [
        f"- date: {datetime.date.today().isoformat()}",
        f"- CPU: {cpu_model()} ({platform.machine()}), {os.cpu_count()} logical cores ({usable} usable)",
        f"- torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, Python {platform.python_version()}",
        f"- device: {device}",
    ]
    if device.type == "cuda":
        lines.append(
            f"- GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
        )
    if hasattr(os, "getloadavg"):
        lines.append(
            "- load average at start (1, 5, 15 min): "
            + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        )
        if device.type == "cpu" and os.getloadavg()[0] > usable - 0.5:
            lines.append(
                f"- WARNING: the machine is busy (load {os.getloadavg()[0]:.1f} on {usable} cores). With several "
                "threads a small operation waits for every thread at its barrier, and a thread the system "
                "has set aside costs a whole time slice (milliseconds): expect erratic figures, or use "
                "--threads 1"
            )
    return lines


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def once(fn, device):
    """Run ``fn`` once; return (seconds, result)."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def measure(fn, device, quick: bool):
    """Warm up, then time ``fn``: return (median ms, repetitions, result of the warm-up call)."""
    budget, lo, hi, slow_reps = (0.2, 3, 20, 1) if quick else (1.0, 5, 200, 3)
    first, out = once(fn, device)
    if first > SLOW_S:
        times = [first] + [once(fn, device)[0] for _ in range(slow_reps - 1)]
    else:
        reps = int(min(hi, max(lo, budget / max(first, 1e-6))))
        times = [once(fn, device)[0] for _ in range(reps)]
    return statistics.median(times) * 1e3, len(times), out


def step_by_step(D, x0, t: int) -> torch.Tensor:
    """The definition of a compositional degradation: t single steps from x0."""
    x = x0
    for i in range(1, t + 1):
        x = D.step(x, i)
    return x


def degradations(size: int, channels: int, device: torch.device):
    """(name, setting, degradation) for one image size."""
    if size <= 32:
        blur = dict(T=300, kernel_size=11, std=7.0, schedule="constant")
        blur_text = "T=300, kernel 11, constant std 7"
        inpaint_std, sr_T = 0.1, 3
    else:
        blur = dict(
            T=300, kernel_size=27, std=0.01, schedule="exponential", collapse_at_T=True
        )
        blur_text = "T=300, kernel 27, exponential std 0.01, mean at T"
        inpaint_std, sr_T = 0.1 * size / 32, 5
    g = torch.Generator().manual_seed(1)
    targets = (torch.rand(16, channels, size, size, generator=g) * 2 - 1).to(device)
    return [
        ("blur circular", blur_text, GaussianBlur(padding="circular", **blur)),
        ("blur reflect", blur_text, GaussianBlur(padding="reflect", **blur)),
        (
            "inpainting",
            f"T=50, std {inpaint_std:g}, fixed centre",
            Inpainting(T=50, std=inpaint_std),
        ),
        ("super-resolution", f"T={sr_T}, area", SuperResolution(T=sr_T, mode="area")),
        ("snow", "T=200, frozen", Snow(T=200)),
        ("noise", "T=200, cosine, frozen", GaussianNoise(T=200)),
        ("blend", "T=200, cosine, 16 targets, frozen", Blend(targets, T=200)),
    ]


def setup_cost(name, D, x0, device):
    """Time the one-time work of a fresh degradation; return (what, ms, D ready to time)."""
    if isinstance(D, GaussianBlur):
        n = x0.shape[-1]
        s, _ = once(lambda: D.composed_matrices(n, x0.device, x0.dtype), device)
        return (
            f"composed matrices M_0..M_T ({D.T + 1} x {n} x {n}, built in float64)",
            s * 1e3,
            D,
        )
    if isinstance(D, Inpainting):
        # the first call builds and caches the T + 1 cumulative masks
        s, _ = once(lambda: D(x0, 1), device)
        return (
            f"cumulative masks ({D.T + 1} x {x0.shape[-2]} x {x0.shape[-1]}, float64; first call)",
            s * 1e3,
            D,
        )
    if D.random:
        g = torch.Generator().manual_seed(0)
        s, frozen = once(lambda: D.freeze(x0, g), device)
        return "freeze (draw the random state for the batch)", s * 1e3, frozen
    return None, None, D


def fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions (rough figures in about a minute on 2 cores)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print("# Cost of D(x0, t): closed form vs step-by-step\n")
    print("\n".join(machine_lines(device)))
    print(
        f"- repetitions: {'quick' if args.quick else 'full'} (median of repeated calls after one warm-up call)\n"
    )

    rows, setups, settings = [], [], []
    wall = time.perf_counter()
    with torch.inference_mode():
        for size, spec in SIZES.items():
            g = torch.Generator().manual_seed(0)
            x0 = (
                torch.rand(spec["batch"], spec["channels"], size, size, generator=g) * 2
                - 1
            ).to(device)
            for name, setting, D in degradations(size, spec["channels"], device):
                settings.append((name, size, setting))
                what, ms, D = setup_cost(name, D, x0, device)
                if what is not None:
                    setups.append((name, size, what, ms))
                for t in sorted({1, (D.T + 1) // 2, D.T}):
                    closed_ms, _, closed = measure(lambda: D(x0, t), device, args.quick)
                    if D.compositional:
                        step_ms, _, stepped = measure(
                            lambda: step_by_step(D, x0, t), device, args.quick
                        )
                        diff = (closed.double() - stepped.double()).abs().max().item()
                        row = (
                            name,
                            size,
                            t,
                            fmt_ms(closed_ms),
                            fmt_ms(step_ms),
                            f"{step_ms / closed_ms:.1f}x",
                            f"{diff:.1e}",
                        )
                    else:
                        row = (
                            name,
                            size,
                            t,
                            fmt_ms(closed_ms),
                            "no step-by-step form",
                            "—",
                            "—",
                        )
                    rows.append(row)
                    print(
                        f"  measured {name} {size} px t={t}",
                        file=sys.stderr,
                        flush=True,
                    )

    batch = {
        size: f"batch {s['batch']} x {s['channels']} channel{'s' if s['channels'] > 1 else ''}"
        for size, s in SIZES.items()
    }
    print(
        "Settings: " + "; ".join(f"{size} px: {b}" for size, b in batch.items()) + ".\n"
    )
    print("| degradation | size | setting |")
    print("|---|---|---|")
    for name, size, setting in settings:
        print(f"| {name} | {size} px | {setting} |")

    print("\n## D(x0, t)\n")
    print(
        "| degradation | size | t | closed form ms | step-by-step ms | speed-up | max \\|diff\\| |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, size, t, c, s, up, d in rows:
        print(f"| {name} | {size} px | {t} | {c} | {s} | {up} | {d} |")

    print(
        "\n## One-time costs (once per degradation, size and device; freeze: once per batch)\n"
    )
    print("| degradation | size | what | ms |")
    print("|---|---:|---|---:|")
    for name, size, what, ms in setups:
        print(f"| {name} | {size} px | {what} | {fmt_ms(ms)} |")

    tail = f"\nTotal run time {time.perf_counter() - wall:.0f} s"
    if hasattr(os, "getloadavg"):
        tail += "; load average at end (1, 5, 15 min): " + ", ".join(
            f"{v:.2f}" for v in os.getloadavg()
        )
    print(tail + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
