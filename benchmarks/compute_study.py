"""Quality per CPU minute: which model size and settings to spend a CPU budget on.

    python benchmarks/compute_study.py run NAME --config mnist-blur --preset cpu --minutes 5 20
    python benchmarks/compute_study.py report       # collects every run: table + figure

A run trains one zoo config (``colddiff_lib/zoo/configs/NAME.toml``) with its recipe (batch, learning rate,
warm-up, cosine decay, EMA, shifts) and some settings replaced, on one CPU thread, once per budget: the
number of steps is sized from a short probe so that the cosine schedule ends when the budget is spent.
A budget is CPU minutes: this process's CPU time, so that other jobs on the machine do not shift it.
The EMA weights at the end are measured on held-out digits:

* reconstruction configs: direct and Algorithm 2 per-image RMSE / SSIM on 200 held-out digits;
* generation configs: 500 samples from the fitted prior with each sampler setting (``--sample``), judged
  by :func:`colddiff_lib.evaluation.generation_measures` (share of confident digits, classifier FID
  against the 4,000 training digits, class histogram).

One thread per run, so two runs share the 2-core machine (two 1-thread jobs train 1.4x the images of one
2-thread job). Each run owns its folder under ``runs/study``; killed, the same command resumes the budget
it was training and skips the budgets already measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

STUDY = Path("runs/study")


def machine() -> str:
    from colddiff_lib.runtime import machine as describe

    return f"{describe()}, {torch.get_num_threads()} thread(s), bf16 native: {_bf16()}"


def _bf16() -> bool:
    from colddiff_lib.runtime import bf16_supported

    return bf16_supported(torch.device("cpu"))


def parse_setting(text: str) -> dict:
    """``improved:0.002`` -> ``{"algorithm": "improved", "noise_std": 0.002}`` (``:LEVEL`` to start below T)."""
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
        rows = evaluate_reconstruction(
            R, D, data["test"][:200], methods=("direct", "improved")
        )
        return {m: {k: rows[m][k] for k in ("rmse", "ssim")} for m in rows}
    out = {}
    for text in args.sample:
        setting = parse_setting(text)
        level = setting.get("level")
        prior = (
            GaussianPrior(D, data["train"], components=args.components, level=level)
            if level is not None or D.has_latent
            else None
        )
        g = torch.Generator().manual_seed(0)
        x, _ = generate(
            R,
            D,
            500,
            tuple(data["train"].shape[1:]),
            prior=prior,
            noise_std=setting["noise_std"],
            algorithm=setting["algorithm"],
            generator=g,
        )
        m = generation_measures(x, data["train"], data["classifier"])
        out[text] = m
    return out


def study_spec(args):
    """``(spec, D, model_cfg, recipe)`` of a run: the zoo config ``args.config`` with the study's changes
    (``--preset``, ``--batch``, ``--lr``, ``--deg``, ``--train``); ``spec`` is what ``points.json`` records
    and what a resumed run must match. Sets ``args.task``."""
    from colddiff_lib import degradations as dg
    from colddiff_lib.models import UNet, count_parameters
    from colddiff_lib.zoo.build import config_of, task_of

    cfg = config_of(args.config)
    args.task = task_of(args.config)
    deg = {**cfg.degradation, **_settings(args.deg)}
    # --deg noisy=STD[,POWER]: the config's degradation with noise on top (dg.Noisy)
    if "noisy" in deg:
        std, _, power = str(deg.pop("noisy")).partition(",")
        deg = {
            "name": "noisy",
            "base": deg,
            "std": float(std),
            "power": float(power or 1.0),
        }
    D = dg.build(channels=1, **deg)
    model_cfg = {
        **cfg.model,
        **({"preset": args.preset} if args.preset else {}),
    }
    preset = model_cfg.pop("preset")
    # The zoo recipe of the config (batch, lr, warm-up, cosine decay, EMA, shifts), with
    # the study's changes.
    recipe = {
        **cfg.train,
        **({"batch_size": args.batch} if args.batch else {}),
        **({"lr": args.lr} if args.lr else {}),
        **_settings(args.train),
    }
    recipe.update(
        device="cpu", progress=False, log_every=25, checkpoint_every=250, seed=0
    )
    for key in ("steps", "eval_every"):
        recipe.pop(key, None)
    spec = {
        "name": args.name,
        "config": args.config,
        "task": args.task,
        "preset": preset,
        "parameters": count_parameters(
            UNet.from_preset(preset, channels=1, **model_cfg)
        ),
        "degradation": D.config(),
        "train": recipe,
        "sample": args.sample,
        "machine": machine(),
        "command": "python benchmarks/compute_study.py " + " ".join(sys.argv[1:]),
    }
    return spec, D, model_cfg, recipe


def run(args) -> None:
    from colddiff_lib import zoo
    from colddiff_lib.checkpoint import load_checkpoint, write_json_atomic
    from colddiff_lib.data import load_dataset
    from colddiff_lib.models import UNet
    from colddiff_lib.training import TrainConfig, cpu_seconds_per_step, train

    folder = STUDY / args.name
    points_path = folder / "points.json"
    spec, D, model_cfg, recipe = study_spec(args)
    preset = spec["preset"]
    state = (
        json.loads(points_path.read_text())
        if points_path.is_file()
        else {"spec": spec, "points": []}
    )
    if any(state["spec"].get(k) != spec[k] for k in ("degradation", "preset", "train")):
        raise SystemExit(
            f"error: {folder} holds another run ({state['spec']['command']}); choose another NAME"
        )
    todo = [
        m
        for m in sorted(args.minutes)
        if m not in [p["minutes"] for p in state["points"]]
    ]
    if not todo:
        print(f"{args.name}: every budget measured already", flush=True)
        return
    data = {
        "train": load_dataset("mnist5k", split="train").images,
        "test": load_dataset("mnist5k", split="test").images,
        "classifier": zoo.load_classifier(),
    }
    # CPU seconds of one training step, to size each budget's schedule
    if "seconds_per_step" not in state:
        torch.manual_seed(0)
        probe = UNet.from_preset(preset, channels=1, **model_cfg)
        state["seconds_per_step"] = cpu_seconds_per_step(
            probe, D, data["train"], TrainConfig(**recipe), steps=40, warmup=10
        )
        write_json_atomic(state, points_path)
    print(
        f"{args.name}: {preset} ({spec['parameters'] / 1e6:.2f}M), batch {recipe['batch_size']}, lr "
        f"{recipe['lr']}, {state['seconds_per_step']:.3f} CPU s a step; budgets {todo} CPU min on "
        f"{spec['machine']}",
        flush=True,
    )
    for budget in todo:
        steps = max(200, int(budget * 60 / state["seconds_per_step"]))
        sub = folder / f"{budget:g}min"
        clock = CpuClock(sub / "clock.json")
        resume = (sub / "last.pt").exists()
        if resume:
            clock.resume(load_checkpoint(sub / "last.pt")["step"])
        torch.manual_seed(0)
        model = UNet.from_preset(preset, channels=1, **model_cfg)
        config = TrainConfig(
            **{**recipe, "steps": steps, "checkpoint_dir": str(sub), "resume": resume}
        )
        result = train(
            model,
            D,
            data["train"],
            config,
            callback=lambda info: clock.seconds(info["step"]),
        )
        minutes = clock.seconds(result.step) / 60
        quality = measure(args, result.ema, D, data)
        state["points"].append(
            {
                "minutes": budget,
                "train_minutes": minutes,
                "step": result.step,
                "images": result.step * recipe["batch_size"],
                "quality": quality,
                "wall_minutes": result.history["elapsed"][-1] / 60,
            }
        )
        write_json_atomic(state, points_path)
        print(
            f"{args.name}: {budget:g} min ({minutes:.1f} used), {steps} steps: {json.dumps(quality)}",
            flush=True,
        )
    print(f"{args.name}: done ({len(state['points'])} budgets)", flush=True)


class CpuClock:
    """A run's training time in CPU seconds (this process's, so other jobs on the machine do not count),
    kept per step in ``clock.json`` so that a resumed run goes on from it."""

    def __init__(self, path: Path):
        from colddiff_lib.checkpoint import write_json_atomic

        self.path, self._write = path, write_json_atomic
        self.marks = json.loads(path.read_text()) if path.is_file() else {}
        self.before, self.start = 0.0, time.process_time()

    def resume(self, step: int) -> None:
        self.before, self.start = self.marks[str(step)], time.process_time()

    def seconds(self, step: int) -> float:
        now = self.before + time.process_time() - self.start
        # train() checkpoints every 250 steps: keep those marks
        if str(step) not in self.marks:
            self.marks = {k: v for k, v in self.marks.items() if int(k) % 250 == 0}
            self.marks[str(step)] = now
            self._write(self.marks, self.path)
        return now


# : The columns of a study row: one budget of one run, and for generation one sampler
# setting.
COLUMNS = [
    "run",
    "task",
    "config",
    "preset",
    "parameters",
    "degradation",
    "setting",
    "cpu_minutes",
    "steps",
    "direct_rmse",
    "direct_ssim",
    "alg2_rmse",
    "alg2_ssim",
    "confident",
    "fid",
    "class_share_min",
    "class_share_max",
    "machine",
]


def rows_of(runs) -> list:
    """Flat study rows (:data:`COLUMNS`) from the ``points.json`` of runs under ``runs/study``."""
    rows = []
    for run in runs:
        spec = run["spec"]
        base = {
            "run": spec["name"],
            "task": spec["task"],
            "config": spec["config"],
            "preset": spec["preset"],
            "parameters": spec["parameters"],
            "degradation": _degradation(spec),
            "machine": spec["machine"],
        }
        for p in run["points"]:
            at = {
                **base,
                "cpu_minutes": round(p["train_minutes"], 1),
                "steps": p["step"],
            }
            if spec["task"] == "reconstruction":
                d, a = p["quality"]["direct"], p["quality"]["improved"]
                rows.append(
                    {
                        **at,
                        "setting": _other(spec),
                        "direct_rmse": d["rmse"],
                        "direct_ssim": d["ssim"],
                        "alg2_rmse": a["rmse"],
                        "alg2_ssim": a["ssim"],
                    }
                )
            else:
                rows += [
                    {
                        **at,
                        "setting": _sampler(setting),
                        **{
                            k: m[k]
                            for k in (
                                "confident",
                                "fid",
                                "class_share_min",
                                "class_share_max",
                            )
                        },
                    }
                    for setting, m in p["quality"].items()
                ]
    return rows


def read_record(path) -> list:
    """The rows of a recorded study (a CSV of :data:`COLUMNS`; empty cells are measures not taken)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise SystemExit(
            f"error: {path}: missing columns {missing}; expected {COLUMNS}"
        )
    numeric = COLUMNS[COLUMNS.index("cpu_minutes") : -1] + ["parameters"]
    return [
        {
            k: (float(v) if k in numeric and v != "" else (None if v == "" else v))
            for k, v in r.items()
        }
        for r in rows
    ]


