"""The paper's tables, measured on the shipped models and the 1,000 held-out digits of ``mnist5k``.

* Reconstruction models: Degraded / Direct / Algorithm 1 / Algorithm 2, each with FID (offline
  classifier features), SSIM, RMSE (on [0, 1]) and PSNR.
* Generation models: for each sampler setting (the card's default first), the share of samples the
  project's classifier is confident about, FID against the training digits (offline classifier features)
  and the histogram of the generated classes; ``generation_reference`` gives the same measures for real
  digits, sharp and mildly blurred.

``python -m colddiff_lib evaluate --zoo all --out results`` writes ``results/reconstruction.{csv,md}``
and ``results/generation.{csv,md}``; each row carries the command that made it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from . import zoo
from . import files
from .data import load_dataset
from .evaluation import generation_measures, reconstruct
from .generation import adds_second_signal
from .metrics import fid, image_metrics
from .paper import mnist_reconstruction
from .runtime import machine, resolve_device
from .sampling import ALGORITHMS
from .tables import to_csv, to_markdown  # noqa: F401 (the tables' format, re-exported)

# The paper's MNIST reconstruction numbers (FID / SSIM / RMSE), as recalled in its Table
# 1-3: read from colddiff_lib/paper.toml, where every number of the paper is written
# once (colddiff_lib.paper).
PAPER_MNIST = mnist_reconstruction()
METHOD_NAMES = {
    "degraded": "Degraded",
    "direct": "Direct",
    "naive": "Algorithm 1",
    "improved": "Algorithm 2",
    "ddim": "DDIM",
    "ancestral": "Ancestral",
}
# Where the committed tables live online (read when only the library is installed, e.g.
# on Colab).
RESULTS_URL = "https://raw.githubusercontent.com/colddiff/colddiff-book/main/results/"


def measure_columns(m: dict) -> dict:
    """A generation row's measure columns, from :func:`evaluation.generation_measures`'s
    result ``m``: the same for a generator's rows and for the real digits' rows."""
    return {
        "confident": m["confident"],
        "fid": m["fid"],
        "class_share_min": m["class_share_min"],
        "class_share_max": m["class_share_max"],
        "nearest_rmse": m["nearest_rmse"],
        "class_histogram": " ".join(str(c) for c in m["class_histogram"]),
    }


def results_file(name: str, download: bool = True) -> Path:
    """Path of a committed results file, ``results/<name>`` (e.g. ``"reconstruction.csv"``).

    Looked up beside the library's clone, then in ``../results`` and ``./results`` (a notebook run
    from ``book/`` or from the repository root). When none holds it and ``download`` is true (on
    Colab only the library is installed), the committed copy is fetched into ``./results/<name>``.
    """
    if (
        not isinstance(name, str)
        or not name
        or Path(name).is_absolute()
        or ".." in Path(name).parts
    ):
        raise ValueError(
            f"name must be a relative path inside results/, e.g. 'reconstruction.csv', got {name!r}"
        )
    repository = Path(__file__).resolve().parents[1]
    for root in (repository / "results", Path("..") / "results", Path("results")):
        if (root / name).is_file():
            return root / name
    if not download:
        raise FileNotFoundError(
            f"results/{name} is not next to the library, in ../results or in ./results"
        )
    import urllib.request

    target = Path("results") / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(RESULTS_URL + name) as response:
        data = response.read()
    files.write_bytes(data, target)
    return target


def read_table(name: str, download: bool = True) -> List[dict]:
    """The rows of a committed CSV table (``"reconstruction.csv"``, ``"generation.csv"``) as dicts of strings."""
    with open(results_file(name, download), newline="") as f:
        return list(csv.DictReader(f))


def reconstruction_rows(
    name: str,
    n: int = 1000,
    seed: int = 0,
    device="cpu",
    command: str = "",
    grid_path: Optional[Path] = None,
) -> List[dict]:
    """Rows of the reconstruction table for the shipped model ``name`` on ``n`` held-out digits."""
    device = resolve_device(device)
    R, D = zoo.load_pretrained(name, device=device)
    classifier = zoo.load_classifier(device=device)
    x0 = load_dataset("mnist5k", split="test").images[:n]
    batch = 1000 if device.type == "cuda" else 250
    results = reconstruct(R, D, x0.to(device), seed=seed, batch_size=batch)
    rows = []
    for method, images in results.items():
        m = image_metrics(images.clamp(-1, 1), x0)
        paper = PAPER_MNIST.get(name, {}).get(method)
        rows.append(
            {
                "model": name,
                "method": METHOD_NAMES[method],
                "n": len(x0),
                "fid": fid(images.clamp(-1, 1), x0, classifier=classifier),
                **m,
                "paper_fid": paper[0] if paper else "",
                "paper_ssim": paper[1] if paper else "",
                "paper_rmse": paper[2] if paper else "",
                "evaluated_on": machine(),
                "command": command,
            }
        )
    if grid_path is not None:
        from .plotting import save_grid

        k = 8
        save_grid(
            torch.cat([x0[:k]] + [results[m][:k] for m in results]), grid_path, nrow=k
        )
    return rows


def generation_settings(name: str) -> List[dict]:
    """The sampler settings of the generation table for the shipped model ``name``, each a dict of
    :func:`colddiff_lib.zoo.sampling`'s keys (``algorithm``, ``noise_std``, ``level``) that replace the card's.

    The card's default comes first; then Algorithm 2 and Algorithm 1 from the same start; where the card
    starts below T, the paper's start at T too (the pure cold rows stay, whatever they score); Algorithm 2
    from a start at T without the symmetry-breaking noise ("perfect symmetry") where the degradation adds
    one; and, for a degradation with a noise schedule (the hot baseline, a noisy cold one), DDIM and the
    ancestral sampler.
    """
    from . import degradations as dg

    default = zoo.sampling(name)
    D = dg.build(**zoo.card(name)["degradation"])
    noise, level = default["noise_std"], default["level"]
    # the paper's start: one Gaussian fitted at T
    paper = {"level": None, "components": 1}
    settings = [
        {"algorithm": default["algorithm"], "noise_std": noise, "level": level},
        {"algorithm": "improved", "noise_std": noise, "level": level},
        {"algorithm": "naive", "noise_std": noise, "level": level},
    ]
    # the paper's start at T: its latent's Gaussian, or D.prior (a face)
    if level is not None:
        settings.append(
            {"algorithm": "improved", "noise_std": D.symmetry_noise, **paper}
        )
    if D.symmetry_noise and D.noise_schedule() is None:
        settings.append(
            {
                "algorithm": "improved",
                "noise_std": 0.0,
                **(paper if level is not None else {"level": None}),
            }
        )
    if D.noise_schedule() is not None:
        settings += [
            {"algorithm": "ddim", "noise_std": noise, "level": level},
            {"algorithm": "ancestral", "noise_std": noise, "level": level},
        ]
    unique = {tuple(sorted(setting.items())): setting for setting in settings}
    return list(unique.values())


def parse_settings(texts: Sequence[str]) -> List[dict]:
    """``["improved:0.02", "naive:0:4"]`` -> ``[{"algorithm": "improved", "noise_std": 0.02},
    {"algorithm": "naive", "noise_std": 0.0, "level": 4}]`` (the CLI's ``--settings``): ALGORITHM:NOISE_STD,
    optionally :LEVEL, the level to start from (``T`` for the end state)."""
    settings = []
    for text in texts:
        algorithm, _, rest = str(text).partition(":")
        noise, _, level = rest.partition(":")
        try:
            noise_std = float(noise)
        except ValueError:
            noise_std = -1.0
        if (
            algorithm not in ALGORITHMS
            or not noise_std >= 0
            or not (level in ("", "T") or level.isdigit())
        ):
            raise ValueError(
                f"settings must look like ALGORITHM:NOISE_STD[:LEVEL] with ALGORITHM one of "
                f"{', '.join(ALGORITHMS)}, NOISE_STD >= 0 and LEVEL an int or T (e.g. improved:0.02 "
                f"or improved:0:4), got {text!r}"
            )
        setting = {"algorithm": algorithm, "noise_std": noise_std}
        if level:
            setting["level"] = None if level == "T" else int(level)
        settings.append(setting)
    return settings


def _judge(device: str):
    """The shipped classifier on ``device`` and the 4,000 training digits that every generation row is
    judged against, the same two objects for the whole process (and the same classifier weights): FID then
    passes the digits through the network once, not once per row (:func:`colddiff_lib.metrics.fid`)."""
    key = (device, zoo.card(zoo.CLASSIFIER)["sha256"])
    if key not in _JUDGES:
        _JUDGES[key] = (
            zoo.load_classifier(device=device),
            load_dataset("mnist5k", split="train").images,
        )
    return _JUDGES[key]


_JUDGES: Dict[tuple, tuple] = {}


def generation_rows(
    name: str,
    n: int = 1000,
    seed: int = 0,
    device="cpu",
    command: str = "",
    grid_path: Optional[Path] = None,
    settings: Optional[Sequence[dict]] = None,
) -> List[dict]:
    """Rows of the generation table for the shipped model ``name``: ``n`` samples per setting, judged by
    :func:`colddiff_lib.evaluation.generation_measures` against the 4,000 training digits.

    ``settings``: dicts of :func:`colddiff_lib.zoo.sampling`'s keys, by default :func:`generation_settings`;
    the row of the card's own setting says ``default: yes``. Each setting starts from the same seed, so a
    row does not depend on which other settings are computed.
    """
    classifier, train = _judge(str(device))
    default = zoo.sampling(name)
    settings = generation_settings(name) if settings is None else list(settings)
    D = zoo.load_pretrained(name)[1]
    rows, grids = [], []
    for setting in settings:
        chosen = {**default, **setting}
        samples, _ = zoo.generate(name, n, seed=seed, device=device, **setting)
        samples = samples.cpu()
        grids.append(samples[:16])
        m = generation_measures(samples, train, classifier)
        k = chosen["components"]
        if chosen["level"] is not None:
            prior = f"level {chosen['level']}: gaussian fit ({k} component{'s' if k > 1 else ''}, {chosen['dims']} PCs)"
            if adds_second_signal(D, chosen["level"]):
                prior += " + D.prior"  # the face (or noise) D blends toward
        elif D.has_latent:
            prior = f"level T: gaussian fit ({k} component{'s' if k > 1 else ''})"
        else:
            prior = "level T: D.prior"
        same = all(chosen[key] == default[key] for key in default)
        rows.append(
            {
                "model": name,
                "method": METHOD_NAMES[chosen["algorithm"]],
                "noise_std": chosen["noise_std"],
                "start": prior,
                "n": n,
                "default": "yes" if same else "no",
                **measure_columns(m),
                "evaluated_on": machine(),
                "command": command,
            }
        )
    if grid_path is not None:
        from .plotting import save_grid

        save_grid(torch.cat(grids), grid_path, nrow=16)
    return rows


def reference_rows(command: str = "") -> List[dict]:
    """What the generation measures give for real digits: the 1,000 held-out digits, and the same digits
    after a 3 x 3 box blur (a mild blur), so that a reader can tell what a sample's FID means."""
    import torch.nn.functional as F

    classifier, train = _judge("cpu")
    held_out = load_dataset("mnist5k", split="test").images
    blurred = F.avg_pool2d(F.pad(held_out, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    rows = []
    for label, images in (
        ("held-out digits", held_out),
        ("held-out digits, 3 x 3 box blur", blurred),
    ):
        m = generation_measures(images, train, classifier)
        rows.append(
            {
                "images": label,
                "n": len(images),
                **measure_columns(m),
                "evaluated_on": machine(),
                "command": command,
            }
        )
    return rows


def new_defaults_first(merged: Sequence[dict], new: Sequence[dict]) -> List[dict]:
    """Generation rows ``merged`` with one default per model: where ``new`` holds a model's default row
    (the card's settings changed, so its start differs from the old default's), the model's older rows
    are kept as measurements of other settings with ``default`` "no", after the new ones (in their order),
    which take the place of the model's first row."""
    renewed = {r["model"] for r in new if r.get("default") == "yes"}
    fresh = {id(r) for r in new}
    by_model: Dict[str, List[dict]] = {}
    for row in merged:
        by_model.setdefault(row["model"], []).append(row)
    rows = []
    for model, group in by_model.items():
        if model in renewed:
            group = [r for r in new if r["model"] == model] + [
                {**r, "default": "no"} for r in group if id(r) not in fresh
            ]
        rows += group
    return rows


def reproduce(
    names: Sequence[str],
    out_dir,
    n: int = 1000,
    seed: int = 0,
    device="cpu",
    command: str = "",
    settings: Optional[Sequence[dict]] = None,
) -> Dict[str, List[dict]]:
    """Evaluate shipped models and write ``reconstruction`` and ``generation`` tables (CSV, Markdown), the
    ``generation_reference`` rows and sample grids into ``out_dir``.

    A table that is already there is merged into, never overwritten: a row with the same model, method and
    noise replaces the old one, every other row is kept (:func:`colddiff_lib.tables.merge_rows`); a
    generation model's new default row comes first and its older rows stop being defaults
    (:func:`new_defaults_first`). ``settings`` replaces the generation models' default sampler settings (:func:`generation_settings`). Returns
    ``{table: rows written}`` and, under ``"replaced"``, the keys of the rows that replaced older ones.
    """
    from .tables import merge_rows, read_csv

    out = Path(out_dir)
    tables: Dict[str, List[dict]] = {"reconstruction": [], "generation": []}
    for name in names:
        task = zoo.card(name).get("task")
        if task == "reconstruction":
            tables[task] += reconstruction_rows(
                name, n, seed, device, command, out / f"{name}.png"
            )
        elif task == "generation":
            tables[task] += generation_rows(
                name, n, seed, device, command, out / f"{name}.png", settings
            )
        else:
            raise ValueError(
                f"{name!r} is neither a reconstruction nor a generation model (task={task!r})"
            )
    if tables["generation"]:
        tables["generation_reference"] = reference_rows(command)
    replaced = []
    for table, rows in list(tables.items()):
        if not rows:
            continue
        key = {
            "generation_reference": ("images",),
            "generation": ("model", "method", "noise_std", "start"),
        }.get(table, ("model", "method", "noise_std"))
        merged, dropped = merge_rows(read_csv(out / f"{table}.csv"), rows, key)
        if table == "generation":
            merged = new_defaults_first(merged, rows)
        replaced += [(table, *k) for k in dropped]
        files.write_text(to_csv(merged), out / f"{table}.csv")
        files.write_text(to_markdown(merged), out / f"{table}.md")
    tables["replaced"] = replaced
    return tables
