"""The prose follows the tables (issue 17).

* Every typed claim of :mod:`colddiff_lib.claims` holds on ``results/``, stands in its chapter, and is
  checked by that chapter when it runs; a tampered copy of ``results/`` (two numbers swapped) makes it fail.
* The orderings the chapters write from the tables (:mod:`colddiff_lib.prose`) follow a tampered copy.
* The paper's numbers are read from ``colddiff_lib/paper.toml`` (``reproduce.PAPER_MNIST``, the tables'
  ``paper_*`` columns), not typed in the chapters.
* The contradictions that issue 17 lists are gone from the chapters' text.
"""

import csv
import shutil
from pathlib import Path

import pytest

from colddiff_lib import claims, paper, prose, reproduce
from conftest import cell_source, notebook_cells

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
MODELS = ["mnist-blur", "mnist-inpaint", "mnist-superres", "mnist-snow"]
#: The chapters whose numbers this file guards.
CHAPTERS = [
    "00_preface",
    "01_hot_to_cold",
    "02_degradations",
    "03_restoration",
    "04_sampling",
    "05_reconstruction",
    "06_generation",
    "07_your_own_degradation",
    "A1_reproducing_on_a_gpu",
]


def flat(text: str) -> str:
    return " ".join(text.split())


def sources(chapter: str, kind: str) -> list:
    """The chapter's cells of ``kind``, each as one string."""
    cells = notebook_cells(ROOT / "book" / f"{chapter}.ipynb")
    return [cell_source(c) for c in cells if c["cell_type"] == kind]


def markdown(chapter: str) -> str:
    return flat(" ".join(sources(chapter, "markdown")))


def code(chapter: str) -> str:
    return "\n".join(sources(chapter, "code"))


