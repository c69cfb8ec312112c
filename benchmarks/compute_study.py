"""Quality per CPU minute: which model size and settings to spend a CPU budget on.

    python benchmarks/compute_study.py run NAME --config mnist-blur --preset cpu --batch 64 --lr 1e-3 \\
        --minutes 2.5 5 10 20                      # one run; resumable; writes runs/study/NAME/points.json
    python benchmarks/compute_study.py report       # collects every run: table + figure

A run trains one zoo config (``colddiff_lib/zoo/configs/NAME.toml``) with some settings replaced, on one
CPU thread, with a constant learning rate after the warm-up and an EMA of the weights. When its training
clock passes each budget (CPU minutes: this process's CPU time, so that other jobs on the machine do not
shift the budgets; evaluation is not counted) it stops the clock and measures the EMA weights on held-out digits:

* reconstruction configs: direct and Algorithm 2 per-image RMSE / SSIM on 200 held-out digits;
* generation configs: 500 samples from the card's prior with each sampler setting (``--sample``), judged
  by :func:`colddiff_lib.evaluation.generation_measures` (share of confident digits, classifier FID
  against the 4,000 training digits, class histogram).

One thread per run, so two runs share the 2-core machine (two 1-thread jobs train 1.4x the images of one
2-thread job): a budget is the same amount of CPU whichever way the runs are scheduled. Each run owns its
folder under ``runs/study``; killed, the same command continues from the last budget it reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

STUDY = Path("runs/study")


class BudgetReached(Exception):
    """Raised from the training callback after the last budget's measurement: the run is done."""


def machine() -> str:
    from colddiff_lib.runtime import machine as describe

    return f"{describe()}, {torch.get_num_threads()} thread(s), bf16 native: {_bf16()}"


def _bf16() -> bool:
    from colddiff_lib.runtime import bf16_supported

    return bf16_supported(torch.device("cpu"))


def parse_setting(text: str):
    """``improved:0.002`` -> (algorithm, symmetry noise std); ``ancestral:0`` for the noisy samplers."""
    from colddiff_lib.reproduce import parse_settings

    return parse_settings([text])[0]


