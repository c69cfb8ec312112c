"""Command line: ``python -m colddiff_lib train|sample|evaluate|export``.

A run is described by a TOML file (``configs/*.toml``, read by :class:`colddiff_lib.config.RunConfig`): the
tables ``[data]``, ``[degradation]``, ``[model]`` and ``[train]``, each optional, plus ``[zoo]`` and
``[sampling]``, which only the zoo reads. Command-line flags override the file. ``train`` writes into
``--out``: ``last.pt`` (and ``best.pt`` with held-out evaluation), ``run.json`` (the resolved config and the
command), ``history.json``, ``loss.png`` and ``samples.png``. Training resumes from ``last.pt`` with
``--resume``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import torch

from . import degradations as dg
from .export import BOOK_MODELS
from .models import PRESETS
from .sampling import ALGORITHMS
from . import files
from .checkpoint import load_checkpoint, restore
from .checks import did_you_mean


def _parse_overrides(pairs: List[str]) -> dict:
    """``key=value`` strings -> dict, values parsed as JSON when they parse (numbers, true, lists)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# : The files ``train`` writes into ``--out``: a folder holding any of them is another
# run's (or a user's).
RUN_FILES = (
    "last.pt",
    "best.pt",
    "run.json",
    "history.json",
    "loss.png",
    "samples.png",
)


def cmd_train(args) -> int:
    """``train``: the run's settings (config file, then flags), its --out folder (locked to the very end), its
    data, degradation and model, then the training and its report."""
    with contextlib.ExitStack() as held:
        run = _train_settings(args)
        # torchrun sets RANK; rank 0 writes and locks
        main_process = int(os.environ.get("RANK", "0")) == 0
        if main_process:
            _take_out(run, args.overwrite, held)
        model, D, train_set, test_set = _train_parts(run)
        val = getattr(test_set, "images", None)
        if val is not None:
            val = val[: args.val_images] if args.val_images > 0 else None
        if main_process:
            _start_run(run, model, D, args.overwrite)
        return _train_and_report(
            model,
            D,
            train_set,
            test_set,
            val,
            run.config,
            run.data,
            run.out,
            main_process,
        )


def _train_settings(args) -> SimpleNamespace:
    """The run ``train`` asks for, checked before anything is written: the config file's tables with the
    flags on top (``data``, ``degradation``, ``preset``, ``model``, ``config``: a TrainConfig), ``out``,
    ``command``."""
    from .checkpoint import check_data_config
    from .config import RunConfig
    from .runtime import resolve_device
    from .training import TrainConfig

    cfg = (
        RunConfig.from_toml(args.config, where=f"--config {args.config}")
        if args.config
        else RunConfig()
    )
    try:
        deg_overrides, model_overrides = (
            _parse_overrides(args.deg),
            _parse_overrides(args.model),
        )
    except RecursionError:  # 5,000 nested brackets: json recurses once per level
        raise ValueError(
            "--deg/--model: nested too deeply (arrays or tables inside each other); a run config is "
            "flat tables of keys"
        ) from None
    where = f"--config {args.config}: " if args.config else ""
    if args.image_size is not None and not 4 <= args.image_size <= 1024:
        raise ValueError(
            f"--image-size: expected an int >= 4 and <= 1024, got {args.image_size}"
        )
    data = {
        "dataset": "mnist5k",
        "image_size": 32,
        **cfg.data,
        **{
            k: v
            for k, v in (("dataset", args.dataset), ("image_size", args.image_size))
            if v is not None
        },
    }
    check_data_config(data, where + "data")
    degradation = {"name": dg.DEFAULT, **cfg.degradation, **deg_overrides}
    if args.degradation:
        degradation["name"] = args.degradation
    model = {"preset": "tiny", **cfg.model, **model_overrides}
    if args.preset:
        model["preset"] = args.preset
    preset = _check_model_table(model)
    train = dict(cfg.train)
    for key in (
        "steps",
        "batch_size",
        "lr",
        "device",
        "seed",
        "eval_every",
        "checkpoint_every",
        "log_every",
    ):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    if args.resume and args.overwrite:
        raise ValueError(
            "--resume continues the run in --out and --overwrite replaces it: give one of them"
        )
    if args.resume:
        train["resume"] = True
    if args.no_progress:
        train["progress"] = False
    train["checkpoint_dir"] = str(args.out)
    config = TrainConfig.from_dict(train, where=where + "train")
    # a device this machine lacks is refused before anything is written
    resolve_device(config.device)
    return SimpleNamespace(
        data=data,
        degradation=degradation,
        preset=preset,
        model=model,
        where=where,
        config=config,
        out=Path(args.out),
        command="python -m colddiff_lib " + " ".join(shlex.quote(a) for a in args.argv),
    )


