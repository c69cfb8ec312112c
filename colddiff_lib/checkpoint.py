"""Checkpoints and result files, written atomically so that an interruption never loses one.

A file is written to a temporary name in the same folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows): readers see the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
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
    """Load a training checkpoint written by :func:`colddiff_lib.training.train`.

    The file is read with ``torch.load(weights_only=True)``: only tensors and plain containers
    (dict, list, tuple, str, numbers, None) are rebuilt, so a checkpoint cannot run code on load.
    Raises ValueError naming the file when it is missing, not a checkpoint, damaged, or asks for
    anything else (such as a pickled object).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path}: the file is empty")
    if path.suffix == ".safetensors":
        raise ValueError(f"checkpoint {path}: this is a safetensors weights file (a zoo model), not a training "
                         f"checkpoint; load shipped models with colddiff_lib.zoo.load_pretrained(name)")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise ValueError(f"checkpoint {path}: not a readable training checkpoint (not a torch.save zip archive: "
                         f"damaged, or another kind of file)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message ends with advice to turn weights-only loading off: exactly what must not be done here.
        reason = next((line.strip() for line in str(err).splitlines() if "Unsupported" in line), "")
        raise ValueError(f"checkpoint {path}: refused, it holds more than tensors and plain data, and loading "
                         f"it could run code{f' ({reason[:200]})' if reason else ''}") from None
    except Exception as err:  # truncated zip, not a torch file, ...
        raise ValueError(f"checkpoint {path}: not a readable training checkpoint ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else 'no detail'})") from None
    missing = [k for k in ("model", "ema", "model_config", "degradation", "step") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {path}: not a colddiff_lib training checkpoint (missing {missing}); "
                         f"write one with python -m colddiff_lib train")
    return ckpt


def rebuild(model_config: dict, degradation_config: dict, state_dict: dict, device="cpu", legacy: dict = None):
    """The one loader: ``(UNet in eval mode on device, degradation)`` from their configs and weights.

    Training checkpoints (:func:`restore`) and the zoo (:func:`colddiff_lib.zoo.load_pretrained`) both
    come through here. ``legacy``: the checkpoint or card it came from, for files written before a
    Blend's config named its targets (they kept them beside it, as ``blend_targets``).
    """
    from . import degradations as dg
    from .models import UNet

    model = UNet(**model_config)
    model.load_state_dict(state_dict)
    dcfg = dict(degradation_config)
    if dcfg.get("name") == "blend" and "targets" not in dcfg:
        dcfg["targets"] = (legacy or {}).get("blend_targets", {}).get("source", "lfw")
    return model.eval().to(device), dg.build(**dcfg)


def restore(path_or_checkpoint, use_ema: bool = True, device="cpu"):
    """Rebuild ``(model, degradation)`` from a checkpoint (a path or a loaded dict).

    Args:
        use_ema: load the EMA weights (the ones to sample with) rather than the raw ones.
    Returns:
        (UNet in eval mode on ``device``, degradation).
    """
    ckpt = path_or_checkpoint if isinstance(path_or_checkpoint, dict) else load_checkpoint(path_or_checkpoint)
    state = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    return rebuild(ckpt["model_config"], ckpt["degradation"], state, device, legacy=ckpt)
