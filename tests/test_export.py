"""colddiff_lib.export: the ONNX graphs the book's live figures run, checked with onnxruntime against PyTorch."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib import export, files, zoo
from colddiff_lib.sampling import sample
from conftest import library_degradations, quick_instance

ROOT = Path(__file__).resolve().parents[1]

ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is in the test extra (pip install -e '.[test]')"
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The book's models as exported, {name: folder}: ``make static``'s folder (which ``make test`` writes
    first) where it was made from this very library and zoo (:func:`export.is_current`), else exported
    once for the module into a scratch folder (the export traces eight graphs: 35 s)."""
    out = ROOT / "book" / "_static" / "live"
    if not export.is_current(out):
        out = tmp_path_factory.mktemp("live")
        export.export_book(out)
    return {name: out / name for name in export.BOOK_MODELS}


def test_an_export_records_what_it_was_made_from(tmp_path, monkeypatch):
    """book.json's made_from is the digest of the library's sources, the cards and the packages: a folder
    is current until one of them changes, and a folder without it (or without book.json) is not."""
    (tmp_path / "book.json").write_text(
        json.dumps({"models": {}, "made_from": export.source_digest()})
    )
    assert export.is_current(tmp_path)
    real_card = zoo.card
    monkeypatch.setattr(
        zoo,
        "card",
        lambda name: {**real_card(name), "step": real_card(name)["step"] + 1},
    )
    assert not export.is_current(tmp_path)
    monkeypatch.setattr(zoo, "card", real_card)
    (tmp_path / "book.json").write_text(json.dumps({"models": {}}))
    assert not export.is_current(tmp_path)
    (tmp_path / "book.json").unlink()
    assert not export.is_current(tmp_path)


def session(folder, graph="step.onnx"):
    return ort.InferenceSession(str(folder / graph), providers=["CPUExecutionProvider"])


@pytest.mark.slow
@pytest.mark.parametrize("name", export.BOOK_MODELS)
def test_one_step_agrees_with_the_pytorch_sampler(name, exported):
    """Every level s, both algorithms: step.onnx's x_{s-1} is the library's, from the same x_s, as closely as
    PyTorch's own float32 step is to its float64 step (a relative bound: onnxruntime's versions round in other
    orders), with a floor of 1e-4."""
    R, D = zoo.load_pretrained(name)
    R = R.float().eval()
    R64 = copy.deepcopy(R).double().eval()
    steps = session(exported[name])
    x0 = export.page_digits(3)
    for s in range(1, D.T + 1):
        for image in D(x0, s).split(1):
            for algorithm, flag in (("improved", 1.0), ("naive", 0.0)):
                got, _ = steps.run(
                    None,
                    {
                        "x": image.numpy(),
                        "s": np.array([s]),
                        "improved": np.array([flag], np.float32),
                    },
                )
                want, want64 = (
                    _step(net, D, image.to(dtype), s, algorithm)
                    for net, dtype in ((R, torch.float32), (R64, torch.float64))
                )
                if s == 1:  # at s = 1 the step is the whole sampler
                    assert torch.equal(
                        sample(R, D, image, s, algorithm=algorithm), want
                    )
                gap = float((torch.from_numpy(got) - want).abs().max())
                float_gap = float((want.double() - want64).abs().max())
                assert gap <= max(3 * float_gap, 1e-4), (
                    f"{name}, {algorithm}, s = {s}: {gap:.2e} ({float_gap:.2e})"
                )