def _settings(pairs) -> dict:
    """``["T=50", "schedule=exponential"]`` -> ``{"T": 50, "schedule": "exponential"}`` (JSON values where they parse)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def measure(args, R, D, data) -> dict:
    from colddiff_lib.evaluation import evaluate_reconstruction, generation_measures
    from colddiff_lib.generation import GaussianPrior, generate

    R.eval()
    if args.task == "reconstruction":
        rows = evaluate_reconstruction(R, D, data["test"][:200], methods=("direct", "improved"))
        return {m: {k: rows[m][k] for k in ("rmse", "ssim")} for m in rows}
    prior = GaussianPrior(D, data["train"]) if D.has_latent else None
    out = {}
    for text in args.sample:
        algorithm, noise_std = parse_setting(text)
        g = torch.Generator().manual_seed(0)
        x, _ = generate(R, D, 500, tuple(data["train"].shape[1:]), prior=prior, noise_std=noise_std,
                        algorithm=algorithm, generator=g)
        m = generation_measures(x, data["classifier"], data["train"])
        out[text] = m
    return out


def run(args) -> None:
    from colddiff_lib import degradations as dg
    from colddiff_lib import zoo
    from colddiff_lib.checkpoint import load_checkpoint, write_json_atomic
    from colddiff_lib.data import load_dataset
    from colddiff_lib.models import UNet, count_parameters
    from colddiff_lib.training import TrainConfig, train
    from colddiff_lib.zoo.build import config_of, task_of

    folder = STUDY / args.name
    points_path = folder / "points.json"
    cfg = config_of(args.config)
    args.task = task_of(args.config)
    deg = {**cfg["degradation"], **_settings(args.deg)}
    if "noisy" in deg:  # --deg noisy=STD[,POWER]: the config's degradation with noise on top (dg.Noisy)
        std, _, power = str(deg.pop("noisy")).partition(",")
        deg = {"name": "noisy", "base": deg, "std": float(std), "power": float(power or 1.0)}
    D = dg.build(channels=1, **deg)
    model_cfg = {**cfg.get("model", {}), **({"preset": args.preset} if args.preset else {})}
    preset = model_cfg.pop("preset")
    torch.manual_seed(0)
    model = UNet.from_preset(preset, channels=1, **model_cfg)
    spec = {"name": args.name, "config": args.config, "task": args.task, "preset": preset,
            "parameters": count_parameters(model), "batch_size": args.batch, "lr": args.lr, "ema": args.ema,
            "degradation": D.config(), "train": _settings(args.train), "minutes": args.minutes, "sample": args.sample, "machine": machine(),
            "command": "python benchmarks/compute_study.py " + " ".join(sys.argv[1:])}
    state = json.loads(points_path.read_text()) if points_path.is_file() else {"spec": spec, "points": []}
    same = ("degradation", "preset", "train", "batch_size", "lr", "ema")
    if any(state["spec"].get(k) != spec[k] for k in same):
        raise SystemExit(f"error: {folder} holds another run ({state['spec']['command']}); choose another NAME")
    done = [p["minutes"] for p in state["points"]]
    todo = [m for m in sorted(args.minutes) if m not in done]
    if not todo:
        print(f"{args.name}: every budget measured already", flush=True)
        return
    data = {"train": load_dataset("mnist5k", split="train").images,
            "test": load_dataset("mnist5k", split="test").images,
            "classifier": zoo.load_classifier()}
    last = folder / "last.pt"
    clock = CpuClock(folder / "clock.json")
    from colddiff_lib.checkpoint import save_atomic

    config = TrainConfig(steps=10 ** 7, batch_size=args.batch, lr=args.lr, warmup_steps=100, lr_schedule="constant",
                         ema_decay=args.ema, augment_shift=2, device="cpu", progress=False, log_every=25,
                         checkpoint_dir=str(folder), checkpoint_every=500, resume=last.exists(), seed=0,
                         **spec["train"])
    if last.exists():
        step = load_checkpoint(last)["step"]
        clock.resume(step)
        print(f"{args.name}: resuming at step {step}, {clock.seconds(step) / 60:.1f} CPU min", flush=True)
    print(f"{args.name}: {preset} ({spec['parameters'] / 1e6:.2f}M), batch {args.batch}, lr {args.lr}, budgets "
          f"{todo} CPU min on {spec['machine']}", flush=True)

    def at_budget(info):
        minutes = clock.seconds(info["step"]) / 60
        if not todo or minutes < todo[0]:
            return
        start = time.perf_counter()
        with clock.paused():
            quality = measure(args, info["ema"], D, data)
        info["ema"].train()
        budget = todo.pop(0)
        state["points"].append({"minutes": budget, "train_minutes": minutes, "step": info["step"],
                                "images": info["step"] * args.batch, "quality": quality,
                                "wall_minutes": info["elapsed"] / 60, "eval_seconds": time.perf_counter() - start})
        # The run's state at this budget: what a resumed run continues from (the EMA weights are in it).
        save_atomic({"model": model.state_dict(), "ema": info["ema"].state_dict(), "step": info["step"],
                     "model_config": model.config(), "degradation": D.config()}, folder / f"ema-{budget:g}min.pt")
        write_json_atomic(state, points_path)
        print(f"{args.name}: {budget:g} min, step {info['step']}: {json.dumps(quality)}", flush=True)
        if not todo:
            raise BudgetReached

    try:
        train(model, D, data["train"], config, callback=at_budget)
    except BudgetReached:
        pass
    print(f"{args.name}: done ({len(state['points'])} budgets)", flush=True)


class CpuClock:
    """The run's training time in CPU seconds (this process's, so other jobs on the machine do not
    count), without the measurements, kept per step in ``clock.json`` so that a resumed run goes on."""

    def __init__(self, path: Path):
        from colddiff_lib.checkpoint import write_json_atomic

        self.path, self._write = path, write_json_atomic
        self.marks = json.loads(path.read_text()) if path.is_file() else {}
        self.before, self.start, self.excluded = 0.0, time.process_time(), 0.0

    def resume(self, step: int) -> None:
        self.before = self.marks[str(step)]
        self.start, self.excluded = time.process_time(), 0.0

    def seconds(self, step: int) -> float:
        now = self.before + time.process_time() - self.start - self.excluded
        if str(step) not in self.marks:  # train() checkpoints every 500 steps: keep those marks
            self.marks = {k: v for k, v in self.marks.items() if int(k) % 500 == 0}
            self.marks[str(step)] = now
            self._write(self.marks, self.path)
        return now

    @contextlib.contextmanager
    def paused(self):
        t0 = time.process_time()
        try:
            yield
        finally:
            self.excluded += time.process_time() - t0


def report(args) -> None:
    rows = []
    for path in sorted(STUDY.glob("*/points.json")):
        state = json.loads(path.read_text())
        rows.append(state)
    out = {"runs": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for state in rows:
        spec = state["spec"]
        for p in state["points"]:
            q = p["quality"]
            if spec["task"] == "reconstruction":
                text = (f"direct {q['direct']['rmse']:.3f}/{q['direct']['ssim']:.3f}, "
                        f"Alg2 {q['improved']['rmse']:.3f}/{q['improved']['ssim']:.3f}")
            else:
                text = "; ".join(f"{k}: conf {v['confident']:.2f} FID {v['fid']:.1f} "
                                 f"min/max {v['class_share_min']:.2f}/{v['class_share_max']:.2f}" for k, v in q.items())
            print(f"| {spec['name']} | {spec['preset']} | {spec['batch_size']} | {spec['lr']:g} | {p['minutes']:g} | "
                  f"{p['step']} | {text} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train one configuration and measure it at each budget")
    r.add_argument("name", help="the run's folder under runs/study")
    r.add_argument("--config", default="mnist-blur", help="zoo config to start from (default: %(default)s)")
    r.add_argument("--preset", default=None, help="U-Net preset (default: the config's)")
    r.add_argument("--batch", type=int, default=64, help="batch size (default: %(default)s)")
    r.add_argument("--lr", type=float, default=1e-3, help="learning rate after warm-up (default: %(default)s)")
    r.add_argument("--ema", type=float, default=0.999, help="EMA decay (default: %(default)s)")
    r.add_argument("--deg", nargs="*", default=[], help="degradation settings KEY=VALUE replacing the config's")
    r.add_argument("--train", nargs="*", default=[], help="TrainConfig settings KEY=VALUE (e.g. input_noise=0.01)")
    r.add_argument("--minutes", nargs="+", type=float, default=[2.5, 5, 10, 20], help="budgets in CPU minutes")
    r.add_argument("--sample", nargs="*", default=["improved:0.002"],
                   help="generation: sampler settings ALGORITHM:NOISE_STD to measure (default: %(default)s)")
    q = sub.add_parser("report", help="print every run's measurements and save them")
    q.add_argument("--out", default="benchmarks/compute_study.json", help="where to save (default: %(default)s)")
    args = p.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
