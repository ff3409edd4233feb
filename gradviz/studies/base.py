"""What every study shares: resolving models, the chunked and stored loop, the result type.

A study module (e.g. :mod:`gradviz.studies.robustness`) defines

- a ``Settings`` dataclass (plain values only; part of the store key),
- ``compute(model, x, y, start, settings, context) -> dict[str, np.ndarray]``: one model's
  numbers of the images ``x`` (N, C, H, W), which sit at positions ``start, start + 1, ...``
  of the split (``context``: what the study's ``run`` hands over besides the settings, e.g.
  a generator; its identity must be in the settings, which make the store key). Arrays whose name begins with ``sum_`` are summed over chunks; all others hold
  one row per image and are concatenated,
- a result class (a :class:`StudyResult`) with ``table()`` and ``to_npz()``,

and calls :func:`run_study`. A study whose numbers belong in the model cards also defines
``write_card_metrics(result, names=None, *, measured_by=None)`` (through :func:`write_cards`
and its result's ``card_metrics(name)``; ``python -m gradviz study NAME --write-cards``).
:func:`run_study` loads the models and the data, runs ``compute`` over fixed
image ranges of :attr:`Study.chunk` images for each model, keeps each (model, range) in the
:class:`~gradviz.studies.store.ChunkStore` as soon as it is done, and reads back what an
earlier (perhaps killed) run has stored. Under torchrun (``torch.distributed`` initialised, or
``RANK`` / ``WORLD_SIZE`` set) the same (model, range) units are shared out over the ranks
and gathered on rank 0 (:mod:`gradviz.studies.distributed`), with the same numbers.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradviz.data import load_dataset
from gradviz.studies import distributed
from gradviz.studies.store import ChunkStore, chunk_key, data_fingerprint, file_fingerprint, model_fingerprint
from gradviz.tensors import model_device
from gradviz.utils import Progress, report, resolve_device

ModelLike = Union[str, nn.Module]


class NotStored(LookupError):
    """Raised by :func:`run_study` with ``compute_missing=False`` when a chunk is not stored."""


@dataclass(frozen=True)
class Study:
    """A study's identity: its ``name`` (the CLI's NAME), ``version`` (raise it when what
    ``compute`` returns changes: old stored chunks are then never read), the images per
    stored ``chunk``, its ``Settings`` dataclass and its ``compute`` function.

    ``chunked`` False: the study stores other units than image ranges (e.g. one retraining
    each) and takes no ``chunk`` argument; ``splits``: the splits its ``run`` accepts.
    """

    name: str
    version: int
    settings: type
    compute: Callable[..., dict]
    chunk: int = 200
    summary: str = ""
    chunked: bool = True
    splits: tuple[str, ...] = ("test", "train")


def resolve_models(models: Sequence[ModelLike], device: Union[str, torch.device] = "auto") -> dict[str, nn.Module]:
    """Zoo names or checkpoint paths (loaded with :func:`gradviz.zoo.load_model`) and modules
    (moved to nothing: used where they are) -> {name: model}. A module's name is its
    ``gradviz_info["name"]`` or ``model-<i>``.

    Raises:
        ValueError: no models, or two with the same name.
        KeyError / gradviz.zoo.CheckpointError: an unknown name or a bad checkpoint.
    """
    from gradviz import zoo

    if not models:
        raise ValueError("give at least one model")
    dev = resolve_device(device)
    out: dict[str, nn.Module] = {}
    for i, m in enumerate(models):
        if isinstance(m, nn.Module):
            name = (getattr(m, "gradviz_info", None) or {}).get("name") or f"model-{i}"
            model = m
        else:
            model = zoo.load_model(str(m), device=dev)
            name = (getattr(model, "gradviz_info", None) or {}).get("name") or str(m)
        if name in out:
            raise ValueError(f"the model {name!r} is given twice")
        out[name] = model.eval()
    return out


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """The image ranges [start, stop) of a study over the first ``n`` images."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]


