"""Rebuild the model zoo: train every model from its config, export it, evaluate it; resumable.

    python -m colddiff_lib.zoo.build --device cpu          # the whole zoo, one model at a time
    python -m colddiff_lib.zoo.build --names mnist-blur    # some models
    python -m colddiff_lib.zoo.build --plan                # what each would cost this CPU, probed

Each model is trained by one CLI command (recorded in its card)::

    python -m colddiff_lib train --config colddiff_lib/zoo/configs/NAME.toml --out RUNS/NAME --resume

then its best held-out EMA weights (``best.pt``) are exported as fp16 safetensors with a card, and
``python -m colddiff_lib evaluate --zoo NAME`` measures it into ``RESULTS/parts/NAME``. The build
records each finished stage in ``RUNS/build.json``: killed at any moment, the same command resumes
the interrupted training from its last checkpoint and skips what is done. Models train one at a
time (on one GPU, nine processes side by side ran at 3 steps/s each against 17 for one alone);
``--time-limit`` stops a training command after that many seconds (for a lent GPU's budget) and
its card then records the step it reached. Extra ``--train-args`` (e.g. ``--steps 20``) make a
quick smoke run. The log gives each model's progress and an ETA for the whole build.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import files
from ..checkpoint import load_checkpoint
from ..runtime import machine
from .. import zoo

# config_of and task_of are re-exported
from . import (  # noqa: F401
    CONFIGS_DIR,
    card,
    config_of,
    export,
    export_classifier,
    task_of,
)


# set when the build is stopped: children are killed, none starts
_STOPPING = threading.Event()
# the running children (each the leader of a process group of its own)
_CHILDREN: set = set()
_CHILDREN_LOCK = threading.Lock()


def _die_with_parent():
    """A ``preexec_fn``: in the child, before its command runs, ask Linux to SIGKILL it when the build dies
    (``PR_SET_PDEATHSIG``), however the build dies (``kill -9`` included). Elsewhere a no-op."""
    parent = os.getpid()
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            # looked up here: the child only calls it
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None

    def setup():
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
            # the build died before the call: nobody would kill this child
            if os.getppid() != parent:
                os._exit(1)

    return setup


def _kill(proc) -> None:
    """SIGKILL ``proc``'s whole process group (what it started too), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _kill_children() -> None:
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for proc in children:
        _kill(proc)


def _run(cmd, log: Path, time_limit=None, env=None, tick=None) -> dict:
    """Run ``cmd`` with its output appended to ``log``; ``tick()`` is called every 30 s while it runs.

    The child dies with the build: it runs in a process group of its own, which is killed when the time
    limit passes, when the build stops (Ctrl-C, SIGTERM) or this call is left in any other way, and on
    Linux the kernel kills it when the build is killed (``kill -9`` included: ``PR_SET_PDEATHSIG``), so a
    rerun of the build never finds an orphaned trainer still writing into the same folder."""
    if _STOPPING.is_set():
        raise KeyboardInterrupt("the zoo build is stopping")
    start = last_tick = time.perf_counter()
    timed_out = False
    with open(log, "a") as f:
        proc = subprocess.Popen(
            cmd,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent(),
        )
        with _CHILDREN_LOCK:
            _CHILDREN.add(proc)
        try:
            while True:
                now = time.perf_counter()
                wait = (
                    1.0
                    if time_limit is None
                    else max(0.1, min(1.0, start + time_limit - now))
                )
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    if _STOPPING.is_set():
                        raise KeyboardInterrupt("the zoo build is stopping") from None
                    if tick is not None and time.perf_counter() - last_tick >= 30.0:
                        tick()
                        last_tick = time.perf_counter()
                    if (
                        time_limit is not None
                        and time.perf_counter() - start > time_limit
                    ):
                        _kill(proc)
                        timed_out = True
                        break
        finally:
            if proc.poll() is None:
                _kill(proc)
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
    # killed because the build stops: not a failure of the command to report
    if _STOPPING.is_set():
        raise KeyboardInterrupt("the zoo build is stopping")
    return {
        "returncode": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "seconds": time.perf_counter() - start,
    }


# what _take_runs holds until the build ends: the lock, the signal handlers it replaced
_HELD: dict = {}


