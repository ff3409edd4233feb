"""Checkpoint files and the JSON cards beside them: the one place gradviz reads and writes them.

Every ``.pt`` file gradviz reads (a classifier's checkpoint, a generator's, a stored residual
cache) goes through :func:`load_weights_only`, the only ``torch.load`` in the library:
``torch.load(..., weights_only=True)``, so a pickle that needs code is refused and nothing in
it runs. :func:`read_checkpoint` adds the gradviz checkpoint format on top; TorchScript files
(a user's imported classifier) are read with ``torch.jit.load`` (:func:`load_torchscript`),
which runs no pickled Python. Files are written atomically (:func:`save_atomic`: a temporary
file, then ``os.replace``).

Module layering (no import cycle, function-local imports included; ``tests/test_imports.py``
checks it): ``utils``, ``nets``, ``squares`` and this module import no other gradviz module
but ``utils``; ``data`` imports ``squares``; ``zoo`` imports ``checkpoints``, ``data`` and
``nets`` (and ``attacks`` to measure an imported model); ``generative`` imports
``checkpoints`` and ``data``, never ``zoo``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
import tempfile
import threading
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

import torch
from torch import nn

#: Format tag of a gradviz checkpoint (classifier or generator).
CHECKPOINT_FORMAT = "gradviz-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or does not fit: code inside, truncated,
    not a checkpoint, or weights of another architecture / input shape / class count."""


def gradviz_home() -> Path:
    """gradviz's folder for a user's files: ``$GRADVIZ_HOME``, else ``~/.cache/gradviz``
    (models, generators and residuals go in sub-folders)."""
    home = os.environ.get("GRADVIZ_HOME")
    return Path(home) if home else Path.home() / ".cache" / "gradviz"


# --------------------------------------------------------------------------- cards


@dataclass
class ModelCard:
    """What made a model (or a generator) and what it measured. Dict-like: ``card["eps"]``.

    Attributes:
        name: ``<dataset>/<method name>``.
        dataset, arch: the data it was trained on and its architecture (see gradviz.nets).
        method: training method (``standard``, ``pgd``, ...).
        eps, norm: training attack radius ([0, 1] pixel units) and norm; 0 / None if none.
        metrics: measured numbers, e.g. ``clean_accuracy``, ``robust_accuracy`` (fractions in
            [0, 1]), ``attack`` (the settings used), ``n_images``, ``split``.
        training: every training option (epochs, seed, batch size, step size, ...).
        command: the command line that made it.
        log: per-epoch training log (list of dicts).
        path: the checkpoint file (not stored in the card).
    """

    name: str
    dataset: str
    arch: str
    method: str
    eps: float = 0.0
    norm: Optional[str] = None
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    command: str = ""
    created: str = ""
    versions: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    path: Optional[str] = None
    shipped: bool = False

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def keys(self):
        return [k for k in asdict(self)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("path")
        d.pop("shipped")
        return d

    @classmethod
    def from_dict(cls, d: dict, **extra) -> "ModelCard":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, **extra})


#: Parsed card files by (device, inode, modification time in ns, size): the app lists the cards
#: a dozen times per page run, and parsing them all took 4-6 ms a time (188 kB of JSON for the
#: 15 shipped cards). A rewritten card (``write_card`` replaces the file: a new inode) is read
#: afresh. At most :data:`_CARD_CACHE_SIZE` files.
_CARD_CACHE: "OrderedDict[tuple, dict]" = OrderedDict()
_CARD_CACHE_SIZE = 512
_CARD_CACHE_LOCK = threading.Lock()


def _card_dict(json_path: Path) -> dict:
    st = os.stat(json_path)
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _CARD_CACHE_LOCK:
        d = _CARD_CACHE.get(key)
        if d is not None:
            _CARD_CACHE.move_to_end(key)
            return d
    d = json.loads(json_path.read_text())
    if not isinstance(d, dict):
        raise ValueError("the file holds no JSON object")
    with _CARD_CACHE_LOCK:
        _CARD_CACHE[key] = d
        while len(_CARD_CACHE) > _CARD_CACHE_SIZE:
            _CARD_CACHE.popitem(last=False)
    return d


