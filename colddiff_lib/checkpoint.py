"""Checkpoints, written atomically (through :mod:`colddiff_lib.files`) so that an interruption never loses
one; the schema every checkpoint, zoo card and run config is checked against; the lock of a run folder.

What is read is checked before anything is built from it (:func:`check_model_config`,
:func:`check_degradation_config`, :func:`check_data_config`, :func:`check_sampling_config`,
:func:`check_history`): types, ranges, required keys, and the model's parameter budget
(:data:`colddiff_lib.models.MAX_PARAMETERS`), so that a checkpoint or card asking for a 640 GB model is
refused before a byte is allocated. Every problem is a ValueError naming the file and the key.

One run, one folder: :func:`run_lock` holds an exclusive lock (``fcntl.flock`` on ``.colddiff.lock``
in the folder) for the whole run; a second run on the same folder is refused with the holder's pid
and command.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shlex
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Union

import torch

from . import files
from .checks import did_you_mean, is_int, is_number
from .runtime import resolve_device

PathLike = Union[str, os.PathLike]

#: The lock file of a run folder (see :func:`run_lock`).
LOCK_FILE = ".colddiff.lock"
# : A checkpoint archive may hold at most this many bytes once unpacked (four float32
# copies of a model : at the parameter budget: weights, EMA, Adam's two moments, and
# room for the rest) ...
MAX_CHECKPOINT_BYTES = 16 * 200_000_000 + 2**26
# : ... and expand at most this many times over its size on disk (torch.save stores its
# entries : uncompressed; a 5 MB archive that unpacks to 1.5 GB is a zip bomb).
MAX_EXPANSION = 10
# : The permissions of a checkpoint file: its owner's alone (other files get
# files.DEFAULT_MODE).
CHECKPOINT_MODE = 0o600


class _RecordingWriter:
    """A file wrapper that keeps the OSError of a failed write: torch's zip writer turns it into a
    RuntimeError ("unexpected pos", "file write failed") that has lost the errno (a full disk, a file-size
    limit)."""

    def __init__(self, f):
        self._f = f
        self.error: Optional[OSError] = None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self):
        return self._f.flush()


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)``, atomically. A write that fails (a full disk) raises OSError with its
    errno (``No space left on device``), not torch's RuntimeError, and leaves ``path`` as it was."""

    def write(f):
        recorder = _RecordingWriter(f)
        try:
            torch.save(obj, recorder)
        except RuntimeError as err:
            if recorder.error is not None:
                raise recorder.error from None
            text = str(err)
            if "unexpected pos" in text or "file write failed" in text:
                raise OSError(
                    errno.EIO,
                    f"torch's writer failed: {text.strip().splitlines()[0][:200]}",
                ) from None
            raise

    return files.atomic_write(path, write, mode=CHECKPOINT_MODE)


# The names under which this module offered the writers of colddiff_lib.files before it
# existed.
write_text_atomic = files.write_text
write_json_atomic = files.write_json


def non_finite(obj: Any, prefix: str = "") -> List[str]:
    """The names (``model.conv_in.weight``, ...) of the floating tensors in ``obj`` (nested dicts, lists,
    tuples) that hold NaN or infinite values."""
    if isinstance(obj, torch.Tensor):
        return (
            [prefix or "tensor"]
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all())
            else []
        )
    items = (
        obj.items()
        if isinstance(obj, dict)
        else enumerate(obj)
        if isinstance(obj, (list, tuple))
        else ()
    )
    return [
        name
        for key, value in items
        for name in non_finite(value, f"{prefix}.{key}" if prefix else str(key))
    ]


# --------------------------------------------------------------------------------------
# the lock real path of a lock file -> [open file descriptor, depth]: re-entrant per
# process
_HELD: Dict[str, list] = {}


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text())
        return f"pid {int(info['pid'])}: {str(info.get('command', '?'))[:300]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


@contextlib.contextmanager
def run_lock(
    folder: PathLike, command: Optional[str] = None, what: str = "run folder"
) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) until the block ends.

    The lock is ``fcntl.flock`` on ``folder/.colddiff.lock``, which records the holder's pid and
    ``command``; the kernel releases it when the process ends, however it ends (SIGKILL included), so
    a lock is never stale. Taking it again in the same process nests. A folder held by another
    process raises ValueError naming ``what``, the folder, and the holder's pid and command.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    key = os.path.realpath(lock)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield lock
        finally:
            _HELD[key][1] -= 1
        return
    try:
        import fcntl
    # not POSIX: no lock (Windows users run one run per folder by hand)
    except ImportError:
        yield lock
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(
            f"{what} {folder}: another run is using it ({_holder(lock)}); wait for it to end or "
            f"choose another folder (nothing was written)"
        ) from None
    command = command or shlex.join([Path(sys.executable).name, *sys.argv])
    os.ftruncate(fd, 0)
    os.pwrite(
        fd, (json.dumps({"pid": os.getpid(), "command": command}) + "\n").encode(), 0
    )
    _HELD[key] = [fd, 1]
    try:
        yield lock
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            del _HELD[key]
            # releases the flock; the file stays (removing it would race with a waiting
            # run)
            os.close(fd)


