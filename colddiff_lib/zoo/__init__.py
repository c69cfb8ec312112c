"""Pretrained models shipped inside the package: load one in a line, offline.

Each model is a pair of files in this folder: ``weights/<name>.safetensors`` (fp16 weights of the
EMA network) and ``cards/<name>.json`` (how it was made: the config file, the command, the machine,
the steps and time, the held-out loss curve, and the metrics measured on the held-out digits).

    >>> from colddiff_lib import zoo
    >>> R, D = zoo.load_pretrained("mnist-blur")     # a UNet in eval mode and its degradation
    >>> sorted(zoo.available())                       # names -> cards
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Tuple

import torch

HERE = Path(__file__).parent
WEIGHTS = HERE / "weights"
CARDS = HERE / "cards"
CONFIGS_DIR = HERE / "configs"
CLASSIFIER = "mnist-classifier"


def available() -> Dict[str, dict]:
    """``{name: card}`` for every shipped model (the classifier included), sorted by name."""
    cards = {}
    for path in sorted(CARDS.glob("*.json")):
        if (WEIGHTS / f"{path.stem}.safetensors").is_file():
            cards[path.stem] = json.loads(path.read_text())
    return cards


def card(name: str) -> dict:
    """The card of one shipped model (raises ValueError naming the available ones)."""
    cards = available()
    if name not in cards:
        raise ValueError(f"name must be one of {sorted(cards)}, got {name!r}")
    return cards[name]


TRAINING_COLUMNS = ["model", "degradation", "T", "weights of step", "steps trained", "steps asked", "seconds",
                    "machine", "stopped by time limit"]


def training_summary(names) -> List[list]:
    """One row per shipped model in ``names``, in :data:`TRAINING_COLUMNS`' order: how far it trained and where.

    ``weights of step`` is the step of the shipped weights (the best held-out EMA weights), ``steps
    trained`` the last step of the run (its loss curve ends there)."""
    rows = []
    for name in names:
        c = card(name)
        trained = c["history"]["step"][-1] if c.get("history", {}).get("step") else c["step"]
        rows.append([name, c["degradation"]["name"], c["degradation"]["T"], c["step"], trained, c["train_config"]["steps"],
                     f"{c['train_seconds']:.0f}", c["machine"], "yes" if c.get("stopped_by_time_limit") else "no"])
    return rows


def sha256_of(path) -> str:
    """The SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_dict(name: str) -> Dict[str, torch.Tensor]:
    """The weights of a shipped model, after checking them against the SHA-256 its card records."""
    from safetensors.torch import load

    path = WEIGHTS / f"{name}.safetensors"
    data = path.read_bytes()
    expected = card(name).get("sha256")
    if expected is None:
        raise ValueError(f"zoo model {name!r}: its card {CARDS / (name + '.json')} has no sha256 to check "
                         f"{path} against; re-export it (python -m colddiff_lib.zoo.build)")
    if hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"zoo model {name!r}: {path} does not match the SHA-256 on its card (corrupted or "
                         f"replaced); reinstall colddiff-lib or rebuild it with python -m colddiff_lib.zoo.build")
    try:
        tensors = load(data)
    except Exception as err:
        raise ValueError(f"zoo model {name!r}: {path} is not a readable safetensors file ({err})") from None
    return {k: v.float() for k, v in tensors.items()}


def load_pretrained(name: str, device="cpu") -> Tuple[torch.nn.Module, object]:
    """``(model, degradation)`` of a shipped model: the UNet in eval mode and the D it inverts."""
    from ..checkpoint import rebuild

    info = card(name)
    if name == CLASSIFIER:
        raise ValueError(f"{name!r} is the FID classifier: use colddiff_lib.zoo.load_classifier()")
    return rebuild(info["model_config"], info["degradation"], _state_dict(name), device, legacy=info)


