"""The book's sentences that state an ordering of measured numbers, each with the test that supports it.

Most orderings in the chapters are written from the tables when the chapter runs
(:mod:`colddiff_lib.prose`). The few sentences that are typed — because the argument around them depends
on which way the numbers go — are listed here as :class:`Claim`\\ s: the chapter, the sentence (a piece of
its Markdown, found there by the tests), and a function of the measured tables that says whether they
still support it. ``tests/test_claims.py`` checks every claim against ``results/`` and shows, with a
tampered copy of the tables, that a claim fails when its numbers stop supporting it; each chapter calls
:func:`verify` when it runs, so that the book does not build with a sentence its tables contradict.
When a claim fails after the zoo is retrained, rewrite the sentence (or generate it) and its claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

from .paper import PAPER
from .prose import Tables


@dataclass(frozen=True)
class Claim:
    """One typed sentence of a chapter and what the tables must show for it to be true."""

    # : the notebook's name without its suffix, e.g. ``"05_reconstruction"``
    chapter: str
    key: str  #: a short name for the sentence
    # : the sentence, or the part of it that states the ordering, as it stands in the
    # Markdown (line breaks and : runs of spaces aside)
    text: str
    holds: Callable[[Tables], bool]  #: True when the tables support the sentence


def _close(a: float, b: float, relative: float) -> bool:
    return abs(a - b) <= relative * max(abs(a), abs(b))


def _naive_close_for_superres_behind_for_inpainting(t: Tables) -> bool:
    superres = _close(
        t.value("mnist-superres", "Algorithm 1", "rmse"),
        t.value("mnist-superres", "Algorithm 2", "rmse"),
        0.10,
    )
    inpaint = t.value("mnist-inpaint", "Algorithm 1", "rmse") > 1.2 * t.value(
        "mnist-inpaint", "Algorithm 2", "rmse"
    )
    return superres and inpaint


def _blur_ssim_misprint(t: Tables) -> bool:
    # The paper's degraded-blur SSIM repeats its RMSE, and the SSIM of the blurred
    # digits computed its way is nowhere near it: a misprint, not another convention.
    paper = PAPER["mnist"]["reconstruction"]["mnist-blur"]["degraded"]
    return (
        paper["ssim"] == paper["rmse"]
        and t.value("mnist-blur", "Degraded", "ssim_as_paper") < 0.3 * paper["ssim"]
    )


def _superres_degraded_ssim_agrees(t: Tables) -> bool:
    paper = PAPER["mnist"]["reconstruction"]["mnist-superres"]["degraded"]
    return (
        abs(t.value("mnist-superres", "Degraded", "ssim_as_paper") - paper["ssim"])
        < 0.02
    )


def _inpaint_degraded_agrees(t: Tables) -> bool:
    paper = PAPER["mnist"]["reconstruction"]["mnist-inpaint"]["degraded"]
    ours_ssim = t.value("mnist-inpaint", "Degraded", "ssim_as_paper")
    ours_rmse = t.value("mnist-inpaint", "Degraded", "rmse_as_paper")
    return (
        abs(ours_ssim - paper["ssim"]) < 0.03 and abs(ours_rmse - paper["rmse"]) < 0.01
    )


def _blur_keeps_least_superres_and_inpaint_split(t: Tables) -> bool:
    models = ("mnist-blur", "mnist-inpaint", "mnist-superres")
    ssim = {m: t.value(m, "Degraded", "ssim") for m in models}
    rmse = {m: t.value(m, "Degraded", "rmse") for m in models}
    return (
        min(ssim, key=ssim.get) == "mnist-blur"
        and max(rmse, key=rmse.get) == "mnist-blur"
        and min(rmse, key=rmse.get) == "mnist-superres"
        and max(ssim, key=ssim.get) == "mnist-inpaint"
    )


def _degraded_rmse_agrees_with_paper(t: Tables) -> bool:
    paper = PAPER["mnist"]["reconstruction"]
    return all(
        abs(t.value(m, "Degraded", "rmse_as_paper") - paper[m]["degraded"]["rmse"])
        < 0.01
        for m in paper
    )


CLAIMS: List[Claim] = [
    Claim(
        "04_sampling",
        "naive-close-for-superres",
        "Algorithm 1 is indeed close to Algorithm 2 for super-resolution, while for inpainting it falls "
        "clearly behind",
        _naive_close_for_superres_behind_for_inpainting,
    ),
    Claim(
        "05_reconstruction",
        "blur-ssim-misprint",
        "the SSIM entry repeats the RMSE",
        _blur_ssim_misprint,
    ),
    Claim(
        "05_reconstruction",
        "superres-ssim-agrees",
        "Its super-resolution row, by contrast, agrees with ours",
        _superres_degraded_ssim_agrees,
    ),
    Claim(
        "05_reconstruction",
        "inpaint-degraded-agrees",
        "Its degraded-inpainting row agrees with ours as well",
        _inpaint_degraded_agrees,
    ),
    Claim(
        "05_reconstruction",
        "degraded-rmse-agrees",
        "the degraded RMSEs agree for all three tasks",
        _degraded_rmse_agrees_with_paper,
    ),
    Claim(
        "05_reconstruction",
        "blur-keeps-least",
        "blur keeps the least (the lowest degraded SSIM and highest degraded RMSE of the three). "
        "Super-resolution has the lowest degraded RMSE and inpainting the highest degraded SSIM",
        _blur_keeps_least_superres_and_inpaint_split,
    ),
]


def check(folder=None, chapter: Optional[str] = None) -> List[Claim]:
    """The claims (of one ``chapter``, or all) that the tables in ``folder`` (``results/`` by default) do
    not support; a claim whose numbers are missing from the tables counts as unsupported."""
    tables = Tables(folder)
    failed = []
    for claim in CLAIMS:
        if chapter is not None and claim.chapter != chapter:
            continue
        try:
            ok = bool(claim.holds(tables))
        except (KeyError, ValueError):
            ok = False
        if not ok:
            failed.append(claim)
    return failed


def verify(chapter: str, folder=None) -> int:
    """Raise AssertionError naming every sentence of ``chapter`` that the tables no longer support;
    return how many claims of the chapter were checked. A chapter calls this when it runs."""
    failed = check(folder, chapter)
    if failed:
        sentences = "\n".join(
            f"  - {c.key}: {' '.join(c.text.split())!r}" for c in failed
        )
        raise AssertionError(
            f"{chapter}: the measured tables no longer support these sentences (rewrite them and "
            f"their claims in colddiff_lib/claims.py):\n{sentences}"
        )
    return sum(c.chapter == chapter for c in CLAIMS)
