"""Every solution in the book passes its checker, and every degradation the chapters write is complete.

The notebooks mark a solution with sphinx-exercise's gated directives: a markdown cell
``{solution-start} LABEL``, the solution's cells, and a cell with ``{solution-end}``. Each solution
code cell that calls a checker (``check_...``) is run here as a reader would run it: after the
chapter's parameters (``QUICK = True``, ``DEVICE = "cpu"``) and its first code cell, and after the
earlier cells that define the names it uses. Every checker it calls must say "Correct" and return
True, except the calls that a solution makes on purpose to show a wrong answer (listed below).

Every class of the book that subclasses a degradation (chapter 2's ``Curtain``, chapter 7's
``PixelateFade`` and the exercises' solutions) must be a complete class: a registry name, a
constructor with defaults, and the contract (:func:`colddiff_lib.degradations.contract.check`) kept.
"""

import ast
import builtins
import contextlib
import io
import re
from pathlib import Path

import matplotlib
import pytest
import torch
from conftest import cell_source, notebook_cells

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("0[1-9]_*.ipynb"))

pytestmark = pytest.mark.usefixtures("single_thread")

# : Checker calls that a solution makes on purpose to show a wrong answer: label ->
# classes of the answer.
DELIBERATE = {"ch7-darken": {"DarkenClaimingLinear"}}
#: Classes the chapters write on purpose with a slip, to show what the checker says.
SLIPS = {"PixelateFadeSlip", "DarkenClaimingLinear"}


