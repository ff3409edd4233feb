"""What every model page starts from: the sidebar's choices, the dataset's test split and
the chosen models, with the app's messages when one of them cannot be had."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from torch import nn

from gradviz.data import ImageDataset, load_image_folder
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


@st.cache_resource(max_entries=2, show_spinner="Reading the image folder…")
def cached_image_folder(path: str, dataset: str, version: float = 0.0) -> ImageDataset:
    """:func:`gradviz.data.load_image_folder` for ``dataset``'s input (at most
    :data:`gradviz.data.MAX_FOLDER_IMAGES` images), shared by all sessions (do not modify);
    ``version`` (:func:`_folder_version`) reads a changed folder afresh."""
    return load_image_folder(path, dataset=dataset)


def _folder_version(path: str) -> float:
    """The latest modification time of the folder and its sub-folders (0.0 if unreadable)."""
    try:
        root = Path(path).expanduser()
        return max([root.stat().st_mtime] + [p.stat().st_mtime for p in root.iterdir() if p.is_dir()])
    except OSError:
        return 0.0


def page_inputs(split: str = "test") -> PageInputs:
    """Read the sidebar, load the dataset's ``split`` (or the sidebar's image folder) and the
    chosen models.

    A dataset that cannot be loaded: an error and ``st.stop()``. A model that cannot be
    loaded: an error for it, the page goes on with the others; none left: a warning pointing
    to the sidebar and ``st.stop()``.
    """
    state = sidebar_state()
    try:
        if state.image_folder:
            ds = cached_image_folder(state.image_folder, state.dataset, _folder_version(state.image_folder))
        else:
            ds = cached_dataset(state.dataset, split)
    except (ValueError, FileNotFoundError, OSError) as err:  # ImageInputError is a ValueError
        what = f"The image folder {state.image_folder}" if state.image_folder else f"The dataset {state.dataset!r}"
        st.error(f"{what} could not be loaded: {err}")
        st.stop()
    for note in ds.extras.get("notes", []) if state.image_folder else []:
        st.caption(f"Image folder: {note}.")
    models, load_errors = load_models(state.models, state.device)
    for msg in load_errors:
        st.error(msg, icon=":material/error:")
    if not models:
        st.warning("Choose at least one model that loads, in the sidebar.", icon=":material/arrow_back:")
        st.stop()
    return PageInputs(state, ds, models)
