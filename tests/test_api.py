"""The API appendix (book/A2_api.md) against the code: what it documents exists, every documented argument
list is the signature's, the presets it names are the code's, and every public function follows the
conventions the appendix states (argument order of metrics, device, randomness, return types)."""

import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
A2 = (ROOT / "book" / "A2_api.md").read_text()


def documented_objects():
    """``[(module, name)]`` for every object A2's eval-rst blocks document (members of modules and classes)."""
    found = []
    for block in re.findall(r"```\{eval-rst\}\n(.*?)```", A2, re.S):
        owner = None
        for line in block.splitlines():
            m = re.match(r"\.\. auto(module|class|function):: (\S+)", line)
            if m:
                kind, path = m.groups()
                if kind == "module":
                    owner = path
                else:
                    module, _, name = path.rpartition(".")
                    found.append((module, name))
                    owner = path if kind == "class" else None
                continue
            m = re.match(r"\s+:members: (.*)", line)
            if m and owner:
                found += [(owner, name.strip()) for name in m.group(1).split(",")]
    return found


def resolve(owner: str, name: str):
    try:
        return getattr(importlib.import_module(owner), name)
    except ModuleNotFoundError:  # a class's members: owner is module.Class
        module, _, cls = owner.rpartition(".")
        return getattr(getattr(importlib.import_module(module), cls), name)


OBJECTS = documented_objects()


