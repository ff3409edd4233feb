"""Cached computations of the Inequality page (st.cache_data, keyed on plain values, bounded).

The per-image views call the library (:mod:`gradviz.attribution`, :mod:`gradviz.inequality`)
on models from :func:`gradviz.ui.cache.cached_model`. The dataset-wide numbers are the study
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
from gradviz.attribution import attribute
from gradviz.studies import NotStored
from gradviz.studies import inequality as inequality_study
from gradviz.studies.inequality import InequalityResult
from gradviz.ui.cache import cached_dataset, cached_model, progress_bar
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


def _models(names, device, versions):
    dev = str(resolve_device(device))
    return {n: cached_model(n, dev, v) for n, v in zip(names, versions)}, torch.device(dev)


def _predict(model, x: torch.Tensor) -> tuple[int, float]:
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)[0]
    return int(p.argmax()), float(p.max())


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
    """:func:`gradviz.attribution.attribute` of the true-class logit of every model on one
    image x (1, C, H, W). Returns ``(attributions, predictions)``: model name -> (1, C, H,
    W) float32 signed, and model name -> (class, probability). Raises ValueError."""
    models, dev = _models(model_names, device, versions)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    y = torch.tensor([int(label)], device=dev)
    opts = {"n_steps": int(n_steps)} if method == "integrated_gradients" else {}
    attrs, preds = {}, {}
    for n, m in models.items():
        attrs[n] = attribute(m, xt, y, method, **opts).cpu().numpy().astype(np.float32)
        preds[n] = _predict(m, xt)
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
    models, _ = _models(model_names, device, versions)
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
    models, _ = _models(model_names, device, versions)
    with progress_bar() as progress:
        inequality_study.run(list(models.values()), dataset=dataset, n=min(int(n_images), len(cached_dataset(dataset))),
                             device=device, progress=progress, **_settings(**settings))
    return stored_inequality(model_names, device, versions, dataset, n_images, **settings)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_examples(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], x: np.ndarray, label: int,
    method: str, n_steps: int, k: int, noise: str = "normal", mode: str = "add", by_magnitude: bool = False,
    seed: int = 0, radii: tuple[int, ...] = (1, 2, 3, 4, 5, 6), n_pixels: int = 10, colour: float = 0.0,
) -> tuple[dict, dict, dict]:
    """One image x (1, C, H, W) perturbed for every model: inductive noise and random noise
    on k features, and inductive occlusion at the first (n, r) that flips the model (the
    largest setting when none does).

    Returns:
        ``(images, predictions, notes)``: model name -> {variant title -> (C, H, W)
        float32}; model name -> {"clean" or variant title -> (class, probability)}; model
        name -> {variant title -> a note (k; the occlusion setting (n, r))}.
    """
    attrs, preds0 = cached_image_attributions(model_names, device, versions, x, label, method, n_steps)
    models, dev = _models(model_names, device, versions)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    y = torch.tensor([int(label)], device=dev)
    n_feat = int(math.prod(xt.shape[1:]))
    kt = f"{100 * k / n_feat:.3g} %"
    variants = ("inductive noise", "random noise", "occlusion")
    images, preds, notes = {}, {}, {}
    for n, m in models.items():
        a = torch.from_numpy(attrs[n]).to(dev)
        ranked = a.abs() if by_magnitude else a
        noisy = iq.inductive_noise(xt, ranked, k, mode=mode, noise=noise, seed=seed)
        rand = iq.inductive_noise(xt, ranked, k, mode=mode, noise=noise, seed=seed, random=True)
        occ = iq.inductive_occlusion(m, xt, y, ranked, n_pixels=range(1, n_pixels + 1), radii=list(radii),
                                     colour=colour, among=torch.ones(1, dtype=torch.bool, device=dev))
        hit = occ.first_setting(0)
        npx, r = hit if hit is not None else (n_pixels, max(radii))
        heat = ranked.mean(dim=1).flatten(1)  # the centres inductive_occlusion uses
        top = torch.topk(heat, npx, dim=1).indices
        centres = torch.stack([top // xt.shape[-1], top % xt.shape[-1]], dim=-1)
        mask = iq.occlusion_mask(centres, r, tuple(xt.shape[-2:]))[:, None]
        occluded = torch.where(mask, torch.full_like(xt, float(colour)), xt)
        out = dict(zip(variants, (noisy, rand, occluded)))
        images[n] = {v: t[0].cpu().numpy().astype(np.float32) for v, t in out.items()}
        preds[n] = {"clean": preds0[n], **{v: _predict(m, t) for v, t in out.items()}}
        notes[n] = {variants[0]: f"k {kt}", variants[1]: f"k {kt}",
                    variants[2]: f"n {npx}, r {r}" + ("" if hit is not None else " (no flip)")}
    return images, preds, notes
