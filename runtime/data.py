"""Data sets for training, as batches shaped like a network's input.

Three formats, named as in a `.nash` file's `train` section:

- ``digits``: scikit-learn's bundled 8x8 digit images (1797, 10 classes, values 0..16).
  They fit networks whose input is 8x8 (the gray channel repeats when C > 1); any other
  input size is a `DatasetMismatch`.
- ``cifar10 "DIR"``: the python version of CIFAR-10 (``cifar-10-python.tar.gz``
  extracted): ``data_batch_1`` .. ``data_batch_5`` for training and ``test_batch`` for
  validation, pickled dicts with ``b"data"`` (N x 3072 uint8, R then G then B planes of
  32x32) and ``b"labels"``. DIR may also be the folder that contains
  ``cifar-10-batches-py``. These are pickles: only load files you trust.
- ``imagefolder "DIR"``: one sub-folder per class (classes in sorted order, like
  torchvision's ImageFolder), images read with Pillow. If DIR has ``train/`` and ``val/``
  (or ``test/``) sub-folders, they are the split; otherwise the images are split with a
  seeded shuffle.

Images are converted to the network's channel count (3 -> 1 by luminance, 1 -> 3 by
repetition) and resized (bilinear, antialiased) to its H x W when they differ. Pixel
values are mapped onto the integer range of the network's input datatype, because the
input quantizer of a network built by `nashc.runtime.build` has scale 1: ``uint8`` gives
0..255, ``uint4`` 0..15, ``int8`` -128..127 (always whole numbers, as float32).

Splits are deterministic for a seed: ``digits`` and an imagefolder without a split take
20% of a seeded permutation for validation; the training loader reshuffles every epoch
from its own seeded generator, so two loaders made with the same seed yield the same
batches. Missing or malformed data raises `DatasetError` naming the path and what was
expected; data that cannot feed the network raises `DatasetMismatch`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nashc.dsl.ast import DType, Train
from nashc.dsl.errors import NashcError

__all__ = [
    "ArrayLoader",
    "DatasetError",
    "DatasetMismatch",
    "DataInfo",
    "DATASETS",
    "IMAGE_SUFFIXES",
    "load_arrays",
    "digits_loaders",
    "cifar10_loaders",
    "imagefolder_loaders",
    "loaders_for",
    "to_input_range",
]

DATASETS = ("digits", "cifar10", "imagefolder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                  ".webp")
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_VAL = "test_batch"
VAL_FRACTION = 0.2
VAL_BATCH = 256


class DatasetError(NashcError):
    """A data set is missing or malformed."""


class DatasetMismatch(NashcError):
    """A data set cannot feed the network (image shape, channels or class count)."""


@dataclass
class DataInfo:
    """What a pair of loaders holds (for reports)."""

    dataset: str
    path: str | None
    classes: int
    train_samples: int
    val_samples: int
    source_shape: tuple[int, int, int]  # (C, H, W) of the stored images


class ArrayLoader:
    """Batches of (x float32 in the input datatype's range, y int64) from in-memory uint8
    images; reshuffled every epoch from a seeded generator when `shuffle` is set."""

    def __init__(self, images: Tensor, labels: Tensor, batch: int, dtype: DType | None,
                 shuffle: bool, seed: int = 0) -> None:
        if batch <= 0:
            raise DatasetError(f"batch size must be positive, got {batch}")
        self.images = images  # (N, C, H, W) uint8
        self.labels = labels  # (N,) int64
        self.batch = batch
        self.dtype = dtype
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.labels) + self.batch - 1) // self.batch

    def reseed(self, seed: int) -> None:
        """Restarts the shuffle sequence (so reusing a loader gives the same batches)."""
        self.generator.manual_seed(seed)

    @property
    def samples(self) -> int:
        return int(len(self.labels))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch):
            idx = order[start:start + self.batch]
            yield to_input_range(self.images[idx], self.dtype), self.labels[idx]


def to_input_range(images: Tensor, dtype: DType | None) -> Tensor:
    """uint8 pixels (0..255) -> whole numbers in the range of `dtype` (float32)."""
    x = images.to(torch.float32)
    if dtype is None or (not dtype.signed and dtype.bits == 8):
        return x
    if dtype.bipolar:
        raise DatasetMismatch("a bipolar network input cannot take images")
    top = 2 ** dtype.bits - 1
    x = torch.round(x * (top / 255.0))
    if dtype.signed:
        x = x - 2 ** (dtype.bits - 1)
    return x


def _fit(images: np.ndarray, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """(N, C, H, W) uint8 -> the network's (C, H, W): channels converted, then resized."""
    c, h, w = shape
    have = images.shape[1]
    if have != c:
        if have == 3 and c == 1:
            weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma
            lum = np.tensordot(images.astype(np.float32), weights, axes=([1], [0]))
            images = np.clip(np.round(lum), 0, 255).astype(np.uint8)[:, None]
        elif have == 1:
            images = np.repeat(images, c, axis=1)
        else:
            raise DatasetMismatch(f"{what} has {have}-channel images; the network takes "
                                  f"{c} channels (only 3 -> 1 and 1 -> C are converted)")
    if images.shape[2:] != (h, w) and len(images):
        t = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32)
        out = []
        for start in range(0, len(t), 4096):
            out.append(torch.nn.functional.interpolate(
                t[start:start + 4096], size=(h, w), mode="bilinear", align_corners=False,
                antialias=True))
        images = torch.cat(out).round().clamp(0, 255).to(torch.uint8).numpy()
    return np.ascontiguousarray(images)


