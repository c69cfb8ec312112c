"""The shipped models: loadable offline in one line, made from the configs in the repo, measured honestly."""

import csv
import json
import os
import math
from pathlib import Path

import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib import zoo
from colddiff_lib.classifier import accuracy
from colddiff_lib.data import load_dataset
from colddiff_lib.models import UNet
from colddiff_lib.zoo import build
from colddiff_lib.reproduce import generation_rows, generation_settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]
# The zoo's models and their tasks, read where they are declared: the [zoo] table of
# each config.
CONFIGS = sorted(path.stem for path in zoo.CONFIGS_DIR.glob("*.toml"))
RECONSTRUCTION = [name for name in CONFIGS if build.task_of(name) == "reconstruction"]
GENERATION = [name for name in CONFIGS if build.task_of(name) == "generation"]


@pytest.fixture(scope="module")
def test_digits():
    return load_dataset("mnist5k", split="test")


def test_every_model_is_shipped_within_the_size_budget():
    cards = zoo.available()
    assert set(RECONSTRUCTION + GENERATION + [zoo.CLASSIFIER]) <= set(cards)
    sizes = {
        name: (zoo.WEIGHTS / f"{name}.safetensors").stat().st_size for name in cards
    }
    assert max(sizes.values()) <= 5 * 2**20, sizes
    assert sum(sizes.values()) <= 40 * 2**20


@pytest.mark.parametrize("name", RECONSTRUCTION + GENERATION)
def test_card_records_how_the_model_was_made(name):
    card = zoo.card(name)
    assert card["task"] == build.task_of(name)
    config_file = ROOT / card["config"]
    assert config_file.is_file() and config_file.name == f"{name}.toml"
    assert (
        card["command"].startswith("python -m colddiff_lib train --config ")
        and card["config"] in card["command"]
    )
    for key in ("machine", "step", "train_seconds", "parameters"):
        assert card[key], key
    history = card["history"]
    assert (
        len(history["loss"]) == len(history["step"]) > 0
        and len(history["val_loss"]) > 0
    )
    assert min(history["val_loss"]) < history["val_loss"][0], (
        "held-out loss fell during training"
    )
    assert card["metrics"], "measured metrics are stored on the card"
    # The shipped degradation is the one in the config file.
    wanted = {
        k: v for k, v in zoo.config_of(name).degradation.items() if k != "targets"
    }
    assert {k: card["degradation"][k] for k in wanted} == wanted