# --------------------------------------------------------------------------------------
# the schema
def _kind(value) -> str:
    return type(value).__name__


def check_model_config(config, where: str = "model") -> dict:
    """``config``, after checking it as :class:`~colddiff_lib.models.UNet` arguments: known keys, types and
    ranges, and a parameter count (on the meta device, nothing allocated) within the budget."""
    import inspect

    from .models import MAX_PARAMETERS, UNet, check_config, parameter_count

    if not isinstance(config, dict):
        raise ValueError(
            f"{where}: expected a table of UNet arguments, got {_kind(config)} {str(config)[:80]}"
        )
    known = list(inspect.signature(UNet).parameters)
    unknown = sorted(str(k) for k in set(config) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; a UNet takes {known}")
    try:
        check_config(**config)
        count = parameter_count(config)
    except ValueError as err:
        raise ValueError(f"{where}.{err}") from None
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{where}: {count:,} parameters ({count * 4 / 2**30:.1f} GiB of float32 weights), more "
            f"than the budget of {MAX_PARAMETERS:,}; refused before anything was allocated"
        )
    return config


def build_degradation(
    config, where: str = "degradation", stored: Optional[dict] = None
):
    """The degradation of ``config`` (``{"name": ..., **arguments}``): its name and every argument checked
    (types, ranges, sizes), ValueError naming ``where`` otherwise. Building one allocates little (its
    schedule), so building is the check. A config written by an older version is first brought up to date
    by its class (:meth:`~colddiff_lib.degradations.Degradation.upgrade_config`; ``stored``: the checkpoint
    or card it came from)."""
    from . import degradations as dg

    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise ValueError(
            f"{where}: expected a table with a name and the degradation's arguments, got "
            f"{_kind(config)} {str(config)[:80]}"
        )
    if "name" not in config:
        raise ValueError(
            f"{where}: name is missing; expected one of {sorted(dg.REGISTRY)}"
        )
    cls = dg.REGISTRY.get(config["name"]) if isinstance(config["name"], str) else None
    if cls is not None:
        config = cls.upgrade_config(dict(config), stored or {})
    try:
        return dg.build(**config)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


#: Keys of a ``[data]`` table (a checkpoint's ``data``).
DATA_KEYS = ("dataset", "image_size")
# : The largest image size a run may ask for (pixels a side; as
# ``colddiff_lib.data.datasets.MAX_IMAGE_SIZE``).
MAX_IMAGE_SIZE = 1024


def check_data_config(config, where: str = "data") -> dict:
    """A ``[data]`` table: ``dataset`` a name or folder (a non-empty string), ``image_size`` an int in
    4..:data:`MAX_IMAGE_SIZE`; no other key."""
    if not isinstance(config, dict):
        raise ValueError(
            f"{where}: expected a table with {', '.join(DATA_KEYS)}, got {_kind(config)}"
        )
    for key in config:
        if key not in DATA_KEYS:
            raise ValueError(
                f"{where}.{key}: unknown key{did_you_mean(key, DATA_KEYS)}; expected {', '.join(DATA_KEYS)}"
            )
    dataset = config.get("dataset", "mnist5k")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(
            f"{where}.dataset: expected a dataset name or a folder (a string), got {dataset!r}"
        )
    size = config.get("image_size", 32)
    if not is_int(size) or not 4 <= size <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"{where}.image_size: expected an int >= 4 and <= {MAX_IMAGE_SIZE}, got {size!r}"
        )
    return config


def check_sampling_config(config, where: str = "sampling") -> dict:
    """A ``[sampling]`` table (a card's ``sampling``): ``algorithm`` one of the samplers, ``noise_std`` a number
    in [0, 10], ``components`` an int in 1..256, ``level`` (the prior's level, below T) an int in
    0..:data:`~colddiff_lib.degradations.base.MAX_T`, ``dims`` (its principal components) an int in 1..65536;
    each optional, no other key."""
    from .degradations.base import MAX_T
    from .sampling import ALGORITHMS

    keys = "algorithm, noise_std, components, level, dims, iterations"
    if not isinstance(config, dict):
        raise ValueError(f"{where}: expected a table ({keys}), got {_kind(config)}")
    for key, value in config.items():
        if key == "algorithm":
            ok = isinstance(value, str) and value in ALGORITHMS
            expected = f"one of {list(ALGORITHMS)}"
        elif key == "noise_std":
            ok = is_number(value) and 0 <= value <= 10
            expected = "a number in [0, 10]"
        elif key in ("components", "level", "dims", "iterations"):
            low, high = {
                "components": (1, 256),
                "level": (0, MAX_T),
                "dims": (1, 65536),
                "iterations": (1, 1000),
            }[key]
            ok = is_int(value) and low <= value <= high
            expected = f"an int in {low}..{high}"
        else:
            raise ValueError(f"{where}.{key}: unknown key; expected {keys}")
        if not ok:
            raise ValueError(f"{where}.{key}: expected {expected}, got {value!r}")
    return config


