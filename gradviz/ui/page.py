"""What every model page starts from: the sidebar's choices, the dataset's test split and
the chosen models, with the app's messages when one of them cannot be had."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from torch import nn

from gradviz.data import ImageDataset
from gradviz.ui.cache import cached_dataset, load_models, model_version
from gradviz.ui.state import SidebarState, sidebar_state


@dataclass(frozen=True)
class PageInputs:
    """The sidebar state, the dataset split and the models (name -> model, in the sidebar's
    order, only those that loaded; read-only, shared by all sessions)."""

    state: SidebarState
    dataset: ImageDataset
    models: dict[str, nn.Module]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def versions(self) -> tuple[float, ...]:
        """Each model's checkpoint version (:func:`model_version`), for cache keys."""
        return tuple(model_version(n) for n in self.models)


def page_inputs(split: str = "test") -> PageInputs:
    """Read the sidebar, load the dataset's ``split`` and the chosen models.

    A dataset that cannot be loaded: an error and ``st.stop()``. A model that cannot be
    loaded: an error for it, the page goes on with the others; none left: a warning pointing
    to the sidebar and ``st.stop()``.
    """
    state = sidebar_state()
    try:
        ds = cached_dataset(state.dataset, split)
    except (ValueError, FileNotFoundError, OSError) as err:
        st.error(f"The dataset {state.dataset!r} could not be loaded: {err}")
        st.stop()
    models, load_errors = load_models(state.models, state.device)
    for msg in load_errors:
        st.error(msg, icon=":material/error:")
    if not models:
        st.warning("Choose at least one model that loads, in the sidebar.", icon=":material/arrow_back:")
        st.stop()
    return PageInputs(state, ds, models)
