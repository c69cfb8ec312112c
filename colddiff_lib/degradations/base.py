"""The degradation interface: D(x0, t), a fixed operator with no learned parameters.

A degradation plays the role a noise scheduler plays in diffusers: it is kept apart from the
model, it owns the schedule, and everything the samplers need is ``D.T`` and ``D(x0, t)``.

Conventions used by every degradation in this package:

* images ``x0`` are float tensors ``[B, C, H, W]`` with values in ``[-1, 1]``;
* ``t`` is an int or a ``LongTensor[B]`` with ``0 <= t <= T``; ``D(x0, 0) == x0`` exactly;
* the output has the shape, dtype and device of ``x0``.

To write a new degradation, subclass :class:`Degradation` with a name and override :meth:`degrade`::

    class Pixelate(Degradation, name="pixelate"):
        def __init__(self, T=4, channels=None):
            super().__init__(T, channels)
        def degrade(self, x0, t): ...

The class registers itself under its name (``build("pixelate", T=4)``), its constructor arguments are
recorded, so :meth:`Degradation.config` needs no hand-kept copy, and the base class validates the
input, turns ``t`` into a ``LongTensor[B]`` and keeps ``t = 0`` samples exact.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, ClassVar, Dict, Optional, Sequence, Union

import torch

# the degradations import these from here
from ..checks import check_bool, check_choice, check_positive, is_int  # noqa: F401
from ..runtime import resolve_device

TimeLike = Union[int, torch.Tensor]

# : The largest number of steps a degradation accepts (the paper's largest is 750;
# schedules and : precomputed matrices grow with T, so a config asking for 10**9 is
# refused rather than allocated).
MAX_T = 10_000
#: The largest number of image channels a degradation accepts.
MAX_CHANNELS = 64

#: Every named degradation class, by name: filled by ``class X(Degradation, name="x")``.
REGISTRY: Dict[str, type] = {}


def check_images(
    x: torch.Tensor, name: str = "x0", channels: Optional[int] = None
) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite floating tensor ``[B, C, H, W]`` (with ``channels`` C)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape [B, C, H, W], got {type(x).__name__}"
        )
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have rank 4 ([B, C, H, W]), got rank {x.dim()} with shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} has {x.shape[1]} channels but this degradation expects channels={channels}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name} holds NaN or infinite values; images must be finite, in [-1, 1]"
        )


def as_time_tensor(
    t: TimeLike, batch: int, T: Optional[int], device: torch.device, name: str = "t"
) -> torch.Tensor:
    """Return ``t`` as a ``LongTensor[batch]`` on ``device``, checking ``0 <= t <= T`` (``T=None``: no range
    check, and no device synchronisation: what a network's forward needs)."""
    if isinstance(t, bool):
        raise ValueError(f"{name} must be an int or a LongTensor[B], got bool")
    if isinstance(t, int):
        if not 0 <= t < 2**63:  # levels are non-negative, and a LongTensor holds them
            raise ValueError(
                f"{name} must lie in 0..{'T = 0..' + str(T) if T is not None else '2**63 - 1'}, got {t}"
            )
        t = torch.full((batch,), t, dtype=torch.long, device=device)
    elif isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"{name} must hold integers, got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.reshape(1).expand(batch)
        if t.dim() != 1 or t.shape[0] != batch:
            raise ValueError(
                f"{name} must be an int or a LongTensor of shape [{batch}], got shape {tuple(t.shape)}"
            )
        t = t.to(device=device, dtype=torch.long)
    else:
        raise ValueError(
            f"{name} must be an int or a LongTensor[B], got {type(t).__name__}"
        )
    if T is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) > T):
        raise ValueError(
            f"{name} must lie in 0..T = 0..{T}, got values from {int(t.min())} to {int(t.max())}"
        )
    return t


def draw(
    kind: str, shape, generator: Optional[torch.Generator], device
) -> torch.Tensor:
    """``torch.rand`` or ``torch.randn`` (``kind``) drawn on the generator's device, moved to ``device`` (any
    device :func:`colddiff_lib.runtime.resolve_device` takes, ``"auto"`` included).

    Lets a CPU generator (reproducible everywhere) drive degradations of CUDA tensors.
    """
    fn = {"rand": torch.rand, "randn": torch.randn}[kind]
    device = resolve_device(device)
    gen_device = generator.device if generator is not None else device
    return fn(tuple(shape), generator=generator, device=gen_device).to(device)


