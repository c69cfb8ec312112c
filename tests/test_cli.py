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
    argv = [
        "train",
        "--out",
        str(out),
        "--steps",
        "30",
        "--batch-size",
        "16",
        "--eval-every",
        "15",
        "--val-images",
        "64",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    return out, argv


@pytest.mark.slow
def test_help_through_subprocess():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    top = subprocess.run(
        [sys.executable, "-m", "colddiff_lib", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert top.returncode == 0, top.stderr
    for command in ("train", "sample", "evaluate"):
        assert command in top.stdout
    sub = subprocess.run(
        [sys.executable, "-m", "colddiff_lib", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert sub.returncode == 0, sub.stderr
    for flag in ("--out", "--config", "--resume", "--eval-every", "--degradation"):
        assert flag in sub.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "colddiff_lib"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2 and "required" in bad.stderr


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--help"])
    assert info.value.code == 0
    assert "--mode" in capsys.readouterr().out


def test_train_writes_all_outputs(trained):
    out, argv = trained
    for name in (
        "last.pt",
        "best.pt",
        "run.json",
        "history.json",
        "loss.png",
        "samples.png",
    ):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    run = json.loads((out / "run.json").read_text())
    assert run["command"].startswith("python -m colddiff_lib train --out ")
    assert "--steps 30" in run["command"] and "--eval-every 15" in run["command"]
    assert (
        run["train"]["steps"] == 30
        and run["train"]["batch_size"] == 16
        and run["train"]["eval_every"] == 15
    )
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

    # samples.png: 4 rows (x0, degraded, direct, improved) of 8 images of 32 px with 2
    # px padding.
    assert _png_size(out / "samples.png") == (8 * 34 + 2, 4 * 34 + 2)
    assert _png_size(out / "loss.png")[0] > 100


@pytest.mark.slow
def test_evaluate_prints_table_and_writes_json(trained, tmp_path, capsys):
    out, _ = trained
    js = tmp_path / "out.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "last.pt"),
                "--n",
                "32",
                "--json",
                str(js),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| method | rmse | ssim | psnr |" in text
    for row in ("degraded", "direct", "naive", "improved"):
        assert f"| {row} |" in text
    result = json.loads(js.read_text())
    assert result["n"] == 32 and result["checkpoint"] == str(out / "last.pt")
    assert set(result["rows"]) == {"degraded", "direct", "naive", "improved"}
    for values in result["rows"].values():
        assert (
            0 <= values["rmse"] <= 1
            and -1 <= values["ssim"] <= 1
            and values["psnr"] > 0
        )
    # The printed table shows the numbers of the JSON file.
    assert f"{result['rows']['direct']['rmse']:.4f}" in text


def test_sample_reconstruct_writes_png(trained, tmp_path, capsys):
    from colddiff_lib.data import load_dataset
    from colddiff_lib.plotting import read_grid

    out, _ = trained
    png = tmp_path / "x.png"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "last.pt"),
                "--n",
                "4",
                "--out",
                str(png),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "sample: mode reconstruct, 4 held-out images of mnist5k, from x_t = D(x0, t) at t = 20 (of T = 20), "
        "by Algorithm 2 (improved), 20 steps" in printed
    ), printed
    assert (
        "wrote 4 images" in printed
        and "x0 / x_t (t = 20) / restored (Algorithm 2)" in printed
    )
    # The input rows above the result: x0, x_t, then the restored images, 4 columns of
    # 32 px images.
    assert _png_size(png) == (4 * 34 + 2, 3 * 34 + 2)
    rows, labels = read_grid(png)
    assert labels == ["x0", "x_t (t = 20)", "restored (Algorithm 2)"]
    x0 = load_dataset("mnist5k", split="test").images[:4]
    # the first row is x0 itself (8-bit PNG)
    assert float((rows[0] - x0).abs().max()) <= 2 / 255 + 1e-6
    # the second is degraded
    assert float((rows[1] - x0).abs().mean()) > 0.05
    # Deterministic under --seed; naive algorithm and a smaller starting level also
    # work, and say so.
    png2 = tmp_path / "y.png"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "best.pt"),
                "--n",
                "4",
                "--out",
                str(png2),
                "--t",
                "5",
                "--algorithm",
                "naive",
                "--raw-weights",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "at t = 5 (of T = 20), by Algorithm 1 (naive), 5 steps" in printed, printed
    assert read_grid(png2)[1] == ["x0", "x_t (t = 5)", "restored (Algorithm 1)"]
    png3 = tmp_path / "z.png"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "last.pt"),
                "--n",
                "4",
                "--out",
                str(png3),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert png3.read_bytes() == png.read_bytes()


def test_generation_run(tmp_path, capsys):
    out = tmp_path / "gen"
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--steps",
                "6",
                "--batch-size",
                "8",
                "--image-size",
                "16",
                "--degradation",
                "blur",
                "--deg",
                "collapse_at_T=true",
                "T=10",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    run = json.loads((out / "run.json").read_text())
    assert run["degradation"]["collapse_at_T"] is True and run["degradation"]["T"] == 10
    assert load_checkpoint(out / "last.pt")["degradation"]["collapse_at_T"] is True
    png = tmp_path / "gen.png"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "last.pt"),
                "--mode",
                "generate",
                "--n",
                "4",
                "--out",
                str(png),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        "sample: mode generate, 4 images from x_T at t = T = 10 (a Gaussian fitted to training images, start "
        "noise 0.002), by Algorithm 2 (improved), 10 steps" in captured.out
    ), captured.out
    # a collapsing blur fits generation
    assert "warning" not in captured.err, captured.err
    # the x_T row above the generated row, 16 px images
    assert _png_size(png) == (4 * 18 + 2, 2 * 18 + 2)
    from colddiff_lib.plotting import read_grid

    rows, labels = read_grid(png, tile=16)
    assert labels == ["x_T", "generated (Algorithm 2)"]
    start = rows[0]
    # flat (+ tiny noise)
    assert float((start - start.mean(dim=(-2, -1), keepdim=True)).abs().max()) < 0.03
    uni = tmp_path / "uni.png"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "last.pt"),
                "--mode",
                "generate",
                "--n",
                "2",
                "--uniform-prior",
                "--noise-std",
                "0",
                "--out",
                str(uni),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert uni.is_file()


