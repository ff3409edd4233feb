"""The Models page's table and its eps50 on request (computed through the Attack page's
cached accuracy-vs-eps curve, so both pages share the work)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from gradviz import zoo
from gradviz.attacks import eps50, format_curve_eps50
from gradviz.training import EVAL_ATTACKS, default_eps_grid
from gradviz.ui.attack_cache import cached_accuracy_curve
from gradviz.ui.cache import model_version
from gradviz.ui.models_snapshots import snapshot_cell

__all__ = ["eps50_results", "measure_eps50", "model_rows"]

_KEY = "gv_models_eps50"


def eps50_results() -> dict[str, dict]:
    """eps50 results measured in this session: model name -> dict(eps_grid, accuracy, eps50,
    n_images, steps)."""
    return st.session_state.setdefault(_KEY, {})


def measure_eps50(names: Sequence[str], device: str, *, n_images: int, steps: int) -> list[str]:
    """Accuracy vs eps (nested PGD, :func:`gradviz.training.default_eps_grid`) and eps50 of
    each model on its dataset's first ``n_images`` test images; stored for the session
    (:func:`eps50_results`). Returns one message per model that failed."""
    errors = []
    for name in names:
        try:
            card = zoo.get_card(name)
            grid = default_eps_grid(card.dataset)
            norm = EVAL_ATTACKS[card.dataset]["norm"]
            acc = cached_accuracy_curve(name, device, model_version(name), card.dataset, int(n_images),
                                        tuple(grid), norm, int(steps), 0)
        except (KeyError, ValueError, OSError, RuntimeError) as err:
            errors.append(f"eps50 of {name} could not be measured: {err}")
            continue
        eps50_results()[name] = {"eps_grid": list(grid), "accuracy": [float(a) for a in acc],
                                 "eps50": eps50(grid, acc), "n_images": int(n_images), "steps": int(steps)}
    return errors


def model_rows(cards: Sequence[zoo.ModelCard]) -> list[dict]:
    """One row per model for ``st.dataframe`` (:func:`gradviz.zoo.card_summary`), with the
    eps50 measured in this session where there is one and "–" as the norm of a model trained
    without an attack. eps50 is text (:func:`gradviz.attacks.format_curve_eps50`): the
    number, or on which side of its grid it lies when the curve does not cross 50 % inside
    it (older cards' ``inf`` included); "–" when not measured. "snapshots" says which epochs
    of input-gradient snapshots the model has (:func:`gradviz.ui.models_snapshots.snapshot_cell`)."""
    measured = eps50_results()
    rows = []
    for card in cards:
        row = zoo.card_summary(card)
        if row["norm"] is None:  # trained without an attack: no norm (not a missing value)
            row["norm"] = "–"
        curve = measured.get(card.name) or (card.metrics or {}).get("curve")
        row["eps50"] = format_curve_eps50(curve)
        row["snapshots"] = snapshot_cell(card)
        rows.append(row)
    return rows