@dataclass
class StudyResult:
    """The numbers of one study run (plain arrays; picklable).

    Attributes:
        study: the study's name.
        model_names: the models, in the order given.
        indices: (N,) the split positions of the images.
        labels: (N,) their true classes.
        per_image: model name -> {array name -> (N, ...) array}.
        sums: model name -> {array name -> array summed over the images (``sum_*``)}.
        settings: the study's settings, the dataset, split and N, as plain values.
        computed, loaded: how many (model, chunk) pairs this run computed / found stored.
        fingerprints: model name -> the content hash its stored numbers are keyed on
            (:func:`~gradviz.studies.store.model_fingerprint`).
        checkpoints: model name -> the checkpoint file it was loaded from (None for a module
            without one): where :func:`write_cards` finds its card.
    """

    study: str
    model_names: list[str]
    indices: np.ndarray
    labels: np.ndarray
    per_image: dict[str, dict[str, np.ndarray]]
    sums: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    computed: int = 0
    loaded: int = 0
    fingerprints: dict = field(default_factory=dict)
    checkpoints: dict = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(len(self.indices))

    def column(self, key: str) -> dict[str, np.ndarray]:
        """{model name -> (N, ...) per-image array ``key``}."""
        return {n: self.per_image[n][key] for n in self.model_names if key in self.per_image[n]}

    def table(self) -> pd.DataFrame:
        """One row per model (each study says which columns)."""
        raise NotImplementedError

    def card_metrics(self, name: str) -> dict:
        """The entry a study with model cards writes into model ``name``'s card (its
        ``write_card_metrics``, through :func:`write_cards`).

        Raises:
            NotImplementedError: a study that writes nothing into cards.
        """
        raise NotImplementedError(f"the {self.study} study writes no card metrics")

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of :meth:`to_npz`: ``model_names`` (M,), ``indices``, ``labels`` (N,),
        every per-image array stacked over models as ``<name>`` (M, N, ...), every sum as
        ``<name>`` (M, ...), ``settings`` (0-d str, JSON)."""
        out = {"model_names": np.array(self.model_names, dtype=str), "indices": self.indices.astype(np.int64),
               "labels": self.labels.astype(np.int64),
               "settings": np.array(json.dumps(self.settings, sort_keys=True, default=str))}
        first = self.model_names[0]
        for key in self.per_image[first]:
            out[key] = np.stack([self.per_image[n][key] for n in self.model_names])
        for key in self.sums.get(first, {}):
            out[key] = np.stack([self.sums[n][key] for n in self.model_names])
        return out

    def to_npz(self) -> bytes:
        """The numbers as ``.npz`` bytes (:meth:`npz_arrays`)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **self.npz_arrays())
        return buf.getvalue()