def per_sample(
    values: torch.Tensor, t: torch.Tensor, like: torch.Tensor
) -> torch.Tensor:
    """Gather ``values[t]`` for a schedule ``values[T+1]`` and broadcast it to ``like`` ([B, 1, 1, 1])."""
    return values.to(device=like.device, dtype=like.dtype)[t].view(
        -1, *([1] * (like.dim() - 1))
    )


class Degradation:
    """Base class of all degradations ``D(x0, t)``.

    Attributes:
        T: number of steps; ``t`` ranges over ``0..T``.
        channels: number of image channels expected, or ``None`` for any.
        linear: whether ``x -> D(x, t)`` is linear (``D(a x + b y, t) = a D(x, t) + b D(y, t)``).
        compositional: whether :meth:`step` exists, with ``D(x0, t) = step(D(x0, t-1), t)``.
        random: whether ``D`` draws random quantities (noise, mask centres, blend targets);
            :meth:`freeze` fixes them for one batch.
        state_is_observed: for a random ``D``, whether a restorer may know the random draw that
            degraded an image (an inpainting mask's position: yes) or not (the noise, snow flakes
            or blend target are the corruption itself: a fair reconstruction samples with its own draw).
    """

    linear: bool = False
    compositional: bool = False
    random: bool = False
    state_is_observed: bool = False
    # the registry key, given as ``class X(Degradation, name="x")``
    name: ClassVar[Optional[str]] = None

    def __init_subclass__(cls, name: Optional[str] = None, **kwargs):
        super().__init_subclass__(**kwargs)
        # a subclass without a name of its own is not registered (and not buildable by
        # name)
        cls.name = name
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"{cls.__name__}: name must be a non-empty string, got {name!r}"
                )
            other = REGISTRY.get(name)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise ValueError(
                    f"{cls.__name__}: the degradation name {name!r} is taken by {other.__name__}"
                )
            REGISTRY[name] = cls

    def __new__(cls, *args, **kwargs):
        # Record the constructor arguments (defaults filled in): config() returns them,
        # build() replays them.
        self = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        # a wrong call: __init__ itself reports it; copy.copy() also lands here
        except TypeError:
            return self
        bound.apply_defaults()
        arguments = dict(list(bound.arguments.items())[1:])
        for key, param in inspect.signature(cls.__init__).parameters.items():
            if param.kind is param.VAR_KEYWORD:
                arguments.update(arguments.pop(key, {}))
            elif param.kind is param.VAR_POSITIONAL:
                arguments.pop(key, None)
        self._init_args = arguments
        return self

    def __init__(self, T: int, channels: Optional[int] = None):
        if not is_int(T) or not 1 <= T <= MAX_T:
            raise ValueError(
                f"T must be a positive int (number of steps) of at most {MAX_T}, got {T!r}"
            )
        if channels is not None and (
            not is_int(channels) or not 1 <= channels <= MAX_CHANNELS
        ):
            raise ValueError(
                f"channels must be None or an int in 1..{MAX_CHANNELS}, got {channels!r}"
            )
        self.T = T
        self.channels = channels

    # --- what a subclass overrides
    # --------------------------------------------------------------
    def degrade(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Degrade validated images ``x0`` [B, C, H, W] to levels ``t`` (LongTensor[B], 0..T)."""
        raise NotImplementedError(f"{type(self).__name__} must override degrade(x0, t)")

    def step_op(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Apply the single step ``t`` (LongTensor[B], 1..T) to ``x`` = D(x0, t-1)."""
        raise NotImplementedError(
            f"{type(self).__name__} is not compositional: it has no step()"
        )

    def freeze_state(
        self, like: torch.Tensor, generator: Optional[torch.Generator]
    ) -> dict:
        """Draw the random quantities for a batch shaped like ``like``; return them as attributes."""
        return {}

    def prior(
        self,
        n: int,
        shape: Sequence[int],
        generator: Optional[torch.Generator] = None,
        device: Union[str, torch.device] = "cpu",
    ) -> torch.Tensor:
        """A starting point x_T ``[n, *shape]`` for generation, where the degradation has one."""
        raise NotImplementedError(f"{type(self).__name__} has no generation prior")

    @property
    def has_latent(self) -> bool:
        """Whether x_T is summarised by a small latent (a flat colour, a tiny image): true when the class
        overrides :meth:`latent`, and then a Gaussian prior can be fitted to training images' latents."""
        return type(self).latent is not Degradation.latent

    def latent(self, x_T: torch.Tensor) -> torch.Tensor:
        """The latent of end states x_T [B, C, H, W] (degradations with ``has_latent``, e.g. a flat colour [B, C])."""
        raise NotImplementedError(
            f"{type(self).__name__} has no latent end state (has_latent is False): "
            f"generate from its prior() instead"
        )

    def from_latent(self, z: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """End states x_T, ``[B, C, H, W]`` for ``shape = (C, H, W)``, painted from latents ``z`` (degradations
        with ``has_latent``)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no latent end state (has_latent is False)"
        )

    def noise_schedule(self):
        """For a degradation of the form ``D(x0, t) = clean(x0, t) + sigma_t z`` with Gaussian-like z (noise,
        a noisy cold degradation): ``(signal [T + 1], sigma [T + 1])`` float64, the gain of x0 in clean() and
        the noise's standard deviation. The samplers that re-estimate z (``"ddim"``, ``"ancestral"``) need it;
        ``None`` (the default) for a degradation without such a noise."""
        return None

    def clean(self, x0: torch.Tensor, t) -> torch.Tensor:
        """The noise-free part of D(x0, t) [B, C, H, W], for degradations with a :meth:`noise_schedule`."""
        raise NotImplementedError(
            f"{type(self).__name__} has no noise schedule (noise_schedule() is None)"
        )

    def fresh_noise(
        self, like: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """A new draw of z [B, C, H, W] shaped like ``like``, for degradations with a :meth:`noise_schedule`."""
        raise NotImplementedError(
            f"{type(self).__name__} has no noise schedule (noise_schedule() is None)"
        )

    @property
    def symmetry_noise(self) -> float:
        """The standard deviation of the Gaussian noise that generation adds to a start x_T by default: 0, but
        for end states that forget x0 entirely and need their symmetry broken (the paper's 0.002 for a blur
        that collapses to a flat colour), or a noisy degradation's own sigma_T."""
        return 0.0

    def axis_matrices(self, n: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
        """For a separable linear D, the per-axis matrices ``M_t`` with ``D(x0, t) = M_t x0 M_t^T`` on every
        channel of a square ``n`` x ``n`` image: [T + 1, n, n], ``M_0 = I``. What :mod:`colddiff_lib.export`
        writes into the in-page sampler; other degradations raise NotImplementedError."""
        raise NotImplementedError(
            f"{type(self).__name__} is not a separable linear degradation (no axis_matrices)"
        )

    @property
    def export_form(self) -> Optional[str]:
        """How the book's in-page sampler can run D (:mod:`colddiff_lib.export`): ``"separable"`` where
        ``D(x0, t) = M_t x0 M_t^T`` with the matrices of :meth:`axis_matrices` (true where the class overrides
        it; a class whose configuration decides, such as bicubic super-resolution, overrides this too), or
        ``None``: the page cannot run it."""
        return (
            "separable"
            if type(self).axis_matrices is not Degradation.axis_matrices
            else None
        )

    @classmethod
    def upgrade_config(cls, config: dict, stored: dict) -> dict:
        """``config``, this class's arguments as a checkpoint or zoo card written by an older version of the
        library recorded them, brought up to date (``stored``: that checkpoint or card, for what older files
        kept beside the config). Called on every config read (:func:`colddiff_lib.checkpoint.build_degradation`)
        before the class is built; the default returns ``config`` unchanged."""
        return config

    # --- public API
    # -----------------------------------------------------------------------------
    def __call__(self, x0: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Return D(x0, t): ``x0`` [B, C, H, W] in [-1, 1], ``t`` int or LongTensor[B] in 0..T."""
        check_images(x0, "x0", self.channels)
        t = as_time_tensor(t, x0.shape[0], self.T, x0.device)
        self._check_frozen_batch(x0)
        # an empty batch degrades to an empty batch, whatever the operator
        if x0.shape[0] == 0:
            return x0.clone()
        out = self.degrade(x0, t)
        # t = 0 must return x0 bit for bit, whatever rounding the operator does.
        keep = (t == 0).view(-1, *([1] * (x0.dim() - 1)))
        return torch.where(keep, x0, out.to(x0.dtype))

    def step(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Apply step ``t`` alone: ``D(x0, t) == D.step(D(x0, t - 1), t)`` (compositional only).

        ``x`` is [B, C, H, W]; ``t`` an int or LongTensor[B] in 1..T.
        """
        if not self.compositional:
            raise NotImplementedError(
                f"{type(self).__name__} is not compositional: it has no step()"
            )
        check_images(x, "x", self.channels)
        t = as_time_tensor(t, x.shape[0], self.T, x.device)
        if t.numel() and int(t.min()) < 1:
            raise ValueError(
                f"t must lie in 1..T = 1..{self.T} for step(), got {int(t.min())}"
            )
        self._check_frozen_batch(x)
        if x.shape[0] == 0:
            return x.clone()
        return self.step_op(x, t).to(x.dtype)

    def freeze(
        self, like: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> "Degradation":
        """Return a copy whose random quantities are drawn once for the batch ``like`` [B, C, H, W].

        Samplers need this: Algorithm 2 compares D(x, s) and D(x, s-1) under the same noise,
        mask centre or blend target. A deterministic degradation returns itself.
        """
        if not self.random:
            return self
        check_images(like, "like", self.channels)
        frozen = copy.copy(self)
        for key, value in self.freeze_state(like, generator).items():
            setattr(frozen, key, value)
        frozen._frozen_batch = like.shape[0]
        return frozen

    def freeze_to(self, x_T: torch.Tensor) -> "Degradation":
        """A copy frozen so that D(x0, T) == x_T for every x0: the state a generation run starts from.

        Deterministic degradations return themselves; random ones whose x_T carries their random
        quantities (noise, blend target, fill colour) override this.
        """
        if self.random:
            raise NotImplementedError(
                f"{type(self).__name__} cannot recover its random state from x_T"
            )
        return self

    def freeze_at(self, x_t: torch.Tensor, t: int) -> "Degradation":
        """A copy frozen so that a sampler can start from ``x_t`` [B, C, H, W] at level ``t`` (1..T): a generation
        run from a prior fitted below T. :meth:`freeze_to` at ``t = T``; deterministic degradations return
        themselves; a random one overrides this where x_t shows its random state (an inpainting fill colour)."""
        if t == self.T:
            return self.freeze_to(x_t)
        if self.random:
            raise NotImplementedError(
                f"{type(self).__name__} cannot recover its random state from an image at level {t}"
            )
        return self

    @property
    def frozen(self) -> bool:
        return getattr(self, "_frozen_batch", None) is not None

    def _check_frozen_batch(self, x: torch.Tensor) -> None:
        n = getattr(self, "_frozen_batch", None)
        if n is not None and x.shape[0] != n:
            raise ValueError(
                f"this degradation was frozen for a batch of {n} images, got a batch of {x.shape[0]}"
            )

    def config(self) -> dict:
        """``{"name": ..., **constructor arguments}``, plain JSON data: ``build(**D.config())`` rebuilds D.

        Raises ValueError if the class has no name or an argument is not plain data (a tensor, say):
        such a degradation works, but cannot be written into a checkpoint.
        """
        if type(self).name is None:
            raise ValueError(
                f"{type(self).__name__} has no registry name: declare it as "
                f'class {type(self).__name__}(..., name="...") to save or rebuild it'
            )
        args = {
            key: _plain(value, f"{type(self).__name__}({key}=...)")
            for key, value in getattr(self, "_init_args", {}).items()
        }
        return {"name": type(self).name, **args}

    def __repr__(self) -> str:
        args = getattr(self, "_init_args", {"T": self.T})
        shown = {
            k: (f"<tensor {tuple(v.shape)}>" if isinstance(v, torch.Tensor) else v)
            for k, v in args.items()
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _plain(value: Any, where: str):
    """``value`` as JSON data (tuples become lists); ValueError naming ``where`` for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, where) for k, v in value.items()}
    raise ValueError(
        f"{where}: a {type(value).__name__} is not plain data, so this degradation cannot be saved "
        f"in a checkpoint; give the argument as numbers, strings or lists (e.g. a source name)"
    )


class FlatEnd:
    """Mixin for degradations whose end state x_T is a flat colour per image and channel.

    Generation priors are then distributions over colours: :meth:`latent` reads the colour of
    x_T, :meth:`from_latent` paints it, :meth:`flat_prior` draws it uniformly.
    """

    def latent(self, x_T: torch.Tensor) -> torch.Tensor:
        """The per-channel mean of x_T [B, C, H, W] -> [B, C] (what a flat prior is made of)."""
        return x_T.mean(dim=(-2, -1))

    def from_latent(self, z: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Flat images [B, C, H, W] of the colours ``z`` [B, C]."""
        C, H, W = shape
        return z.view(-1, C, 1, 1).expand(-1, C, H, W).contiguous()

    @staticmethod
    def flat_prior(
        n: int, shape: Sequence[int], half_range: float, generator=None, device="cpu"
    ) -> torch.Tensor:
        """Flat images [n, C, H, W] of colours uniform in ``[-half_range, half_range]`` per channel."""
        C, H, W = shape
        colour = (draw("rand", (n, C, 1, 1), generator, device) * 2 - 1) * half_range
        return colour.expand(n, C, H, W).contiguous()