def _take_runs(runs: Path, argv) -> None:
    """Lock ``runs`` (one build per runs folder, the lock of :func:`colddiff_lib.checkpoint.run_lock`) and
    make Ctrl-C and SIGTERM stop the children; :func:`_release_runs` undoes both."""
    from ..checkpoint import run_lock

    _STOPPING.clear()
    lock = run_lock(
        runs,
        "python -m colddiff_lib.zoo.build " + shlex.join(list(argv)),
        what="--runs",
    )
    lock.__enter__()
    _HELD["lock"] = lock

    def stop(signum, frame):
        _STOPPING.set()
        _kill_children()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        _HELD["handlers"] = {
            sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }


def _release_runs() -> None:
    # none is left after a build's pool has ended; this is for the unforeseen
    _kill_children()
    _STOPPING.clear()
    for sig, handler in _HELD.pop("handlers", {}).items():
        signal.signal(sig, handler)
    lock = _HELD.pop("lock", None)
    if lock is not None:
        lock.__exit__(None, None, None)


class BuildState:
    """``RUNS/build.json``: the stages each model has finished (``trained``, ``exported``, ``evaluated``)."""

    def __init__(self, runs: Path):
        self.path = runs / "build.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        # Wall time of each build command, saved every 30 s and at every mark: a killed
        # build keeps its part.
        self.sessions = self.data.setdefault("_wall_seconds", {"sessions": []})[
            "sessions"
        ]
        self.sessions.append(0.0)
        self.started = time.perf_counter()
        self.save()

    def done(self, name: str, stage: str) -> bool:
        return stage in self.data.get(name, {})

    def get(self, name: str, stage: str) -> dict:
        return self.data.get(name, {}).get(stage, {})

    def mark(self, name: str, stage: str, info: dict) -> None:
        self.data.setdefault(name, {})[stage] = info
        self.save()

    def save(self) -> None:
        self.sessions[-1] = round(time.perf_counter() - self.started, 1)
        files.write_json(self.data, self.path)

    def wall_seconds(self) -> float:
        """Wall time of every build command so far (each up to its last save, at most 30 s before it stopped)."""
        return sum(self.sessions)


