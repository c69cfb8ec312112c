"""Bad input, one table: each case must end in one line ``error: ...`` that names the file, key or
argument and what was expected, with exit status 2 and no traceback (CLI), or a ValueError saying
the same (library functions). Files the library reads must never run code."""

from __future__ import annotations

import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib import zoo
from colddiff_lib.checkpoint import load_checkpoint
from colddiff_lib.cli import main
from colddiff_lib.sampling import sample
from colddiff_lib.training import TrainConfig, resolve_device
from colddiff_lib.zoo import build

pytestmark = pytest.mark.usefixtures("single_thread")


class Evil:
    """Pickles to a call of os.system that would create a file: a checkpoint that runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every bad (and one good) file the cases below hand to the CLI."""
    d = tmp_path_factory.mktemp("bad")
    run = d / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--no-progress",
                "--device",
                "cpu",
                "--val-images",
                "0",
            ]
        )
        == 0
    )
    good = run / "last.pt"
    raw = good.read_bytes()
    (d / "empty.pt").write_bytes(b"")
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (d / "garbage.pt").write_bytes(os.urandom(4096))
    (d / "other.pt").write_bytes(b"")
    # a torch file of another program
    torch.save({"state_dict": {"w": torch.zeros(2)}}, d / "other.pt")
    with open(d / "evil.pt", "wb") as f:
        pickle.dump({"model": Evil(d / "pwned")}, f)
    torch.save({"model": Evil(d / "pwned")}, d / "evil_zip.pt")
    (d / "weights.safetensors").write_bytes(
        (zoo.WEIGHTS / "mnist-superres.safetensors").read_bytes()
    )
    (d / "a_file").write_text("not a folder")

    def toml(name, text):
        (d / name).write_text(text)

    toml("syntax.toml", "[train]\nsteps = = 3\n")
    toml("table.toml", "[trian]\nsteps = 3\n")
    toml("key.toml", "[train]\nstpes = 3\n")
    toml("type.toml", '[train]\nsteps = "ten"\n')
    toml("float_type.toml", '[train]\nlr = "fast"\n')
    toml("range.toml", "[train]\nsteps = 0\n")
    toml("lr.toml", "[train]\nlr = -1.0\n")
    toml("data_key.toml", '[data]\ndatset = "mnist5k"\n')
    toml("size.toml", '[data]\nimage_size = "big"\n')
    toml("deg_name.toml", '[degradation]\nname = "blurr"\n')
    toml("deg_arg.toml", '[degradation]\nname = "blur"\nsigma = 3\n')
    toml("deg_value.toml", '[degradation]\nname = "blur"\nT = 0\n')
    toml("preset.toml", '[model]\npreset = "huge"\n')
    toml("model_key.toml", "[model]\ndimm = 8\n")
    toml("not_table.toml", "train = 3\n")
    toml("binary.toml", "")
    (d / "binary.toml").write_bytes(b"\xff\xfe\x00[train]")
    # Issue 20, item 8: checks deeper than the surface.
    toml("nested.toml", "[train]\nsteps = " + "[" * 5000 + "]" * 5000 + "\n")
    toml("name_list.toml", '[degradation]\nname = ["blur"]\n')
    toml("huge_batch.toml", "[train]\nbatch_size = 1000000000000\n")
    toml("huge_size.toml", "[data]\nimage_size = 1000000\n")
    toml("huge_dim.toml", "[model]\ndim = 200000\n")
    toml("budget_dim.toml", "[model]\ndim = 4096\n")
    toml("huge_shift.toml", "[train]\naugment_shift = 1000000000\n")
    toml("groups.toml", "[model]\ngroups = 0\n")
    toml(
        "exp_std.toml",
        '[degradation]\nname = "blur"\nschedule = "exponential"\nstd = 50.0\n',
    )
    toml("grad_clip.toml", "[train]\ngrad_clip = -1.0\n")
    toml("collapse_str.toml", '[degradation]\nname = "blur"\ncollapse_at_T = "false"\n')
    toml("sampling.toml", '[sampling]\nalgorithm = "fast"\n')
    user = d / "user-files"  # a user's files, no run: a new run must not overwrite them
    user.mkdir()
    (user / "history.json").write_text('{"mine": true}')
    (user / "samples.png").write_bytes(b"mine")
    # Checkpoints whose other fields lie: each a copy of the good one with one field
    # changed.
    ckpt = torch.load(good, weights_only=True)

    def variant(name, **changes):
        torch.save(
            {
                **{
                    k: v
                    for k, v in ckpt.items()
                    if k not in changes or changes[k] is not None
                },
                **{k: v for k, v in changes.items() if v is not None},
            },
            d / name,
        )

    variant("dim.pt", model_config={**ckpt["model_config"], "dim": 200000})
    variant("budget.pt", model_config={**ckpt["model_config"], "dim": 4096})
    variant("cifar.pt", data={"dataset": "cifar10", "image_size": 32})
    variant("folder.pt", data={"dataset": str(d), "image_size": 32})
    variant("snow.pt", degradation={"name": "snow", "T": 20, "channels": 1})
    variant("bad_step.pt", step=-3)
    variant("bad_deg.pt", degradation={"name": "blur", "T": 20, "std": float("nan")})
    return d


