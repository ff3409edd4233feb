"""Cached computations of the Inequality page (st.cache_data, keyed on plain values, bounded).

Each function loads the models through :func:`gradviz.ui.cache.cached_model` and calls the
library (:mod:`gradviz.attribution`, :mod:`gradviz.inequality`); the dataset-wide work runs
under an ``st.progress`` bar fed by the library's ``progress`` callbacks. The cached functions
themselves call no Streamlit element (so that a cache hit has nothing to replay): the bar
is updated between cached steps (chunks of images, then one model's metrics), and a rerun
started by a widget change stops the work there, keeping the steps already done.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import streamlit as st
import torch

from gradviz import inequality as iq
from gradviz.attribution import attribute
from gradviz.figures import short_model_name
from gradviz.ui.cache import cached_dataset, cached_model
from gradviz.utils import resolve_device

__all__ = [
    "DatasetInequality",
    "MAX_K",
    "cached_examples",
    "cached_image_attributions",
    "dataset_inequality",
    "parse_k_list",
]

#: Most values of k in one curve.
MAX_K = 12
#: Images per attribution call on the test split (integrated gradients: x n_steps forwards).
_CHUNK = {"integrated_gradients": 20}


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


@st.cache_data(max_entries=600, show_spinner=False)
def _attribution_chunk(model_name: str, device: str, version: float, dataset: str, start: int, stop: int,
                       method: str, n_steps: int) -> np.ndarray:
    """Signed attributions (stop - start, C, H, W) float32 of test images [start, stop) for
    their true class (the unit of caching and of progress)."""
    ds = cached_dataset(dataset, "test")
    dev = torch.device(str(resolve_device(device)))
    model = cached_model(model_name, str(dev), version)
    opts = {"n_steps": int(n_steps)} if method == "integrated_gradients" else {}
    a = attribute(model, ds.x[start:stop].to(dev), ds.y[start:stop].to(dev), method, batch_size=1000, **opts)
    return a.cpu().numpy().astype(np.float32)


def _chunks(n_images: int, method: str) -> list[tuple[int, int]]:
    size = _CHUNK.get(method, 250)
    return [(s, min(s + size, n_images)) for s in range(0, n_images, size)]


def _test_attributions(model_name: str, device: str, version: float, dataset: str, n_images: int,
                       method: str, n_steps: int) -> np.ndarray:
    """The attributions of the first ``n_images`` test images, from the cached chunks."""
    return np.concatenate([_attribution_chunk(model_name, device, version, dataset, a, b, method, n_steps)
                           for a, b in _chunks(n_images, method)])


@dataclass
class DatasetInequality:
    """The dataset-wide results of the Inequality page (plain arrays; picklable).

    Attributes:
        model_names: the compared models, in order.
        n_images: the first ``n_images`` test images were used; ``labels`` (N,) theirs.
        among: (N,) bool, the images every model classifies correctly (error rates are
            over these).
        gini, regional: model name -> (N,) global / regional Gini over all N images
            (``regional`` empty when no valid block was given).
        block: the regional block side, or None.
        lorenz_fractions: (P,); lorenz_mean: model name -> (P,) mean Lorenz curve.
        n_features: C*H*W; k_counts: the k values (counts).
        inductive, random: model name -> (K,) error rates under inductive / random noise.
        radii, n_pixels: the occlusion grid; occlusion: model name -> (R,) fraction of
            ``among`` broken at a radius <= r.
        settings: the settings as plain values.
    """

    model_names: list[str]
    n_images: int
    labels: np.ndarray
    among: np.ndarray
    gini: dict[str, np.ndarray]
    regional: dict[str, np.ndarray]
    block: Optional[int]
    lorenz_fractions: np.ndarray
    lorenz_mean: dict[str, np.ndarray]
    n_features: int
    k_counts: list[int]
    inductive: dict[str, np.ndarray]
    random: dict[str, np.ndarray]
    radii: list[int]
    n_pixels: list[int]
    occlusion: dict[str, np.ndarray]
    settings: dict = field(default_factory=dict)

    @property
    def n_common(self) -> int:
        """How many images every model classifies correctly."""
        return int(self.among.sum())

    def to_npz(self) -> bytes:
        """The numbers as ``.npz`` bytes (M models in order, N images, K values of k, R radii):
        ``model_names`` (M,), ``labels`` (N,), ``common_correct`` (N,) bool, ``gini`` (M, N),
        ``regional_gini`` (M, N) (NaN without a block), ``lorenz_fractions`` (P,),
        ``lorenz_mean`` (M, P), ``k`` (K,) counts, ``k_percent`` (K,), ``inductive_error``
        and ``random_error`` (M, K), ``radii`` (R,), ``occlusion_error`` (M, R),
        ``settings`` 0-d str (JSON)."""
        names = self.model_names
        nan = np.full(self.n_images, np.nan)
        buf = io.BytesIO()
        np.savez_compressed(
            buf, model_names=np.array(names, dtype=str), labels=self.labels.astype(np.int64),
            common_correct=self.among.astype(bool), gini=np.stack([self.gini[n] for n in names]),
            regional_gini=np.stack([self.regional.get(n, nan) for n in names]),
            lorenz_fractions=self.lorenz_fractions, lorenz_mean=np.stack([self.lorenz_mean[n] for n in names]),
            k=np.array(self.k_counts, dtype=np.int64),
            k_percent=100.0 * np.array(self.k_counts, dtype=np.float64) / self.n_features,
            inductive_error=np.stack([self.inductive[n] for n in names]),
            random_error=np.stack([self.random[n] for n in names]),
            radii=np.array(self.radii, dtype=np.int64), occlusion_error=np.stack([self.occlusion[n] for n in names]),
            settings=np.array(json.dumps({**self.settings, "n_pixels": self.n_pixels})),
        )
        return buf.getvalue()


@st.cache_data(max_entries=8, show_spinner=False)
def _common_correct(model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str,
                    n_images: int) -> np.ndarray:
    """(N,) bool: the first ``n_images`` test images that every model classifies correctly."""
    ds = cached_dataset(dataset, "test")
    models, dev = _models(model_names, device, versions)
    return iq.common_correct_mask(models, ds.x[:n_images].to(dev), ds.y[:n_images].to(dev)).cpu().numpy()


@st.cache_data(max_entries=32, show_spinner=False)
def _model_results(
    model_name: str, device: str, version: float, compared: tuple[str, ...], versions: tuple[float, ...],
    dataset: str, n_images: int, method: str, n_steps: int, block: Optional[int], k_counts: tuple[int, ...],
    noise: str, mode: str, by_magnitude: bool, seed: int, radii: tuple[int, ...], n_pixels: int, colour: float,
) -> dict[str, np.ndarray]:
    """One model's Gini, mean Lorenz curve and error rates (over the images every model of
    ``compared`` classifies correctly), from its cached attributions."""
    ds = cached_dataset(dataset, "test")
    models, dev = _models((model_name,), device, (version,))
    model = models[model_name]
    x, y = ds.x[:n_images].to(dev), ds.y[:n_images].to(dev)
    among = torch.from_numpy(_common_correct(compared, device, versions, dataset, n_images)).to(dev)
    a = torch.from_numpy(_test_attributions(model_name, device, version, dataset, n_images, method, n_steps)).to(dev)
    out = {"gini": iq.gini(a).cpu().numpy()}
    if block is not None:
        out["regional"] = iq.regional_gini(a, block).cpu().numpy()
    f, s = iq.lorenz_curve(a, points=201)
    out["lorenz_fractions"], out["lorenz_mean"] = f.cpu().numpy(), s.mean(dim=0).cpu().numpy()
    ranked = a.abs() if by_magnitude else a
    for kind, random in (("inductive", False), ("random", True)):
        out[kind] = iq.noise_error_rate(model, x, y, ranked, list(k_counts), mode=mode, noise=noise, random=random,
                                        seed=seed, among=among).numpy()
    occ = iq.inductive_occlusion(model, x, y, ranked, n_pixels=range(1, n_pixels + 1), radii=list(radii),
                                 colour=colour, among=among)
    counted = int(among.sum())
    broken, radius = occ.broken.cpu(), occ.radius.cpu()
    out["occlusion"] = (np.array([float((broken & (radius <= r)).sum()) / counted for r in radii]) if counted
                        else np.full(len(radii), np.nan))
    return out


def dataset_inequality(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str, n_images: int, *,
    method: str, n_steps: int, block: Optional[int], k_counts: tuple[int, ...], noise: str = "normal",
    mode: str = "add", by_magnitude: bool = False, seed: int = 0, radii: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
    n_pixels: int = 10, colour: float = 0.0,
) -> DatasetInequality:
    """Gini, Lorenz curves, inductive-noise and occlusion error rates of every model on the
    first ``n_images`` test images (docs/methods.md section 3), cached; an ``st.progress`` bar
    shows the work while it runs (removed at the end).

    Attributions are of the true-class logit (``method``; integrated gradients with
    ``n_steps``), cached per model and chunk of images (the progress steps; a widget change
    stops the work between two chunks and keeps the chunks done). Error rates are over the
    images every model classifies correctly (:func:`gradviz.inequality.common_correct_mask`);
    noise ranks features by signed attribution, or by |attribution| with ``by_magnitude``
    (the IGD paper). Occlusion tries n = 1..``n_pixels`` top pixels at each radius of
    ``radii``.

    Raises:
        ValueError: bad settings (from the library; e.g. a k or block that does not fit).
    """
    names, versions = tuple(model_names), tuple(versions)
    ds = cached_dataset(dataset, "test")
    n_images = min(int(n_images), len(ds))
    chunks = _chunks(n_images, method)
    steps = len(names) * (len(chunks) + 1)
    bar = st.progress(0.0, text="Starting…")
    done = 0
    try:
        results = {}
        for name, version in zip(names, versions):
            short = short_model_name(name)
            for a, b in chunks:
                bar.progress(done / steps, text=f"{short}: attributions of test images {a}–{b - 1} of {n_images}")
                _attribution_chunk(name, device, version, dataset, a, b, method, int(n_steps))
                done += 1
            bar.progress(done / steps, text=f"{short}: Gini, inductive noise and occlusion")
            results[name] = _model_results(
                name, device, version, names, versions, dataset, n_images, method, int(n_steps), block,
                tuple(int(k) for k in k_counts), noise, mode, bool(by_magnitude), int(seed),
                tuple(int(r) for r in radii), int(n_pixels), float(colour))
            done += 1
        bar.progress(1.0, text="Done")
    finally:
        bar.empty()
    first = results[names[0]]
    return DatasetInequality(
        model_names=list(names), n_images=n_images, labels=ds.y[:n_images].numpy(),
        among=_common_correct(names, device, versions, dataset, n_images), gini={n: r["gini"] for n, r in results.items()},
        regional={n: r["regional"] for n, r in results.items() if "regional" in r}, block=block,
        lorenz_fractions=first["lorenz_fractions"], lorenz_mean={n: r["lorenz_mean"] for n, r in results.items()},
        n_features=int(math.prod(ds.x.shape[1:])), k_counts=[int(k) for k in k_counts],
        inductive={n: r["inductive"] for n, r in results.items()}, random={n: r["random"] for n, r in results.items()},
        radii=[int(r) for r in radii], n_pixels=list(range(1, int(n_pixels) + 1)),
        occlusion={n: r["occlusion"] for n, r in results.items()},
        settings=dict(dataset=dataset, n_images=n_images, method=method, n_steps=int(n_steps), block=block,
                      noise=noise, mode=mode, rank="magnitude" if by_magnitude else "signed", seed=int(seed),
                      colour=float(colour)),
    )


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
