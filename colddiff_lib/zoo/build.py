"""Rebuild the model zoo: train every model from its config, the FID classifier, export, evaluate.

    python -m colddiff_lib.zoo.build --runs runs/zoo --results results [--parallel 9] [--time-limit 330]

Each model is trained by one CLI command (recorded in its card)::

    python -m colddiff_lib train --config colddiff_lib/zoo/configs/NAME.toml --out RUNS/NAME

The models train side by side (``--parallel`` processes; on one GPU they share it). ``--time-limit``
stops a training command after that many seconds; its card then records the step it reached. The
best held-out EMA weights (``best.pt``) are exported as fp16 safetensors with a card, then
``python -m colddiff_lib evaluate --zoo NAME`` measures each model and the tables are merged into
``--results``. Extra ``--train-args`` (e.g. ``--steps 20 --preset tiny``) make a quick smoke run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..checkpoint import load_checkpoint
from . import CARDS, CONFIGS_DIR, card, export, export_classifier

GENERATION = ("mnist-blur-gen", "mnist-inpaint-gen", "mnist-superres-gen", "mnist-noise", "mnist-blend")


def _run(cmd, log: Path, time_limit=None, env=None) -> dict:
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=time_limit, env=env)
            code, timed_out = proc.returncode, False
        except subprocess.TimeoutExpired:
            code, timed_out = None, True
    return {"returncode": code, "timed_out": timed_out, "seconds": time.perf_counter() - start}


def machine() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def train_models(names, runs: Path, parallel: int, time_limit, train_args) -> dict:
    runs.mkdir(parents=True, exist_ok=True)

    def one(name):
        config = Path(os.path.relpath(CONFIGS_DIR / f"{name}.toml"))  # recorded as typed from the repo root
        cmd = [sys.executable, "-m", "colddiff_lib", "train", "--config", str(config), "--out", str(runs / name),
               "--no-progress", *train_args]
        info = _run(cmd, runs / f"{name}.log", time_limit)
        info["command"] = "python -m colddiff_lib " + " ".join(shlex.quote(a) for a in cmd[3:])
        return name, info

    with ThreadPoolExecutor(parallel) as pool:
        return dict(pool.map(one, names))


def train_and_export_classifier(steps: int, device: str) -> dict:
    import torch

    from ..classifier import accuracy, train_classifier
    from ..data import load_dataset

    train = load_dataset("mnist5k", split="train")
    test = load_dataset("mnist5k", split="test")
    start = time.perf_counter()
    model = train_classifier(train.images, train.labels, steps=steps, device=device)
    seconds = time.perf_counter() - start
    acc = accuracy(model, test.images, test.labels)
    info = {"test_accuracy": acc, "train_steps": steps, "seconds": seconds, "machine": machine(),
            "data": "mnist5k: trained on the 4,000 training digits, accuracy on the 1,000 held-out digits",
            "command": f"python -m colddiff_lib.zoo.build --skip-train --skip-export --skip-evaluate "
                       f"--classifier-steps {steps}",
            "note": "FID features (128-d penultimate layer); values are not comparable with Inception FID"}
    export_classifier(model.cpu(), info)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return info


def longest_history(paths) -> dict:
    """The loss curve that reaches the latest step among the checkpoints that exist.

    last.pt is written every ``checkpoint_every`` steps and best.pt at each new best held-out loss,
    so a run stopped by a time limit may have either one ahead of the other."""
    histories = [load_checkpoint(p)["history"] for p in paths if Path(p).exists()]
    if not histories:
        raise FileNotFoundError(f"none of {[str(p) for p in paths]} exists")
    return max(histories, key=lambda h: h["step"][-1] if h["step"] else 0)


def export_runs(names, runs: Path, trained: dict) -> None:
    for name in names:
        run_dir = runs / name
        ckpt = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
        if not ckpt.exists():
            print(f"{name}: no checkpoint, not exported (see {runs / (name + '.log')})", flush=True)
            continue
        run = json.loads((run_dir / "run.json").read_text())
        history = longest_history([run_dir / "best.pt", run_dir / "last.pt"])
        t = trained.get(name, {})
        info = {"task": "generation" if name in GENERATION else "reconstruction",
                "config": f"colddiff_lib/zoo/configs/{name}.toml", "command": t.get("command", run.get("command")),
                "machine": machine(), "device": run.get("device_name"), "parameters": run.get("parameters"),
                "train_seconds": t.get("seconds"), "stopped_by_time_limit": t.get("timed_out", False),
                "checkpoint": ckpt.name, "history": history}
        export(ckpt, name, info)
        print(f"{name}: exported {ckpt} (step {card(name)['step']})", flush=True)


def evaluate_models(names, results: Path, parallel: int, n: int, time_limit=None) -> None:
    parts = results / "parts"

    def one(name):
        cmd = [sys.executable, "-m", "colddiff_lib", "evaluate", "--zoo", name, "--n", str(n),
               "--out", str(parts / name)]
        (parts / name).mkdir(parents=True, exist_ok=True)
        return name, _run(cmd, parts / f"{name}.log", time_limit)

    with ThreadPoolExecutor(parallel) as pool:
        done = dict(pool.map(one, names))
    merge_tables(results, names)
    for name, info in done.items():
        if info["returncode"] != 0:
            why = "ran out of time" if info["timed_out"] else "failed"
            print(f"{name}: evaluation {why}, see {parts / (name + '.log')}", flush=True)


def merge_tables(results: Path, names, cards: Path = CARDS) -> None:
    """Rebuild ``results/{reconstruction,generation}.{csv,md}`` with the rows of ``names`` taken from every
    ``results/parts/*/`` folder (a model may have several: its own, and one per extra ``--settings``
    command), keeping the other models' rows; copy those rows' metrics onto the models' cards."""
    from ..checkpoint import write_json_atomic, write_text_atomic
    from ..reproduce import to_csv, to_markdown

    for table in ("reconstruction", "generation"):
        rows = []
        merged = results / f"{table}.csv"
        if merged.exists():  # keep the other models' rows: only the re-evaluated ones are replaced
            with open(merged) as f:
                rows = [r for r in csv.DictReader(f) if r["model"] not in names]
        for path in sorted((results / "parts").glob(f"*/{table}.csv")):
            with open(path) as f:
                rows += [r for r in csv.DictReader(f) if r["model"] in names]
        rows.sort(key=lambda r: r["model"])  # stable: each model's rows keep their order
        if rows:
            write_text_atomic(to_csv(rows), results / f"{table}.csv")
            write_text_atomic(to_markdown(rows), results / f"{table}.md")
        by_model: dict = {}
        for row in rows:
            if row["model"] in names:
                by_model.setdefault(row["model"], []).append(row)
        for model, model_rows in by_model.items():  # the metrics go on the model's card too: one write per card
            path = Path(cards) / f"{model}.json"
            info = json.loads(path.read_text())
            metrics = info.setdefault("metrics", {})
            for row in model_rows:
                key = row["method"] + (f" (noise {row['noise_std']})" if row.get("noise_std") not in (None, "") else "")
                metrics[key] = {k: _number(v) for k, v in row.items() if k not in ("model", "method", "command")}
            write_json_atomic(info, path)