def check_history(history, where: str = "history") -> dict:
    """A loss history: a table of lists of numbers (``step``, ``loss``, ``val_step``, ``val_loss``, ``elapsed``)."""
    if not isinstance(history, dict):
        raise ValueError(
            f"{where}: expected a table of lists of numbers, got {_kind(history)}"
        )
    for key, values in history.items():
        if not isinstance(values, list) or not all(is_number(v) for v in values):
            raise ValueError(
                f"{where}.{key}: expected a list of numbers, got {str(values)[:80]}"
            )
    return history


def _check_weights(state, where: str) -> None:
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{where}: expected a table of named tensors (a state dict), got {_kind(state)}"
        )


def load_checkpoint(path: PathLike, map_location="cpu") -> dict:
    """Load a training checkpoint written by :func:`colddiff_lib.training.train`.

    The file is read with ``torch.load(weights_only=True)``: only tensors and plain containers
    (dict, list, tuple, str, numbers, None) are rebuilt, so a checkpoint cannot run code on load. An
    archive that would unpack to far more than its size (a zip bomb) is refused before it is read, and
    the fields are checked against the schema (types, required keys). Raises ValueError naming the file
    (and the key) when it is missing, not a checkpoint, damaged, or asks for anything else (such as a
    pickled object). What a resume needs besides is checked by :func:`check_resumable`, and the configs
    by :func:`rebuild`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint {path}: the file is empty")
    if path.suffix == ".safetensors":
        raise ValueError(
            f"checkpoint {path}: this is a safetensors weights file (a zoo model), not a training "
            f"checkpoint; load shipped models with colddiff_lib.zoo.load_pretrained(name)"
        )
    # torch.save writes a zip archive; anything else is not ours
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"checkpoint {path}: not a readable training checkpoint (not a torch.save zip archive: "
            f"damaged, or another kind of file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(
            f"checkpoint {path}: not a readable training checkpoint ({type(err).__name__}: "
            f"{str(err)[:200]})"
        ) from None
    if unpacked > MAX_CHECKPOINT_BYTES or unpacked > MAX_EXPANSION * size + 2**20:
        raise ValueError(
            f"checkpoint {path}: refused, its archive unpacks to {unpacked / 2**20:,.0f} MB from "
            f"{size / 2**20:,.1f} MB on disk (torch.save stores its entries uncompressed; at most "
            f"{MAX_EXPANSION}x and {MAX_CHECKPOINT_BYTES / 2**30:.1f} GiB are read)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message ends with advice to turn weights-only loading off: exactly
        # what must not be done here.
        reason = next(
            (line.strip() for line in str(err).splitlines() if "Unsupported" in line),
            "",
        )
        raise ValueError(
            f"checkpoint {path}: refused, it holds more than tensors and plain data, and loading "
            f"it could run code{f' ({reason[:200]})' if reason else ''}"
        ) from None
    except Exception as err:  # truncated zip, not a torch file, ...
        raise ValueError(
            f"checkpoint {path}: not a readable training checkpoint ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else 'no detail'})"
        ) from None
    missing = [
        k
        for k in ("model", "ema", "model_config", "degradation", "step")
        if not isinstance(ckpt, dict) or k not in ckpt
    ]
    if missing:
        raise ValueError(
            f"checkpoint {path}: not a colddiff_lib training checkpoint (missing {missing}); "
            f"write one with python -m colddiff_lib train"
        )
    where = f"checkpoint {path}"
    _check_weights(ckpt["model"], f"{where}: model")
    if ckpt["ema"] is not None:
        _check_weights(ckpt["ema"], f"{where}: ema")
    for key in ("model_config", "degradation"):
        if ckpt[key] is not None and not isinstance(ckpt[key], dict):
            raise ValueError(
                f"{where}: {key}: expected a table, got {_kind(ckpt[key])}"
            )
    step = ckpt["step"]
    if not is_int(step) or step < 0:
        raise ValueError(f"{where}: step: expected an int >= 0, got {step!r}")
    if "history" in ckpt:
        check_history(ckpt["history"], f"{where}: history")
    if ckpt.get("data") is not None:
        check_data_config(ckpt["data"], f"{where}: data")
    for key in ("config", "identity", "optimizer", "rng"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise ValueError(
                f"{where}: {key}: expected a table, got {_kind(ckpt[key])}"
            )
    if "best_val" in ckpt and not is_number(ckpt["best_val"]):
        raise ValueError(
            f"{where}: best_val: expected a number, got {ckpt['best_val']!r}"
        )
    return ckpt


def check_resumable(ckpt: dict, path: PathLike) -> dict:
    """``ckpt`` (from :func:`load_checkpoint`), after checking that it holds what a resume restores: the
    optimizer's state, the random generator's state, the history and the run's settings."""
    where = f"checkpoint {path}: cannot resume from it"
    for key in ("optimizer", "rng", "history", "config"):
        if key not in ckpt:
            raise ValueError(
                f"{where}: {key} is missing (a checkpoint written by train() has it); start a new run "
                f"in another folder"
            )
    optimizer = ckpt["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(
        optimizer.get("param_groups"), list
    ):
        raise ValueError(
            f"{where}: optimizer: expected an optimizer state (state, param_groups)"
        )
    rng = ckpt["rng"].get("torch")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.dim() != 1:
        raise ValueError(
            f"{where}: rng.torch: expected the generator's state (a uint8 tensor), got {_kind(rng)}"
        )
    for key in ("step", "loss", "val_step", "val_loss", "elapsed"):
        if key not in ckpt["history"]:
            raise ValueError(f"{where}: history.{key} is missing")
    return ckpt


