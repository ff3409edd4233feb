"""Cached computations of the Alignment page (docs/methods.md section 1, Bigolin Lanfredi et al.).

Generators load once per checkpoint file (st.cache_resource, keyed on path and modification
time). Residuals come from :func:`gradviz.generative.residuals_for`, whose store on disk is
their cache (keyed on the generator's weights and the projection settings): a pair (image,
class) is projected once, ever. Closest classes and the alpha values are cached with
st.cache_data, keyed on model names, checkpoint versions, the generator file's version and
the settings. The dataset-wide work runs under an ``st.progress`` bar updated between
cached steps and by the projection's progress callback; a rerun started by a widget change
stops it there, keeping what is stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import streamlit as st
import torch

from gradviz import alignment as al
from gradviz import generative
from gradviz.alignment_figures import alignment_table, alignment_to_csv, alignment_to_npz
from gradviz.figures import short_model_name
from gradviz.ui.cache import cached_dataset, cached_model
from gradviz.utils import resolve_device

__all__ = [
    "DatasetAlignment",
    "ImageAlignment",
    "PAIR_CHUNK",
    "cached_generator",
    "dataset_alignment",
    "find_generator",
    "image_alignment",
]

#: (image, class) pairs projected per stored chunk on the test split (the unit of progress
#: and of what a cancelled run keeps).
PAIR_CHUNK = 400
#: Images per closest-class (Jacobian) call.
_CLOSEST_CHUNK = 250


def find_generator(dataset: str) -> Optional[tuple[str, float]]:
    """``(path, modification time)`` of the dataset's generator (shipped first, then the
    user's: :func:`gradviz.generative.list_generators`), or None when it has none."""
    path = generative.list_generators().get(dataset)
    if path is None:
        return None
    try:
        return str(path), os.path.getmtime(path)
    except OSError:
        return None


@st.cache_resource(max_entries=4, show_spinner="Loading the generator…")
def cached_generator(path: str, version: float = 0.0) -> torch.nn.Module:
    """:func:`gradviz.generative.load_generator` of a checkpoint file, on the CPU, shared
    (read-only); ``gradviz_info["fingerprint"]`` holds its weights' fingerprint. ``version``
    (the file's mtime) makes a retrained generator load afresh. Raises what
    ``load_generator`` raises (NoGeneratorError, CheckpointError)."""
    G = generative.load_generator(Path(path), device="cpu")
    G.gradviz_info["fingerprint"] = generative.generator_fingerprint(G)
    return G


def _dev(device: str) -> torch.device:
    return torch.device(str(resolve_device(device)))


def _true_residual(ds) -> Optional[torch.Tensor]:
    extras = getattr(ds, "extras", None) or {}
    r = extras.get("residual")
    return r if isinstance(r, torch.Tensor) else None


@st.cache_data(max_entries=256, show_spinner=False)
def _closest_chunk(model_name: str, device: str, version: float, dataset: str, start: int, stop: int) -> np.ndarray:
    """Closest class c~ (Eq. 5) under one model of test images [start, stop): (B,) int64."""
    ds = cached_dataset(dataset, "test")
    dev = _dev(device)
    model = cached_model(model_name, str(dev), version)
    c = al.closest_class(model, ds.x[start:stop].to(dev), ds.y[start:stop].to(dev))
    return c.cpu().numpy().astype(np.int64)