def tampered(folder: Path, swaps) -> Path:
    """A copy of results/ (its CSV tables) in ``folder`` with each pair of cells of reconstruction.csv,
    ``((model, method, column), (model, method, column))``, swapped."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in RESULTS.glob("*.csv"):
        shutil.copy(path, folder / path.name)
    with open(folder / "reconstruction.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    index = {(r["model"], r["method"]): r for r in rows}
    for (m1, a1, c1), (m2, a2, c2) in swaps:
        r1, r2 = index[(m1, a1)], index[(m2, a2)]
        r1[c1], r2[c2] = r2[c2], r1[c1]
    with open(folder / "reconstruction.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_every_claim_holds_on_the_committed_tables():
    failed = claims.check()
    assert not failed, [f"{c.chapter}: {c.text}" for c in failed]


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=lambda c: c.key)
def test_every_claim_stands_in_its_chapter_which_verifies_it(claim):
    assert flat(claim.text) in markdown(claim.chapter), (
        f"{claim.chapter} no longer says {claim.text!r}"
    )
    assert f'claims.verify("{claim.chapter}")' in code(claim.chapter), (
        f"{claim.chapter} does not verify its claims"
    )


def test_claim_keys_are_unique():
    keys = [c.key for c in claims.CLAIMS]
    assert len(keys) == len(set(keys))


# Two numbers swapped in a copy of results/ -> the claim that rests on them fails.
TAMPERINGS = {
    "naive-close-for-superres": [
        (
            ("mnist-inpaint", "Algorithm 1", "rmse"),
            ("mnist-inpaint", "Algorithm 2", "rmse"),
        )
    ],
    "blur-ssim-misprint": [
        (
            ("mnist-blur", "Degraded", "ssim_as_paper"),
            ("mnist-blur", "Direct", "ssim_as_paper"),
        )
    ],
    "superres-ssim-agrees": [
        (
            ("mnist-superres", "Degraded", "ssim_as_paper"),
            ("mnist-blur", "Degraded", "ssim_as_paper"),
        )
    ],
    "inpaint-degraded-agrees": [
        (
            ("mnist-inpaint", "Degraded", "ssim_as_paper"),
            ("mnist-inpaint", "Algorithm 2", "ssim_as_paper"),
        )
    ],
    "degraded-rmse-agrees": [
        (
            ("mnist-inpaint", "Degraded", "rmse_as_paper"),
            ("mnist-inpaint", "Direct", "rmse_as_paper"),
        )
    ],
    "blur-keeps-least": [
        (("mnist-inpaint", "Degraded", "ssim"), ("mnist-blur", "Degraded", "ssim"))
    ],
}


def test_every_claim_has_a_tampering():
    assert set(TAMPERINGS) == {c.key for c in claims.CLAIMS}


@pytest.mark.parametrize("key", sorted(TAMPERINGS))
def test_a_tampered_table_makes_its_claim_fail(key, tmp_path):
    claim = next(c for c in claims.CLAIMS if c.key == key)
    assert claim not in claims.check(RESULTS)  # the committed tables support it...
    folder = tampered(tmp_path / "results", TAMPERINGS[key])
    assert key in {c.key for c in claims.check(folder)}  # ...the tampered copy does not
    with pytest.raises(AssertionError, match=key) as info:
        # and the chapter would stop, naming the sentence
        claims.verify(claim.chapter, folder)
    assert flat(claim.text) in str(info.value)


def test_a_table_without_the_claims_numbers_fails_them(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert {c.key for c in claims.check(folder)} == {c.key for c in claims.CLAIMS}


@pytest.mark.parametrize("column", ["fid", "rmse"])
def test_the_written_orderings_follow_a_tampered_table(column, tmp_path):
    """Swap the best and the second-best restoration of every task: the sentence the chapters write
    (prose.who_wins) names the other method, whatever the committed numbers are."""
    tables = prose.Tables(RESULTS)
    ranked = {m: tables.ranked(m, column) for m in MODELS}
    swaps = [((m, r[0], column), (m, r[1], column)) for m, r in ranked.items()]
    swapped = prose.Tables(tampered(tmp_path / "results", swaps))
    for model, order in ranked.items():
        if tables.value(model, order[0], column) != tables.value(
            model, order[1], column
        ):
            assert swapped.best(model, column) == order[1]
    before, after = (
        prose.who_wins(tables, MODELS, column),
        prose.who_wins(swapped, MODELS, column),
    )
    assert before != after
    for model, order in ranked.items():
        assert f"{prose.METHOD_PROSE[order[1]]} for" in after


def test_the_papers_numbers_come_from_paper_toml():
    table = paper.mnist_reconstruction()
    assert reproduce.PAPER_MNIST == table
    # the paper's Table 1, as recalled
    assert table["mnist-blur"]["improved"] == (4.69, 0.718, 0.154)
    names = {"Degraded": "degraded", "Direct": "direct", "Algorithm 2": "improved"}
    # the tables' paper_* columns are the file's
    for row in prose.Tables(RESULTS).reconstruction:
        method = names.get(row["method"])
        if row["paper_fid"] and method:
            expected = table[row["model"]][method]
            got = tuple(float(row[f"paper_{m}"]) for m in paper.MEASURES)
            assert got == pytest.approx(expected, abs=1e-4), (
                row["model"],
                row["method"],
            )
    assert (
        paper.PAPER["training"]["steps"] == 700_000
        and paper.PAPER["training"]["lr"] == 2e-5
    )


def test_a1s_cifar_solution_asks_for_the_papers_recipe_and_blur():
    """A1's CIFAR-10 solution is a config a reader copies, so its numbers are typed; this ties them to
    paper.toml: the training recipe, and the blur's T, kernel and padding, with the constant width that
    reaches the paper's x_T (blur variances add: the root mean square of the growing widths)."""
    import re
    import tomllib

    from colddiff_lib.config import RunConfig

    text = "\n".join(sources("A1_reproducing_on_a_gpu", "markdown"))
    block = re.search(r"\{solution\} a1-cifar-config.*?~~~toml\n(.*?)~~~", text, re.S)
    assert block, "A1's CIFAR-10 solution has no TOML block"
    config = RunConfig.from_dict(tomllib.loads(block.group(1)), "A1's solution")
    recipe, train = paper.PAPER["training"], config.train
    for key in ("steps", "batch_size", "grad_accum", "lr", "ema_decay", "ema_every"):
        assert train[key] == recipe[key], key
    assert train["ema_start"] == recipe["ema_start"] and train["loss"] == recipe["loss"]
    assert train["hflip"] == recipe["hflip"] and config.data["dataset"] == "cifar10"
    blur = paper.PAPER["degradations"]["blur"]["cifar10"]
    deg = config.degradation
    assert (deg["T"], deg["kernel_size"], deg["padding"]) == (
        blur["T"],
        blur["kernel_size"],
        blur["padding"],
    )
    widths = [blur["sigma_first"] + i * blur["sigma_step"] for i in range(blur["T"])]
    rms = (sum(w * w for w in widths) / len(widths)) ** 0.5
    assert deg["schedule"] == "constant" and deg["std"] == pytest.approx(rms, abs=0.005)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_papers_numbers_are_not_typed_in_the_prose(chapter):
    text = markdown(chapter)
    typed = [
        "700,000",
        r"2 \times 10^{-5}",
        "57M",
        "38M",
        "56.6M",
        "35.7M",
        "438.59",
        "4.69",
        "0.287",
        "T = 200",
        "$T = 750$",
    ]
    assert not [t for t in typed if t in text]


