"""colddiff_lib.checkpoint: checkpoints written atomically and read back against the schema; the one loader."""

import stat
from pathlib import Path

import pytest
import torch

from colddiff_lib import checkpoint, files
from colddiff_lib.checkpoint import load_checkpoint, save_atomic


def test_save_atomic_writes_a_private_checkpoint_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    save_atomic({"a": torch.arange(3)}, path)
    save_atomic({"a": torch.arange(5)}, path)  # an overwrite
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(5))
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck.pt"]
    assert stat.S_IMODE(path.stat().st_mode) == checkpoint.CHECKPOINT_MODE == 0o600


def test_a_checkpoint_that_fails_to_save_keeps_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        # a lambda cannot be pickled
        save_atomic({"step": 2, "bad": lambda: None}, path)
    assert (
        path.read_bytes() == before and torch.load(path, weights_only=True)["step"] == 1
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_the_old_writer_names_are_the_files_writers():
    assert (
        checkpoint.write_json_atomic is files.write_json
        and checkpoint.write_text_atomic is files.write_text
    )


def test_load_checkpoint_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint .*nope\.pt: no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_an_old_config_is_upgraded_by_its_class_before_it_is_built(monkeypatch):
    """build_degradation asks the config's class to bring an older file's config up to date (Blend's: the
    targets that older files kept beside the config); a class without changes returns it as it is."""
    from colddiff_lib import degradations as dg
    from colddiff_lib.checkpoint import build_degradation

    old = {"name": "blend", "T": 10}
    assert dg.Blend.upgrade_config(old, {"blend_targets": {"source": "lfw"}}) == {
        **old,
        "targets": "lfw",
    }
    assert dg.Blend.upgrade_config(old, {}) == {**old, "targets": "lfw"}
    assert (
        dg.Blend.upgrade_config(
            {**old, "targets": "lfw"}, {"blend_targets": {"source": "x"}}
        )["targets"]
        == "lfw"
    )
    assert dg.GaussianBlur.upgrade_config(
        {"name": "blur", "T": 3}, {"anything": 1}
    ) == {"name": "blur", "T": 3}
    seen = []
    monkeypatch.setattr(
        dg.Blend,
        "upgrade_config",
        classmethod(
            lambda cls, config, stored: (
                seen.append(stored) or {**config, "targets": "lfw"}
            )
        ),
    )
    D = build_degradation(old, stored={"blend_targets": {"source": "lfw"}})
    assert (
        isinstance(D, dg.Blend)
        and D.T == 10
        and seen == [{"blend_targets": {"source": "lfw"}}]
    )
    # no name switch left in the loader
    assert "blend" not in Path(checkpoint.__file__).read_text()
