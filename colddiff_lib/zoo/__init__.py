"""Pretrained models shipped inside the package: load one in a line, offline.

Each model is a pair of files in this folder: ``weights/<name>.safetensors`` (fp16 weights of the
EMA network) and ``cards/<name>.json`` (how it was made: the config file, the command, the machine,
the steps and time, the held-out loss curve, and the metrics measured on the held-out digits).

A card is checked against the schema (:func:`check_card`) and carries two SHA-256 digests: ``sha256``,
of the weights file, and ``digest``, of the card's own content (every field but ``digest`` and the
measured ``metrics``, which the build's evaluation writes onto it later), so that an edited card (a
std or T changed) is refused as surely as replaced weights. A bad card is skipped by :func:`available`
with a warning naming its file, and :func:`card` raises naming it; the other models are unaffected.
Exports write the weights under their digest beside the old ones, then the card, then rename the
weights into place, and readers look for the weights under the card's digest: a reader, or an export
killed at any moment, never pairs a card with weights it does not describe.

    >>> from colddiff_lib import zoo
    >>> R, D = zoo.load_pretrained("mnist-blur")     # a UNet in eval mode and its degradation
    >>> sorted(zoo.available())                       # names -> cards
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .. import files
from ..checks import is_int

HERE = Path(__file__).parent
# : An environment variable naming another zoo folder (weights/ and cards/) to read and
# write instead of : the package's: what a trial build (``python -m
# colddiff_lib.zoo.build --out DIR``) uses.
ZOO_ENV = "COLDDIFF_ZOO"
ROOT = Path(os.environ[ZOO_ENV]) if os.environ.get(ZOO_ENV) else HERE
WEIGHTS = ROOT / "weights"
CARDS = ROOT / "cards"
CONFIGS_DIR = HERE / "configs"
CLASSIFIER = "mnist-classifier"


TASKS = ("reconstruction", "generation", "classifier")
# : Card fields the digest leaves out: itself, and the metrics the build's evaluation
# writes onto the card : after the export (measurements, also in results/; they change
# nothing a loader reads).
UNDIGESTED = ("digest", "metrics")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# SHA-256 of a card file's text -> it passed check_card (the check is pure)
_checked: Dict[str, bool] = {}


def use_folder(folder) -> None:
    """Read and write the zoo in ``folder`` (``weights/``, ``cards/``) from now on, in this process and in
    the commands it starts (through :data:`ZOO_ENV`); the package's FID classifier is copied in if absent."""
    import shutil

    global ROOT, WEIGHTS, CARDS
    ROOT = Path(folder).resolve()
    if ROOT == HERE.resolve():
        raise ValueError(
            f"--out {folder}: this is the package's own zoo; omit --out to build into it"
        )
    WEIGHTS, CARDS = ROOT / "weights", ROOT / "cards"
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    CARDS.mkdir(parents=True, exist_ok=True)
    for source, target in (
        (
            HERE / "weights" / f"{CLASSIFIER}.safetensors",
            WEIGHTS / f"{CLASSIFIER}.safetensors",
        ),
        (HERE / "cards" / f"{CLASSIFIER}.json", CARDS / f"{CLASSIFIER}.json"),
    ):
        if not target.exists():
            shutil.copyfile(source, target)
    os.environ[ZOO_ENV] = str(ROOT)


def config_of(name: str):
    """The zoo config ``configs/NAME.toml`` as a :class:`~colddiff_lib.config.RunConfig` (read and checked)."""
    from ..config import RunConfig

    path = CONFIGS_DIR / f"{name}.toml"
    if not isinstance(name, str) or not path.is_file():
        raise ValueError(
            f"no zoo config {path}; names: {sorted(p.stem for p in CONFIGS_DIR.glob('*.toml'))}"
        )
    return RunConfig.from_toml(path)


