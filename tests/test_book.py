"""The book's notebooks: committed clean, all in the table of contents, runnable with small parameters.

nbval runs every notebook with its defaults (``make test`` passes ``--nbval-lax book``); this file
checks the committed form and runs each through papermill with ``QUICK=True``. The executed copies
are kept in ``_build/papermill`` for the browser test (tests/test_browser.py).
"""

import json
from pathlib import Path

import pytest
import yaml
from conftest import cell_source, notebook_cells

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "_build" / "papermill"


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def notebooks():
    return sorted((ROOT / "book").glob("*.ipynb"))


def execute(path, out, **parameters):
    """Run the notebook ``path`` with papermill in its own folder, with ``parameters``; the executed copy goes to ``out``."""
    import papermill

    papermill.execute_notebook(
        str(path),
        str(out),
        cwd=str(path.parent),
        kernel_name="python3",
        parameters=parameters,
        progress_bar=False,
        request_save_on_cell_execute=False,
    )


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    listed = toc_files()
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").is_file() for ext in (".ipynb", ".md")), (
            f"{entry} is missing"
        )
    in_book = {str(p.relative_to(ROOT).with_suffix("")) for p in notebooks()}
    assert in_book <= set(listed), f"not in _toc.yml: {sorted(in_book - set(listed))}"
    assert len([e for e in listed if (ROOT / f"{e}.ipynb").is_file()]) >= 8, (
        "every chapter is a notebook"
    )


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    for cell in notebook_cells(path):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
                path.name
            )


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_has_a_parameters_cell_and_exercises(path):
    tagged = [
        c
        for c in notebook_cells(path)
        if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    source = cell_source(tagged[0])
    for name in ("FULL_TRAINING", "DEVICE", "QUICK"):
        assert name in source, f"{path.name}: the parameters cell should set {name}"
    code = [c for c in notebook_cells(path) if c["cell_type"] == "code"]
    # right after the parameters: the library, on Colab only
    install = cell_source(code[1])
    assert (
        'if "google.colab" in sys.modules' in install and "%pip install" in install
    ), path.name
    # The library only (Colab needs no Jupyter Book), and Colab's widget manager for the
    # sliders.
    assert '"colddiff-lib @ git+' in install and "[book]" not in install, path.name
    assert "output.enable_custom_widget_manager()" in install, path.name
    assert "remove-cell" in code[1]["metadata"].get("tags", []), (
        f"{path.name}: the install cell is not for the HTML"
    )
    text = "\n".join(
        cell_source(c) for c in notebook_cells(path) if c["cell_type"] == "markdown"
    )
    if not path.name.startswith("00_"):
        assert text.count("{exercise}") >= 2, (
            f"{path.name} should end with at least two exercises"
        )
        assert text.count("{solution") >= 2, (
            f"{path.name}: every exercise has a solution"
        )
    assert "learn" in text.lower(), (
        f"{path.name} should open with what the reader will learn"
    )


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_runs_with_small_parameters(path):
    """The chapter runs, and every number its prose reads ({glue:text}`name`) was glued by its run: a name
    the code no longer glues would leave a hole in the rendered sentence (make test does not build the HTML)."""
    import re

    EXECUTED.mkdir(parents=True, exist_ok=True)
    execute(path, EXECUTED / path.name, QUICK=True, FULL_TRAINING=False, DEVICE="cpu")
    executed = notebook_cells((EXECUTED / path.name))
    wanted = {
        name
        for c in executed
        if c["cell_type"] == "markdown"
        for name in re.findall(r"\{glue(?::\w+)?\}`([^`]+)`", cell_source(c))
    }
    glued = {
        o.get("metadata", {}).get("scrapbook", {}).get("name")
        for c in executed
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    }
    assert not sorted(wanted - glued), (
        f"{path.name}: the prose reads names no cell glued"
    )


def full_training_notebooks():
    return [
        p
        for p in notebooks()
        if any("if FULL_TRAINING" in cell_source(c) for c in notebook_cells(p))
    ]


@pytest.mark.parametrize("path", full_training_notebooks(), ids=lambda p: p.name)
def test_full_training_path_runs_with_small_parameters(path, tmp_path):
    """FULL_TRAINING=True takes the GPU path (zoo configs, small preset); QUICK shrinks its steps so
    that the path itself, not only the CPU default, is executed here."""
    out = tmp_path / path.name
    execute(path, out, QUICK=True, FULL_TRAINING=True, DEVICE="cpu")
    executed = json.loads(out.read_text())
    assert any("FULL_TRAINING = True" in cell_source(c) for c in executed["cells"]), (
        "parameters injected"
    )


def test_chapter_3_trains_on_a_torchvision_dataset(tmp_path, monkeypatch):
    """The Colab option DATASET="mnist": torchvision's MNIST files (written here, small and random),
    found through COLDDIFF_DATA, drive the whole chapter."""
    from test_data import _fake_mnist

    _fake_mnist(tmp_path / "data", "MNIST", n_train=160, n_test=140)
    monkeypatch.setenv("COLDDIFF_DATA", str(tmp_path / "data"))
    path = ROOT / "book" / "03_restoration.ipynb"
    out = tmp_path / path.name
    execute(path, out, QUICK=True, DEVICE="cpu", DATASET="mnist")
    printed = "".join(
        "".join(o.get("text", ""))
        for c in notebook_cells(out)
        for o in c.get("outputs", [])
    )
    assert "name='mnist-train', images=(160, 1, 32, 32)" in printed, printed[:2000]


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_the_first_code_cell_checks_the_parameters(path):
    code = [c for c in notebook_cells(path) if c["cell_type"] == "code"]
    # after the parameters and the Colab install cell
    first = cell_source(code[2])
    assert (
        "check_parameters(FULL_TRAINING=FULL_TRAINING, DEVICE=DEVICE, QUICK=QUICK)"
        in first
    ), path.name


@pytest.mark.parametrize(
    "parameters, message",
    [
        (
            {"DEVICE": "tpu"},
            "notebook parameter DEVICE = 'tpu': device must be 'auto', 'cpu'",
        ),
        ({"QUICK": "yes"}, "notebook parameter QUICK = 'yes': expected True or False"),
        (
            {"FULL_TRAINING": 1},
            "notebook parameter FULL_TRAINING = 1: expected True or False",
        ),
    ],
    ids=["device-tpu", "quick-yes", "full-training-1"],
)
def test_a_bad_parameter_stops_the_first_cell(parameters, message, tmp_path):
    assert_stops_at_the_parameter_check(parameters, message, tmp_path)


def assert_stops_at_the_parameter_check(parameters, message, tmp_path):
    """The preface run with ``parameters`` fails with ``message``, in its first library cell and no other."""
    import papermill

    path = ROOT / "book" / "00_preface.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        execute(path, tmp_path / path.name, **parameters)
    assert message in str(info.value)
    executed = notebook_cells((tmp_path / path.name))
    failed = [
        i
        for i, c in enumerate(executed)
        if c["cell_type"] == "code"
        and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    first_library_cell = [
        i for i, c in enumerate(executed) if "check_parameters(" in cell_source(c)
    ][0]
    assert failed == [first_library_cell]


@pytest.mark.parametrize(
    "parameters, message",
    [
        (
            {"quick": True},
            "notebook parameter quick (injected with papermill -p): not a parameter of this chapter, "
            "expected one of FULL_TRAINING, DEVICE, QUICK (did you mean 'QUICK'?)",
        ),
        (
            {"QUICK": True, "DEVCE": "cpu"},
            "notebook parameter DEVCE (injected with papermill -p): not a parameter of "
            "this chapter, expected one of FULL_TRAINING, DEVICE, QUICK (did you mean "
            "'DEVICE'?)",
        ),
    ],
    ids=["quick-lowercase", "devce"],
)
def test_a_misspelled_parameter_name_stops_the_first_cell(
    parameters, message, tmp_path
):
    """papermill only warns about a name the parameters cell does not set; the chapter's check refuses it
    before anything runs at full size."""
    assert_stops_at_the_parameter_check(parameters, message, tmp_path)


def test_the_injected_names_are_read_from_the_kernel_history():
    from colddiff_lib.notebook import check_injected_names, injected_parameters

    params = 'FULL_TRAINING = False  # True: train\nDEVICE = "auto"\nQUICK = False\nDATASET = "mnist5k"'
    assert injected_parameters(
        ["", params, '# Parameters\nDATASET = "mnist"\n', "import torch"]
    ) == (["DATASET"], ["FULL_TRAINING", "DEVICE", "QUICK", "DATASET"])
    # documented names pass
    check_injected_names(
        ["", params, '# Parameters\nDATASET = "mnist"\nQUICK = True\n']
    )
    with pytest.raises(
        ValueError, match="notebook parameter dataset .*did you mean 'DATASET'"
    ):
        check_injected_names(["", params, '# Parameters\ndataset = "mnist"\n'])
    # No injection (a reader's own session), or an injected-looking cell that is not
    # after the parameters: no check.
    check_injected_names(["", params, "x = 1"])
    check_injected_names(["", "x = 1", "# Parameters\nquick = True\n"])
    check_injected_names([])


def test_chapters_3_and_5_agree_on_what_the_l1_optimum_paints():
    """Chapter 3's exercise: the l1-optimal R paints the per-pixel median, ink or background, never grey;
    chapter 5 must not call the median an average that blurs to grey."""
    text = {
        p.name: "".join(cell_source(c) for c in notebook_cells(p)) for p in notebooks()
    }
    assert (
        "the median, which is ink or background, never grey"
        in text["03_restoration.ipynb"]
    )
    ch5 = text["05_reconstruction.ipynb"]
    assert "the median commits every pixel to ink or background" in ch5
    assert "per-pixel *average* of them (the median" not in ch5


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in notebooks()
        if p.name[:2] in ("01", "02", "03", "04", "05", "06", "07")
    ],
    ids=lambda p: p.name,
)
def test_every_chapter_ends_with_key_takeaways_before_its_exercises(path):
    text = "".join(
        cell_source(c) for c in notebook_cells(path) if c["cell_type"] == "markdown"
    )
    assert "## Key takeaways" in text and "```{admonition} What to remember" in text, (
        path.name
    )
    assert text.index("## Key takeaways") < text.index("## Exercises"), path.name


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_plumbing_cells_hide_their_input(path):
    """Cells that define plotting or table helpers (plot_*, show_*, several helpers at once) keep their code
    behind a toggle in the HTML (or out of it), so that each chapter reads as ideas and figures."""
    import re

    for i, c in enumerate(notebook_cells(path)):
        if c["cell_type"] != "code":
            continue
        source = cell_source(c)
        defs = re.findall(r"^def (\w+)", source, re.M)
        plumbing = [d for d in defs if d.startswith(("plot_", "show_"))] or (
            defs if len(defs) >= 3 else []
        )
        if plumbing:
            # a removed cell is hidden further still: its code and output are not in the
            # HTML at all
            tags = set(c["metadata"].get("tags", []))
            assert tags & {"hide-input", "remove-input", "remove-cell"}, (
                f"{path.name} cell {i} defines {plumbing}"
            )


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_code_lines_fit_the_column(path):
    """Code cells keep to 88 characters a line, what the column shows at 1280 px without scrolling (book.css;
    the browser test measures the rendered cells, this catches a long line before a build)."""
    long = [
        (i, line)
        for i, c in enumerate(notebook_cells(path))
        if c["cell_type"] == "code"
        for line in cell_source(c).splitlines()
        if len(line) > 88
    ]
    assert not long, f"{path.name}: {long[:3]}"
