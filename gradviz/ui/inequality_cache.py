"""Cached computations of the Inequality page (st.cache_data, keyed on plain values, bounded).

The per-image views call the library (:func:`gradviz.gradients.compute_gradient_grid`,
:func:`gradviz.inequality.perturbed_examples`) on models from
:func:`gradviz.ui.cache.cached_model`. The dataset-wide numbers are the study
:mod:`gradviz.studies.inequality`, whose chunks are stored on disk (the shipped models'
defaults ship under ``assets/studies``): this module only reads them through st.cache_data
when they are all stored, and otherwise runs the study under an ``st.progress`` bar. The
cached functions call no Streamlit element (a cache hit has nothing to replay); a rerun
started by a widget change stops the study between two chunks, keeping the chunks done.
"""

from __future__ import annotations

import math
import re
from typing import Optional

import numpy as np
import streamlit as st
import torch

from gradviz import inequality as iq
from gradviz.gradients import compute_gradient_grid
from gradviz.studies import NotStored
from gradviz.studies import inequality as inequality_study
from gradviz.studies.inequality import InequalityResult
from gradviz.ui.cache import cached_dataset, cached_models, heavy_progress
from gradviz.ui.compute import compute_slot
from gradviz.utils import resolve_device

__all__ = [
    "InequalityResult",
    "MAX_K",
    "cached_examples",
    "cached_image_attributions",
    "dataset_inequality",
    "stored_inequality",
    "parse_k_list",
]

#: Most values of k in one curve.
MAX_K = 12


def parse_k_list(text: str, n_features: int) -> tuple[list[int], list[str]]:
    """Parse ``"0.2%, 1%, 2%"`` (percentages of the C*H*W features) or counts (``"5, 20"``;
    commas or spaces) into sorted distinct feature counts.

    A percentage becomes ``max(1, floor(p / 100 * n_features))`` and a whole number is a
    count, both through :func:`gradviz.inequality.resolve_k`.

    Returns:
        ``(counts, problems)``: the valid counts ascending (at most :data:`MAX_K`), and one
        sentence per token that is not a percentage or count, or that
        :func:`~gradviz.inequality.resolve_k` refuses (e.g. a count larger than the number
        of features), and if the list was cut.
    """
    counts: set[int] = set()
    problems: list[str] = []
    for token in re.split(r"[,;\s]+", text.strip()):
        if not token:
            continue
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)", token)
        if m is None:
            problems.append(f"'{token}' is not a percentage (like 0.5%) or a count of features")
            continue
        try:
            if m.group(2):
                k = iq.resolve_k(float(m.group(1)) / 100.0, n_features)
            elif re.fullmatch(r"\d+", m.group(1)):
                k = iq.resolve_k(int(m.group(1)), n_features)
            else:
                problems.append(f"'{token}': write a percentage with % (like {token}%) or a whole "
                                f"count of features")
                continue
        except ValueError as err:
            problems.append(f"'{token}': {err}")
            continue
        counts.add(k)
    out = sorted(counts)
    if len(out) > MAX_K:
        problems.append(f"only the {MAX_K} smallest of {len(out)} values of k are used")
        out = out[:MAX_K]
    return out, problems


@st.cache_data(max_entries=32, show_spinner=False)
def cached_image_attributions(
    model_names: tuple[str, ...],
    device: str,
    versions: tuple[float, ...],
    x: np.ndarray,
    label: int,
    method: str,
    n_steps: int = 50,
) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, float]]]:
    """The true-class logit's attribution of every model on one image x (1, C, H, W):
    :func:`gradviz.gradients.compute_gradient_grid`, cached. Returns ``(attributions,
    predictions)``: model name -> (1, C, H, W) float32 signed, and model name -> (class,
    probability). Raises ValueError."""
    models = cached_models(model_names, device, versions)
    with compute_slot("interactive"):
        grid = compute_gradient_grid(models, torch.from_numpy(np.ascontiguousarray(x)), [int(label)], method=method,
                                     n_steps=int(n_steps))
    attrs = {n: grid.attributions[n].numpy().astype(np.float32) for n in grid.model_names}
    preds = {n: (int(grid.predictions[n][0]), float(grid.confidence(n)[0])) for n in grid.model_names}
    return attrs, preds


def _settings(method: str, n_steps: int, block: Optional[int], k_counts, noise: str, mode: str,
              by_magnitude: bool, seed: int, radii, n_pixels: int, colour: float) -> dict:
    return dict(method=method, n_steps=int(n_steps), block=block, k=tuple(int(k) for k in k_counts), noise=noise,
                mode=mode, by_magnitude=bool(by_magnitude), seed=int(seed), radii=tuple(int(r) for r in radii),
                n_pixels=int(n_pixels), colour=float(colour))


