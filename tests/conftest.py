"""Shared test fixtures and helpers."""

import json
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two OpenMP threads
    can make a convolution 100x slower (measured): run a module single-threaded, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def library_degradations() -> dict:
    """``{name: class}`` of the library's own registered degradations, read from the registry (test modules
    register toy classes of their own): every test that goes over "each degradation" derives its list here,
    so that a degradation added as one module is tested with no edit to the tests (CONTRIBUTING.md)."""
    from colddiff_lib import degradations as dg

    return {
        name: cls
        for name, cls in sorted(dg.REGISTRY.items())
        if cls.__module__.startswith("colddiff_lib.")
    }


def quick_instance(cls):
    """A degradation of class ``cls`` built from its defaults with at most 20 levels (quick to test)."""
    return cls(T=min(20, cls().T))


def notebook_cells(path) -> list:
    """The cells of the notebook at ``path`` (a str or Path), as nbformat dicts."""
    return json.loads(Path(path).read_text())["cells"]


def cell_source(cell) -> str:
    """A notebook cell's source as one string: nbformat stores a list of lines or a string, and the
    committed notebooks use the list (ruff format writes it)."""
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)
