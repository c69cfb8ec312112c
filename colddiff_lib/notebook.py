"""The book's notebook parameters, checked where a chapter starts.

Every chapter has a ``parameters`` cell (papermill and Colab users change it)::

    FULL_TRAINING = False  # True: train from scratch (wants a GPU)
    DEVICE = "auto"        # "auto", "cpu", "cuda", "cuda:N" or "mps"
    QUICK = False          # True: smallest sizes (the book's tests)

and its first code cell calls :func:`check_parameters`, so that a bad value stops the chapter at
once with a message naming the parameter, not somewhere later with a traceback. A name that
papermill injects (``-p quick True``) but the parameters cell does not set stops it too: papermill
itself only warns, and the chapter would run with its defaults.
"""

from __future__ import annotations

import ast
from typing import List, Optional, Tuple

import torch

from .checks import did_you_mean
from .runtime import resolve_device

# : The first line of the cell papermill injects after the parameters cell (its Python
# translator's comment).
INJECTED_HEADER = "# Parameters"


def _assigned(code: str) -> Optional[List[str]]:
    """The names a cell of plain assignments sets, in order; None if it is anything else."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    names = []
    for node in tree.body:
        if not isinstance(node, ast.Assign) or not all(
            isinstance(t, ast.Name) for t in node.targets
        ):
            return None
        names += [t.id for t in node.targets]
    return names


def injected_parameters(history: List[str]) -> Optional[Tuple[List[str], List[str]]]:
    """``(injected, documented)`` names when the last papermill-injected cell of ``history`` (the kernel's
    inputs, oldest first) directly follows a parameters cell (one that sets ``FULL_TRAINING``); None
    when no parameters were injected that way (a reader's own Jupyter session, Colab, plain Python)."""
    for k in range(len(history) - 1, 0, -1):
        if history[k].lstrip().startswith(INJECTED_HEADER):
            injected, documented = _assigned(history[k]), _assigned(history[k - 1])
            if injected is None or not documented or "FULL_TRAINING" not in documented:
                return None
            return injected, documented
    return None


def _kernel_history() -> List[str]:
    """The inputs this IPython kernel has run, oldest first ([] outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with every notebook kernel
        return []
    shell = get_ipython()
    if shell is None:
        return []
    return [str(code) for code in (shell.user_ns.get("In") or [])]


def check_injected_names(history: Optional[List[str]] = None) -> None:
    """Raise ValueError when papermill injected a name that the chapter's parameters cell does not set.

    ``history`` defaults to the running kernel's inputs (``In``).
    """
    found = injected_parameters(_kernel_history() if history is None else history)
    if found is None:
        return
    injected, documented = found
    for name in injected:
        if name not in documented:
            raise ValueError(
                f"notebook parameter {name} (injected with papermill -p): not a parameter of this "
                f"chapter, expected one of {', '.join(documented)}{did_you_mean(name, documented, 0.5)}"
            )


def check_parameters(
    FULL_TRAINING=False, DEVICE="auto", QUICK=False, **flags
) -> torch.device:  # noqa: N803
    """Check a chapter's parameters and return the torch device that ``DEVICE`` names.

    ``FULL_TRAINING``, ``QUICK`` and any other keyword in ``flags`` must be True or False, and every
    name papermill injected must be one that the parameters cell sets (:func:`check_injected_names`).
    Raises ValueError naming the parameter, its value and what was expected.
    """
    check_injected_names()
    for name, value in {
        "FULL_TRAINING": FULL_TRAINING,
        "QUICK": QUICK,
        **flags,
    }.items():
        if not isinstance(value, bool):
            raise ValueError(
                f"notebook parameter {name} = {value!r}: expected True or False"
            )
    if not isinstance(DEVICE, str):
        raise ValueError(
            f"notebook parameter DEVICE = {DEVICE!r}: expected a string such as 'auto', 'cpu' or 'cuda'"
        )
    try:
        return resolve_device(DEVICE)
    except ValueError as err:
        raise ValueError(f"notebook parameter DEVICE = {DEVICE!r}: {err}") from None
