"""Training speed on the CPU: images per second for each preset and setting, and time to quality.

    python benchmarks/cpu_training.py throughput [--presets tiny cpu small] [--batch 64 128] [--steps 20]
    python benchmarks/cpu_training.py quality --preset cpu --minutes 6   # the zoo recipe: batch 64, lr 1e-3, EMA 0.995

``throughput`` times full training steps (forward, l1 loss, backward, AdamW, EMA) of
:func:`colddiff_lib.training.train` on the paper's MNIST blur, after a warm-up, in fp32 and under
bf16 autocast (where the CPU has native bf16, see ``training.bf16_supported``), with and without
channels_last. ``quality`` trains mnist-blur for a wall-clock budget and prints the held-out direct
and Algorithm 2 SSIM/RMSE (200 digits) at each evaluation, so recipes compare by time to quality.
Run it with nothing else on the machine: two jobs on two cores halve each other.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def machine() -> str:
    from colddiff_lib.runtime import cpu_model

    cap = torch.backends.cpu.get_cpu_capability()
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
        f"torch threads, ISA {cap}, torch {torch.__version__}"
    )


def blur():
    from colddiff_lib import degradations as dg

    return dg.GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1)


def throughput(args) -> None:
    from colddiff_lib.data import load_dataset
    from colddiff_lib.models import UNet, count_parameters
    from colddiff_lib.training import TrainConfig, bf16_supported, train

    x = load_dataset("mnist5k", split="train").images
    D = blur()
    print(f"machine: {machine()}; native bf16: {bf16_supported(torch.device('cpu'))}")
    print("| preset | params | batch | bf16 | channels_last | img/s |")
    print("|---|---:|---:|---|---|---:|")
    for preset in args.presets:
        for batch in args.batch:
            for bf16 in (False, True):
                for channels_last in (False, True):
                    model = UNet.from_preset(preset, channels=1)
                    if channels_last:
                        model = model.to(memory_format=torch.channels_last)
                    cfg = dict(
                        batch_size=batch,
                        device="cpu",
                        bf16=bf16,
                        channels_last=channels_last,
                        progress=False,
                        log_every=10**6,
                    )
                    # warm-up (allocator, kernels)
                    train(model, D, x, TrainConfig(steps=args.warmup, **cfg))
                    start = time.perf_counter()
                    train(model, D, x, TrainConfig(steps=args.steps, **cfg))
                    rate = args.steps * batch / (time.perf_counter() - start)
                    print(
                        f"| {preset} | {count_parameters(model) / 1e6:.2f}M | {batch} | {bf16} | {channels_last} "
                        f"| {rate:.0f} |",
                        flush=True,
                    )


def quality(args) -> None:
    from colddiff_lib.data import load_dataset
    from colddiff_lib.evaluation import evaluate_reconstruction
    from colddiff_lib.models import UNet
    from colddiff_lib.training import TrainConfig, train

    train_x = load_dataset("mnist5k", split="train").images
    test_x = load_dataset("mnist5k", split="test").images[: args.n]
    D = blur()
    model = UNet.from_preset(args.preset, channels=1)
    print(f"machine: {machine()}")
    print(
        f"mnist-blur, preset {args.preset}, batch {args.batch}, lr {args.lr} ({args.schedule}), "
        f"shift {args.shift}, {args.minutes} min; held-out on {args.n} digits"
    )
    print(
        "| minutes | step | images | direct SSIM | direct RMSE | Alg. 2 SSIM | Alg. 2 RMSE |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    # Steps are sized from a short timing so that the cosine schedule ends at the time
    # budget.
    probe = TrainConfig(
        steps=10, batch_size=args.batch, device="cpu", progress=False, log_every=10**6
    )
    start = time.perf_counter()
    train(UNet.from_preset(args.preset, channels=1), D, train_x, probe)
    steps = int(args.minutes * 60 / ((time.perf_counter() - start) / 10))
    chunk = max(1, steps // args.points)
    cfg = dict(
        steps=steps,
        batch_size=args.batch,
        lr=args.lr,
        warmup_steps=min(200, steps // 10),
        lr_schedule=args.schedule,
        augment_shift=args.shift,
        device="cpu",
        progress=False,
        log_every=10**6,
        ema_decay=args.ema,
    )
    eval_seconds = [0.0]

    # every `chunk` steps: held-out quality of the EMA weights, not counted as training
    # time
    def report(info):
        t0 = time.perf_counter()
        # {method: metrics}
        rows = evaluate_reconstruction(
            info["ema"], D, test_x, methods=("direct", "improved")
        )
        d, a = rows["direct"], rows["improved"]
        minutes = (info["elapsed"] - eval_seconds[0]) / 60
        print(
            f"| {minutes:.1f} | {info['step']} | {info['step'] * args.batch} | {d['ssim']:.3f} | {d['rmse']:.3f} | "
            f"{a['ssim']:.3f} | {a['rmse']:.3f} |",
            flush=True,
        )
        eval_seconds[0] += time.perf_counter() - t0

    train(
        model, D, train_x, TrainConfig(**{**cfg, "log_every": chunk}), callback=report
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--presets", nargs="+", default=["tiny", "cpu", "cpu-wide", "small"])
    t.add_argument("--batch", nargs="+", type=int, default=[128])
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    q = sub.add_parser("quality")
    q.add_argument("--preset", default="cpu")
    q.add_argument("--batch", type=int, default=64)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--schedule", default="cosine")
    q.add_argument("--shift", type=int, default=2)
    q.add_argument("--ema", type=float, default=0.995)
    q.add_argument("--minutes", type=float, default=6.0)
    q.add_argument("--points", type=int, default=4)
    q.add_argument("--n", type=int, default=200)
    args = p.parse_args()
    throughput(args) if args.command == "throughput" else quality(args)


if __name__ == "__main__":
    main()
