"""Per-epoch input-gradient snapshots of a training run: watch the gradient take shape.

At the start of training and after each epoch, :class:`SnapshotRecorder` takes the input
gradient that the Gradients page shows by default (the signed gradient of the true-class
logit, :func:`gradviz.attribution.attribute` with ``method="gradient"``) of a fixed set of K
held-out test images, and writes the whole sequence beside the checkpoint as
``<name>.snapshots.npz`` (:func:`gradviz.zoo.snapshot_path`), atomically after every epoch, so that a
cancelled or killed run keeps what it had.

The file's arrays (E = epochs + 1 snapshots, the first one of the untrained model):

=================== ===================== ===========================================
``epochs``          (E,) int64            0, 1, ..., the epoch after which it was taken
``images``          (K, C, H, W) float32  the test images, in [0, 1]
``labels``          (K,) int64            their true classes
``indices``         (K,) int64            their positions in the test split
``input_gradients`` (E, K, C, H, W) f32   d logit_label / d x, signed, eval mode
``predictions``     (E, K) int64          argmax of the logits
``probabilities``   (E, K) float32        softmax probability of that prediction
``seconds``         (E,) float64          the time each snapshot took
``dataset``         ()                    str, e.g. "mnist-5k"
``split``, ``seed`` ()                    where the images come from, how they were drawn
=================== ===================== ===========================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from gradviz.attribution import attribute
from gradviz.checkpoints import atomic_write
from gradviz.tensors import eval_mode, model_device
from gradviz.zoo import snapshot_path  # noqa: F401  (the file beside a checkpoint; re-exported)

#: Default number of held-out images per snapshot (one per class where possible).
SNAPSHOT_IMAGES = 8
#: What a snapshot's gradient is, in words (stored in cards and shown on the Models page).
SNAPSHOT_ATTRIBUTION = "signed gradient of the true-class logit, d f(x)_y / d x, model in eval mode"


def snapshot_indices(labels: Union[torch.Tensor, np.ndarray], k: int = SNAPSHOT_IMAGES, seed: int = 0) -> list[int]:
    """K image positions drawn with ``seed``, one per class where possible.

    The images are shuffled with a ``torch.Generator`` seeded by ``seed``; the picks then go
    round the classes in ascending order (the first shuffled image of class 0, of class 1,
    ...; then the second of each, ...) until K are taken. With 10 classes and K = 8 that is
    one image of each of the classes 0..7.

    Args:
        labels: (N,) integer class labels.
        k: how many (>= 1; fewer when there are fewer images).
        seed: the shuffle's seed.

    Raises:
        ValueError: ``k`` < 1 or no labels.
    """
    labels = torch.as_tensor(labels).long().reshape(-1)
    if k < 1:
        raise ValueError(f"the number of snapshot images must be >= 1, got {k}")
    if labels.numel() == 0:
        raise ValueError("no images to take snapshots of")
    order = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(int(seed)))
    by_class: dict[int, list[int]] = {}
    for i in order.tolist():
        by_class.setdefault(int(labels[i]), []).append(i)
    picks: list[int] = []
    depth = 0
    while len(picks) < min(k, labels.numel()):
        for c in sorted(by_class):
            if depth < len(by_class[c]) and len(picks) < k:
                picks.append(by_class[c][depth])
        depth += 1
    return picks


@dataclass
class Snapshots:
    """A snapshot sequence (see the module docstring for each array's shape)."""

    epochs: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    input_gradients: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    seconds: np.ndarray
    dataset: str
    split: str = "test"
    seed: int = 0

    @property
    def n_epochs(self) -> int:
        """E, the number of snapshots (epochs trained + 1 for a finished run)."""
        return int(self.epochs.shape[0])

    def at(self, epoch: int) -> int:
        """The row of ``epoch`` (raises KeyError when that epoch has no snapshot)."""
        rows = np.flatnonzero(self.epochs == int(epoch))
        if rows.size == 0:
            raise KeyError(f"no snapshot of epoch {epoch}; there are epochs {self.epochs.tolist()}")
        return int(rows[0])

    def summary(self, path: Optional[Union[str, Path]] = None) -> dict:
        """What a model card records about the snapshots (``training["snapshots"]``)."""
        return {
            "file": Path(path).name if path is not None else None,
            "images": int(self.labels.shape[0]),
            "indices": [int(i) for i in self.indices],
            "split": self.split,
            "seed": self.seed,
            "epochs": [int(e) for e in self.epochs],
            "attribution": SNAPSHOT_ATTRIBUTION,
            "mean_seconds": round(float(np.mean(self.seconds)), 4) if len(self.seconds) else None,
        }

    def save(self, path: Union[str, Path]) -> Path:
        """Write the arrays to ``path`` atomically (a temporary file in the same folder, then
        ``os.replace``): a reader sees the previous complete file or the new one, never a
        partial one. Returns the path."""
        path = Path(path)
        with atomic_write(path) as f:
            np.savez(f, epochs=self.epochs, images=self.images, labels=self.labels, indices=self.indices,
                     input_gradients=self.input_gradients, predictions=self.predictions,
                     probabilities=self.probabilities, seconds=self.seconds,
                     dataset=np.array(self.dataset), split=np.array(self.split), seed=np.array(self.seed))
        return path


def load_snapshots(path: Union[str, Path]) -> Snapshots:
    """Read a ``.snapshots.npz`` file (no pickles: ``allow_pickle=False``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a snapshot file, or its arrays do not fit together (shapes).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except Exception as err:  # zipfile.BadZipFile, OSError, ValueError (pickled object arrays)
        raise ValueError(f"{path.name} is not a readable snapshot file: {err}") from err
    missing = {"epochs", "images", "labels", "input_gradients", "predictions", "probabilities"} - set(d)
    if missing:
        raise ValueError(f"{path.name} is not a snapshot file: it lacks {sorted(missing)}")
    e, k = d["epochs"].shape[0], d["labels"].shape[0]
    if (d["images"].ndim != 4 or d["images"].shape[0] != k
            or d["input_gradients"].shape != (e, *d["images"].shape)
            or d["predictions"].shape != (e, k) or d["probabilities"].shape != (e, k)):
        raise ValueError(f"{path.name}: the snapshot arrays' shapes do not fit together")
    return Snapshots(
        epochs=d["epochs"].astype(np.int64), images=d["images"], labels=d["labels"].astype(np.int64),
        indices=d.get("indices", np.arange(k)).astype(np.int64), input_gradients=d["input_gradients"],
        predictions=d["predictions"].astype(np.int64), probabilities=d["probabilities"],
        seconds=d.get("seconds", np.zeros(e)), dataset=str(d.get("dataset", "")),
        split=str(d.get("split", "test")), seed=int(d.get("seed", 0)),
    )


class SnapshotRecorder:
    """Takes and keeps a run's snapshots (:func:`gradviz.training.train` makes one when
    ``config.snapshots`` > 0).

    Args:
        images: (K, C, H, W) float images in [0, 1] (moved to the model's device per call).
        labels: (K,) true classes.
        dataset: the dataset's name (stored in the file).
        indices: (K,) positions of the images in ``split`` (stored).
        path: where to write after each snapshot (None: keep in memory only).
        split, seed: where the images come from (stored).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, dataset: str,
                 indices: Optional[list[int]] = None, path: Optional[Union[str, Path]] = None,
                 split: str = "test", seed: int = 0):
        self.images = images.detach().float().cpu()
        self.labels = torch.as_tensor(labels).long().cpu()
        self.indices = np.asarray(indices if indices is not None else range(len(self.labels)), dtype=np.int64)
        self.dataset, self.split, self.seed = dataset, split, int(seed)
        self.path = Path(path) if path is not None else None
        self._epochs: list[int] = []
        self._grads: list[np.ndarray] = []
        self._preds: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []
        self._seconds: list[float] = []

    @classmethod
    def for_dataset(cls, dataset: str, *, k: int = SNAPSHOT_IMAGES, seed: int = 0,
                    path: Optional[Union[str, Path]] = None) -> "SnapshotRecorder":
        """A recorder over K images of ``dataset``'s test split (:func:`snapshot_indices`).
        Raises ValueError for an unknown dataset or ``k`` < 1."""
        from gradviz.data import load_dataset

        test = load_dataset(dataset, "test")
        picks = snapshot_indices(test.y, k, seed)
        return cls(test.x[picks], test.y[picks], dataset=dataset, indices=picks, path=path, seed=seed)

    def record(self, model: nn.Module, epoch: int) -> float:
        """Take the snapshot of ``model`` after ``epoch`` (0: before training), in eval mode
        (the model's mode is restored), append it and write the file. Returns the seconds it
        took (the file write included)."""
        start = time.perf_counter()
        with eval_mode(model):
            device = model_device(model)
            x, y = self.images.to(device), self.labels.to(device)
            grads = attribute(model, x, y, "gradient")
            with torch.no_grad():
                prob, pred = torch.softmax(model(x).float(), dim=1).max(dim=1)
        self._epochs.append(int(epoch))
        self._grads.append(grads.detach().float().cpu().numpy())
        self._preds.append(pred.cpu().numpy().astype(np.int64))
        self._probs.append(prob.cpu().numpy().astype(np.float32))
        self._seconds.append(0.0)
        if self.path is not None:
            self.snapshots().save(self.path)
        self._seconds[-1] = round(time.perf_counter() - start, 4)
        return self._seconds[-1]

    def snapshots(self) -> Snapshots:
        """What has been recorded so far."""
        k = len(self.labels)
        shape = tuple(self.images.shape)
        return Snapshots(
            epochs=np.asarray(self._epochs, dtype=np.int64),
            images=self.images.numpy().astype(np.float32), labels=self.labels.numpy(), indices=self.indices,
            input_gradients=np.stack(self._grads) if self._grads else np.zeros((0, *shape), np.float32),
            predictions=np.stack(self._preds) if self._preds else np.zeros((0, k), np.int64),
            probabilities=np.stack(self._probs) if self._probs else np.zeros((0, k), np.float32),
            seconds=np.asarray(self._seconds, dtype=np.float64),
            dataset=self.dataset, split=self.split, seed=self.seed,
        )