def _number(value: str):
    """A table cell as a number where it is one (cards store numbers, CSV cells are text)."""
    try:
        return int(value) if value.isdigit() else float(value)
    except ValueError:
        return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m colddiff_lib.zoo.build", description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/zoo", help="folder for the training runs")
    p.add_argument("--results", default="results", help="folder for the tables")
    p.add_argument("--names", nargs="*", help="models to build (default: every config)")
    p.add_argument("--parallel", type=int, default=3)
    p.add_argument("--time-limit", type=float, default=None, help="seconds per training command")
    p.add_argument("--classifier-steps", type=int, default=3000)
    p.add_argument("--skip-classifier", action="store_true", help="keep the shipped classifier")
    p.add_argument("--skip-train", action="store_true", help="use the runs already in --runs")
    p.add_argument("--skip-export", action="store_true", help="keep the shipped weights and cards")
    p.add_argument("--skip-evaluate", action="store_true", help="write no tables")
    p.add_argument("--eval-time-limit", type=float, default=None, help="seconds per evaluation command")
    p.add_argument("--n", type=int, default=1000, help="held-out digits / samples per table row")
    p.add_argument("--device", default="auto")
    p.add_argument("--train-args", default="", help="extra arguments for every train command, quoted")
    args = p.parse_args(argv)
    names = args.names or sorted(path.stem for path in CONFIGS_DIR.glob("*.toml"))
    runs, results = Path(args.runs), Path(args.results)
    t0 = time.perf_counter()
    trained = {}
    with ThreadPoolExecutor(1) as side:
        classifier = None if args.skip_classifier else \
            side.submit(train_and_export_classifier, args.classifier_steps, args.device)
        if not args.skip_train:
            trained = train_models(names, runs, args.parallel, args.time_limit, shlex.split(args.train_args))
            for name, info in trained.items():
                print(f"{name}: {info}", flush=True)
        if classifier is not None:
            print(f"classifier: {classifier.result()}", flush=True)
    if not args.skip_export:
        export_runs(names, runs, trained)
    if not args.skip_evaluate:
        evaluate_models([n for n in names if (CARDS / f"{n}.json").exists()], results, args.parallel, args.n,
                        args.eval_time_limit)
    print(f"zoo built in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
