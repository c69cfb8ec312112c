"""Tests for colddiff_lib.training and colddiff_lib.checkpoint (all on the CPU, tiny U-Net)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from colddiff_lib.checkpoint import load_checkpoint, restore
from colddiff_lib.data import load_dataset
from colddiff_lib.degradations import GaussianBlur, GaussianNoise, Inpainting
from colddiff_lib.models import UNet
from colddiff_lib.training import TrainConfig, heldout_loss, train

SIZE = 16


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def mnist16():
    train_set = load_dataset("mnist5k", split="train", image_size=SIZE)
    test_set = load_dataset("mnist5k", split="test", image_size=SIZE)
    return train_set.images, test_set.images


def _blur():
    return GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1)


def _tiny(seed=0):
    torch.manual_seed(seed)
    return UNet.from_preset("tiny")


def _cfg(**kw):
    base = dict(batch_size=8, lr=1e-3, device="cpu", progress=False, log_every=5)
    base.update(kw)
    return TrainConfig(**base)


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_close_states(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (
            f"{k} differs by {(a[k] - b[k]).abs().max()}"
        )


def _no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------- learning
@pytest.mark.slow
def test_training_lowers_heldout_loss(mnist16):
    train_images, test_images = mnist16
    D = _blur()
    held = test_images[:200]
    model = _tiny(0)
    before = heldout_loss(model, D, held)
    # heldout_loss is deterministic (levels and randomness fixed by its seed).
    assert heldout_loss(model, D, held) == before
    result = train(
        model,
        D,
        train_images,
        TrainConfig(
            steps=120,
            batch_size=32,
            lr=1e-3,
            device="cpu",
            progress=False,
            log_every=20,
        ),
    )
    after = heldout_loss(result.model, D, held)
    after_ema = heldout_loss(result.ema, D, held)
    # Measured: 0.78 -> 0.21 after 120 steps, raw and EMA alike (0.19 after 300, which
    # took 2.5 times as long for no more evidence).
    assert before > 0.6
    assert after < 0.3 and after < 0.4 * before, (before, after)
    assert after_ema < 0.3 and after_ema < 0.4 * before, (before, after_ema)
    assert result.step == 120
    assert result.history["step"] == [20, 40, 60, 80, 100, 120]
    assert all(torch.isfinite(torch.tensor(result.history["loss"])))
    assert result.history["loss"][-1] < 0.5 * before


def test_heldout_loss_l2_and_mode(mnist16):
    _, test_images = mnist16
    D = _blur()
    model = _tiny(0)
    held = test_images[:60]
    l1 = heldout_loss(model, D, held, loss="l1")
    l2 = heldout_loss(model, D, held, loss="l2")
    assert l1 > 0 and l2 > 0 and l1 != l2
    assert model.training  # mode restored


# ---------------------------------------------------------------- resume
DEGRADATIONS = {
    "blur": _blur,
    "inpaint_random": lambda: Inpainting(T=10, std=1.0, random_centre=True, channels=1),
    "noise": lambda: GaussianNoise(T=20, channels=1),
}


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_resume_is_exact(mnist16, tmp_path, name):
    train_images, _ = mnist16
    data = train_images[:500]
    make_D = DEGRADATIONS[name]
    kw = dict(hflip=True, augment_shift=1, warmup_steps=10)

    a = train(
        _tiny(0),
        make_D(),
        data,
        _cfg(steps=40, checkpoint_dir=str(tmp_path / "a"), **kw),
    )

    b1 = train(
        _tiny(0),
        make_D(),
        data,
        _cfg(steps=20, checkpoint_dir=str(tmp_path / "b"), **kw),
    )
    assert b1.step == 20
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 20
    # a different initialisation: everything must come from the checkpoint
    fresh = _tiny(123)
    b = train(
        fresh,
        make_D(),
        data,
        _cfg(steps=40, resume=True, checkpoint_dir=str(tmp_path / "b"), **kw),
    )

    assert b.step == a.step == 40
    _assert_close_states(_params(a.model), _params(b.model))
    _assert_close_states(_params(a.ema), _params(b.ema))
    assert a.history["step"] == b.history["step"] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert a.history["loss"] == b.history["loss"]
    # The checkpoints on disk agree too.
    ca, cb = (
        load_checkpoint(tmp_path / "a" / "last.pt"),
        load_checkpoint(tmp_path / "b" / "last.pt"),
    )
    assert ca["step"] == cb["step"] == 40
    _assert_close_states(ca["ema"], cb["ema"])


def test_resume_without_checkpoint_starts_from_scratch(mnist16, tmp_path):
    train_images, _ = mnist16
    r1 = train(
        _tiny(0),
        _blur(),
        train_images[:100],
        _cfg(steps=5, resume=True, checkpoint_dir=str(tmp_path / "x")),
    )
    r2 = train(_tiny(0), _blur(), train_images[:100], _cfg(steps=5))
    assert r1.step == 5
    _assert_close_states(_params(r1.model), _params(r2.model), atol=0)


def test_resume_at_or_past_final_step_does_nothing(mnist16, tmp_path):
    train_images, _ = mnist16
    r = train(
        _tiny(0),
        _blur(),
        train_images[:100],
        _cfg(steps=6, checkpoint_dir=str(tmp_path)),
    )
    again = train(
        _tiny(5),
        _blur(),
        train_images[:100],
        _cfg(steps=6, resume=True, checkpoint_dir=str(tmp_path)),
    )
    assert again.step == 6
    _assert_close_states(_params(r.model), _params(again.model), atol=0)


# ---------------------------------------------------------------- reproducibility
def test_seeded_runs_are_reproducible(mnist16):
    train_images, _ = mnist16
    data = train_images[:300]
    D = Inpainting(T=10, std=1.0, random_centre=True, channels=1)
    r1 = train(_tiny(0), D, data, _cfg(steps=12, seed=3, augment_shift=1))
    r2 = train(_tiny(0), D, data, _cfg(steps=12, seed=3, augment_shift=1))
    _assert_close_states(_params(r1.model), _params(r2.model), atol=0)
    _assert_close_states(_params(r1.ema), _params(r2.ema), atol=0)
    assert r1.history["loss"] == r2.history["loss"]
    # A different training seed gives a different run.
    r3 = train(_tiny(0), D, data, _cfg(steps=12, seed=4, augment_shift=1))
    assert r3.history["loss"] != r1.history["loss"]


def test_train_accepts_a_dataset_and_grad_accum(mnist16):
    train_images, _ = mnist16

    # no .images attribute: indexed one by one
    class ListData(torch.utils.data.Dataset):
        def __len__(self):
            return 50

        def __getitem__(self, i):
            return train_images[i]

    r = train(_tiny(0), _blur(), ListData(), _cfg(steps=3, grad_accum=2, loss="l2"))
    assert r.step == 3 and len(r.history["loss"]) == 1


def test_train_rejects_channel_mismatch(mnist16):
    train_images, _ = mnist16
    with pytest.raises(ValueError, match="channels"):
        train(
            UNet.from_preset("tiny", channels=3),
            GaussianBlur(T=5),
            train_images[:10],
            _cfg(steps=1),
        )
    with pytest.raises(ValueError, match="at least one image"):
        train(_tiny(), _blur(), train_images[:0], _cfg(steps=1))


def test_validation_keeps_best_checkpoint(mnist16, tmp_path):
    train_images, test_images = mnist16
    r = train(
        _tiny(0),
        _blur(),
        train_images[:500],
        _cfg(steps=10, eval_every=5, checkpoint_dir=str(tmp_path)),
        val_data=test_images[:32],
        extra={"note": "hello"},
    )
    assert r.history["val_step"] == [5, 10]
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_val"] == pytest.approx(min(r.history["val_loss"]))
    assert best["note"] == "hello"
    model, D = restore(tmp_path / "best.pt")
    assert isinstance(D, GaussianBlur) and D.T == 20
    assert heldout_loss(model, D, test_images[:32]) == pytest.approx(
        best["best_val"], abs=1e-5
    )


# ---------------------------------------------------------------- non-finite loss
class NaNAfter(nn.Module):
    """Wraps a U-Net; from the ``n``-th call on its output is NaN. Snapshots last.pt just before."""

    def __init__(self, inner, n, watch=None):
        super().__init__()
        self.inner = inner
        self.n = n
        self.calls = 0
        self.channels = inner.channels
        self.watch = watch
        self.snapshot = None

    def config(self):
        return self.inner.config()

    def forward(self, x, t):
        self.calls += 1
        out = self.inner(x, t)
        if self.calls >= self.n:
            if self.snapshot is None and self.watch is not None:
                self.snapshot = Path(self.watch).read_bytes()
            out = out * float("nan")
        return out


def test_non_finite_loss_raises_and_keeps_the_checkpoint(mnist16, tmp_path):
    train_images, _ = mnist16
    last = tmp_path / "last.pt"
    model = NaNAfter(_tiny(0), n=7, watch=last)
    with pytest.raises(FloatingPointError, match=r"at step 7\b") as info:
        train(
            model,
            _blur(),
            train_images[:100],
            _cfg(steps=20, checkpoint_every=3, checkpoint_dir=str(tmp_path)),
        )
    assert str(last) in str(info.value)
    assert model.snapshot is not None
    assert last.read_bytes() == model.snapshot  # untouched by the failing step
    ckpt = load_checkpoint(last)
    assert ckpt["step"] == 6
    # The wrapper's weights (prefixed "inner.") load back into the architecture recorded
    # in the checkpoint.
    R = NaNAfter(UNet(**ckpt["model_config"]), n=10**9)
    R.load_state_dict(ckpt["ema"], strict=True)
    with torch.no_grad():
        assert torch.isfinite(R(train_images[:2], 5)).all()
    assert _no_temp_files(tmp_path)


def test_non_finite_loss_without_checkpoint_dir(mnist16):
    train_images, _ = mnist16
    with pytest.raises(FloatingPointError, match="at step 1"):
        train(NaNAfter(_tiny(0), n=1), _blur(), train_images[:20], _cfg(steps=3))


# ---------------------------------------------------------------- TrainConfig
@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(batch_size=-1), "batch_size"),
        (dict(grad_accum=True), "grad_accum"),
        (dict(checkpoint_every=0), "checkpoint_every"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(augment_shift=-2), "augment_shift"),
        (dict(loss="l3"), "loss"),
        (dict(lr=0.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(ema_decay=-0.1), "ema_decay"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        TrainConfig(**kwargs)


def test_train_config_from_dict():
    cfg = TrainConfig.from_dict({"steps": 7, "loss": "l2"})
    assert (
        cfg.steps == 7
        and cfg.loss == "l2"
        and cfg.batch_size == TrainConfig().batch_size
    )
    with pytest.raises(
        ValueError, match=r"train\.stepz: unknown key \(did you mean 'steps'\?\)"
    ):
        TrainConfig.from_dict({"stepz": 3, "learning_rate": 1.0})
    with pytest.raises(ValueError, match="steps"):
        TrainConfig.from_dict({"steps": -3})


# ---------------------------------------------------------------- data-parallel
DDP_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    from colddiff_lib.data import load_dataset
    from colddiff_lib.degradations import GaussianBlur
    from colddiff_lib.models import UNet
    from colddiff_lib.training import TrainConfig, train

    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    torch.manual_seed(100 + rank)  # different initialisations: DDP must make them agree
    model = UNet.from_preset("tiny")
    data = load_dataset("mnist5k", image_size=16).images[:256]
    D = GaussianBlur(T=20, kernel_size=11, std=7.0, channels=1)
    cfg = TrainConfig(steps=10, batch_size=8, lr=1e-3, device="cpu", progress=False, log_every=5,
                      checkpoint_every=5, checkpoint_dir=os.path.join(out, "ckpt"))
    result = train(model, D, data, cfg)
    torch.save({"model": result.model.state_dict(), "ema": result.ema.state_dict(), "step": result.step,
                "world": torch.distributed.get_world_size(), "loss": result.history["loss"]},
               os.path.join(out, f"rank{rank}.pt"))
    print(f"rank {rank} done step {result.step}", flush=True)
    torch.distributed.destroy_process_group()
""")


@pytest.mark.slow
def test_data_parallel_two_processes(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rank 0 done step 10" in proc.stdout and "rank 1 done step 10" in proc.stdout
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert ckpt["step"] == 10
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    # Gradients were averaged: both ranks hold the same weights (and EMA weights).
    _assert_close_states(r0["model"], r1["model"], atol=0)
    _assert_close_states(r0["ema"], r1["ema"], atol=0)
    # Each rank saw its own batches.
    assert r0["loss"] != r1["loss"]
    # Rank 0 wrote the checkpoint, with its weights, and it restores.
    _assert_close_states(ckpt["model"], r0["model"], atol=0)
    R, D = restore(tmp_path / "ckpt" / "last.pt")
    with torch.no_grad():
        assert R(torch.zeros(1, 1, 16, 16), 3).shape == (1, 1, 16, 16)
    assert _no_temp_files(tmp_path / "ckpt")
