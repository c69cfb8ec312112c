"""colddiff_lib.reproduce: the paper's tables measured on the shipped models, merged into results/."""

import csv
import math
from pathlib import Path

import pytest

from colddiff_lib import zoo
from colddiff_lib.data import load_dataset
from colddiff_lib.evaluation import METHODS, reconstruct
from colddiff_lib.reproduce import (
    METHOD_NAMES,
    new_defaults_first,
    read_table,
    reproduce,
    results_file,
)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def test_digits():
    return load_dataset("mnist5k", split="test")


def committed(table):
    with open(ROOT / "results" / f"{table}.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["mnist-blur", "mnist-inpaint", "mnist-superres"])
def test_committed_reconstruction_table_regenerates_in_small_form(name, test_digits):
    """Re-measure 20 held-out digits and compare with the committed 1,000-digit row: the small means
    must lie within a few standard errors of the committed ones."""
    rows = {r["method"]: r for r in committed("reconstruction") if r["model"] == name}
    # degraded, direct, Algorithms 1 and 2
    assert set(rows) == {METHOD_NAMES[m] for m in METHODS}
    R, D = zoo.load_pretrained(name)
    x0 = test_digits.images[:20]
    results = reconstruct(R, D, x0)
    measured = {}
    for method, images in results.items():
        per_image = ((images.clamp(-1, 1) - x0) / 2).pow(2).flatten(1).mean(1).sqrt()
        tolerance = 4 * float(per_image.std()) / math.sqrt(len(x0)) + 0.01
        assert (
            abs(float(per_image.mean()) - float(rows[METHOD_NAMES[method]]["rmse"]))
            < tolerance
        ), method
        measured[method] = float(per_image.mean())
    # The trained models restore: both one call of R and Algorithm 2 beat the degraded
    # input.
    assert (
        measured["direct"] < measured["degraded"]
        and measured["improved"] < measured["degraded"]
    )


def test_read_table_finds_the_committed_tables_from_anywhere(tmp_path, monkeypatch):
    # neither ./results nor ../results: found beside the library's clone
    monkeypatch.chdir(tmp_path)
    rows = read_table("generation.csv", download=False)
    assert rows == committed("generation")
    assert results_file("parts/mnist-blur/mnist-blur.png", download=False).is_file()
    with pytest.raises(FileNotFoundError, match="results/no-such.csv"):
        results_file("no-such.csv", download=False)
    for bad in ("", "/etc/passwd", "../secrets.csv", 3):
        with pytest.raises(
            ValueError, match="name must be a relative path inside results/"
        ):
            results_file(bad)


def test_reproduce_writes_its_rows_and_merges_them_into_the_tables(tmp_path):
    """A table already there is merged into: the model's rows replace its old ones (named in "replaced"),
    the other models' rows are kept; each row names the command and machine that made it."""
    from colddiff_lib.tables import read_csv, to_csv

    first = reproduce(["mnist-superres"], tmp_path, n=8, command="first")
    assert [r["method"] for r in first["reconstruction"]] == [
        METHOD_NAMES[m] for m in METHODS
    ]
    assert first["replaced"] == [] and (tmp_path / "mnist-superres.png").is_file()
    rows = read_csv(tmp_path / "reconstruction.csv")
    (tmp_path / "reconstruction.csv").write_text(
        to_csv(rows + [{**rows[0], "model": "mnist-other"}])
    )
    second = reproduce(["mnist-superres"], tmp_path, n=8, command="second")
    assert len(second["replaced"]) == len(METHODS)
    rows = read_csv(tmp_path / "reconstruction.csv")
    assert [r["model"] for r in rows].count("mnist-superres") == len(METHODS)
    assert {r["command"] for r in rows if r["model"] == "mnist-superres"} == {"second"}
    # kept as it was
    assert [r["command"] for r in rows if r["model"] == "mnist-other"] == ["first"]
    assert "mnist-other" in (tmp_path / "reconstruction.md").read_text()
    with pytest.raises(
        ValueError, match="neither a reconstruction nor a generation model"
    ):
        reproduce([zoo.CLASSIFIER], tmp_path, n=8)


def test_a_new_default_start_demotes_the_old_default_rows():
    """A card whose start changed (32 to 64 components): the old rows stay as measurements of another
    setting, but only the new row is the default, and it comes first; other models are untouched."""
    from colddiff_lib.tables import merge_rows

    def row(model, method, start, default):
        return {
            "model": model,
            "method": method,
            "noise_std": "0.0000",
            "start": start,
            "default": default,
        }

    old = [
        row("gen-a", "Algorithm 2", "level 3: 32 components", "yes"),
        row("gen-a", "Algorithm 2", "level T", "no"),
        row("gen-b", "Algorithm 2", "level 4", "yes"),
    ]
    new = [
        row("gen-a", "Algorithm 1", "level 3: 64 components", "yes"),
        row("gen-a", "Algorithm 2", "level T", "no"),
    ]
    merged, _ = merge_rows(old, new, ("model", "method", "noise_std", "start"))
    rows = new_defaults_first(merged, new)
    assert [(r["model"], r["start"], r["default"]) for r in rows] == [
        ("gen-a", "level 3: 64 components", "yes"),
        ("gen-a", "level T", "no"),
        ("gen-a", "level 3: 32 components", "no"),
        ("gen-b", "level 4", "yes"),
    ]
    # a run that adds only a non-default row changes no default
    extra = [row("gen-b", "Algorithm 1", "level 4", "no")]
    merged, _ = merge_rows(rows, extra, ("model", "method", "noise_std", "start"))
    assert new_defaults_first(merged, extra) == merged
