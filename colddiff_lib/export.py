"""Export a shipped model to ONNX for the book's in-page sampler (onnxruntime-web, no kernel).

One folder per model holds what a web page needs to degrade, restore and generate:

* ``step.onnx``: one step of Algorithm 1 or 2 on one image, ``(x [1, C, H, W] float32 in [-1, 1], s int64
  [1] in 1..T, improved float32 [1], 1 for Algorithm 2 and 0 for Algorithm 1) -> (x_next, x0_hat)``, with the
  network and D's per-axis matrices (:meth:`~colddiff_lib.degradations.Degradation.axis_matrices`)
  as constants;
* ``degrade.onnx``: ``(x0 [1, C, H, W], t int64 [1] in 0..T) -> D(x0, t)``;
* ``model.json``: the model's name, T, image shape, for a generator its prior in one linear form whatever
  the degradation (:func:`page_prior`: a Gaussian mixture's z, painted as ``clamp(offset + z @ basis)``, the
  level it starts from and the symmetry noise), and the SHA-256 of both graphs.

A run of T steps of ``step.onnx`` from x_T is :func:`colddiff_lib.sampling.sample` with ``clip_x0``:
the exported graph computes ``x - M_s x0 M_s^T + M_{s-1} x0 M_{s-1}^T`` (Algorithm 2) or
``M_{s-1} x0 M_{s-1}^T`` (Algorithm 1), which is D for a separable linear degradation (one whose
``export_form`` is ``"separable"``); :func:`check_export` runs both with onnxruntime and compares them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import files

__all__ = [
    "SamplerStep",
    "Degrader",
    "export_model",
    "export_digits",
    "export_book",
    "source_digest",
    "is_current",
    "check_export",
    "page_prior",
    "BOOK_MODELS",
]

# : The models the book's pages run: degradation sliders (chapter 2), Algorithms 1 and 2
# (chapter 4), : generation (chapter 6). The blur models use the ``web`` preset: T = 20
# calls of the ``cpu`` preset's : network take ~190 ms in WebAssembly on one thread, of
# the ``web`` preset's ~80 ms.
BOOK_MODELS = (
    "mnist-blur",
    "mnist-superres",
    "mnist-blur-gen",
    "mnist-superres-gen",
)

# : The samplers a page's ``step.onnx`` runs: its ``improved`` input is 1 for Algorithm
# 2, 0 for Algorithm 1.
PAGE_ALGORITHMS = ("improved", "naive")


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
        # w is 0 or 1: exact either way
        x_next = w * (x - self.D(x0_hat, s) + back) + (1 - w) * back
        return x_next, x0_hat


def _onnx(module: nn.Module, args, names_in, names_out, path: Path) -> None:
    # torch.export's exporter with onnxscript's optimiser, static shapes (one image),
    # the weights inside the file: half the nodes of the TorchScript exporter's graph,
    # and each node costs in WebAssembly.
    def write(tmp: Path):
        program = torch.onnx.export(
            module,
            args,
            input_names=list(names_in),
            output_names=list(names_out),
            dynamo=True,
            optimize=True,
            verbose=False,
        )
        program.save(tmp, external_data=False)

    files.atomic_write_path(path, write)


def _numbers(t: torch.Tensor, digits: int = 8):
    """A tensor as nested lists of floats rounded to ``digits`` significant digits (float32's precision, in
    the fewest characters: model.json stays small when a basis holds thousands of numbers)."""
    return (
        [_numbers(row, digits) for row in t]
        if t.dim()
        else float(f"{float(t):.{digits}g}")
    )


def page_prior(name: str) -> dict:
    """The generation prior of zoo model ``name`` in the one form the page draws from, whatever the
    degradation: ``start = clamp(offset + z @ basis, -1, 1)`` with z from a Gaussian mixture (``weights`` [K],
    ``means`` [K, d], ``scale_trils`` [K, d, d]), then the symmetry noise (``noise_std``) added, and the sampler
    (``algorithm``) run from ``level``. The settings are the card's defaults (:func:`colddiff_lib.zoo.sampling`),
    the mixture is :func:`colddiff_lib.zoo.prior`, the one :func:`colddiff_lib.zoo.generate` samples from, and
    ``offset`` and ``basis`` are its :meth:`~colddiff_lib.generation.GaussianPrior.linear_form`.
    ValueError (one line) where the page cannot draw it: no prior to fit, or a sampler the page lacks."""
    from . import zoo

    settings = zoo.sampling(name)
    _, D = zoo.load_pretrained(name)
    if settings["algorithm"] not in PAGE_ALGORITHMS:
        raise ValueError(
            f"zoo model {name!r}: its default sampler {settings['algorithm']!r} does not run in the page "
            f"(its step.onnx runs {' and '.join(PAGE_ALGORITHMS)})"
        )
    if settings["level"] is None and not D.has_latent:
        raise ValueError(
            f"zoo model {name!r}: {type(D).__name__} has no latent end state and its card no level below "
            f"T, so there is no Gaussian prior to fit for the page"
        )
    prior = zoo.prior(name)  # the very prior zoo.generate samples from
    try:
        offset, basis = prior.linear_form()
    except ValueError as err:
        raise ValueError(f"zoo model {name!r}: {err}") from None
    return {
        "level": prior.level,
        "algorithm": settings["algorithm"],
        "noise_std": settings["noise_std"],
        "weights": _numbers(prior.weights),
        "means": _numbers(prior.means),
        "scale_trils": _numbers(prior.scale_trils),
        "offset": _numbers(offset),
        "basis": _numbers(basis),
    }


def export_model(name: str, out: Path, noise_std: Optional[float] = None) -> Path:
    """Export zoo model ``name`` to ``out/name/`` (step.onnx, degrade.onnx, model.json); returns that folder.

    ``model.json`` holds what the page needs and nothing it must know about the degradation: T, the image
    shape, and for a generator its :func:`page_prior` (``noise_std``: a symmetry noise instead of the card's).
    Raises ValueError (one line) for an unknown model, a degradation the page cannot run
    (:attr:`~colddiff_lib.degradations.Degradation.export_form` is not ``"separable"``) or a generator whose
    prior it cannot draw.
    """
    from . import zoo

    model, D = zoo.load_pretrained(name)
    info = zoo.card(name)
    size = int(zoo.config_of(name).data.get("image_size", 32))
    channels = int(info["model_config"]["channels"])
    if D.export_form != "separable":
        raise ValueError(
            f"zoo model {name!r}: cannot export for the page: {type(D).__name__} with these settings is "
            f"not a separable linear degradation (its export_form is {D.export_form!r})"
        )
    mats = D.axis_matrices(size)
    prior = page_prior(name) if info.get("task") == "generation" else None
    if prior is not None and noise_std is not None:
        prior["noise_std"] = float(noise_std)
    folder = Path(out) / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in [
        *folder.parent.glob(f".{name}.*.new"),
        *folder.parent.glob(f".{name}.old-*"),
    ]:
        shutil.rmtree(stale, ignore_errors=True)  # what an export killed halfway left
    # The three files go into a new folder beside the old one, which then takes its
    # place in one step.
    new = files.make_temporary_folder(folder)
    try:
        model = model.float().eval()
        x = torch.zeros(1, channels, size, size)
        t = torch.tensor([D.T])
        with torch.no_grad():
            _onnx(
                SamplerStep(model, mats).eval(),
                (x, t, torch.ones(1)),
                ["x", "s", "improved"],
                ["x_next", "x0_hat"],
                new / "step.onnx",
            )
            _onnx(
                Degrader(mats).eval(),
                (x, t),
                ["x0", "t"],
                ["x_t"],
                new / "degrade.onnx",
            )
        meta = {
            "name": name,
            "task": info.get("task"),
            "degradation": D.config(),
            "T": D.T,
            "shape": [channels, size, size],
            "prior": prior,
            "parameters": sum(p.numel() for p in model.parameters()),
            "sha256": {
                f: files.sha256_file(new / f) for f in ("step.onnx", "degrade.onnx")
            },
        }
        # One line: a generator's prior holds up to a few hundred thousand numbers.
        files.write_json(meta, new / "model.json", indent=None, sort_keys=False)
        files.replace_folder(new, folder)
    finally:
        # only when something failed before the swap
        shutil.rmtree(new, ignore_errors=True)
    return folder


def page_digits(n: int = 24) -> torch.Tensor:
    """The held-out digits the page offers, [n, 1, 32, 32] in [-1, 1], quantised to 256 grey levels as
    ``digits.json`` stores them (so the page and PyTorch start from the same pixels)."""
    from .data import load_dataset

    grey = (
        ((load_dataset("mnist5k", split="test").images[:n] + 1) * 127.5)
        .round()
        .clamp(0, 255)
    )
    return grey / 127.5 - 1


def export_digits(out: Path, n: int = 24) -> Path:
    """Write ``out/digits.json``: ``n`` held-out digits as 0..255 grey levels, row-major, with their labels."""
    from .data import load_dataset

    data = load_dataset("mnist5k", split="test")
    grey = ((page_digits(n)[:, 0] + 1) * 127.5).round().to(torch.uint8)
    path = Path(out) / "digits.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "size": int(grey.shape[-1]),
        "labels": data.labels[:n].tolist(),
        "pixels": grey.flatten(1).tolist(),
    }
    files.write_json(doc, path, indent=None, sort_keys=False)
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
        models[name] = {k: meta[k] for k in ("task", "T", "shape")}
        models[name]["degradation"] = meta["degradation"]["name"]
    export_digits(out)
    doc = {
        "models": models,
        "colours": {k: to_hex(v) for k, v in ALGORITHM_COLOURS.items()},
        "made_from": source_digest(names),
    }
    files.write_json(doc, out / "book.json", indent=1, sort_keys=False)
    return out


def source_digest(names=BOOK_MODELS) -> str:
    """What an export of ``names`` is made from, as one SHA-256: the library's Python sources, the models'
    cards (their weights' digests and settings), and the versions of the packages that trace the graphs
    and fit the priors. ``book.json`` records it (``made_from``): a folder with the current digest is what
    :func:`export_book` would write now (:func:`is_current`)."""
    from importlib import metadata

    from . import zoo

    package = Path(__file__).resolve().parent
    made_from = {
        "sources": {
            str(path.relative_to(package)): files.sha256_file(path)
            for path in sorted(package.rglob("*.py"))
        },
        "cards": {name: zoo.card(name) for name in names},
        "packages": {
            dist: metadata.version(dist)
            for dist in (
                "torch",
                "onnx",
                "onnxscript",
                "numpy",
                "scikit-learn",
                "mlxtend",
            )
        },
    }
    return files.sha256_bytes(files.canonical_json(made_from))


def is_current(folder: Path, names=BOOK_MODELS) -> bool:
    """Whether ``folder`` holds an :func:`export_book` of ``names`` made from this library, these cards and
    these packages (``book.json``'s ``made_from``), e.g. ``book/_static/live`` after ``make static``."""
    try:
        made_from = json.loads((Path(folder) / "book.json").read_text())["made_from"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return made_from == source_digest(names)


def check_export(folder: Path, x: torch.Tensor, improved: bool = True) -> float:
    """Run ``step.onnx`` T times from ``x`` [B, C, H, W] with onnxruntime and with the library's sampler;
    return the largest absolute difference of the final images."""
    import onnxruntime as ort

    from . import zoo
    from .sampling import sample

    meta = json.loads((Path(folder) / "model.json").read_text())
    model, D = zoo.load_pretrained(meta["name"])
    session = ort.InferenceSession(
        str(Path(folder) / "step.onnx"), providers=["CPUExecutionProvider"]
    )
    flag = torch.full((1,), float(improved)).numpy()
    finals = []
    for image in x.float().split(1):  # the graph takes one image, as the page runs it
        y = image.numpy()
        for s in range(D.T, 0, -1):
            y = session.run(
                ["x_next"], {"x": y, "s": torch.full((1,), s).numpy(), "improved": flag}
            )[0]
        finals.append(torch.from_numpy(y))
    frozen = D.freeze_to(x) if getattr(D, "random", False) else D
    ref = sample(
        model.float().eval(),
        frozen,
        x.float(),
        D.T,
        algorithm="improved" if improved else "naive",
    )
    return float((torch.cat(finals) - ref).abs().max())
