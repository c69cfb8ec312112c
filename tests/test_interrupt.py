"""Interrupted training loses nothing: ``python -m colddiff_lib train`` killed with SIGKILL between
checkpoints and in the middle of writing one, then resumed, ends bit-identical to a run that was
never interrupted; the checkpoint on disk always loads and at most one checkpoint interval is lost.
Ctrl-C prints one line with the command that resumes, and exits with status 130. A second run on the
folder of a running one is refused, and the running one keeps its files. A checkpoint write that
fails on a real full file system (a small tmpfs, or a file-size limit where mounting is not allowed)
keeps the previous checkpoint and says so in one line."""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from colddiff_lib.checkpoint import load_checkpoint
from colddiff_lib.cli import main

# Every test here kills, interrupts or starves a training process: seconds each (make
# test runs them).
pytestmark = pytest.mark.slow

STEPS, EVERY = 12, 3
TRAIN = [
    "-m",
    "colddiff_lib",
    "train",
    "--preset",
    "tiny",
    "--steps",
    str(STEPS),
    "--batch-size",
    "8",
    "--checkpoint-every",
    str(EVERY),
    "--val-images",
    "0",
    "--no-progress",
    "--device",
    "cpu",
    "--log-every",
    "1",
    "--deg",
    "T=5",
]

# Loaded into the child through PYTHONPATH: log every step, and make each checkpoint
# write pause between writing its temporary file and renaming it, announcing it, so the
# test can kill it there.
SITECUSTOMIZE = textwrap.dedent("""
    import os, sys, time
    _fsync = os.fsync
    def fsync(fd):
        _fsync(fd)
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.startswith(".last.pt."):
            print("WRITING-CHECKPOINT", name, file=sys.stderr, flush=True)
            time.sleep(float(os.environ.get("SLOW_CHECKPOINT", "0")))
    os.fsync = fsync
""")


def _env(tmp_path, slow=0.0):
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SLOW_CHECKPOINT": str(slow),
        "PYTHONPATH": os.pathsep.join([str(hook), str(Path(__file__).parents[1])]),
    }


def _tensors(path):
    c = load_checkpoint(path)
    return c["step"], {
        **{f"model.{k}": v for k, v in c["model"].items()},
        **{f"ema.{k}": v for k, v in c["ema"].items()},
    }