def _closest(model_name: str, device: str, version: float, dataset: str, indices) -> np.ndarray:
    """c~ of the given test indices under one model, from cached chunks of the split."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return idx
    out = np.empty(idx.size, dtype=np.int64)
    n_split = len(cached_dataset(dataset, "test"))
    for s in range(0, int(idx.max()) + 1, _CLOSEST_CHUNK):
        mask = (idx >= s) & (idx < s + _CLOSEST_CHUNK)
        if mask.any():
            chunk = _closest_chunk(model_name, device, version, dataset, s, min(s + _CLOSEST_CHUNK, n_split))
            out[mask] = chunk[idx[mask] - s]
    return out


def _residuals(gen_path: str, gen_version: float, dataset: str, indices, targets, steps, device: str,
               progress=None) -> torch.Tensor:
    G = cached_generator(gen_path, gen_version)
    ds = cached_dataset(dataset, "test")
    return generative.residuals_for(G, dataset, "test", torch.as_tensor(np.asarray(indices, dtype=np.int64)),
                                    torch.as_tensor(np.asarray(targets, dtype=np.int64)), steps=tuple(steps),
                                    device=device, images=ds.x, progress=progress)


@dataclass
class ImageAlignment:
    """The numbers of the per-image figure (plain arrays; picklable).

    Attributes:
        indices, labels, targets: (N,) test indices, labels, the residual's target class.
        x, dx_hat: (N, C, H, W) images and GAN residuals toward ``targets``.
        gradients: model name -> (N, C, H, W) grad_x (d_target - d_y).
        alpha_dx: model name -> (N,) cos(gradient, dx_hat) (Eq. 8).
        dx_true, cos_true: exact residuals and cos(dx_hat, dx_true) (``squares``), else None.
        closest: model name -> (N,) each model's own closest class (Eq. 5).
    """

    indices: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    x: np.ndarray
    dx_hat: np.ndarray
    gradients: dict[str, np.ndarray]
    alpha_dx: dict[str, np.ndarray]
    closest: dict[str, np.ndarray]
    dx_true: Optional[np.ndarray] = None
    cos_true: Optional[np.ndarray] = None


@st.cache_data(max_entries=32, show_spinner=False)
def image_alignment(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str, indices: tuple[int, ...],
    target: str, gen_path: str, gen_version: float, steps: tuple[int, int],
) -> ImageAlignment:
    """Residuals and gradients of chosen test images.

    Args:
        target: ``"closest:<model name>"`` (each image's closest class under that model,
            Eq. 5) or ``"class:<k>"`` (class k for every image).
        steps: the projection's (free, penalised) Adam steps.

    Raises:
        ValueError: a target equal to an image's label (from the library), bad indices.
    """
    ds = cached_dataset(dataset, "test")
    dev = _dev(device)
    idx = np.asarray(indices, dtype=np.int64)
    x, y = ds.x[idx], ds.y[idx]
    closest = {n: _closest(n, device, v, dataset, idx) for n, v in zip(model_names, versions)}
    kind, _, what = target.partition(":")
    if kind == "closest":
        if what not in closest:
            raise ValueError(f"the target model {what!r} is not among the compared models")
        tg = closest[what]
    elif kind == "class":
        tg = np.full(idx.size, int(what), dtype=np.int64)
    else:
        raise ValueError(f"unknown target {target!r}: 'closest:<model>' or 'class:<k>'")
    dx = _residuals(gen_path, gen_version, dataset, idx, tg, steps, device)
    t = torch.as_tensor(tg, device=dev)
    grads, alphas = {}, {}
    for n, v in zip(model_names, versions):
        model = cached_model(n, str(dev), v)
        g = al.margin_gradient(model, x.to(dev), y.to(dev), t).cpu()
        grads[n] = g.numpy().astype(np.float32)
        alphas[n] = al.cosine(g, dx).numpy()
    true = _true_residual(ds)
    dx_true = cos_true = None
    if true is not None:
        dt = true[idx]
        dx_true = dt.numpy().astype(np.float32)
        cos_true = al.cosine(dx, dt).numpy()
    return ImageAlignment(indices=idx, labels=y.numpy(), targets=tg, x=x.numpy(), dx_hat=dx.numpy(),
                          gradients=grads, alpha_dx=alphas, closest=closest, dx_true=dx_true, cos_true=cos_true)


@dataclass
class DatasetAlignment:
    """The dataset-wide results of the Alignment page (plain arrays; picklable).

    Attributes:
        model_names: the compared models, in order.
        indices, labels: (N,) the first N test images.
        targets: model name -> (N,) its closest class c~ (Eq. 5), the residual's target.
        alpha_dx: model name -> (N,) cos(grad_x (d_c~ - d_y), dx_hat toward c~) (Eq. 8).
        alpha_x: model name -> (N,) |cos(x, grad_x loss)| (Etmann et al.).
        alpha_true: model name -> (N,) alpha_dx with the exact residual (``squares``; else {}).
        cos_true: (N,) cos(dx_hat, dx_true) toward the other class (``squares``; else None).
        settings: dataset, n_images, steps, lr, lambda_z, generator fingerprint and path.
    """

    model_names: list[str]
    indices: np.ndarray
    labels: np.ndarray
    targets: dict[str, np.ndarray]
    alpha_dx: dict[str, np.ndarray]
    alpha_x: dict[str, np.ndarray]
    alpha_true: dict[str, np.ndarray] = field(default_factory=dict)
    cos_true: Optional[np.ndarray] = None
    settings: dict = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(len(self.indices))

    def table(self) -> pd.DataFrame:
        """The means per model (:func:`gradviz.alignment_figures.alignment_table`)."""
        return alignment_table(self.alpha_dx, self.alpha_x, cos_true=self.cos_true,
                               alpha_true=self.alpha_true or None)

    def to_csv(self) -> bytes:
        """Per-image numbers (:func:`gradviz.alignment_figures.alignment_to_csv`)."""
        return alignment_to_csv(self.indices, self.labels, self.targets, self.alpha_dx, self.alpha_x,
                                cos_true=self.cos_true)

    def to_npz(self) -> bytes:
        """Per-image numbers and settings (:func:`gradviz.alignment_figures.alignment_to_npz`)."""
        return alignment_to_npz(self.indices, self.labels, self.targets, self.alpha_dx, self.alpha_x,
                                cos_true=self.cos_true, alpha_true=self.alpha_true or None, settings=self.settings)


@st.cache_data(max_entries=32, show_spinner=False)
def _model_alignment(model_name: str, device: str, version: float, dataset: str, n_images: int, gen_path: str,
                     gen_version: float, steps: tuple[int, int]) -> dict[str, np.ndarray]:
    """One model's targets, alpha_dx, alpha_x (and alpha_dx with the true residual) on the
    first ``n_images`` test images; the residuals must be stored already (else computed
    here without progress)."""
    ds = cached_dataset(dataset, "test")
    dev = _dev(device)
    model = cached_model(model_name, str(dev), version)
    idx = np.arange(n_images)
    tg = _closest(model_name, device, version, dataset, idx)
    dx = _residuals(gen_path, gen_version, dataset, idx, tg, steps, device)
    x, y, t = ds.x[:n_images].to(dev), ds.y[:n_images].to(dev), torch.as_tensor(tg, device=dev)
    out = {"targets": tg}
    parts_dx, parts_x, parts_true = [], [], []
    true = _true_residual(ds)
    for s in range(0, n_images, 500):
        sl = slice(s, min(s + 500, n_images))
        g = al.margin_gradient(model, x[sl], y[sl], t[sl]).cpu()
        parts_dx.append(al.cosine(g, dx[sl]))
        parts_x.append(al.alpha_x(model, x[sl], y[sl]).cpu())
        if true is not None:
            parts_true.append(al.cosine(g, true[sl]))
    out["alpha_dx"] = torch.cat(parts_dx).numpy()
    out["alpha_x"] = torch.cat(parts_x).numpy()
    if true is not None:
        out["alpha_true"] = torch.cat(parts_true).numpy()
    return out


def _other_class(ds, n_images: int) -> Optional[np.ndarray]:
    """The other class of a two-class dataset (where the true residual points)."""
    return (1 - ds.y[:n_images].numpy()).astype(np.int64) if len(ds.classes) == 2 else None


def dataset_alignment(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str, n_images: int, *,
    gen_path: str, gen_version: float, steps: tuple[int, int],
) -> DatasetAlignment:
    """alpha_dx (Eq. 8) and alpha_x of every model on the first ``n_images`` test images, with
    each model's own closest class c~ (Eq. 5) and the GAN residual toward it (Eqs. 15-16,
    :func:`gradviz.generative.residuals_for`; on ``squares`` also cos(dx_hat, dx_true) and
    alpha_dx with the exact residual), under an ``st.progress`` bar (removed at the end).

    Residuals are projected in chunks of :data:`PAIR_CHUNK` (image, class) pairs, each
    stored on disk when done; pairs shared by several models are projected once.

    Raises:
        ValueError: from the library (e.g. shapes that do not fit the generator).
    """
    names, versions = tuple(model_names), tuple(versions)
    ds = cached_dataset(dataset, "test")
    n_images = max(1, min(int(n_images), len(ds)))
    steps = tuple(int(s) for s in steps)
    bar = st.progress(0.0, text="Starting…")
    try:
        idx = np.arange(n_images)
        # 1. closest classes (a few percent of the work)
        targets = {}
        for j, (n, v) in enumerate(zip(names, versions)):
            bar.progress(0.02 * j / len(names), text=f"{short_model_name(n)}: closest classes (Eq. 5)")
            targets[n] = _closest(n, device, v, dataset, idx)
        # 2. residuals toward every pair needed, once each (the bulk of the work)
        k = len(ds.classes)
        keys = np.unique(np.concatenate([idx * k + targets[n] for n in names]))
        other = _other_class(ds, n_images)
        if other is not None and _true_residual(ds) is not None:
            keys = np.unique(np.concatenate([keys, idx * k + other]))
        chunks = [keys[s : s + PAIR_CHUNK] for s in range(0, len(keys), PAIR_CHUNK)]
        for ci, ch in enumerate(chunks):
            base = 0.02 + 0.9 * ci / len(chunks)

            def report(f, msg, _base=base, _ci=ci, _ch=ch):
                bar.progress(min(1.0, _base + 0.9 * f / len(chunks)),
                             text=f"GAN residuals: pairs {_ci * PAIR_CHUNK + 1}–{_ci * PAIR_CHUNK + len(_ch)} "
                                  f"of {len(keys)} · {msg}")

            report(0.0, "looking up the stored ones")
            _residuals(gen_path, gen_version, dataset, ch // k, ch % k, steps, device, progress=report)
        # 3. the alphas per model (cached)
        results = {}
        for j, (n, v) in enumerate(zip(names, versions)):
            bar.progress(0.92 + 0.08 * j / len(names), text=f"{short_model_name(n)}: α_dx and α_x")
            results[n] = _model_alignment(n, device, v, dataset, n_images, gen_path, gen_version, steps)
        cos_true = None
        true = _true_residual(ds)
        if other is not None and true is not None:
            dx = _residuals(gen_path, gen_version, dataset, idx, other, steps, device)
            cos_true = al.cosine(dx, true[:n_images]).numpy()
        bar.progress(1.0, text="Done")
    finally:
        bar.empty()
    G = cached_generator(gen_path, gen_version)
    s1, s2 = steps
    return DatasetAlignment(
        model_names=list(names), indices=idx, labels=ds.y[:n_images].numpy(),
        targets={n: r["targets"] for n, r in results.items()}, alpha_dx={n: r["alpha_dx"] for n, r in results.items()},
        alpha_x={n: r["alpha_x"] for n, r in results.items()},
        alpha_true={n: r["alpha_true"] for n, r in results.items() if "alpha_true" in r}, cos_true=cos_true,
        settings=dict(dataset=dataset, split="test", n_images=n_images, steps=[s1, s2],
                      lr=generative.default_projection_lr(dataset), lambda_z=generative.default_lambda_z(dataset),
                      generator=G.gradviz_info.get("fingerprint"), generator_path=gen_path,
                      target="each model's closest class (Eq. 5)"),
    )