# The contradictions of issue 17 (items 1-7, outside chapter 6), as they stood in the
# chapters' text.
CONTRADICTIONS = {
    "01_hot_to_cold": [
        "with the book's briefly trained model the two are close",
        "why sampling loses on RMSE and wins on FID",
        "which this book uses with $T = 200$ and $s = 0.008$ as the paper does",
        "The direct estimate is a soft average of the digits",
        "the table of this chapter shows the trade",
    ],
    "03_restoration": [
        "The architecture comes in four presets",
        "`paper` is about the size the paper used",
        "a few minutes on a CPU",
        "the RMSE and SSIM as the paper reports them",
        "a network four times larger",
    ],
    "04_sampling": [
        "On both degradations, Algorithm 1 has the worst FID",
    ],
    "05_reconstruction": [
        "why iterative sampling can lose on RMSE yet win on FID",
        "The nine models of the zoo",
        "at about 0.35 s a step",
        "soft, blurry digit",
        "Algorithm 2 gives sharper strokes than the direct estimate",
        "Why would a method that loses on RMSE win on FID?",
        "they hold its RMSE near the degraded one",
        "about 57M parameters",
        "it is a property of our SSIM",
        "The direct estimate is the safe bet for RMSE and SSIM",
        "Where little is left to guess, as in super-resolution, they agree",
        "more than 30 times smaller",
    ],
    "07_your_own_degradation": [
        "this one draws no 0 at all",
        "measures the error on $[0, 1]$ images, as the paper does",
    ],
    "06_generation": [
        "Cold against hot on equal terms means comparing the cold generators with this DDIM row",
        "for the 1,000 to 3,000 steps their configurations ask for",
    ],
    "A1_reproducing_on_a_gpu": [
        "roughly 9,000 steps",
        "about our `paper` preset",
        "at about 0.35 s a step",
        "about 12 minutes on a 2-core CPU at 0.35 s a step",
        "Round 1, training, export",
        "more than thirty times smaller",
    ],
}


# Phrases that typed a number, true or not, where the chapters now glue it: the words may come back in
# the built page with the glued value, so only the chapters' source is searched for them.
TYPED = {
    "04_sampling": ["0.28M parameters instead of 1.13M"],
    "06_generation": [
        "Six models ship for generation",
        "digits and of 1,000 held-out ones",
    ],
    "07_your_own_degradation": ["runs for 700,000 steps"],
    "A1_reproducing_on_a_gpu": ["about 34 times the parameters"],
}


@pytest.mark.parametrize("chapter", sorted(CONTRADICTIONS))
def test_the_issues_contradictions_are_gone(chapter):
    text = markdown(chapter)
    assert not [p for p in CONTRADICTIONS[chapter] if flat(p) in text]
    assert not [p for p in TYPED.get(chapter, []) if flat(p) in text]


def test_chapter_5_and_exercise_12_give_the_same_rmse_conventions():
    """Per image then averaged: metrics.rmse, the book's; one square root over the set: rmse_as_paper."""
    from colddiff_lib import metrics
    from colddiff_lib.exercises import ch05

    text = markdown("05_reconstruction")
    assert (
        "the per-image RMSE averaged over the digits" in text
        and "RMSE as one square root over every pixel of the set" in text
    )
    assert (
        "computes one RMSE per image over all its channels and pixels, then averages over the batch"
        in text
    )
    assert (
        "The paper's code takes one square root over every pixel of the set instead: `metrics.rmse_as_paper`"
        in text
    )
    assert "per-image RMSE, then mean" in metrics.rmse.__doc__
    assert "one square root" in metrics.rmse_as_paper.__doc__
    doc = flat(ch05.check_rmse.__doc__)
    assert (
        "computes the RMSE of each image over all its channels and pixels, and averages over the batch"
        in doc
    )
    assert (
        "The paper's code takes one square root over every pixel of the set instead"
        in doc
    )


def test_chapter_6_types_no_measured_share_or_fid():
    """Chapter 6's shares of samples and FIDs are glued from results/ (only the even spread, 10 %, is typed)."""
    import re

    text = markdown("06_generation")
    typed = [
        m for m in re.findall(r"\d+(?:\.\d+)? ?%", text) if m.replace(" ", "") != "10%"
    ]
    assert not typed, typed
    assert not re.findall(r"FID \d", text)
