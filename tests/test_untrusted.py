"""Untrusted files, runs that could overwrite each other, and checks deeper than the surface (issue 20).

Every case of the issue is a test: here, in ``tests/test_bad_input.py`` (the one-line errors) or in
``tests/test_interrupt.py`` (signals, locks held by a running trainer, a full disk). ``SECURITY.md``'s
table lists them with their results."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from colddiff_lib import degradations as dg
from colddiff_lib import export as export_module
from colddiff_lib import files
from colddiff_lib import zoo
from colddiff_lib.checkpoint import load_checkpoint, run_lock
from colddiff_lib.cli import main
from colddiff_lib.data import load_dataset, open_image
from colddiff_lib.models import UNet
from colddiff_lib.training import TrainConfig, train
from colddiff_lib.zoo import build
from conftest import library_degradations

ROOT = Path(__file__).resolve().parents[1]
# A blur run small enough to train in a second: T = 5, 16 px digits, the tiny U-Net.
BASE = [
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--deg",
    "T=5",
    "--image-size",
    "16",
    "--val-images",
    "0",
    "--no-progress",
    "--device",
    "cpu",
]

pytestmark = pytest.mark.usefixtures("single_thread")


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


def _cli(*argv, env=None):
    return subprocess.run(
        [sys.executable, "-m", "colddiff_lib", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or _env(),
        cwd=ROOT,
    )


def _one_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-step run (tests copy it before changing anything)."""
    out = tmp_path_factory.mktemp("run") / "blur"
    assert main(["train", "--out", str(out), *BASE]) == 0
    return out


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    shutil.copytree(run, tmp_path / name)
    return tmp_path / name


def _files(folder: Path) -> dict:
    return {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file() and p.name != ".colddiff.lock"
    }


# ------------------------------------------------------------------ 1. images are read
# as images only
POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nnewpath 0 0 moveto 16 16 lineto stroke\nshowpage\n"
# A stand-in Ghostscript: it records every call, and answers --version so that Pillow
# goes on to render with it.
FAKE_GS = '#!/bin/sh\necho "$@" >> "{log}"\nif [ "$1" = "--version" ]; then echo 10.02.1; exit 0; fi\nexit 1\n'


@pytest.fixture
def fake_gs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "gs-calls.txt"
    (bin_dir / "gs").write_text(FAKE_GS.format(log=log))
    (bin_dir / "gs").chmod(0o755)
    return _env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"), log


@pytest.mark.slow
def test_a_postscript_preview_png_never_runs_ghostscript(run, tmp_path, fake_gs):
    env, log = fake_gs
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (16, 16), 255).save(folder / "digit.png")
    (folder / "preview.png").write_bytes(POSTSCRIPT)
    # Control: Pillow left to pick the decoder from the content does call the stand-in,
    # so its silence below means something.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom PIL import Image\ntry:\n    Image.open(sys.argv[1]).load()\n"
            "except Exception:\n    pass",
            str(folder / "preview.png"),
        ],
        env=env,
        timeout=120,
    )
    assert log.is_file() and "preview.png" in log.read_text(), (
        "the stand-in gs was not reachable"
    )
    log.unlink()

    done = _cli(
        "train",
        "--dataset",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        *BASE,
        env=env,
    )
    assert done.returncode == 2
    assert re.search(
        r"error: image .*preview\.png: not a PNG or JPEG image", _one_error(done.stderr)
    )
    # A checkpoint that names the folder: sample does not open it at all.
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["data"] = {"dataset": str(folder), "image_size": 16}
    # a generator: its prior would be fitted to the data it names
    ckpt["degradation"]["collapse_at_T"] = True
    torch.save(ckpt, tmp_path / "names-a-folder.pt")
    restore = _cli(
        "sample",
        "--checkpoint",
        str(tmp_path / "names-a-folder.pt"),
        "--n",
        "2",
        "--out",
        str(tmp_path / "r.png"),
        "--device",
        "cpu",
        env=env,
    )
    assert restore.returncode == 2
    assert "--dataset: reconstruction needs held-out images" in _one_error(
        restore.stderr
    )
    generate = _cli(
        "sample",
        "--checkpoint",
        str(tmp_path / "names-a-folder.pt"),
        "--mode",
        "generate",
        "--n",
        "2",
        "--out",
        str(tmp_path / "g.png"),
        "--device",
        "cpu",
        env=env,
    )
    assert generate.returncode == 0, generate.stderr
    assert (
        "prior: the degradation's own (D.prior)" in generate.stdout
        and (tmp_path / "g.png").is_file()
    )
    assert not log.exists(), f"Ghostscript was called: {log.read_text()}"


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels (the data is a few bytes: never decoded)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "width, height, pattern",
    [
        (
            20000,
            20000,
            r"image .*huge\.png: more than the 16,777,216 pixels an image may have \(not decoded\)",
        ),
        (
            5000,
            5000,
            r"image .*huge\.png: 5000 x 5000 pixels, more than the 16,777,216 pixels",
        ),
    ],
    ids=["400-megapixels", "25-megapixels"],
)
def test_a_huge_image_is_refused_from_its_header(
    tmp_path, capsys, width, height, pattern
):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "huge.png").write_bytes(_png_header(width, height))
    start = time.perf_counter()
    assert (
        main(["train", "--dataset", str(folder), "--out", str(tmp_path / "out"), *BASE])
        == 2
    )
    assert re.search(pattern, _one_error(capsys.readouterr().err))
    assert time.perf_counter() - start < 30  # refused from the header, nothing decoded
    with pytest.raises(ValueError, match=pattern):
        open_image(folder / "huge.png")


