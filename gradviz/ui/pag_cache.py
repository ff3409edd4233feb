"""Cached computation of the Attack page's perceptually-aligned-gradients view in its
"smallest eps" form (st.cache_data, keyed on plain values, bounded): for every model, the
smallest eps of a grid at which a targeted l_2 attack reaches each class
(:func:`gradviz.attacks.smallest_target_eps`). Nothing here computes on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from gradviz.attacks import smallest_target_eps
from gradviz.ui.cache import cached_models
from gradviz.ui.compute import compute_slot

__all__ = ["TargetEpsView", "cached_target_eps"]


@dataclass(frozen=True)
class TargetEpsView:
    """Per model name: ``images`` (K, C, H, W) each target's attacked image at its smallest
    reaching eps (at the grid's largest where none reaches it), ``min_eps`` (K,) that eps (NaN:
    not reached inside the grid), ``probs`` (K,) the model's probability of the target there,
    ``reached`` (K, G) and ``target_probs`` (K, G) over the whole grid; ``eps_grid`` (G,)."""

    eps_grid: np.ndarray
    images: dict[str, np.ndarray]
    min_eps: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]
    reached: dict[str, np.ndarray]
    target_probs: dict[str, np.ndarray]


@st.cache_data(max_entries=16, show_spinner=False)
def cached_target_eps(
    model_names: tuple[str, ...],
    device: str,
    versions: tuple[float, ...],
    x: np.ndarray,
    eps_grid: tuple[float, ...],
    steps: int,
) -> TargetEpsView:
    """:func:`gradviz.attacks.smallest_target_eps` (targeted l_2 PGD toward every class at
    every eps of ``eps_grid``, pixel units) of every model on one image x (1, C, H, W).
    Raises ValueError for bad settings (from the library)."""
    xt = torch.from_numpy(np.ascontiguousarray(x))
    images, min_eps, probs, reached, target_probs = {}, {}, {}, {}, {}
    grid = np.asarray(eps_grid, dtype=np.float64)
    for n, model in cached_models(model_names, device, versions).items():
        with compute_slot("heavy"):
            res = smallest_target_eps(model, xt, list(eps_grid), steps=int(steps))
        img, p = res.at_min_eps()
        images[n], probs[n] = img.numpy(), p.numpy()
        min_eps[n] = res.min_eps
        reached[n], target_probs[n] = res.reached.numpy(), res.probs.numpy()
        grid = res.eps_grid
    return TargetEpsView(grid, images, min_eps, probs, reached, target_probs)
