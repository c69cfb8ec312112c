"""colddiff_lib.export: the ONNX graphs the book's live figures run, checked with onnxruntime against PyTorch."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from colddiff_lib import export, zoo
from colddiff_lib.degradations import REGISTRY, build
from colddiff_lib.sampling import sample

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The book's models exported once for the module: {name: folder}."""
    out = tmp_path_factory.mktemp("live")
    export.export_book(out)
    return {name: out / name for name in export.BOOK_MODELS}


def session(folder, graph="step.onnx"):
    return ort.InferenceSession(str(folder / graph), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", export.BOOK_MODELS)
def test_one_step_agrees_with_the_pytorch_sampler_to_1e_4(name, exported):
    """Every level s, both algorithms: step.onnx's x_{s-1} is the library's to 1e-4, from the same x_s."""
    R, D = zoo.load_pretrained(name)
    R = R.float().eval()
    steps = session(exported[name])
    x0 = export.page_digits(3)
    for s in range(1, D.T + 1):
        for image in D(x0, s).split(1):
            for algorithm, flag in (("improved", 1.0), ("naive", 0.0)):
                got, _ = steps.run(None, {"x": image.numpy(), "s": np.array([s]), "improved": np.array([flag], np.float32)})
                ref = sample(R, D, image, s, algorithm=algorithm, callback=None) if s == 1 else None
                with torch.no_grad():
                    hat = R(image, torch.tensor([s])).clamp(-1, 1)
                want = D(hat, s - 1) if algorithm == "naive" else image - D(hat, s) + D(hat, s - 1)
                if ref is not None:  # at s = 1 the step is the whole sampler
                    assert torch.equal(ref, want)
                gap = float((torch.from_numpy(got) - want).abs().max())
                assert gap <= 1e-4, f"{name}, {algorithm}, s = {s}: {gap:.2e}"


@pytest.mark.parametrize("name", ["mnist-blur-web", "mnist-superres"])
def test_a_whole_run_agrees_as_closely_as_float32_pytorch_agrees_with_float64(name, exported):
    """T steps from D(x0, T): onnxruntime and PyTorch in float32 end as close as PyTorch's float32 run is to its
    float64 run (both are float32 programs that round in a different order), and within 5e-3."""
    R, D = zoo.load_pretrained(name)
    x_T = D(export.page_digits(4), D.T)
    gap = export.check_export(exported[name], x_T, improved=True)
    ref32 = sample(R.float().eval(), D, x_T, D.T)
    ref64 = sample(copy.deepcopy(R).double().eval(), D, x_T.double(), D.T)
    float_gap = float((ref32.double() - ref64).abs().max())
    print(f"\n{name}: onnxruntime vs PyTorch {gap:.1e}; PyTorch float32 vs float64 {float_gap:.1e}")
    assert gap <= max(3 * float_gap, 1e-4) and gap <= 5e-3


def test_degrade_graph_is_the_degradation(exported):
    for name in ("mnist-blur-web", "mnist-superres"):
        _, D = zoo.load_pretrained(name)
        graph = session(exported[name], "degrade.onnx")
        x0 = export.page_digits(1)
        for t in range(D.T + 1):
            (got,) = graph.run(None, {"x0": x0.numpy(), "t": np.array([t])})
            assert np.abs(got - D(x0, t).numpy()).max() <= 1e-5, (name, t)


def test_files_are_small_and_described(exported):
    for name, folder in exported.items():
        meta = json.loads((folder / "model.json").read_text())
        assert meta["name"] == name and meta["T"] == zoo.load_pretrained(name)[1].T
        assert (folder / "step.onnx").stat().st_size < 6e6  # a few MB per model
        assert meta["sha256"]["step.onnx"] == zoo.sha256_of(folder / "step.onnx")
        if meta["task"] == "generation":  # what the page draws x_T from
            prior = meta["prior"]
            assert prior["latent"] in ("colour", "image")
            assert len(prior["scale_tril"]) == len(prior["mean"])
    book = json.loads((next(iter(exported.values())).parent / "book.json").read_text())
    assert set(book["models"]) == set(export.BOOK_MODELS) and book["colours"]["improved"].startswith("#")
    digits = json.loads((next(iter(exported.values())).parent / "digits.json").read_text())
    x = torch.tensor(digits["pixels"], dtype=torch.float32).view(-1, 1, 32, 32) / 127.5 - 1
    assert torch.equal(x, export.page_digits(len(x)))


def test_axis_matrices_of_the_separable_degradations():
    """D(x0, t) = M_t x0 M_t^T for blur and area super-resolution; others say they have none."""
    x0 = export.page_digits(2).double()
    for D in (build("blur", T=20, collapse_at_T=True), build("blur", T=5, padding="reflect"), build("superres", T=4)):
        M = D.axis_matrices(32, dtype=torch.float64)
        assert M.shape == (D.T + 1, 32, 32) and torch.equal(M[0], torch.eye(32, dtype=torch.float64))
        for t in range(D.T + 1):
            assert torch.allclose(M[t] @ x0 @ M[t].T, D(x0, t), atol=1e-10)
    library = {n for n, cls in REGISTRY.items() if cls.__module__.startswith("colddiff_lib.degradations")}
    for name in sorted(library - {"blur", "superres"}):
        D = build(name) if name != "blend" else build(name, targets="lfw")
        with pytest.raises(NotImplementedError, match="not a separable linear"):
            D.axis_matrices(32)
    with pytest.raises(NotImplementedError, match="bicubic"):
        build("superres", T=3, mode="bicubic").axis_matrices(32)


def test_export_refuses_a_degradation_the_page_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="mnist-snow.*cannot export"):
        export.export_model("mnist-snow", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "colddiff_lib", "export", "mnist-snowy", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "mnist-snow" in proc.stderr
