"""Degradation operators D(x0, t): blur, inpainting, super-resolution, snow, noise and blending.

Every operator takes images [B, C, H, W] in [-1, 1] and t as an int or LongTensor[B] in 0..T,
returns D(x0, 0) == x0, and keeps shape, dtype and device. See :class:`Degradation` to write one.
"""

from .base import Degradation, as_time_tensor, check_images
from .blur import GaussianBlur, blur_sigmas, gaussian_kernel_1d
from .inpainting import Inpainting, InpaintingFill
from .mixing import Blend, GaussianNoise, cosine_alpha_bar
from .snow import Snow
from .superres import SuperResolution

REGISTRY = {
    "blur": GaussianBlur,
    "inpaint": Inpainting,
    "inpaint_fill": InpaintingFill,
    "superres": SuperResolution,
    "snow": Snow,
    "noise": GaussianNoise,
    "blend": Blend,
}


def build(name: str, **kwargs) -> Degradation:
    """Build a degradation by name (a key of ``REGISTRY``) from its :meth:`Degradation.config` arguments.

    ``build(**D.config())`` rebuilds ``D``; :class:`Blend` also needs ``targets=``.
    """
    if name not in REGISTRY:
        raise ValueError(f"name must be one of {sorted(REGISTRY)}, got {name!r}")
    return REGISTRY[name](**kwargs)


__all__ = ["Degradation", "GaussianBlur", "Inpainting", "InpaintingFill", "SuperResolution", "Snow",
           "GaussianNoise", "Blend", "build", "REGISTRY", "as_time_tensor", "check_images",
           "blur_sigmas", "gaussian_kernel_1d", "cosine_alpha_bar"]
