"""Command line: ``python -m colddiff_lib train|sample|evaluate``.

A run is described by a TOML file (``configs/*.toml``) with four tables, each optional, and a
``[zoo]`` table (``task = "reconstruction"`` or ``"generation"``) that only the zoo build reads::

    [data]        dataset = "mnist5k", image_size = 32
    [degradation] name = "blur", T = 20, kernel_size = 11, std = 7.0
    [model]       preset = "base"           # plus any UNet argument to override
    [train]       steps = 4000, batch_size = 256, ...   # any TrainConfig field

Command-line flags override the file. ``train`` writes into ``--out``: ``last.pt`` (and ``best.pt``
with held-out evaluation), ``run.json`` (the resolved config and the command), ``history.json``,
``loss.png`` and ``samples.png``. Training resumes from ``last.pt`` with ``--resume``.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import os
import shlex
import sys
import time
import tomllib
from pathlib import Path
from typing import List, Optional

import torch

from . import degradations as dg
from .export import BOOK_MODELS
from .models import PRESETS
from .sampling import ALGORITHMS
from .checkpoint import load_checkpoint, restore, write_json_atomic


TABLES = ("zoo", "sampling", "data", "degradation", "model", "train")
DATA_KEYS = ("dataset", "image_size")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _load_config(path: Optional[str]) -> dict:
    """Read a run's TOML file; every problem is a ValueError naming the file (and line, table, key)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config {p}: no such file")
    try:
        with open(p, "rb") as f:
            cfg = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--config {p}: TOML syntax error: {err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"--config {p}: not a text (UTF-8 TOML) file") from None
    for table, value in cfg.items():
        if table not in TABLES:
            raise ValueError(f"--config {p}: unknown table [{table}]{_did_you_mean(table, TABLES)}; "
                             f"expected {', '.join(TABLES)}")
        if not isinstance(value, dict):
            raise ValueError(f"--config {p}: {table} must be a table ([{table}]), got {value!r}")
    for key in cfg.get("data", {}):
        if key not in DATA_KEYS:
            raise ValueError(f"--config {p}: data.{key}: unknown key{_did_you_mean(key, DATA_KEYS)}; "
                             f"expected {', '.join(DATA_KEYS)}")
    return cfg


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