def unique_rows(rows) -> list:
    """One row per run, budget, setting and machine, the later replacing the earlier (a run's own row
    replaces the record's copy of it)."""
    unique = {
        (r["run"], r["cpu_minutes"], r["setting"] or "", r["machine"]): r for r in rows
    }
    return list(unique.values())


def write_record(rows, path) -> None:
    """Write study rows (:data:`COLUMNS`) to the record CSV ``path`` atomically (:func:`unique_rows`)."""
    import csv
    import io

    from colddiff_lib import files

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()

    def cell(value):
        if value is None:
            return ""
        if isinstance(value, float):
            return int(value) if value.is_integer() else round(value, 4)
        return value

    for r in unique_rows(rows):
        writer.writerow({k: cell(r.get(k)) for k in COLUMNS})
    files.write_text(out.getvalue(), path)


def _f(value, spec) -> str:
    return "-" if value is None else format(value, spec)


def _print_table(header, rows) -> None:
    """A Markdown table, after a blank line."""
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def report(args) -> None:
    """Print the study's two tables (Markdown) and draw its figure: quality against CPU minutes, one curve
    per model size (reconstruction: per-image RMSE of the direct estimate and of Algorithm 2; generation:
    the share of confident digits and FID of each sampler). The rows are the recorded study's (``--record``)
    and those of the runs under ``runs/study``; every row is saved as JSON (``--out``)."""
    from colddiff_lib.runtime import machine_name

    runs = [
        json.loads(path.read_text()) for path in sorted(STUDY.glob("*/points.json"))
    ]
    rows = unique_rows(
        (read_record(args.record) if args.record else [])
        + rows_of([r for r in runs if r["points"]])
    )
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    if args.keep:  # the runs' rows join the record, which outlives the runs' folders
        write_record(rows, args.record)
        print(f"record: {len(rows)} rows in {args.record}")
    for machine_ in sorted({r["machine"] for r in rows}):
        print(f"machine: {machine_}")
    _print_table(
        [
            "run",
            "preset",
            "params",
            "other",
            "CPU min",
            "steps",
            "direct RMSE / SSIM",
            "Alg. 2 RMSE / SSIM",
            "machine",
        ],
        [
            [
                r["run"],
                r["preset"],
                f"{r['parameters'] / 1e6:.2f}M",
                r["setting"] or "-",
                f"{r['cpu_minutes']:g}",
                _f(r["steps"], ".0f"),
                f"{_f(r['direct_rmse'], '.3f')} / {_f(r['direct_ssim'], '.3f')}",
                f"{_f(r['alg2_rmse'], '.3f')} / {_f(r['alg2_ssim'], '.3f')}",
                machine_name(r["machine"]),
            ]
            for r in rows
            if r["task"] == "reconstruction"
        ],
    )
    _print_table(
        [
            "run",
            "preset",
            "degradation",
            "CPU min",
            "sampler",
            "confident",
            "FID",
            "rarest / commonest class",
            "machine",
        ],
        [
            [
                r["run"],
                r["preset"],
                r["degradation"],
                f"{r['cpu_minutes']:g}",
                r["setting"],
                _f(r["confident"], ".2f"),
                _f(r["fid"], ".1f"),
                f"{_f(r['class_share_min'], '.2f')} / {_f(r['class_share_max'], '.2f')}",
                machine_name(r["machine"]),
            ]
            for r in rows
            if r["task"] == "generation"
        ],
    )
    if args.figure:
        draw(rows, args.figure)
        print(f"\nfigure: {args.figure}")


