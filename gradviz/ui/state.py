"""The sidebar shared by every page (dataset, models, device) and its state.

``app.py`` calls :func:`draw_sidebar` once per run, before the page; a page calls
:func:`sidebar_state` to read the choices. The choices live in ``st.session_state`` so
they survive page switches.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from gradviz import zoo
from gradviz.data import DATASETS
from gradviz.viz.common import short_model_name
from gradviz.utils import available_devices

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_MODELS",
    "SidebarState",
    "available_datasets",
    "draw_sidebar",
    "sidebar_state",
]

DEFAULT_DATASET = "mnist-5k"
#: The two shipped models, selected by default.
DEFAULT_MODELS: tuple[str, ...] = ("mnist-5k/standard", "mnist-5k/pgd-linf")

_STATE_KEY = "gv_sidebar"


@dataclass(frozen=True)
class SidebarState:
    """The choices of the shared sidebar.

    Attributes:
        dataset: dataset name (a key of :data:`gradviz.data.DATASETS`).
        models: zoo names of the selected models, in the order chosen.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        image_folder: a folder of images, one sub-folder per class, shown instead of the
            dataset's test split (``""``: the test split; :func:`gradviz.data.load_image_folder`).
    """

    dataset: str = DEFAULT_DATASET
    models: tuple[str, ...] = DEFAULT_MODELS
    device: str = "auto"
    image_folder: str = ""


def available_datasets() -> list[str]:
    """Datasets with at least one model in the zoo; the default dataset always first."""
    with_models = {card.dataset for card in zoo.list_models()}
    names = [DEFAULT_DATASET] + sorted(d for d in with_models if d != DEFAULT_DATASET and d in DATASETS)
    return names


def eps_text(eps: float) -> str:
    """An eps as people write it: ``0.3``, ``0.5``; ``8/255`` for a multiple of 1/255 that has
    no short decimal form (RobustBench's CIFAR-10 l_inf 8/255 would read 0.0313725)."""
    if round(eps, 4) == eps:
        return f"{eps:g}"
    k = eps * 255
    return f"{round(k):d}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.3g}"


def _model_label(card: zoo.ModelCard) -> str:
    label = short_model_name(card.name)
    if card.eps:
        label += f" (ε {eps_text(card.eps)})"
    return label + ("" if card.shipped else " · RobustBench" if card.arch == "robustbench" else " · yours")


def _model_caption(card: zoo.ModelCard) -> str:
    m = card.metrics or {}
    parts = []
    if "clean_accuracy" in m:
        parts.append(f"clean {100 * m['clean_accuracy']:.1f} %")
    if "robust_accuracy" in m:
        attack = m.get("attack") or {}
        what = f"PGD ε {attack['eps']:g}" if "eps" in attack else "robust"
        parts.append(f"{what}: {100 * m['robust_accuracy']:.1f} %")
    return f"**{short_model_name(card.name)}** — " + (", ".join(parts) if parts else "not evaluated")


def draw_sidebar() -> SidebarState:
    """Draw the shared sidebar widgets and store the choices; returns them.

    Dataset: those of :func:`available_datasets` (default ``"mnist-5k"``). Models: the
    dataset's zoo models (default: the shipped :data:`DEFAULT_MODELS` present). Device:
    :func:`gradviz.utils.available_devices` (default ``"auto"``).
    """
    with st.sidebar:
        datasets = available_datasets()
        dataset = st.selectbox(
            "Dataset", datasets, key="gv_dataset",
            help="Datasets for which the model zoo holds at least one model.",
        )
        cards = {c.name: c for c in zoo.list_models(dataset)}
        names = list(cards)
        default = [n for n in DEFAULT_MODELS if n in cards] or names[:2]
        key = f"gv_models::{dataset}"  # one selection per dataset
        if key not in st.session_state:
            st.session_state[key] = default
        st.session_state[key] = [n for n in st.session_state[key] if n in cards]
        models = st.multiselect(
            "Models", names, key=key,
            format_func=lambda n: _model_label(cards[n]),
            help="Each model gets one column in the figures. Shipped models come with the "
                 "app; your own (python -m gradviz train) are marked 'yours'.",
        )
        if not names:
            st.warning(f"No model for {dataset} in the zoo yet: train one with "
                       f"`python -m gradviz train --dataset {dataset}`.")
        for n in models:
            st.caption(_model_caption(cards[n]))
        info = DATASETS[dataset]
        folder = st.text_input(
            "Image folder" + ("" if not info.has_splits else " (optional)"), key=f"gv_folder::{dataset}",
            placeholder="/path/to/images" if not info.has_splits else "empty: the test split",
            help=f"A folder with one sub-folder per class, named after {dataset}'s classes or their indices "
                 f"(torchvision's ImageFolder convention); its PNG/JPEG images are resized to "
                 f"{info.size} x {info.size}. The pages' images then come from it"
                 + ("." if not info.has_splits else " instead of the test split (dataset-wide studies still use the "
                                                    "test split)."),
        ).strip()
        devices = available_devices()
        device = st.selectbox(
            "Device", devices, key="gv_device",
            help="'auto' uses the GPU when torch sees one, else the CPU.",
        )
    state = SidebarState(dataset=dataset, models=tuple(models), device=device, image_folder=folder)
    st.session_state[_STATE_KEY] = state
    return state


def sidebar_state() -> SidebarState:
    """The choices stored by :func:`draw_sidebar` in this session (defaults if none yet)."""
    state = st.session_state.get(_STATE_KEY)
    return state if isinstance(state, SidebarState) else SidebarState()
