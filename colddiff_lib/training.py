"""Training the restoration network with the l1 objective E || R(D(x0, t), t) - x0 ||_1.

One function, :func:`train`, in the nanoGPT spirit: flat, readable, a tiny CPU preset and the same
code on a GPU. Each step draws a batch, levels t uniform in 1..T and the degradation's random
quantities from a generator seeded by (seed, rank, step), so that a run resumed from a checkpoint
repeats exactly the steps it would have taken. Under ``torchrun`` it trains data-parallel (gloo on
the CPU, nccl on CUDA); rank 0 writes the checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn

from . import files
from .checks import check_bool, did_you_mean, is_int, is_number
from .checkpoint import load_checkpoint, non_finite, save_atomic
from .degradations.base import check_images

# re-exported
from .runtime import (  # noqa: F401
    bf16_supported,
    random_shift,
    resolve_device,
    step_generator,
)


@dataclass
class TrainConfig:
    """Settings of :func:`train`. The paper's: Adam, lr 2e-5, batch 32 x 2 accumulation, EMA 0.995
    every 10 steps from step 2000, l1, 700k steps; these defaults suit the small models of this book."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    # after warm-up: "constant", or "cosine" down to min_lr_ratio * lr
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.05
    loss: str = "l1"  # "l1" or "l2"
    grad_accum: int = 1
    grad_clip: float = 1.0  # 0 disables clipping
    ema_decay: float = 0.999
    ema_every: int = 1
    ema_start: int = 0
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    # autocast the model to bfloat16 where the device runs it natively (see
    # bf16_supported)
    bf16: bool = True
    # channels_last memory format on CUDA (on the CPU it does not pay: benchmarks/)
    channels_last: bool = True
    compile: bool = False
    # std of Gaussian noise added to x_t in training: R then tolerates the small
    input_noise: float = 0.0
    # deviations of x_s from D(x0, s) that Algorithm 2 makes (benchmarks/README.md,
    # compute study)
    augment_shift: int = 0  # random translation by up to this many pixels
    hflip: bool = False  # random horizontal flips
    checkpoint_dir: Optional[str] = None
    checkpoint_every: int = 500
    resume: bool = False
    eval_every: int = 0  # held-out loss every N steps (0: never)
    log_every: int = 50
    progress: bool = True  # tqdm bar

    def __post_init__(self):
        for name, most in (
            ("steps", 10**9),
            ("batch_size", 65536),
            ("grad_accum", 1024),
            ("ema_every", 10**9),
            ("checkpoint_every", 10**9),
            ("log_every", 10**9),
        ):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            if value > most:
                raise ValueError(
                    f"{name} must be a positive int of at most {most:,}, got {value!r}"
                )
        for name, most in (
            ("warmup_steps", 10**9),
            ("ema_start", 10**9),
            ("eval_every", 10**9),
            ("augment_shift", 256),
            ("seed", 2**63 - 1),
        ):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
            if value > most:
                raise ValueError(
                    f"{name} must be a non-negative int of at most {most:,}, got {value!r}"
                )
        for name in ("bf16", "channels_last", "compile", "resume", "hflip", "progress"):
            check_bool(getattr(self, name), name)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )
        if not is_number(self.min_lr_ratio) or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}"
            )
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if not is_number(self.lr) or not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be positive and finite, got {self.lr!r}")
        if not is_number(self.weight_decay) or not 0 <= self.weight_decay < math.inf:
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )
        # -1 would reverse the gradients
        if not is_number(self.grad_clip) or not 0 <= self.grad_clip < math.inf:
            raise ValueError(
                f"grad_clip must be a finite number >= 0 (0 disables clipping), got {self.grad_clip!r}"
            )
        if not is_number(self.input_noise) or not 0 <= self.input_noise <= 1:
            raise ValueError(
                f"input_noise must be a number in [0, 1], got {self.input_noise!r}"
            )
        if not is_number(self.ema_decay) or not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if not isinstance(self.device, str):
            raise ValueError(
                f"device must be a string such as 'auto' or 'cpu', got {self.device!r}"
            )
        if self.checkpoint_dir is not None and not isinstance(
            self.checkpoint_dir, (str, os.PathLike)
        ):
            raise ValueError(
                f"checkpoint_dir must be a folder (a string) or None, got {self.checkpoint_dir!r}"
            )

    @classmethod
    def from_dict(cls, d: dict, where: str = "train") -> "TrainConfig":
        """Build from a dict (a TOML ``[train]`` table): unknown keys and wrong types raise ValueError
        naming the key (``where.key``), the expected type, and the nearest known key."""
        types = {f.name: f.type for f in fields(cls)}
        for key, value in d.items():
            if key not in types:
                hint = did_you_mean(key, types) or f"; known keys: {sorted(types)}"
                raise ValueError(f"{where}.{key}: unknown key{hint}")
            expected = str(types[key])
            ok = {
                "int": is_int(value),
                "float": is_number(value),
                "bool": isinstance(value, bool),
                "str": isinstance(value, str),
                "Optional[str]": value is None or isinstance(value, str),
            }.get(expected, True)
            if not ok:
                raise ValueError(
                    f"{where}.{key}: expected {expected.replace('Optional[str]', 'a string')}, "
                    f"got {value!r}"
                )
        try:
            return cls(**d)
        except ValueError as err:
            raise ValueError(f"{where}.{err}") from None