def test_a_truncated_image_names_its_file(tmp_path):
    Image.new("L", (64, 64), 128).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"image .*a\.png: not a readable image"):
        load_dataset(tmp_path, image_size=16)[0]


def test_sample_never_downloads_what_a_checkpoint_names(
    run, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("COLDDIFF_DATA", str(tmp_path / "data"))
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["data"] = {"dataset": "cifar10", "image_size": 16}
    # a generator: its prior would be fitted to the data it names
    ckpt["degradation"]["collapse_at_T"] = True
    torch.save(ckpt, tmp_path / "cifar.pt")
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(tmp_path / "cifar.pt"),
                "--mode",
                "generate",
                "--n",
                "2",
                "--out",
                str(tmp_path / "g.png"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "prior: the degradation's own (D.prior)" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()
    # Named by the user, a dataset is used (here the offline one; the prior is then the
    # fitted Gaussian).
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(tmp_path / "cifar.pt"),
                "--dataset",
                "mnist5k",
                "--mode",
                "generate",
                "--n",
                "2",
                "--out",
                str(tmp_path / "g2.png"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "prior:" not in capsys.readouterr().out


# ------------------------------------------------------------------ 2. one run, one
# folder
def test_overwrite_replaces_the_earlier_run_entirely(run, tmp_path, capsys):
    out = _copy(run, tmp_path)
    # another run's best.pt must not stay beside the new run
    shutil.copy(out / "last.pt", out / "best.pt")
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                *BASE,
                "--degradation",
                "superres",
                "--deg",
                "T=2",
                "--overwrite",
            ]
        )
        == 0
    )
    assert (
        "--overwrite: removed the earlier run's last.pt, best.pt, run.json"
        in capsys.readouterr().out
    )
    assert not (out / "best.pt").exists()
    assert (
        json.loads((out / "run.json").read_text())["degradation"]["name"] == "superres"
    )
    assert load_checkpoint(out / "last.pt")["degradation"]["name"] == "superres"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    # a zombie has died; only its exit status waits for a parent
    return state not in ("Z", "X")