@st.cache_data(max_entries=16, show_spinner=False)
def _stored_inequality(model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str,
                       n_images: int, settings: tuple) -> InequalityResult:
    """The study's result when every chunk is stored (raises NotStored otherwise; not cached then)."""
    models = cached_models(model_names, device, versions)
    return inequality_study.run(list(models.values()), dataset=dataset, n=n_images, device=device,
                                compute_missing=False, **dict(settings))


def stored_inequality(model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str,
                      n_images: int, **settings) -> Optional[InequalityResult]:
    """:func:`dataset_inequality`'s result if it is stored (the user's store or the shipped
    results), without computing anything; None otherwise."""
    n_images = min(int(n_images), len(cached_dataset(dataset, "test")))
    try:
        return _stored_inequality(tuple(model_names), device, tuple(versions), dataset, n_images,
                                  tuple(sorted(_settings(**settings).items())))
    except NotStored:
        return None


def dataset_inequality(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str, n_images: int, *,
    method: str, n_steps: int, block: Optional[int], k_counts: tuple[int, ...], noise: str = "normal",
    mode: str = "add", by_magnitude: bool = False, seed: int = 0, radii: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
    n_pixels: int = 10, colour: float = 0.0,
) -> InequalityResult:
    """:func:`gradviz.studies.inequality.run` of the models on the first ``n_images`` test
    images, computing only the chunks that are not stored, under an ``st.progress`` bar
    (shown only while something is computed). A rerun started by a widget change stops the
    work between two chunks; the chunks done stay stored.

    Raises:
        ValueError: bad settings (from the library; e.g. a k or block that does not fit).
    """
    settings = dict(method=method, n_steps=n_steps, block=block, k_counts=k_counts, noise=noise, mode=mode,
                    by_magnitude=by_magnitude, seed=seed, radii=radii, n_pixels=n_pixels, colour=colour)
    found = stored_inequality(model_names, device, versions, dataset, n_images, **settings)
    if found is not None:
        return found
    models = cached_models(model_names, device, versions)
    with heavy_progress() as progress:
        inequality_study.run(list(models.values()), dataset=dataset, n=min(int(n_images), len(cached_dataset(dataset))),
                             device=device, progress=progress, **_settings(**settings))
    return stored_inequality(model_names, device, versions, dataset, n_images, **settings)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_examples(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], x: np.ndarray, label: int,
    method: str, n_steps: int, k: int, noise: str = "normal", mode: str = "add", by_magnitude: bool = False,
    seed: int = 0, radii: tuple[int, ...] = (1, 2, 3, 4, 5, 6), n_pixels: int = 10, colour: float = 0.0,
) -> tuple[dict, dict, dict]:
    """:func:`gradviz.inequality.perturbed_examples` of one image x (1, C, H, W) for every
    model (inductive and random noise on k features; inductive occlusion at the first (n, r)
    that flips the model, the largest setting when none does), cached.

    Returns:
        ``(images, predictions, notes)``: model name -> {variant title -> (C, H, W)
        float32}; model name -> {"clean" or variant title -> (class, probability)}; model
        name -> {variant title -> a note (k; the occlusion setting (n, r))}.
    """
    attrs, _ = cached_image_attributions(model_names, device, versions, x, label, method, n_steps)
    models = cached_models(model_names, device, versions)
    dev = torch.device(str(resolve_device(device)))
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    y = torch.tensor([int(label)], device=dev)
    images, preds, notes = {}, {}, {}
    for n, m in models.items():
        with compute_slot("interactive"):
            ex = iq.perturbed_examples(m, xt, y, torch.from_numpy(attrs[n]).to(dev), k, mode=mode, noise=noise,
                                       by_magnitude=by_magnitude, seed=seed, radii=radii, n_pixels=n_pixels,
                                       colour=colour)
        images[n] = {v: ex.images[v][0].cpu().numpy().astype(np.float32) for v in iq.EXAMPLE_VARIANTS}
        preds[n] = {v: (int(ex.predictions[v][0]), float(ex.probabilities[v][0]))
                    for v in ("clean", *iq.EXAMPLE_VARIANTS)}
        kt = f"k {100 * ex.k / math.prod(xt.shape[1:]):.3g} %"
        occ = f"n {int(ex.occlusion_pixels[0])}, r {int(ex.occlusion_radius[0])}"
        notes[n] = dict(zip(iq.EXAMPLE_VARIANTS,
                            (kt, kt, occ + ("" if bool(ex.occlusion_flipped[0]) else " (no flip)"))))
    return images, preds, notes
