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


# The library's own registered degradations (test modules register classes of their own
# too).
LIBRARY = sorted(
    name
    for name, cls in dg.REGISTRY.items()
    if cls.__module__.startswith("colddiff_lib.")
)


def test_every_module_of_the_package_registers_its_degradations():
    """Each module of colddiff_lib/degradations/ but the interface (base, contract) registers a class: the
    package imports them all, so a new module needs no import elsewhere (CONTRIBUTING.md)."""
    folder = Path(dg.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "base", "contract"}
    registering = {dg.REGISTRY[name].__module__.rsplit(".", 1)[1] for name in LIBRARY}
    assert registering == modules and len(LIBRARY) >= len(modules)


@pytest.mark.parametrize("name", LIBRARY)
def test_every_registered_degradation_keeps_the_contract(name):
    cls = dg.REGISTRY[name]
    # every registered class builds from its defaults; 20 levels keep it quick
    D = cls(T=min(20, cls().T))
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
    with pytest.raises(
        ValueError, match="the degradation name 'blur' is taken by GaussianBlur"
    ):

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
    for step in (
        "name=",
        "contract.check",
        "tests/test_contract.py",
        "[zoo]",
        "book/A2_api.md",
    ):
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
        train(
            UNet.from_preset("tiny", channels=1),
            D,
            x,
            TrainConfig(
                steps=5,
                batch_size=4,
                checkpoint_dir=str(run),
                progress=False,
                device="cpu",
            ),
        )
        assert load_checkpoint(run / "last.pt")["degradation"] == {
            "name": "toy_pixelate",
            "T": 3,
            "channels": None,
        }
        R, D2 = restore(run / "last.pt")
        assert isinstance(D2, module.Pixelate) and torch.equal(D2(x, 2), D(x, 2))
    finally:
        dg.REGISTRY.pop("toy_pixelate", None)
        sys.modules.pop("toy_pixelate", None)


def _blocks(text: str, language: str):
    """The fenced blocks of ``text`` in ``language`` ('' for unlabelled ones), in order."""
    import re

    return re.findall(
        r"^```" + re.escape(language) + r"\n(.*?)^```", text, flags=re.S | re.M
    )


