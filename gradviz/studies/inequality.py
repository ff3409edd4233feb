"""Saliency inequality over a split: Gini, regional Gini, Lorenz curves, and the error
rates under inductive noise and inductive occlusion (docs/methods.md section 3; Duan et al.,
ICLR 2023; Chen, Dong and Xie).

Per image and model: the attribution of the true-class logit (``method``), its global Gini
and regional Gini (b x b blocks), its Lorenz curve (summed over the images for the mean
curve), whether the clean prediction is right, whether noise on the top-k (and on k random)
features flips it, and the first occlusion setting that does. Error rates are computed at
the end over the images *every* compared model classifies correctly, as the papers do, so
adding a model to a comparison never recomputes the others. :func:`write_card_metrics` keeps
a run's numbers in the models' cards (``metrics["inequality"]``, one key per attribution
method). The per-image counterpart, one image as the attacks leave it, is
:func:`gradviz.inequality.perturbed_examples`.

>>> from gradviz.studies import inequality
>>> res = inequality.run(["mnist-5k/standard", "mnist-5k/pgd-linf"], n=200, method="gradient")
>>> res.table()
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from numbers import Integral
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from gradviz import inequality as iq
from gradviz.attribution import attribute
from gradviz.studies.base import ModelLike, Study, StudyResult, card_writer, mean_sem, run_study
from gradviz.studies.store import ChunkStore
from gradviz.utils import Progress

#: Points of the stored Lorenz curves (fractions 0, 1/200, ..., 1 of the features).
LORENZ_POINTS = 201
#: k of the noise curves, as fractions of C*H*W (0.2 % to 2 %, the papers' range, and beyond).
DEFAULT_K_FRACTIONS = (0.002, 0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class Settings:
    """Attributes:
        method: the attribution (:data:`gradviz.attribution.METHODS` id) of the true-class
            logit: ``"integrated_gradients"`` (Duan et al.; zero baseline, ``n_steps``),
            ``"gradient"`` (IGD's saliency), ``"input_x_gradient"``.
        n_steps: integration steps (integrated gradients only).
        block: the regional Gini's block side b in pixels (None: no regional Gini).
        k: feature counts or fractions of C*H*W (:func:`gradviz.inequality.resolve_k`).
        noise, mode: :func:`gradviz.inequality.inductive_noise` (``"normal"``: N(0, 1), IGD;
            ``"uniform"``: Duan's U[min x, max x]; ``"add"`` or ``"replace"``).
        by_magnitude: rank features by |attribution| (IGD) instead of the signed value.
        seed: the noise's seed; the chunk starting at split position s uses ``seed + s``.
        radii, n_pixels, colour: occlusion: squares of side 2r around the top 1..n pixels,
            filled with ``colour``.
    """

    method: str = "integrated_gradients"
    n_steps: int = 50
    block: Optional[int] = 4
    k: tuple[float, ...] = DEFAULT_K_FRACTIONS
    noise: str = "normal"
    mode: str = "add"
    by_magnitude: bool = False
    seed: int = 0
    radii: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    n_pixels: int = 10
    colour: float = 0.0


def _attribution_options(settings: Settings) -> dict:
    return {"n_steps": int(settings.n_steps)} if settings.method == "integrated_gradients" else {}


def compute(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, settings: Settings,
            context: Optional[dict] = None) -> dict:
    """One model's per-image numbers on a chunk: ``correct`` (B,), ``gini`` (B,),
    ``regional`` (B,) (NaN without a block), ``inductive`` and ``random`` (B, K) flips,
    ``occlusion_broken`` (B,), ``occlusion_radius`` (B,) (the smallest radius that flips,
    -1 if none), and ``sum_lorenz`` (P,), the Lorenz curves summed over the chunk."""
    a = attribute(model, x, y, settings.method, batch_size=1000, **_attribution_options(settings))
    with torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    out = {"correct": correct.cpu().numpy(), "gini": iq.gini(a).cpu().numpy()}
    out["regional"] = (iq.regional_gini(a, settings.block).cpu().numpy() if settings.block
                       else np.full(len(x), np.nan))
    _, shares = iq.lorenz_curve(a, points=LORENZ_POINTS)
    out["sum_lorenz"] = shares.double().sum(dim=0).cpu().numpy()
    ranked = a.abs() if settings.by_magnitude else a
    for kind, random in (("inductive", False), ("random", True)):
        out[kind] = iq.noise_flips(model, x, y, ranked, list(settings.k), mode=settings.mode, noise=settings.noise,
                                   random=random, seed=settings.seed + start).cpu().numpy()
    occ = iq.inductive_occlusion(model, x, y, ranked, n_pixels=range(1, settings.n_pixels + 1),
                                 radii=list(settings.radii), colour=settings.colour,
                                 among=torch.ones(len(x), dtype=torch.bool, device=x.device))
    broken = occ.broken.cpu()
    out["occlusion_broken"] = broken.numpy()
    out["occlusion_radius"] = torch.where(broken, occ.radius.cpu(), torch.full_like(occ.radius.cpu(), -1)).numpy()
    return out


STUDY = Study(name="inequality", version=1, settings=Settings, compute=compute, chunk=200,
              summary="Gini, regional Gini, Lorenz curves, inductive noise and occlusion")


@dataclass
class InequalityResult(StudyResult):
    """The Inequality page's dataset-wide numbers. Besides :class:`StudyResult`'s fields,
    views named as the page uses them: ``among``, ``gini``, ``regional``, ``lorenz_mean``,
    ``inductive``, ``random``, ``occlusion`` (error rates over ``among``), ``k_counts``."""

    @property
    def among(self) -> np.ndarray:
        """(N,) bool: the images every model classifies correctly (error rates are over these)."""
        return np.logical_and.reduce([self.per_image[n]["correct"] for n in self.model_names])

    @property
    def n_common(self) -> int:
        return int(self.among.sum())

    @property
    def n_features(self) -> int:
        return int(self.settings["n_features"])

    @property
    def k_counts(self) -> list[int]:
        return [int(k) for k in self.settings["k_counts"]]

    @property
    def block(self) -> Optional[int]:
        return self.settings.get("block")

    @property
    def radii(self) -> list[int]:
        return [int(r) for r in self.settings["radii"]]

    @property
    def n_pixels(self) -> list[int]:
        return list(range(1, int(self.settings["n_pixels"]) + 1))

    @property
    def gini(self) -> dict[str, np.ndarray]:
        return self.column("gini")

    @property
    def regional(self) -> dict[str, np.ndarray]:
        return self.column("regional") if self.block else {}

    @property
    def lorenz_fractions(self) -> np.ndarray:
        n = self.n_features
        j = np.unique(np.round(np.linspace(0, n, LORENZ_POINTS)).astype(np.int64))
        return j / n

    @property
    def lorenz_mean(self) -> dict[str, np.ndarray]:
        return {n: self.sums[n]["sum_lorenz"] / self.n_images for n in self.model_names}

    def _rate(self, key: str) -> dict[str, np.ndarray]:
        among = self.among
        if not among.any():
            return {n: np.full(self.per_image[n][key].shape[1:], np.nan) for n in self.model_names}
        return {n: self.per_image[n][key][among].mean(axis=0) for n in self.model_names}

    @property
    def inductive(self) -> dict[str, np.ndarray]:
        """{model -> (K,) error rate under noise on the top-k features, over ``among``}."""
        return self._rate("inductive")

    @property
    def random(self) -> dict[str, np.ndarray]:
        """{model -> (K,) error rate under noise on k random features, over ``among``}."""
        return self._rate("random")

    @property
    def occlusion(self) -> dict[str, np.ndarray]:
        """{model -> (R,) fraction of ``among`` broken at a radius <= r, for each r of ``radii``}."""
        among = self.among
        out = {}
        for n in self.model_names:
            broken, radius = self.per_image[n]["occlusion_broken"][among], self.per_image[n]["occlusion_radius"][among]
            out[n] = (np.array([float((broken & (radius <= r)).sum()) / len(broken) for r in self.radii])
                      if len(broken) else np.full(len(self.radii), np.nan))
        return out

    def table(self) -> pd.DataFrame:
        """One row per model: mean global and regional Gini (all N images), the error rate
        under top-k and random-k noise at each k (``top@<k %>``, ``random@<k %>``) and under
        occlusion at the largest radius, over the ``n_common`` images all models get right."""
        rows = []
        ind, rnd, occ = self.inductive, self.random, self.occlusion
        for n in self.model_names:
            row = {"model": n, "mean_gini": float(np.mean(self.gini[n]))}
            if self.block:
                row[f"mean_regional_gini_b{self.block}"] = float(np.mean(self.regional[n]))
            for j, k in enumerate(self.k_counts):
                pct = f"{100 * k / self.n_features:.3g}%"
                row[f"top@{pct}"] = float(ind[n][j])
                row[f"random@{pct}"] = float(rnd[n][j])
            row[f"occlusion@r{max(self.radii)}"] = float(occ[n][-1])
            row["n_common_correct"] = self.n_common
            rows.append(row)
        return pd.DataFrame(rows)

    def noise_text(self) -> str:
        """The inductive noise in words, e.g. ``"N(0, 1) added to the top-k features by signed
        attribution (random: k random features), clamped, seed 0 + each chunk's first image"``."""
        s = self.settings
        return (("N(0, 1)" if s["noise"] == "normal" else "U[min x, max x]")
                + (" added to" if s["mode"] == "add" else " replacing")
                + f" the top-k features by {'magnitude' if s['by_magnitude'] else 'signed'} attribution "
                  f"(random: k random features), clamped, seed {s['seed']} + each chunk's first image")

    def card_metrics(self, name: str) -> dict:
        """What :func:`write_card_metrics` stores as ``metrics["inequality"]`` of model
        ``name``: the images (``split``, ``n_images``, ``n_common_correct``: those every
        compared model classifies correctly, over which the error rates are), the noise in
        words, ``k_fractions`` (k as given, counts as fractions of C*H*W), and under the
        attribution method's name its mean global and regional Gini (all images; 3 decimals)
        and the error rates under inductive and random noise at each k (4 decimals;
        ``n_steps`` for integrated gradients)."""
        s = self.settings
        given = s.get("k_given", self.k_counts)
        method = {"mean_global_gini": round(mean_sem(self.gini[name])[0], 3)}
        if self.block:
            method[f"mean_regional_gini_block{self.block}"] = round(mean_sem(self.regional[name])[0], 3)
        method["inductive_noise_error_rate"] = [round(float(v), 4) for v in self.inductive[name]]
        method["random_noise_error_rate"] = [round(float(v), 4) for v in self.random[name]]
        if s["method"] == "integrated_gradients":
            method["n_steps"] = int(s["n_steps"])
        return {"split": s["split"], "n_images": self.n_images, "n_common_correct": self.n_common,
                "noise": self.noise_text(),
                "k_fractions": [k / self.n_features if isinstance(k, Integral) else float(k) for k in given],
                s["method"]: method}

    def to_npz(self) -> bytes:
        """The numbers as ``.npz`` bytes (M models in order, N images, K values of k, R radii):
        ``model_names`` (M,), ``labels`` (N,), ``common_correct`` (N,) bool, ``gini`` (M, N),
        ``regional_gini`` (M, N) (NaN without a block), ``lorenz_fractions`` (P,),
        ``lorenz_mean`` (M, P), ``k`` (K,) counts, ``k_percent`` (K,), ``inductive_error``
        and ``random_error`` (M, K), ``inductive_flips`` and ``random_flips`` (M, N, K),
        ``radii`` (R,), ``occlusion_error`` (M, R), ``settings`` 0-d str (JSON)."""
        names = self.model_names
        ind, rnd, occ = self.inductive, self.random, self.occlusion
        buf = io.BytesIO()
        np.savez_compressed(
            buf, model_names=np.array(names, dtype=str), labels=self.labels, common_correct=self.among,
            gini=np.stack([self.gini[n] for n in names]),
            regional_gini=np.stack([self.per_image[n]["regional"] for n in names]),
            lorenz_fractions=self.lorenz_fractions, lorenz_mean=np.stack([self.lorenz_mean[n] for n in names]),
            k=np.array(self.k_counts, dtype=np.int64),
            k_percent=100.0 * np.array(self.k_counts, dtype=np.float64) / self.n_features,
            inductive_error=np.stack([ind[n] for n in names]), random_error=np.stack([rnd[n] for n in names]),
            inductive_flips=np.stack([self.per_image[n]["inductive"] for n in names]),
            random_flips=np.stack([self.per_image[n]["random"] for n in names]),
            radii=np.array(self.radii, dtype=np.int64), occlusion_error=np.stack([occ[n] for n in names]),
            settings=np.array(json.dumps(self.settings, sort_keys=True, default=str)),
        )
        return buf.getvalue()


def run(models: Sequence[ModelLike], *, dataset: str = "mnist-5k", split: str = "test", n: Optional[int] = None,
        device="auto", progress: Optional[Progress] = None, store: Optional[ChunkStore] = None,
        recompute: bool = False, chunk: Optional[int] = None, compute_missing: bool = True,
        **settings) -> InequalityResult:
    """Gini, Lorenz curves, inductive noise and occlusion of each model on the first ``n``
    images of a split.

    Args:
        models: zoo names, checkpoint paths or modules.
        dataset, split, n: the images (n None: the whole split).
        device, progress, store, recompute, chunk, compute_missing: see
            :func:`gradviz.studies.base.run_study`.
        **settings: the fields of :class:`Settings` (``k`` as counts or fractions).

    Returns:
        :class:`InequalityResult`.

    Raises:
        ValueError: an unknown setting or method, a k or block that does not fit the images,
            n out of range.
        TypeError: an unknown keyword.
    """
    from gradviz.data import dataset_info

    info = dataset_info(dataset)
    n_features = int(math.prod(info.shape))
    s = Settings(**settings)
    k_counts = tuple(sorted({iq.resolve_k(k, n_features) for k in s.k}))
    if not k_counts:
        raise ValueError("give at least one k")
    if s.block is not None and not 1 <= int(s.block) <= min(info.shape[-2:]):
        raise ValueError(f"the block side must be in [1, {min(info.shape[-2:])}] pixels, got {s.block}")
    given = list(s.k)
    s = Settings(**{**settings, "k": k_counts, "radii": tuple(int(r) for r in s.radii)})
    res = run_study(STUDY, models, s, dataset=dataset, split=split, n=n, device=device, progress=progress,
                    store=store, recompute=recompute, chunk=chunk,
                    compute_missing=compute_missing, result=InequalityResult)
    res.settings.update(n_features=n_features, k_counts=list(k_counts), k_given=given)
    return res


def _merge_methods(old: Optional[dict], new: dict) -> dict:
    """A card's ``metrics["inequality"]`` with the new method's numbers: the other methods'
    stay when the rest of the entry (images, noise, k, common-correct count) is the same
    (a method measured by another command keeps its ``measured_by``); otherwise the new
    entry replaces the old one."""
    if not isinstance(old, dict):
        return new
    common = lambda e: {k: v for k, v in e.items() if not isinstance(v, dict) and k != "measured_by"}  # noqa: E731
    if common(old) != common(new):
        return new
    moved = old.get("measured_by")
    out = {k: v for k, v in new.items() if not isinstance(v, dict)}
    for key, value in old.items():  # the methods in the card's order, the new one replaced
        if isinstance(value, dict):
            keep = moved and moved != new.get("measured_by") and "measured_by" not in value
            out[key] = new.get(key, {**value, "measured_by": moved} if keep else value)
    out.update({k: v for k, v in new.items() if isinstance(v, dict) and k not in out})
    return out


#: ``write_card_metrics(result, names=None, *, measured_by=None)``: each model's
#: :meth:`InequalityResult.card_metrics` into its card as ``metrics["inequality"]``, one key
#: per attribution method (:func:`_merge_methods`; write results of the same model set).
write_card_metrics = card_writer(
    STUDY.name, merge=_merge_methods,
    note="The entry holds one key per attribution method: another method's result joins the entry when the "
         "images, noise, k and common-correct count are the same (write results of the same model set), and "
         "replaces it otherwise.")