def out(files):
    return str(files / "out-new")


# (id, argv builder, pattern the error line must match)
CLI_CASES = [
    (
        "config-missing",
        lambda f: ["train", "--config", str(f / "nope.toml"), "--out", out(f)],
        r"--config .*nope\.toml: no such file",
    ),
    (
        "toml-syntax",
        lambda f: ["train", "--config", str(f / "syntax.toml"), "--out", out(f)],
        r"syntax\.toml: TOML syntax error: .*line 2, column",
    ),
    (
        "toml-not-text",
        lambda f: ["train", "--config", str(f / "binary.toml"), "--out", out(f)],
        r"binary\.toml: not a text",
    ),
    (
        "toml-unknown-table",
        lambda f: ["train", "--config", str(f / "table.toml"), "--out", out(f)],
        r"table\.toml: unknown table \[trian\] \(did you mean 'train'\?\)",
    ),
    (
        "toml-not-a-table",
        lambda f: ["train", "--config", str(f / "not_table.toml"), "--out", out(f)],
        r"not_table\.toml: train must be a table",
    ),
    (
        "toml-unknown-key",
        lambda f: ["train", "--config", str(f / "key.toml"), "--out", out(f)],
        r"key\.toml: train\.stpes: unknown key \(did you mean 'steps'\?\)",
    ),
    (
        "toml-wrong-type",
        lambda f: ["train", "--config", str(f / "type.toml"), "--out", out(f)],
        r"type\.toml: train\.steps: expected int, got 'ten'",
    ),
    (
        "toml-wrong-float",
        lambda f: ["train", "--config", str(f / "float_type.toml"), "--out", out(f)],
        r"train\.lr: expected float, got 'fast'",
    ),
    (
        "toml-out-of-range",
        lambda f: ["train", "--config", str(f / "range.toml"), "--out", out(f)],
        r"range\.toml: train\.steps must be a positive int, got 0",
    ),
    (
        "toml-negative-lr",
        lambda f: ["train", "--config", str(f / "lr.toml"), "--out", out(f)],
        r"train\.lr must be positive",
    ),
    (
        "toml-data-key",
        lambda f: ["train", "--config", str(f / "data_key.toml"), "--out", out(f)],
        r"data\.datset: unknown key \(did you mean 'dataset'\?\)",
    ),
    (
        "toml-image-size",
        lambda f: ["train", "--config", str(f / "size.toml"), "--out", out(f)],
        r"data\.image_size: expected an int >= 4 and <= 1024, got 'big'",
    ),
    (
        "degradation-name",
        lambda f: ["train", "--config", str(f / "deg_name.toml"), "--out", out(f)],
        r"degradation name must be one of .* got 'blurr' \(did you mean 'blur'\?\)",
    ),
    (
        "degradation-argument",
        lambda f: ["train", "--config", str(f / "deg_arg.toml"), "--out", out(f)],
        r"degradation 'blur': unknown arguments \['sigma'\]",
    ),
    (
        "degradation-value",
        lambda f: ["train", "--config", str(f / "deg_value.toml"), "--out", out(f)],
        r"T must be",
    ),
    (
        "preset-in-toml",
        lambda f: ["train", "--config", str(f / "preset.toml"), "--out", out(f)],
        r"model\.preset: expected one of .*got 'huge'",
    ),
    (
        "model-key",
        lambda f: ["train", "--config", str(f / "model_key.toml"), "--out", out(f)],
        r"model\.dimm: unknown key \(did you mean 'dim'\?\)",
    ),
    (
        "deg-override-format",
        lambda f: ["train", "--out", out(f), "--deg", "T20"],
        r"expected KEY=VALUE, got 'T20'",
    ),
    (
        "out-is-a-file",
        lambda f: ["train", "--out", str(f / "a_file")],
        r"--out .*a_file: exists and is not a folder",
    ),
    (
        "out-unwritable",
        lambda f: ["train", "--out", str(f / "a_file" / "sub")],
        r"--out .*sub: cannot write there",
    ),
    (
        "out-holds-a-run",
        lambda f: ["train", "--out", str(f / "run"), "--steps", "3"],
        r"--out .*run: already holds a run \(last\.pt, run\.json, .*\); add --resume to continue it, --overwrite",
    ),
    (
        "out-holds-user-files",
        lambda f: ["train", "--out", str(f / "user-files"), "--steps", "3"],
        r"--out .*user-files: already holds a run \(history\.json, samples\.png\); add --resume",
    ),
    (
        "out-resume-without-last",
        lambda f: ["train", "--out", str(f / "user-files"), "--steps", "3", "--resume"],
        r"--out .*user-files: holds history\.json, samples\.png but no last\.pt to resume from",
    ),
    (
        "out-resume-and-overwrite",
        lambda f: ["train", "--out", out(f), "--resume", "--overwrite"],
        r"--resume continues the run in --out and --overwrite replaces it: give one of them",
    ),
    # Issue 20, item 8: each of these was a traceback or a silent wrong run.
    (
        "toml-nested-brackets",
        lambda f: ["train", "--config", str(f / "nested.toml"), "--out", out(f)],
        r"nested\.toml: nested too deeply",
    ),
    (
        "toml-name-a-list",
        lambda f: ["train", "--config", str(f / "name_list.toml"), "--out", out(f)],
        r"degradation name must be a string, one of .* got \['blur'\]",
    ),
    (
        "toml-huge-batch",
        lambda f: ["train", "--config", str(f / "huge_batch.toml"), "--out", out(f)],
        r"train\.batch_size must be a positive int of at most 65,536, got 1000000000000",
    ),
    (
        "toml-huge-image-size",
        lambda f: ["train", "--config", str(f / "huge_size.toml"), "--out", out(f)],
        r"data\.image_size: expected an int >= 4 and <= 1024, got 1000000",
    ),
    (
        "toml-huge-dim",
        lambda f: ["train", "--config", str(f / "huge_dim.toml"), "--out", out(f)],
        r"model\.dim must be an int in 1\.\.4096, got 200000",
    ),
    (
        "toml-dim-over-budget",
        lambda f: ["train", "--config", str(f / "budget_dim.toml"), "--out", out(f)],
        r"model: [\d,]+ parameters \(.* GiB of float32 weights\), more than the budget of 200,000,000",
    ),
    (
        "toml-huge-augment-shift",
        lambda f: ["train", "--config", str(f / "huge_shift.toml"), "--out", out(f)],
        r"train\.augment_shift must be a non-negative int of at most 256",
    ),
    (
        "toml-groups-zero",
        lambda f: ["train", "--config", str(f / "groups.toml"), "--out", out(f)],
        r"model\.groups must be an int in 1\.\.1024, got 0",
    ),
    (
        "toml-exponential-overflow",
        lambda f: ["train", "--config", str(f / "exp_std.toml"), "--out", out(f)],
        r"std: the exponential schedule's last width .* overflows",
    ),
    (
        "toml-negative-grad-clip",
        lambda f: ["train", "--config", str(f / "grad_clip.toml"), "--out", out(f)],
        r"train\.grad_clip must be a finite number >= 0 \(0 disables clipping\), got -1\.0",
    ),
    (
        "toml-bool-as-string",
        lambda f: ["train", "--config", str(f / "collapse_str.toml"), "--out", out(f)],
        r"collapse_at_T must be true or false \(a bool\), got 'false'",
    ),
    (
        "toml-sampling-table",
        lambda f: ["train", "--config", str(f / "sampling.toml"), "--out", out(f)],
        r"sampling\.algorithm: expected one of \['improved'",
    ),
    (
        "image-size-zero",
        lambda f: ["train", "--out", out(f), "--image-size", "0"],
        r"--image-size: expected an int >= 4 and <= 1024, got 0",
    ),
    (
        "lr-inf",
        lambda f: ["train", "--out", out(f), "--lr", "inf"],
        r"train\.lr must be positive and finite, got inf",
    ),
    (
        "deg-override-nested",
        lambda f: [
            "train",
            "--out",
            out(f),
            "--deg",
            "threshold=" + "[" * 5000 + "]" * 5000,
        ],
        r"--deg/--model: nested too deeply",
    ),
    # Issue 20, items 6 and 9: a checkpoint's other fields, and the smaller cases.
    (
        "checkpoint-dim-range",
        lambda f: [
            "sample",
            "--checkpoint",
            str(f / "dim.pt"),
            "--out",
            str(f / "s.png"),
        ],
        r"checkpoint .*dim\.pt: model_config\.dim must be an int in 1\.\.4096, got 200000",
    ),
    (
        "checkpoint-over-budget",
        lambda f: ["evaluate", "--checkpoint", str(f / "budget.pt")],
        r"checkpoint .*budget\.pt: model_config: [\d,]+ parameters .* more than the budget .* before anything was "
        r"allocated",
    ),
    (
        "checkpoint-bad-step",
        lambda f: ["sample", "--checkpoint", str(f / "bad_step.pt")],
        r"checkpoint .*bad_step\.pt: step: expected an int >= 0, got -3",
    ),
    (
        "checkpoint-bad-degradation",
        lambda f: ["sample", "--checkpoint", str(f / "bad_deg.pt")],
        r"checkpoint .*bad_deg\.pt: degradation: std must be a positive number \(finite\), got nan",
    ),
    (
        "checkpoint-downloads-nothing",
        lambda f: [
            "sample",
            "--checkpoint",
            str(f / "cifar.pt"),
            "--n",
            "2",
            "--out",
            str(f / "s.png"),
        ],
        r"--dataset: reconstruction needs held-out images; .*cifar\.pt names the dataset 'cifar10', and sample opens "
        r"no dataset a checkpoint names",
    ),
    (
        "checkpoint-opens-no-folder",
        lambda f: ["evaluate", "--checkpoint", str(f / "folder.pt"), "--n", "2"],
        r"--dataset: evaluation needs held-out images; .*folder\.pt names the dataset '.*bad\d*', and evaluate opens",
    ),
    (
        "sample-n-beyond-the-test-set",
        lambda f: [
            "sample",
            "--checkpoint",
            str(f / "run" / "last.pt"),
            "--n",
            "1001",
            "--out",
            str(f / "s.png"),
        ],
        r"--n 1001: the held-out images of 'mnist5k' are only 1000",
    ),
    (
        "sample-n-huge",
        lambda f: [
            "sample",
            "--checkpoint",
            str(f / "run" / "last.pt"),
            "--n",
            "100000000",
            "--out",
            str(f / "s.png"),
        ],
        r"--n must be at most 10000",
    ),
    (
        "generate-snow",
        lambda f: [
            "sample",
            "--checkpoint",
            str(f / "snow.pt"),
            "--mode",
            "generate",
            "--n",
            "2",
            "--out",
            str(f / "s.png"),
        ],
        r"--mode generate: .*snow\.pt is a 'snow' model, and Snow has no generation prior",
    ),
    (
        "cuda-missing",
        lambda f: ["train", "--out", out(f), "--device", "cuda"],
        r"device 'cuda': this machine has no CUDA GPU",
    ),
    (
        "device-unknown",
        lambda f: ["train", "--out", out(f), "--device", "tpu"],
        r"device must be 'auto', 'cpu'",
    ),
    (
        "n-zero",
        lambda f: ["evaluate", "--checkpoint", str(f / "run" / "last.pt"), "--n", "0"],
        r"--n must be a positive int, got 0",
    ),
    (
        "checkpoint-missing",
        lambda f: ["sample", "--checkpoint", str(f / "nope.pt")],
        r"checkpoint .*nope\.pt: no such file",
    ),
    (
        "checkpoint-empty",
        lambda f: ["sample", "--checkpoint", str(f / "empty.pt")],
        r"empty\.pt: the file is empty",
    ),
    (
        "checkpoint-truncated",
        lambda f: ["evaluate", "--checkpoint", str(f / "truncated.pt")],
        r"truncated\.pt: not a readable training checkpoint",
    ),
    (
        "checkpoint-garbage",
        lambda f: ["sample", "--checkpoint", str(f / "garbage.pt")],
        r"garbage\.pt: not a readable training checkpoint",
    ),
    (
        "checkpoint-other-program",
        lambda f: ["sample", "--checkpoint", str(f / "other.pt")],
        r"other\.pt: not a colddiff_lib training checkpoint \(missing \['model'",
    ),
    (
        "checkpoint-is-zoo-weights",
        lambda f: ["sample", "--checkpoint", str(f / "weights.safetensors")],
        r"weights\.safetensors: this is a safetensors weights file \(a zoo model\)",
    ),
    (
        "checkpoint-malicious-pickle",
        lambda f: ["sample", "--checkpoint", str(f / "evil.pt")],
        r"evil\.pt: (refused|not a readable)",
    ),
    (
        "checkpoint-malicious-zip",
        lambda f: ["evaluate", "--checkpoint", str(f / "evil_zip.pt")],
        r"evil_zip\.pt: refused, it holds more than tensors and plain data",
    ),
    (
        "evaluate-nothing",
        lambda f: ["evaluate"],
        r"evaluate needs --checkpoint PATH or --zoo NAME",
    ),
    (
        "zoo-unknown-name",
        lambda f: ["evaluate", "--zoo", "mnist-blurr", "--out", out(f)],
        r"--zoo: names must be among .*got \['mnist-blurr'\] \(did you mean 'mnist-blur'\?\)",
    ),
    (
        "zoo-settings",
        lambda f: [
            "evaluate",
            "--zoo",
            "mnist-blur-gen",
            "--settings",
            "fast:1",
            "--out",
            out(f),
        ],
        r"--settings must look like ALGORITHM:NOISE_STD",
    ),
    (
        "sample-level-out-of-range",
        lambda f: [
            "sample",
            "--checkpoint",
            str(f / "run" / "last.pt"),
            "--t",
            "99",
            "--n",
            "2",
            "--out",
            str(f / "s.png"),
        ],
        r"--t must lie in 1\.\.T = 1\.\.20",
    ),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_says_one_line(case, files, capsys):
    _, argv, pattern = case
    code = main(argv(files))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert re.search(pattern, lines[0]), lines[0]
    assert not (files / "pwned").exists(), "a checkpoint ran code"
    assert not (files / "out-new" / "last.pt").exists()


ARGPARSE_CASES = [
    (
        "preset-flag",
        ["train", "--out", "x", "--preset", "huge"],
        r"argument --preset: invalid choice: 'huge'",
    ),
    (
        "degradation-flag",
        ["train", "--out", "x", "--degradation", "sparkle"],
        r"argument --degradation: invalid choice",
    ),
    (
        "steps-not-int",
        ["train", "--out", "x", "--steps", "ten"],
        r"argument --steps: invalid int value: 'ten'",
    ),
    ("no-command", [], r"required"),
]


@pytest.mark.parametrize("case", ARGPARSE_CASES, ids=[c[0] for c in ARGPARSE_CASES])
def test_cli_usage_errors_exit_2(case, capsys):
    _, argv, pattern = case
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        info.value.code == 2 and "error:" in err[-1] and re.search(pattern, err[-1])
    ), err


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--names", "mnist-blurr"], r"--names must be among .*mnist-blurr"),
        (["--parallel", "0"], r"--parallel must be a positive int"),
    ],
    ids=["zoo-build-name", "zoo-build-parallel"],
)
def test_zoo_build_bad_input(argv, pattern, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        build.main(
            [
                *argv,
                "--runs",
                str(tmp_path / "runs"),
                "--results",
                str(tmp_path / "results"),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and re.search(pattern, err[-1]), err


def test_zoo_build_unwritable_runs(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert (
        build.main(["--runs", str(tmp_path / "file" / "runs"), "--names", "mnist-blur"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "file/runs" in err[0], err


@pytest.mark.slow
def test_the_real_command_prints_no_traceback(files):
    """Through ``python -m colddiff_lib`` as a user types it; ``--debug`` shows the traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "colddiff_lib",
        "sample",
        "--checkpoint",
        str(files / "evil_zip.pt"),
    ]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("error: checkpoint")
    debug = subprocess.run(
        [*argv, "--debug"], capture_output=True, text=True, timeout=120, env=env
    )
    assert (
        debug.returncode == 1
        and "Traceback" in debug.stderr
        and "ValueError" in debug.stderr
    )
    assert not (files / "pwned").exists()


def _blur():
    return dg.build("blur", T=5, kernel_size=5, std=1.0, channels=1)


def _nan_images():
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 3, 3] = math.nan
    return x


def _inf_images():
    x = torch.zeros(2, 1, 8, 8)
    x[1, 0, 0, 0] = math.inf
    return x


def _corrupt_zoo(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    raw = bytearray((zoo.WEIGHTS / "mnist-superres.safetensors").read_bytes())
    raw[-10] ^= 0xFF  # one flipped byte inside the tensors
    (weights / "mnist-superres.safetensors").write_bytes(bytes(raw))
    monkeypatch.setattr(zoo, "WEIGHTS", weights)
    zoo.load_pretrained("mnist-superres")


def _unet_input(dtype):
    from colddiff_lib.models import UNet

    return UNet.from_preset("tiny")(torch.zeros(1, 1, 16, 16, dtype=dtype), 3)


LIBRARY_CASES = [
    (
        "degradation-nan",
        lambda tmp, mp: _blur()(_nan_images(), 2),
        r"x0 holds NaN or infinite values",
    ),
    (
        "degradation-inf",
        lambda tmp, mp: _blur()(_inf_images(), 2),
        r"x0 holds NaN or infinite values",
    ),
    (
        "sampler-nan",
        lambda tmp, mp: sample(lambda x, t: x, _blur(), _nan_images(), 3),
        r"x_t holds NaN",
    ),
    (
        "degradation-bad-level",
        lambda tmp, mp: _blur()(torch.zeros(2, 1, 8, 8), 9),
        r"t must lie in 0\.\.T = 0\.\.5",
    ),
    (
        "build-unknown-argument",
        lambda tmp, mp: dg.build("snow", T=5, flakes=3),
        r"unknown arguments \['flakes'\]",
    ),
    (
        "train-config-type",
        lambda tmp, mp: TrainConfig.from_dict({"batch_size": 6.5}),
        r"train\.batch_size: expected int, got 6\.5",
    ),
    (
        "train-config-key",
        lambda tmp, mp: TrainConfig.from_dict({"learning_rate": 1e-3}),
        r"train\.learning_rate: unknown key",
    ),
    (
        "resolve-device-cuda",
        lambda tmp, mp: resolve_device("cuda:3"),
        r"device 'cuda:3': this machine has no CUDA GPU",
    ),
    (
        "zoo-unknown-model",
        lambda tmp, mp: zoo.load_pretrained("mnist-snowy"),
        r"must be one of .*got 'mnist-snowy'",
    ),
    (
        "zoo-corrupted-weights",
        _corrupt_zoo,
        r"zoo model 'mnist-superres': .* does not match the SHA-256 on its card",
    ),
    (
        "checkpoint-as-zoo",
        lambda tmp, mp: load_checkpoint(zoo.WEIGHTS / "mnist-blur.safetensors"),
        r"safetensors weights file",
    ),
    # Issue 20, item 9: a ValueError naming the argument, not a RuntimeError, TypeError
    # or OverflowError.
    (
        "unet-float64",
        lambda tmp, mp: _unet_input(torch.float64),
        r"x has dtype torch\.float64 but the model's weights",
    ),
    (
        "unet-float16",
        lambda tmp, mp: _unet_input(torch.float16),
        r"x has dtype torch\.float16 but the model's weights",
    ),
    (
        "unet-t-2-to-64",
        lambda tmp, mp: __import__(
            "colddiff_lib.models", fromlist=["UNet"]
        ).UNet.from_preset("tiny")(torch.zeros(1, 1, 16, 16), 2**64),
        r"t must lie in 0\.\.2\*\*63 - 1, got 18446744073709551616",
    ),
    (
        "degradation-t-2-to-64",
        lambda tmp, mp: _blur()(torch.zeros(1, 1, 8, 8), 2**64),
        r"t must lie in 0\.\.T = 0\.\.5",
    ),
    (
        "noise-s-nan",
        lambda tmp, mp: dg.build("noise", T=10, s=math.nan),
        r"s must be a number in \[0, 1\]",
    ),
    (
        "blur-std-inf",
        lambda tmp, mp: dg.build("blur", T=5, std=math.inf),
        r"std must be a positive number \(finite\)",
    ),
    (
        "unet-groups-zero",
        lambda tmp, mp: __import__("colddiff_lib.models", fromlist=["UNet"]).UNet(
            groups=0
        ),
        r"groups must be an int in 1\.\.1024, got 0",
    ),
    (
        "unet-over-budget",
        lambda tmp, mp: __import__("colddiff_lib.models", fromlist=["UNet"]).UNet(
            dim=4096
        ),
        r"parameters .* more than the budget of 200,000,000",
    ),
    (
        "build-name-a-list",
        lambda tmp, mp: dg.build(["blur"]),
        r"degradation name must be a string",
    ),
    (
        "snow-threshold-nested",
        lambda tmp, mp: dg.build("snow", T=5, threshold=[[1.0], 0.5]),
        r"threshold must be a pair",
    ),
    (
        "train-config-grad-clip",
        lambda tmp, mp: TrainConfig(grad_clip=-1.0),
        r"grad_clip must be a finite number >= 0",
    ),
    (
        "train-config-bool",
        lambda tmp, mp: TrainConfig(hflip="false"),
        r"hflip must be true or false",
    ),
]


@pytest.mark.parametrize("case", LIBRARY_CASES, ids=[c[0] for c in LIBRARY_CASES])
def test_library_bad_input_raises_value_error(case, tmp_path, monkeypatch):
    _, call, pattern = case
    with pytest.raises(ValueError, match=pattern):
        call(tmp_path, monkeypatch)


def test_enough_cases():
    assert len(CLI_CASES) + len(ARGPARSE_CASES) + 3 + len(LIBRARY_CASES) >= 80


def test_malicious_checkpoint_has_no_side_effect(tmp_path):
    """Loading is refused before anything runs: the file the pickle asks os.system to create never appears."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "model": Evil(marker),
            "ema": {},
            "model_config": {},
            "degradation": {},
            "step": 0,
        },
        path,
    )
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()