def _check_model_table(model: dict) -> str:
    """Take the preset out of a ``[model]`` table (checked, returned); the other keys must be UNet arguments."""
    from .models import UNet

    preset = model.pop("preset")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(
            f"model.preset: expected one of {sorted(PRESETS)}, got {preset!r}"
            f"{did_you_mean(preset, PRESETS)}"
        )
    unet_args = [k for k in inspect.signature(UNet).parameters if k != "channels"]
    for key in model:
        if key not in unet_args:
            raise ValueError(
                f"model.{key}: unknown key{did_you_mean(key, unet_args)}; expected preset or one of "
                f"{unet_args}"
            )
    return preset


def _take_out(run, overwrite: bool, held: contextlib.ExitStack) -> None:
    """Lock ``--out`` for the rest of the command (one run, one folder), after checking it can hold this run."""
    from .checkpoint import run_lock

    # a folder, writable
    _check_out(run.out, run.config.resume, overwrite, contents=False)
    held.enter_context(run_lock(run.out, run.command, what="--out"))
    _check_out(run.out, run.config.resume, overwrite)  # no other run can write here now


def _train_parts(run):
    """``(model, D, train_set, test_set)`` of the run: the datasets, the degradation for their channels, and
    the U-Net within the parameter budget, its initial weights drawn from the run's seed."""
    from .checkpoint import check_model_config
    from .data import load_dataset
    from .models import UNet

    size = run.data["image_size"]
    train_set = load_dataset(run.data["dataset"], split="train", image_size=size)
    test_set = load_dataset(run.data["dataset"], split="test", image_size=size)
    channels = train_set[0].shape[0]
    D = dg.build(**{"channels": channels, **run.degradation})
    # the budget
    check_model_config(
        {**PRESETS[run.preset], **run.model, "channels": channels}, run.where + "model"
    )
    # the initial weights follow the seed: a run repeats bit for bit
    torch.manual_seed(run.config.seed)
    try:
        model = UNet.from_preset(run.preset, channels=channels, **run.model)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model: {err}") from None
    return model, D, train_set, test_set


def _start_run(run, model, D, overwrite: bool) -> None:
    """Rank 0, before the first step: refuse a resume of another run, clear what ``--overwrite`` replaces,
    write ``run.json`` (the resolved settings, the command, the machine) and say what is trained."""
    from .models import count_parameters
    from .runtime import resolve_device
    from .training import run_identity

    identity = run_identity(model, D, run.config, run.data)
    _check_same_run(run.out, run.config.resume, identity)  # before anything is written
    if overwrite:
        removed = [name for name in RUN_FILES if (run.out / name).exists()]
        for name in removed:
            (run.out / name).unlink()
        if removed:
            print(
                f"--overwrite: removed the earlier run's {', '.join(removed)} from {run.out}",
                flush=True,
            )
    device = resolve_device(run.config.device)
    info = {
        "data": run.data,
        "degradation": D.config(),
        "model": {"preset": run.preset, **model.config()},
        "train": dict(vars(run.config)),
        "parameters": count_parameters(model),
        "command": run.command,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "identity": identity,
    }
    files.write_json(info, run.out / "run.json")
    print(
        f"training {run.preset} U-Net ({info['parameters'] / 1e6:.2f}M parameters) on {run.data['dataset']} "
        f"to invert {D} on {device}",
        flush=True,
    )


def _check_same_run(out: Path, resume: bool, identity: dict) -> None:
    """With ``--resume``, refuse a folder whose ``last.pt`` (or, before the first checkpoint, ``run.json``) is
    another run's, naming the differing keys."""
    from .training import check_resume, describe_differences, identity_differences

    if not resume:
        return
    last = out / "last.pt"
    if last.exists():
        # train() warns, once
        check_resume(load_checkpoint(last), last, identity, warn=False)
        return
    stored = None
    if (out / "run.json").exists():
        try:
            stored = json.loads((out / "run.json").read_text()).get("identity")
        except (OSError, ValueError, AttributeError):
            raise ValueError(
                f"--out {out}: run.json is not a readable run description; use --overwrite to "
                f"replace it, or another folder"
            ) from None
    diff = identity_differences(stored, identity) if isinstance(stored, dict) else []
    if diff:
        raise ValueError(
            f"--resume: {out / 'run.json'} describes another run: {describe_differences(diff)}; resume "
            f"with its settings, --overwrite it, or train into another folder (nothing was written)"
        )


