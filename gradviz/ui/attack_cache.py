"""Cached computations of the Attack page (st.cache_data, keyed on plain values, bounded).

Each function loads the models through :func:`gradviz.ui.cache.cached_model` and calls the
library (:mod:`gradviz.attacks`); nothing here computes on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
import torch

from gradviz.attacks import AttackResult, accuracy_vs_eps, run_attack, target_probabilities, targeted_class_sweep
from gradviz.ui.cache import cached_dataset, cached_model, cached_models
from gradviz.ui.compute import compute_slot, waiting_message
from gradviz.utils import resolve_device

__all__ = ["cached_accuracy_curve", "cached_attacks", "cached_sweeps", "parse_eps_grid"]

#: Most points of an accuracy-vs-eps grid.
MAX_GRID = 25


def parse_eps_grid(text: str, *, scale: float = 1.0, limit: float = float("inf")) -> tuple[list[float], list[str]]:
    """Parse ``"0, 0.1, 0.2"`` (commas or spaces) into a sorted list of distinct radii in
    pixel units (each value divided by ``scale``, e.g. 255 for a grid typed in /255).

    Returns:
        ``(grid, problems)``: the valid values, sorted ascending without duplicates (at most
        :data:`MAX_GRID`); one sentence per token that is not a number >= 0 or is above
        ``limit`` (in the typed units), and if the grid was cut.
    """
    values, problems = [], []
    for token in text.replace(";", ",").replace(",", " ").split():
        try:
            v = float(token)
        except ValueError:
            problems.append(f"'{token}' is not a number")
            continue
        if not (v >= 0) or v == float("inf"):
            problems.append(f"'{token}' is not a radius >= 0")
        elif v > limit:
            problems.append(f"'{token}' is above the largest radius {limit:g}")
        else:
            values.append(v / scale)
    grid = sorted(set(values))
    if len(grid) > MAX_GRID:
        problems.append(f"only the first {MAX_GRID} of {len(grid)} radii are used")
        grid = grid[:MAX_GRID]
    return grid, problems


@st.cache_data(max_entries=32, show_spinner=False)
def cached_attacks(
    model_names: tuple[str, ...],
    device: str,
    versions: tuple[float, ...],
    x: np.ndarray,
    label: int,
    settings: dict[str, Any],
    image_name: str = "the image",
) -> dict[str, AttackResult]:
    """:func:`gradviz.attacks.run_attack` of every model on one image x (1, C, H, W);
    ``settings`` are its keyword arguments (eps, norm, steps, step_size, random_start,
    seed, target); ``image_name`` (e.g. ``"test #17"``) names the image in messages.
    Returns model name -> result. Raises ValueError for bad settings (a target equal to
    the label included: the page checks that first)."""
    xt = torch.from_numpy(np.ascontiguousarray(x))
    labels = torch.tensor([int(label)])
    models = cached_models(model_names, device, versions)
    with compute_slot("interactive"):
        return {n: run_attack(m, xt, labels, **settings, names=[image_name]) for n, m in models.items()}


@st.cache_data(max_entries=16, show_spinner=False)
def cached_sweeps(
    model_names: tuple[str, ...],
    device: str,
    versions: tuple[float, ...],
    x: np.ndarray,
    eps: float,
    steps: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`gradviz.attacks.targeted_class_sweep` (l_2) of every model on one image, and
    :func:`gradviz.attacks.target_probabilities` of its rows.

    Returns ``(images, probs)``: model name -> (K, C, H, W) attacked images, and model
    name -> (K,) the model's probability of each target class on its image.
    """
    xt = torch.from_numpy(np.ascontiguousarray(x))
    images, probs = {}, {}
    for n, m in cached_models(model_names, device, versions).items():
        with compute_slot("heavy"):
            out = targeted_class_sweep(m, xt, eps=eps, steps=steps)
            images[n] = out.cpu().numpy()
            probs[n] = target_probabilities(m, out, torch.arange(len(out))).numpy()
    return images, probs


@st.cache_data(max_entries=32, show_spinner=False)
def cached_accuracy_curve(
    model_name: str,
    device: str,
    version: float,
    dataset: str,
    n_images: int,
    eps_grid: tuple[float, ...],
    norm: str,
    steps: int,
    seed: int = 0,
) -> np.ndarray:
    """:func:`gradviz.attacks.accuracy_vs_eps` of one model on the first ``n_images`` test
    images (nested attacks, default step sizes), with an ``st.progress`` bar while it runs
    (removed at the end; a rerun started by a widget change stops it, and nothing is
    cached then). Returns (G,) accuracies in [0, 1]."""
    ds = cached_dataset(dataset, "test")
    model = cached_model(model_name, str(resolve_device(device)), version)
    bar = st.progress(0.0, text=f"{model_name}: starting…")
    with compute_slot("heavy", on_wait=lambda ahead: bar.progress(0.0, text=f"{model_name}: "
                                                                     + waiting_message("heavy", ahead))):
        acc = accuracy_vs_eps(
            model, ds.x[:n_images], ds.y[:n_images], list(eps_grid), norm=norm, steps=steps, seed=seed,
            batch_size=250, progress=lambda f, msg: bar.progress(f, text=f"{model_name}: {msg}"),
        )
    bar.empty()
    return acc