def python(cell) -> str:
    """A code cell as plain Python (IPython's magics, such as the Colab cell's %pip, translated)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source(cell))


def solutions(path):
    """[(label, [indices of the solution's code cells])] of every gated solution of the notebook."""
    found, label, code = [], None, []
    for i, cell in enumerate(notebook_cells(path)):
        text = cell_source(cell)
        if cell["cell_type"] == "markdown" and "{solution-start}" in text:
            label, code = re.search(r"\{solution-start\}\s+(\S+)", text).group(1), []
        elif label is not None and cell["cell_type"] == "code":
            code.append(i)
        if (
            label is not None
            and cell["cell_type"] == "markdown"
            and "{solution-end}" in text
        ):
            found.append((label, code))
            label = None
    assert label is None, f"{path.name}: solution {label} has no solution-end"
    return found


def exercises(path):
    """{label: set of the checkers its text names} for every exercise of the notebook."""
    out = {}
    for cell in notebook_cells(path):
        text = cell_source(cell)
        for block in re.findall(
            r"`{3,4}\{exercise\}(.*?)`{3,4}\n?(?:\Z|\n)", text + "\n", flags=re.S
        ):
            label = re.search(r":label:\s*(\S+)", block).group(1)
            out[label] = set(re.findall(r"\b(check_\w+)\(", block))
    return out


def checker_solutions():
    cases = []
    for path in CHAPTERS:
        cells = notebook_cells(path)
        for label, code in solutions(path):
            checking = [
                i for i in code if re.search(r"\bcheck_\w+\(", cell_source(cells[i]))
            ]
            if checking:
                cases.append(
                    pytest.param(path, label, checking, id=f"{path.stem[:2]}-{label}")
                )
    return cases


# --- running cells as a reader would
# ------------------------------------------------------------
def _bound_at_top(tree) -> set:
    """Names a cell binds at its top level (assignments, definitions, imports, for/with targets)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names


def _free_names(tree) -> set:
    """Names a cell reads that it does not bind anywhere (a conservative over-approximation)."""
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return loaded - bound - set(dir(builtins))


class Reader:
    """A notebook run the way a reader runs it: parameters, the first code cell, then cells on demand."""

    def __init__(self, path):
        self.path = path
        self.cells = notebook_cells(path)
        self.code = [i for i, c in enumerate(self.cells) if c["cell_type"] == "code"]
        self.ns = {"__name__": "__main__"}
        self.done = set()
        self.out = io.StringIO()
        self.run(self.code[0])  # the parameters cell
        # what the book's tests inject
        self.ns.update(QUICK=True, DEVICE="cpu", FULL_TRAINING=False)
        # the Colab install cell: not here
        self.done.add(self.code[1])
        # imports and check_parameters
        self.run(self.code[2])

    def tree(self, i):
        return ast.parse(python(self.cells[i]))

    def run(self, i):
        """Run cell ``i`` after the earlier cells that define the names it needs."""
        if i in self.done:
            return
        self.done.add(i)
        for name in sorted(_free_names(self.tree(i)) - set(self.ns)):
            definers = [
                j for j in self.code if j < i and name in _bound_at_top(self.tree(j))
            ]
            assert definers, (
                f"{self.path.name}: cell {i} uses {name!r}, which no earlier cell defines"
            )
            self.run(definers[-1])
        with contextlib.redirect_stdout(self.out):
            exec(
                compile(python(self.cells[i]), f"{self.path.name}[cell {i}]", "exec"),
                self.ns,
            )


@pytest.fixture
def registry():
    """Degradation classes that the notebooks register are removed again afterwards."""
    from colddiff_lib import degradations as dg

    before = set(dg.REGISTRY)
    yield dg.REGISTRY
    for name in set(dg.REGISTRY) - before:
        dg.REGISTRY.pop(name)


@pytest.fixture
def calls(monkeypatch):
    """Every checker of colddiff_lib.exercises, recording (checker, its first argument, its verdict)."""
    import importlib
    import pkgutil

    import colddiff_lib.exercises as package

    record = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name in [n for n in vars(module) if n.startswith("check_")]:
            original = getattr(module, name)
            if getattr(original, "__module__", None) != module.__name__:
                continue

            def wrapper(*args, __original=original, __name=name, **kwargs):
                verdict = __original(*args, **kwargs)
                record.append((__name, args[0] if args else None, verdict))
                return verdict

            monkeypatch.setattr(module, name, wrapper)
    return record


@pytest.mark.parametrize("path, label, checking", checker_solutions())
def test_every_solution_passes_its_checker(
    path, label, checking, calls, registry, monkeypatch
):
    monkeypatch.chdir(path.parent)  # where the notebooks run
    reader = Reader(path)
    for i in checking:
        start = len(calls)
        reader.run(i)
        assert len(calls) > start, f"{path.name} cell {i} ({label}) called no checker"
    printed = reader.out.getvalue()
    for name, answer, verdict in calls:
        if type(answer).__name__ in DELIBERATE.get(label, set()):
            assert verdict is False, (
                f"{label}: the deliberately wrong {type(answer).__name__} passed {name}"
            )
        else:
            assert verdict is True, (
                f"{label}: {name} said Not yet to the book's solution:\n{printed}"
            )
    assert printed.count("Correct: ") == sum(v is True for _, _, v in calls), printed


def test_every_exercise_with_a_checker_has_a_solution_that_calls_it():
    for path in CHAPTERS:
        cells = notebook_cells(path)
        solved = {
            label: "".join(cell_source(cells[i]) for i in code)
            for label, code in solutions(path)
        }
        for label, checkers in exercises(path).items():
            for checker in checkers:
                assert checker in solved.get(label, ""), (
                    f"{path.name}: {label}'s solution never calls {checker}"
                )
    assert sum(len(exercises(p)) for p in CHAPTERS) >= 14


# --- the degradations the chapters write
# ----------------------------------------------------------
def book_degradations():
    """(notebook, class name) of every class in the chapters that subclasses a degradation."""
    found = []
    for path in CHAPTERS:
        known = {"Degradation"}
        for cell in notebook_cells(path):
            if cell["cell_type"] != "code":
                continue
            for node in ast.parse(python(cell)).body:
                if isinstance(node, ast.ClassDef):
                    bases = {
                        b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")
                        for b in node.bases
                    }
                    if bases & known:
                        known.add(node.name)
                        found.append((path, node.name))
    return found


def test_the_book_writes_its_own_degradations():
    names = {name for _, name in book_degradations()}
    assert {"Curtain", "PixelateFade", "Darken", "PixelateToFlat"} <= names, names


@pytest.mark.parametrize(
    "path, name",
    book_degradations(),
    ids=lambda v: v if isinstance(v, str) else v.stem[:2],
)
def test_every_degradation_in_the_book_is_a_complete_class(
    path, name, registry, monkeypatch
):
    """Its class statement and imports run after the chapter's first cell; the class builds from its
    defaults, has a registry name, rebuilds from its config and keeps the contract (the slips shown on
    purpose must break it)."""
    from colddiff_lib.degradations import build, contract

    monkeypatch.chdir(path.parent)
    reader = Reader(path)
    for cell in reader.cells:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse(python(cell))
        keep = [
            n
            for n in tree.body
            if isinstance(n, (ast.Import, ast.ImportFrom))
            or (
                isinstance(n, ast.ClassDef)
                and n.name in {c for _, c in book_degradations()}
            )
        ]
        if keep:
            exec(
                compile(ast.Module(body=keep, type_ignores=[]), path.name, "exec"),
                reader.ns,
            )
        if name in reader.ns:
            break
    cls = reader.ns[name]
    D = cls()  # every argument has a default
    assert cls.name is not None and registry[cls.name] is cls, (
        f"{name} has no registry name"
    )
    problems, summary = contract.check(D)
    if name in SLIPS:
        assert problems, f"{name} is shown as a slip but keeps the contract"
        return
    assert problems == [], "\n".join(problems)
    rebuilt = build(**D.config())
    assert type(rebuilt) is cls
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(rebuilt(x, D.T), D(x, D.T))