def _lock_holder(folder: Path):
    try:
        return json.loads((folder / ".colddiff.lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="PR_SET_PDEATHSIG and /proc are Linux's",
)
def test_zoo_build_children_die_with_it_and_builds_take_the_lock(tmp_path, capsys):
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "colddiff_lib.zoo.build",
        "--runs",
        str(runs),
        "--results",
        str(tmp_path / "results"),
        "--names",
        "mnist-blur",
        "--skip-export",
        "--skip-evaluate",
        "--device",
        "cpu",
        "--train-args",
        "--steps 100000 --preset tiny --batch-size 4 --image-size 16",
    ]
    builder = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    trainer = None
    try:
        deadline = time.time() + 180
        # the trainer's own lock names the trainer
        while trainer is None or trainer == builder.pid:
            assert time.time() < deadline and builder.poll() is None, (
                "the build's trainer did not start"
            )
            time.sleep(0.2)
            trainer = _lock_holder(runs / "mnist-blur")
        assert _lock_holder(runs) == builder.pid
        # A second build on the same runs folder is refused, naming the first.
        assert (
            build.main(
                [
                    "--runs",
                    str(runs),
                    "--names",
                    "mnist-blur",
                    "--skip-train",
                    "--skip-export",
                    "--skip-evaluate",
                ]
            )
            == 2
        )
        line = _one_error(capsys.readouterr().err)
        assert re.search(
            rf"--runs .*runs: another run is using it \(pid {builder.pid}: python -m "
            rf"colddiff_lib\.zoo\.build --runs",
            line,
        ), line
        # So is a second trainer in the model's folder.
        assert (
            main(["train", "--out", str(runs / "mnist-blur"), *BASE, "--resume"]) == 2
        )
        assert (
            f"another run is using it (pid {trainer}: python -m colddiff_lib train"
            in capsys.readouterr().err
        )
        # kill -9 of the build: its trainer dies with it, and the folder is free for the
        # rerun.
        assert _alive(trainer) and builder.poll() is None
        os.kill(builder.pid, signal.SIGKILL)
        builder.wait(timeout=30)
        deadline = time.time() + 30
        while _alive(trainer):
            assert time.time() < deadline, f"the trainer {trainer} outlived the build"
            time.sleep(0.2)
        with run_lock(runs / "mnist-blur"), run_lock(runs):
            pass
    finally:
        for pid in (builder.pid, trainer):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ 3. resume only the
# same run
@pytest.mark.parametrize(
    "change, named",
    [
        (["--degradation", "snow"], "degradation.name ('blur' there, 'snow' here)"),
        (["--deg", "T=9"], "degradation.T (5 there, 9 here)"),
        (["--deg", "T=5", "std=1.0"], "degradation.std (7.0 there, 1.0 here)"),
        (["--seed", "7"], "train.seed (0 there, 7 here)"),
        (["--preset", "small"], "model.dim (16 there, 32 here)"),
        (["--batch-size", "8"], "train.batch_size (4 there, 8 here)"),
    ],
    ids=["degradation", "T", "std", "seed", "preset", "batch-size"],
)
def test_resume_refuses_another_run_before_writing_anything(
    run, tmp_path, capsys, change, named
):
    out = _copy(run, tmp_path)
    before = _files(out)
    assert main(["train", "--out", str(out), *BASE, "--resume", *change]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "holds another run" in line and named in line, line
    assert _files(out) == before  # run.json, last.pt, history.json: byte for byte


def test_resume_may_change_what_cannot_change_the_result(run, tmp_path):
    out = _copy(run, tmp_path)
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                *BASE,
                "--resume",
                "--steps",
                "3",
                "--log-every",
                "1",
                "--checkpoint-every",
                "1",
                "--device",
                "auto",
            ]
        )
        == 0
    )
    assert load_checkpoint(out / "last.pt")["step"] == 3


def test_a_run_killed_before_its_first_checkpoint_resumes_only_itself(
    run, tmp_path, capsys
):
    out = tmp_path / "early"
    out.mkdir()
    # what a run killed before step 1 leaves
    shutil.copy(run / "run.json", out / "run.json")
    assert main(["train", "--out", str(out), *BASE, "--resume", "--seed", "3"]) == 2
    assert "run.json describes another run: train.seed (0 there, 3 here)" in _one_error(
        capsys.readouterr().err
    )
    assert main(["train", "--out", str(out), *BASE, "--resume"]) == 0