def _train_and_report(
    model, D, train_set, test_set, val, config, data_cfg, out: Path, main_process: bool
) -> int:
    """Train, then (rank 0) write history.json, loss.png and samples.png into ``out``."""
    from .plotting import plot_history, save_figure, save_grid
    from .training import train

    # without a progress bar (background runs): one line per log_every steps, with an
    # ETA
    def log(info):
        done = info["step"]
        rate = info["elapsed"] / done if done else 0.0
        print(
            f"step {done}/{config.steps} loss {info['loss']:.4f} lr {info['lr']:.2e} "
            f"{info['elapsed']:.0f} s, ETA {rate * (config.steps - done):.0f} s",
            flush=True,
        )

    start = time.perf_counter()
    result = train(
        model,
        D,
        train_set,
        config,
        val_data=val,
        extra={"data": data_cfg},
        callback=None if config.progress else log,
    )
    seconds = time.perf_counter() - start
    if not main_process:
        # under torchrun, rank 0 writes the history and figures (as it writes the
        # checkpoints)
        return 0
    files.write_json(
        {**result.history, "seconds_this_session": seconds}, out / "history.json"
    )
    save_figure(plot_history(result.history).figure, out / "loss.png")
    # A sample grid: test images, degraded, direct, Algorithm 2 (or generated images).
    R = result.ema.eval()
    x0 = torch.stack([test_set[i] for i in range(8)]).to(next(R.parameters()).device)
    try:
        from .evaluation import reconstruct

        rec = reconstruct(R, D, x0, methods=("degraded", "direct", "improved"))
        save_grid(
            torch.cat([x0.cpu(), rec["degraded"], rec["direct"], rec["improved"]]),
            out / "samples.png",
            nrow=8,
        )
    except NotImplementedError:
        pass
    print(
        f"done: step {result.step}, last loss {result.history['loss'][-1]:.4f}, {seconds:.0f} s; wrote {out}"
    )
    return 0


