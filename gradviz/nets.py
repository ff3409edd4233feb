"""Classifier architectures. Every model takes images (N, C, H, W) in [0, 1], normalises
inside itself (the RobustBench convention) and returns logits (N, K).

gradviz's own architectures are in :data:`ARCHITECTURES`; :func:`build_model` also builds
timm's and torchvision's by name (``"timm:resnet18"``, ``"torchvision:resnet18"``), without
pretrained weights, wrapped in :class:`NormalizedModel` so that they take [0, 1] input too.

ReLUs are ``nn.ReLU`` modules, never in place, so that captum's guided backprop can hook
them and double backpropagation (L_alpha, PAG, IGD objectives) sees a clean graph.
"""

from __future__ import annotations

import difflib
from typing import Callable, Optional, Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics stored as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """Two 5x5 conv blocks and two dense layers, after Madry et al.'s MNIST network.

    Normalize -> conv(c->w1, 5x5) ReLU maxpool2 -> conv(w1->w2, 5x5) ReLU maxpool2 ->
    dense(hidden) ReLU -> dense(K). Input (N, channels, size, size) in [0, 1], size
    divisible by 4; output logits (N, num_classes).
    """

    def __init__(
        self,
        channels: int = 1,
        num_classes: int = 10,
        size: int = 28,
        widths: tuple[int, int] = (32, 64),
        hidden: int = 256,
        mean: Sequence[float] = (0.1307,),
        std: Sequence[float] = (0.3081,),
    ):
        super().__init__()
        if size % 4:
            raise ValueError(f"SmallCNN needs an input size divisible by 4, got {size}")
        w1, w2 = widths
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(channels, w1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(w2 * (size // 4) ** 2, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


#: Architecture name -> constructor taking the dataset's (channels, num_classes, size).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small-cnn": lambda channels, num_classes, size: SmallCNN(
        channels, num_classes, size,
        mean=(0.1307,) * channels if channels == 1 else (0.4914, 0.4822, 0.4465),
        std=(0.3081,) * channels if channels == 1 else (0.2470, 0.2435, 0.2616),
    ),
}


#: Prefixes of the architectures :func:`build_model` takes from other libraries.
EXTERNAL_PREFIXES = ("timm:", "torchvision:")


class NormalizedModel(nn.Module):
    """``net(normalize(x))``: a network trained on normalised images made to take [0, 1]
    input like every gradviz model (state_dict keys ``normalize.mean``, ``normalize.std``,
    ``net.*``)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def is_external(arch: str) -> bool:
    """Whether ``arch`` names a timm or torchvision architecture (``"timm:<name>"``,
    ``"torchvision:<name>"``)."""
    return isinstance(arch, str) and arch.startswith(EXTERNAL_PREFIXES)


def _unknown(kind: str, name: str, known: Sequence[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3)
    return ValueError(f"{kind} has no architecture {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def _per_channel(values: Optional[Sequence[float]], channels: int, default: float, what: str) -> list[float]:
    values = [default] if values is None else [float(v) for v in values]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{what} has {len(values)} values for {channels}-channel images: give 1 or {channels}")
    if what == "std" and any(not v > 0 for v in values):
        raise ValueError(f"std must be > 0 in every channel, got {values}")
    return values


def build_external(arch: str, *, channels: int, num_classes: int, size: int) -> nn.Module:
    """A timm or torchvision network, freshly initialised, never with pretrained weights.

    ``"timm:<name>"``: ``timm.create_model(name, pretrained=False, num_classes=K,
    in_chans=C)``, with ``img_size=size`` for the models that take it (vision transformers);
    ``"torchvision:<name>"``: ``torchvision.models.get_model(name, weights=None,
    num_classes=K)`` (3-channel input only).

    Raises:
        ValueError: an unknown name (with close matches), 1-channel input for torchvision.
        ImportError: timm is not installed (``pip install timm``).
    """
    library, name = arch.split(":", 1)
    if library == "timm":
        try:
            import timm
        except ImportError as err:
            raise ImportError("timm architectures need the timm package: python -m pip install timm (or "
                              "-r requirements-robustbench.txt, which pins the version RobustBench wants)") from err
        if not timm.is_model(name):
            raise _unknown("timm", name, timm.list_models())
        try:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=channels, img_size=size)
        except TypeError:  # a model without an img_size argument (most CNNs)
            return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=channels)
    import torchvision

    if name not in torchvision.models.list_models():
        raise _unknown("torchvision", name, torchvision.models.list_models())
    if channels != 3:
        raise ValueError(f"torchvision's {name} takes 3-channel (RGB) images; this dataset's have {channels}")
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def build_model(
    arch: str,
    *,
    channels: int,
    num_classes: int,
    size: int,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> nn.Module:
    """A freshly initialised model of architecture ``arch`` for inputs (channels, size, size).

    Args:
        arch: a key of :data:`ARCHITECTURES`, or ``"timm:<name>"`` / ``"torchvision:<name>"``
            (:func:`build_external`, wrapped in :class:`NormalizedModel`).
        mean, std: for timm / torchvision architectures, the per-channel normalisation the
            network was trained with, on the [0, 1] scale (1 value, or one per channel;
            default 0 and 1: the network takes [0, 1] input as it is). Ignored for gradviz's
            own architectures, which carry their dataset's.

    Raises:
        ValueError: unknown architecture; mean/std of the wrong length, std <= 0.
        ImportError: a timm architecture without timm installed.
    """
    if is_external(arch):
        mean = _per_channel(mean, channels, 0.0, "mean")
        std = _per_channel(std, channels, 1.0, "std")
        return NormalizedModel(build_external(arch, channels=channels, num_classes=num_classes, size=size), mean, std)
    try:
        make = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}, "
                         "'timm:<name>' or 'torchvision:<name>'") from None
    return make(channels, num_classes, size)