# : The :class:`TrainConfig` fields that change what a run computes: a resume must have
# the same ones : (:func:`run_identity`). The others cannot change the weights: how long
# (``steps``; with a cosine : schedule a longer run decays more slowly from there),
# where and how often the run logs, evaluates : and checkpoints, the device and its
# speed settings.
RESULT_FIELDS = (
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "lr_schedule",
    "min_lr_ratio",
    "loss",
    "grad_accum",
    "grad_clip",
    "ema_decay",
    "ema_every",
    "ema_start",
    "seed",
    "bf16",
    "input_noise",
    "augment_shift",
    "hflip",
)


def run_identity(model: nn.Module, D, config: "TrainConfig", data=None) -> dict:
    """What makes a run this run, as plain data: the degradation's and the model's configs, the data
    (``data``: e.g. ``{"dataset", "image_size"}``) and every :data:`RESULT_FIELDS` setting (the seed among them).

    Stored in every checkpoint; :func:`check_resume` refuses to continue a checkpoint of another identity."""
    import json

    identity = {
        "degradation": D.config(),
        "model": model.config() if hasattr(model, "config") else None,
        "data": data,
        "train": {name: getattr(config, name) for name in RESULT_FIELDS},
    }
    # tuples as lists: compares equal to what a checkpoint gives back
    return json.loads(json.dumps(identity))


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        return {
            k: v
            for key, item in value.items()
            for k, v in _flat(item, f"{prefix}.{key}" if prefix else key).items()
        }
    return {prefix: value}


class _Missing:
    def __repr__(self):
        return "absent"


_MISSING = _Missing()


def identity_differences(stored: dict, current: dict) -> list:
    """``[(key, stored value, current value)]`` for the keys (``degradation.T``, ``train.seed``) that differ."""
    a, b = _flat(stored), _flat(current)
    return [
        (k, a.get(k, _MISSING), b.get(k, _MISSING))
        for k in sorted(set(a) | set(b))
        if a.get(k, _MISSING) != b.get(k, _MISSING)
    ]


def describe_differences(diff: list, shown: int = 5) -> str:
    """``identity_differences`` in words, a name that differs first (``degradation.name ('blur' there,
    'snow' here)``): what a refused resume says."""
    diff = sorted(diff, key=lambda d: (not d[0].endswith(".name"), d[0]))
    text = ", ".join(f"{k} ({a!r} there, {b!r} here)" for k, a, b in diff[:shown])
    return text + (f" and {len(diff) - shown} more" if len(diff) > shown else "")


