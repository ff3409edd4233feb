"""Cached computations of the Alignment page (docs/methods.md section 1, Bigolin Lanfredi et al.).

Generators load once per checkpoint file (st.cache_resource, keyed on path and modification
time). Residuals come from :func:`gradviz.generative.residuals_for`, whose store on disk is
their cache (keyed on the generator's weights and the projection settings): a pair (image,
class) is projected once, ever. The per-image view's closest classes and alphas are cached
with st.cache_data, keyed on model names, checkpoint versions, the generator file's version
and the settings. The dataset-wide numbers are the study :mod:`gradviz.studies.alignment`,
stored chunk by chunk (the shipped models' defaults ship under ``assets/studies``): read
through st.cache_data when all stored, else computed under an ``st.progress`` bar; a rerun
started by a widget change stops it between two chunks, keeping what is stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import streamlit as st
import torch

from gradviz import alignment as al
from gradviz import generative
from gradviz.studies import NotStored
from gradviz.studies import alignment as alignment_study
from gradviz.studies.alignment import AlignmentResult, exact_residual
from gradviz.ui.cache import cached_dataset, cached_model, progress_bar
from gradviz.utils import resolve_device

__all__ = [
    "AlignmentResult",
    "ImageAlignment",
    "cached_generator",
    "dataset_alignment",
    "find_generator",
    "image_alignment",
    "stored_alignment",
]

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
    true = exact_residual(ds)
    dx_true = cos_true = None
    if true is not None:
        dt = true[idx]
        dx_true = dt.numpy().astype(np.float32)
        cos_true = al.cosine(dx, dt).numpy()
    return ImageAlignment(indices=idx, labels=y.numpy(), targets=tg, x=x.numpy(), dx_hat=dx.numpy(),
                          gradients=grads, alpha_dx=alphas, closest=closest, dx_true=dx_true, cos_true=cos_true)


@st.cache_data(max_entries=16, show_spinner=False)
def _stored_alignment(model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str,
                      n_images: int, gen_path: str, gen_version: float, steps: tuple[int, int]) -> AlignmentResult:
    """The study's result when every chunk is stored (raises NotStored otherwise; not cached then)."""
    dev = str(_dev(device))
    models = [cached_model(n, dev, v) for n, v in zip(model_names, versions)]
    return alignment_study.run(models, dataset=dataset, n=n_images, steps=steps,
                               generator=cached_generator(gen_path, gen_version), device=dev, compute_missing=False)


def stored_alignment(model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str,
                     n_images: int, *, gen_path: str, gen_version: float,
                     steps: tuple[int, int]) -> Optional[AlignmentResult]:
    """:func:`dataset_alignment`'s result if it is stored (the user's store or the shipped
    results), without computing anything; None otherwise."""
    n_images = max(1, min(int(n_images), len(cached_dataset(dataset, "test"))))
    try:
        return _stored_alignment(tuple(model_names), device, tuple(versions), dataset, n_images, gen_path,
                                 gen_version, tuple(int(s) for s in steps))
    except NotStored:
        return None


def dataset_alignment(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str, n_images: int, *,
    gen_path: str, gen_version: float, steps: tuple[int, int],
) -> AlignmentResult:
    """:func:`gradviz.studies.alignment.run` of the models on the first ``n_images`` test
    images (each model's closest class c~, Eq. 5; the GAN residual toward it, Eqs. 15-16;
    alpha_dx, Eq. 8; alpha_x), computing only the chunks that are not stored, under an
    ``st.progress`` bar (shown only while something is computed).

    Raises:
        ValueError: from the library (e.g. shapes that do not fit the generator).
    """
    found = stored_alignment(model_names, device, versions, dataset, n_images, gen_path=gen_path,
                             gen_version=gen_version, steps=steps)
    if found is not None:
        return found
    dev = str(_dev(device))
    models = [cached_model(n, dev, v) for n, v in zip(model_names, versions)]
    with progress_bar() as progress:
        alignment_study.run(models, dataset=dataset, n=max(1, min(int(n_images), len(cached_dataset(dataset, "test")))),
                            steps=steps, generator=cached_generator(gen_path, gen_version), device=dev,
                            progress=progress)
    return stored_alignment(model_names, device, versions, dataset, n_images, gen_path=gen_path,
                            gen_version=gen_version, steps=steps)
