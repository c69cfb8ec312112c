"""The benchmark scripts are not run by CI (they print figures and take minutes to hours), but they read
the library: what they build from it is checked here, so that a change of the library cannot leave a
script that fails at start (compute_study.py had indexed the zoo's RunConfig as a dict)."""

import argparse
import importlib.util
from pathlib import Path

import pytest

from colddiff_lib import degradations as dg
from colddiff_lib import zoo
from colddiff_lib.degradations.noisy import Noisy

ROOT = Path(__file__).resolve().parents[1]


def script(name: str):
    """benchmarks/NAME.py as a module (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study_args(**changes):
    args = dict(
        name="run",
        config="mnist-blur",
        preset=None,
        batch=None,
        lr=None,
        deg=[],
        train=[],
        sample=["improved:0.002"],
    )
    return argparse.Namespace(**{**args, **changes})


@pytest.mark.parametrize(
    "config", sorted(p.stem for p in zoo.CONFIGS_DIR.glob("*.toml"))
)
def test_the_compute_study_runs_each_zoo_config_as_it_stands(config):
    study = script("compute_study")
    spec, D, model_cfg, recipe = study.study_spec(study_args(config=config))
    cfg = zoo.config_of(config)
    assert spec["task"] == cfg.task and spec["preset"] == cfg.model["preset"]
    assert D.config() == dg.build(channels=1, **cfg.degradation).config()
    assert (
        recipe["batch_size"] == cfg.train["batch_size"]
        and recipe["lr"] == cfg.train["lr"]
    )
    assert "steps" not in recipe  # sized from the budget


def test_the_compute_study_applies_its_changes_to_the_config():
    study = script("compute_study")
    spec, D, _, recipe = study.study_spec(
        study_args(
            config="mnist-blur-gen",
            preset="web",
            batch=32,
            lr=5e-4,
            deg=["T=50", "schedule=exponential", "std=0.04"],
            train=["input_noise=0.01"],
        )
    )
    assert spec["preset"] == "web" and (recipe["batch_size"], recipe["lr"]) == (
        32,
        5e-4,
    )
    assert (D.T, D.schedule, D.std, D.collapse_at_T) == (50, "exponential", 0.04, True)
    assert recipe["input_noise"] == 0.01
    _, noisy, _, _ = study.study_spec(study_args(deg=["noisy=0.3"]))
    assert isinstance(noisy, Noisy) and noisy.std == 0.3


def test_a_recorded_run_measured_again_counts_once(tmp_path):
    """report reads the record and the runs of runs/study; a run kept in the record (report --keep) and
    still in runs/study is one row, the run's own; the record written back keeps one row too."""
    study = script("compute_study")
    row = {c: None for c in study.COLUMNS}
    row.update(
        run="r", task="reconstruction", cpu_minutes=5.0, setting=None, machine="m"
    )
    again = {**row, "direct_rmse": 0.15}
    other = {**row, "cpu_minutes": 20.0}
    assert study.unique_rows([row, other, again]) == [again, other]
    path = tmp_path / "record.csv"
    study.write_record([row, again], path)
    assert [r["direct_rmse"] for r in study.read_record(path)] == [0.15]


def test_the_level_grid_script_prints_a_line_per_grid(capsys):
    """level_grid.py on a few digits of the cheapest model (T = 3): the direct line, then Algorithm 2 with
    1, 2 and 3 calls, the last the tables' row."""
    level_grid = script("level_grid")
    assert level_grid.steps_to_try(20) == [1, 2, 3, 4, 5, 10, 20]
    assert level_grid.main(["--n", "10", "--names", "mnist-superres"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.startswith("mnist-superres")]
    assert [row[1] for row in rows] == ["direct", "Algorithm", "Algorithm", "Algorithm"]
    assert [int(row[-4]) for row in rows] == [1, 1, 2, 3]
    assert all(0 < float(row[-3]) < 0.5 and 0 < float(row[-2]) <= 1 for row in rows)
