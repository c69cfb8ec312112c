"""End-to-end tests of the command line (``python -m colddiff_lib``) on mnist5k with the tiny U-Net."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from colddiff_lib.checkpoint import load_checkpoint
from colddiff_lib.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("single_thread")


def _png_size(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CLI training run shared by the tests that read its outputs (they must not modify it)."""
    out = tmp_path_factory.mktemp("run")
    argv = ["train", "--out", str(out), "--steps", "30", "--batch-size", "16", "--eval-every", "15",
            "--val-images", "64", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    return out, argv


def test_help_through_subprocess():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    top = subprocess.run([sys.executable, "-m", "colddiff_lib", "--help"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert top.returncode == 0, top.stderr
    for command in ("train", "sample", "evaluate"):
        assert command in top.stdout
    sub = subprocess.run([sys.executable, "-m", "colddiff_lib", "train", "--help"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert sub.returncode == 0, sub.stderr
    for flag in ("--out", "--config", "--resume", "--eval-every", "--degradation"):
        assert flag in sub.stdout
    bad = subprocess.run([sys.executable, "-m", "colddiff_lib"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "required" in bad.stderr


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--help"])
    assert info.value.code == 0
    assert "--mode" in capsys.readouterr().out


def test_train_writes_all_outputs(trained):
    out, argv = trained
    for name in ("last.pt", "best.pt", "run.json", "history.json", "loss.png", "samples.png"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    run = json.loads((out / "run.json").read_text())
    assert run["command"].startswith("python -m colddiff_lib train --out ")
    assert "--steps 30" in run["command"] and "--eval-every 15" in run["command"]
    assert run["train"]["steps"] == 30 and run["train"]["batch_size"] == 16 and run["train"]["eval_every"] == 15
    assert run["data"] == {"dataset": "mnist5k", "image_size": 32}
    assert run["model"]["preset"] == "tiny" and run["parameters"] < 1_000_000
    assert run["degradation"]["name"] == "blur" and run["degradation"]["channels"] == 1

    history = json.loads((out / "history.json").read_text())
    assert history["step"][-1] == 30
    assert history["val_step"] == [15, 30]
    assert all(v > 0 for v in history["val_loss"])
    assert history["seconds_this_session"] > 0

    last = load_checkpoint(out / "last.pt")
    best = load_checkpoint(out / "best.pt")
    assert last["step"] == 30
    assert best["step"] in (15, 30)
    assert best["best_val"] == pytest.approx(min(history["val_loss"]))
    assert last["data"] == {"dataset": "mnist5k", "image_size": 32}
    assert last["model_config"]["dim"] == 16

    # samples.png: 4 rows (x0, degraded, direct, improved) of 8 images of 32 px with 2 px padding.
    assert _png_size(out / "samples.png") == (8 * 34 + 2, 4 * 34 + 2)
    assert _png_size(out / "loss.png")[0] > 100


def test_evaluate_prints_table_and_writes_json(trained, tmp_path, capsys):
    out, _ = trained
    js = tmp_path / "out.json"
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--n", "32", "--json", str(js),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| method | rmse | ssim | psnr |" in text
    for row in ("degraded", "direct", "naive", "improved"):
        assert f"| {row} |" in text
    result = json.loads(js.read_text())
    assert result["n"] == 32 and result["checkpoint"] == str(out / "last.pt")
    assert set(result["rows"]) == {"degraded", "direct", "naive", "improved"}
    for values in result["rows"].values():
        assert 0 <= values["rmse"] <= 1 and -1 <= values["ssim"] <= 1 and values["psnr"] > 0
    # The printed table shows the numbers of the JSON file.
    assert f"{result['rows']['direct']['rmse']:.4f}" in text


def test_sample_reconstruct_writes_png(trained, tmp_path, capsys):
    out, _ = trained
    png = tmp_path / "x.png"
    assert main(["sample", "--checkpoint", str(out / "last.pt"), "--n", "4", "--out", str(png),
                 "--device", "cpu"]) == 0
    assert "wrote 4 images" in capsys.readouterr().out
    assert _png_size(png) == (2 * 34 + 2, 2 * 34 + 2)  # a 2 x 2 grid of 32 px images
    # Deterministic under --seed; naive algorithm and a smaller starting level also work.
    png2 = tmp_path / "y.png"
    assert main(["sample", "--checkpoint", str(out / "best.pt"), "--n", "4", "--out", str(png2), "--t", "5",
                 "--algorithm", "naive", "--raw-weights", "--device", "cpu"]) == 0
    assert png2.is_file()
    png3 = tmp_path / "z.png"
    assert main(["sample", "--checkpoint", str(out / "last.pt"), "--n", "4", "--out", str(png3),
                 "--device", "cpu"]) == 0
    assert png3.read_bytes() == png.read_bytes()


def test_generation_run(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["train", "--out", str(out), "--steps", "6", "--batch-size", "8", "--image-size", "16",
                 "--degradation", "blur", "--deg", "collapse_at_T=true", "T=10", "--no-progress",
                 "--device", "cpu"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["degradation"]["collapse_at_T"] is True and run["degradation"]["T"] == 10
    assert load_checkpoint(out / "last.pt")["degradation"]["collapse_at_T"] is True
    png = tmp_path / "gen.png"
    assert main(["sample", "--checkpoint", str(out / "last.pt"), "--mode", "generate", "--n", "4",
                 "--out", str(png), "--device", "cpu"]) == 0
    assert _png_size(png) == (2 * 18 + 2, 2 * 18 + 2)
    uni = tmp_path / "uni.png"
    assert main(["sample", "--checkpoint", str(out / "last.pt"), "--mode", "generate", "--n", "2",
                 "--uniform-prior", "--noise-std", "0", "--out", str(uni), "--device", "cpu"]) == 0
    assert uni.is_file()


def test_resume_continues_from_last(trained, tmp_path):
    src, argv = trained
    out = tmp_path / "resumed"
    shutil.copytree(src, out)
    before = load_checkpoint(out / "last.pt")
    assert main(["train", "--out", str(out), "--steps", "40", "--batch-size", "16", "--eval-every", "15",
                 "--val-images", "64", "--no-progress", "--device", "cpu", "--resume"]) == 0
    after = load_checkpoint(out / "last.pt")
    assert after["step"] == 40
    # The history continues the earlier one instead of starting again.
    assert after["history"]["step"][: len(before["history"]["step"])] == before["history"]["step"]
    assert after["history"]["val_step"] == [15, 30, 40]
    assert json.loads((out / "history.json").read_text())["step"][-1] == 40
    assert json.loads((out / "run.json").read_text())["train"]["resume"] is True
    changed = any(not torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
    assert changed


def test_config_file_is_honoured_and_flags_override_it(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[data]\ndataset = "mnist5k"\nimage_size = 16\n\n'
        '[degradation]\nname = "superres"\nT = 2\n\n'
        '[model]\npreset = "tiny"\ndim = 8\n\n'
        '[train]\nsteps = 7\nbatch_size = 8\nlr = 0.001\nprogress = false\n'
    )
    out = tmp_path / "out"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--batch-size", "4", "--device", "cpu"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["steps"] == 7 and run["train"]["lr"] == 0.001
    assert run["train"]["batch_size"] == 4  # the flag wins over the file
    assert run["degradation"]["name"] == "superres" and run["degradation"]["T"] == 2
    assert run["data"]["image_size"] == 16
    assert run["model"]["dim"] == 8
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 7 and ckpt["degradation"]["name"] == "superres"
    assert ckpt["model"]["conv_in.weight"].shape[0] == 8


