"""Export a shipped model to ONNX for the book's in-page sampler (onnxruntime-web, no kernel).

One folder per model holds what a web page needs to degrade, restore and generate:

* ``step.onnx``: one step of Algorithm 1 or 2 on one image, ``(x [1, C, H, W] float32 in [-1, 1], s int64
  [1] in 1..T, improved float32 [1], 1 for Algorithm 2 and 0 for Algorithm 1) -> (x_next, x0_hat)``, with the
  network and D's per-axis matrices (:meth:`~colddiff_lib.degradations.Degradation.axis_matrices`)
  as constants;
* ``degrade.onnx``: ``(x0 [1, C, H, W], t int64 [1] in 0..T) -> D(x0, t)``;
* ``model.json``: the model's name, T, image shape, its generation prior (the latent's kind, the
  mean and Cholesky factor of :class:`~colddiff_lib.generation.GaussianPrior`, the symmetry noise) and
  the SHA-256 of both graphs.

A run of T steps of ``step.onnx`` from x_T is :func:`colddiff_lib.sampling.sample` with ``clip_x0``:
the exported graph computes ``x - M_s x0 M_s^T + M_{s-1} x0 M_{s-1}^T`` (Algorithm 2) or
``M_{s-1} x0 M_{s-1}^T`` (Algorithm 1), which is D for a separable linear degradation (blur,
super-resolution); :func:`check_export` runs both with onnxruntime and compares them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch import nn

__all__ = ["SamplerStep", "Degrader", "export_model", "export_digits", "export_book", "check_export", "BOOK_MODELS"]

#: The models the book's pages run: degradation sliders (chapter 2), Algorithms 1 and 2 (chapter 4),
#: generation (chapter 6). The blur models use the ``web`` preset: T = 20 calls of the ``cpu`` preset's
#: network take ~190 ms in WebAssembly on one thread, of the ``web`` preset's ~80 ms.
BOOK_MODELS = ("mnist-blur-web", "mnist-superres", "mnist-blur-gen-web", "mnist-superres-gen")

#: Latent kinds the page knows how to paint (see ``from_latent``): a flat colour, or a tiny image.
LATENTS = {"blur": "colour", "superres": "image"}


class Degrader(nn.Module):
    """``D(x0, t)`` for a separable linear degradation from its per-axis matrices [T + 1, n, n]."""

    def __init__(self, mats: torch.Tensor):
        super().__init__()
        self.register_buffer("mats", mats.float().contiguous())

    def forward(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m = self.mats[t].unsqueeze(1)  # [B, 1, n, n]: the same matrix for every channel
        return m @ x0 @ m.transpose(-1, -2)


class SamplerStep(nn.Module):
    """One sampler step: ``(x_s, s, improved) -> (x_{s-1}, x0_hat)`` with ``x0_hat = clamp(R(x_s, s), -1, 1)``."""

    def __init__(self, model: nn.Module, mats: torch.Tensor):
        super().__init__()
        self.model = model
        self.D = Degrader(mats)

    def forward(self, x: torch.Tensor, s: torch.Tensor, improved: torch.Tensor):
        x0_hat = self.model(x, s).clamp(-1, 1)
        back = self.D(x0_hat, s - 1)
        w = improved.view(-1, 1, 1, 1)
        x_next = w * (x - self.D(x0_hat, s) + back) + (1 - w) * back  # w is 0 or 1: exact either way
        return x_next, x0_hat


def _write_atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are served to readers
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _replace_folder(new: Path, folder: Path) -> None:
    """Put the folder ``new`` where ``folder`` is, as one step: swapped atomically where the system can (a
    reader then sees the old folder or the new one, each whole: never a step.onnx of one export beside the
    model.json of another); else the old folder is renamed aside first, and for an instant there is none."""
    if not folder.exists():
        os.rename(new, folder)
    elif _exchange(new, folder):
        shutil.rmtree(new)  # it holds the old files now
    else:
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.rename(folder, old)
        os.rename(new, folder)
        shutil.rmtree(old)


def _onnx(module: nn.Module, args, names_in, names_out, path: Path) -> None:
    # torch.export's exporter with onnxscript's optimiser, static shapes (one image), the weights inside
    # the file: half the nodes of the TorchScript exporter's graph, and each node costs in WebAssembly.
    def write(tmp):
        program = torch.onnx.export(module, args, input_names=list(names_in), output_names=list(names_out),
                                    dynamo=True, optimize=True, verbose=False)
        program.save(tmp, external_data=False)

    _write_atomic(path, write)


def _prior(name: str, D, n_images: int = 4000) -> Optional[dict]:
    """The Gaussian prior of a generation model (the paper's: one component, full covariance), as lists."""
    from .data import load_dataset
    from .generation import GaussianPrior

    if not getattr(D, "has_latent", False):
        return None
    images = load_dataset("mnist5k", split="train").images[:n_images]
    prior = GaussianPrior(D, images)
    return {"latent": LATENTS.get(type(D).name, type(D).name), "mean": prior.means[0].tolist(),
            "scale_tril": prior.scale_trils[0].tolist(), "factor": 2 ** D.T if type(D).name == "superres" else None}


def export_model(name: str, out: Path, noise_std: Optional[float] = None) -> Path:
    """Export zoo model ``name`` to ``out/name/`` (step.onnx, degrade.onnx, model.json); returns that folder.

    Raises ValueError (one line) for an unknown model or a degradation that is not separable linear.
    """
    from . import zoo
    from .zoo.build import config_of

    model, D = zoo.load_pretrained(name)
    info = zoo.card(name)
    size = int(config_of(name)["data"]["image_size"])
    channels = int(info["model_config"]["channels"])
    try:
        mats = D.axis_matrices(size)
    except NotImplementedError as err:
        raise ValueError(f"zoo model {name!r}: cannot export for the page: {err}") from None
    folder = Path(out) / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.parent.glob(f".{name}.*.new"), *folder.parent.glob(f".{name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # what an export killed halfway left
    # The three files go into a new folder beside the old one, which then takes its place in one step.
    new = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}.", suffix=".new"))
    try:
        model = model.float().eval()
        x = torch.zeros(1, channels, size, size)
        t = torch.tensor([D.T])
        with torch.no_grad():
            _onnx(SamplerStep(model, mats).eval(), (x, t, torch.ones(1)), ["x", "s", "improved"],
                  ["x_next", "x0_hat"], new / "step.onnx")
            _onnx(Degrader(mats).eval(), (x, t), ["x0", "t"], ["x_t"], new / "degrade.onnx")
        if noise_std is None:
            noise_std = 0.002 if type(D).name == "blur" else 0.0
        meta = {"name": name, "task": info.get("task"), "degradation": D.config(), "T": D.T,
                "shape": [channels, size, size], "prior": _prior(name, D) if info.get("task") == "generation" else None, "noise_std": noise_std,
                "parameters": sum(p.numel() for p in model.parameters()),
                "sha256": {f: zoo.sha256_of(new / f) for f in ("step.onnx", "degrade.onnx")}}
        _write_atomic(new / "model.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
        os.chmod(new, 0o755)  # mkdtemp makes it private; these files are served to readers
        _replace_folder(new, folder)
    finally:
        shutil.rmtree(new, ignore_errors=True)  # only when something failed before the swap
    return folder


def page_digits(n: int = 24) -> torch.Tensor:
    """The held-out digits the page offers, [n, 1, 32, 32] in [-1, 1], quantised to 256 grey levels as
    ``digits.json`` stores them (so the page and PyTorch start from the same pixels)."""
    from .data import load_dataset

    grey = ((load_dataset("mnist5k", split="test").images[:n] + 1) * 127.5).round().clamp(0, 255)
    return grey / 127.5 - 1


def export_digits(out: Path, n: int = 24) -> Path:
    """Write ``out/digits.json``: ``n`` held-out digits as 0..255 grey levels, row-major, with their labels."""
    from .data import load_dataset

    data = load_dataset("mnist5k", split="test")
    grey = ((page_digits(n)[:, 0] + 1) * 127.5).round().to(torch.uint8)
    path = Path(out) / "digits.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"size": int(grey.shape[-1]), "labels": data.labels[:n].tolist(), "pixels": grey.flatten(1).tolist()}
    _write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, separators=(",", ":"))))
    return path