def check_resume(ckpt: dict, path, identity: dict, warn: bool = True) -> None:
    """Refuse (ValueError naming the differing keys) to resume the checkpoint ``ckpt`` (read from ``path``)
    with a run of another ``identity``; with ``warn``, warn (one line on stderr) when it was written with
    another number of torch threads (a resume is bit-identical only with the same), or records no identity
    (files of older versions)."""
    import sys

    from .checkpoint import check_resumable

    check_resumable(ckpt, path)
    stored = ckpt.get("identity")
    if stored is None and warn:
        print(
            f"warning: {path} records no run identity (written by an older colddiff_lib): resuming without "
            f"checking that the settings are the same",
            file=sys.stderr,
            flush=True,
        )
    elif stored is not None:
        diff = identity_differences(stored, identity)
        if diff:
            raise ValueError(
                f"--resume: {path} holds another run: {describe_differences(diff)}; resume with the "
                f"settings it was trained with, or train into another folder (nothing was written)"
            )
    threads = ckpt.get("threads")
    if warn and isinstance(threads, int) and threads != torch.get_num_threads():
        print(
            f"warning: {path} was written with {threads} torch thread(s), this resume uses "
            f"{torch.get_num_threads()}: the result will not be bit-identical to an uninterrupted run "
            f"(set OMP_NUM_THREADS={threads})",
            file=sys.stderr,
            flush=True,
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during :func:`train`: ``step`` is the last step taken, ``saved_step`` the step of the
    checkpoint on disk (``None`` without one), ``checkpoint`` its path."""

    def __init__(self, step: int, saved_step: Optional[int], checkpoint: Optional[str]):
        super().__init__(f"interrupted at step {step}")
        self.step, self.saved_step, self.checkpoint = step, saved_step, checkpoint


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model, its EMA copy (sample with this), the history."""

    model: nn.Module
    ema: nn.Module
    step: int
    history: dict = field(default_factory=dict)
    checkpoint: Optional[str] = None


def lr_at(config: "TrainConfig", step: int) -> float:
    """The learning rate of (0-based) ``step``: linear warm-up, then constant or cosine decay."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio * config.lr
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _batch(data, idx: torch.Tensor) -> torch.Tensor:
    images = getattr(data, "images", data if isinstance(data, torch.Tensor) else None)
    if images is not None:
        return images[idx]
    return torch.stack([data[int(i)] for i in idx])


def _distributed() -> Tuple[int, int, bool]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available():
        if not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), True
    return 0, 1, False


def degradation_loss(
    model: nn.Module,
    D,
    x0: torch.Tensor,
    t: torch.Tensor,
    generator,
    loss: str = "l1",
    autocast=None,
    input_noise: float = 0.0,
):
    """The training objective on one batch: mean |R(D(x0, t), t) - x0| (squared for ``l2``).

    x0: [B, C, H, W] in [-1, 1]; t: LongTensor[B]. D runs in full precision; only the model
    runs under ``autocast`` (a context manager) if given. ``input_noise``: the standard
    deviation of Gaussian noise added to x_t (t >= 1), drawn from ``generator``.
    """
    x_t = D.freeze(x0, generator)(x0, t)
    if input_noise:
        noise = torch.randn(x_t.shape, generator=generator).to(x_t.device, x_t.dtype)
        x_t = x_t + input_noise * noise * (t > 0).view(-1, 1, 1, 1).to(x_t.dtype)
    if autocast is None:
        pred = model(x_t, t)
    else:
        with autocast:
            pred = model(x_t, t)
    diff = pred.float() - x0.float()
    return diff.abs().mean() if loss == "l1" else diff.pow(2).mean()


@torch.no_grad()
def heldout_loss(
    model: nn.Module,
    D,
    images: torch.Tensor,
    loss: str = "l1",
    batch_size: int = 250,
    seed: int = 1234,
) -> float:
    """Mean loss on held-out images with levels and randomness fixed by ``seed`` (comparable across calls)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for i, chunk in enumerate(images.split(batch_size)):
        g = step_generator(seed, 0, i)
        t = torch.randint(1, D.T + 1, (len(chunk),), generator=g).to(device)
        total += float(degradation_loss(model, D, chunk.to(device), t, g, loss)) * len(
            chunk
        )
        n += len(chunk)
    model.train(was_training)
    return total / n


def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def train(
    model: nn.Module,
    D,
    data,
    config: Optional[TrainConfig] = None,
    val_data: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[dict], None]] = None,
    extra: Optional[dict] = None,
) -> TrainResult:
    """Train ``model`` to invert ``D`` on ``data`` with the l1 (or l2) objective.

    Args:
        model: restoration network ``model(x_t, t) -> x0`` (e.g. :class:`~colddiff_lib.models.UNet`).
        D: the degradation (its ``T``; random ones are frozen per batch from the step's generator).
        data: training images, a Tensor [N, C, H, W] in [-1, 1], or a Dataset of [C, H, W] images
            (one with an ``images`` tensor attribute is indexed directly).
        config: :class:`TrainConfig`.
        val_data: held-out images [M, C, H, W]; with ``config.eval_every`` the EMA model's held-out
            loss is recorded and the best EMA weights kept (``best.pt`` when checkpointing).
        callback: called every ``log_every`` steps with ``{"step", "loss", "lr", "elapsed", "ema"}``
            (``elapsed`` in seconds of this run, ``ema`` the EMA model, in eval mode and without gradients:
            read it, e.g. to sample, but do not modify it).
        extra: stored in every checkpoint (e.g. where the data came from).
    Returns:
        :class:`TrainResult` with the model, the EMA model, the step reached and the history
        (``step``, ``loss`` every ``log_every`` steps; ``val_step``, ``val_loss``).
    Raises:
        FloatingPointError: on a non-finite loss, or weights that became non-finite, naming the step;
            checkpoints on disk are untouched (a bad checkpoint never replaces a good one).
        ValueError: bad settings; ``checkpoint_dir`` used by another run (its lock, :func:`run_lock`);
            ``resume`` from a checkpoint of another run (the differing keys named, nothing written);
            out of memory.
        OSError: a checkpoint write that failed (a full disk), naming the checkpoint kept.
        TrainingInterrupted: Ctrl-C, with the step reached and the step of the checkpoint on disk.

    With ``checkpoint_dir`` the run holds that folder's lock from start to end (rank 0 under torchrun),
    and each checkpoint records the run's identity (:func:`run_identity`) and torch's thread count.
    """
    from .checkpoint import run_lock

    config = config or TrainConfig()
    progress = _Progress()
    lock = contextlib.nullcontext()
    # rank 0 writes the checkpoints
    if config.checkpoint_dir and int(os.environ.get("RANK", "0")) == 0:
        lock = run_lock(config.checkpoint_dir, what="checkpoint_dir")
    try:
        with lock:
            return _train(model, D, data, config, val_data, callback, extra, progress)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            progress.step, progress.saved_step, progress.checkpoint
        ) from None
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
        if not isinstance(
            err, (torch.OutOfMemoryError, MemoryError)
        ) and not _is_out_of_memory(err):
            raise
        kept = (
            f"; the checkpoint {progress.checkpoint} (step {progress.saved_step}) was left as it was"
            if progress.saved_step is not None
            else ""
        )
        raise ValueError(
            f"out of memory at step {progress.step + 1} (batch_size {config.batch_size}): lower "
            f"batch_size, the image size or the model's size{kept}"
        ) from None
    finally:
        progress.close_bar()  # a bar left open would draw over the error message


