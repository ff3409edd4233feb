"""Stored, resumable study results: one file per (study, model, data, settings, image range).

A study (:mod:`gradviz.studies`) splits the images into fixed ranges ("chunks") and keeps
each model's numbers of each chunk in its own small ``.npz`` file, written atomically (a
temporary file in the same folder, then ``os.replace``). A run that is killed at any moment
leaves only complete chunk files; the next run with the same key reads them and computes
only the missing ranges, so it ends with the numbers of an uninterrupted run.

Layout, under a store root (default ``$GRADVIZ_HOME/studies``)::

    <root>/<study>/<key>/meta.json                the key's parts, in words (for a reader)
    <root>/<study>/<key>/<start>-<stop>.npz       one chunk: arrays + their sha256

The key (:func:`chunk_key`) is the sha256 of the study's name and version, the model's
content fingerprint (the sha256 of its checkpoint file or of its weights:
:func:`model_fingerprint`), the data's fingerprint (:func:`data_fingerprint`) and the study's
settings. A chunk file whose arrays do not match their stored sha256 (truncated, corrupt,
foreign) is never used: it is deleted and computed again.

Read-only roots (the shipped results under ``assets/studies``) are searched after the
writable one, so the shipped models' default results draw at once on a fresh install.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from gradviz.checkpoints import atomic_write, gradviz_home

_log = logging.getLogger(__name__)

#: The shipped results (read-only), searched after the user's store.
SHIPPED_STORE = Path(__file__).resolve().parent.parent.parent / "assets" / "studies"
_CHECKSUM = "__sha256__"


def default_store() -> Path:
    """The writable store root: ``$GRADVIZ_HOME/studies`` (default ``~/.cache/gradviz/studies``)."""
    return gradviz_home() / "studies"


def _sha256_arrays(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: Union[str, Path]) -> str:
    """sha256 of a file's bytes (remembered per path, size and modification time)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def model_fingerprint(model: nn.Module) -> str:
    """The content fingerprint of a model: the sha256 of the checkpoint file it was loaded
    from (``model.gradviz_info["path"]``, set by :func:`gradviz.zoo.load_model`), else of its
    state_dict's tensors (names, dtypes, shapes, bytes). Two models with the same weights get
    the same fingerprint; retraining a model under the same name gets a new one."""
    info = getattr(model, "gradviz_info", None) or {}
    path = info.get("path")
    if path and Path(path).is_file():
        return file_fingerprint(path)
    return _sha256_arrays({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


_DATA_HASHES: dict[int, tuple[object, str]] = {}


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of a dataset's images and labels (remembered per tensor object)."""
    key = id(x)
    hit = _DATA_HASHES.get(key)
    if hit is not None and hit[0] is x:
        return hit[1]
    digest = _sha256_arrays({"x": x.detach().cpu().numpy(), "y": y.detach().cpu().numpy()})
    _DATA_HASHES[key] = (x, digest)
    return digest


def chunk_key(study: str, version: int, model_fp: str, data_fp: str, settings: dict) -> tuple[str, dict]:
    """``(key, parts)``: the hex key of a study's stored chunks and what went into it."""
    parts = {"study": study, "version": int(version), "model": model_fp, "data": data_fp, "settings": settings}
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32], parts


class ChunkStore:
    """Chunk files of one study under one writable root and any read-only roots.

    Args:
        root: the writable root (None: :func:`default_store`).
        read_only: further roots searched after ``root`` (default: the shipped results).
    """

    def __init__(self, root: Union[str, Path, None] = None, read_only: Optional[Sequence[Union[str, Path]]] = None):
        self.root = Path(root) if root is not None else default_store()
        self.read_only = [Path(p) for p in (read_only if read_only is not None else [SHIPPED_STORE])]

    def _name(self, start: int, stop: int) -> str:
        return f"{int(start):07d}-{int(stop):07d}.npz"

    def folder(self, study: str, key: str) -> Path:
        """The writable folder of one key."""
        return self.root / study / key

    def load(self, study: str, key: str, start: int, stop: int) -> Optional[dict[str, np.ndarray]]:
        """The stored arrays of images [start, stop), or None when no valid file holds them.
        A file that fails its checksum or does not load is deleted (when writable) and
        reported in the log, never returned."""
        for root in [self.root, *self.read_only]:
            path = root / study / key / self._name(start, stop)
            if not path.is_file():
                continue
            arrays = _read_verified(path)
            if arrays is not None:
                return arrays
            _log.warning("ignoring a corrupt study chunk %s", path)
            if root == self.root:
                path.unlink(missing_ok=True)
        return None

    def save(self, study: str, key: str, start: int, stop: int, arrays: dict[str, np.ndarray],
             parts: Optional[dict] = None) -> Path:
        """Write one chunk atomically (temporary file, then ``os.replace``), with the sha256
        of its arrays. Returns the path."""
        folder = self.folder(study, key)
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / "meta.json"
        if parts is not None and not meta.is_file():
            with atomic_write(meta) as f:
                f.write((json.dumps(parts, indent=1, sort_keys=True, default=str) + "\n").encode())
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        payload = {**arrays, _CHECKSUM: np.array(_sha256_arrays(arrays))}
        path = folder / self._name(start, stop)
        with atomic_write(path) as f:
            np.savez(f, **payload)
        return path


def _read_verified(path: Path) -> Optional[dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception:  # truncated zip, bad header, pickled objects: all unreadable
        return None
    stored = arrays.pop(_CHECKSUM, None)
    if stored is None or str(stored) != _sha256_arrays(arrays):
        return None
    return arrays
