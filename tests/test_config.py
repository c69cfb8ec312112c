"""colddiff_lib.config: a run's TOML file, read and checked in one place (the CLI, the zoo, export, the tests)."""

import pytest

from colddiff_lib import zoo
from colddiff_lib.config import TABLES, RunConfig


def toml(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_config_reads_into_its_tables(tmp_path):
    path = toml(
        tmp_path,
        '[zoo]\ntask = "generation"\n[data]\nimage_size = 16\n[train]\nsteps = 3\n'
        "[sampling]\nlevel = 4\n",
    )
    cfg = RunConfig.from_toml(path)
    assert (
        cfg.task == "generation"
        and cfg.data == {"image_size": 16}
        and cfg.train == {"steps": 3}
    )
    assert cfg.degradation == {} and cfg.model == {} and cfg.where == str(path)
    assert set(cfg.tables()) == {"zoo", "data", "train", "sampling"} and set(
        TABLES
    ) >= set(cfg.tables())
    assert RunConfig().task is None and RunConfig().tables() == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("[train]\nsteps = = 3\n", r"run\.toml: TOML syntax error: .*line 2"),
        (
            "[trian]\nsteps = 3\n",
            r"run\.toml: unknown table \[trian\] \(did you mean 'train'\?\); expected zoo, ",
        ),
        ("train = 3\n", r"run\.toml: train must be a table \(\[train\]\), got 3"),
        (
            '[zoo]\ntask = "classify"\n',
            r"run\.toml: zoo\.task: expected task = \"reconstruction\" or \"generation\"",
        ),
        ('[zoo]\nname = "x"\n', r"zoo\.name: expected task = "),
        (
            '[data]\ndatset = "mnist5k"\n',
            r"run\.toml: data\.datset: unknown key \(did you mean 'dataset'\?\)",
        ),
        (
            "[data]\nimage_size = true\n",
            r"data\.image_size: expected an int >= 4 and <= 1024, got True",
        ),
        (
            '[sampling]\nalgorithm = "fast"\n',
            r"sampling\.algorithm: expected one of \['improved'",
        ),
        (
            "[train]\nsteps = " + "[" * 5000 + "]" * 5000 + "\n",
            r"run\.toml: nested too deeply",
        ),
    ],
    ids=[
        "syntax",
        "table",
        "not-a-table",
        "task",
        "zoo-key",
        "data-key",
        "data-bool",
        "sampling",
        "nested",
    ],
)
def test_every_problem_is_one_error_naming_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_toml(toml(tmp_path, text))


def test_missing_and_binary_files_and_the_callers_name_for_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"--config .*nope\.toml: no such file"):
        RunConfig.from_toml(
            tmp_path / "nope.toml", where=f"--config {tmp_path / 'nope.toml'}"
        )
    (tmp_path / "b.toml").write_bytes(b"\xff\xfe\x00[train]")
    with pytest.raises(ValueError, match=r"b\.toml: not a text \(UTF-8 TOML\) file"):
        RunConfig.from_toml(tmp_path / "b.toml")


def test_every_zoo_config_reads_and_declares_its_task():
    names = sorted(p.stem for p in zoo.CONFIGS_DIR.glob("*.toml"))
    assert names
    for name in names:
        cfg = zoo.config_of(name)
        assert zoo.task_of(name) == cfg.task in ("reconstruction", "generation")
        assert set(cfg.tables()) >= {"zoo", "data", "model", "train", "degradation"}, (
            name
        )
    with pytest.raises(ValueError, match="no zoo config"):
        zoo.config_of("mnist-sharpen")