def _split(n: int, seed: int, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return perm[n_val:], perm[:n_val]


# --- the formats ---------------------------------------------------------------------------


def _digits_arrays(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    c, h, w = shape
    if (h, w) != (8, 8) or c < 1:
        raise DatasetMismatch(f"digits gives 1x8x8 images; the network takes {c}x{h}x{w} "
                              "(use cifar10 \"DIR\" or imagefolder \"DIR\" for other sizes)")
    data = load_digits()
    x = np.round(data.images.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
    x = np.repeat(x[:, None, :, :], c, axis=1)
    return x, data.target.astype(np.int64)


def _cifar_dir(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(f"cifar10 data set {str(path)!r} not found; expected a folder with "
                           f"the python batches {', '.join(CIFAR_TRAIN)}, {CIFAR_VAL}")
    if not path.is_dir():
        raise DatasetError(f"cifar10 data set {str(path)!r} is not a folder; expected the "
                           "extracted cifar-10-python.tar.gz (a folder with data_batch_1..5 "
                           "and test_batch)")
    nested = path / "cifar-10-batches-py"
    if not (path / CIFAR_VAL).exists() and nested.is_dir():
        return nested
    return path


def _cifar_batch(file: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    what = f"cifar10 batch {str(file)!r}"
    if not file.is_file():
        raise DatasetError(f"{what} not found; expected data_batch_1..5 and test_batch "
                           f"in {str(file.parent)!r}")
    try:
        with open(file, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except Exception as err:  # pickle raises many types on bad input
        raise DatasetError(f"{what} cannot be read as a python pickle ({err}); expected the "
                           "python version of CIFAR-10") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{what} holds a {type(obj).__name__}; expected a dict with "
                           "b'data' and b'labels'")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise DatasetError(f"{what} has keys {sorted(map(str, obj))}; expected b'data' "
                           "(N x 3072 uint8) and b'labels'")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DatasetError(f"{what}: data is {data.dtype} {data.shape}; expected uint8 N x 3072 "
                           "(3 planes of 32x32)")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{what}: {labels.shape[0] if labels.ndim else 0} labels for "
                           f"{len(data)} images; expected one integer label per image")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{what}: labels range {labels.min()}..{labels.max()}; expected 0..9")
    if limit is not None:
        data, labels = data[:limit], labels[:limit]
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_arrays(path: Path, limit: int | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    root = _cifar_dir(path)
    missing = [n for n in (*CIFAR_TRAIN, CIFAR_VAL) if not (root / n).is_file()]
    if missing:
        raise DatasetError(f"cifar10 data set {str(root)!r} lacks {', '.join(missing)}; "
                           f"expected the python batches {', '.join(CIFAR_TRAIN)}, {CIFAR_VAL}")
    xs, ys = [], []
    left = limit
    for name in CIFAR_TRAIN:
        if left is not None and left <= 0:
            break
        x, y = _cifar_batch(root / name, left)
        xs.append(x)
        ys.append(y)
        if left is not None:
            left -= len(y)
    x_val, y_val = _cifar_batch(root / CIFAR_VAL, limit)
    return np.concatenate(xs), np.concatenate(ys), x_val, y_val


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_images(files: Sequence[Path], shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    if c not in (1, 3):
        raise DatasetMismatch(f"imagefolder gives gray or RGB images; the network takes "
                              f"{c} channels (1 or 3 expected)")
    mode = "L" if c == 1 else "RGB"
    out = np.empty((len(files), c, h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as raw:
                im = raw.convert(mode)
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DatasetError(f"image {str(f)!r} cannot be read ({err}); expected an image "
                               f"file ({', '.join(IMAGE_SUFFIXES)})") from None
        out[i] = a[None] if c == 1 else a.transpose(2, 0, 1)
    return out


def _class_folders(root: Path, classes: list[str] | None = None
                   ) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names, image files and labels; `classes` given (a validation split) allows
    classes without images but no unknown class folders."""
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        if len(found) < 2:
            raise DatasetError(f"imagefolder {str(root)!r} has {len(found)} class folder"
                               f"{'' if len(found) == 1 else 's'}; expected one sub-folder per "
                               "class (at least 2), each holding images")
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DatasetError(f"imagefolder {str(root)!r} has class folders "
                               f"{', '.join(extra)} that the training split lacks")
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        folder = root / name
        imgs = _image_files(folder) if folder.is_dir() else []
        if not imgs and classes is found:
            raise DatasetError(f"class folder {str(folder)!r} holds no images; expected files "
                               f"ending in {', '.join(IMAGE_SUFFIXES)}")
        files += imgs
        labels += [k] * len(imgs)
    return classes, files, np.asarray(labels, dtype=np.int64)


def _imagefolder_arrays(path: Path, shape: tuple[int, int, int], seed: int, limit: int | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    if not path.is_dir():
        raise DatasetError(f"imagefolder data set {str(path)!r} "
                           f"{'is not a folder' if path.exists() else 'not found'}; expected a "
                           "folder with one sub-folder of images per class")
    val_dir = next((path / n for n in ("val", "test") if (path / n).is_dir()), None)
    if (path / "train").is_dir() and val_dir is not None:
        classes, tr_files, y_tr = _class_folders(path / "train")
        _, va_files, y_va = _class_folders(val_dir, classes)
        if not va_files:
            raise DatasetError(f"imagefolder validation split {str(val_dir)!r} holds no images")
    else:
        classes, files, y = _class_folders(path)
        tr, va = _split(len(files), seed)
        tr_files, y_tr = [files[i] for i in tr], y[tr]
        va_files, y_va = [files[i] for i in va], y[va]
    if limit is not None:
        tr_files, y_tr, va_files, y_va = tr_files[:limit], y_tr[:limit], va_files[:limit], \
            y_va[:limit]
    return (_read_images(tr_files, shape), y_tr, _read_images(va_files, shape), y_va,
            len(classes))


def load_arrays(dataset: str, path: Path | None, shape: tuple[int, int, int], seed: int = 0,
                limit: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, DataInfo]:
    """(x_train, y_train, x_val, y_val, info): uint8 images shaped (N, *shape)."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if len(shape) != 3 or min(shape) < 1:
        raise DatasetMismatch(f"the network input {shape} is not C x H x W")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be positive, got {limit}")
    if dataset == "digits":
        x, y = _digits_arrays(shape)
        tr, va = _split(len(y), seed)
        if limit is not None:
            tr, va = tr[:limit], va[:limit]
        info = DataInfo("digits", None, 10, len(tr), len(va), (1, 8, 8))
        return x[tr], y[tr], x[va], y[va], info
    if path is None:
        raise DatasetError(f"dataset {dataset} needs a path: dataset {dataset} \"DIR\"")
    path = Path(path)
    if dataset == "cifar10":
        x_tr, y_tr, x_va, y_va = _cifar_arrays(path, limit)
        what = f"cifar10 {str(path)!r}"
        x_tr, x_va = _fit(x_tr, shape, what), _fit(x_va, shape, what)
        info = DataInfo("cifar10", str(path), 10, len(y_tr), len(y_va), (3, 32, 32))
        return x_tr, y_tr, x_va, y_va, info
    x_tr, y_tr, x_va, y_va, k = _imagefolder_arrays(path, shape, seed, limit)
    info = DataInfo("imagefolder", str(path), k, len(y_tr), len(y_va), shape)
    return x_tr, y_tr, x_va, y_va, info


def _loaders(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray, batch: int,
             dtype: DType | None, seed: int) -> tuple[ArrayLoader, ArrayLoader]:
    tr = ArrayLoader(torch.from_numpy(x_tr), torch.from_numpy(y_tr), batch, dtype, True, seed)
    va = ArrayLoader(torch.from_numpy(x_va), torch.from_numpy(y_va), VAL_BATCH, dtype, False)
    return tr, va


def digits_loaders(batch: int, seed: int = 0, image: tuple[int, int, int] = (1, 8, 8),
                   dtype: DType | None = None, limit: int | None = None
                   ) -> tuple[ArrayLoader, ArrayLoader]:
    """Train/validation loaders over scikit-learn's digits (80/20, seeded)."""
    x_tr, y_tr, x_va, y_va, _ = load_arrays("digits", None, image, seed, limit)
    return _loaders(x_tr, y_tr, x_va, y_va, batch, dtype, seed)


def cifar10_loaders(path: str | Path, batch: int, seed: int = 0,
                    image: tuple[int, int, int] = (3, 32, 32), dtype: DType | None = None,
                    limit: int | None = None) -> tuple[ArrayLoader, ArrayLoader]:
    """Loaders over the python version of CIFAR-10 in `path` (test_batch validates)."""
    x_tr, y_tr, x_va, y_va, _ = load_arrays("cifar10", Path(path), image, seed, limit)
    return _loaders(x_tr, y_tr, x_va, y_va, batch, dtype, seed)


def imagefolder_loaders(path: str | Path, batch: int, seed: int = 0,
                        image: tuple[int, int, int] = (3, 32, 32), dtype: DType | None = None,
                        limit: int | None = None) -> tuple[ArrayLoader, ArrayLoader]:
    """Loaders over class-per-folder images in `path`."""
    x_tr, y_tr, x_va, y_va, _ = load_arrays("imagefolder", Path(path), image, seed, limit)
    return _loaders(x_tr, y_tr, x_va, y_va, batch, dtype, seed)


def loaders_for(train_section: Train, input_shape: Sequence[int], batch: int | None = None,
                seed: int = 0, limit: int | None = None, dtype: DType | None = None,
                num_outputs: int | None = None) -> tuple[ArrayLoader, ArrayLoader, DataInfo]:
    """Loaders for a `.nash` file's `train` section and a network input (C, H, W).

    `batch` defaults to the section's; `dtype` is the network's input datatype (None:
    uint8); `num_outputs`, the network's output count, must cover the data set's classes.
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise DatasetMismatch(f"the network input {tuple(input_shape)} is not C x H x W")
    x_tr, y_tr, x_va, y_va, info = load_arrays(train_section.dataset, train_section.dataset_path,
                                               shape, seed, limit)  # type: ignore[arg-type]
    if num_outputs is not None and info.classes > num_outputs:
        raise DatasetMismatch(f"{info.dataset} has {info.classes} classes; the network's last "
                              f"layer has {num_outputs} outputs")
    if info.train_samples == 0:
        raise DatasetError(f"{info.dataset} {info.path or ''}: no training images")
    tr, va = _loaders(x_tr, y_tr, x_va, y_va, batch or train_section.batch, dtype, seed)
    return tr, va, info

