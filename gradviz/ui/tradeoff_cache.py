"""Cached computations of the Trade-off page: the eps families and their measures
(:mod:`gradviz.studies.tradeoff`), read from the stored study results through st.cache_data,
or computed on request under an ``st.progress`` bar."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from gradviz.studies import tradeoff
from gradviz.ui.cache import heavy_progress, model_version

__all__ = ["compute_family_measures", "family_names", "stored_family_measures"]


def family_names(dataset: str, norm: str) -> tuple[str, ...]:
    """The names of :func:`gradviz.studies.tradeoff.family` (standard first, ascending eps)."""
    return tuple(c.name for c in tradeoff.family(dataset, norm))


def _cards(names):
    from gradviz import zoo

    return [zoo.get_card(n) for n in names]


@st.cache_data(max_entries=8, show_spinner="Reading the stored results…")
def _stored(names: tuple[str, ...], versions: tuple[float, ...], device: str) -> pd.DataFrame:
    return tradeoff.measures(_cards(names), device=device)


def stored_family_measures(names: tuple[str, ...], device: str) -> pd.DataFrame:
    """:func:`gradviz.studies.tradeoff.measures` of the models from stored results (NaN where
    a measure is not stored); keyed on the checkpoints' versions."""
    return _stored(tuple(names), tuple(model_version(n) for n in names), device)


def compute_family_measures(names: tuple[str, ...], device: str) -> pd.DataFrame:
    """The same, computing what is not stored (GAN projections, ROAR/KAR retrainings: long on
    a CPU) under a progress bar; a rerun stops it between two stored units."""
    with heavy_progress() as progress:
        tradeoff.measures(_cards(names), compute_missing=True, device=device, progress=progress)
    _stored.clear()
    return stored_family_measures(names, device)
