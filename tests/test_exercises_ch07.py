"""Checkers of chapter 7 and Appendix A1: a well-made degradation passes, the usual slips are named."""

import pytest
import torch
import torch.nn.functional as F

from colddiff_lib import degradations as dg, zoo
from colddiff_lib.data import load_dataset
from colddiff_lib.degradations.base import FlatEnd
from colddiff_lib.exercises.ch07 import check_degradation, check_training_time
from conftest import cell_source, library_degradations, notebook_cells, quick_instance

pytestmark = pytest.mark.usefixtures("single_thread")


# --- a correct degradation and the usual slips
# --------------------------------------------------
class Darken(dg.Degradation, name="test-darken"):
    """Fade toward black: D(x0, t) = -1 + (1 - 0.9 t / T) (x0 + 1); affine, compositional."""

    compositional = True

    def degrade(self, x0, t):
        c = (1 - 0.9 * t.to(x0.dtype) / self.T).view(-1, 1, 1, 1)
        return -1 + c * (x0 + 1)

    def step_op(self, x, t):
        c = (1 - 0.9 * t.to(x.dtype) / self.T) / (
            1 - 0.9 * (t - 1).to(x.dtype) / self.T
        )
        return -1 + c.view(-1, 1, 1, 1) * (x + 1)


class FadeToGrey(dg.Degradation, name="test-fade-to-grey"):
    """D(x0, t) = (1 - t / T) x0, linear."""

    linear = True

    def degrade(self, x0, t):
        return (1 - t.to(x0.dtype) / self.T).view(-1, 1, 1, 1) * x0


class FirstLevelOnly(dg.Degradation):
    """Slip: uses t[0] for every image."""

    def degrade(self, x0, t):
        return (1 - int(t[0]) / self.T) * x0


class NotExactAtZero(dg.Degradation):
    """Slip: overrides __call__, so t = 0 is not kept exact (and t is not validated)."""

    def __call__(self, x0, t):
        return x0 * (1 - t / (self.T + 1)) + 1e-3


class Unchanged(dg.Degradation):
    def degrade(self, x0, t):
        return x0.clone()


class GoesAndComesBack(dg.Degradation):
    """Slip: the distance from x0 peaks half-way, then falls back to 0 at T."""

    def degrade(self, x0, t):
        w = torch.sin(torch.pi * t.to(x0.dtype) / self.T).view(-1, 1, 1, 1)
        return (1 - w) * x0


class InPlace(dg.Degradation):
    def degrade(self, x0, t):
        return x0.mul_(0.5)


class ShrinksImages(dg.Degradation):
    def degrade(self, x0, t):
        return F.avg_pool2d(x0, 2)


class ChangesDtype(dg.Degradation):
    def __call__(self, x0, t):
        t = dg.as_time_tensor(t, x0.shape[0], self.T, x0.device)
        out = (1 - t.double() / self.T).view(-1, 1, 1, 1) * x0.double()
        return out


class AcceptsAnyT(dg.Degradation):
    """Slip: overrides __call__ without validating t."""

    def __call__(self, x0, t):
        if isinstance(t, int):
            t = torch.full((x0.shape[0],), t)
        keep = (t == 0).view(-1, 1, 1, 1)
        return torch.where(
            keep,
            x0,
            (1 - t.to(x0.dtype).clamp(0, self.T) / self.T).view(-1, 1, 1, 1) * x0,
        )


class SecretlyRandom(dg.Degradation):
    """Slip: draws noise in degrade() but says random = False."""

    def degrade(self, x0, t):
        s = (t.to(x0.dtype) / self.T).view(-1, 1, 1, 1)
        return x0 + s * torch.randn_like(x0)


class ClaimsLinear(dg.Degradation):
    """Slip: an affine map (fade toward black) flagged linear."""

    linear = True

    def degrade(self, x0, t):
        c = (1 - t.to(x0.dtype) / self.T).view(-1, 1, 1, 1)
        return -1 + c * (x0 + 1)


class ClaimsCompositional(FadeToGrey):
    """Slip: compositional = True but step() is not written."""

    compositional = True


class NoSuperInit(dg.Degradation):
    def __init__(self, T=10):
        self.steps = T  # forgot super().__init__(T)

    def degrade(self, x0, t):
        return x0


class Raises(dg.Degradation):
    def degrade(self, x0, t):
        return x0 * self.strength  # no such attribute


# --- the Darken exercise's slips (the formula) and claimed end states
# -----------------------------
class DarkenBase(dg.Degradation):
    """The exercise's Darken, with the contrast c_t as a hook for the slips below."""

    def __init__(self, T=10, kappa=0.9, channels=None):
        super().__init__(T, channels)
        self.kappa = kappa

    def contrast(self, t, like):
        return (1 - self.kappa * t.to(like.dtype) / self.T).view(-1, 1, 1, 1)

    def degrade(self, x0, t):
        return -1 + self.contrast(t, x0) * (x0 + 1)