def _step(R, D, x, s, algorithm):
    with torch.no_grad():
        hat = R(x, torch.tensor([s])).clamp(-1, 1)
    return D(hat, s - 1) if algorithm == "naive" else x - D(hat, s) + D(hat, s - 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist-blur", "mnist-superres"])
def test_a_whole_run_agrees_as_closely_as_float32_pytorch_agrees_with_float64(
    name, exported
):
    """T steps from D(x0, T): onnxruntime and PyTorch in float32 end as close as PyTorch's float32 run is to its
    float64 run (both are float32 programs that round in a different order): a bound relative to that gap,
    which holds across onnxruntime's versions (a fixed cap of 5e-3 failed on 1.32 at 9.2e-3)."""
    R, D = zoo.load_pretrained(name)
    x_T = D(export.page_digits(4), D.T)
    gap = export.check_export(exported[name], x_T, improved=True)
    ref32 = sample(R.float().eval(), D, x_T, D.T)
    ref64 = sample(copy.deepcopy(R).double().eval(), D, x_T.double(), D.T)
    float_gap = float((ref32.double() - ref64).abs().max())
    print(
        f"\n{name}: onnxruntime vs PyTorch {gap:.1e}; PyTorch float32 vs float64 {float_gap:.1e}"
    )
    assert gap <= max(3 * float_gap, 1e-4)


# : What the lowest onnxruntime pyproject.toml allows (1.18) reads: ONNX IR version 10,
# opset 21.
ORT_LOWEST = {"ir_version": 10, "opset": 21}


@pytest.mark.slow
def test_the_graphs_stay_within_what_the_lowest_supported_onnxruntime_reads(exported):
    import onnx

    for folder in exported.values():
        for graph in ("step.onnx", "degrade.onnx"):
            model = onnx.load(str(folder / graph))
            opset = max(
                o.version for o in model.opset_import if o.domain in ("", "ai.onnx")
            )
            assert (
                model.ir_version <= ORT_LOWEST["ir_version"]
                and opset <= ORT_LOWEST["opset"]
            ), (graph, model.ir_version, opset)
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"onnxruntime>=1.18"' in pyproject


@pytest.mark.slow
def test_degrade_graph_is_the_degradation(exported):
    for name in ("mnist-blur", "mnist-superres"):
        _, D = zoo.load_pretrained(name)
        graph = session(exported[name], "degrade.onnx")
        x0 = export.page_digits(1)
        for t in range(D.T + 1):
            (got,) = graph.run(None, {"x0": x0.numpy(), "t": np.array([t])})
            assert np.abs(got - D(x0, t).numpy()).max() <= 1e-5, (name, t)


@pytest.mark.slow
def test_files_are_small_and_described(exported):
    for name, folder in exported.items():
        meta = json.loads((folder / "model.json").read_text())
        _, D = zoo.load_pretrained(name)
        assert (
            meta["name"] == name
            and meta["T"] == D.T
            and meta["degradation"] == D.config()
        )
        assert (folder / "step.onnx").stat().st_size < 6e6  # a few MB per model
        assert meta["sha256"]["step.onnx"] == files.sha256_file(folder / "step.onnx")
        assert (meta["prior"] is not None) == (meta["task"] == "generation")
    book = json.loads((next(iter(exported.values())).parent / "book.json").read_text())
    assert book["made_from"] == export.source_digest()
    assert set(book["models"]) == set(export.BOOK_MODELS) and book["colours"][
        "improved"
    ].startswith("#")
    digits = json.loads(
        (next(iter(exported.values())).parent / "digits.json").read_text()
    )
    x = (
        torch.tensor(digits["pixels"], dtype=torch.float32).view(-1, 1, 32, 32) / 127.5
        - 1
    )
    assert torch.equal(x, export.page_digits(len(x)))


GENERATORS = [
    name for name in export.BOOK_MODELS if zoo.card(name)["task"] == "generation"
]


@pytest.mark.slow
@pytest.mark.parametrize("name", GENERATORS)
def test_the_page_prior_is_the_cards_gaussian_prior_in_one_linear_form(name, exported):
    """model.json's prior is GaussianPrior fitted with the card's defaults (zoo.sampling), and its linear form
    paints, from the same draws z, the very starts GaussianPrior draws: clamp(offset + z @ basis)."""
    meta = json.loads((exported[name] / "model.json").read_text())
    p, settings = meta["prior"], zoo.sampling(name)
    _, D = zoo.load_pretrained(name)
    # GaussianPrior with every setting of the card, as zoo.generate samples
    prior = zoo.prior(name)
    assert prior.weights.numel() == settings["components"]
    assert p["level"] == prior.level == (settings["level"] or D.T)
    assert (p["algorithm"], p["noise_std"]) == (
        settings["algorithm"],
        settings["noise_std"],
    )
    for key in ("weights", "means", "scale_trils"):
        assert np.allclose(p[key], getattr(prior, key).numpy(), atol=1e-9), key
    offset, basis = (
        torch.tensor(p["offset"], dtype=torch.float64),
        torch.tensor(p["basis"], dtype=torch.float64),
    )
    assert offset.shape == (int(np.prod(meta["shape"])),) and basis.shape == (
        prior.means.shape[1],
        len(offset),
    )
    z = prior.draw_latents(500, torch.Generator().manual_seed(3))
    painted = (offset + z @ basis).clamp(-1, 1).float().view(-1, *meta["shape"])
    assert torch.allclose(
        painted, prior(500, generator=torch.Generator().manual_seed(3)), atol=1e-6
    )


def test_axis_matrices_of_the_separable_degradations():
    """D(x0, t) = M_t x0 M_t^T for every degradation whose export_form says so (in every configuration the
    library's tests build); the others say they have none, and export refuses them."""
    x0 = export.page_digits(2).double()
    separable = 0
    for name, cls in library_degradations().items():
        D = quick_instance(cls)
        if D.export_form == "separable":
            separable += 1
            M = D.axis_matrices(32, dtype=torch.float64)
            assert M.shape == (D.T + 1, 32, 32) and torch.equal(
                M[0], torch.eye(32, dtype=torch.float64)
            )
            for t in range(D.T + 1):
                assert torch.allclose(M[t] @ x0 @ M[t].T, D(x0, t), atol=1e-10), (
                    name,
                    t,
                )
        else:
            assert D.export_form is None
            with pytest.raises(NotImplementedError):
                D.axis_matrices(32)
    assert separable >= 2  # the book's pages run two of them
    for D in (
        dg.GaussianBlur(T=20, collapse_at_T=True),
        dg.GaussianBlur(T=5, padding="reflect"),
    ):
        M = D.axis_matrices(32, dtype=torch.float64)
        assert all(
            torch.allclose(M[t] @ x0 @ M[t].T, D(x0, t), atol=1e-10)
            for t in range(D.T + 1)
        )
    # a separable class in a configuration that is not
    bicubic = dg.SuperResolution(T=3, mode="bicubic")
    assert bicubic.export_form is None
    with pytest.raises(NotImplementedError, match="bicubic"):
        bicubic.axis_matrices(32)


def test_export_refuses_what_the_page_cannot_run(tmp_path, monkeypatch):
    with pytest.raises(
        ValueError, match="mnist-snow.*cannot export.*export_form is None"
    ):
        export.export_model("mnist-snow", tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "colddiff_lib",
            "export",
            "mnist-snowy",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.count("\n") == 1
        and "mnist-snow" in proc.stderr
    )
    settings = zoo.sampling("mnist-superres-gen")
    monkeypatch.setattr(zoo, "sampling", lambda name: {**settings, "algorithm": "ddim"})
    with pytest.raises(
        ValueError, match="default sampler 'ddim' does not run in the page"
    ):
        export.page_prior("mnist-superres-gen")