def test_resume_with_another_thread_count_warns_once(run, tmp_path, capsys):
    out = _copy(run, tmp_path)
    assert load_checkpoint(out / "last.pt")["threads"] == 1
    torch.set_num_threads(2)
    try:
        # step 2 of 2: nothing to train
        assert main(["train", "--out", str(out), *BASE, "--resume"]) == 0
    finally:
        torch.set_num_threads(1)
    warnings = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("warning: ")
    ]
    assert (
        len(warnings) == 1
        and "written with 1 torch thread(s), this resume uses 2" in warnings[0]
    ), warnings


def test_a_checkpoint_of_an_older_version_resumes_with_a_warning(run, tmp_path, capsys):
    out = _copy(run, tmp_path)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    del ckpt["identity"], ckpt["threads"]
    torch.save(ckpt, out / "last.pt")
    assert main(["train", "--out", str(out), *BASE, "--resume", "--steps", "3"]) == 0
    assert (
        "records no run identity (written by an older colddiff_lib)"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("key", ["rng", "optimizer", "history"])
def test_resume_names_what_the_checkpoint_lacks(run, tmp_path, capsys, key):
    out = _copy(run, tmp_path)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    del ckpt[key]
    torch.save(ckpt, out / "last.pt")
    before = _files(out)
    assert main(["train", "--out", str(out), *BASE, "--resume", "--steps", "3"]) == 2
    assert re.search(
        rf"last\.pt: cannot resume from it: {key} is missing",
        _one_error(capsys.readouterr().err),
    )
    assert _files(out) == before


# ------------------------------------------------------------------ 4. never a bad
# checkpoint for a good one
def test_resume_with_an_infinite_lr_is_refused_and_keeps_the_checkpoint(
    run, tmp_path, capsys
):
    out = _copy(run, tmp_path)
    before = _files(out)
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                *BASE,
                "--resume",
                "--steps",
                "4",
                "--lr",
                "inf",
            ]
        )
        == 2
    )
    assert "train.lr must be positive and finite, got inf" in _one_error(
        capsys.readouterr().err
    )
    assert _files(out) == before


class InfiniteAt(nn.Module):
    """A U-Net with a spare weight that becomes infinite at the ``at``-th call: the loss stays finite (the
    weight is not used), as when a huge learning rate overflows a weight the loss has not met yet."""

    def __init__(self, inner: nn.Module, at: int):
        super().__init__()
        self.inner, self.at, self.calls, self.channels = inner, at, 0, inner.channels
        self.spare = nn.Parameter(torch.zeros(1))

    def config(self):
        return self.inner.config()

    def forward(self, x, t):
        self.calls += 1
        if self.calls == self.at:
            with torch.no_grad():
                self.spare.fill_(math.inf)
        return self.inner(x, t)


def test_non_finite_weights_never_replace_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = InfiniteAt(UNet.from_preset("tiny"), at=4)
    D = dg.build("blur", T=5, channels=1)
    data = torch.rand(16, 1, 16, 16) * 2 - 1
    config = TrainConfig(
        steps=6,
        batch_size=4,
        checkpoint_every=1,
        checkpoint_dir=str(tmp_path),
        progress=False,
        device="cpu",
    )
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite weights at step 4 \(model\.spare, ema\.spare\); the "
        r"last good checkpoint .*last\.pt \(step 3\) was left as it was",
    ):
        train(model, D, data, config)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 3 and all(
        torch.isfinite(v).all() for v in ckpt["model"].values()
    )
    assert not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------ 6. a checkpoint's
# other fields
def test_a_zip_bomb_checkpoint_is_refused_before_it_is_read(run, tmp_path, capsys):
    ckpt = torch.load(run / "last.pt", weights_only=True)
    # 100 MB of zeros: a few hundred KB once deflated
    ckpt["padding"] = torch.zeros(25_000_000)
    torch.save(ckpt, tmp_path / "big.pt")
    with (
        zipfile.ZipFile(tmp_path / "big.pt") as src,
        zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    (tmp_path / "big.pt").unlink()
    assert (tmp_path / "bomb.pt").stat().st_size < 8 * 2**20
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(tmp_path / "bomb.pt"),
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 2
    )
    assert re.search(
        r"bomb\.pt: refused, its archive unpacks to [\d,]+ MB from \d+\.\d MB on disk",
        _one_error(capsys.readouterr().err),
    )


