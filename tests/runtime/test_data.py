"""Data set loaders on tiny generated data sets in each format: shapes, pixel ranges,
labels, deterministic splits, and clear errors for missing or malformed data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nashc.dsl.ast import DType, Pos, Train
from nashc.dsl.errors import NashcError
from nashc.runtime.data import (
    DatasetError,
    DatasetMismatch,
    cifar10_loaders,
    digits_loaders,
    imagefolder_loaders,
    loaders_for,
    to_input_range,
)

P = Pos("t.nash", 1, 1)
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _all(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


# --- cifar10 -------------------------------------------------------------------------------


def make_cifar(root: Path, per_batch: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list]]:
    """Six pickled batches in the python CIFAR-10 format; returns what was written."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in BATCHES:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(root / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, fh)
        written[name] = (data, labels)
    return written


def test_cifar10_shapes_values_and_split(tmp_path: Path) -> None:
    written = make_cifar(tmp_path / "c")
    tr, va = cifar10_loaders(tmp_path / "c", batch=8, seed=0)
    x, y = _all(tr)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(tr) == 3  # 20 images in batches of 8
    xv, yv = _all(va)  # validation = test_batch, in file order
    data, labels = written["test_batch"]
    assert yv.tolist() == labels
    # R, G, B planes of 32x32, row-major: pixel (c, i, j) is data[c * 1024 + i * 32 + j]
    assert torch.equal(xv, torch.from_numpy(data.reshape(-1, 3, 32, 32)).float())
    assert xv[1, 2, 5, 7] == float(data[1, 2 * 1024 + 5 * 32 + 7])
    # training set = the five data batches (shuffled): same multiset of labels
    train_labels = sorted(v for n in BATCHES[:5] for v in written[n][1])
    assert sorted(y.tolist()) == train_labels


def test_cifar10_nested_folder_resize_gray_and_dtype(tmp_path: Path) -> None:
    make_cifar(tmp_path / "cifar-10-batches-py")
    tr, va = cifar10_loaders(tmp_path, batch=64, image=(1, 8, 8), dtype=DType("uint4"))
    x, _ = _all(tr)
    assert x.shape == (20, 1, 8, 8)
    assert float(x.min()) >= 0 and float(x.max()) <= 15 and torch.equal(x, x.round())


def test_cifar10_limit_and_determinism(tmp_path: Path) -> None:
    make_cifar(tmp_path / "c")
    a, va = cifar10_loaders(tmp_path / "c", batch=3, seed=5, limit=6)
    b, _ = cifar10_loaders(tmp_path / "c", batch=3, seed=5, limit=6)
    c, _ = cifar10_loaders(tmp_path / "c", batch=3, seed=6, limit=6)
    assert a.samples == 6 and va.samples == 4  # limit caps each split; test_batch has 4
    first = [y.tolist() for _, y in a]
    assert first == [y.tolist() for _, y in b]
    xa, xc = next(iter(cifar10_loaders(tmp_path / "c", 6, seed=5)[0]))[0], next(iter(c))[0]
    assert not torch.equal(xa[:3], xc)


@pytest.mark.parametrize("case, expect", [
    ("missing", "not found"),
    ("file", "is not a folder"),
    ("no_test", "lacks test_batch"),
    ("garbage", "cannot be read as a python pickle"),
    ("keys", "expected b'data'"),
    ("shape", "expected uint8 N x 3072"),
    ("labels", "one integer label per image"),
])
def test_cifar10_errors_name_path_and_expectation(tmp_path: Path, case: str, expect: str) -> None:
    root = tmp_path / "c"
    if case != "missing":
        make_cifar(root)
    bad = root / "data_batch_3"
    if case == "file":
        root = tmp_path / "plain.bin"
        root.write_bytes(b"x")
    elif case == "no_test":
        (root / "test_batch").unlink()
    elif case == "garbage":
        bad.write_bytes(b"not a pickle at all")
    elif case == "keys":
        bad.write_bytes(pickle.dumps({b"images": 1}))
    elif case == "shape":
        bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    elif case == "labels":
        bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(DatasetError) as info:
        cifar10_loaders(root, batch=4)
    msg = str(info.value)
    assert expect in msg, msg
    named = str(bad) if case in ("garbage", "keys", "shape", "labels") else str(root)
    assert named in msg, msg
    assert isinstance(info.value, NashcError)


# --- imagefolder ---------------------------------------------------------------------------


def make_folder(root: Path, classes: int = 3, per_class: int = 7) -> None:
    """Class k: images of constant gray 40 * k + 20, in varying sizes, modes and formats."""
    for k in range(classes):
        d = root / f"class_{k}"
        d.mkdir(parents=True)
        for i in range(per_class):
            v = 40 * k + 20
            size = (10 + i, 12)
            if i % 3 == 0:
                Image.new("L", size, v).save(d / f"{i}.png")
            elif i % 3 == 1:
                Image.new("RGB", size, (v, v, v)).save(d / f"{i}.bmp")
            else:
                Image.new("RGB", size, (v, v, v)).save(d / f"{i}.jpg", quality=100)
        (d / "notes.txt").write_text("not an image; ignored")


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 6, 5)])
def test_imagefolder_shapes_labels_values(tmp_path: Path, shape) -> None:
    make_folder(tmp_path / "f")
    tr, va = imagefolder_loaders(tmp_path / "f", batch=4, seed=0, image=shape)
    x, y = _all(tr)
    xv, yv = _all(va)
    assert x.shape == (17, *shape) and xv.shape == (4, *shape)  # 21 images, 20% validation
    assert set(torch.cat([y, yv]).tolist()) == {0, 1, 2}
    # constant images stay constant through resizing: the pixel tells the class
    for xs, ys in ((x, y), (xv, yv)):
        for img, label in zip(xs, ys):
            assert float((img - (40 * int(label) + 20)).abs().max()) <= 1.0


