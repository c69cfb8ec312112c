"""The degradation contract (colddiff_lib.degradations.contract) over every registered degradation,
and the walk-through of CONTRIBUTING.md: a new degradation in a module of its own registers itself,
keeps the contract, saves and rebuilds from its config, and trains."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib.degradations import contract

pytestmark = pytest.mark.usefixtures("single_thread")


# The library's own registered degradations (test modules register classes of their own too).
LIBRARY = sorted(name for name, cls in dg.REGISTRY.items() if cls.__module__.startswith("colddiff_lib."))


def test_the_library_registers_its_degradations():
    assert {"blur", "inpaint", "inpaint_fill", "superres", "snow", "noise", "blend"} <= set(LIBRARY)


@pytest.mark.parametrize("name", LIBRARY)
def test_every_registered_degradation_keeps_the_contract(name):
    cls = dg.REGISTRY[name]
    D = cls(T=min(20, cls().T))  # every registered class builds from its defaults; 20 levels keep it quick
    problems, summary = contract.check(D)
    assert problems == [], "\n".join(problems)
    assert summary.startswith(cls.__name__)


def test_the_contract_names_what_is_wrong():
    class Shrinks(dg.Degradation, name="test-shrinks"):
        def __init__(self, T=4, channels=None):
            super().__init__(T, channels)

        def degrade(self, x0, t):
            return x0[..., ::2, ::2]

    class Unnamed(dg.Degradation):
        def __init__(self, T=4):
            super().__init__(T)

        def degrade(self, x0, t):
            return x0 * (1 - t.view(-1, 1, 1, 1) / self.T)

    try:
        problems, _ = contract.check(Shrinks())
        assert any("keeps the shape" in p for p in problems), problems
        problems, _ = contract.check(Unnamed())
        assert any("has no registry name" in p for p in problems), problems
    finally:
        dg.REGISTRY.pop("test-shrinks", None)


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="the degradation name 'blur' is taken by GaussianBlur"):
        class Blur2(dg.Degradation, name="blur"):
            pass


ROOT = Path(__file__).resolve().parents[1]


def contributing_module() -> str:
    """The first Python block of CONTRIBUTING.md: the module it tells a contributor to write."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_contributing_walkthrough(tmp_path, monkeypatch):
    """The steps of CONTRIBUTING.md on a toy module: register, contract, save/rebuild, 5 training steps."""
    from colddiff_lib.checkpoint import load_checkpoint, restore
    from colddiff_lib.models import UNet
    from colddiff_lib.training import TrainConfig, train

    text = (ROOT / "CONTRIBUTING.md").read_text()
    for step in ("name=", "contract.check", "tests/test_contract.py", "[zoo]", "book/A2_api.md"):
        assert step in text, f"CONTRIBUTING.md does not mention {step!r}"
    (tmp_path / "toy_pixelate.py").write_text(contributing_module())
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("toy_pixelate")
        assert dg.REGISTRY["toy_pixelate"] is module.Pixelate
        D = dg.build("toy_pixelate", T=3)
        problems, _ = contract.check(D)
        assert problems == [], problems
        x = torch.rand(32, 1, 32, 32) * 2 - 1
        run = tmp_path / "run"
        train(UNet.from_preset("tiny", channels=1), D, x,
              TrainConfig(steps=5, batch_size=4, checkpoint_dir=str(run), progress=False, device="cpu"))
        assert load_checkpoint(run / "last.pt")["degradation"] == {"name": "toy_pixelate", "T": 3, "channels": None}
        R, D2 = restore(run / "last.pt")
        assert isinstance(D2, module.Pixelate) and torch.equal(D2(x, 2), D(x, 2))
    finally:
        dg.REGISTRY.pop("toy_pixelate", None)
        sys.modules.pop("toy_pixelate", None)