@pytest.mark.slow
def test_contributing_followed_in_a_temporary_copy(tmp_path):
    """CONTRIBUTING.md followed to the letter in a copy of the package: both modules it shows go into
    colddiff_lib/degradations/ and register themselves; its contract command says []; chapter 7's checker
    accepts them (the flat end state included); its TOML template has every table and trains through the
    command line and the zoo's reader; its autodoc line documents a class in a module of its own under
    Sphinx with warnings as errors (the namespace path it warns against fails); the trial build it gives
    writes to a scratch folder."""
    import os
    import shlex
    import shutil
    import subprocess

    from colddiff_lib.config import RunConfig

    text = (ROOT / "CONTRIBUTING.md").read_text()
    copy = tmp_path / "copy"
    shutil.copytree(
        ROOT / "colddiff_lib",
        copy / "colddiff_lib",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }

    def run(*argv, ok=True, **extra_env):
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=copy,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if ok:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    # 1. The modules, where the document says: colddiff_lib/degradations/<name>.py.
    modules = _blocks(text, "python")
    assert len(modules) == 2, "CONTRIBUTING.md shows a module and a flat-end module"
    names = []
    for source in modules:
        name = source.split('name="', 1)[1].split('"', 1)[0]
        (copy / "colddiff_lib" / "degradations" / f"{name}.py").write_text(source)
        names.append(name)
    assert "from colddiff_lib.degradations.base import FlatEnd" in modules[1]

    # 2. The contract, by the document's own command (run from the copy: it must see the
    #    copy's package).
    command = next(line for line in text.splitlines() if line.startswith("python -c "))
    argv = shlex.split(command)[1:]
    out = run(*argv).stdout
    assert out.startswith("([], "), out
    checked = run(
        "-c",
        "import colddiff_lib, sys\n"
        f"assert colddiff_lib.__file__.startswith({str(copy)!r}), colddiff_lib.__file__\n"
        "from colddiff_lib.degradations import build\n"
        "from colddiff_lib.exercises.ch07 import check_degradation\n"
        f"for name in {names!r}:\n"
        "    assert check_degradation(build(name)), name\n",
    ).stdout
    assert (
        checked.count("Correct: ") == 2
        and "the end state its latent() describes" in checked
    ), checked

    # 3. The zoo config: every table the command line, the build and export read; it
    #    trains.
    template = _blocks(text, "toml")
    assert len(template) == 1
    config = template[0].replace("<name>", names[0])
    path = copy / "colddiff_lib" / "zoo" / "configs" / f"mnist-{names[0]}.toml"
    path.write_text(config)
    tables = RunConfig.from_toml(path).tables()
    assert set(tables) == {"zoo", "data", "model", "train", "degradation"}, sorted(
        tables
    )
    run(
        "-c",
        f"from colddiff_lib.zoo.build import task_of; assert task_of('mnist-{names[0]}') == 'reconstruction'",
    )
    run(
        "-m",
        "colddiff_lib",
        "train",
        "--config",
        str(path),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--val-images",
        "8",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    )
    assert (tmp_path / "run" / "best.pt").is_file()
    # The trial build: a scratch folder of its own for runs, tables, weights and card.
    assert (
        "python -m colddiff_lib.zoo.build --names mnist-<name> --runs /tmp/trial/runs --results "
        '/tmp/trial/results --out /tmp/trial/zoo --train-args "--steps 20"'
    ) in text

    # 3b. A generation degradation is one module and one TOML: the flat-end module with
    # the same template as a generation model goes through the trial build (trained,
    # shipped into the scratch zoo, measured into its generation table), and the zoo
    # generates digits with it; no other file of the copy was edited.
    gen = f"mnist-{names[1]}"
    gen_config = config.replace(names[0], names[1]).replace(
        'task = "reconstruction"', 'task = "generation"'
    )
    assert gen_config != config and 'task = "generation"' in gen_config
    (copy / "colddiff_lib" / "zoo" / "configs" / f"{gen}.toml").write_text(gen_config)
    trial = tmp_path / "trial"
    built = run(
        "-m",
        "colddiff_lib.zoo.build",
        "--names",
        gen,
        "--runs",
        str(trial / "runs"),
        "--results",
        str(trial / "results"),
        "--out",
        str(trial / "zoo"),
        "--n",
        "8",
        "--train-args",
        "--steps 4 --batch-size 4 --val-images 8 --eval-every 2 --checkpoint-every 2 --device cpu",
    )
    assert "1 of 1 models evaluated" in built.stdout, built.stdout[-2000:]
    table = (trial / "results" / "generation.csv").read_text()
    # its rows: Algorithm 2 and Algorithm 1, from its card's defaults
    assert table.count(f"\n{gen},") >= 2, table
    generated = run(
        "-c",
        f"from colddiff_lib import zoo; x, x_T = zoo.generate({gen!r}, 4); "
        f"print(tuple(x.shape), bool(x.isfinite().all()), zoo.sampling({gen!r})['algorithm'])",
        COLDDIFF_ZOO=str(trial / "zoo"),
    ).stdout
    assert generated.strip() == "(4, 1, 32, 32) True improved", generated

    # 4. The API line, under Sphinx with warnings as errors; the namespace path fails
    #    there.
    line = next(x for x in text.splitlines() if x.startswith(".. autoclass:: "))
    assert line == ".. autoclass:: colddiff_lib.degradations.<name>.<Class>", line
    assert "book/A2_api.md" in text and "{eval-rst}" in text

    def sphinx(directive):
        src = tmp_path / "docs"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        (src / "conf.py").write_text(
            'extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]\n'
        )
        (src / "index.rst").write_text(f"API\n===\n\n{directive}\n")
        return run(
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "text",
            str(src),
            str(tmp_path / "html"),
            ok=False,
        )

    built = sphinx(line.replace("<name>", names[0]).replace("<Class>", "Pixelate"))
    assert built.returncode == 0, built.stderr[-3000:]
    assert "Pixelate" in (tmp_path / "html" / "index.txt").read_text()
    wrong = sphinx(".. autoclass:: colddiff_lib.degradations.Pixelate")
    assert wrong.returncode != 0 and "Pixelate" in wrong.stderr