def test_imagefolder_split_is_seeded(tmp_path: Path) -> None:
    make_folder(tmp_path / "f")
    va1 = _all(imagefolder_loaders(tmp_path / "f", 4, seed=1, image=(1, 4, 4))[1])[1]
    va2 = _all(imagefolder_loaders(tmp_path / "f", 4, seed=1, image=(1, 4, 4))[1])[1]
    tr1 = [y.tolist() for _, y in imagefolder_loaders(tmp_path / "f", 4, seed=1,
                                                         image=(1, 4, 4))[0]]
    tr2 = [y.tolist() for _, y in imagefolder_loaders(tmp_path / "f", 4, seed=1,
                                                         image=(1, 4, 4))[0]]
    assert torch.equal(va1, va2) and tr1 == tr2
    seeds = {tuple(_all(imagefolder_loaders(tmp_path / "f", 4, seed=s, image=(1, 4, 4))[1])[1]
                   .tolist()) for s in range(6)}
    assert len(seeds) > 1


def test_imagefolder_with_train_and_val_folders(tmp_path: Path) -> None:
    make_folder(tmp_path / "f" / "train", per_class=3)
    make_folder(tmp_path / "f" / "val", classes=2, per_class=2)
    tr, va = imagefolder_loaders(tmp_path / "f", 4, image=(1, 8, 8))
    assert tr.samples == 9 and va.samples == 4
    assert sorted(_all(va)[1].tolist()) == [0, 0, 1, 1]


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found; expected a folder with one sub-folder"):
        imagefolder_loaders(tmp_path / "nope", 4)
    one = tmp_path / "one"
    make_folder(one, classes=1)
    with pytest.raises(DatasetError, match="has 1 class folder; expected one sub-folder per class"):
        imagefolder_loaders(one, 4)
    empty = tmp_path / "empty"
    make_folder(empty, classes=2)
    (empty / "class_9").mkdir()
    with pytest.raises(DatasetError) as info:
        imagefolder_loaders(empty, 4)
    assert "class_9" in str(info.value) and "holds no images" in str(info.value)
    broken = tmp_path / "broken"
    make_folder(broken, classes=2)
    (broken / "class_1" / "zz.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError) as info:
        imagefolder_loaders(broken, 4, image=(1, 8, 8))
    assert "zz.png" in str(info.value) and "cannot be read" in str(info.value)
    make_folder(tmp_path / "good", classes=2)
    with pytest.raises(DatasetMismatch, match="network takes 2 channels"):
        imagefolder_loaders(tmp_path / "good", 4, image=(2, 8, 8))


# --- digits and the train section ----------------------------------------------------------


def test_digits_ranges_per_input_dtype() -> None:
    x8 = _all(digits_loaders(512, image=(1, 8, 8))[1])[0]
    x4 = _all(digits_loaders(512, image=(1, 8, 8), dtype=DType("uint4"))[1])[0]
    xs = _all(digits_loaders(512, image=(1, 8, 8), dtype=DType("int8"))[1])[0]
    assert float(x8.min()) == 0 and float(x8.max()) == 255
    assert float(x4.min()) == 0 and float(x4.max()) == 15 and torch.equal(x4, x4.round())
    assert float(xs.min()) == -128 and float(xs.max()) == 127
    assert torch.equal(xs, x8 - 128)


def test_to_input_range_rejects_bipolar() -> None:
    with pytest.raises(DatasetMismatch):
        to_input_range(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), DType("bipolar"))


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32)])
def test_digits_says_what_it_gives(shape) -> None:
    with pytest.raises(DatasetMismatch) as info:
        loaders_for(Train(P, dataset="digits"), shape, 32)
    c, h, w = shape
    assert f"digits gives 1x8x8 images; the network takes {c}x{h}x{w}" in str(info.value)


def test_loaders_for_train_section(tmp_path: Path) -> None:
    make_cifar(tmp_path / "c")
    section = Train(P, dataset="cifar10", dataset_path=tmp_path / "c", batch=5)
    tr, va, info = loaders_for(section, (3, 16, 16), seed=2)
    x, _ = next(iter(tr))
    assert x.shape == (5, 3, 16, 16) and info.classes == 10
    assert (info.train_samples, info.val_samples) == (20, 4)
    with pytest.raises(DatasetMismatch, match="10 classes; the network's last layer has 4"):
        loaders_for(section, (3, 32, 32), num_outputs=4)
    with pytest.raises(DatasetError, match="needs a path"):
        loaders_for(Train(P, dataset="imagefolder"), (3, 8, 8))


def test_reseed_repeats_batches() -> None:
    tr, _ = digits_loaders(100, seed=0)
    first = [y.tolist() for _, y in tr]
    second = [y.tolist() for _, y in tr]
    tr.reseed(0)
    again = [y.tolist() for _, y in tr]
    assert first != second and first == again