def export_book(out: Path, names=BOOK_MODELS) -> Path:
    """Everything the book's live figures read, under ``out``: each model's folder, ``digits.json`` and
    ``book.json`` (the models, and the algorithms' colours from :data:`colddiff_lib.plotting.ALGORITHM_COLOURS`)."""
    from matplotlib.colors import to_hex

    from .plotting import ALGORITHM_COLOURS

    out = Path(out)
    models = {}
    for name in names:
        meta = json.loads((export_model(name, out) / "model.json").read_text())
        models[name] = {k: meta[k] for k in ("task", "T", "shape", "noise_std")}
        models[name]["degradation"] = meta["degradation"]["name"]
    export_digits(out)
    doc = {"models": models, "colours": {k: to_hex(v) for k, v in ALGORITHM_COLOURS.items()}}
    _write_atomic(out / "book.json", lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))
    return out


def check_export(folder: Path, x: torch.Tensor, improved: bool = True) -> float:
    """Run ``step.onnx`` T times from ``x`` [B, C, H, W] with onnxruntime and with the library's sampler;
    return the largest absolute difference of the final images."""
    import onnxruntime as ort

    from . import zoo
    from .sampling import sample

    meta = json.loads((Path(folder) / "model.json").read_text())
    model, D = zoo.load_pretrained(meta["name"])
    session = ort.InferenceSession(str(Path(folder) / "step.onnx"), providers=["CPUExecutionProvider"])
    flag = torch.full((1,), float(improved)).numpy()
    finals = []
    for image in x.float().split(1):  # the graph takes one image, as the page runs it
        y = image.numpy()
        for s in range(D.T, 0, -1):
            y = session.run(["x_next"], {"x": y, "s": torch.full((1,), s).numpy(), "improved": flag})[0]
        finals.append(torch.from_numpy(y))
    frozen = D.freeze_to(x) if getattr(D, "random", False) else D
    ref = sample(model.float().eval(), frozen, x.float(), D.T, algorithm="improved" if improved else "naive")
    return float((torch.cat(finals) - ref).abs().max())
