"""colddiff_lib.files: the library's one writer (atomic, flushed, explicit permissions), its digests and JSON."""

import hashlib
import json
import re
import stat
from pathlib import Path

import pytest

from colddiff_lib import files

ROOT = Path(__file__).resolve().parents[1]


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_every_form_writes_the_file_with_its_mode_and_leaves_no_temporary(tmp_path):
    a = files.atomic_write(tmp_path / "sub" / "a.bin", lambda f: f.write(b"file form"))
    b = files.atomic_write_path(
        tmp_path / "b.bin", lambda tmp: Path(tmp).write_bytes(b"path form"), mode=0o600
    )
    c = files.write_bytes(b"bytes", tmp_path / "c.bin", mode=0o640)
    assert (
        a.read_bytes() == b"file form"
        and b.read_bytes() == b"path form"
        and c.read_bytes() == b"bytes"
    )
    assert (_mode(a), _mode(b), _mode(c)) == (files.DEFAULT_MODE, 0o600, 0o640)
    files.write_bytes(b"again", c)  # an overwrite takes the mode asked for now
    assert c.read_bytes() == b"again" and _mode(c) == files.DEFAULT_MODE
    assert not list(tmp_path.rglob("*.tmp"))


def test_text_and_json_formats(tmp_path):
    files.write_json({"b": 1, "a": [1, 2]}, tmp_path / "r.json")
    assert (
        tmp_path / "r.json"
    ).read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    files.write_json(
        {"b": 1, "a": 2}, tmp_path / "c.json", indent=None, sort_keys=False
    )
    assert (tmp_path / "c.json").read_text() == '{"b":1,"a":2}\n'
    files.write_text("é\n", tmp_path / "t.txt")
    assert (tmp_path / "t.txt").read_bytes() == "é\n".encode("utf-8")


@pytest.mark.parametrize("form", ["file", "path"])
def test_a_failed_or_interrupted_write_keeps_the_previous_file(tmp_path, form):
    path = tmp_path / "last.pt"
    files.write_bytes(b"good", path)
    seen = []

    def broken(target):
        (
            target.write(b"partial" * 100)
            if form == "file"
            else Path(target).write_bytes(b"partial")
        )
        # the temporary file exists at this point
        seen.extend(p.name for p in tmp_path.iterdir())
        raise RuntimeError("disk full")

    write = files.atomic_write if form == "file" else files.atomic_write_path
    with pytest.raises(RuntimeError, match="disk full"):
        write(path, broken)
    assert any(re.fullmatch(r"\.last\.pt\..+\.tmp", name) for name in seen), seen
    assert path.read_bytes() == b"good" and sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["last.pt"]

    # a BaseException too, for a file that did not exist before
    def interrupted(target):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "new.bin", interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_the_data_is_flushed_before_the_rename(tmp_path, monkeypatch):
    order = []
    real_fsync, real_replace = files.os.fsync, files.os.replace
    monkeypatch.setattr(
        files.os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1]
    )
    monkeypatch.setattr(
        files.os,
        "replace",
        lambda a, b: (order.append("replace"), real_replace(a, b))[1],
    )
    files.write_bytes(b"x", tmp_path / "a")
    files.atomic_write_path(tmp_path / "b", lambda tmp: Path(tmp).write_bytes(b"y"))
    renames = [i for i, event in enumerate(order) if event == "replace"]
    assert len(renames) == 2 and all(order[i - 1] == "fsync" for i in renames), order


def test_remove_temporaries_takes_only_what_killed_writes_of_those_names_left(tmp_path):
    for name in (
        ".last.pt.abc.tmp",
        ".best.pt.x1.tmp",
        ".run.json.q.tmp",
        "last.pt",
        "notes.tmp",
    ):
        (tmp_path / name).write_bytes(b"")
    removed = files.remove_temporaries(tmp_path, "*.pt")
    assert sorted(p.name for p in removed) == [".best.pt.x1.tmp", ".last.pt.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".run.json.q.tmp",
        "last.pt",
        "notes.tmp",
    ]


def test_digests(tmp_path):
    data = bytes(range(256)) * 5000  # more than one block
    (tmp_path / "d").write_bytes(data)
    assert (
        files.sha256_file(tmp_path / "d")
        == files.sha256_bytes(data)
        == hashlib.sha256(data).hexdigest()
    )
    assert (
        files.canonical_json({"b": [1, "é"], "a": None})
        == b'{"a":null,"b":[1,"\\u00e9"]}'
    )


def test_replace_folder_swaps_whole_folders(tmp_path):
    folder = tmp_path / "model"
    for content in ("one", "two"):
        new = files.make_temporary_folder(folder)
        assert (
            new.parent == tmp_path
            and new.name.startswith(".model.")
            and _mode(new) == 0o755
        )
        (new / "a.json").write_text(json.dumps(content))
        files.replace_folder(new, folder)
        assert json.loads((folder / "a.json").read_text()) == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_library_writes_and_digests_files_in_this_module_only():
    """No second writer: no temporary-file, rename or digest code anywhere else in colddiff_lib."""
    patterns = re.compile(
        r"\b(mkstemp|mkdtemp|os\.replace|os\.fsync|hashlib|renameat2)\b|(?<!files)\.write_(text|bytes)\("
    )
    found = []
    for path in sorted((ROOT / "colddiff_lib").rglob("*.py")):
        if path.name == "files.py" and path.parent.name == "colddiff_lib":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if patterns.search(code):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
