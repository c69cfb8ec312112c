"""One formatter across the library, the tests, the benchmarks and the chapters' code cells.

``ruff format`` at 88 characters (pyproject.toml's ``[tool.ruff]``) must have nothing to change, and
pyflakes' checks (unused imports and variables, undefined names) must pass. ``make format`` fixes both."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUFF = [sys.executable, "-m", "ruff"]


def ruff(*args, cwd=ROOT):
    return subprocess.run(
        [*RUFF, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_everything_is_formatted():
    done = ruff("format", "--check", ".")
    assert done.returncode == 0, (
        "run `make format`:\n" + (done.stdout + done.stderr)[-2000:]
    )


def test_no_unused_or_undefined_names():
    done = ruff("check", "--select", "F,E9", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout[-2000:]


def test_the_check_fails_on_what_people_really_commit(tmp_path):
    """The check is not vacuous: a 90-character call, single quotes, a notebook cell with a long
    line and an unused import are each refused under the project's own configuration."""
    config = ["--config", str(ROOT / "pyproject.toml")]
    long_call = tmp_path / "long.py"
    long_call.write_text(
        "samples = generate(model, degradation, n=1000, start_level=4, algorithm='improved')\n"
    )
    quotes = tmp_path / "quotes.py"
    quotes.write_text("name = 'mnist-blur'\n")
    notebook = tmp_path / "cell.ipynb"
    notebook.write_text(
        '{"cells": [{"cell_type": "code", "execution_count": null, "id": "a", '
        '"metadata": {}, "outputs": [], "source": ["x = dict(alpha=1, beta=2, gamma=3, '
        'delta=4, epsilon=5, zeta=6, eta=7, theta=8, iota=9, kappa=10)"]}], "metadata": {}, '
        '"nbformat": 4, "nbformat_minor": 5}'
    )
    for path in (long_call, quotes, notebook):
        done = ruff("format", "--check", *config, str(path), cwd=tmp_path)
        assert done.returncode == 1, (path.name, done.stdout, done.stderr)
        assert path.name in done.stdout, done.stdout
    unused = tmp_path / "unused.py"
    unused.write_text("import os\n\nx = 1\n")
    done = ruff("check", "--select", "F,E9", *config, str(unused), cwd=tmp_path)
    assert done.returncode == 1 and "F401" in done.stdout, done.stdout
    formatted = tmp_path / "fine.py"
    formatted.write_text('name = "mnist-blur"\n')
    assert (
        ruff("format", "--check", *config, str(formatted), cwd=tmp_path).returncode == 0
    )