# ------------------------------------------------------------------ 7. cards are
# covered by the digest too
@pytest.fixture
def cards(tmp_path, monkeypatch):
    """A copy of the shipped cards that the zoo reads instead (the weights stay the shipped ones)."""
    folder = tmp_path / "cards"
    shutil.copytree(zoo.CARDS, folder)
    monkeypatch.setattr(zoo, "CARDS", folder)
    return folder


def _edit(path: Path, change) -> None:
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def test_an_edited_card_is_refused_and_the_others_still_load(cards):
    def weaker_blur(info):
        info["degradation"].update(std=1.0, T=5)

    _edit(cards / "mnist-blur.json", weaker_blur)
    pattern = r"zoo card .*mnist-blur\.json: its content does not match its digest"
    with pytest.raises(ValueError, match=pattern):
        zoo.card("mnist-blur")
    with pytest.raises(ValueError, match=pattern):
        zoo.load_pretrained("mnist-blur")
    with pytest.warns(UserWarning, match=r"skipped: zoo card .*mnist-blur\.json"):
        names = zoo.available()
    assert "mnist-blur" not in names and "mnist-superres" in names
    R, D = zoo.load_pretrained("mnist-superres")
    assert D.T == 3
    # The measured metrics are outside the digest (the build's evaluation writes them
    # onto the card).
    _edit(cards / "mnist-superres.json", lambda info: info["metrics"].clear())
    zoo.load_pretrained("mnist-superres")


def test_a_malformed_card_names_its_file_and_breaks_no_other(cards):
    with open(cards / "mnist-blur.json", "a") as f:
        f.write('{"name": "again"}\n')
    with pytest.raises(
        ValueError,
        match=r"zoo card .*mnist-blur\.json: not valid JSON \(Extra data: line \d+ column 1",
    ):
        zoo.card("mnist-blur")
    with pytest.warns(UserWarning, match=r"mnist-blur\.json: not valid JSON"):
        assert "mnist-superres" in zoo.available()
    zoo.load_pretrained("mnist-superres")


def test_a_card_with_a_valid_digest_is_still_checked_against_the_schema(cards):
    def huge(info):
        info["model_config"]["dim"] = 200000
        info["digest"] = zoo.card_digest(info)  # a consistent, hostile card

    _edit(cards / "mnist-blur.json", huge)
    with pytest.raises(
        ValueError,
        match=r"zoo card .*mnist-blur\.json: model_config\.dim must be an int in 1\.\.4096",
    ):
        zoo.load_pretrained("mnist-blur")


EXPORT_KILLED = """
import os, signal, sys
from pathlib import Path
from colddiff_lib import files, zoo
zoo.CARDS, zoo.WEIGHTS = Path(sys.argv[1]), Path(sys.argv[2])
moment = sys.argv[4]
write_json, replace = files.write_json, os.replace

def killed_before_card(obj, path):
    if moment == "before-card":
        os.kill(os.getpid(), signal.SIGKILL)
    return write_json(obj, path)

def killed_before_rename(src, dst):
    if moment == "before-rename" and Path(dst) == zoo.WEIGHTS / "mnist-superres.safetensors":
        os.kill(os.getpid(), signal.SIGKILL)
    return replace(src, dst)

files.write_json, os.replace = killed_before_card, killed_before_rename
zoo.export(sys.argv[3], "mnist-superres", {"task": "reconstruction", "machine": "test"})
"""