def task_of(name: str) -> str:
    """The task a zoo config declares in its ``[zoo]`` table: ``reconstruction`` or ``generation``."""
    config = config_of(name)
    if config.task is None:
        raise ValueError(
            f'{config.where}: [zoo] task is missing; expected task = "reconstruction" or '
            f'"generation"'
        )
    return config.task


def card_digest(info: dict) -> str:
    """The SHA-256 of a card's content: canonical JSON (sorted keys, no spaces) of every field but
    :data:`UNDIGESTED`. The card's ``sha256`` field (of the weights) is inside, so it covers both."""
    return files.sha256_bytes(
        files.canonical_json({k: v for k, v in info.items() if k not in UNDIGESTED})
    )


def check_card(info, path) -> dict:
    """``info`` (the card read from ``path``), after checking it against the schema: required keys, types,
    the model and degradation configs (with the parameter budget), the sampling table, and its digest.
    ValueError naming the file and the key otherwise."""
    from ..checkpoint import (
        build_degradation,
        check_history,
        check_model_config,
        check_sampling_config,
    )

    where = f"zoo card {path}"
    if not isinstance(info, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(info).__name__}")
    stem = Path(path).stem
    if info.get("name") != stem:
        raise ValueError(
            f"{where}: name: expected {stem!r} (the file's name), got {info.get('name')!r}"
        )
    if info.get("task") not in TASKS:
        raise ValueError(
            f"{where}: task: expected one of {list(TASKS)}, got {info.get('task')!r}"
        )
    for key in ("sha256", "digest"):
        if not isinstance(info.get(key), str) or not _HEX64.fullmatch(info[key]):
            raise ValueError(
                f"{where}: {key}: expected a SHA-256 (64 hex digits), got {info.get(key)!r}"
                + (
                    "; re-export the model (python -m colddiff_lib.zoo.build)"
                    if key == "digest"
                    else ""
                )
            )
    if card_digest(info) != info["digest"]:
        raise ValueError(
            f"{where}: its content does not match its digest (edited or damaged); reinstall "
            f"colddiff-lib or rebuild the model with python -m colddiff_lib.zoo.build"
        )
    if info["task"] != "classifier":
        for key in ("model_config", "degradation", "step"):
            if key not in info:
                raise ValueError(f"{where}: {key} is missing")
        check_model_config(info["model_config"], f"{where}: model_config")
        build_degradation(info["degradation"], f"{where}: degradation", info)
        if not is_int(info["step"]) or info["step"] < 0:
            raise ValueError(
                f"{where}: step: expected an int >= 0, got {info['step']!r}"
            )
    if "history" in info:
        check_history(info["history"], f"{where}: history")
    if info.get("sampling") is not None:
        check_sampling_config(info["sampling"], f"{where}: sampling")
    types = {
        "train_config": dict,
        "metrics": dict,
        "parameters": int,
        "train_seconds": (int, float, type(None)),
        "machine": str,
        "command": str,
        "config": str,
        "checkpoint": str,
        "stopped_by_time_limit": bool,
        "device": (str, type(None)),
        "test_accuracy": (int, float),
    }
    for key, kind in types.items():
        if key in info and not (
            is_int(info[key]) if kind is int else isinstance(info[key], kind)
        ):
            raise ValueError(
                f"{where}: {key}: expected {getattr(kind, '__name__', 'a number or null')}, got "
                f"{type(info[key]).__name__}"
            )
    return info