def documented_arguments(doc: str):
    """The names an ``Args:`` section lists (``a, b: ...`` lists two), or None without one."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() in ("Args:", "Arguments:"):
            base = len(line) - len(line.lstrip())
            block = []
            for entry in lines[i + 1 :]:
                if entry.strip() and len(entry) - len(entry.lstrip()) <= base:
                    break
                block.append(entry)
            indent = min(len(e) - len(e.lstrip()) for e in block if e.strip())
            names = []
            for entry in block:
                m = re.match(r"\s*([\w, *]+?)(\s*\([^)]*\))?:", entry)
                if entry.strip() and len(entry) - len(entry.lstrip()) == indent and m:
                    names += [n.strip().lstrip("*") for n in m.group(1).split(",")]
            return names
    return None


def parameters(obj):
    fn = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [
        n
        for n, p in sig.parameters.items()
        if n not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def test_everything_the_appendix_documents_exists():
    assert len(OBJECTS) > 80
    missing = []
    for owner, name in OBJECTS:
        try:
            resolve(owner, name)
        except AttributeError:
            missing.append(f"{owner}.{name}")
    assert not missing, missing


@pytest.mark.parametrize("owner, name", OBJECTS, ids=[f"{o}.{n}" for o, n in OBJECTS])
def test_documented_arguments_are_the_signatures(owner, name):
    """Where a docstring lists its arguments (``Args:``), it lists each argument of the signature, and no other."""
    obj = resolve(owner, name)
    listed = documented_arguments(inspect.getdoc(obj) or "")
    params = parameters(obj)
    if listed is None or params is None:
        return
    assert sorted(set(listed)) == sorted(params), (
        f"documented {listed}, signature {params}"
    )


def test_the_documented_presets_are_the_codes():
    from colddiff_lib.models import PRESETS, UNet

    doc = inspect.getdoc(UNet.from_preset)
    named = set(re.findall(r"``([\w-]+)``", doc)) & set(PRESETS) | {
        w for w in re.findall(r"``([\w-]+)``", doc) if w not in PRESETS and w.islower()
    }
    assert set(PRESETS) <= named, (
        f"UNet.from_preset's docstring names {sorted(named)}, the presets are {sorted(PRESETS)}"
    )
    extra = (
        {w for w in re.findall(r"``([\w-]+)``", doc)}
        - set(PRESETS)
        - {"name", "overrides", "PRESETS"}
    )
    assert not extra, (
        f"UNet.from_preset's docstring names presets that do not exist: {sorted(extra)}"
    )


def public_functions():
    for owner, name in OBJECTS:
        obj = resolve(owner, name)
        if callable(obj) and parameters(obj) is not None:
            yield f"{owner}.{name}", obj, parameters(obj)


def test_metrics_take_the_images_then_their_reference():
    from colddiff_lib import evaluation, metrics

    for fn in (
        metrics.rmse,
        metrics.psnr,
        metrics.ssim,
        metrics.rmse_as_paper,
        metrics.ssim_as_paper,
        metrics.image_metrics,
        metrics.fid,
    ):
        assert parameters(fn)[:2] == ["x", "reference"], fn.__name__
    assert parameters(evaluation.generation_measures)[:3] == [
        "samples",
        "reference",
        "classifier",
    ]


def test_samplers_take_R_D_images_level():
    from colddiff_lib import generation, sampling

    for fn in (sampling.direct, sampling.sample, sampling.trajectory):
        assert parameters(fn)[:4] == ["R", "D", "x_t", "t"], fn.__name__
    assert parameters(generation.generate)[:4] == ["R", "D", "n", "shape"]


def test_no_function_takes_both_a_seed_and_a_generator_and_devices_default_to_the_cpu():
    both, defaults = [], []
    for name, obj, params in public_functions():
        if "seed" in params and "generator" in params:
            both.append(name)
        fn = obj.__init__ if inspect.isclass(obj) else obj
        device = inspect.signature(fn).parameters.get("device")
        # an entry point: "auto", as the command line
        if (
            device is not None
            and device.default not in ("cpu", inspect.Parameter.empty)
            and name != "colddiff_lib.training.TrainConfig"
        ):
            defaults.append(f"{name}: device={device.default!r}")
    assert not both, both
    assert not defaults, defaults


def test_every_device_argument_takes_what_resolve_device_takes():
    """'auto' and torch.device objects work wherever a device is taken (they land on this machine's best)."""
    from colddiff_lib import degradations as dg
    from colddiff_lib import zoo
    from colddiff_lib.generation import GaussianPrior, generate
    from colddiff_lib.runtime import resolve_device

    best = resolve_device("auto")
    R, D = zoo.load_pretrained("mnist-superres-gen", device="auto")
    assert next(R.parameters()).device.type == best.type
    assert (
        next(zoo.load_classifier(device=torch.device("cpu")).parameters()).device.type
        == "cpu"
    )
    images = (
        torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    assert GaussianPrior(D, images)(2, device="auto").device.type == best.type
    assert (
        dg.GaussianNoise(T=3).prior(2, (1, 8, 8), device="auto").device.type
        == best.type
    )
    x0, x_T = generate(
        lambda x, t: x, dg.GaussianNoise(T=3), 2, (1, 8, 8), device="auto"
    )
    assert x0.device.type == x_T.device.type == best.type


def test_fixed_sets_of_results_are_named_tuples():
    from colddiff_lib import degradations as dg
    from colddiff_lib import zoo
    from colddiff_lib.checkpoint import Restored
    from colddiff_lib.generation import Generated, generate
    from colddiff_lib.sampling import Trajectory, trajectory

    D = dg.GaussianBlur(T=3, kernel_size=3, std=1.0, collapse_at_T=True)
    run = trajectory(lambda x, t: x, D, torch.zeros(1, 1, 8, 8), 3)
    assert (
        isinstance(run, Trajectory)
        and run.levels == [3, 2, 1, 0]
        and torch.equal(run.xs[-1], run.x0)
    )
    made = generate(
        lambda x, t: x, D, 2, (1, 8, 8), generator=torch.Generator().manual_seed(0)
    )
    assert isinstance(made, Generated) and made.x0.shape == made.x_T.shape == (
        2,
        1,
        8,
        8,
    )
    pair = zoo.load_pretrained("mnist-superres")
    assert isinstance(pair, Restored) and pair.degradation.T == pair[1].T
