"""colddiff_lib.evaluation: the reconstruction experiment (degraded, direct, Algorithms 1 and 2) and the
measures of generated digits."""

import pytest
import torch

from colddiff_lib import degradations as dg
from colddiff_lib import zoo
from colddiff_lib.data import load_dataset
from colddiff_lib.evaluation import (
    confident_share,
    METHODS,
    evaluate_reconstruction,
    generation_measures,
    identity_along_trajectory,
    reconstruct,
)
from colddiff_lib.metrics import image_metrics
from colddiff_lib.runtime import step_generator

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k", split="test").images


def exact(x0):
    """A restorer that knows the answer (per batch: the images are passed in order)."""
    return lambda x, t: x0[: len(x)]


def test_reconstruct_degrades_with_the_seeds_draw_and_restores_by_each_method(digits):
    x0 = digits[:6]
    D = dg.GaussianNoise(T=10, channels=1)
    out = reconstruct(exact(x0), D, x0, seed=3, batch_size=6)
    assert list(out) == list(METHODS) and all(v.shape == x0.shape for v in out.values())
    degraded = D.freeze(x0, step_generator(3, 0, 0))(x0, D.T)
    # x_T from the seed's first batch generator
    assert torch.equal(out["degraded"], degraded)
    torch.testing.assert_close(out["direct"], x0)  # one call of an exact R
    # Algorithm 1 ends on D(R(x_1), 0) = x0
    torch.testing.assert_close(out["naive"], x0)
    # Algorithm 2 keeps the sampler's own noise z' (noise is not observed): it ends x0 +
    # sqrt(1 - abar_T)(z - z')
    own = D.freeze(x0, step_generator(3, 1, 0))
    torch.testing.assert_close(
        out["improved"], x0 + degraded - own(x0, D.T), atol=1e-5, rtol=0
    )
    again = reconstruct(exact(x0), D, x0, seed=3, methods=("improved",), batch_size=6)
    assert list(again) == ["improved"] and torch.equal(
        again["improved"], out["improved"]
    )
    with pytest.raises(ValueError, match="methods must be among"):
        reconstruct(exact(x0), D, x0, methods=("magic",))


def test_the_sampler_reuses_the_degrading_draw_only_where_a_restorer_would_know_it(
    digits,
):
    """An inpainting mask's position is observed: the sampler reuses the mask, and Algorithm 1 with an exact R
    lands on x0. Noise is the corruption: the sampler draws its own, so D(x0_hat, 0) = x0 but the iterates
    differ from the degrading path."""
    x0 = digits[:4]
    hole = dg.Inpainting(T=8, std=0.5, random_centre=True, channels=1)
    assert hole.state_is_observed and not dg.GaussianNoise().state_is_observed
    out = reconstruct(
        exact(x0), hole, x0, seed=1, methods=("degraded", "naive"), batch_size=4
    )
    torch.testing.assert_close(out["naive"], x0)
    frozen = hole.freeze(x0, step_generator(1, 0, 0))
    assert torch.equal(out["degraded"], frozen(x0, hole.T))


def test_evaluate_reconstruction_is_image_metrics_of_each_method(digits):
    x0 = digits[:8]
    D = dg.SuperResolution(T=2, channels=1)
    rows = evaluate_reconstruction(lambda x, t: x, D, x0, seed=0, batch_size=4)
    images = reconstruct(lambda x, t: x, D, x0, seed=0, batch_size=4)
    assert set(rows) == set(METHODS)
    for method, metrics in rows.items():
        assert metrics == image_metrics(images[method].clamp(-1, 1), x0)


def test_generation_measures_tell_digits_from_noise(digits):
    classifier = zoo.load_classifier()
    train = load_dataset("mnist5k", split="train").images[:500]
    real = generation_measures(digits[:200], train, classifier)
    noise = generation_measures(
        torch.rand(200, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1,
        train,
        classifier,
    )
    flat = generation_measures(torch.zeros(200, 1, 32, 32), train, classifier)
    # The classifier is confident about noise and flat images too (>= 0.9 of them): the
    # share alone cannot tell digits from scribbles; FID and the class shares can.
    assert real["confident"] > 0.9 and real["fid"] < min(noise["fid"], flat["fid"])
    assert sum(real["class_histogram"]) == 200 and len(real["class_histogram"]) == 10
    assert 0 < real["class_share_min"] <= 0.1 <= real["class_share_max"] < 0.25
    # one image, one class
    assert flat["class_share_max"] == 1.0 and flat["class_share_min"] == 0.0
    # held-out digits: not copies
    assert 0.08 < real["nearest_rmse"] < 0.25 < noise["nearest_rmse"]
    copies = generation_measures(train[:200], train, classifier)
    assert copies["nearest_rmse"] == 0.0
    # the order before the one convention still works
    with pytest.warns(FutureWarning, match="old order"):
        assert generation_measures(digits[:200], classifier, train)[
            "fid"
        ] == pytest.approx(real["fid"])
    with pytest.raises(ValueError, match="threshold"):
        generation_measures(digits[:10], train, classifier, threshold=1.5)
    # the share alone: what generation_measures gives, without FID's reference pass
    assert confident_share(digits[:200], classifier) == real["confident"]
    assert confident_share(torch.zeros(200, 1, 32, 32), classifier) == flat["confident"]
    assert confident_share(digits[:200], classifier, 0.999) < real["confident"]
    # thresholds people pass: a percentage, a probability of 1
    for wrong in (90, 1.0, 0):
        with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\)"):
            confident_share(digits[:10], classifier, wrong)


def test_identity_along_trajectory_judges_each_estimate():
    R, D = zoo.load_pretrained("mnist-superres-gen")
    classifier = zoo.load_classifier()
    start = D(load_dataset("mnist5k", split="test").images[:6], D.T)
    out = identity_along_trajectory(R, D, start, D.T, classifier)
    assert (
        out["levels"] == list(range(D.T, 0, -1)) and out["final"].shape == start.shape
    )
    assert all(0 <= c <= 1 for c in out["confidence"]) and all(
        0 <= a <= 1 for a in out["agreement"]
    )
