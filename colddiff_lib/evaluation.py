"""Reconstruction experiments: degraded / direct / Algorithm 1 / Algorithm 2, measured as the paper did.

Each held-out image x0 is degraded to level T (random degradations frozen from ``seed``), then
restored by one call of R (direct), by Algorithm 1 and by Algorithm 2; the samplers reuse the
degrading draw of a random D only where a restorer would know it (``D.state_is_observed``, true
for an inpainting mask's position, false for snow, noise and blend targets). Every result is compared
with x0 by :func:`colddiff_lib.metrics.image_metrics` (RMSE, SSIM, PSNR on [0, 1]).

Generated digits are judged by :func:`generation_measures`: the share the shipped classifier is
confident about (a scribble also lands in some class, so the histogram alone cannot tell digits
from scribbles), the classifier FID against the training digits, and the class histogram.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch

from .metrics import fid, image_metrics
from .sampling import direct, sample
from .runtime import step_generator
from .tables import format_table  # noqa: F401 (re-exported)

METHODS = ("degraded", "direct", "naive", "improved")


@torch.no_grad()
def reconstruct(
    R: Callable,
    D,
    x0: torch.Tensor,
    t: Optional[int] = None,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    batch_size: int = 250,
    levels: Optional[Sequence[int]] = None,
) -> Dict[str, torch.Tensor]:
    """Degrade ``x0`` [N, C, H, W] to level ``t`` (default ``D.T``) and restore it by each method.

    ``levels``: the samplers' grid of levels from t to 0 (:func:`colddiff_lib.sampling.sample`'s; default
    every level). Returns ``{method: images [N, C, H, W] on the CPU}``; ``"degraded"`` is x_t itself.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"methods must be among {list(METHODS)}, got {unknown}")
    t = D.T if t is None else t
    device = (
        next(R.parameters()).device if isinstance(R, torch.nn.Module) else x0.device
    )
    out: Dict[str, list] = {m: [] for m in methods}
    for i, chunk in enumerate(x0.split(batch_size)):
        chunk = chunk.to(device)
        Df = D.freeze(chunk, step_generator(seed, 0, i))
        x_t = Df(chunk, t)
        # The sampler may reuse the degrading draw only where a restorer would know it
        # (a mask's position); noise, snow and blend targets are the corruption, so it
        # draws its own.
        Ds = (
            Df
            if getattr(D, "state_is_observed", False)
            else D.freeze(chunk, step_generator(seed, 1, i))
        )
        for m in methods:
            if m == "degraded":
                y = x_t
            elif m == "direct":
                y = direct(R, D, x_t, t).clamp(-1, 1)
            else:
                y = sample(R, Ds, x_t, t, algorithm=m, levels=levels)
            out[m].append(y.float().cpu())
    return {m: torch.cat(v) for m, v in out.items()}


def evaluate_reconstruction(
    R: Callable,
    D,
    x0: torch.Tensor,
    t: Optional[int] = None,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    batch_size: int = 250,
) -> Dict[str, dict]:
    """``{method: metrics.image_metrics(...)}`` of each restoration of ``x0`` [N, C, H, W] against x0."""
    results = reconstruct(R, D, x0, t, seed, methods, batch_size)
    reference = x0.float().cpu()
    return {m: image_metrics(y.clamp(-1, 1), reference) for m, y in results.items()}


# : A generated digit counts as "confident" when the shipped classifier gives its class
# this probability or more.
CONFIDENT = 0.9


@torch.no_grad()
def confident_share(
    samples: torch.Tensor, classifier, threshold: float = CONFIDENT
) -> float:
    """The share of ``samples`` [N, 1, 32, 32] in [-1, 1] (clamped here) whose top class the
    ``classifier`` gives probability ``threshold`` or more: :func:`generation_measures`' ``"confident"``
    alone, without the FID's pass over the reference digits."""
    from .classifier import probabilities

    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    return _confident(
        probabilities(classifier, samples.float().clamp(-1, 1)), threshold
    )