def _run_until(out: Path, env, marker: str, count: int):
    """Start (or resume) training and SIGKILL it when ``marker`` has appeared ``count`` times on stderr
    or on stdout. Returns the last step it logged."""
    proc = subprocess.Popen(
        [sys.executable, *TRAIN, "--out", str(out), "--resume"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen, last_step = 0, 0
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.startswith("step "):
            last_step = int(line.split()[1].split("/")[0])
        if marker in line:
            seen += 1
            if seen == count:
                proc.send_signal(signal.SIGKILL)
                break
        assert time.time() < deadline, "training did not reach the kill point"
    proc.wait(timeout=60)
    return proc.returncode, last_step


def test_sigkill_at_several_moments_then_resume_is_bit_identical(tmp_path):
    env = _env(tmp_path)
    reference = tmp_path / "reference"
    done = subprocess.run(
        [sys.executable, *TRAIN, "--out", str(reference)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ref_step, ref = _tensors(reference / "last.pt")
    assert ref_step == STEPS

    out = tmp_path / "interrupted"
    slow_env = _env(tmp_path, slow=2.0)
    # 1. Killed while writing its second checkpoint (temporary file written, not yet
    #    renamed).
    code, _ = _run_until(out, slow_env, "WRITING-CHECKPOINT", 2)
    assert code == -signal.SIGKILL
    # the file on disk still loads: the first checkpoint
    step, _ = _tensors(out / "last.pt")
    assert step == EVERY
    # 2. Killed between checkpoints: after the next checkpoint's write, before the one
    #    after it.
    code, _ = _run_until(out, _env(tmp_path), "WRITING-CHECKPOINT", 2)
    assert code == -signal.SIGKILL
    step, _ = _tensors(out / "last.pt")
    # killed at most one interval after its last checkpoint
    assert step in (2 * EVERY, 3 * EVERY)
    # 3. Resumed to the end.
    final = subprocess.run(
        [sys.executable, *TRAIN, "--out", str(out), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert final.returncode == 0, final.stdout + final.stderr
    assert not list(out.glob(".*.tmp")), (
        "a killed write's temporary file was left behind"
    )
    step, resumed = _tensors(out / "last.pt")
    assert step == STEPS
    assert resumed.keys() == ref.keys()
    different = [k for k in ref if not torch.equal(ref[k], resumed[k])]
    assert not different, f"not bit-identical after resuming: {different[:5]}"


def test_lost_work_is_at_most_one_interval(tmp_path):
    """Killed right after logging step k, the checkpoint on disk is at a step >= k - checkpoint_every."""
    env = _env(tmp_path)
    out = tmp_path / "run"
    code, logged = _run_until(out, env, "step 8/", 1)
    assert code == -signal.SIGKILL and logged == 8
    step, _ = _tensors(out / "last.pt")
    assert logged - EVERY <= step <= logged


def _default_sigint():
    """In the child, before Python starts: SIGINT back to its default. A test suite started
    in the background of a shell (``cmd &``, as CI scripts and nohup do) inherits SIGINT
    ignored, and a Python started with it ignored never raises KeyboardInterrupt: the run
    would finish and exit 0 whatever the test sent."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    # The child's stdout unbuffered, so that "step 4/" reaches this test when it is
    # printed and not at exit, and a one-second pause at each checkpoint: a fast machine
    # finished all ten steps first (exit 0).
    env = {**_env(tmp_path, slow=1.0), "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, *TRAIN, "--out", str(out), "--steps", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.startswith("step 4/"):  # after the checkpoint of step 3
            proc.send_signal(signal.SIGINT)
            break
        assert time.time() < deadline, "training did not reach step 4"
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("WRITING-CHECKPOINT")
    ]
    # (WRITING-CHECKPOINT: the test's own hook)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    match = re.fullmatch(
        r"interrupted at step (\d+); resume with (python -m colddiff_lib train .* --resume) "
        r"\(it continues from step (\d+) in .*last\.pt\)",
        lines[0],
    )
    assert match and int(match.group(1)) >= 4 and int(match.group(3)) in (3, 6), lines[
        0
    ]
    # the file on disk is whole
    assert load_checkpoint(out / "last.pt")["step"] == int(match.group(3))
    # The command it prints resumes the run to the end.
    resume = shlex.split(match.group(2))
    done = subprocess.run(
        [sys.executable, *resume[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_checkpoint(out / "last.pt")["step"] == 10


def test_a_busy_folder_is_refused_and_its_run_keeps_its_files(tmp_path, capsys):
    """A second run, or a --resume, on the folder of a running one: refused with the holder's pid and
    command while that run is halfway through writing a checkpoint, whose temporary file survives."""
    out = tmp_path / "busy"
    proc = subprocess.Popen(
        [sys.executable, *TRAIN, "--out", str(out), "--steps", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(tmp_path, slow=6.0),
    )
    try:
        for line in proc.stdout:
            # paused between writing .last.pt.*.tmp and renaming it
            if "WRITING-CHECKPOINT" in line:
                break
        temporary = list(out.glob(".last.pt.*.tmp"))
        assert len(temporary) == 1
        for extra in (["--degradation", "snow"], ["--resume"]):
            assert (
                main(
                    [
                        "train",
                        "--out",
                        str(out),
                        "--steps",
                        "3",
                        "--device",
                        "cpu",
                        "--no-progress",
                        *extra,
                    ]
                )
                == 2
            )
            err = capsys.readouterr().err.strip()
            assert re.fullmatch(
                rf"error: --out .*busy: another run is using it \(pid {proc.pid}: python -m "
                rf"colddiff_lib train .*\); wait for it to end or choose another folder \(nothing "
                rf"was written\)",
                err,
            ), err
        assert temporary[0].exists(), (
            "the refused run deleted the running one's temporary file"
        )
        rest, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "done: step 6" in rest
    assert load_checkpoint(out / "last.pt")["step"] == 6
    assert not list(out.glob(".*.tmp"))


def _resume_on_a_small_file_system(kind: str, base: Path, tmp_path: Path, env: dict):
    """Resume ``base``'s run to step 4 with room for its last.pt but not for a second copy of it: a tmpfs of
    1.5 checkpoints (mounted in a mount namespace of its own), or where mounting is not allowed, a file-size
    limit of half a checkpoint (SIGXFSZ ignored, so that the write fails with EFBIG instead of killing).
    Returns (the kind that ran, exit status, stderr, the folder afterwards)."""
    size = (base / "last.pt").stat().st_size
    after = tmp_path / "after"
    argv = [
        sys.executable,
        *TRAIN,
        "--resume",
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
    ]
    if kind == "tmpfs" and shutil.which("unshare"):
        mnt, marker, errors = (
            tmp_path / "mnt",
            tmp_path / "mounted",
            tmp_path / "stderr.txt",
        )
        mnt.mkdir()
        train_cmd = shlex.join([*argv, "--out", str(mnt)])
        script = (
            f"mount -t tmpfs -o size={int(size * 1.5) // 1024 + 16}k tmpfs {mnt} || exit 97; touch {marker}; "
            f"cp {base / 'last.pt'} {base / 'run.json'} {mnt}/; {train_cmd} > /dev/null 2> {errors}; rc=$?; "
            f"mkdir -p {after}; cp -a {mnt}/. {after}/; exit $rc"
        )
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if marker.exists():
            return "tmpfs", done.returncode, errors.read_text(), after
        print(
            f"no tmpfs here ({done.stderr.strip()[:200]}): a file-size limit instead",
            file=sys.stderr,
        )
    after.mkdir()
    for name in ("last.pt", "run.json"):
        shutil.copy(base / name, after / name)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    done = subprocess.run(
        [*argv, "--out", str(after)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit,
    )
    return "rlimit", done.returncode, done.stderr, after


@pytest.mark.parametrize("kind", ["tmpfs", "rlimit"])
def test_a_full_file_system_keeps_the_previous_checkpoint(tmp_path, kind):
    """torch's writer turns ENOSPC (and EFBIG) into a RuntimeError ("unexpected pos"); the message is still
    the one line naming the cause and the checkpoint kept."""
    env = _env(tmp_path)
    base = tmp_path / "base"
    first = subprocess.run(
        [
            sys.executable,
            *TRAIN,
            "--out",
            str(base),
            "--steps",
            "2",
            "--checkpoint-every",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    ran, code, stderr, after = _resume_on_a_small_file_system(kind, base, tmp_path, env)
    cause = {"tmpfs": "No space left on device", "rlimit": "File too large"}[ran]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, stderr
    assert re.fullmatch(
        rf"error: could not write checkpoint .*last\.pt at step 4 \({cause}\); the previous "
        rf"last\.pt \(step 2\) is kept",
        lines[0],
    ), lines[0]
    assert load_checkpoint(after / "last.pt")["step"] == 2
    assert not list(after.glob(".*.tmp"))
