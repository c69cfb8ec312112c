#!/usr/bin/env python
"""Algorithm 2 on a coarser grid of levels: reconstruction quality against the number of calls of R.

For each shipped reconstruction model, the held-out digits are degraded to level T and restored by the
direct estimate R(x_T, T) (one call) and by Algorithm 2 on the grid ``level_grid(T, k)`` (k calls of R,
``colddiff_lib.sampling.sample(levels=...)``), for k from 1 to T. k = T is the paper's Algorithm 2, the
tables' row; k = 1 is one step x_T -> x_T - D(R(x_T), T) + R(x_T), the direct estimate itself up to
rounding. The question it answers: does Algorithm 2 lose quality because each of its T estimates
adds error (fewer, longer steps would then lose less), or because of the size of its steps?

Prints one line per (model, k): per-image RMSE and SSIM on [0, 1] (the tables' conventions), the seconds
the restoration took, and the machine.

Usage::

    .venv/bin/python benchmarks/level_grid.py [--n 1000] [--names mnist-blur mnist-superres]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

# run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colddiff_lib import zoo  # noqa: E402
from colddiff_lib.data import load_dataset  # noqa: E402
from colddiff_lib.evaluation import reconstruct  # noqa: E402
from colddiff_lib.metrics import rmse, ssim  # noqa: E402
from colddiff_lib.runtime import machine  # noqa: E402
from colddiff_lib.sampling import level_grid  # noqa: E402


def steps_to_try(T: int) -> list:
    """1, 2, 3, 4, 5, 10 and T calls, those that fit in T."""
    return sorted({k for k in (1, 2, 3, 4, 5, 10, T) if k <= T})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="held-out digits")
    p.add_argument(
        "--names",
        nargs="+",
        default=["mnist-blur", "mnist-superres", "mnist-inpaint"],
        help="shipped reconstruction models",
    )
    args = p.parse_args(argv)
    torch.manual_seed(0)
    x0 = load_dataset("mnist5k", split="test").images[: args.n]
    print(f"{args.n} held-out digits on {machine()}, {torch.get_num_threads()} threads")
    print(
        f"{'model':16s} {'method':34s} {'calls':>5s} {'RMSE':>7s} {'SSIM':>7s} {'s':>6s}"
    )

    def report(name, method, calls, restore):
        start = time.perf_counter()
        y = restore()
        seconds = time.perf_counter() - start
        print(
            f"{name:16s} {method:34s} {calls:5d} {rmse(y, x0):7.4f} {ssim(y, x0):7.4f} "
            f"{seconds:6.1f}",
            flush=True,
        )

    for name in args.names:
        R, D = zoo.load_pretrained(name)
        report(
            name,
            "direct",
            1,
            lambda: reconstruct(R, D, x0, methods=["direct"])["direct"],
        )
        for k in steps_to_try(D.T):
            grid = level_grid(D.T, k)
            shown = ", ".join(map(str, grid)) if k <= 5 else f"every {D.T // k}"
            report(
                name,
                f"Algorithm 2, {shown}",
                k,
                lambda: reconstruct(R, D, x0, methods=["improved"], levels=grid)[
                    "improved"
                ],
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
