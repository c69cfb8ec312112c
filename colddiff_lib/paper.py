"""The paper's numbers, read from ``colddiff_lib/paper.toml``, the one file they are written in.

``PAPER`` is the whole file as nested dicts (``PAPER["training"]["steps"]``,
``PAPER["networks"]["convnext"]["parameters"]``, ``PAPER["degradations"]["blur"]["mnist"]["T"]``...);
:func:`mnist_reconstruction` is its MNIST table in the shape :mod:`colddiff_lib.reproduce` uses
(``reproduce.PAPER_MNIST``). The book's chapters glue these values into their prose, so that a number of
the paper is typed once, here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Dict, Tuple

FILE = Path(__file__).with_name("paper.toml")
#: The order of a row of the paper's MNIST table.
MEASURES = ("fid", "ssim", "rmse")


def load(path=FILE) -> dict:
    """The paper's numbers: ``paper.toml`` (or another file of the same shape) as nested dicts."""
    with open(path, "rb") as f:
        return tomllib.load(f)


PAPER = load()


def mnist_reconstruction(
    paper: dict = PAPER,
) -> Dict[str, Dict[str, Tuple[float, float, float]]]:
    """``{model: {method: (fid, ssim, rmse)}}`` of the paper's MNIST reconstruction table, with the zoo's
    model names and the samplers' method keys (``degraded``, ``improved``, ``direct``)."""
    return {
        model: {
            method: tuple(float(row[m]) for m in MEASURES)
            for method, row in methods.items()
        }
        for model, methods in paper["mnist"]["reconstruction"].items()
    }


def millions(parameters: float) -> str:
    """``56.6e6`` -> ``"56.6M"``: a parameter count as the book writes it."""
    return f"{parameters / 1e6:.1f}M"