def test_resume_continues_from_last(trained, tmp_path):
    src, argv = trained
    out = tmp_path / "resumed"
    shutil.copytree(src, out)
    before = load_checkpoint(out / "last.pt")
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--steps",
                "40",
                "--batch-size",
                "16",
                "--eval-every",
                "15",
                "--val-images",
                "64",
                "--no-progress",
                "--device",
                "cpu",
                "--resume",
            ]
        )
        == 0
    )
    after = load_checkpoint(out / "last.pt")
    assert after["step"] == 40
    # The history continues the earlier one instead of starting again.
    assert (
        after["history"]["step"][: len(before["history"]["step"])]
        == before["history"]["step"]
    )
    assert after["history"]["val_step"] == [15, 30, 40]
    assert json.loads((out / "history.json").read_text())["step"][-1] == 40
    assert json.loads((out / "run.json").read_text())["train"]["resume"] is True
    changed = any(
        not torch.equal(after["model"][k], before["model"][k]) for k in before["model"]
    )
    assert changed


def test_config_file_is_honoured_and_flags_override_it(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[data]\ndataset = "mnist5k"\nimage_size = 16\n\n'
        '[degradation]\nname = "superres"\nT = 2\n\n'
        '[model]\npreset = "tiny"\ndim = 8\n\n'
        "[train]\nsteps = 7\nbatch_size = 8\nlr = 0.001\nprogress = false\n"
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg),
                "--out",
                str(out),
                "--batch-size",
                "4",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["steps"] == 7 and run["train"]["lr"] == 0.001
    assert run["train"]["batch_size"] == 4  # the flag wins over the file
    assert run["degradation"]["name"] == "superres" and run["degradation"]["T"] == 2
    assert run["data"]["image_size"] == 16
    assert run["model"]["dim"] == 8
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 7 and ckpt["degradation"]["name"] == "superres"
    assert ckpt["model"]["conv_in.weight"].shape[0] == 8


# --- what the command line tells the user
# --------------------------------------------------------
def _subparsers():
    import argparse

    from colddiff_lib.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, actions[0].choices


def test_every_option_has_help_and_shows_its_default():
    """Every option of every command has a help text, and --help shows its default: argparse's
    "(default: ...)" for a value, or the help's own words where the default comes from elsewhere."""
    _, commands = _subparsers()
    assert {"train", "sample", "evaluate", "export"} <= set(commands)
    for name, p in commands.items():
        formatter = p._get_formatter()
        for action in p._actions:
            if action.dest == "help":
                continue
            flag = "/".join(action.option_strings) or action.dest
            assert action.help and len(action.help) > 10, (
                f"{name} {flag} has no help text"
            )
            if action.required:
                continue
            shown = formatter._get_help_string(action) % {
                **vars(action),
                "prog": p.prog,
            }
            assert "default" in shown, (
                f"{name} {flag}: --help shows no default ({shown!r})"
            )
    text = commands["train"].format_help()
    for words in (
        "training steps (default: the config's, else 1000)",
        "peak learning rate",
        "seed of the initial weights",
        "(default: 1000)",
    ):
        assert words in " ".join(text.split()), words
    # --n, which runs minutes
    assert "(default: 1000)" in " ".join(commands["evaluate"].format_help().split())


