"""Checkpoints and result files, written atomically so that an interruption never loses one.

A file is written to a temporary name in the same folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows): readers see the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

import torch

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)``, atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def write_text_atomic(text: str, path: PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def load_checkpoint(path: PathLike, map_location="cpu") -> dict:
    """Load a training checkpoint written by :func:`colddiff_lib.training.train`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=False)


def restore(path_or_checkpoint, use_ema: bool = True, device="cpu", targets=None):
    """Rebuild ``(model, degradation)`` from a checkpoint (a path or a loaded dict).

    Args:
        use_ema: load the EMA weights (the ones to sample with) rather than the raw ones.
        targets: the second image set, for a :class:`~colddiff_lib.degradations.Blend` checkpoint
            (by default reloaded from the data source named in the checkpoint).
    Returns:
        (UNet in eval mode on ``device``, degradation).
    """
    from . import degradations as dg
    from .models import UNet

    ckpt = path_or_checkpoint if isinstance(path_or_checkpoint, dict) else load_checkpoint(path_or_checkpoint)
    model = UNet(**ckpt["model_config"])
    state = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    model.load_state_dict(state)
    model.eval().to(device)
    dcfg = dict(ckpt["degradation"])
    if dcfg.get("name") == "blend" and targets is None:
        from .data import blend_targets
        targets = blend_targets(**ckpt.get("blend_targets", {}))
    if dcfg.get("name") == "blend":
        dcfg["targets"] = targets
    return model, dg.build(**dcfg)