def cpu_seconds_per_step(
    model: nn.Module, D, data, config: TrainConfig, steps: int = 30, warmup: int = 5
) -> float:
    """CPU seconds (this process's, every thread) that one step of ``config`` takes on this machine:
    ``warmup`` untimed steps, then ``steps`` timed ones, of ``model`` (trained in place: pass a throwaway)
    inverting ``D`` on ``data`` ([N, C, H, W] in [-1, 1], or a Dataset). No checkpoint, held-out loss or
    progress bar. A budget of M CPU minutes is about ``M * 60 / cpu_seconds_per_step(...)`` steps."""
    quiet = {
        "checkpoint_dir": None,
        "resume": False,
        "eval_every": 0,
        "progress": False,
    }
    train(model, D, data, TrainConfig(**{**asdict(config), **quiet, "steps": warmup}))
    start = time.process_time()
    train(model, D, data, TrainConfig(**{**asdict(config), **quiet, "steps": steps}))
    return (time.process_time() - start) / steps


def _is_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return "can't allocate memory" in text or "out of memory" in text.lower()


class _Progress:
    """Where :func:`_train` is, for the messages of an interruption: the step, the checkpoint on disk, the bar."""

    def __init__(self):
        self.step, self.saved_step, self.checkpoint, self.bar = 0, None, None, None

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@dataclass
class _Run:
    """The state of one :func:`train` call, shared by its parts: what is trained, where, and how far."""

    model: nn.Module
    D: object
    data: object
    config: TrainConfig
    extra: dict
    progress: _Progress
    rank: int = 0
    distributed: bool = False
    device: torch.device = torch.device("cpu")
    n_data: int = 0
    identity: Optional[dict] = None
    ema: Optional[nn.Module] = None
    # what the step calls: the model, or its DDP / compiled wrapper
    net: Optional[nn.Module] = None
    optimizer: Optional[torch.optim.Optimizer] = None
    autocast: object = None
    history: dict = field(
        default_factory=lambda: {
            k: [] for k in ("step", "loss", "val_step", "val_loss", "elapsed", "cpu")
        }
    )
    step: int = 0
    best_val: float = math.inf
    ckpt_dir: Optional[Path] = None
    last_path: Optional[Path] = None
    # seconds and CPU seconds of the sessions before a resume
    elapsed_before: float = 0.0
    cpu_before: float = 0.0
    started: float = 0.0
    cpu_started: float = 0.0

    @property
    def writes(self) -> bool:
        """Whether this process writes checkpoints: with a ``checkpoint_dir``, on rank 0."""
        return self.ckpt_dir is not None and self.rank == 0