def test_sample_warns_when_the_request_does_not_fit_the_model(
    trained, tmp_path, capsys
):
    out, _ = trained  # a blur that does not collapse to a flat colour at T
    png = tmp_path / "g.png"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "last.pt"),
                "--mode",
                "generate",
                "--n",
                "2",
                "--t",
                "3",
                "--out",
                str(png),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert (
        "warning: --mode generate: GaussianBlur(T=20, " in err
        and "does not forget the image at T = 20 (its end "
        "state has no latent: has_latent is false)"
        in err
    ), err
    assert "warning: --t 3 is ignored with --mode generate" in err
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "last.pt"),
                "--n",
                "2",
                "--noise-std",
                "0.1",
                "--out",
                str(png),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (
        "warning: --noise-std only applies to --mode generate; ignored"
        in capsys.readouterr().err
    )
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out / "last.pt"),
                "--n",
                "2",
                "--t",
                "21",
                "--out",
                str(png),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --t must lie in 1..T = 1..20") and err.count("\n") == 1
    ), err


def test_evaluate_prints_a_line_per_method_and_the_same_numbers_as_one_call(
    trained, tmp_path, capsys
):
    from colddiff_lib.checkpoint import restore
    from colddiff_lib.data import load_dataset
    from colddiff_lib.evaluation import evaluate_reconstruction

    out, _ = trained
    js = tmp_path / "e.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "last.pt"),
                "--n",
                "16",
                "--json",
                str(js),
                "--device",
                "cpu",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert (
        lines[0].startswith(f"evaluate: {out / 'last.pt'}: ")
        and "on 16 held-out images" in lines[0]
    )
    for k, method in enumerate(("degraded", "direct", "naive", "improved"), 1):
        assert any(line.startswith(f"  [{k}/4] {method} ") for line in lines), printed
    R, D = restore(out / "last.pt")
    together = evaluate_reconstruction(
        R, D, load_dataset("mnist5k", split="test").images[:16], seed=3
    )
    rows = json.loads(js.read_text())["rows"]
    for method, values in together.items():
        for key, value in values.items():
            assert rows[method][key] == pytest.approx(value, abs=1e-6), (method, key)


@pytest.mark.slow
def test_evaluate_zoo_prints_a_line_per_model(tmp_path, capsys):
    out = tmp_path / "tables"
    assert (
        main(
            [
                "evaluate",
                "--zoo",
                "mnist-superres",
                "mnist-superres-gen",
                "--n",
                "10",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--settings",
                "improved:0",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "evaluate --zoo: 2 models, 10 held-out digits or samples per row" in printed
    assert (
        "  [1/2] mnist-superres (reconstruction) ..." in printed
        and "  [1/2] mnist-superres: done in" in printed
    )
    assert (
        "  [2/2] mnist-superres-gen (generation) ..." in printed
        and "  [2/2] mnist-superres-gen: done in" in printed
    )
    assert "replaced" not in printed  # a fresh folder: nothing replaced
    assert (out / "reconstruction.csv").is_file() and (out / "generation.csv").is_file()


def _readme_sentence(start: str) -> list:
    import re
    from pathlib import Path

    text = " ".join(
        (Path(__file__).resolve().parents[1] / "README.md").read_text().split()
    )
    assert start in text, f"README.md has no sentence starting {start!r}"
    sentence = text[text.index(start) :].split(". ", 1)[0]
    return [w for w in re.findall(r"`([^`]+)`", sentence) if not w.startswith("-")]


def test_the_readme_lists_the_presets_and_degradations_of_the_code():
    from colddiff_lib import degradations as dg
    from colddiff_lib.models import PRESETS

    assert sorted(_readme_sentence("Model sizes come as presets")) == sorted(PRESETS)
    library = [
        name
        for name, cls in dg.REGISTRY.items()
        if cls.__module__.startswith("colddiff_lib.degradations")
    ]
    assert sorted(_readme_sentence("The degradations (`--degradation`)")) == sorted(
        library
    )