def sampling(name: str) -> dict:
    """How a shipped generator samples by default: ``{"algorithm", "noise_std", "components"}``.

    From its card's ``sampling`` (the ``[sampling]`` table of its config), with what the card leaves out
    taken from the degradation: Algorithm 2, ``D.symmetry_noise``, a one-component Gaussian prior.
    ``generate``, the CLI, the book and the live page all read these, so the default path is the good one.
    """
    from .. import degradations as dg

    info = card(name)
    given = dict(info.get("sampling") or {})
    noise = given.get("noise_std")
    if noise is None:
        noise = dg.build(**info["degradation"]).symmetry_noise
    return {"algorithm": given.get("algorithm", "improved"), "noise_std": float(noise),
            "components": int(given.get("components", 1))}


def generate(name: str, n: int, seed: int = 0, device="cpu", **settings):
    """``n`` samples of the shipped generator ``name`` with its card's settings (:func:`sampling`).

    The prior is fitted to the 4,000 training digits where the degradation has a latent end state.
    ``settings`` (``algorithm``, ``noise_std``, ``components``) replace the card's.
    Returns ``(x0 [n, 1, 32, 32] in [-1, 1], x_T [n, 1, 32, 32])``.
    """
    from ..data import load_dataset
    from ..generation import GaussianPrior
    from ..generation import generate as run

    unknown = sorted(set(settings) - {"algorithm", "noise_std", "components"})
    if unknown:
        raise ValueError(f"settings must be among algorithm, noise_std, components, got {unknown}")
    chosen = {**sampling(name), **settings}
    R, D = load_pretrained(name, device=device)
    train = load_dataset("mnist5k", split="train").images
    prior = GaussianPrior(D, train, components=chosen["components"]) if D.has_latent else None
    g = torch.Generator().manual_seed(seed)
    x, x_T = run(R, D, n, tuple(train.shape[1:]), prior=prior, noise_std=chosen["noise_std"],
                 algorithm=chosen["algorithm"], generator=g, device=device)
    return x.clamp(-1, 1), x_T


def load_classifier(device="cpu"):
    """The shipped :class:`~colddiff_lib.classifier.DigitClassifier` (FID features), in eval mode."""
    from ..classifier import DigitClassifier

    card(CLASSIFIER)
    model = DigitClassifier()
    model.load_state_dict(_state_dict(CLASSIFIER))
    return model.eval().to(device)


def _save_fp16(state: Dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save

    from ..checkpoint import atomic_write

    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu() for k, v in state.items()}
    atomic_write(path, lambda f: f.write(save(tensors)))


def export(checkpoint, name: str, info: dict) -> Path:
    """Ship a training checkpoint: its EMA weights as fp16 safetensors and a card.

    Args:
        checkpoint: path of a ``best.pt``/``last.pt`` written by :func:`colddiff_lib.training.train`.
        name: the zoo name (``mnist-blur``, ...).
        info: fields for the card (task, config file, command, machine, time, ...).
    Returns:
        the path of the weights file.
    """
    from ..checkpoint import load_checkpoint, write_json_atomic

    ckpt = load_checkpoint(checkpoint)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    path = WEIGHTS / f"{name}.safetensors"
    _save_fp16(ckpt["ema"], path)
    card_info = {"name": name, "model_config": ckpt["model_config"], "degradation": ckpt["degradation"],
                 "step": ckpt["step"], "train_config": ckpt["config"], "history": ckpt["history"],
                 "sha256": sha256_of(path), **info}
    write_json_atomic(card_info, CARDS / f"{name}.json")
    return path


def export_classifier(model, info: dict) -> Path:
    """Ship the FID classifier's weights (fp16) and its card (``info``: accuracy, how it was trained)."""
    from ..checkpoint import write_json_atomic

    path = WEIGHTS / f"{CLASSIFIER}.safetensors"
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    _save_fp16(model.state_dict(), path)
    write_json_atomic({"name": CLASSIFIER, "task": "classifier", **info, "sha256": sha256_of(path)},
                      CARDS / f"{CLASSIFIER}.json")
    return path