def mean_sem(values) -> tuple[float, float, int]:
    """``(mean, standard error, n)`` of the finite entries of an array: the standard error is
    the sample standard deviation (ddof 1) over sqrt(n), NaN for n < 2; the mean is NaN for
    n = 0. What the studies' card entries and the bench tables report (``mean ± sem``)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    sem = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return mean, sem, n


def settings_dict(settings: Any) -> dict:
    """A settings dataclass as a plain dict (tuples as lists, for the store key and files)."""
    return json.loads(json.dumps(dataclasses.asdict(settings), default=list))


def run_study(
    study: Study,
    models: Sequence[ModelLike],
    settings: Any,
    *,
    dataset: str = "mnist-5k",
    split: str = "test",
    n: Optional[int] = None,
    device: Union[str, torch.device] = "auto",
    progress: Optional[Progress] = None,
    store: Optional[ChunkStore] = None,
    recompute: bool = False,
    data=None,
    result: type = StudyResult,
    context: Optional[dict] = None,
    chunk: Optional[int] = None,
    compute_missing: bool = True,
) -> StudyResult:
    """Run ``study.compute`` over the first ``n`` images of a split for every model, chunk by
    chunk, reading stored chunks and storing new ones.

    Args:
        study: the study (see :class:`Study`).
        models: zoo names, checkpoint paths or modules (see :func:`resolve_models`).
        settings: an instance of ``study.settings``.
        dataset, split: the images (:func:`gradviz.data.load_dataset`), or ``data`` (an
            object with ``.x``, ``.y``) when given.
        n: the first ``n`` images (None: all).
        device: where to compute (``"auto"``: CUDA when available).
        progress: ``progress(fraction, message)`` before each (model, chunk).
        store: where chunks are kept (default: ``ChunkStore()``).
        recompute: compute every chunk again (and overwrite the stored ones).
        result: the :class:`StudyResult` subclass to return.
        context: passed to ``study.compute`` as is (with ``dataset``, ``split`` and ``data``
            added).
        chunk: images per stored chunk (default ``study.chunk``; part of the store key).
        compute_missing: False: compute nothing, raise :class:`NotStored` when a chunk is
            missing (what an app uses to draw stored results at once).

    Under torchrun (:func:`gradviz.studies.distributed.active`), with ``compute_missing``,
    the units missing from rank 0's store are shared out over the ranks, each on its device
    (``"auto"``/``"cuda"``: ``cuda:LOCAL_RANK``), and gathered on rank 0; every rank returns
    the same result (:meth:`gradviz.studies.distributed.Context.run_units`).

    Returns:
        ``result(...)`` with the per-image arrays concatenated over the chunks, the sums
        added up, ``settings`` = the study's settings plus dataset, split and n, and the
        counts of (model, chunk) pairs computed and read from the store.

    Raises:
        ValueError: bad settings, ``n`` < 1 or ``chunk`` < 1, models as :func:`resolve_models`.
        NotStored: with ``compute_missing=False``, a chunk that is not stored.
        gradviz.studies.distributed.DistributedStudyError: under torchrun, a rank failed or
            did not arrive within the timeout.
    """
    if not isinstance(settings, study.settings):
        raise ValueError(f"the {study.name} study takes {study.settings.__name__} settings, not {type(settings).__name__}")
    runner = distributed.context(device) if compute_missing else None  # None: no torchrun
    with distributed.step(runner, "loading the models and the data"):
        data = data if data is not None else load_dataset(dataset, split)
        total = len(data.y)
        n = total if n is None else int(n)
        if not 1 <= n <= total:
            raise ValueError(f"n must be in [1, {total}] (the {split} split's size), got {n}")
        store = store if store is not None else ChunkStore()
        resolved = resolve_models(models, device if runner is None else runner.device_for(device))
        data_fp = data_fingerprint(data.x, data.y)
        plain = settings_dict(settings)
        size = int(chunk or study.chunk)
        if size < 1:
            raise ValueError(f"chunk must be >= 1 image, got {chunk}")
        keys = {}
        for name, model in resolved.items():
            key, parts = chunk_key(study.name, study.version, model_fingerprint(model), data_fp,
                                   {**plain, "dataset": dataset, "split": split, "chunk": size})
            keys[name] = key, {**parts, "model_name": name}
    # The units: (model name, start, stop), model by model, each model's ranges in order.
    units = [(name, start, stop) for name in resolved for start, stop in chunks(n, size)]
    context = {**(context or {}), "dataset": dataset, "split": split, "data": data}

    def load(unit):
        return None if recompute else store.load(study.name, keys[unit[0]][0], unit[1], unit[2])

    def compute(unit):
        name, start, stop = unit
        model = resolved[name]
        dev = model_device(model)
        x, y = data.x[start:stop].to(dev), data.y[start:stop].to(dev)
        return {k: np.asarray(v) for k, v in study.compute(model, x, y, start, settings, context).items()}

    def save(unit, arrays):
        store.save(study.name, keys[unit[0]][0], unit[1], unit[2], arrays, keys[unit[0]][1])

    def describe(unit):
        return f"{unit[0]}: images {unit[1]}–{unit[2] - 1} of {n}"

    if runner is None:
        found, computed, loaded = [], 0, 0
        for done, unit in enumerate(units):
            arrays = load(unit)
            if arrays is None and not compute_missing:
                raise NotStored(f"{study.name}: {unit[0]} has no stored result for images {unit[1]}–{unit[2] - 1}")
            if arrays is None:
                report(progress, done / len(units), describe(unit))
                arrays = compute(unit)
                save(unit, arrays)
                computed += 1
            else:
                loaded += 1
            found.append(arrays)
    else:  # torchrun: the units shared out over the ranks, gathered on rank 0 (every rank gets them)
        found, computed, loaded = runner.run_units(
            units, load=lambda u: store.load(study.name, keys[u[0]][0], u[1], u[2]), compute=compute, save=save,
            describe=describe, progress=progress, recompute=recompute)
    per_image: dict[str, dict] = {}
    sums: dict[str, dict] = {}
    for name in resolved:
        pieces = [arrays for unit, arrays in zip(units, found) if unit[0] == name]
        per_image[name] = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0] if not k.startswith("sum_")}
        sums[name] = {k: np.sum([p[k] for p in pieces], axis=0) for k in pieces[0] if k.startswith("sum_")}
    report(progress, 1.0, f"{study.name}: done ({computed} chunks computed, {loaded} read from the store)")
    return result(study=study.name, model_names=list(resolved), indices=np.arange(n),
                  labels=data.y[:n].cpu().numpy().astype(np.int64), per_image=per_image, sums=sums,
                  settings={**plain, "dataset": dataset, "split": split, "n_images": n},
                  computed=computed, loaded=loaded, fingerprints=fingerprints(resolved),
                  checkpoints=checkpoints(resolved))


def fingerprints(models: dict[str, nn.Module]) -> dict[str, str]:
    """{name -> :func:`~gradviz.studies.store.model_fingerprint`} of resolved models."""
    return {name: model_fingerprint(m) for name, m in models.items()}


def checkpoints(models: dict[str, nn.Module]) -> dict[str, Optional[str]]:
    """{name -> the checkpoint file a model was loaded from (``gradviz_info["path"]``), or None}."""
    return {name: (getattr(m, "gradviz_info", None) or {}).get("path") for name, m in models.items()}


def write_cards(
    result: StudyResult,
    key: str,
    names: Optional[Sequence[str]] = None,
    *,
    measured_by: Optional[str] = None,
    merge: Optional[Callable[[Optional[dict], dict], dict]] = None,
) -> dict[str, Path]:
    """Store each model's :meth:`StudyResult.card_metrics` in its card as ``metrics[key]``,
    through :func:`gradviz.zoo.write_card` (the card's other numbers stay).

    Args:
        result: a study's result (with ``checkpoints`` and ``fingerprints``).
        key: the card's metrics key, e.g. ``"inequality"``.
        names: the models to write (default: every model of the result that has a
            checkpoint file; modules without one have no card and are left out).
        measured_by: the command that made the numbers, stored first as ``"measured_by"``.
        merge: ``merge(old entry or None, new entry) -> entry`` (default: the new entry
            replaces the old one).

    Returns:
        {model name -> the card's JSON path} of the cards written.

    Raises:
        ValueError: a named model without a checkpoint, or whose checkpoint changed since the
            result was computed (its content hash differs: the numbers are not its).
        KeyError: no card beside the checkpoint.
    """
    from gradviz import zoo

    wanted = list(names) if names is not None else [n for n in result.model_names if result.checkpoints.get(n)]
    written = {}
    for name in wanted:
        path = result.checkpoints.get(name)
        if not path:
            raise ValueError(f"{name!r} has no checkpoint file, so no card to write")
        if not Path(path).is_file() or file_fingerprint(path) != result.fingerprints.get(name):
            raise ValueError(f"the checkpoint of {name!r} ({path}) changed since this result was computed")
        entry = result.card_metrics(name)
        if measured_by:
            entry = {"measured_by": measured_by, **entry}
        card = zoo.get_card(path)
        if merge is not None:
            entry = merge(card.metrics.get(key), entry)
        card.metrics = {**card.metrics, key: entry}
        written[name] = zoo.write_card(card)
    return written


def card_writer(key: str, merge: Optional[Callable[[Optional[dict], dict], dict]] = None,
                note: str = "") -> Callable[..., dict[str, Path]]:
    """A study's ``write_card_metrics(result, names=None, *, measured_by=None)``:
    :func:`write_cards` under the card's ``metrics[key]`` with ``merge`` (``note``: a sentence
    for its docstring on how an entry is merged)."""

    def write_card_metrics(result: StudyResult, names: Optional[Sequence[str]] = None, *,
                           measured_by: Optional[str] = None) -> dict[str, Path]:
        return write_cards(result, key, names, measured_by=measured_by, merge=merge)

    write_card_metrics.__doc__ = f"""Store each model's numbers in its card as ``metrics[{key!r}]``
    (the result's ``card_metrics(name)``, ``measured_by`` first when given), through
    :func:`gradviz.studies.base.write_cards`. {note or "The new entry replaces the old one."}

    Args:
        result: the study's ``run`` result.
        names: the models to write (default: every model of the result that has a
            checkpoint file; modules without one have no card and are left out).
        measured_by: the command that made the numbers (None: not stored).

    Returns:
        {{model name -> the card's JSON path}} of the cards written.

    Raises:
        ValueError: a named model without a checkpoint, or whose checkpoint changed since the
            result was computed (its content hash differs: the numbers are not its).
        KeyError: no card beside the checkpoint.
    """
    return write_card_metrics
