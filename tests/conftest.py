"""Shared test fixtures."""

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
