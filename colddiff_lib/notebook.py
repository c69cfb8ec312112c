"""The book's notebook parameters, checked where a chapter starts.

Every chapter has a ``parameters`` cell (papermill and Colab users change it)::

    FULL_TRAINING = False  # True: train from scratch (wants a GPU)
    DEVICE = "auto"        # "auto", "cpu", "cuda", "cuda:N" or "mps"
    QUICK = False          # True: smallest sizes (the book's tests)

and its first code cell calls :func:`check_parameters`, so that a bad value stops the chapter at
once with a message naming the parameter, not somewhere later with a traceback.
"""

from __future__ import annotations

import torch

from .runtime import resolve_device


def check_parameters(FULL_TRAINING=False, DEVICE="auto", QUICK=False, **flags) -> torch.device:  # noqa: N803
    """Check a chapter's parameters and return the torch device that ``DEVICE`` names.

    ``FULL_TRAINING``, ``QUICK`` and any other keyword in ``flags`` must be True or False.
    Raises ValueError naming the parameter, its value and what was expected.
    """
    for name, value in {"FULL_TRAINING": FULL_TRAINING, "QUICK": QUICK, **flags}.items():
        if not isinstance(value, bool):
            raise ValueError(f"notebook parameter {name} = {value!r}: expected True or False")
    if not isinstance(DEVICE, str):
        raise ValueError(f"notebook parameter DEVICE = {DEVICE!r}: expected a string such as 'auto', 'cpu' or 'cuda'")
    try:
        return resolve_device(DEVICE)
    except ValueError as err:
        raise ValueError(f"notebook parameter DEVICE = {DEVICE!r}: {err}") from None