def _check_out(
    out: Path, resume: bool, overwrite: bool = False, contents: bool = True
) -> None:
    """Refuse an ``--out`` that is a file, is not writable, or (``contents``) holds any file this run would
    write (:data:`RUN_FILES`: another run's, or a user's) unless ``--resume`` continues the run there or
    ``--overwrite`` replaces it. A resume needs that run's ``last.pt`` (or, killed before its first
    checkpoint, only its ``run.json``)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    last = out / "last.pt"
    present = [name for name in RUN_FILES if (out / name).exists()]
    if contents and present and not overwrite:
        if not resume:
            raise ValueError(
                f"--out {out}: already holds a run ({', '.join(present)}); add --resume to continue "
                f"it, --overwrite to replace it, or choose another folder (nothing was overwritten)"
            )
        if not last.exists() and set(present) - {"run.json"}:
            raise ValueError(
                f"--out {out}: holds {', '.join(present)} but no last.pt to resume from; add "
                f"--overwrite to replace them, or choose another folder (nothing was overwritten)"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        files.write_bytes(b"", probe)
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"--out {out}: cannot write there ({err.strerror or err})"
        ) from None
    if contents and resume and not last.exists():
        print(f"--resume: no {last} yet, starting a new run", flush=True)


#: The most images ``sample`` makes in one grid.
MAX_SAMPLES = 10_000
# : The datasets a checkpoint may name for ``sample`` and ``evaluate`` to open by
# themselves: offline and : shipped with the library. Anything else a checkpoint names
# (a folder, a set that downloads) is opened : only when the user names it with
# ``--dataset``.
CHECKPOINT_DATASETS = ("mnist5k",)


def _dataset(args, ckpt: dict, split: str, R):
    """``(dataset, name)``: the images ``sample`` or ``evaluate`` reads, ``--dataset`` when given, else the
    checkpoint's when it is one of :data:`CHECKPOINT_DATASETS`; ``(None, name)`` otherwise. A folder named by
    a checkpoint is never opened (its files are the checkpoint author's choice, not the user's)."""
    from .data import load_dataset

    data_cfg = ckpt.get("data") or {"dataset": "mnist5k", "image_size": 32}
    name = args.dataset or data_cfg.get("dataset", "mnist5k")
    if not args.dataset and name not in CHECKPOINT_DATASETS:
        return None, name
    channels = R.channels if R.channels in (1, 3) else None
    return load_dataset(
        name, split, data_cfg.get("image_size", 32), channels=channels
    ), name


def _images(dataset, n: int) -> torch.Tensor:
    """The first ``n`` images of a dataset as one tensor (in-memory sets directly, folders one by one)."""
    images = getattr(dataset, "images", None)
    if images is not None:
        return images[:n]
    return torch.stack([dataset[i] for i in range(min(n, len(dataset)))])


def _load_model(args):
    from .runtime import resolve_device

    device = resolve_device(args.device or "auto")
    ckpt = load_checkpoint(args.checkpoint, map_location="cpu")
    R, D = restore(
        ckpt,
        use_ema=not args.raw_weights,
        device=device,
        where=f"checkpoint {args.checkpoint}",
    )
    return R, D, ckpt, device


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default: argparse's "(default: ...)" where the default is a value; an
    option whose default comes from elsewhere (a config file, the checkpoint, the degradation) says so in its
    own help text."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is argparse.SUPPRESS
        ):
            return text
        return super()._get_help_string(action)


#: How the samplers are called in what ``sample`` and ``evaluate`` print.
ALGORITHM_NAMES = {
    "improved": "Algorithm 2",
    "naive": "Algorithm 1",
    "ddim": "DDIM",
    "ancestral": "ancestral sampling",
}


def _sample_warnings(args, D, images=None) -> List[str]:
    """What does not fit in a ``sample`` request: a start the model was not trained on, ignored options."""
    warnings = []
    if args.mode == "generate":
        if (
            not D.has_latent
            and not D.random
            and type(D).prior is not dg.Degradation.prior
        ):
            warnings.append(
                f"--mode generate: {D} does not forget the image at T = {D.T} (its end state has no "
                f"latent: has_latent is false), so D(x0, T) still shows the digit and a start drawn from "
                f"D.prior is not an end state the model was trained on: expect blobs; train a generator "
                f"whose end state forgets the image (the mnist-*-gen configs)"
            )
        elif D.has_latent and images is not None and D.noise_schedule() is None:
            x0 = images[:8].float()
            x_T = (
                D.freeze(x0, torch.Generator().manual_seed(0))(x0, D.T)
                if D.random
                else D(x0, D.T)
            )
            gap = float(
                (D.from_latent(D.latent(x_T), tuple(x_T.shape[1:])) - x_T).abs().max()
            )
            if gap > 1e-3:
                warnings.append(
                    f"--mode generate: {type(D).__name__}'s end state D(x0, T) is not the start that "
                    f"its latent describes (off by up to {gap:.3g}), so generation starts where the "
                    f"model was not trained"
                )
        elif not D.has_latent and type(D).prior is dg.Degradation.prior:
            warnings.append(
                f"--mode generate: {type(D).__name__}'s end state does not forget the image (no "
                f"latent, no prior): there is nothing random to generate from"
            )
        if args.t is not None:
            warnings.append(
                f"--t {args.t} is ignored with --mode generate: generation starts at T = {D.T}"
            )
    else:
        if args.uniform_prior:
            warnings.append("--uniform-prior only applies to --mode generate; ignored")
        if args.noise_std is not None:
            warnings.append("--noise-std only applies to --mode generate; ignored")
    return warnings


def _grid_rows(inputs, result, labels, columns: int):
    """The input rows above the result, for each group of ``columns`` images: (images, row labels)."""
    rows, names = [], []
    for start in range(0, len(result), columns):
        for images, label in zip((*inputs, result), labels):
            chunk = images[start : start + columns].cpu()
            if len(chunk) < columns:  # pad the last group with blank (mid-grey) tiles
                chunk = torch.cat(
                    [chunk, torch.zeros(columns - len(chunk), *chunk.shape[1:])]
                )
            rows.append(chunk)
            names.append(label)
    return torch.cat(rows), names


def cmd_sample(args) -> int:
    from .generation import GaussianPrior, generate
    from .plotting import save_grid
    from .sampling import sample

    R, D, ckpt, device = _load_model(args)
    if args.n > MAX_SAMPLES:
        raise ValueError(f"--n must be at most {MAX_SAMPLES}, got {args.n}")
    if args.mode == "reconstruct" and args.t is not None and not 1 <= args.t <= D.T:
        raise ValueError(
            f"--t must lie in 1..T = 1..{D.T} for this {type(D).name} model, got {args.t}"
        )
    noise_std = D.symmetry_noise if args.noise_std is None else args.noise_std
    algorithm = ALGORITHM_NAMES.get(args.algorithm, args.algorithm)
    g = torch.Generator().manual_seed(args.seed)
    if args.mode == "generate":
        images = None
        size = (ckpt.get("data") or {}).get("image_size", 32)
        shape, prior = (R.channels, size, size), None
        # a Gaussian fitted to training images, if the user names them
        if D.has_latent and not args.uniform_prior:
            train_set, name = _dataset(args, ckpt, "train", R)
            if train_set is None:
                print(
                    f"prior: the degradation's own (D.prior), not a Gaussian fitted to training images: "
                    f"{args.checkpoint} names the dataset {name!r:.100}, and sample opens no dataset a checkpoint "
                    f"names; give --dataset to fit one",
                    flush=True,
                )
            else:
                images = _images(train_set, 4000)
                shape, prior = tuple(images.shape[1:]), GaussianPrior(D, images)
        if prior is None:  # before any warning: a bad request is one error line
            try:
                D.prior(1, shape)
            except NotImplementedError:
                with_prior = sorted(
                    n
                    for n, c in dg.REGISTRY.items()
                    if c.prior is not dg.Degradation.prior
                )
                raise ValueError(
                    f"--mode generate: {args.checkpoint} is a {type(D).name!r} model, and "
                    f"{type(D).__name__} has no generation prior (no end state to start from); "
                    f"generate with a model of a degradation that has one: "
                    f"{', '.join(with_prior)}"
                ) from None
        for warning in _sample_warnings(args, D, images):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        start = (
            "a Gaussian fitted to training images" if prior is not None else "D.prior"
        )
        print(
            f"sample: mode generate, {args.n} images from x_T at t = T = {D.T} ({start}, start noise "
            f"{noise_std:g}), by {algorithm} ({args.algorithm}), {D.T} steps",
            flush=True,
        )
        x, x_T = generate(
            R,
            D,
            args.n,
            shape,
            prior=prior,
            noise_std=noise_std,
            algorithm=args.algorithm,
            generator=g,
            device=device,
        )
        inputs, labels = (x_T,), ["x_T", f"generated ({algorithm})"]
    else:
        test, name = _dataset(args, ckpt, "test", R)
        if test is None:
            raise ValueError(
                f"--dataset: reconstruction needs held-out images; {args.checkpoint} names the dataset "
                f"{name!r:.100}, and sample opens no dataset a checkpoint names (only the offline "
                f"mnist5k): give --dataset NAME_OR_FOLDER"
            )
        if args.n > len(test):
            raise ValueError(
                f"--n {args.n}: the held-out images of {name!r:.100} are only {len(test)}"
            )
        for warning in _sample_warnings(args, D):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        x0 = torch.stack([test[i] for i in range(args.n)]).to(device)
        Df = D.freeze(x0, g)
        t = args.t if args.t is not None else D.T
        print(
            f"sample: mode reconstruct, {args.n} held-out images of {name}, from x_t = D(x0, t) at t = {t} "
            f"(of T = {D.T}), by {algorithm} ({args.algorithm}), {t} steps",
            flush=True,
        )
        x_t = Df(x0, t)
        x = sample(R, Df, x_t, t, algorithm=args.algorithm)
        inputs, labels = (x0, x_t), ["x0", f"x_t (t = {t})", f"restored ({algorithm})"]
    columns = min(args.n, 8)
    grid, row_labels = _grid_rows(inputs, x, labels, columns)
    save_grid(grid, args.out, nrow=columns, labels=row_labels)
    print(
        f"wrote {args.n} images to {args.out}: {len(row_labels)} rows of {columns}, "
        f"{' / '.join(labels)} for each group of {columns}"
    )
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate_reconstruction, format_table

    if args.zoo:
        return _evaluate_zoo(args)
    if not args.checkpoint:
        raise ValueError("evaluate needs --checkpoint PATH or --zoo NAME")
    R, D, ckpt, device = _load_model(args)
    test, name = _dataset(args, ckpt, "test", R)
    if test is None:
        raise ValueError(
            f"--dataset: evaluation needs held-out images; {args.checkpoint} names the dataset "
            f"{name!r:.100}, and evaluate opens no dataset a checkpoint names (only the offline "
            f"mnist5k): give --dataset NAME_OR_FOLDER"
        )
    x0 = _images(test, args.n)
    from .evaluation import METHODS

    print(
        f"evaluate: {args.checkpoint}: {D} on {len(x0)} held-out images, degraded to t = T = {D.T}, "
        f"{len(METHODS)} methods",
        flush=True,
    )
    rows, began = {}, time.perf_counter()
    # one method at a time (the same draws as all at once)
    for k, method in enumerate(METHODS, 1):
        start = time.perf_counter()
        rows.update(
            evaluate_reconstruction(
                R, D, x0.to(device), seed=args.seed, methods=(method,)
            )
        )
        print(
            f"  [{k}/{len(METHODS)}] {method} ({ALGORITHM_NAMES.get(method, method)}): RMSE "
            f"{rows[method]['rmse']:.4f}, {time.perf_counter() - start:.1f} s",
            flush=True,
        )
    print(
        f"{args.checkpoint}: {D} on {len(x0)} held-out images (RMSE and SSIM on [0, 1], PSNR in dB; "
        f"{time.perf_counter() - began:.0f} s)"
    )
    print(format_table(rows))
    if args.json:
        files.write_json(
            {"checkpoint": str(args.checkpoint), "n": len(x0), "rows": rows}, args.json
        )
    return 0


def _evaluate_zoo(args) -> int:
    from . import zoo
    from .reproduce import reproduce, to_markdown
    from .runtime import resolve_device

    models = {
        k: v
        for k, v in zoo.available().items()
        if v.get("task") in ("reconstruction", "generation")
    }
    names = sorted(models) if args.zoo == ["all"] else args.zoo
    unknown = sorted(set(names) - set(models))
    if unknown:
        raise ValueError(
            f"--zoo: names must be among {sorted(models)} or 'all', got {unknown}"
            f"{did_you_mean(unknown[0], models)}"
        )
    settings = None
    if args.settings:
        from .reproduce import parse_settings

        try:
            settings = parse_settings(args.settings)
        except ValueError as err:
            raise ValueError(f"--{err}") from None
    command = "python -m colddiff_lib " + " ".join(shlex.quote(a) for a in args.argv)
    device = resolve_device(args.device or "auto")
    print(
        f"evaluate --zoo: {len(names)} model{'s' if len(names) != 1 else ''}, {args.n} held-out digits or "
        f"samples per row, into {args.out}",
        flush=True,
    )
    tables, replaced, written, began = {}, [], set(), time.perf_counter()
    # one model at a time, each merged into the tables as it finishes
    for k, name in enumerate(names, 1):
        start = time.perf_counter()
        print(
            f"  [{k}/{len(names)}] {name} ({models[name].get('task')}) ...", flush=True
        )
        part = reproduce(
            [name],
            args.out,
            n=args.n,
            seed=args.seed,
            device=device,
            command=command,
            settings=settings,
        )
        # Rows this command wrote itself (the generation reference rows, once per
        # generator) are not "replaced".
        replaced += [key for key in part.pop("replaced") if tuple(key) not in written]
        for table, rows in part.items():
            tables.setdefault(table, [])
            tables[table] = [
                r for r in tables[table] if table != "generation_reference"
            ] + rows
            written |= {
                (table, r.get("images"))
                for r in rows
                if table == "generation_reference"
            }
        print(
            f"  [{k}/{len(names)}] {name}: done in {time.perf_counter() - start:.0f} s "
            f"({time.perf_counter() - began:.0f} s so far)",
            flush=True,
        )
    for table, rows in tables.items():
        if rows:
            print(
                f"{table} ({args.n} held-out digits; FID on the project's classifier features, "
                f"not comparable with Inception FID):"
            )
            print(to_markdown(rows))
    for table, *key in replaced:
        print(
            f"replaced in {Path(args.out) / (table + '.csv')}: the row {' / '.join(k for k in key if k)}"
        )
    print(
        f"wrote the tables to {args.out} (merged: rows of other models and methods kept)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .training import TrainConfig

    # the training defaults, where neither a flag nor --config sets them
    d = TrainConfig.__dataclass_fields__

    def default(key):
        return d[key].default

    parser = argparse.ArgumentParser(
        prog="python -m colddiff_lib",
        description=__doc__.split("\n")[0],
        formatter_class=_HelpFormatter,
        epilog="Errors print one line and exit with status 2; add --debug to any "
        "command to see the traceback instead.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a restoration network and write checkpoints and a sample grid",
        formatter_class=_HelpFormatter,
        description="Train R to invert a degradation. Flags override the --config file, which "
        "overrides the defaults shown.",
    )
    p.add_argument(
        "--config",
        help="TOML file with [zoo], [data], [degradation], [model], [train] tables "
        "(default: none, every setting from the flags and their defaults)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder (checkpoints, run.json, history, figures)",
    )
    p.add_argument(
        "--dataset",
        help="mnist5k (offline), mnist, fashion_mnist, cifar10, celeba, or a folder "
        "(default: the config's [data] dataset, else mnist5k)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        dest="image_size",
        help="image height and width in pixels (default: the config's [data] image_size, else 32)",
    )
    p.add_argument(
        "--degradation",
        choices=sorted(dg.REGISTRY),
        help="degradation name (default: the config's [degradation] name, else blur)",
    )
    p.add_argument(
        "--deg",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="degradation arguments, e.g. T=20 std=7 (default: the config's [degradation] table, else "
        "the degradation's own defaults)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="U-Net size (default: the config's [model] preset, else tiny)",
    )
    p.add_argument(
        "--model",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="UNet arguments to override, e.g. dim=32 (default: the config's [model] table, else the "
        "preset's)",
    )
    p.add_argument(
        "--steps",
        type=int,
        help=f"training steps (default: the config's, else {default('steps')})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        dest="batch_size",
        help=f"images per step (default: the config's, else {default('batch_size')})",
    )
    p.add_argument(
        "--lr",
        type=float,
        help=f"peak learning rate of AdamW (default: the config's, else "
        f"{default('lr'):g})",
    )
    p.add_argument(
        "--device",
        help=f"auto, cpu, cuda, cuda:1, mps (default: the config's, else "
        f"{default('device')})",
    )
    p.add_argument(
        "--seed",
        type=int,
        help=f"seed of the initial weights, batches and levels: a run repeats "
        f"bit for bit (default: the config's, else {default('seed')})",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        dest="eval_every",
        help=f"held-out loss every N steps, keeping best.pt; 0: never (default: the config's, else "
        f"{default('eval_every')})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        dest="checkpoint_every",
        help=f"write last.pt every N steps (default: the config's, else {default('checkpoint_every')})",
    )
    p.add_argument(
        "--log-every",
        type=int,
        dest="log_every",
        help=f"log (and record the loss) every N steps (default: the config's, else "
        f"{default('log_every')})",
    )
    p.add_argument(
        "--val-images",
        type=int,
        default=1000,
        dest="val_images",
        help="held-out images for the held-out loss; 0: none",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run (or other files) already in OUT",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (one log line per --log-every)",
    )
    p.set_defaults(func=cmd_train)

    for name, func, text in (
        ("sample", cmd_sample, "restore or generate images from a checkpoint"),
        (
            "evaluate",
            cmd_evaluate,
            "print RMSE/SSIM/PSNR of degraded, direct, Algorithms 1, 2",
        ),
    ):
        p = sub.add_parser(
            name,
            help=text,
            formatter_class=_HelpFormatter,
            description=text[0].upper()
            + text[1:]
            + (
                ". The grid shows the input rows above the result."
                if name == "sample"
                else ", one line of progress per method (per model with --zoo)."
            ),
        )
        p.add_argument(
            "--checkpoint",
            required=name == "sample",
            help="a last.pt or best.pt written by train"
            + ("" if name == "sample" else " (default: none; or --zoo)"),
        )
        p.add_argument(
            "--n",
            type=int,
            default=64 if name == "sample" else 1000,
            help="number of images"
            + (
                " (at most the held-out ones)"
                if name == "sample"
                else " (held-out digits per table row with --zoo)"
            ),
        )
        p.add_argument(
            "--seed",
            type=int,
            default=0,
            help="seed of the random draws (frozen degradations, x_T)",
        )
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
        p.add_argument(
            "--raw-weights",
            action="store_true",
            help="use the raw weights instead of the EMA ones",
        )
        p.add_argument(
            "--dataset",
            help="the images to read (default: the checkpoint's, if it is mnist5k; a "
            "folder or a set that downloads is opened only when named here)",
        )
        if name == "sample":
            p.add_argument(
                "--mode",
                choices=["reconstruct", "generate"],
                default="reconstruct",
                help="reconstruct held-out images from x_t = D(x0, t), or generate from a start x_T",
            )
            p.add_argument(
                "--algorithm",
                choices=list(ALGORITHMS),
                default="improved",
                help="improved: Algorithm 2; naive: Algorithm 1; ddim, ancestral: for degradations with "
                "a noise schedule",
            )
            p.add_argument(
                "--t",
                type=int,
                help="starting level for reconstruction, 1..T (default: T)",
            )
            p.add_argument(
                "--noise-std",
                type=float,
                default=None,
                dest="noise_std",
                help="symmetry-breaking noise added to x_T when generating; 0: perfect symmetry "
                "(default: the degradation's symmetry_noise: the paper's 0.002 for a blur that "
                "collapses to a flat colour, 0 for most)",
            )
            p.add_argument(
                "--uniform-prior",
                action="store_true",
                help="generate from D.prior, not a Gaussian fitted to training images",
            )
            p.add_argument("--out", default="samples.png", help="PNG grid to write")
        else:
            p.add_argument(
                "--json", help="also write the table as JSON here (default: none)"
            )
            p.add_argument(
                "--zoo",
                nargs="+",
                help="evaluate shipped models (names, or 'all') and write the "
                "paper's tables into --out (default: none; or --checkpoint)",
            )
            p.add_argument(
                "--out",
                default="results",
                help="folder for the --zoo tables (merged into)",
            )
            p.add_argument(
                "--settings",
                nargs="+",
                metavar="ALGORITHM:NOISE_STD",
                help="with --zoo: generation settings instead of the table's own, e.g. improved:0.02 "
                "(default: each model's own)",
            )
        p.set_defaults(func=func)

    p = sub.add_parser(
        "export",
        help="write shipped models to ONNX for the book's in-page sampler",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "names",
        nargs="*",
        help="zoo models (default: the book's, " + ", ".join(BOOK_MODELS) + ")",
    )
    p.add_argument(
        "--out", required=True, help="folder (the book uses book/_static/live)"
    )
    p.set_defaults(func=cmd_export)
    return parser


def cmd_export(args) -> int:
    from . import zoo
    from .export import export_book

    names = args.names or list(BOOK_MODELS)
    for name in names:
        zoo.card(name)  # one-line error for an unknown name
    out = export_book(Path(args.out), names)
    print(f"wrote {', '.join(names)}, digits.json and book.json to {out}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run a command; on bad input print one line ``error: ...`` to stderr and return 2
    (``--debug`` anywhere on the line re-raises instead, with the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    # argparse reports its own errors (exit status 2)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        n = getattr(args, "n", 1)
        if n is not None and n < 1:
            raise ValueError(f"--n must be a positive int, got {n}")
        return args.func(args)
    except (ValueError, OSError, FloatingPointError) as err:
        if debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        # an OSError's number: its words say it
        message = re.sub(r"^\[Errno \d+\] ", "", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    # Ctrl-C: one line, the files on disk are intact (atomic writes)
    except KeyboardInterrupt as err:
        if debug:
            raise
        print(_interrupted(args, err), file=sys.stderr, flush=True)
        return 130


def _interrupted(args, err: KeyboardInterrupt) -> str:
    """The line a Ctrl-C prints: for ``train``, the step reached and the command that resumes the run."""
    if args.command != "train":
        return f"interrupted ({args.command}); nothing it was writing was left half-written"
    # resuming continues the run --overwrite started
    argv = [a for a in args.argv if a != "--overwrite"]
    resume = "python -m colddiff_lib " + " ".join(
        shlex.quote(a) for a in [*argv, *([] if "--resume" in argv else ["--resume"])]
    )
    step = getattr(err, "step", None)
    if step is None:
        return f"interrupted; resume with {resume}"
    saved, where = getattr(err, "saved_step", None), getattr(err, "checkpoint", None)
    kept = (
        f"it continues from step {saved} in {where}"
        if saved is not None
        else "no checkpoint yet: it starts again"
    )
    return f"interrupted at step {step}; resume with {resume} ({kept})"