@pytest.mark.slow
def test_an_export_killed_at_any_moment_leaves_a_loadable_model(
    run, tmp_path, monkeypatch
):
    cards, weights = tmp_path / "cards", tmp_path / "weights"
    cards.mkdir()
    weights.mkdir()
    shutil.copy(zoo.CARDS / "mnist-superres.json", cards)
    shutil.copy(zoo.WEIGHTS / "mnist-superres.safetensors", weights)
    monkeypatch.setattr(zoo, "CARDS", cards)
    monkeypatch.setattr(zoo, "WEIGHTS", weights)
    script = tmp_path / "export.py"
    script.write_text(EXPORT_KILLED)

    def export(moment):
        return subprocess.run(
            [
                sys.executable,
                str(script),
                str(cards),
                str(weights),
                str(run / "last.pt"),
                moment,
            ],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        ).returncode

    # the new weights written beside the old, no card yet
    assert export("before-card") == -signal.SIGKILL
    # the old pair stands
    assert zoo.load_pretrained("mnist-superres")[1].config()["name"] == "superres"
    # the new card written, the weights not renamed yet
    assert export("before-rename") == -signal.SIGKILL
    # the new pair: the card finds its weights by their digest
    R, D = zoo.load_pretrained("mnist-superres")
    assert D.config()["name"] == "blur" and D.T == 5
    assert export("done") == 0
    assert zoo.load_pretrained("mnist-superres")[1].T == 5
    # no leftovers
    assert sorted(p.name for p in weights.iterdir()) == ["mnist-superres.safetensors"]


def _can_exchange(tmp_path: Path) -> bool:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    return files._exchange(tmp_path / "x", tmp_path / "y")


def test_readers_never_see_the_graph_of_one_export_with_the_card_of_another(
    tmp_path, monkeypatch
):
    """``export_model`` writes step.onnx, degrade.onnx and model.json into a new folder that replaces the
    old one in one step; a reader re-reading model.json to see whether an export ended in between never
    accepts a step.onnx that does not match the SHA-256 in model.json."""

    # the exporter is slow; its bytes do not matter here
    def fake_onnx(module, args, names_in, names_out, path):
        Path(path).write_bytes(os.urandom(50_000))

    monkeypatch.setattr(export_module, "_onnx", fake_onnx)
    out = tmp_path / "live"
    folder = export_module.export_model("mnist-superres", out)
    stop, seen = threading.Event(), {"consistent": 0, "mismatched": 0, "missing": 0}

    def reader():
        while not stop.is_set():
            try:
                before = (folder / "model.json").read_bytes()
                graph = (folder / "step.onnx").read_bytes()
                after = (folder / "model.json").read_bytes()
            except FileNotFoundError:
                seen["missing"] += 1
                continue
            if before != after:  # an export ended between the reads: read again
                continue
            expected = json.loads(before)["sha256"]["step.onnx"]
            seen[
                "consistent"
                if hashlib.sha256(graph).hexdigest() == expected
                else "mismatched"
            ] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(15):
            export_module.export_model("mnist-superres", out)
    finally:
        stop.set()
        thread.join()
    assert seen["mismatched"] == 0 and seen["consistent"] > 10, seen
    if _can_exchange(tmp_path):
        # swapped atomically: the folder was always there
        assert seen["missing"] == 0, seen
    # no temporary folders left
    assert sorted(p.name for p in out.iterdir()) == ["mnist-superres"]


# ------------------------------------------------------------------ 9. the library's
# functions
def test_empty_batches_degrade_to_empty_batches():
    x = torch.zeros(0, 1, 8, 8)
    for name, cls in library_degradations().items():
        D = cls(T=3)
        Df = D.freeze(x) if D.random else D
        assert Df(x, 2).shape == (0, 1, 8, 8), name


def test_widths_far_below_a_pixel_give_the_identity_not_nan():
    x = torch.rand(2, 1, 9, 9) * 2 - 1
    blur = dg.build("blur", T=3, kernel_size=5, std=1e-300)
    assert torch.equal(blur(x, 3), x)
    hole = dg.build("inpaint", T=3, std=1e-300)
    y = hole(x, 3)
    # a one-pixel hole at the centre
    assert torch.isfinite(y).all() and y[:, :, 4, 4].abs().max() == 0
    assert torch.isfinite(hole.step(hole(x, 2), 3)).all()