class GoodDarken(DarkenBase, name="test-good-darken"):
    pass


class DarkenToZero(DarkenBase, name="test-darken-to-zero"):
    def degrade(self, x0, t):
        return self.contrast(t, x0) * x0  # fades toward mid-grey, not black


class DarkenWrongSign(DarkenBase, name="test-darken-wrong-sign"):
    def contrast(self, t, like):
        # outputs reach 2.8
        return (1 + self.kappa * t.to(like.dtype) / self.T).view(-1, 1, 1, 1)


class DarkenOffByOne(DarkenBase, name="test-darken-off-by-one"):
    def contrast(self, t, like):
        # (t - 1) / T
        return (1 - self.kappa * (t - 1).clamp(min=0).to(like.dtype) / self.T).view(
            -1, 1, 1, 1
        )


class DarkenNoKappa(DarkenBase, name="test-darken-no-kappa"):
    def contrast(self, t, like):
        return (1 - t.to(like.dtype) / self.T).view(-1, 1, 1, 1)


class DarkenNoOffset(DarkenBase, name="test-darken-no-offset"):
    def degrade(self, x0, t):
        return -1 + self.contrast(t, x0) * x0


class DarkenFirstLevel(DarkenBase, name="test-darken-first-level"):
    def degrade(self, x0, t):
        return -1 + self.contrast(t[:1].expand_as(t), x0) * (x0 + 1)  # a batch-wide t


class DarkenInPlace(DarkenBase, name="test-darken-in-place"):
    def degrade(self, x0, t):
        return x0.add_(1).mul_(self.contrast(t, x0)).sub_(1)


class DarkenUnnamed(DarkenBase):  # the book's solution before the fix: no registry name
    pass


class FadeClaimingFlatEnd(FlatEnd, dg.Degradation, name="test-fade-flat-claim"):
    """Claims a flat end state (the FlatEnd mixin) but fades only halfway: D(x0, T) = x0 / 2."""

    def __init__(self, T=10, channels=None):
        super().__init__(T, channels)

    def degrade(self, x0, t):
        return (1 - 0.5 * t.to(x0.dtype) / self.T).view(-1, 1, 1, 1) * x0


class FadeToFlat(FlatEnd, dg.Degradation, name="test-fade-to-flat"):
    """Blends toward each image's mean colour: D(x0, T) is flat, as the FlatEnd mixin says."""

    def __init__(self, T=10, channels=None):
        super().__init__(T, channels)

    def degrade(self, x0, t):
        u = (t.to(x0.dtype) / self.T).view(-1, 1, 1, 1)
        return (1 - u) * x0 + u * x0.mean(dim=(-2, -1), keepdim=True)

    def prior(self, n, shape, generator=None, device="cpu"):
        return self.flat_prior(n, shape, 1.0, generator, device)


class FlatEndWithWideFlatPrior(FadeToFlat, name="test-flat-prior-too-wide"):
    def prior(self, n, shape, generator=None, device="cpu"):
        return self.flat_prior(n, shape, 1.5, generator, device)  # colours out to +-1.5


class FlatEndWithNoisyPrior(FadeToFlat, name="test-flat-prior-noisy"):
    def prior(self, n, shape, generator=None, device="cpu"):
        return torch.rand((n, *shape), generator=generator) * 2 - 1  # not flat


def test_the_exercise_formula_is_accepted_by_the_right_darken(capsys):
    ok, out = _verdict(capsys, GoodDarken(T=10, channels=1), formula="darken")
    assert ok, out
    assert (
        "equals D(x0, t) = -1 + (1 - kappa t / T)(x0 + 1)" in out
        and "stay in [-1, 1]" in out
    )
    ok, out = _verdict(
        capsys,
        GoodDarken(T=10, channels=1),
        formula=lambda x0, t: -1 + (1 - 0.09 * t) * (x0 + 1),
    )
    assert ok, out


