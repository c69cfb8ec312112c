#!/usr/bin/env python
"""Wall time of every chapter of the book, executed with its default parameters (or with QUICK=True).

The book promises that each chapter runs on a 2-core CPU in under 3 minutes with its defaults
(pretrained models, small live runs). This script measures it: it executes each notebook of
``book/`` in a fresh kernel with papermill, in the notebook's folder, and prints the seconds each one
took, with the machine and the number of torch threads. Executed copies go to a temporary folder.

    .venv/bin/python benchmarks/notebook_times.py                  # defaults, every chapter
    .venv/bin/python benchmarks/notebook_times.py --quick          # QUICK=True (the tests' setting)
    .venv/bin/python benchmarks/notebook_times.py 03_restoration   # some chapters only

Kernel start-up is included (about two seconds), as it is for a reader pressing "run all".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 180.0  # the book's promise for a chapter with its defaults


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "chapters",
        nargs="*",
        help="notebook names without .ipynb (default: every notebook in book/)",
    )
    p.add_argument(
        "--quick", action="store_true", help="run with QUICK=True, as the tests do"
    )
    args = p.parse_args(argv)

    import papermill

    from colddiff_lib.zoo.build import machine

    paths = sorted((ROOT / "book").glob("*.ipynb"))
    if args.chapters:
        known = {path.stem: path for path in paths}
        unknown = [c for c in args.chapters if c not in known]
        if unknown:
            p.error(f"chapters must be among {sorted(known)}, got {unknown}")
        paths = [known[c] for c in args.chapters]
    print(
        f"machine: {machine()}, python {sys.version.split()[0]}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"parameters: QUICK={args.quick}, FULL_TRAINING=False, DEVICE='cpu'\n")
    print(f"{'chapter':32s} {'seconds':>8s}")
    total, over = 0.0, []
    with tempfile.TemporaryDirectory() as out:
        for path in paths:
            start = time.perf_counter()
            papermill.execute_notebook(
                str(path),
                str(Path(out) / path.name),
                cwd=str(path.parent),
                kernel_name="python3",
                progress_bar=False,
                parameters={
                    "QUICK": args.quick,
                    "FULL_TRAINING": False,
                    "DEVICE": "cpu",
                },
            )
            seconds = time.perf_counter() - start
            total += seconds
            if seconds > LIMIT_S:
                over.append(path.stem)
            print(f"{path.stem:32s} {seconds:8.1f}", flush=True)
    print(f"{'all':32s} {total:8.1f}")
    print(f"over {LIMIT_S:.0f} s: {', '.join(over) if over else 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