def _train(
    model: nn.Module,
    D,
    data,
    config: TrainConfig,
    val_data,
    callback,
    extra,
    progress: _Progress,
):
    """:func:`train`'s loop (the caller holds the checkpoint folder's lock): set up, resume, then steps, each
    followed by its log line, its held-out evaluation and its checkpoint when they are due."""
    run = _set_up(model, D, data, config, extra or {}, progress)
    _resume(run)
    _prepare_loop(run)
    while run.step < config.steps:
        step_loss = _take_step(run)
        _log(run, step_loss, callback)
        if val_data is not None and config.eval_every and _due(run, config.eval_every):
            _evaluate(run, val_data)
        if run.writes and _due(run, config.checkpoint_every):
            _checkpoint(run, run.last_path)
    progress.close_bar()
    if run.distributed:
        torch.distributed.barrier()
    return TrainResult(
        model=model,
        ema=run.ema,
        step=run.step,
        history=run.history,
        checkpoint=str(run.last_path) if run.last_path else None,
    )


def _due(run: _Run, every: int) -> bool:
    return run.step % every == 0 or run.step == run.config.steps


def _set_up(
    model, D, data, config: TrainConfig, extra: dict, progress: _Progress
) -> _Run:
    """Check the data against D and the model, pick the device (a rank's GPU under torchrun), seed the initial
    state, and make the EMA copy and the optimizer."""
    run = _Run(model, D, data, config, extra, progress)
    run.rank, _, run.distributed = _distributed()
    run.device = resolve_device(config.device)
    if run.distributed and run.device.type == "cuda":
        run.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", run.rank)))
        torch.cuda.set_device(run.device)
    run.n_data = len(data)
    if run.n_data == 0:
        raise ValueError("data must hold at least one image")
    first = _batch(data, torch.zeros(1, dtype=torch.long))
    check_images(first, "data", getattr(D, "channels", None))
    if getattr(model, "channels", first.shape[1]) != first.shape[1]:
        raise ValueError(
            f"data has {first.shape[1]} channels but the model expects {model.channels}"
        )
    if config.augment_shift >= min(first.shape[-2:]):
        raise ValueError(
            f"augment_shift must be smaller than the images ({tuple(first.shape[-2:])} pixels), got "
            f"{config.augment_shift}"
        )
    # what the checkpoints record of the run (a D that cannot be saved trains without)
    if config.checkpoint_dir:
        run.identity = run_identity(
            model,
            D,
            config,
            extra.get("data", {"images": run.n_data, "shape": list(first.shape[1:])}),
        )
        run.ckpt_dir = Path(config.checkpoint_dir)
        run.last_path = run.ckpt_dir / "last.pt"
    torch.manual_seed(config.seed)
    model.to(run.device)
    # start every rank (and so its EMA copy) from rank 0's weights, as DDP would
    if run.distributed:
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)
    run.ema = copy.deepcopy(model).requires_grad_(False).eval()
    if run.device.type == "cuda" and config.channels_last:
        model.to(memory_format=torch.channels_last)
    run.optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    return run