def _other(spec) -> str:
    """What a run changed of its config's recipe (batch, learning rate, any training setting), e.g.
    ``"batch_size 32"``; empty for the zoo's own recipe."""
    from colddiff_lib.zoo import config_of

    own = config_of(spec["config"]).train
    plumbing = {"device", "progress", "log_every", "checkpoint_every", "seed"}
    keys = sorted(
        k
        for k in set(spec["train"]) - plumbing
        if k not in own or spec["train"][k] != own[k]
    )
    return ", ".join(
        f"{k} {spec['train'][k]:g}"
        if isinstance(spec["train"][k], float)
        else f"{k} {spec['train'][k]}"
        for k in keys
    )


def _degradation(spec) -> str:
    """The run's degradation, with what it changed of its config's: ``"blur (T 50, schedule exponential)"``."""
    from colddiff_lib.zoo import config_of

    d = spec["degradation"]
    if d["name"] == "noisy":
        return f"{d['base']['name']} + noise {d['std']:g}"
    own = config_of(spec["config"]).degradation
    changed = [
        k for k in d if k not in ("name", "channels") and k in own and d[k] != own[k]
    ]
    return d["name"] + (
        f" ({', '.join(f'{k} {d[k]}' for k in changed)})" if changed else ""
    )


def _sampler(text: str) -> str:
    """``"improved:0:30"`` -> ``"Algorithm 2 from level 30"`` (a run's ``--sample`` setting in words)."""
    from colddiff_lib.reproduce import METHOD_NAMES

    setting = parse_setting(text)
    level = setting.get("level")
    words = f"{METHOD_NAMES[setting['algorithm']]} from " + (
        "T" if level is None else f"level {level}"
    )
    return words + (f", noise {setting['noise_std']:g}" if setting["noise_std"] else "")