def train_model(
    name: str,
    runs: Path,
    time_limit,
    train_args,
    device: str,
    state: BuildState,
    names=None,
    threads=None,
) -> None:
    """Train one model from its config, resuming from its own ``last.pt``; skipped once trained.

    ``names``: the models of this build (for the ETA); ``threads``: torch's threads for the command."""
    if state.done(name, "trained"):
        print(
            f"{name}: trained already ({state.get(name, 'trained').get('step')} steps), skipped",
            flush=True,
        )
        return
    runs.mkdir(parents=True, exist_ok=True)
    # recorded as typed from the repo root
    config = Path(os.path.relpath(CONFIGS_DIR / f"{name}.toml"))
    cmd = [
        sys.executable,
        "-m",
        "colddiff_lib",
        "train",
        "--config",
        str(config),
        "--out",
        str(runs / name),
        "--no-progress",
        "--resume",
        *(["--device", device] if device != "auto" else []),
        *train_args,
    ]
    print(f"{name}: training, log {runs / (name + '.log')}", flush=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    info = _run(cmd, runs / f"{name}.log", time_limit, env=env, tick=state.save)
    info["command"] = "python -m colddiff_lib " + " ".join(
        shlex.quote(a) for a in cmd[3:]
    )
    last = runs / name / "last.pt"
    history = (
        load_checkpoint(last)["history"]
        if last.exists()
        else {"step": [], "elapsed": []}
    )
    info["step"] = history["step"][-1] if history["step"] else 0
    # over every resume
    info["train_seconds"] = history["elapsed"][-1] if history["elapsed"] else None
    info["train_cpu_seconds"] = history["cpu"][-1] if history.get("cpu") else None
    if info["returncode"] != 0 and not info["timed_out"]:
        print(
            f"{name}: training failed (exit {info['returncode']}), see {runs / (name + '.log')}",
            flush=True,
        )
        return
    state.mark(name, "trained", info)
    left = sum(
        int(config_of(n).train.get("steps", 1000))
        for n in (names or [name])
        if not state.done(n, "trained")
    )
    eta = ""
    if left and info["train_seconds"] and info["step"]:  # at this model's rate
        eta = (
            f"; this build's untrained models' {left} steps take about "
            f"{left * info['train_seconds'] / info['step'] / 60:.0f} min more at its rate"
        )
    print(
        f"{name}: trained to step {info['step']} in {info['train_seconds'] or 0:.0f} s{eta}",
        flush=True,
    )


def plan(names, train_args=()) -> float:
    """Print what training ``names`` from their configs asks of this machine's CPU, a line a model (preset,
    steps, CPU seconds of one step, CPU minutes), then the total, and return the total in CPU minutes.
    Each step's cost is probed: a few steps of the very model, degradation, data and recipe that the
    model's train command builds (with ``train_args``), on one thread, as ``--parallel 2`` trains on two
    cores. The held-out losses and checkpoints add a little. Trains and writes nothing."""
    import contextlib
    import tempfile

    import torch

    from ..cli import _train_parts, _train_settings, build_parser
    from ..training import cpu_seconds_per_step

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: a caller's process keeps its threads
    total = 0.0
    print(f"the configs' training on {machine()}, one thread a model:", flush=True)
    with tempfile.TemporaryDirectory() as out, contextlib.ExitStack() as undo:
        undo.callback(torch.set_num_threads, threads)
        for name in names:
            config = CONFIGS_DIR / f"{name}.toml"
            argv = ["train", "--config", str(config), "--out", out, *train_args]
            args = build_parser().parse_args([*argv, "--device", "cpu"])
            args.argv = argv
            run = _train_settings(args)
            model, D, train_set, _ = _train_parts(run)
            seconds = cpu_seconds_per_step(model, D, train_set, run.config, steps=20)
            minutes = run.config.steps * seconds / 60
            total += minutes
            print(
                f"  {name:<20} {run.preset:<8} {run.config.steps:>6} steps x "
                f"{seconds:.3f} CPU s = {minutes:5.0f} CPU min",
                flush=True,
            )
    print(f"  {'all':<20} {'':<8} {'':>6}{'':>24}   {total:5.0f} CPU min", flush=True)
    return total


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
    info = {
        "test_accuracy": acc,
        "train_steps": steps,
        "seconds": seconds,
        "machine": machine(),
        "data": "mnist5k: trained on the 4,000 training digits, accuracy on the 1,000 held-out digits",
        "command": f"python -m colddiff_lib.zoo.build --skip-train --skip-export --skip-evaluate "
        f"--classifier-steps {steps}",
        "note": "FID features (128-d penultimate layer); values are not comparable with Inception FID",
    }
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


def export_runs(names, runs: Path, state: BuildState) -> None:
    """Ship the best held-out EMA weights of each trained run as fp16 safetensors with a card."""
    for name in names:
        if state.done(name, "exported") or not state.done(name, "trained"):
            continue
        run_dir = runs / name
        ckpt = (
            run_dir / "best.pt"
            if (run_dir / "best.pt").exists()
            else run_dir / "last.pt"
        )
        run = json.loads((run_dir / "run.json").read_text())
        history = longest_history([run_dir / "best.pt", run_dir / "last.pt"])
        t = state.get(name, "trained")
        info = {
            "task": task_of(name),
            "config": f"colddiff_lib/zoo/configs/{name}.toml",
            "sampling": config_of(name).sampling,
            "command": t.get("command", run.get("command")),
            "machine": machine(),
            "device": run.get("device_name"),
            "parameters": run.get("parameters"),
            "train_seconds": t.get("train_seconds"),
            "stopped_by_time_limit": t.get("timed_out", False),
            "checkpoint": ckpt.name,
            "history": history,
        }
        export(ckpt, name, info)
        state.mark(
            name, "exported", {"checkpoint": str(ckpt), "step": card(name)["step"]}
        )
        print(f"{name}: exported {ckpt} (step {card(name)['step']})", flush=True)


def evaluate_model(
    name: str,
    results: Path,
    n: int,
    time_limit=None,
    state: BuildState = None,
    device: str = "auto",
) -> None:
    """``evaluate --zoo NAME`` into ``results/parts/NAME``, then merge the tables; with ``state``, only an
    exported model not evaluated yet."""
    if state is not None and (
        not state.done(name, "exported") or state.done(name, "evaluated")
    ):
        return
    parts = results / "parts"
    cmd = [
        sys.executable,
        "-m",
        "colddiff_lib",
        "evaluate",
        "--zoo",
        name,
        "--n",
        str(n),
        "--out",
        str(parts / name),
        *(["--device", device] if device != "auto" else []),
    ]
    (parts / name).mkdir(parents=True, exist_ok=True)
    # The model's own folder describes its previous weights: its tables go, so that
    # evaluate's merge cannot keep a row of the old model beside the new ones
    # (merge_tables still keeps results/ until this succeeds).
    for old in [*(parts / name).glob("*.csv"), *(parts / name).glob("*.md")]:
        old.unlink()
    (parts / f"{name}.log").unlink(missing_ok=True)
    print(
        f"{name}: evaluating on {n} held-out digits, log {parts / (name + '.log')}",
        flush=True,
    )
    info = _run(
        cmd,
        parts / f"{name}.log",
        time_limit,
        tick=None if state is None else state.save,
    )
    if info["returncode"] != 0:
        why = "ran out of time" if info["timed_out"] else "failed"
        print(f"{name}: evaluation {why}, see {parts / (name + '.log')}", flush=True)
        return
    merge_tables(results, [name])
    if state is not None:
        state.mark(name, "evaluated", {"seconds": info["seconds"], "n": n})
    print(f"{name}: evaluated in {info['seconds']:.0f} s", flush=True)


def merge_tables(results: Path, names, cards: Path = None) -> None:
    """Rebuild ``results/{reconstruction,generation}.{csv,md}`` with the rows of ``names`` taken from every
    ``results/parts/*/`` folder (a model may have several: its own, and one per extra ``--settings``
    command), keeping the other models' rows; copy those rows' metrics onto the models' cards."""
    from ..tables import read_csv, to_csv, to_markdown

    # the real digits' rows: the same whichever model's evaluation wrote them, so they are
    # taken from a parts folder of a model of this build (its evaluation wrote them last),
    # or left as they are (file times say nothing in a fresh checkout)
    def of_this_build(reference: Path) -> bool:
        generation = reference.parent / "generation.csv"
        return generation.exists() and any(
            row["model"] in names for row in read_csv(generation)
        )

    references = sorted(
        filter(of_this_build, (results / "parts").glob("*/generation_reference.csv")),
        key=lambda p: p.stat().st_mtime,
    )
    if references:
        rows = read_csv(references[-1])
        files.write_text(to_csv(rows), results / "generation_reference.csv")
        files.write_text(to_markdown(rows), results / "generation_reference.md")
    for table in ("reconstruction", "generation"):
        # keep the other models' rows: only the re-evaluated ones are replaced
        rows = [
            r for r in read_csv(results / f"{table}.csv") if r["model"] not in names
        ]
        for path in sorted((results / "parts").glob(f"*/{table}.csv")):
            rows += [r for r in read_csv(path) if r["model"] in names]
        # stable: each model's rows keep their order
        rows.sort(key=lambda r: r["model"])
        if rows:
            files.write_text(to_csv(rows), results / f"{table}.csv")
            files.write_text(to_markdown(rows), results / f"{table}.md")
        by_model: dict = {}
        for row in rows:
            if row["model"] in names:
                by_model.setdefault(row["model"], []).append(row)
        # the metrics go on the model's card too: one write per card
        for model, model_rows in by_model.items():
            path = Path(cards or zoo.CARDS) / f"{model}.json"
            info = json.loads(path.read_text())
            # every row of the model is here: none of the old ones may stay
            metrics = info["metrics"] = {}
            for row in model_rows:
                # a row's name on the card: its method, noise and start (two starts, two
                # entries)
                key = row["method"] + (
                    f" (noise {row['noise_std']})"
                    if row.get("noise_std") not in (None, "")
                    else ""
                )
                key += f" from {row['start']}" if row.get("start") else ""
                metrics[key] = {
                    k: _number(v)
                    for k, v in row.items()
                    if k not in ("model", "method", "command")
                }
            files.write_json(info, path)


def _number(value: str):
    """A table cell as a number where it is one (cards store numbers, CSV cells are text)."""
    try:
        return int(value) if value.isdigit() else float(value)
    except ValueError:
        return value


def main(argv=None) -> int:
    """The command line; bad input prints one ``error: ...`` line and returns 2 (``--debug``: traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _main([a for a in argv if a != "--debug"])
    except (ValueError, OSError) as err:
        if debug:
            raise
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    # Ctrl-C or SIGTERM: the children are killed; the same command resumes
    except KeyboardInterrupt:
        if debug:
            raise
        print(
            "zoo build: interrupted (its children stopped); run the same command to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        _release_runs()


def _main(argv) -> int:
    p = argparse.ArgumentParser(
        prog="python -m colddiff_lib.zoo.build", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--runs", default="runs/zoo", help="folder for the training runs and build.json"
    )
    p.add_argument("--results", default="results", help="folder for the tables")
    p.add_argument("--names", nargs="*", help="models to build (default: every config)")
    p.add_argument(
        "--parallel", type=int, default=1, help="training / evaluation commands at once"
    )
    p.add_argument(
        "--time-limit", type=float, default=None, help="seconds per training command"
    )
    p.add_argument("--classifier-steps", type=int, default=3000)
    p.add_argument(
        "--classifier",
        action="store_true",
        help="retrain the FID classifier too (kept by default)",
    )
    p.add_argument(
        "--skip-train", action="store_true", help="use the runs already in --runs"
    )
    p.add_argument(
        "--skip-export", action="store_true", help="keep the shipped weights and cards"
    )
    p.add_argument("--skip-evaluate", action="store_true", help="write no tables")
    p.add_argument(
        "--eval-time-limit",
        type=float,
        default=None,
        help="seconds per evaluation command",
    )
    p.add_argument(
        "--n", type=int, default=1000, help="held-out digits / samples per table row"
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--out",
        default=None,
        help="a zoo folder (weights/, cards/) to build into instead of the "
        "package's: a trial build; --results then defaults to OUT/results",
    )
    p.add_argument(
        "--train-args",
        default="",
        help="extra arguments for every train command, quoted",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the CPU minutes each model's training asks of this machine "
        "(probed), and their total; train nothing",
    )
    args = p.parse_args(argv)
    available = sorted(path.stem for path in CONFIGS_DIR.glob("*.toml"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        p.error(f"--names must be among {available}, got {unknown}")
    if args.parallel < 1:
        p.error(f"--parallel must be a positive int, got {args.parallel}")
    if args.plan:
        plan(names, shlex.split(args.train_args))
        return 0
    # a trial build: nothing in the package or in results/ is written
    if args.out is not None:
        zoo.use_folder(args.out)
        if args.results == p.get_default("results"):
            args.results = str(Path(args.out) / "results")
    runs, results = Path(args.runs), Path(args.results)
    runs.mkdir(parents=True, exist_ok=True)
    _take_runs(runs, argv)  # one build per runs folder, and its children die with it
    state = BuildState(runs)
    print(f"building {names} on {machine()}; state in {state.path}", flush=True)
    classifier = None
    if args.classifier:
        classifier = train_and_export_classifier(args.classifier_steps, args.device)
        print(f"classifier: {classifier}", flush=True)

    # each model: train, export, evaluate (every stage skipped when done)
    def build(name):
        if not args.skip_train:
            train_model(
                name,
                runs,
                args.time_limit,
                shlex.split(args.train_args),
                args.device,
                state,
                names,
                threads,
            )
        if not args.skip_export:
            export_runs([name], runs, state)
        if not args.skip_evaluate and (zoo.CARDS / f"{name}.json").exists():
            evaluate_model(
                name,
                results,
                args.n,
                args.eval_time_limit,
                None if args.skip_export else state,
                args.device,
            )

    # On a CPU, N commands at once share the cores: one thread each where there are as
    # many cores (two one-thread trainings train 1.4x the images of one two-thread
    # training, benchmarks/README.md).
    threads = (
        max(1, (os.cpu_count() or 1) // args.parallel) if args.parallel > 1 else None
    )
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(build, names))
    state.save()
    trained = [state.get(n, "trained") for n in names if state.done(n, "trained")]
    cpu = sum(t.get("train_cpu_seconds") or 0 for t in trained)
    print(
        f"zoo build: {state.sessions[-1]:.0f} s this command, {state.wall_seconds() / 60:.0f} min over "
        f"{len(state.sessions)} command(s) on {machine()}; training took {cpu / 60:.0f} CPU minutes "
        f"(the training processes' CPU time, {len(trained)} models); "
        f"{sum(state.done(n, 'evaluated') for n in names)} of {len(names)} models evaluated",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