@pytest.mark.parametrize("name", RECONSTRUCTION + GENERATION)
def test_load_pretrained_gives_a_ready_pair(name, test_digits):
    R, D = zoo.load_pretrained(name)
    assert isinstance(R, UNet) and not R.training and isinstance(D, dg.Degradation)
    x0 = test_digits.images[:4]
    Df = D.freeze(x0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = R(Df(x0, D.T // 2 + 1), D.T // 2 + 1)
    assert out.shape == x0.shape and torch.isfinite(out).all()


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.load_pretrained("mnist-sharpen")
    with pytest.raises(ValueError, match="load_classifier"):
        zoo.load_pretrained(zoo.CLASSIFIER)


def test_classifier_reaches_98_percent_on_held_out_digits(test_digits):
    model = zoo.load_classifier()
    acc = accuracy(model, test_digits.images, test_digits.labels)
    assert acc >= 0.98
    # fp16 weights
    assert zoo.card(zoo.CLASSIFIER)["test_accuracy"] == pytest.approx(acc, abs=0.003)


def committed(table):
    with open(ROOT / "results" / f"{table}.csv") as f:
        return list(csv.DictReader(f))


def test_committed_generation_table_regenerates_in_small_form():
    name = "mnist-superres-gen"
    table = [r for r in committed("generation") if r["model"] == name]
    rows = generation_rows(name, n=20)
    # the card's settings first; after them only rows of an earlier default, no longer defaults
    assert [(r["method"], r["noise_std"], r["start"]) for r in rows] == [
        (r["method"], float(r["noise_std"]), r["start"]) for r in table[: len(rows)]
    ]
    assert [r["default"] for r in table[1:]] == ["no"] * (len(table) - 1)
    for row in rows:
        assert sum(int(c) for c in row["class_histogram"].split()) == 20
        assert math.isfinite(row["fid"])
    # A setting asked for alone gives the same row as in the full table: each setting
    # starts from the seed.
    alone = generation_rows(name, n=20, settings=[generation_settings(name)[1]])
    assert len(alone) == 1 and alone[0]["class_histogram"] == rows[1]["class_histogram"]
    assert alone[0]["fid"] == pytest.approx(rows[1]["fid"])


def test_generation_settings_parse_and_default():
    assert parse_settings(
        ["improved:0.02", "naive:0", "improved:0:4", "ancestral:0.3:T"]
    ) == [
        {"algorithm": "improved", "noise_std": 0.02},
        {"algorithm": "naive", "noise_std": 0.0},
        {"algorithm": "improved", "noise_std": 0.0, "level": 4},
        {"algorithm": "ancestral", "noise_std": 0.3, "level": None},
    ]
    for bad in (
        "improved",
        "hot:0.1",
        "naive:-1",
        "naive:x",
        "naive:nan",
        "naive:0:-2",
        "naive:0:four",
    ):
        with pytest.raises(ValueError, match="ALGORITHM:NOISE_STD"):
            parse_settings([bad])
    for name in GENERATION:
        settings = generation_settings(name)
        default = zoo.sampling(name)
        assert {k: settings[0][k] for k in settings[0]} == {
            k: default[k] for k in settings[0]
        }, name
        assert len({tuple(s.values()) for s in settings}) == len(settings), name
        _, D = zoo.load_pretrained(name)
        # The paper's start stays in the table: Algorithm 2 from the end state with the
        # degradation's own noise (from one Gaussian fitted at T where the card starts
        # elsewhere).
        assert any(
            s["algorithm"] == "improved"
            and s["noise_std"] == D.symmetry_noise
            and s["level"] is None
            and s.get("components", default["components"])
            == (1 if default["level"] is not None else default["components"])
            for s in settings
        ), name


def test_committed_tables_cover_every_model_with_commands():
    recon, gen = committed("reconstruction"), committed("generation")
    assert {r["model"] for r in recon} == set(RECONSTRUCTION)
    assert {r["model"] for r in gen} == set(GENERATION)
    for row in recon + gen:
        assert row["command"].startswith("python -m colddiff_lib evaluate --zoo ")
        # the command made this row
        assert row["n"] == row["command"].split("--n ")[1].split()[0], row["command"]
        # The paper's tables are on the 1,000 held-out digits; the exceptions, CPU runs
        # on fewer, are snow's and the extra settings of a generation model
        # (results/README.md).
        if row["model"] != "mnist-snow" and "--settings" not in row["command"]:
            assert row["n"] == "1000", row["model"]
        assert row["evaluated_on"]
    blur = {r["method"]: r for r in recon if r["model"] == "mnist-blur"}
    # the paper's figure stands beside ours
    assert float(blur["Degraded"]["paper_rmse"]) == 0.287


def test_training_summary_reads_the_cards():
    rows = zoo.training_summary(["mnist-blur", "mnist-superres"])
    assert [len(r) for r in rows] == [len(zoo.TRAINING_COLUMNS)] * 2
    blur = dict(zip(zoo.TRAINING_COLUMNS, rows[0]))
    c = zoo.card("mnist-blur")
    assert (
        blur["model"] == "mnist-blur"
        and blur["weights of step"] == c["step"]
        and blur["T"] == c["degradation"]["T"]
    )
    # the curve goes on past the best weights
    assert blur["steps trained"] == c["history"]["step"][-1] >= c["step"]
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.training_summary(["mnist-nothing"])


def test_cards_take_the_loss_curve_that_reaches_furthest(tmp_path):
    from colddiff_lib.checkpoint import save_atomic
    from colddiff_lib.zoo.build import longest_history

    def curve(last_step):
        steps = list(range(50, last_step + 1, 50))
        history = {
            "step": steps,
            "loss": [1.0] * len(steps),
            "val_step": [],
            "val_loss": [],
            "elapsed": [],
        }
        return {
            "history": history,
            "model": {},
            "ema": {},
            "model_config": {},
            "degradation": {},
            "step": last_step,
        }

    # A run killed by a time limit: best.pt (step 2500) is ahead of last.pt (written at
    # step 2000).
    save_atomic(curve(2500), tmp_path / "best.pt")
    save_atomic(curve(2000), tmp_path / "last.pt")
    assert (
        longest_history([tmp_path / "best.pt", tmp_path / "last.pt"])["step"][-1]
        == 2500
    )
    # A run that finished: last.pt is ahead of the best held-out step.
    save_atomic(curve(6000), tmp_path / "last.pt")
    assert (
        longest_history([tmp_path / "best.pt", tmp_path / "last.pt"])["step"][-1]
        == 6000
    )
    assert (
        longest_history([tmp_path / "best.pt", tmp_path / "missing.pt"])["step"][-1]
        == 2500
    )
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        longest_history([tmp_path / "missing.pt"])


def test_merged_tables_take_every_parts_folder_of_a_model(tmp_path):
    from colddiff_lib.reproduce import to_csv
    from colddiff_lib.zoo.build import merge_tables

    def row(model, method, noise, command):
        return {
            "model": model,
            "method": method,
            "noise_std": noise,
            "n": 10,
            "fid": 1.0,
            "class_histogram": "1 1 1 1 1 1 1 1 1 1",
            "evaluated_on": "here",
            "command": command,
        }

    results, cards = tmp_path / "results", tmp_path / "cards"
    for folder, rows in {
        "gen-a": [row("gen-a", "Algorithm 2", 0.0, "cmd a")],
        "gen-a-noise": [row("gen-a", "Algorithm 2", 0.02, "cmd a noise")],
        "gen-b": [row("gen-b", "Algorithm 1", 0.0, "cmd b new")],
    }.items():
        (results / "parts" / folder).mkdir(parents=True)
        (results / "parts" / folder / "generation.csv").write_text(to_csv(rows))
    (results / "generation.csv").write_text(
        to_csv(
            [
                row("gen-b", "Algorithm 1", 0.0, "cmd b old"),
                row("gen-c", "Algorithm 1", 0.0, "cmd c"),
            ]
        )
    )
    cards.mkdir()
    for name in ("gen-a", "gen-b", "gen-c"):
        (cards / f"{name}.json").write_text("{}")
    merge_tables(results, ["gen-a"], cards=cards)
    with open(results / "generation.csv") as f:
        merged = [(r["model"], r["command"]) for r in csv.DictReader(f)]
    # gen-a from both of its folders, gen-b and gen-c kept as they were (gen-b was not
    # asked for).
    assert merged == [
        ("gen-a", "cmd a"),
        ("gen-a", "cmd a noise"),
        ("gen-b", "cmd b old"),
        ("gen-c", "cmd c"),
    ]
    assert "cmd a noise" in (results / "generation.md").read_text()
    metrics = json.loads((cards / "gen-a.json").read_text())["metrics"]
    assert set(metrics) == {"Algorithm 2 (noise 0.0000)", "Algorithm 2 (noise 0.0200)"}
    assert json.loads((cards / "gen-c.json").read_text()) == {}


def test_merged_reference_rows_come_from_a_model_of_the_build(tmp_path):
    """The real digits' rows are copied from a parts folder of a model being built, never from
    another model's folder that merely looks newer (a fresh checkout's file times are arbitrary)."""
    from colddiff_lib.reproduce import to_csv
    from colddiff_lib.zoo.build import merge_tables

    results = tmp_path / "results"

    def part(folder, model, machine):
        (results / "parts" / folder).mkdir(parents=True)
        (results / "parts" / folder / "generation.csv").write_text(
            to_csv([{"model": model, "method": "Algorithm 1", "n": 10}])
        )
        (results / "parts" / folder / "generation_reference.csv").write_text(
            to_csv([{"images": "held-out digits", "evaluated_on": machine}])
        )

    part("gen-a", "gen-a", "machine a")
    part("gen-b", "gen-b", "machine b")  # written last: the newer file
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "gen-a.json").write_text("{}")
    (results / "generation_reference.csv").write_text("images,evaluated_on\nold,old\n")
    merge_tables(results, ["rec-c"], cards=tmp_path / "cards")  # no generator built
    assert "old" in (results / "generation_reference.csv").read_text()
    merge_tables(results, ["gen-a"], cards=tmp_path / "cards")
    assert "machine a" in (results / "generation_reference.csv").read_text()
    assert "held-out digits" in (results / "generation_reference.md").read_text()


@pytest.mark.slow
def test_a_trial_build_writes_only_into_its_own_folders(tmp_path):
    """``zoo.build --out DIR`` (CONTRIBUTING's trial build): a short build of one model trains, exports and
    evaluates into DIR and --runs, and leaves the package's weights and cards and results/ byte for byte."""
    import hashlib
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    watched = sorted(
        [
            *(repo / "colddiff_lib/zoo/cards").glob("*"),
            *(repo / "colddiff_lib/zoo/weights").glob("*"),
            *(repo / "results").glob("*.csv"),
        ]
    )
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in watched}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "colddiff_lib.zoo.build",
            "--names",
            "mnist-superres",
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "zoo"),
            "--train-args",
            "--steps 20",
            "--n",
            "20",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "1 of 1 models evaluated" in out.stdout and "CPU minutes" in out.stdout
    card = json.loads((tmp_path / "zoo/cards/mnist-superres.json").read_text())
    assert (
        card["step"] == 20
        and (tmp_path / "zoo/weights/mnist-superres.safetensors").is_file()
    )
    rows = list(csv.DictReader(open(tmp_path / "zoo/results/reconstruction.csv")))
    assert {r["model"] for r in rows} == {"mnist-superres"} and all(
        r["n"] == "20" for r in rows
    )
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in watched} == before
    assert sorted(watched) == sorted(
        [
            *(repo / "colddiff_lib/zoo/cards").glob("*"),
            *(repo / "colddiff_lib/zoo/weights").glob("*"),
            *(repo / "results").glob("*.csv"),
        ]
    )


