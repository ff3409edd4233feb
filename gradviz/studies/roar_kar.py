"""ROAR and KAR: does an attribution rank pixels by how much a model needs them?

Hooker, Erhan, Kindermans and Kim, "A Benchmark for Interpretability Methods in Deep Neural
Networks" (NeurIPS 2019), as Kim, Seo and Jeon use it in "Bridging Adversarial Robustness
and Gradient Interpretability" (docs/methods.md section 4.4):

- **ROAR** (RemOve And Retrain): in every training and test image, replace the top q of the
  pixels (ranked by the model's attribution) by the training split's per-channel mean;
- **KAR** (Keep And Retrain): keep the top q, replace all others;
- train a *fresh* small-cnn on the modified training split (a fixed, seeded recipe:
  :class:`Settings`) and take its accuracy on the modified test split; q in {10, 30, 50, 70,
  90} %. Retraining is what makes the test fair: without it, a drop in accuracy could come
  from the filled-in pixels' distribution shift rather than from lost information.
- **Baseline:** the same with a random ranking (seeded, the same for every model, so it is
  computed and stored once per settings).

A good attribution makes ROAR accuracy fall fast as q grows (low ROAR area) and keeps KAR
accuracy high at small q (high KAR area).

**The attribution** (Kim et al.'s choice): the input gradient of the cross-entropy loss at
the model's *predicted* class, summed over channels,
``attribute(model, x, pred, "gradient", objective="loss").sum(1)`` (N, H, W), and pixels are
ranked per image by its **magnitude** ``|.|``. Magnitude, because the loss gradient's sign
only says in which direction a pixel moves the loss (it is opposite to the logit gradient's,
docs/methods.md section 4.2); a large negative entry marks a pixel the model relies on as
much as a large positive one. The training images are ranked by the model's own attribution
too (at its own predictions on them), as Hooker et al. do.

**Stored units.** Each (model, mode, q) retraining is one unit in the
:class:`~gradviz.studies.store.ChunkStore`, written atomically as soon as it is done: a run
killed at any moment resumes by retraining only the missing units. The key holds the
checkpoint's content hash, the data, the recipe, the mode and q (not the whole q grid: adding
a q reuses the others). The random baseline's units are keyed on the random seed instead of
a model. Under torchrun the missing units are shared out over the ranks in contiguous blocks
(so that a rank ranks few models' pixels) and gathered on rank 0
(:mod:`gradviz.studies.distributed`).

>>> from gradviz.studies import roar_kar
>>> res = roar_kar.run(["mnist-5k/standard", "mnist-5k/pgd-linf"])    # 2 x 10 + 10 retrainings
>>> res.table()[["model", "roar_area", "kar_area"]]
>>> roar_kar.write_card_metrics(res)                                   # metrics["roar_kar"]
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradviz.attacks import predict
from gradviz.attribution import attribute
from gradviz.data import ImageDataset, load_dataset
from gradviz.studies import distributed
from gradviz.studies.base import (ModelLike, NotStored, Study, StudyResult, card_writer, checkpoints,
                                  resolve_models, settings_dict)
from gradviz.studies.store import ChunkStore, chunk_key, data_fingerprint, model_fingerprint
from gradviz.tensors import model_device
from gradviz.utils import Progress, report, resolve_device

#: The fractions q of pixels removed (ROAR) or kept (KAR): Hooker et al.'s and Kim et al.'s grid.
DEFAULT_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: The two modes, in the order of every array with a mode axis.
MODES = ("roar", "kar")
#: What ranks the pixels (stored with the results and in the cards).
ATTRIBUTION = ("input gradient of the cross-entropy loss at the model's predicted class "
               "(gradviz.attribution.attribute(model, x, pred, 'gradient', objective='loss')), summed over "
               "channels; pixels ranked per image by its magnitude")
#: The table's and the cards' name of the random baseline.
BASELINE = "random"


# --------------------------------------------------------------------------- masking


def pixel_count(q: float, n_pixels: int) -> int:
    """The number of pixels of the top ``q`` of ``n_pixels``: ``round(q * n_pixels)``, to the
    nearest integer, halves to even (Python's ``round``). Rounding, not flooring, because
    ``q * n`` is a float: ``0.29 * 100`` is ``28.999...``, which a floor would make 28.
    For 28 x 28 images (784 pixels) and q = 10, 30, 50, 70, 90 %: 78, 235, 392, 549, 706.

    Raises:
        ValueError: q outside [0, 1] (or NaN), ``n_pixels`` < 1.
    """
    q = float(q)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a fraction in [0, 1], got {q}")
    if n_pixels < 1:
        raise ValueError(f"need at least one pixel, got {n_pixels}")
    return int(round(q * n_pixels))


def top_mask(scores: torch.Tensor, q: float) -> torch.Tensor:
    """The top ``q`` of each image's pixels by ``scores``.

    Args:
        scores: (N, H, W) or (N, 1, H, W) per-pixel scores, higher = more important (e.g.
            ``|gradient|`` summed over channels); finite.
        q: the fraction in [0, 1]; each image gets exactly :func:`pixel_count` ``(q, H * W)``
            pixels.

    Returns:
        (N, 1, H, W) bool, True at the chosen pixels, on ``scores``' device.

    Ties are broken by position: among equal scores the pixel that comes first in row-major
    order (top row first, left to right) ranks higher (a stable descending sort), so the
    mask is a function of the scores alone.

    Raises:
        ValueError: bad shapes, non-finite scores, q outside [0, 1].
    """
    if scores.ndim == 4:
        if scores.shape[1] != 1:
            raise ValueError(f"scores must be (N, H, W) or (N, 1, H, W), got {tuple(scores.shape)}")
        scores = scores[:, 0]
    if scores.ndim != 3:
        raise ValueError(f"scores must be (N, H, W) or (N, 1, H, W), got {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores must be finite (no NaN or inf)")
    n, h, w = scores.shape
    k = pixel_count(q, h * w)
    flat = scores.reshape(n, h * w)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask.reshape(n, 1, h, w)


def mask_top(x: torch.Tensor, scores: torch.Tensor, q: float, mode: str,
             fill: Union[float, Sequence[float], torch.Tensor]) -> torch.Tensor:
    """Hooker et al.'s image modification: remove (ROAR) or keep (KAR) the top ``q`` pixels.

    Args:
        x: (N, C, H, W) images in [0, 1].
        scores: (N, H, W) or (N, 1, H, W) per-pixel ranking scores (see :func:`top_mask`:
            exactly ``round(q * H * W)`` pixels per image, ties by row-major position).
        q: the fraction of pixels in [0, 1].
        mode: ``"roar"``: the top pixels are replaced by ``fill``, the others kept;
            ``"kar"``: the top pixels are kept, all the others replaced. For the same scores
            and q the two are complementary: every pixel is original in exactly one of them.
        fill: the replacement value per channel: a scalar, or C values (the training split's
            per-channel mean, :func:`channel_mean`). All C channels of a chosen pixel are
            replaced together.

    Returns:
        A new (N, C, H, W) tensor (``x`` is not changed).

    Raises:
        ValueError: an unknown mode, shapes that do not match, bad q or scores.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")
    spatial = tuple(scores.shape[-2:])
    if scores.shape[0] != x.shape[0] or spatial != tuple(x.shape[-2:]):
        raise ValueError(f"scores {tuple(scores.shape)} do not match the images {tuple(x.shape)}")
    top = top_mask(scores.to(x.device), q)
    value = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    if value.numel() not in (1, x.shape[1]):
        raise ValueError(f"fill must be a scalar or {x.shape[1]} channel values, got {value.numel()}")
    value = value.reshape(1, -1, 1, 1).expand_as(x)
    replace = top if mode == "roar" else ~top
    return torch.where(replace, value, x)


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """(C,) the per-channel mean of images (N, C, H, W) (float64 sum, returned as float32)."""
    return x.double().mean(dim=(0, 2, 3)).float()


def random_scores(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """(n, height, width) i.i.d. uniform [0, 1) scores from ``torch.Generator().manual_seed(seed)``
    on the CPU: a random ranking (the baseline). The same seed gives the same scores (and
    the first m images of a larger draw are the same as an m-image draw)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(int(n), int(height), int(width), generator=g)


def attribution_scores(model: nn.Module, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """The ranking scores of Kim et al.'s gradient map: ``|sum_c d CE(f(x), pred) / d x|``
    with ``pred`` the model's predicted class, (N, H, W) float32 on the CPU.

    Args:
        model: a classifier taking (N, C, H, W) images in [0, 1]; left unchanged.
        x: (N, C, H, W) images (moved to the model's device in batches).
        batch_size: images per forward/backward pass.
    """
    dev = model_device(model)
    out = []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size].to(dev)
        pred = predict(model, xb, batch_size).argmax(dim=1)
        a = attribute(model, xb, pred, "gradient", objective="loss", batch_size=batch_size)
        out.append(a.sum(dim=1).abs().cpu())
    return torch.cat(out) if out else torch.zeros(0, *x.shape[-2:])


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class Settings:
    """The retraining recipe and the grid (all stored with the results and in the cards).

    Measured on this project's CPU (2 cores): one retraining with the defaults (4,000
    mnist-5k images, 2 epochs of 32 batches) takes 25-29 s of CPU time, 42-65 s of wall
    time while the cores were shared with other jobs (load 7-11); ranking a model's 5,000
    images takes about 14 s of CPU time, once per model and run. On the clean images this
    recipe reaches 96.1 % test accuracy (1 epoch: 93.8 %).

    Attributes:
        fractions: the q grid, fractions of pixels in (0, 1) (default 10, 30, 50, 70, 90 %).
        arch: the freshly initialised architecture retrained on each modified split.
        epochs, batch_size, lr, seed: :func:`gradviz.training.train` with method
            ``standard``: Adam, one-cycle schedule with peak ``lr``, shuffling and
            initialisation seeded with ``seed``, no augmentation (a random shift would move
            the masked pixels), no monitor, no snapshots. The same seed for every unit, so
            units differ only in their data.
        random_seed: the random baseline's ranking (:func:`random_scores`: training images
            drawn with ``random_seed``, test images with ``random_seed + 1``).
        n_train: retrain on the first ``n_train`` training images only (0: all), for tests
            and quick looks; the fill is always the whole training split's mean.
    """

    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    arch: str = "small-cnn"
    epochs: int = 2
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    random_seed: int = 0
    n_train: int = 0

    def recipe(self) -> dict:
        """The retraining recipe as plain values (what a unit's key and a card hold)."""
        return {"arch": self.arch, "method": "standard", "epochs": int(self.epochs),
                "batch_size": int(self.batch_size), "lr": float(self.lr), "seed": int(self.seed),
                "n_train": int(self.n_train), "optimizer": "Adam, one-cycle schedule (gradviz.training.train)",
                "augment": False}


def compute(model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, settings: Settings,
            context: Optional[dict] = None) -> dict:
    """The ranking of a batch of images (the study's per-image step; the retrainings are
    stored per unit by :func:`run`): ``scores`` (B, H, W), :func:`attribution_scores`."""
    return {"scores": attribution_scores(model, x, batch_size=max(len(x), 1)).numpy()}


STUDY = Study(name="roar_kar", version=1, settings=Settings, compute=compute, chunk=500,
              summary="ROAR and KAR (Hooker et al.) of the predicted-class loss gradient: retrain on "
                      "masked data, vs a random ranking", chunked=False, splits=("test",))


@dataclass
class RoarKarResult(StudyResult):
    """ROAR/KAR accuracies of each model and of the random baseline.

    Besides :class:`StudyResult`'s fields (``indices``, ``labels``: the N test images):

    Attributes:
        per_image: model name -> ``{"roar": (N, Q) bool, "kar": (N, Q) bool}``: test image
            classified correctly by the model retrained at each q.
        baseline: the same for the random ranking.
        logs: model name (and ``"random"``) -> ``{mode: [per-unit training log]}`` (the
            retrainings' per-epoch logs, one list per q).
        fingerprints: model name -> the content hash its units are keyed on.
        checkpoints: model name -> its checkpoint file (None for a module without one).
        fill: (C,) the per-channel mean the pixels were replaced by.
    """

    baseline: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    fill: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def fractions(self) -> list[float]:
        return [float(q) for q in self.settings["fractions"]]

    def accuracy(self) -> dict[str, dict[str, np.ndarray]]:
        """{model -> {mode -> (Q,) test accuracy in [0, 1] of the retrained model at each q}}."""
        return {n: {m: self.per_image[n][m].mean(axis=0) for m in MODES} for n in self.model_names}

    def baseline_accuracy(self) -> dict[str, np.ndarray]:
        """{mode -> (Q,) the random ranking's accuracy at each q}."""
        return {m: self.baseline[m].mean(axis=0) for m in MODES}

    @staticmethod
    def area(accuracy: np.ndarray) -> float:
        """The summary of a curve: the mean accuracy over the q grid. For the default grid
        (10, 30, ..., 90 %, the midpoints of five 20 % bins) it is the midpoint rule's area
        under the accuracy-vs-q curve on [0, 1]. ROAR: lower is better; KAR: higher."""
        return float(np.mean(accuracy))

    def table(self) -> pd.DataFrame:
        """One row per model, then the random baseline's row (``model`` = ``"random"``,
        ``kind`` = ``"baseline"``): the accuracy per mode and q (``roar@10%``, ...,
        ``kar@90%``), ``roar_area`` and ``kar_area`` (:meth:`area`), and against the
        baseline ``roar_gain`` = baseline ROAR area - the model's and ``kar_gain`` = the
        model's KAR area - the baseline's (both > 0 when the attribution beats a random
        ranking; 0 on the baseline's row)."""
        base = self.baseline_accuracy()
        base_area = {m: self.area(base[m]) for m in MODES}
        rows = [self._row(n, "model", acc, base_area) for n, acc in self.accuracy().items()]
        rows.append(self._row(BASELINE, "baseline", base, base_area))
        return pd.DataFrame(rows)

    def _row(self, name: str, kind: str, acc: dict, base_area: dict) -> dict:
        row = {"model": name, "kind": kind}
        for m in MODES:
            row.update({f"{m}@{100 * q:g}%": float(a) for q, a in zip(self.fractions, acc[m])})
        row["roar_area"], row["kar_area"] = self.area(acc["roar"]), self.area(acc["kar"])
        row["roar_gain"] = base_area["roar"] - row["roar_area"]
        row["kar_gain"] = row["kar_area"] - base_area["kar"]
        return row

    def to_npz(self) -> bytes:
        """The numbers as ``.npz`` bytes (M models, modes ``roar``, ``kar``, Q fractions, N
        test images): ``model_names`` (M,), ``modes`` (2,), ``fractions`` (Q,), ``labels``
        (N,), ``accuracy`` (M, 2, Q), ``area`` (M, 2), ``correct`` (M, 2, N, Q) bool,
        ``baseline_accuracy`` (2, Q), ``baseline_area`` (2,), ``baseline_correct`` (2, N, Q),
        ``fill`` (C,), ``settings`` (0-d str, JSON, with the recipe)."""
        names = self.model_names
        acc, base = self.accuracy(), self.baseline_accuracy()
        buf = io.BytesIO()
        np.savez_compressed(
            buf, model_names=np.array(names, dtype=str), modes=np.array(MODES, dtype=str),
            fractions=np.array(self.fractions, dtype=np.float64), labels=self.labels,
            accuracy=np.array([[acc[n][m] for m in MODES] for n in names], dtype=np.float64).reshape(
                len(names), len(MODES), len(self.fractions)),
            area=np.array([[self.area(acc[n][m]) for m in MODES] for n in names], dtype=np.float64).reshape(
                len(names), len(MODES)),
            correct=np.stack([np.stack([self.per_image[n][m] for m in MODES]) for n in names]),
            baseline_accuracy=np.stack([base[m] for m in MODES]),
            baseline_area=np.array([self.area(base[m]) for m in MODES]),
            baseline_correct=np.stack([self.baseline[m] for m in MODES]),
            fill=np.asarray(self.fill, dtype=np.float32),
            settings=np.array(json.dumps(self.settings, sort_keys=True, default=str)),
        )
        return buf.getvalue()

    def card_metrics(self, name: str) -> dict:
        """What :func:`write_card_metrics` stores as ``metrics["roar_kar"]`` of model ``name``:
        fractions, accuracy and area per mode, the baseline's, the recipe, the attribution,
        the fill, the test images, and this study's name and version."""
        acc, base = self.accuracy()[name], self.baseline_accuracy()
        r4 = lambda v: round(float(v), 4)  # noqa: E731
        return {
            "fractions": self.fractions,
            "accuracy": {m: [r4(a) for a in acc[m]] for m in MODES},
            "area": {m: r4(self.area(acc[m])) for m in MODES},
            "area_definition": "mean accuracy over the fractions (midpoint rule on [0, 1] for 10, 30, ..., 90 %)",
            "baseline": {"ranking": "random (uniform scores, torch.Generator)", "seed": self.settings["random_seed"],
                         "accuracy": {m: [r4(a) for a in base[m]] for m in MODES},
                         "area": {m: r4(self.area(base[m])) for m in MODES}},
            "attribution": ATTRIBUTION,
            "pixels": "round(q * H * W) per image, all channels of a pixel; ties by row-major position",
            "fill": "the training split's per-channel mean",
            "fill_values": [r4(v) for v in np.asarray(self.fill).reshape(-1)],
            "recipe": dict(self.settings["recipe"]),
            "split": "test",
            "n_images": self.n_images,
            "study": {"name": STUDY.name, "version": STUDY.version},
        }


def _units(fractions: Sequence[float]) -> list[tuple[str, int, float]]:
    return [(m, j, float(q)) for m in MODES for j, q in enumerate(fractions)]


def _unit_message(name: str, mode: str, q: float) -> str:
    return f"{name}: {mode.upper()} q {100 * q:g} %"


def run(models: Sequence[ModelLike], *, dataset: str = "mnist-5k", split: str = "test", n: Optional[int] = None,
        device="auto", progress: Optional[Progress] = None, store: Optional[ChunkStore] = None,
        recompute: bool = False, chunk: Optional[int] = None, compute_missing: bool = True,
        **settings) -> RoarKarResult:
    """ROAR and KAR of each model's predicted-class loss gradient, and of a random ranking.

    For each model, mode and q of the grid: rank the pixels of the training and test images by
    the model's attribution (see the module docstring), replace the top q (ROAR) or all but
    the top q (KAR) by the training split's per-channel mean (:func:`mask_top`), retrain a
    fresh model on the modified training images (:class:`Settings`) and keep which modified
    test images it classifies correctly. The random baseline does the same with
    :func:`random_scores`, once for all models. Each retraining is stored as soon as it is
    done; stored ones are read back, not retrained.

    Args:
        models: zoo names, checkpoint paths or modules.
        dataset: the dataset (its training split is modified and retrained on).
        split: must be ``"test"``: the retrained models are always scored on the test split
            (the argument exists because every study takes it).
        n: score on the first ``n`` test images (None: all).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (attributions and retraining).
        progress: ``progress(fraction, message)``, e.g. ``"mnist-5k/standard: ROAR q 30 %,
            epoch 1/2 loss 0.412"``.
        store: where units are kept (default ``ChunkStore()``).
        recompute: retrain every unit again (and overwrite the stored ones).
        chunk: not used (a stored unit is one retraining); must be None.
        compute_missing: False: retrain nothing, raise :class:`NotStored` when a unit is missing.
        **settings: the fields of :class:`Settings`.

    Returns:
        :class:`RoarKarResult`; its ``settings`` hold the Settings, the dataset, split,
        ``n_images``, ``recipe`` and ``attribution``.

    Raises:
        ValueError: a split other than test, a ``chunk``, a q outside (0, 1), epochs or a
            batch size < 1, n or n_train out of range, a model named ``"random"``.
        TypeError: an unknown setting.
        NotStored: with ``compute_missing=False``, a unit that is not stored.
    """
    from gradviz.training import TrainConfig, train

    s = Settings(**settings)
    s = dataclasses.replace(s, fractions=tuple(float(q) for q in s.fractions))
    if split != "test":
        raise ValueError(f"the roar_kar study retrains on the training split and scores on the test split; "
                         f"split must be 'test', got {split!r}")
    if chunk is not None:
        raise ValueError("the roar_kar study stores one retraining per unit; chunk does not apply")
    if not s.fractions or any(not 0.0 < q < 1.0 for q in s.fractions):
        raise ValueError(f"fractions must be in (0, 1), got {list(s.fractions)}")
    if len(set(s.fractions)) != len(s.fractions):
        raise ValueError(f"fractions must be distinct, got {list(s.fractions)}")
    if s.epochs < 1 or s.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {s.epochs} and {s.batch_size}")
    train_full, test_full = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    n = len(test_full) if n is None else int(n)
    if not 1 <= n <= len(test_full):
        raise ValueError(f"n must be in [1, {len(test_full)}] (the test split's size), got {n}")
    if not 0 <= s.n_train <= len(train_full):
        raise ValueError(f"n_train must be in [0, {len(train_full)}] (0: all), got {s.n_train}")
    n_train = s.n_train or len(train_full)
    train_set, test_set = train_full.subset(slice(0, n_train)), test_full.subset(slice(0, n))
    fill = channel_mean(train_full.x)
    store = store if store is not None else ChunkStore()
    runner = distributed.context(device) if compute_missing else None  # torchrun: retrainings shared out
    dev = resolve_device(device) if runner is None else runner.device_for(device)
    resolved = resolve_models(models, dev)
    if BASELINE in resolved:
        raise ValueError(f"{BASELINE!r} names the random baseline; give that model another name")
    data_fp = data_fingerprint(train_full.x, train_full.y) + ":" + data_fingerprint(test_full.x, test_full.y)
    recipe = s.recipe()
    units = _units(s.fractions)
    _, _, h, w = train_full.x.shape

    def key_of(ranking_fp: str, ranking: dict, mode: str, q: float) -> tuple[str, dict]:
        return chunk_key(STUDY.name, STUDY.version, ranking_fp, data_fp,
                         {"recipe": recipe, "ranking": ranking, "mode": mode, "q": q, "dataset": dataset,
                          "n_test": n})

    # Every ranking: its name, fingerprint, description and (lazily) its scores.
    rankings = []
    for name, model in resolved.items():
        rankings.append((name, model_fingerprint(model), {"kind": "attribution", "attribution": ATTRIBUTION},
                         lambda model=model: (attribution_scores(model, train_set.x, batch_size=STUDY.chunk),
                                              attribution_scores(model, test_set.x, batch_size=STUDY.chunk))))
    rankings.append((BASELINE, f"random:{s.random_seed}", {"kind": "random", "seed": int(s.random_seed)},
                     lambda: (random_scores(len(train_full), h, w, s.random_seed)[:n_train],
                              random_scores(len(test_full), h, w, s.random_seed + 1)[:n])))

    # First what is stored, so the progress counts only the retrainings to do (under torchrun
    # rank 0 reads its store in runner.run_units).
    found: dict[tuple[str, str, int], dict] = {}
    missing = []
    for rname, rfp, rdesc, _ in rankings:
        for mode, j, q in units:
            key, parts = key_of(rfp, rdesc, mode, q)
            arrays = None if recompute or runner is not None else store.load(STUDY.name, key, 0, n)
            if arrays is None:
                if not compute_missing:
                    raise NotStored(f"roar_kar: {_unit_message(rname, mode, q)} is not stored")
                missing.append((rname, mode, j, q, key, {**parts, "model_name": rname}))
            else:
                found[(rname, mode, j)] = arrays
    loaded = len(found)
    todo = len(missing)
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # the ranking in use (missing is grouped by it)

    def retrain(unit, tell: Optional[Progress] = None) -> dict:
        """One unit's retraining -> its arrays (``tell(fraction of the unit, message)``)."""
        rname, mode, j, q, key, parts = unit
        scores = next(r[3] for r in rankings if r[0] == rname)
        if rname not in cache:
            cache.clear()
            report(tell, 0.0, f"{rname}: ranking the pixels")
            cache[rname] = scores()
        train_scores, test_scores = cache[rname]
        message = _unit_message(rname, mode, q)
        xt = mask_top(train_set.x, train_scores, q, mode, fill)
        modified = ImageDataset(xt, train_set.y, train_set.classes, train_set.name, "train")
        config = TrainConfig(dataset=dataset, method="standard", arch=s.arch, epochs=int(s.epochs),
                             batch_size=int(s.batch_size), lr=float(s.lr), seed=int(s.seed), augment=False,
                             monitor=0, snapshots=0)
        inner = None if tell is None else (lambda f, msg: tell(f, f"{message}, {msg}"))
        report(tell, 0.0, f"{message}, epoch 0/{s.epochs}")
        retrained, log = train(config, device=dev, progress=inner, train_set=modified)
        xs = mask_top(test_set.x, test_scores, q, mode, fill)
        correct = predict(retrained, xs.to(dev)).argmax(dim=1).cpu() == test_set.y
        return {"correct": correct.numpy(), "fill": fill.numpy(),
                "train_loss": np.array([e["loss"] for e in log], dtype=np.float64),
                "seconds": np.array([e["seconds"] for e in log], dtype=np.float64)}

    if runner is None:
        for i, unit in enumerate(missing):
            tell = None if progress is None else (lambda f, msg, i=i: report(progress, (i + f) / todo, msg))
            arrays = retrain(unit, tell)
            store.save(STUDY.name, unit[4], 0, n, arrays, unit[5])
            found[unit[:3]] = arrays
    else:  # contiguous blocks of units, so that a rank ranks few models' pixels
        arrays_all, todo, loaded = runner.run_units(
            missing, load=lambda u: store.load(STUDY.name, u[4], 0, n), compute=retrain,
            save=lambda u, arrays: store.save(STUDY.name, u[4], 0, n, arrays, u[5]),
            describe=lambda u: _unit_message(u[0], u[1], u[3]), progress=progress, recompute=recompute, blocks=True)
        found.update({u[:3]: arrays for u, arrays in zip(missing, arrays_all)})
    report(progress, 1.0, f"roar_kar: done ({todo} retrainings, {loaded} read from the store)")

    def collect(rname: str) -> tuple[dict, dict]:
        per = {m: np.stack([found[(rname, m, j)]["correct"] for j in range(len(s.fractions))], axis=1)
               for m in MODES}
        logs = {m: [{"train_loss": found[(rname, m, j)]["train_loss"].tolist(),
                     "seconds": found[(rname, m, j)]["seconds"].tolist()} for j in range(len(s.fractions))]
                for m in MODES}
        return per, logs

    per_image, logs = {}, {}
    for rname, *_ in rankings:
        per, lg = collect(rname)
        logs[rname] = lg
        if rname != BASELINE:
            per_image[rname] = per
    baseline = collect(BASELINE)[0]
    plain = settings_dict(s)
    return RoarKarResult(
        study=STUDY.name, model_names=list(resolved), indices=np.arange(n),
        labels=test_set.y.numpy().astype(np.int64), per_image=per_image,
        settings={**plain, "dataset": dataset, "split": "test", "n_images": n, "n_train_images": n_train,
                  "recipe": recipe, "attribution": ATTRIBUTION},
        computed=todo, loaded=loaded, baseline=baseline, logs=logs,
        fingerprints={rname: rfp for rname, rfp, *_ in rankings if rname != BASELINE},
        checkpoints=checkpoints(resolved),
        fill=fill.numpy(),
    )


#: ``write_card_metrics(result, names=None, *, measured_by=None)``: each model's
#: :meth:`RoarKarResult.card_metrics` into its card as ``metrics["roar_kar"]``.
write_card_metrics = card_writer(STUDY.name)


__all__ = ["ATTRIBUTION", "BASELINE", "DEFAULT_FRACTIONS", "MODES", "STUDY", "RoarKarResult", "Settings",
           "attribution_scores", "channel_mean", "compute", "mask_top", "pixel_count", "random_scores", "run",
           "top_mask", "write_card_metrics"]
