"""Interrupted training loses nothing: ``python -m colddiff_lib train`` killed with SIGKILL between
checkpoints and in the middle of writing one, then resumed, ends bit-identical to a run that was
never interrupted; the checkpoint on disk always loads and at most one checkpoint interval is lost.
A checkpoint write that fails (a full disk, simulated) keeps the previous checkpoint and says so."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from colddiff_lib import checkpoint as ckpt_module
from colddiff_lib import degradations as dg
from colddiff_lib.checkpoint import load_checkpoint
from colddiff_lib.models import UNet
from colddiff_lib.training import TrainConfig, train

STEPS, EVERY = 12, 3
TRAIN = ["-m", "colddiff_lib", "train", "--preset", "tiny", "--steps", str(STEPS), "--batch-size", "8",
         "--checkpoint-every", str(EVERY), "--val-images", "0", "--no-progress", "--device", "cpu",
         "--log-every", "1", "--deg", "T=5"]

# Loaded into the child through PYTHONPATH: log every step, and make each checkpoint write pause
# between writing its temporary file and renaming it, announcing it, so the test can kill it there.
SITECUSTOMIZE = textwrap.dedent('''
    import os, sys, time
    _fsync = os.fsync
    def fsync(fd):
        _fsync(fd)
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.startswith(".last.pt."):
            print("WRITING-CHECKPOINT", name, file=sys.stderr, flush=True)
            time.sleep(float(os.environ.get("SLOW_CHECKPOINT", "0")))
    os.fsync = fsync
''')


def _env(tmp_path, slow=0.0):
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**os.environ, "OMP_NUM_THREADS": "1", "SLOW_CHECKPOINT": str(slow),
            "PYTHONPATH": os.pathsep.join([str(hook), str(Path(__file__).parents[1])])}


def _tensors(path):
    c = load_checkpoint(path)
    return c["step"], {**{f"model.{k}": v for k, v in c["model"].items()}, **{f"ema.{k}": v for k, v in c["ema"].items()}}


def _run_until(out: Path, env, marker: str, count: int):
    """Start (or resume) training and SIGKILL it when ``marker`` has appeared ``count`` times on stderr
    or on stdout. Returns the last step it logged."""
    proc = subprocess.Popen([sys.executable, *TRAIN, "--out", str(out), "--resume"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
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
    done = subprocess.run([sys.executable, *TRAIN, "--out", str(reference)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    ref_step, ref = _tensors(reference / "last.pt")
    assert ref_step == STEPS

    out = tmp_path / "interrupted"
    slow_env = _env(tmp_path, slow=2.0)
    # 1. Killed while writing its second checkpoint (temporary file written, not yet renamed).
    code, _ = _run_until(out, slow_env, "WRITING-CHECKPOINT", 2)
    assert code == -signal.SIGKILL
    step, _ = _tensors(out / "last.pt")  # the file on disk still loads: the first checkpoint
    assert step == EVERY
    # 2. Killed between checkpoints: after the next checkpoint's write, before the one after it.
    code, _ = _run_until(out, _env(tmp_path), "WRITING-CHECKPOINT", 2)
    assert code == -signal.SIGKILL
    step, _ = _tensors(out / "last.pt")
    assert step in (2 * EVERY, 3 * EVERY)  # killed at most one interval after its last checkpoint
    # 3. Resumed to the end.
    final = subprocess.run([sys.executable, *TRAIN, "--out", str(out), "--resume"], env=env, capture_output=True,
                           text=True, timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    assert not list(out.glob(".*.tmp")), "a killed write's temporary file was left behind"
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


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, single_thread):
    D = dg.build("blur", T=5, kernel_size=5, std=1.0, channels=1)
    data = torch.rand(16, 1, 16, 16) * 2 - 1
    cfg = dict(steps=6, batch_size=4, checkpoint_every=2, checkpoint_dir=str(tmp_path), progress=False, device="cpu")
    real_save = torch.save
    calls = []

    def full_disk(obj, f, *args, **kwargs):
        calls.append(obj["step"])
        if obj["step"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write checkpoint .*last\.pt at step 4 \(No space left on device\); "
                                      r"the previous last\.pt \(step 2\) is kept"):
        train(UNet.from_preset("tiny", channels=1), D, data, TrainConfig(**cfg))
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert not list(tmp_path.glob(".*.tmp"))
