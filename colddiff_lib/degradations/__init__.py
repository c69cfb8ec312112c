"""Degradation operators D(x0, t): blur, inpainting, super-resolution, snow, noise and blending.

Every operator takes images [B, C, H, W] in [-1, 1] and t as an int or LongTensor[B] in 0..T,
returns D(x0, 0) == x0, and keeps shape, dtype and device. See :class:`Degradation` to write one.
"""

import importlib
import inspect
import pkgutil

from ..checks import did_you_mean
from .base import REGISTRY, Degradation, as_time_tensor, check_images
from .blur import GaussianBlur, blur_sigmas, gaussian_kernel_1d
from .inpainting import Inpainting, InpaintingFill
from .mixing import Blend, GaussianNoise, cosine_alpha_bar
from .snow import Snow
from .superres import SuperResolution

# Every module of this package is imported, so a degradation added in a file of its own
# registers itself with no other edit (CONTRIBUTING.md).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


# : The degradation a run without a ``[degradation]`` name trains on (``train`` with no
# config): the paper's blur.
DEFAULT = GaussianBlur.name


def build(name: str, **kwargs) -> Degradation:
    """Build a degradation by name (a key of ``REGISTRY``) from its :meth:`Degradation.config` arguments.

    ``build(**D.config())`` rebuilds ``D``. Unknown names and arguments raise ValueError with the
    nearest known one.
    """
    # a list (name = ["blur"]) is not a name, and is not hashable either
    if not isinstance(name, str):
        raise ValueError(
            f"degradation name must be a string, one of {sorted(REGISTRY)}, got {name!r}"
        )
    if name not in REGISTRY:
        raise ValueError(
            f"degradation name must be one of {sorted(REGISTRY)}, got {name!r}"
            + did_you_mean(name, REGISTRY)
        )
    cls = REGISTRY[name]
    # without self
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    accepted = [
        p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    unknown = [] if takes_any else sorted(set(kwargs) - set(accepted))
    if unknown:
        hints = "".join(did_you_mean(k, accepted) for k in unknown)
        raise ValueError(
            f"degradation {name!r}: unknown arguments {unknown}; it takes {accepted}{hints}"
        )
    try:
        return cls(**kwargs)
    except TypeError as err:  # e.g. a string where a number belongs
        raise ValueError(f"degradation {name!r}: bad argument value ({err})") from None


__all__ = [
    "Degradation",
    "GaussianBlur",
    "Inpainting",
    "InpaintingFill",
    "SuperResolution",
    "Snow",
    "GaussianNoise",
    "Blend",
    "build",
    "REGISTRY",
    "as_time_tensor",
    "check_images",
    "blur_sigmas",
    "gaussian_kernel_1d",
    "cosine_alpha_bar",
]
