"""Numbers and orderings for the book's prose, read when a chapter runs, never typed (issue 17).

A chapter's hidden cell reads the measured tables (:class:`Tables`), the zoo's cards
(:func:`zoo_facts`) and the paper's numbers (:data:`colddiff_lib.paper.PAPER`), and hands what its text
says to myst-nb with :func:`glue`; the Markdown writes ``{glue:text}`name``` where the number stands.
A sentence that states an ordering ("the direct estimate has the lowest FID") is written from the
measured values by the helpers below, or else checked by :mod:`colddiff_lib.claims`. When the zoo is
retrained, the prose follows the new tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

# : The restorations of the reconstruction table (the degraded row is the baseline, not
# a restoration).
RESTORATIONS = ("Direct", "Algorithm 1", "Algorithm 2")
#: How the prose names a method of the tables.
METHOD_PROSE = {
    "Direct": "the direct estimate",
    "Algorithm 1": "Algorithm 1",
    "Algorithm 2": "Algorithm 2",
    "Degraded": "the degraded input",
    "DDIM": "DDIM",
}
#: How the prose names the task of a zoo model (its degradation, in words).
TASK_PROSE = {
    "mnist-blur": "blur",
    "mnist-inpaint": "inpainting",
    "mnist-superres": "super-resolution",
    "mnist-snow": "snow",
}
#: Columns where a higher value is better; every other measure is better lower.
HIGHER_IS_BETTER = ("ssim", "ssim_as_paper", "psnr", "confident")
WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()


def glue(**values):
    """Hand each value to myst-nb under its name (``{glue:text}`name``` in the chapter's Markdown).

    Outside a book build, where myst-nb is not installed (Colab installs the library only), nothing is
    glued. Returns ``values``, so that a cell can also print them."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return values
    for name, value in values.items():
        myst_glue(name, value, display=False)
    return values


def number_word(n: int) -> str:
    """``11`` -> ``"eleven"`` (up to twenty), larger counts with thousands separators."""
    n = int(n)
    return WORDS[n] if 0 <= n < len(WORDS) else f"{n:,}"


def join(items: Sequence[str], last: str = "and") -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    items = list(items)
    if not items:
        return ""
    return (
        items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]
    )


def span(values: Iterable[float], fmt: str = "{:,.0f}", to: str = " to ") -> str:
    """``[800, 4000, 2000]`` -> ``"800 to 4,000"``; one value if they are all the same (after ``fmt``)."""
    values = sorted(values)
    low, high = fmt.format(values[0]), fmt.format(values[-1])
    return low if low == high else f"{low}{to}{high}"


def times(ratio: float) -> str:
    """A ratio in words for the prose: ``34.0`` -> ``"34 times"``, ``1.02`` -> ``"about as many"``... the
    rounding a reader needs, not more."""
    if ratio >= 10:
        return f"{ratio:,.0f} times"
    if ratio >= 1.5:
        return f"{ratio:.1f} times"
    return "about as many"


def power_of_ten(value: float) -> str:
    """``2e-5`` -> ``"2 × 10⁻⁵"``, ``1e-3`` -> ``"10⁻³"``: a learning rate as the prose writes it."""
    mantissa, exponent = f"{value:.1e}".split("e")
    digits = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"10{digits}" if mantissa == "1" else f"{mantissa} × 10{digits}"