@pytest.mark.parametrize(
    "D, formula, words",
    [
        (DarkenToZero(T=10, channels=1), "darken", ["fades toward 0"]),
        (DarkenWrongSign(T=10, channels=1), None, ["leaves [-1, 1]", "2.8"]),
        (DarkenOffByOne(T=10, channels=1), "darken", ["(t - 1) / T"]),
        (DarkenNoKappa(T=10, channels=1), "darken", ["left out kappa"]),
        (DarkenNoOffset(T=10, channels=1), None, ["should grow with t"]),
        (DarkenFirstLevel(T=10, channels=1), "darken", ["own t"]),
        (DarkenInPlace(T=10, channels=1), "darken", ["in place"]),
        (DarkenUnnamed(T=10, channels=1), "darken", ["no registry name", "name="]),
        (
            FadeToGrey(T=10, channels=1),
            "darken",
            ["differs from the exercise's formula"],
        ),
        (
            FadeClaimingFlatEnd(T=10, channels=1),
            None,
            ["FlatEnd mixin", "is not that end state"],
        ),
        (FlatEndWithWideFlatPrior(T=10, channels=1), None, ["D.prior", "clamp"]),
        (FlatEndWithNoisyPrior(T=10, channels=1), None, ["D.prior", "not end states"]),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, dg.Degradation) else None,
)
def test_the_exercise_slips_fail_with_a_message_naming_them(capsys, D, formula, words):
    ok, out = _verdict(capsys, D, formula=formula)
    assert ok is False, out
    assert out.startswith("Not yet")
    for word in words:
        assert word in out, out


def test_a_real_flat_end_passes(capsys):
    ok, out = _verdict(capsys, FadeToFlat(T=10, channels=1))
    assert ok, out
    assert "end state" in out


def test_a_bad_formula_argument_raises():
    with pytest.raises(ValueError, match="formula must be"):
        check_degradation(GoodDarken(T=10), formula="brighten")


def test_the_checker_is_fast(capsys):
    import time

    D = GoodDarken(T=10, channels=1)
    check_degradation(D, formula="darken")
    start = time.process_time()
    check_degradation(D, formula="darken")
    assert time.process_time() - start < 1.0


def _verdict(capsys, D, **kwargs):
    ok = check_degradation(D, **kwargs)
    return ok, capsys.readouterr().out


# : Every library degradation from its defaults (read from the registry, at most 20
# levels: tests/test_contract.py : runs the contract itself at full size), and the
# settings that change what check_degradation adds to it.
LIBRARY = {
    **{
        name: (lambda cls=cls: quick_instance(cls))
        for name, cls in library_degradations().items()
    },
    "blur-collapse": lambda: dg.GaussianBlur(T=20, collapse_at_T=True),
    "superres-bicubic": lambda: dg.SuperResolution(T=2, mode="bicubic"),
}


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_library_degradation_passes_what_the_checker_adds_to_the_contract(
    capsys, monkeypatch, name
):
    """The checker's own checks (images in [-1, 1], the end state a class claims, its prior) on every library
    degradation; the contract, which test_contract.py runs on each, is taken as passed here."""
    from colddiff_lib.degradations import contract

    ran = []
    monkeypatch.setattr(
        contract,
        "check",
        lambda D, x0=None: (ran.append(D) or [], f"{type(D).__name__} (contract)"),
    )
    ok, out = _verdict(capsys, LIBRARY[name]())
    assert ok, out
    assert out.startswith("Correct") and len(ran) == 1


def test_the_pretrained_models_degradations_pass(capsys):
    for name in ("mnist-blend", "mnist-superres"):
        _, D = zoo.load_pretrained(name)
        ok, out = _verdict(capsys, D)
        assert ok, out


def test_a_well_made_subclass_passes_and_its_flags_are_checked(capsys):
    for D in (Darken(T=10), FadeToGrey(T=7, channels=1)):
        ok, out = _verdict(capsys, D)
        assert ok, out
    assert "compositional = True" in _verdict(capsys, Darken(T=10))[1]


def test_own_images_of_any_size_and_channels(capsys):
    x0 = (
        load_dataset("mnist5k", split="test", image_size=16)
        .images[:4]
        .repeat(1, 3, 1, 1)
    )
    ok, out = _verdict(capsys, FadeToGrey(T=5), x0=x0)
    assert ok, out


@pytest.mark.parametrize(
    "D, words",
    [
        (FirstLevelOnly(T=10), ["LongTensor", "own t"]),
        (NotExactAtZero(T=10), ["D(x0, 0) differs from x0", "degrade"]),
        (Unchanged(T=10), ["change with t"]),
        (GoesAndComesBack(T=10), ["should grow with t"]),
        (InPlace(T=10), ["in place"]),
        (ShrinksImages(T=10), ["shape"]),
        (ChangesDtype(T=10), ["dtype"]),
        (AcceptsAnyT(T=10), ["must raise ValueError", "0..10"]),
        (SecretlyRandom(T=10), ["random = True", "freeze_state"]),
        (ClaimsLinear(T=10), ["linear = False"]),
        (
            ClaimsCompositional(T=10),
            ["compositional = False", "step_op", "NotImplementedError"],
        ),
        (NoSuperInit(T=10), ["super().__init__"]),
        (Raises(T=10), ["AttributeError", "strength"]),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, dg.Degradation) else "",
)
def test_typical_slips_fail_with_a_useful_message(capsys, D, words):
    ok, out = _verdict(capsys, D)
    assert ok is False
    assert out.startswith("Not yet")
    for word in words:
        assert word in out, out