def test_merged_metrics_keep_one_entry_per_start(tmp_path):
    """Two rows of one model with the same method and noise but another start (the card's level, the
    paper's T) are two entries of the card's metrics, not one written over the other."""
    from colddiff_lib.tables import to_csv
    from colddiff_lib.zoo.build import merge_tables

    results, cards = tmp_path / "results", tmp_path / "cards"
    rows = [
        {
            "model": "gen-a",
            "method": "Algorithm 2",
            "noise_std": 0.002,
            "start": start,
            "n": 10,
            "fid": fid,
            "class_histogram": "1 1 1 1 1 1 1 1 1 1",
            "command": "cmd",
        }
        for start, fid in (
            ("level 4: gaussian fit (32 components, 256 PCs)", 8.0),
            ("level T: gaussian fit (1 component)", 95.0),
        )
    ]
    (results / "parts" / "gen-a").mkdir(parents=True)
    (results / "parts" / "gen-a" / "generation.csv").write_text(to_csv(rows))
    cards.mkdir()
    (cards / "gen-a.json").write_text("{}")
    merge_tables(results, ["gen-a"], cards=cards)
    metrics = json.loads((cards / "gen-a.json").read_text())["metrics"]
    assert sorted(m["fid"] for m in metrics.values()) == [8.0, 95.0]
    assert all("from level" in key for key in metrics)


def test_the_build_plan_prices_each_config_by_its_own_steps(
    capsys, tmp_path, monkeypatch
):
    """``zoo.build --plan``: one line per model with its config's preset and steps, CPU minutes that are the
    steps times the probed CPU seconds of a step, a total that sums them; nothing written."""
    monkeypatch.chdir(tmp_path)
    names = ["mnist-superres", "mnist-blur"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert build.main(["--plan", "--names", *names]) == 0
        assert torch.get_num_threads() == 2  # probed on one thread, then given back
    finally:
        torch.set_num_threads(before)
    lines = capsys.readouterr().out.splitlines()
    assert "one thread a model" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {*names, "all"}
    minutes = 0.0
    for name in names:
        _, preset, steps, _, _, seconds, _, _, _, total, _, _ = rows[name]
        config = zoo.config_of(name)
        assert preset == config.model["preset"] and int(steps) == config.train["steps"]
        assert float(seconds) > 0
        assert float(total) == pytest.approx(int(steps) * float(seconds) / 60, abs=1)
        minutes += int(steps) * float(seconds) / 60
    assert float(rows["all"][-3]) == pytest.approx(minutes, abs=1)
    assert list(tmp_path.iterdir()) == []