def cmd_train(args) -> int:
    from .data import load_dataset
    from .models import UNet, count_parameters
    from .plotting import plot_history, save_figure, save_grid
    from .runtime import resolve_device
    from .training import TrainConfig, train

    cfg = _load_config(args.config)
    data_cfg = {"dataset": "mnist5k", "image_size": 32, **cfg.get("data", {})}
    if args.dataset:
        data_cfg["dataset"] = args.dataset
    if args.image_size:
        data_cfg["image_size"] = args.image_size
    deg_cfg = {**cfg.get("degradation", {}), **_parse_overrides(args.deg)}
    if args.degradation:
        deg_cfg["name"] = args.degradation
    model_cfg = {"preset": "tiny", **cfg.get("model", {}), **_parse_overrides(args.model)}
    if args.preset:
        model_cfg["preset"] = args.preset
    train_cfg = dict(cfg.get("train", {}))
    for key in ("steps", "batch_size", "lr", "device", "seed", "eval_every", "checkpoint_every", "log_every"):
        value = getattr(args, key)
        if value is not None:
            train_cfg[key] = value
    if args.resume:
        train_cfg["resume"] = True
    if args.no_progress:
        train_cfg["progress"] = False
    out = Path(args.out)
    train_cfg["checkpoint_dir"] = str(out)
    where = f"--config {args.config}: train" if args.config else "train"
    config = TrainConfig.from_dict(train_cfg, where=where)
    _check_out(out, config.resume)
    device = resolve_device(config.device)
    image_size = data_cfg["image_size"]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
        raise ValueError(f"data.image_size: expected an int >= 4, got {image_size!r}")
    preset = model_cfg.pop("preset")
    if preset not in PRESETS:
        raise ValueError(f"model.preset: expected one of {sorted(PRESETS)}, got {preset!r}"
                         f"{_did_you_mean(preset, PRESETS)}")
    unet_args = [k for k in inspect.signature(UNet).parameters if k != "channels"]
    for key in model_cfg:
        if key not in unet_args:
            raise ValueError(f"model.{key}: unknown key{_did_you_mean(key, unet_args)}; expected preset or one of "
                             f"{unet_args}")

    train_set = load_dataset(data_cfg["dataset"], split="train", image_size=data_cfg["image_size"])
    test_set = load_dataset(data_cfg["dataset"], split="test", image_size=data_cfg["image_size"])
    first = train_set[0]
    channels = first.shape[0]
    D = dg.build(**{"name": "blur", "channels": channels, **deg_cfg})
    torch.manual_seed(config.seed)  # the initial weights follow the seed: a run repeats bit for bit
    try:
        model = UNet.from_preset(preset, channels=channels, **model_cfg)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model: {err}") from None
    val = getattr(test_set, "images", None)
    if val is not None:
        val = val[: args.val_images] if args.val_images > 0 else None
    command = "python -m colddiff_lib " + " ".join(shlex.quote(a) for a in args.argv)
    run = {"data": data_cfg, "degradation": D.config(), "model": {"preset": preset, **model.config()},
           "train": {k: v for k, v in vars(config).items()}, "parameters": count_parameters(model),
           "command": command, "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__}
    out.mkdir(parents=True, exist_ok=True)
    main_process = int(os.environ.get("RANK", "0")) == 0  # torchrun sets RANK
    if main_process:
        write_json_atomic(run, out / "run.json")
    print(f"training {preset} U-Net ({run['parameters'] / 1e6:.2f}M parameters) on {data_cfg['dataset']} "
          f"to invert {D} on {device}", flush=True)
    extra = {"data": data_cfg}
    def log(info):  # without a progress bar (background runs): one line per log_every steps, with an ETA
        done = info["step"]
        rate = info["elapsed"] / done if done else 0.0
        print(f"step {done}/{config.steps} loss {info['loss']:.4f} lr {info['lr']:.2e} "
              f"{info['elapsed']:.0f} s, ETA {rate * (config.steps - done):.0f} s", flush=True)

    start = time.perf_counter()
    result = train(model, D, train_set, config, val_data=val, extra=extra,
                   callback=None if config.progress else log)
    seconds = time.perf_counter() - start
    if not main_process:
        return 0  # under torchrun, rank 0 writes the history and figures (as it writes the checkpoints)
    write_json_atomic({**result.history, "seconds_this_session": seconds}, out / "history.json")
    save_figure(plot_history(result.history).figure, out / "loss.png")
    # A sample grid: test images, degraded, direct, Algorithm 2 (or generated images).
    R = result.ema.eval()
    x0 = torch.stack([test_set[i] for i in range(8)]).to(next(R.parameters()).device)
    try:
        from .evaluation import reconstruct

        rec = reconstruct(R, D, x0, methods=("degraded", "direct", "improved"))
        save_grid(torch.cat([x0.cpu(), rec["degraded"], rec["direct"], rec["improved"]]), out / "samples.png", nrow=8)
    except NotImplementedError:
        pass
    print(f"done: step {result.step}, last loss {result.history['loss'][-1]:.4f}, {seconds:.0f} s; wrote {out}")
    return 0


def _check_out(out: Path, resume: bool) -> None:
    """Refuse an ``--out`` that is a file, is not writable, or already holds a run (unless resuming)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    last = out / "last.pt"
    if last.exists() and not resume:
        raise ValueError(f"--out {out}: already holds a run (last.pt); add --resume to continue it, "
                         f"or choose another folder (nothing was overwritten)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    if resume and not last.exists():
        print(f"--resume: no {last} yet, starting a new run", flush=True)


def _load_model(args):
    from .runtime import resolve_device

    device = resolve_device(args.device or "auto")
    ckpt = load_checkpoint(args.checkpoint, map_location="cpu")
    R, D = restore(ckpt, use_ema=not args.raw_weights, device=device)
    return R, D, ckpt, device


def cmd_sample(args) -> int:
    from .data import load_dataset
    from .generation import GaussianPrior, generate
    from .plotting import save_grid
    from .sampling import sample

    R, D, ckpt, device = _load_model(args)
    data_cfg = ckpt.get("data") or {"dataset": "mnist5k", "image_size": 32}
    g = torch.Generator().manual_seed(args.seed)
    if args.mode == "generate":
        images = load_dataset(data_cfg["dataset"], "train", data_cfg["image_size"]).images
        prior = GaussianPrior(D, images) if D.has_latent and not args.uniform_prior else None
        x, _ = generate(R, D, args.n, tuple(images.shape[1:]), prior=prior, noise_std=args.noise_std,
                        algorithm=args.algorithm, generator=g, device=device)
    else:
        test = load_dataset(data_cfg["dataset"], "test", data_cfg["image_size"])
        x0 = torch.stack([test[i] for i in range(args.n)]).to(device)
        Df = D.freeze(x0, g)
        t = args.t if args.t is not None else D.T
        x = sample(R, Df, Df(x0, t), t, algorithm=args.algorithm)
    save_grid(x.cpu(), args.out, nrow=int(max(1, round(args.n ** 0.5))))
    print(f"wrote {args.n} images to {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .evaluation import evaluate_reconstruction, format_table

    if args.zoo:
        return _evaluate_zoo(args)
    if not args.checkpoint:
        raise ValueError("evaluate needs --checkpoint PATH or --zoo NAME")
    R, D, ckpt, device = _load_model(args)
    data_cfg = ckpt.get("data") or {"dataset": "mnist5k", "image_size": 32}
    test = load_dataset(data_cfg["dataset"], "test", data_cfg["image_size"])
    x0 = test.images[: args.n]
    rows = evaluate_reconstruction(R, D, x0.to(device), seed=args.seed)
    print(f"{args.checkpoint}: {D} on {len(x0)} held-out images (RMSE and SSIM on [0, 1], PSNR in dB)")
    print(format_table(rows))
    if args.json:
        write_json_atomic({"checkpoint": str(args.checkpoint), "n": len(x0), "rows": rows}, args.json)
    return 0


def _evaluate_zoo(args) -> int:
    from . import zoo
    from .reproduce import reproduce, to_markdown
    from .runtime import resolve_device

    models = {k: v for k, v in zoo.available().items() if v.get("task") in ("reconstruction", "generation")}
    names = sorted(models) if args.zoo == ["all"] else args.zoo
    unknown = sorted(set(names) - set(models))
    if unknown:
        raise ValueError(f"--zoo: names must be among {sorted(models)} or 'all', got {unknown}"
                         f"{_did_you_mean(unknown[0], models)}")
    settings = None
    if args.settings:
        from .reproduce import parse_settings

        try:
            settings = parse_settings(args.settings)
        except ValueError as err:
            raise ValueError(f"--{err}") from None
    command = "python -m colddiff_lib " + " ".join(shlex.quote(a) for a in args.argv)
    tables = reproduce(names, args.out, n=args.n, seed=args.seed, device=resolve_device(args.device or "auto"),
                       command=command, settings=settings)
    replaced = tables.pop("replaced")
    for table, rows in tables.items():
        if rows:
            print(f"{table} ({args.n} held-out digits; FID on the project's classifier features, "
                  f"not comparable with Inception FID):")
            print(to_markdown(rows))
    for table, *key in replaced:
        print(f"replaced in {Path(args.out) / (table + '.csv')}: the row {' / '.join(k for k in key if k)}")
    print(f"wrote the tables to {args.out} (merged: rows of other models and methods kept)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m colddiff_lib", description=__doc__.split("\n")[0],
                                     epilog="Errors print one line and exit with status 2; add --debug to any "
                                            "command to see the traceback instead.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a restoration network and write checkpoints and a sample grid")
    p.add_argument("--config", help="TOML file with [data], [degradation], [model], [train] tables")
    p.add_argument("--out", required=True, help="output folder (checkpoints, run.json, history, figures)")
    p.add_argument("--dataset", help="mnist5k (offline default), mnist, fashion_mnist, cifar10, celeba, or a folder")
    p.add_argument("--image-size", type=int, dest="image_size")
    p.add_argument("--degradation", choices=sorted(dg.REGISTRY), help="degradation name")
    p.add_argument("--deg", nargs="*", default=[], metavar="KEY=VALUE", help="degradation arguments, e.g. T=20 std=7")
    p.add_argument("--preset", choices=sorted(PRESETS), help="U-Net size")
    p.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE", help="UNet arguments to override")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int, dest="eval_every", help="held-out loss every N steps; keeps best.pt")
    p.add_argument("--checkpoint-every", type=int, dest="checkpoint_every")
    p.add_argument("--log-every", type=int, dest="log_every", help="log (and record the loss) every N steps")
    p.add_argument("--val-images", type=int, default=1000, dest="val_images")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    for name, func, text in (("sample", cmd_sample, "restore or generate images from a checkpoint"),
                             ("evaluate", cmd_evaluate, "print RMSE/SSIM/PSNR of degraded, direct, Algorithms 1, 2")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--checkpoint", required=name == "sample", help="a last.pt or best.pt written by train")
        p.add_argument("--n", type=int, default=64 if name == "sample" else 1000, help="number of images")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", help="auto (default), cpu, cuda")
        p.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA ones")
        if name == "sample":
            p.add_argument("--mode", choices=["reconstruct", "generate"], default="reconstruct")
            p.add_argument("--algorithm", choices=list(ALGORITHMS), default="improved")
            p.add_argument("--t", type=int, help="starting level for reconstruction (default T)")
            p.add_argument("--noise-std", type=float, default=0.002, dest="noise_std",
                           help="symmetry-breaking noise added to x_T when generating (0: perfect symmetry)")
            p.add_argument("--uniform-prior", action="store_true", help="draw x_T from D.prior, not a fitted Gaussian")
            p.add_argument("--out", default="samples.png", help="PNG grid to write")
        else:
            p.add_argument("--json", help="also write the table as JSON here")
            p.add_argument("--zoo", nargs="+", help="evaluate shipped models (names, or 'all') and write the "
                                                    "paper's tables into --out")
            p.add_argument("--out", default="results", help="folder for the --zoo tables (default results)")
            p.add_argument("--settings", nargs="+", metavar="ALGORITHM:NOISE_STD",
                           help="with --zoo: generation settings instead of the table's own, e.g. improved:0.02")
        p.set_defaults(func=func)

    p = sub.add_parser("export", help="write shipped models to ONNX for the book's in-page sampler")
    p.add_argument("names", nargs="*", help="zoo models (default: the book's, " + ", ".join(BOOK_MODELS) + ")")
    p.add_argument("--out", required=True, help="folder (the book uses book/_static/live)")
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
    args = build_parser().parse_args(argv)  # argparse reports its own errors (exit status 2)
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
        print(f"error: {message}", file=sys.stderr)
        return 2