def test_wrong_kinds_of_answer_raise_value_error():
    with pytest.raises(ValueError, match="instance.*FadeToGrey\\(T=10\\)"):
        check_degradation(FadeToGrey)
    with pytest.raises(ValueError, match="D must be an instance"):
        check_degradation(lambda x0, t: x0)
    with pytest.raises(ValueError, match="x0"):
        check_degradation(FadeToGrey(T=5), x0=torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="at least two"):
        check_degradation(FadeToGrey(T=5), x0=torch.zeros(1, 1, 16, 16))


# --- Appendix A1: training time from a zoo card
# -----------------------------------------------
def _card_rates(name):
    card = zoo.card(name)
    h = card["history"]
    slow = max(card["step"], h["step"][-1]) / card["train_seconds"]
    fast = h["step"][-1] / h["elapsed"][-1]
    return min(slow, fast), max(slow, fast)


@pytest.mark.parametrize("name", ["mnist-superres", "mnist-blur"])
def test_training_time_from_either_rate_passes(capsys, name):
    slow, fast = _card_rates(name)
    for rate in (slow, fast, (slow + fast) / 2):
        assert check_training_time(6000 / rate, 6000, name=name) is True
    assert "Correct" in capsys.readouterr().out
    assert check_training_time(torch.tensor(6000 / slow), 6000, name=name)
    assert check_training_time(700000 / slow, 700000, name=name)


def test_training_time_slips_are_named(capsys):
    slow, fast = _card_rates("mnist-superres")
    assert check_training_time(6000 / slow / 60, 6000) is False
    assert "minutes" in capsys.readouterr().out
    assert check_training_time(700000 / slow / 3600, 700000) is False
    assert "hours" in capsys.readouterr().out
    assert check_training_time(6000 * slow, 6000) is False
    assert "multiplied" in capsys.readouterr().out
    assert check_training_time(6000 / slow * 3, 6000) is False
    assert "too long" in capsys.readouterr().out
    # The side-by-side rate of another model is not the rate of this one.
    other_slow, _ = _card_rates("mnist-blur")
    if other_slow < slow / 2:
        assert check_training_time(6000 / other_slow, 6000) is False
    assert check_training_time(-5.0, 6000) is False


def test_training_time_wrong_kinds_raise():
    with pytest.raises(ValueError, match="answer"):
        check_training_time("300 s", 6000)
    with pytest.raises(ValueError, match="steps"):
        check_training_time(300.0, 6000.5)
    with pytest.raises(ValueError, match="steps"):
        check_training_time(300.0, 0)
    with pytest.raises(ValueError, match="name"):
        check_training_time(300.0, 6000, name="not-a-model")
    with pytest.raises(ValueError, match="training card"):
        check_training_time(300.0, 6000, name="mnist-classifier")


def test_chapter_7_blend_step_identity_matches_the_sampler():
    """Chapter 7 (and its exercise) state one step of Algorithm 2 from the true path as
    x_{s-1} = D(x0, s-1) + w_s (x0_hat - x0), w_s = sqrt(abar_{s-1}) - sqrt(abar_s): check it against
    the sampler, and that the chapter writes that sign."""
    from pathlib import Path

    from colddiff_lib.sampling import sample

    D = dg.Blend("lfw", T=50)
    x0 = load_dataset("mnist5k", split="test").images[:4]
    Df = D.freeze(x0, torch.Generator().manual_seed(0))
    e = 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    for s in (1, 17, 50):
        steps = []
        sample(
            lambda x, t: x0 + e, Df, Df(x0, s), s, clip_x0=False, callback=steps.append
        )
        w = float(D.alpha_bar[s - 1].sqrt() - D.alpha_bar[s].sqrt())
        torch.testing.assert_close(
            steps[0]["x_next"], Df(x0, s - 1) + w * e, atol=1e-5, rtol=0
        )
    cells = notebook_cells(
        Path(__file__).parents[1] / "book" / "07_your_own_degradation.ipynb"
    )
    text = "".join(cell_source(c) for c in cells)
    # Displays may be split over lines (aligned): compare without alignment marks, line
    # breaks and spaces.
    flat = "".join(
        text.replace("\\\\", "").replace("&", "").replace(r"\quad", "").split()
    )
    assert r"x_{s-1}=D(x_0,s-1)+w_s\,(\hatx_0-x_0)" in flat
    assert r"one step of Algorithm 2 gives $D(x_0, s - 1) + w_s\, e$" in text
    assert r"w_s\,(x_0-\hatx_0)" not in flat and r"D(x_0,s-1)-w_s" not in flat
