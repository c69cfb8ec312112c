"""Checks that need a GPU, printed rather than asserted by CI (which has none).

    python benchmarks/gpu_check.py [--compile]

* every degradation on CUDA agrees with the CPU (float32) and keeps dtype (float16, bfloat16) and device;
* the samplers run on CUDA;
* training runs on CUDA with bf16 autocast and channels_last (and torch.compile with --compile),
  lowers the loss, and reports its throughput in images per second.
Prints one line per check, "ok" or "FAIL", and exits non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from colddiff_lib import degradations as dg
from colddiff_lib.data import load_dataset
from colddiff_lib.models import UNet
from colddiff_lib.sampling import sample
from colddiff_lib.training import TrainConfig, train

failures = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
    if not ok:
        failures.append(name)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(
        f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 32, 32, generator=g) * 2 - 1
    targets = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    degradations = {
        "blur": dg.GaussianBlur(T=20, kernel_size=11, std=7.0),
        "blur-reflect": dg.GaussianBlur(padding="reflect"),
        "inpaint": dg.Inpainting(T=50),
        "inpaint-random": dg.Inpainting(T=50, random_centre=True),
        "inpaint-fill": dg.InpaintingFill(T=100, std=0.2),
        "superres": dg.SuperResolution(T=3),
        "snow": dg.Snow(T=200),
        "noise": dg.GaussianNoise(T=200),
        "blend": dg.Blend(targets, T=200),
    }
    t = torch.tensor([0, 1, 2, 3, 3, 2, 1, 3])
    for name, D in degradations.items():
        t_d = t.clamp_max(D.T) * max(1, D.T // 3)
        cpu = D.freeze(x, torch.Generator().manual_seed(1))(x, t_d)
        if isinstance(D, dg.Blend):
            D.targets = D.targets.cuda()
        xc = x.cuda()
        gpu = D.freeze(xc, torch.Generator().manual_seed(1))(xc, t_d.cuda())
        diff = float((gpu.cpu() - cpu).abs().max())
        check(
            f"{name}: CUDA == CPU",
            diff < 1e-4 and gpu.device.type == "cuda",
            f"(max |diff| {diff:.2e})",
        )
        for dtype in (torch.float16, torch.bfloat16):
            out = D.freeze(xc.to(dtype), torch.Generator().manual_seed(1))(
                xc.to(dtype), t_d.cuda()
            )
            check(
                f"{name}: keeps {dtype}",
                out.dtype == dtype and bool(torch.isfinite(out).all()),
            )

    D = dg.GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1)
    net = UNet.from_preset("tiny").cuda().eval()
    xs = sample(net, D, D(x.cuda(), 20), 20)
    check("sample on CUDA", xs.device.type == "cuda" and bool(torch.isfinite(xs).all()))

    data = load_dataset("mnist5k", split="train").images
    for compile_ in [False, True] if args.compile else [False]:
        model = UNet.from_preset("small")
        cfg = TrainConfig(
            steps=300,
            batch_size=256,
            lr=5e-4,
            device="cuda",
            compile=compile_,
            progress=False,
            log_every=50,
        )
        start = time.perf_counter()
        result = train(model, D, data, cfg)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        losses = result.history["loss"]
        check(
            f"train small, bf16 + channels_last, compile={compile_}",
            losses[-1] < losses[0],
            f"(loss {losses[0]:.3f} -> {losses[-1]:.3f}; {300 * 256 / seconds:,.0f} img/s over 300 steps "
            f"including start-up)",
        )
    print(f"{len(failures)} failed" if failures else "all GPU checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