def _read_card(path: Path) -> dict:
    """The card in ``path``, parsed and checked (:func:`check_card`); ValueError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
        info = json.loads(text)
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"zoo card {path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"zoo card {path}: not valid JSON ({err})") from None
    except RecursionError:
        raise ValueError(
            f"zoo card {path}: not valid JSON (nested too deeply)"
        ) from None
    key = files.sha256_bytes(text.encode("utf-8"))
    if key not in _checked:
        check_card(info, path)
        _checked[key] = True
    return info


def _has_weights(name: str, sha256: Optional[str]) -> bool:
    return (WEIGHTS / f"{name}.safetensors").is_file() or (
        WEIGHTS / f".{name}.{sha256}.safetensors"
    ).is_file()


def available() -> Dict[str, dict]:
    """``{name: card}`` for every shipped model (the classifier included), sorted by name.

    A card that fails its checks (not JSON, a bad field, a digest that does not match) is left out with
    a warning naming its file; the other models are unaffected."""
    cards = {}
    for path in sorted(CARDS.glob("*.json")):
        try:
            info = _read_card(path)
        except ValueError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            continue
        if _has_weights(path.stem, info["sha256"]):
            cards[path.stem] = info
    return cards


def card(name: str) -> dict:
    """The card of one shipped model (ValueError naming the available ones, or naming the card's file when
    it fails its checks)."""
    safe = (
        isinstance(name, str)
        and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) is not None
    )
    path = CARDS / f"{name}.json" if safe else None
    if path is not None and path.is_file():
        info = _read_card(path)  # raises naming the file
        if _has_weights(name, info["sha256"]):
            return info
    with warnings.catch_warnings():
        # the one asked for is the news here, not the others' problems
        warnings.simplefilter("ignore")
        cards = available()
    raise ValueError(f"name must be one of {sorted(cards)}, got {name!r}")


TRAINING_COLUMNS = [
    "model",
    "degradation",
    "T",
    "weights of step",
    "steps trained",
    "steps asked",
    "seconds",
    "machine",
    "stopped by time limit",
]


def training_summary(names) -> List[list]:
    """One row per shipped model in ``names``, in :data:`TRAINING_COLUMNS`' order: how far it trained and where.

    ``weights of step`` is the step of the shipped weights (the best held-out EMA weights), ``steps
    trained`` the last step of the run (its loss curve ends there)."""
    rows = []
    for name in names:
        c = card(name)
        trained = (
            c["history"]["step"][-1] if c.get("history", {}).get("step") else c["step"]
        )
        rows.append(
            [
                name,
                c["degradation"]["name"],
                c["degradation"]["T"],
                c["step"],
                trained,
                c["train_config"]["steps"],
                f"{c['train_seconds']:.0f}",
                c["machine"],
                "yes" if c.get("stopped_by_time_limit") else "no",
            ]
        )
    return rows


# : The SHA-256 hex digest of a file (:func:`colddiff_lib.files.sha256_file`), under its
# older name.
sha256_of = files.sha256_file


def _state_dict(name: str) -> Dict[str, torch.Tensor]:
    """The weights of a shipped model, after checking them against the SHA-256 its card records.

    Where ``weights/NAME.safetensors`` does not match, the weights the card names may lie beside it under
    their digest (an export between its card and its rename, or killed there); and an export may end
    between reading the card and the weights, so both are read again (up to three times)."""
    from safetensors.torch import load

    path = WEIGHTS / f"{name}.safetensors"
    for attempt in range(3):
        expected = card(name)["sha256"]
        data = None
        for candidate in (path, WEIGHTS / f".{name}.{expected}.safetensors"):
            try:
                raw = candidate.read_bytes()
            except OSError:  # missing, or renamed away between the look-up and the read
                continue
            if files.sha256_bytes(raw) == expected:
                data = raw
                break
        if data is not None:
            break
        time.sleep(0.05 * (attempt + 1))
    else:
        raise ValueError(
            f"zoo model {name!r}: {path} does not match the SHA-256 on its card (corrupted or "
            f"replaced); reinstall colddiff-lib or rebuild it with python -m colddiff_lib.zoo.build"
        )
    try:
        tensors = load(data)
    except Exception as err:
        raise ValueError(
            f"zoo model {name!r}: {path} is not a readable safetensors file ({err})"
        ) from None
    return {k: v.float() for k, v in tensors.items()}


def load_pretrained(name: str, device="cpu"):
    """A :class:`~colddiff_lib.checkpoint.Restored` ``(model, degradation)`` of a shipped model: the UNet in eval
    mode on ``device`` (what :func:`colddiff_lib.runtime.resolve_device` takes) and the D it inverts."""
    from ..checkpoint import rebuild

    info = card(name)
    if name == CLASSIFIER:
        raise ValueError(
            f"{name!r} is the FID classifier: use colddiff_lib.zoo.load_classifier()"
        )
    return rebuild(
        info["model_config"],
        info["degradation"],
        _state_dict(name),
        device,
        stored=info,
        where=f"zoo model {name!r} ({CARDS / (name + '.json')})",
    )


def sampling(name: str) -> dict:
    """How a shipped generator samples by default: ``{"algorithm", "noise_std", "components", "level", "dims",
    "iterations"}`` (the last four: the :class:`~colddiff_lib.generation.GaussianPrior` it starts from).

    From its card's ``sampling`` (the ``[sampling]`` table of its config), with what the card leaves out
    taken from the degradation: Algorithm 2, ``D.symmetry_noise``, a one-component Gaussian prior at T
    (``level`` None), 64 principal components where a level below T is given.
    ``generate``, the CLI, the book and the live page all read these, so the default path is the good one.
    """
    from .. import degradations as dg

    info = card(name)
    given = dict(info.get("sampling") or {})
    noise = given.get("noise_std")
    if noise is None:
        noise = dg.build(**info["degradation"]).symmetry_noise
    return {
        "algorithm": given.get("algorithm", "improved"),
        "noise_std": float(noise),
        "components": int(given.get("components", 1)),
        "level": given.get("level"),
        "dims": int(given.get("dims", 64)),
        "iterations": int(given.get("iterations", 100)),
    }


# fitted GaussianPriors, by model, weights and setting
_PRIORS: Dict[tuple, object] = {}


def _chosen(name: str, settings: dict) -> dict:
    chosen = sampling(name)
    unknown = sorted(set(settings) - set(chosen))
    if unknown:
        raise ValueError(f"settings must be among {sorted(chosen)}, got {unknown}")
    return {**chosen, **settings}


def prior(name: str, **settings):
    """The :class:`~colddiff_lib.generation.GaussianPrior` that the shipped generator ``name`` starts from,
    fitted to the 4,000 training digits at the card's level (``settings``, keys of :func:`sampling`, replace
    the card's), or None where the degradation has its own prior (noise, a face). Fitted once per process
    and setting: a fit costs seconds to a minute."""
    return _prior(name, load_pretrained(name)[1], _chosen(name, settings))


def _prior(name: str, D, chosen: dict):
    """:func:`prior` for the degradation ``D`` of ``name`` already loaded, with ``chosen`` settings."""
    from ..data import load_dataset
    from ..generation import GaussianPrior

    if chosen["level"] is None and not D.has_latent:
        return None
    key = (
        name,
        card(name)["sha256"],
        chosen["components"],
        chosen["level"],
        chosen["dims"],
        chosen["iterations"],
    )
    if key not in _PRIORS:
        train = load_dataset("mnist5k", split="train").images
        _PRIORS[key] = GaussianPrior(
            D,
            train,
            components=chosen["components"],
            level=chosen["level"],
            dims=chosen["dims"],
            iterations=chosen["iterations"],
        )
    return _PRIORS[key]


def generate(name: str, n: int, seed: int = 0, device="cpu", **settings):
    """``n`` samples of the shipped generator ``name`` with its card's settings (:func:`sampling`), from
    :func:`prior` (``settings``, keys of :func:`sampling`, replace the card's).
    Returns a :class:`~colddiff_lib.generation.Generated` ``(x0 [n, 1, 32, 32] in [-1, 1], x_T [n, 1, 32, 32])``.
    """
    from ..data import load_dataset
    from ..generation import Generated
    from ..generation import generate as run

    chosen = _chosen(name, settings)
    R, D = load_pretrained(name, device=device)
    shape = tuple(load_dataset("mnist5k", split="train").images.shape[1:])
    g = torch.Generator().manual_seed(seed)
    x, x_T = run(
        R,
        D,
        n,
        shape,
        prior=_prior(name, D, chosen),
        noise_std=chosen["noise_std"],
        algorithm=chosen["algorithm"],
        generator=g,
        device=device,
    )
    return Generated(x.clamp(-1, 1), x_T)


def load_classifier(device="cpu"):
    """The shipped :class:`~colddiff_lib.classifier.DigitClassifier` (FID features), in eval mode on ``device``."""
    from ..classifier import DigitClassifier
    from ..runtime import resolve_device

    card(CLASSIFIER)
    model = DigitClassifier()
    model.load_state_dict(_state_dict(CLASSIFIER))
    return model.eval().to(resolve_device(device))


def _fp16_bytes(state: Dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(
        {
            k: (v.half() if v.is_floating_point() else v).contiguous().cpu()
            for k, v in state.items()
        }
    )


def _ship(name: str, weights: bytes, info: dict) -> Path:
    """Write a model's weights and card as one step: no reader, and no export killed at any moment,
    pairs the card with weights it does not describe.

    1. the new weights go beside the old ones under their digest (``weights/.NAME.SHA.safetensors``);
    2. the card, naming that digest, replaces the old card (readers then find the new weights by it);
    3. the new weights are renamed to ``weights/NAME.safetensors``.
    Each step is atomic; killed after 1 the old pair stands, after 2 readers use the new weights where
    they lie, and the next export clears what a killed one left."""
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    sha = files.sha256_bytes(weights)
    pending = WEIGHTS / f".{name}.{sha}.safetensors"
    files.write_bytes(weights, pending)
    card_info = {**info, "name": name, "sha256": sha}
    card_info.pop("digest", None)
    card_info["digest"] = card_digest(card_info)
    # what is written is what readers accept
    check_card(card_info, CARDS / f"{name}.json")
    files.write_json(card_info, CARDS / f"{name}.json")
    path = WEIGHTS / f"{name}.safetensors"
    files.rename(pending, path)
    # weights of exports killed before their card
    for stale in WEIGHTS.glob(f".{name}.*.safetensors"):
        stale.unlink(missing_ok=True)
    return path


def export(checkpoint, name: str, info: dict) -> Path:
    """Ship a training checkpoint: its EMA weights as fp16 safetensors and a card (one atomic step, see
    :func:`_ship`; the card's ``sha256`` and ``digest`` cover the weights and the card).

    Args:
        checkpoint: path of a ``best.pt``/``last.pt`` written by :func:`colddiff_lib.training.train`.
        name: the zoo name (``mnist-blur``, ...).
        info: fields for the card (task, config file, command, machine, time, ...).
    Returns:
        the path of the weights file.
    """
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    card_info = {
        "name": name,
        "model_config": ckpt["model_config"],
        "degradation": ckpt["degradation"],
        "step": ckpt["step"],
        "train_config": ckpt["config"],
        "history": ckpt["history"],
        **info,
    }
    return _ship(name, _fp16_bytes(ckpt["ema"]), card_info)


def export_classifier(model, info: dict) -> Path:
    """Ship the FID classifier's weights (fp16) and its card (``info``: accuracy, how it was trained)."""
    return _ship(
        CLASSIFIER,
        _fp16_bytes(model.state_dict()),
        {"name": CLASSIFIER, "task": "classifier", **info},
    )


def _migrate_digests(cards: Path = None) -> List[str]:
    """Add (or recompute) the ``digest`` of every card in ``cards`` (default: the shipped ones), changing no
    other field; returns the names written. Run once for the cards exported before cards had a digest:
    ``python -c "from colddiff_lib.zoo import _migrate_digests; _migrate_digests()"``."""
    written = []
    for path in sorted(Path(cards or CARDS).glob("*.json")):
        info = json.loads(path.read_text())
        info.pop("digest", None)
        info["digest"] = card_digest(info)
        files.write_json(info, path)
        written.append(path.stem)
    return written
