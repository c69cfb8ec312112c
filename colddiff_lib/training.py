"""Training the restoration network with the l1 objective E || R(D(x0, t), t) - x0 ||_1.

One function, :func:`train`, in the nanoGPT spirit: flat, readable, a tiny CPU preset and the same
code on a GPU. Each step draws a batch, levels t uniform in 1..T and the degradation's random
quantities from a generator seeded by (seed, rank, step), so that a run resumed from a checkpoint
repeats exactly the steps it would have taken. Under ``torchrun`` it trains data-parallel (gloo on
the CPU, nccl on CUDA); rank 0 writes the checkpoints.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn

from .checkpoint import load_checkpoint, save_atomic
from .degradations.base import check_images
from .runtime import bf16_supported, random_shift, resolve_device, step_generator  # noqa: F401 (re-exported)


@dataclass
class TrainConfig:
    """Settings of :func:`train`. The paper's: Adam, lr 2e-5, batch 32 x 2 accumulation, EMA 0.995
    every 10 steps from step 2000, l1, 700k steps; these defaults suit the small models of this book."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # after warm-up: "constant", or "cosine" down to min_lr_ratio * lr
    min_lr_ratio: float = 0.05
    loss: str = "l1"  # "l1" or "l2"
    grad_accum: int = 1
    grad_clip: float = 1.0  # 0 disables clipping
    ema_decay: float = 0.999
    ema_every: int = 1
    ema_start: int = 0
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    bf16: bool = True  # autocast the model to bfloat16 where the device runs it natively (see bf16_supported)
    channels_last: bool = True  # channels_last memory format on CUDA (on the CPU it does not pay: benchmarks/)
    compile: bool = False
    input_noise: float = 0.0  # std of Gaussian noise added to x_t in training: R then tolerates the small
    # deviations of x_s from D(x0, s) that Algorithm 2 makes (benchmarks/README.md, compute study)
    augment_shift: int = 0  # random translation by up to this many pixels
    hflip: bool = False  # random horizontal flips
    checkpoint_dir: Optional[str] = None
    checkpoint_every: int = 500
    resume: bool = False
    eval_every: int = 0  # held-out loss every N steps (0: never)
    log_every: int = 50
    progress: bool = True  # tqdm bar
    num_workers: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "ema_every", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "ema_start", "eval_every", "augment_shift", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if isinstance(self.input_noise, bool) or not isinstance(self.input_noise, (int, float)) \
                or not 0 <= self.input_noise <= 1:
            raise ValueError(f"input_noise must be a number in [0, 1], got {self.input_noise!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "train") -> "TrainConfig":
        """Build from a dict (a TOML ``[train]`` table): unknown keys and wrong types raise ValueError
        naming the key (``where.key``), the expected type, and the nearest known key."""
        import difflib

        types = {f.name: f.type for f in fields(cls)}
        for key, value in d.items():
            if key not in types:
                close = difflib.get_close_matches(key, list(types), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {sorted(types)}"
                raise ValueError(f"{where}.{key}: unknown key{hint}")
            expected = str(types[key])
            ok = {"int": isinstance(value, int) and not isinstance(value, bool),
                  "float": isinstance(value, (int, float)) and not isinstance(value, bool),
                  "bool": isinstance(value, bool), "str": isinstance(value, str),
                  "Optional[str]": value is None or isinstance(value, str)}.get(expected, True)
            if not ok:
                raise ValueError(f"{where}.{key}: expected {expected.replace('Optional[str]', 'a string')}, "
                                 f"got {value!r}")
        try:
            return cls(**d)
        except ValueError as err:
            raise ValueError(f"{where}.{err}") from None


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


def degradation_loss(model: nn.Module, D, x0: torch.Tensor, t: torch.Tensor, generator, loss: str = "l1",
                     autocast=None, input_noise: float = 0.0):
    """The training objective on one batch: mean |R(D(x0, t), t) - x0| (or squared for ``l2``).

    D runs in full precision; only the model runs under ``autocast`` (a context manager) if given.
    ``input_noise``: the standard deviation of Gaussian noise added to x_t (t >= 1), drawn from ``generator``.
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
def heldout_loss(model: nn.Module, D, images: torch.Tensor, loss: str = "l1", batch_size: int = 250,
                 seed: int = 1234) -> float:
    """Mean loss on held-out images with levels and randomness fixed by ``seed`` (comparable across calls)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for i, chunk in enumerate(images.split(batch_size)):
        g = step_generator(seed, 0, i)
        t = torch.randint(1, D.T + 1, (len(chunk),), generator=g).to(device)
        total += float(degradation_loss(model, D, chunk.to(device), t, g, loss)) * len(chunk)
        n += len(chunk)
    model.train(was_training)
    return total / n


def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def train(model: nn.Module, D, data, config: Optional[TrainConfig] = None, val_data: Optional[torch.Tensor] = None,
          callback: Optional[Callable[[dict], None]] = None, extra: Optional[dict] = None) -> TrainResult:
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
            (``elapsed`` in seconds of this run, ``ema`` the EMA model in train mode: do not modify it).
        extra: stored in every checkpoint (e.g. where the data came from).
    Returns:
        :class:`TrainResult` with the model, the EMA model, the step reached and the history
        (``step``, ``loss`` every ``log_every`` steps; ``val_step``, ``val_loss``).
    Raises:
        FloatingPointError: on a non-finite loss, naming the step; checkpoints on disk are untouched.
    """
    config = config or TrainConfig()
    rank, world, distributed = _distributed()
    device = resolve_device(config.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    n_data = len(data)
    if n_data == 0:
        raise ValueError("data must hold at least one image")
    first = _batch(data, torch.zeros(1, dtype=torch.long))
    check_images(first, "data", getattr(D, "channels", None))
    if getattr(model, "channels", first.shape[1]) != first.shape[1]:
        raise ValueError(f"data has {first.shape[1]} channels but the model expects {model.channels}")

    torch.manual_seed(config.seed)
    model.to(device)
    if distributed:  # start every rank (and so its EMA copy) from rank 0's weights, as DDP would
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    use_cuda = device.type == "cuda"
    if use_cuda and config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = {"step": [], "loss": [], "val_step": [], "val_loss": [], "elapsed": []}
    step, best_val = 0, math.inf
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    last_path = ckpt_dir / "last.pt" if ckpt_dir else None
    elapsed_before = 0.0

    if config.resume and last_path is not None and last_path.exists():
        ckpt = load_checkpoint(last_path, map_location=device)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, history = ckpt["step"], ckpt["history"]
        best_val = ckpt.get("best_val", math.inf)
        elapsed_before = history["elapsed"][-1] if history["elapsed"] else 0.0
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())  # map_location may have moved it to the GPU

    net = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    if config.compile:
        net = torch.compile(net)

    def checkpoint(path: Path) -> None:
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                 "step": step, "history": history, "best_val": best_val, "config": asdict(config),
                 "model_config": model.config() if hasattr(model, "config") else None,
                 "degradation": D.config(),
                 "rng": {"torch": torch.get_rng_state()}, **(extra or {})}
        try:
            save_atomic(state, path)
        except OSError as err:  # disk full, folder removed...: the previous file is untouched (atomic write)
            if bar is not None:
                bar.close()
            kept = (f"the previous {path.name} (step {load_checkpoint(path)['step']}) is kept"
                    if path.exists() else f"no earlier {path.name} exists")
            raise OSError(err.errno, f"could not write checkpoint {path} at step {step} "
                                     f"({err.strerror or err}); {kept}") from None

    if ckpt_dir is not None and rank == 0:  # temporary files of a write that was killed halfway
        for stale in ckpt_dir.glob(".*.pt.*.tmp"):
            stale.unlink(missing_ok=True)

    bar = None
    if config.progress and rank == 0 and step < config.steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.steps, initial=step, desc="train", dynamic_ncols=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16 and bf16_supported(device)) \
        if device.type in ("cuda", "cpu") else None
    start = time.perf_counter()
    model.train()
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, step)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(config.grad_accum):
            g = step_generator(config.seed, rank, step, micro)
            idx = torch.randint(0, n_data, (config.batch_size,), generator=g)
            x0 = _batch(data, idx).to(device, non_blocking=True)
            if config.hflip:
                flip = (torch.rand(len(x0), generator=g) < 0.5).to(device).view(-1, 1, 1, 1)
                x0 = torch.where(flip, x0.flip(-1), x0)
            x0 = random_shift(x0, config.augment_shift, g)
            if use_cuda and config.channels_last:
                x0 = x0.contiguous(memory_format=torch.channels_last)
            t = torch.randint(1, D.T + 1, (len(x0),), generator=g).to(device)
            loss = degradation_loss(net, D, x0, t, g, config.loss, autocast, config.input_noise) / config.grad_accum
            loss.backward()
            step_loss += float(loss.detach())
        if not math.isfinite(step_loss):
            if bar is not None:
                bar.close()
            kept = f"; the last good checkpoint {last_path} was left as it was" if last_path and last_path.exists() else ""
            raise FloatingPointError(f"non-finite loss ({step_loss}) at step {step + 1}{kept}")
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        if step % config.ema_every == 0:
            n_updates = (step - config.ema_start) // config.ema_every
            # Before ema_start the EMA copies the model; after, its decay warms up to ema_decay
            # so that short runs are not dominated by the random initial weights.
            decay = 0.0 if n_updates <= 0 else min(config.ema_decay, (1 + n_updates) / (10 + n_updates))
            _update_ema(ema, model, decay)
        elapsed = elapsed_before + time.perf_counter() - start
        if step % config.log_every == 0 or step == config.steps:
            history["step"].append(step)
            history["loss"].append(step_loss)
            history["elapsed"].append(elapsed)
            if callback is not None and rank == 0:
                callback({"step": step, "loss": step_loss, "lr": lr_at(config, step - 1), "elapsed": elapsed, "ema": ema})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
        if val_data is not None and config.eval_every and (step % config.eval_every == 0 or step == config.steps):
            val = heldout_loss(ema, D, val_data, config.loss)
            history["val_step"].append(step)
            history["val_loss"].append(val)
            if val < best_val:
                best_val = val
                if ckpt_dir is not None and rank == 0:
                    checkpoint(ckpt_dir / "best.pt")
        if ckpt_dir is not None and rank == 0 and (step % config.checkpoint_every == 0 or step == config.steps):
            checkpoint(last_path)
    if bar is not None:
        bar.close()
    if distributed:
        torch.distributed.barrier()
    return TrainResult(model=model, ema=ema, step=step, history=history,
                       checkpoint=str(last_path) if last_path else None)