def preset_of(model_config: dict) -> str:
    """The name of the :data:`colddiff_lib.models.PRESETS` entry a card's ``model_config`` was built from
    (``"custom"`` if none)."""
    from .models import PRESETS

    def norm(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value

    for name, preset in PRESETS.items():
        preset = {"patch": 1, **preset}  # a preset without a stem has patch 1
        if all(
            norm(model_config.get(k, 1 if k == "patch" else None)) == norm(v)
            for k, v in preset.items()
        ):
            return name
    return "custom"


def _results_folder(folder=None) -> Path:
    if folder is not None:
        return Path(folder)
    from .reproduce import results_file

    return results_file("reconstruction.csv").parent


class Tables:
    """The measured tables of a results folder (``results/`` by default): ``reconstruction`` and
    ``generation``, lists of rows (dicts of strings, as in the CSV files).

    A copy of ``results/`` with other numbers in it, passed as ``folder``, is read the same way: that
    is how the claim tests show that a claim fails when its table stops supporting it."""

    def __init__(self, folder=None):
        self.folder = _results_folder(folder)
        self.reconstruction = self._read("reconstruction.csv")
        self.generation = self._read("generation.csv")

    def _read(self, name: str) -> List[dict]:
        from .tables import read_csv

        return read_csv(self.folder / name)

    def rows(self, model: str) -> Dict[str, dict]:
        """``{method: row}`` of one model's reconstruction rows."""
        return {
            row["method"]: row for row in self.reconstruction if row["model"] == model
        }

    def generation_rows(self, model: str) -> List[dict]:
        """The rows of one model in the generation table, in the table's order (its card's default first)."""
        return [row for row in self.generation if row["model"] == model]

    def generation_row(
        self,
        model: str,
        default: Optional[bool] = None,
        method: Optional[str] = None,
        at_T: Optional[bool] = None,
        noise: Optional[float] = None,
    ) -> dict:
        """The first generation row of ``model`` that matches: ``default`` (the card's own setting),
        ``method`` ("Algorithm 2", "Ancestral"...), ``at_T`` (the start is the end state, as in the paper,
        or a level below it) and ``noise`` (its symmetry noise). KeyError naming what is missing."""
        for row in self.generation_rows(model):
            if (
                (default is None or (row.get("default") == "yes") == default)
                and (method is None or row["method"] == method)
                and (at_T is None or starts_at_T(row) == at_T)
                and (noise is None or abs(float(row["noise_std"]) - noise) < 1e-9)
            ):
                return row
        raise KeyError(
            f"results/generation.csv has no row for {model} with default={default}, "
            f"method={method}, at_T={at_T}, noise={noise}"
        )

    def value(self, model: str, method: str, column: str) -> float:
        """One number of the reconstruction table (KeyError naming what is missing)."""
        row = self.rows(model).get(method)
        if row is None or row.get(column, "") == "":
            raise KeyError(
                f"results/reconstruction.csv has no {column!r} for {model} / {method}"
            )
        return float(row[column])

    def ranked(
        self, model: str, column: str, methods: Sequence[str] = RESTORATIONS
    ) -> List[str]:
        """``methods`` of ``model`` from best to worst by ``column`` (higher first for SSIM, PSNR)."""
        reverse = column in HIGHER_IS_BETTER
        return sorted(
            methods, key=lambda m: self.value(model, m, column), reverse=reverse
        )

    def best(
        self, model: str, column: str, methods: Sequence[str] = RESTORATIONS
    ) -> str:
        return self.ranked(model, column, methods)[0]

    def worst(
        self, model: str, column: str, methods: Sequence[str] = RESTORATIONS
    ) -> str:
        return self.ranked(model, column, methods)[-1]

    def better(self, model: str, column: str, a: str, b: str) -> bool:
        """Whether method ``a`` beats method ``b`` on ``column`` (strictly)."""
        x, y = self.value(model, a, column), self.value(model, b, column)
        return x > y if column in HIGHER_IS_BETTER else x < y


def starts_at_T(row: dict) -> bool:
    """Whether a generation row starts from the end state x_T (the paper's start), not from a level below T
    (its ``start`` column: "level T: ..." or "level 4: ..."; a row from before that column starts at T)."""
    return not row.get("start") or row["start"].startswith("level T")


def start_level(row: dict) -> Optional[int]:
    """The level a generation row starts from, or None for the end state T."""
    return None if starts_at_T(row) else int(row["start"].split(":")[0].split()[1])


def percent(share, digits: int = 0) -> str:
    """``0.712`` -> ``"71 %"`` (a share of samples, as the prose writes it)."""
    return f"{100 * float(share):.{digits}f} %"


def who_wins(
    tables: Tables,
    models: Sequence[str],
    column: str,
    methods: Sequence[str] = RESTORATIONS,
    task=TASK_PROSE.get,
) -> str:
    """A clause naming, for each method, the tasks where it has the best ``column``: ``"the direct
    estimate for blur and snow, Algorithm 2 for inpainting and Algorithm 1 for super-resolution"``."""
    wins: Dict[str, List[str]] = {}
    for model in models:
        wins.setdefault(tables.best(model, column, methods), []).append(
            task(model) or model
        )
    parts = [
        f"{METHOD_PROSE[m]} for {join(tasks)}"
        for m, tasks in sorted(wins.items(), key=lambda kv: -len(kv[1]))
    ]
    return join(parts)


def tasks_where(
    tables: Tables, models: Sequence[str], test, task=TASK_PROSE.get
) -> List[str]:
    """The task names of the ``models`` for which ``test(tables, model)`` is true."""
    return [task(m) or m for m in models if test(tables, m)]


def zoo_facts(names: Sequence[str]) -> dict:
    """What the cards of the shipped models ``names`` say about their training, for the prose.

    Keys: ``count``, ``count_word``, ``parameters`` (a span, e.g. ``"1.13M"``), ``steps_asked`` and
    ``steps_trained`` (spans), ``minutes`` (a span of each model's training minutes), ``seconds_per_step``
    (a span), ``batch`` (a span), ``images`` (total images seen), ``eval_every``, ``checkpoint_every``,
    ``warmup_steps``, ``min_lr_percent``, ``lr``, ``time_limit_hit`` (the names stopped by a time limit),
    ``presets`` (the U-Net presets they use), ``machines`` and the raw numbers under ``raw``."""
    from . import zoo

    cards = {name: zoo.card(name) for name in names}
    raw = {
        "parameters": [],
        "asked": [],
        "trained": [],
        "seconds": [],
        "per_step": [],
        "batch": [],
        "images": 0,
    }
    for c in cards.values():
        trained = (
            c["history"]["step"][-1] if c.get("history", {}).get("step") else c["step"]
        )
        tc = c["train_config"]
        raw["parameters"].append(c["parameters"])
        raw["asked"].append(tc["steps"])
        raw["trained"].append(trained)
        raw["seconds"].append(c["train_seconds"])
        raw["per_step"].append(c["train_seconds"] / max(trained, 1))
        raw["batch"].append(tc["batch_size"] * tc.get("grad_accum", 1))
        raw["images"] += trained * tc["batch_size"] * tc.get("grad_accum", 1)

    def setting(key):
        return span([c["train_config"].get(key, 0) for c in cards.values()], "{:,g}")

    return {
        "count": len(cards),
        "count_word": number_word(len(cards)),
        "parameters": span([p / 1e6 for p in raw["parameters"]], "{:.2f}M"),
        "steps_asked": span(raw["asked"]),
        "steps_trained": span(raw["trained"]),
        "minutes": span([s / 60 for s in raw["seconds"]]),
        "seconds_per_step": span(raw["per_step"], "{:.2f}"),
        "batch": span(raw["batch"]),
        "images": raw["images"],
        "eval_every": setting("eval_every"),
        "checkpoint_every": setting("checkpoint_every"),
        "warmup_steps": setting("warmup_steps"),
        "min_lr_percent": span(
            [100 * c["train_config"].get("min_lr_ratio", 0) for c in cards.values()],
            "{:g}",
        ),
        "lr": setting("lr"),
        "time_limit_hit": [
            n for n, c in cards.items() if c.get("stopped_by_time_limit")
        ],
        "presets": join(sorted({preset_of(c["model_config"]) for c in cards.values()})),
        "machines": sorted({c["machine"] for c in cards.values()}),
        "raw": raw,
    }


def shipped_models(task: Optional[str] = None) -> List[str]:
    """The names of the shipped models (the classifier left out), of one ``task`` if given."""
    from . import zoo

    return [
        name
        for name, c in zoo.available().items()
        if c.get("task") != "classifier" and (task is None or c.get("task") == task)
    ]