def _resume(run: _Run) -> None:
    """With ``resume`` and a ``last.pt`` of the same run: its weights, EMA, optimizer, random state, history."""
    if not (run.config.resume and run.last_path is not None and run.last_path.exists()):
        return
    ckpt = load_checkpoint(run.last_path, map_location=run.device)
    # the same run, and all a resume needs, before anything is written
    check_resume(ckpt, run.last_path, run.identity)
    try:
        run.model.load_state_dict(ckpt["model"])
        run.ema.load_state_dict(ckpt["ema"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        # map_location may have moved it to the GPU
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"--resume: {run.last_path}: its weights or optimizer state do not fit this model "
            f"({str(err).strip().splitlines()[0][:200]})"
        ) from None
    run.step, run.history = ckpt["step"], ckpt["history"]
    run.best_val = ckpt.get("best_val", math.inf)
    run.elapsed_before = run.history["elapsed"][-1] if run.history["elapsed"] else 0.0
    # checkpoints written before the CPU clock have none
    run.history.setdefault("cpu", [])
    run.cpu_before = run.history["cpu"][-1] if run.history["cpu"] else 0.0
    run.progress.step = run.progress.saved_step = run.step
    run.progress.checkpoint = str(run.last_path)


def _prepare_loop(run: _Run) -> None:
    """Wrap the model for the step (DDP, compile), clear what a killed checkpoint write left, open the
    progress bar, choose the autocast, start the clocks."""
    config = run.config
    run.net = run.model
    if run.distributed:
        run.net = nn.parallel.DistributedDataParallel(
            run.model,
            device_ids=[run.device.index] if run.device.type == "cuda" else None,
        )
    if config.compile:
        run.net = torch.compile(run.net)
    if run.writes:  # temporary files of a write that was killed halfway
        files.remove_temporaries(run.ckpt_dir, "*.pt")
    if config.progress and run.rank == 0 and run.step < config.steps:
        from tqdm.auto import tqdm

        run.progress.bar = tqdm(
            total=config.steps, initial=run.step, desc="train", dynamic_ncols=True
        )
    if run.device.type in ("cuda", "cpu"):
        run.autocast = torch.autocast(
            run.device.type,
            dtype=torch.bfloat16,
            enabled=config.bf16 and bf16_supported(run.device),
        )
    run.started, run.cpu_started = time.perf_counter(), time.process_time()
    run.model.train()


def _take_step(run: _Run) -> float:
    """One optimiser step (``grad_accum`` micro-batches, each drawn from its own step generator), then the
    EMA update; returns the step's loss. A non-finite loss raises FloatingPointError before the update."""
    config, model, device = run.config, run.model, run.device
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(config, run.step)
    run.optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for micro in range(config.grad_accum):
        g = step_generator(config.seed, run.rank, run.step, micro)
        x0 = _batch(
            run.data, torch.randint(0, run.n_data, (config.batch_size,), generator=g)
        ).to(device, non_blocking=True)
        if config.hflip:
            flip = (torch.rand(len(x0), generator=g) < 0.5).to(device).view(-1, 1, 1, 1)
            x0 = torch.where(flip, x0.flip(-1), x0)
        x0 = random_shift(x0, config.augment_shift, g)
        if device.type == "cuda" and config.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t = torch.randint(1, run.D.T + 1, (len(x0),), generator=g).to(device)
        loss = (
            degradation_loss(
                run.net, run.D, x0, t, g, config.loss, run.autocast, config.input_noise
            )
            / config.grad_accum
        )
        loss.backward()
        step_loss += float(loss.detach())
    if not math.isfinite(step_loss):
        run.progress.close_bar()
        kept = (
            f"; the last good checkpoint {run.last_path} was left as it was"
            if run.last_path and run.last_path.exists()
            else ""
        )
        raise FloatingPointError(
            f"non-finite loss ({step_loss}) at step {run.step + 1}{kept}"
        )
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    run.optimizer.step()
    run.step += 1
    run.progress.step = run.step
    if run.step % config.ema_every == 0:
        n_updates = (run.step - config.ema_start) // config.ema_every
        # Before ema_start the EMA copies the model; after, its decay warms up to
        # ema_decay so that short runs are not dominated by the random initial weights.
        decay = (
            0.0
            if n_updates <= 0
            else min(config.ema_decay, (1 + n_updates) / (10 + n_updates))
        )
        _update_ema(run.ema, model, decay)
    return step_loss


def _log(run: _Run, step_loss: float, callback) -> None:
    """Every ``log_every`` steps and at the last: the history's row (loss, seconds, CPU seconds), the callback;
    the progress bar at every step."""
    config = run.config
    elapsed = run.elapsed_before + time.perf_counter() - run.started
    if run.step % config.log_every == 0 or run.step == config.steps:
        run.history["step"].append(run.step)
        run.history["loss"].append(step_loss)
        run.history["elapsed"].append(elapsed)
        # this process's CPU s
        run.history["cpu"].append(
            run.cpu_before + time.process_time() - run.cpu_started
        )
        if callback is not None and run.rank == 0:
            callback(
                {
                    "step": run.step,
                    "loss": step_loss,
                    "lr": lr_at(config, run.step - 1),
                    "elapsed": elapsed,
                    "ema": run.ema,
                }
            )
    bar = run.progress.bar
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}")