def _confident(probs: torch.Tensor, threshold: float) -> float:
    """The share of rows of class probabilities [N, K] whose largest is ``threshold`` or more."""
    return float((probs.max(1).values >= threshold).float().mean())


@torch.no_grad()
def generation_measures(
    samples: torch.Tensor,
    reference: torch.Tensor,
    classifier,
    threshold: float = CONFIDENT,
) -> dict:
    """How much generated digits look like digits, by the project's classifier.

    Args:
        samples: generated digits [N, 1, 32, 32] in [-1, 1] (clamped here).
        reference: real digits [M, 1, 32, 32] in [-1, 1] that FID compares against (the training digits).
        classifier: the :class:`~colddiff_lib.classifier.DigitClassifier` (``zoo.load_classifier()``).
        threshold: the probability a sample's class needs to count as confident.
    Returns:
        a dict: ``"confident"``, the share of samples whose top class has probability >= threshold;
        ``"fid"``, the classifier FID against ``reference``; ``"class_histogram"``, samples per class 0..9 (a
        list of ints); ``"class_share_min"`` and ``"class_share_max"``, the rarest and commonest class's share
        of the samples; ``"nearest_rmse"``, the median RMSE (on [0, 1]) from a sample to its nearest image of
        ``reference``: a check that the samples are not copies of the training digits, which an FID against
        them would reward (held-out digits: about 0.15).
    """
    from .classifier import probabilities

    if isinstance(reference, torch.nn.Module) and isinstance(classifier, torch.Tensor):
        # the order before the library's one convention, metric(x, reference, ...)
        import warnings

        warnings.warn(
            "generation_measures(samples, classifier, reference) is the old order; call "
            "generation_measures(samples, reference, classifier)",
            FutureWarning,
            stacklevel=2,
        )
        reference, classifier = classifier, reference
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    samples = samples.float().clamp(-1, 1)
    probs = probabilities(classifier, samples)
    top = probs.max(1)
    histogram = torch.bincount(top.indices, minlength=probs.shape[1]).tolist()
    n = len(samples)
    flat = reference.float().flatten(1)
    nearest = torch.cat(
        [
            torch.cdist(chunk.flatten(1), flat).min(1).values
            for chunk in samples.split(250)
        ]
    )
    # the distance of [-1, 1] images as an RMSE on [0, 1]
    nearest = nearest / (2 * flat.shape[1] ** 0.5)
    return {
        "confident": _confident(probs, threshold),
        "fid": fid(samples, reference, classifier=classifier),
        "class_histogram": histogram,
        "class_share_min": min(histogram) / n,
        "class_share_max": max(histogram) / n,
        "nearest_rmse": float(nearest.median()),
    }


@torch.no_grad()
def identity_along_trajectory(
    R: Callable,
    D,
    x_start: torch.Tensor,
    level: int,
    classifier,
    algorithm: str = "improved",
    generator: Optional[torch.Generator] = None,
) -> dict:
    """Where along a sampling run the digit's identity is decided, judged by the classifier on each x0 estimate.

    Runs the sampler from ``x_start`` [N, 1, 32, 32] at ``level`` (D frozen there, :meth:`freeze_at`) and
    classifies R's estimate x0_hat at every level s. Returns ``{"levels": [level, ..., 1], "confidence": the
    mean top-class probability of x0_hat at each level, "agreement": the share of runs whose x0_hat at that
    level already has the class of the final sample, "final": the final samples [N, 1, 32, 32]}``.
    """
    from .classifier import probabilities

    levels, confidence, classes = [], [], []

    def judge(info):
        p = probabilities(classifier, info["x0_hat"].clamp(-1, 1).float())
        levels.append(info["s"])
        confidence.append(float(p.max(1).values.mean()))
        classes.append(p.argmax(1))

    final = sample(
        R,
        D.freeze_at(x_start, level),
        x_start,
        level,
        algorithm=algorithm,
        callback=judge,
        generator=generator,
    ).clamp(-1, 1)
    last = probabilities(classifier, final.float()).argmax(1)
    return {
        "levels": levels,
        "confidence": confidence,
        "agreement": [float((c == last).float().mean()) for c in classes],
        "final": final,
    }