def draw(rows, path) -> None:
    """Three panels: held-out RMSE of the direct estimate and of Algorithm 2 against CPU minutes (log), one
    curve per run (model size); and, for generation, the share of confident digits against FID, one point
    per sampler setting."""
    import matplotlib

    from colddiff_lib.runtime import machine_name

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 2, figsize=(11, 8))
    # direct, Algorithm 2, generation; the fourth cell holds the curves' legend
    axes = [grid[0, 0], grid[0, 1], grid[1, 0]]
    grid[1, 1].axis("off")
    rec = [r for r in rows if r["task"] == "reconstruction"]
    # one curve per run; the machine by line style (a CPU minute buys other steps on each)
    styles = {}

    def style_of(where):
        return styles.setdefault(where, ("o-", "s--", "^:")[len(styles) % 3])

    for run in dict.fromkeys(r["run"] for r in rec):
        pts = sorted(
            (r for r in rec if r["run"] == run), key=lambda r: r["cpu_minutes"]
        )
        first = pts[0]
        where = machine_name(first["machine"])
        style = style_of(where)
        label = f"{first['preset']} ({first['parameters'] / 1e6:.2f}M)" + (
            f", {first['setting']}" if first["setting"] else ""
        )
        label += f"; {where}"
        x = [p["cpu_minutes"] for p in pts]
        (line,) = axes[0].plot(x, [p["direct_rmse"] for p in pts], style, label=label)
        axes[1].plot(
            x, [p["alg2_rmse"] for p in pts], style, color=line.get_color(), label=label
        )
    budgets = [5, 10, 20, 30, 60]
    shown = [b for b in budgets if any(abs(r["cpu_minutes"] - b) < b / 4 for r in rec)]
    for ax, title in zip(
        axes[:2], ("deblurring, direct estimate", "deblurring, Algorithm 2")
    ):
        ax.set(
            title=title,
            xlabel="CPU minutes of training",
            ylabel="per-image RMSE (held-out)",
            xscale="log",
        )
        ax.set_xticks(shown, [f"{m:g}" for m in shown])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    grid[1, 1].legend(
        *axes[1].get_legend_handles_labels(),
        fontsize=8,
        loc="upper left",
        frameon=False,
    )
    for r in rows:
        if (
            r["task"] == "generation"
            and r["confident"] is not None
            and r["fid"] is not None
        ):
            where = machine_name(r["machine"])
            marker = style_of(where)[0]  # the machine's marker, as its curves' above
            axes[2].plot(
                r["fid"],
                r["confident"],
                marker,
                label=f"{r['degradation']}: {r['setting']}; {where}",
            )
    axes[2].set(
        title="generation (500 samples)",
        xlabel="classifier FID (lower is better)",
        ylabel="share of confident digits",
        xscale="log",
    )
    axes[2].grid(alpha=0.3)
    axes[2].legend(
        fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.24), borderaxespad=0
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run", help="train one configuration and measure it at each budget"
    )
    r.add_argument("name", help="the run's folder under runs/study")
    r.add_argument(
        "--config",
        default="mnist-blur",
        help="zoo config to start from (default: %(default)s)",
    )
    r.add_argument(
        "--preset", default=None, help="U-Net preset (default: the config's)"
    )
    r.add_argument(
        "--batch", type=int, default=None, help="batch size (default: the config's)"
    )
    r.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default: the config's)",
    )
    r.add_argument(
        "--deg",
        nargs="*",
        default=[],
        help="degradation settings KEY=VALUE replacing the config's",
    )
    r.add_argument(
        "--train",
        nargs="*",
        default=[],
        help="TrainConfig settings KEY=VALUE (e.g. input_noise=0.01)",
    )
    r.add_argument(
        "--minutes",
        nargs="+",
        type=float,
        default=[5, 20],
        help="budgets in CPU minutes (default: %(default)s)",
    )
    r.add_argument(
        "--sample",
        nargs="*",
        default=["improved:0.002"],
        help="generation: sampler settings ALGORITHM:NOISE_STD[:LEVEL] to measure (default: %(default)s)",
    )
    r.add_argument(
        "--components",
        type=int,
        default=20,
        help="generation: Gaussian mixture components of the prior below T (default: %(default)s)",
    )
    q = sub.add_parser("report", help="print every run's measurements and save them")
    q.add_argument(
        "--record",
        default="benchmarks/compute_study_record.csv",
        help="a recorded study's rows to include, '' for none (default: %(default)s)",
    )
    q.add_argument(
        "--keep",
        action="store_true",
        help="write the runs' rows into the record too, so that they outlive runs/study",
    )
    q.add_argument(
        "--out",
        default="benchmarks/compute_study.json",
        help="where to save (default: %(default)s)",
    )
    q.add_argument(
        "--figure",
        default="benchmarks/compute_study.png",
        help="the figure (default: %(default)s)",
    )
    args = p.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