def _load_weights(model, state, where: str) -> None:
    """``model.load_state_dict(state)`` after checking names, shapes and values (ValueError naming ``where``)."""
    _check_weights(state, f"{where}: weights")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k
        for k in set(expected) & set(state)
        if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"shapes differ for {wrong[:3]}" if wrong else "",
            )
            if part
        )
        raise ValueError(f"{where}: the weights do not fit its model_config ({detail})")
    bad = non_finite(state)
    if bad:
        raise ValueError(
            f"{where}: the weights hold NaN or infinite values ({', '.join(bad[:3])})"
        )
    model.load_state_dict(state)


class Restored(NamedTuple):
    """A restoration network and the degradation it inverts (unpacks as ``R, D = restore(...)``)."""

    model: torch.nn.Module  #: the UNet, in eval mode
    # : the :class:`~colddiff_lib.degradations.Degradation` it was trained on
    degradation: object


def rebuild(
    model_config: dict,
    degradation_config: dict,
    state_dict: dict,
    device="cpu",
    stored: dict = None,
    where: str = "checkpoint",
) -> Restored:
    """The one loader: ``(UNet in eval mode on device, degradation)`` from their configs and weights.

    Training checkpoints (:func:`restore`) and the zoo (:func:`colddiff_lib.zoo.load_pretrained`) both
    come through here. Both configs are checked first (:func:`check_model_config`, with the parameter
    budget, and :func:`build_degradation`), then the weights' names, shapes and values; every problem is a
    ValueError naming ``where`` (the file). ``stored``: the checkpoint or card it came from, where an older
    file kept part of the degradation's config (its class upgrades it).
    """
    from .models import UNet

    check_model_config(model_config, f"{where}: model_config")
    if not isinstance(degradation_config, dict):
        raise ValueError(
            f"{where}: degradation: expected a table, got {_kind(degradation_config)}"
        )
    D = build_degradation(degradation_config, f"{where}: degradation", stored)
    model = UNet(**model_config)
    _load_weights(model, state_dict, where)
    return Restored(model.eval().to(resolve_device(device)), D)


def restore(
    path_or_checkpoint, use_ema: bool = True, device="cpu", where: Optional[str] = None
) -> "Restored":
    """Rebuild ``(model, degradation)`` from a checkpoint (a path or a loaded dict).

    Args:
        path_or_checkpoint: a ``last.pt``/``best.pt`` written by :func:`colddiff_lib.training.train`, or the
            dict :func:`load_checkpoint` read from one.
        use_ema: load the EMA weights (the ones to sample with) rather than the raw ones.
        device: where the model is put (any device :func:`colddiff_lib.runtime.resolve_device` takes).
        where: what error messages call a loaded dict (e.g. ``"checkpoint runs/x/last.pt"``).
    Returns:
        :class:`Restored` ``(model, degradation)``: the UNet in eval mode on ``device``, and its degradation.
    """
    if isinstance(path_or_checkpoint, dict):
        ckpt, where = path_or_checkpoint, where or "checkpoint"
    else:
        ckpt, where = (
            load_checkpoint(path_or_checkpoint),
            f"checkpoint {path_or_checkpoint}",
        )
    state = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    return rebuild(
        ckpt["model_config"],
        ckpt["degradation"],
        state,
        device,
        stored=ckpt,
        where=where,
    )