def _evaluate(run: _Run, val_data: torch.Tensor) -> None:
    """The EMA model's held-out loss into the history; a new best is kept as ``best.pt``."""
    val = heldout_loss(run.ema, run.D, val_data, run.config.loss)
    run.history["val_step"].append(run.step)
    run.history["val_loss"].append(val)
    if val < run.best_val:
        run.best_val = val
        if run.writes:
            _checkpoint(run, run.ckpt_dir / "best.pt")


def _checkpoint(run: _Run, path: Path) -> None:
    """Write the run's state to ``path`` atomically, never non-finite weights over a good checkpoint; an
    OSError (a full disk) names the checkpoint that is kept."""
    model, config = run.model, run.config
    state = {
        "model": model.state_dict(),
        "ema": run.ema.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "history": run.history,
        "best_val": run.best_val,
        "config": asdict(config),
        "model_config": model.config() if hasattr(model, "config") else None,
        "degradation": run.D.config(),
        "identity": run.identity,
        "threads": torch.get_num_threads(),
        "rng": {"torch": torch.get_rng_state()},
        **run.extra,
    }
    bad = non_finite({k: state[k] for k in ("model", "ema", "optimizer")})
    if bad:  # never replace a good checkpoint with a bad one (a huge lr, an overflow)
        kept = (
            f"the last good checkpoint {path} (step {load_checkpoint(path)['step']}) was left as it was"
            if path.exists()
            else f"nothing was written to {path}"
        )
        raise FloatingPointError(
            f"non-finite weights at step {run.step} ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); {kept}"
        )
    try:
        save_atomic(state, path)
    # disk full, folder removed...: the previous file is untouched (atomic write)
    except OSError as err:
        kept = (
            f"the previous {path.name} (step {load_checkpoint(path)['step']}) is kept"
            if path.exists()
            else f"no earlier {path.name} exists"
        )
        raise OSError(
            err.errno,
            f"could not write checkpoint {path} at step {run.step} "
            f"({err.strerror or err}); {kept}",
        ) from None
    if path == run.last_path:
        run.progress.saved_step, run.progress.checkpoint = run.step, str(path)