def read_card(json_path: Union[str, Path], *, shipped: bool = False) -> ModelCard:
    """The card in ``json_path``, with ``path`` set to the checkpoint beside it (``.pt``).

    Each call returns a new card, but its nested dicts and lists (``metrics``, ``training``,
    ``log``, ...) are shared with a cache of the parsed file: replace a field
    (``card.metrics = {**card.metrics, key: value}``) rather than change it in place.

    Raises:
        CheckpointError: a missing or unreadable file, or JSON that is no card.
    """
    json_path = Path(json_path)
    try:
        card = ModelCard.from_dict(_card_dict(json_path), shipped=shipped)
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"no readable card at {json_path}: {err}") from err
    card.path = str(json_path.with_suffix(".pt"))
    return card


def write_card(card: ModelCard, checkpoint_path: Union[str, Path]) -> Path:
    """Write ``card`` as the JSON beside ``checkpoint_path`` (atomically), stamping
    ``created`` (if unset) and the torch version; sets ``card.path``. Returns the JSON path."""
    card.created = card.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card.versions = {"torch": torch.__version__.split("+")[0], **card.versions}
    json_path = Path(checkpoint_path).with_suffix(".json")
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    os.replace(tmp, json_path)
    card.path = str(Path(checkpoint_path).with_suffix(".pt"))
    return json_path


# --------------------------------------------------------------------------- files


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextmanager
def atomic_write(path: Union[str, Path]) -> Iterator[BinaryIO]:
    """Write ``path`` all at once: yields a binary file (a temporary file beside ``path``),
    which replaces ``path`` (``os.replace``, after ``fsync``) when the block ends without an
    error, with the permissions a new file gets (0o666 less the umask); on an error it is
    removed. A reader, or a run killed at any moment, sees the old file or the new one,
    never a part of one. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomic(payload: Any, path: Union[str, Path], *, tmp: Union[str, Path, None] = None) -> Path:
    """``torch.save(payload)`` to ``path`` through a temporary file (``tmp``, default
    ``<path>.tmp``) and ``os.replace``: a reader sees the old file or the new one, never half
    of one. The payload should hold plain values and tensors only (weights_only-loadable).
    Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp) if tmp is not None else path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_weights_only(path: Union[str, Path]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: plain values and tensors.

    Raises:
        CheckpointError: no such file; a pickle that needs code to load (refused, nothing is
            executed); a truncated, corrupt or non-torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower():
            raise CheckpointError(
                f"{path.name} was refused: it holds Python objects beyond weights (a pickle that "
                "could run code), and gradviz loads checkpoints with weights_only=True only"
            ) from err
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint: {err}") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... on bad bytes
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path.name} is not a readable PyTorch checkpoint (truncated or corrupt?): {first}"
        ) from err


def read_checkpoint(path: Union[str, Path]) -> dict:
    """Load a checkpoint file with ``torch.load(weights_only=True)`` (:func:`load_weights_only`).

    Returns:
        The gradviz payload dict (``format`` = :data:`CHECKPOINT_FORMAT`), or
        ``{"state_dict": ...}`` for a bare state_dict (or one under a ``"state_dict"`` key).

    Raises:
        CheckpointError: missing, truncated or not a torch file; a TorchScript file; a pickle
            that needs code to load (refused, nothing is executed); content that is no
            state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if is_torchscript(path):
        raise CheckpointError(
            f"{path.name} is a TorchScript file, not a state_dict: import it with "
            "gradviz.zoo.import_checkpoint(path, dataset=..., name=...) and load it by its zoo name"
        )
    obj = load_weights_only(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    raise CheckpointError(f"{path.name} holds no state_dict (a dict of tensor names to tensors)")


# --------------------------------------------------------------------------- TorchScript


class TorchScriptModel(nn.Module):
    """An imported TorchScript classifier as an ``nn.Module``: ``forward(x) = module(x)``.

    Its layers are TorchScript code, so hooks on them (captum's guided backprop) do not
    work; plain gradients, integrated gradients, SmoothGrad and attacks do.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def is_torchscript(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl`` and ``code/``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_torchscript(path: Union[str, Path], what: Optional[str] = None) -> TorchScriptModel:
    """A TorchScript file through ``torch.jit.load`` on the CPU, wrapped in
    :class:`TorchScriptModel` (``what``: the name used in messages, default the file name).

    Raises:
        CheckpointError: not a loadable TorchScript file.
    """
    what = what or Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # RuntimeError and friends on a broken archive
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{what} is not a loadable TorchScript file: {first}") from err
    return TorchScriptModel(module)


__all__ = [
    "CHECKPOINT_FORMAT", "CheckpointError", "ModelCard", "TorchScriptModel", "gradviz_home", "is_torchscript",
    "load_torchscript", "load_weights_only", "read_card", "read_checkpoint", "save_atomic", "write_card",
]
