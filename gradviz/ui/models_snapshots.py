"""The Models page's training snapshots (:mod:`gradviz.training.snapshots`): a chosen model's
per-epoch input gradients with an epoch slider and an animation, compared with a second
model epoch by epoch, the export for a paper, and the newest epoch of a run that is training.

The snapshot files are read through a cache keyed on their path, size and modification time
(a training run rewrites its file after each epoch); a missing or unreadable file is a
message, never an exception. The figures come from :mod:`gradviz.viz.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import streamlit as st

from gradviz import zoo
from gradviz.data import DATASETS
from gradviz.training.snapshots import SNAPSHOT_ATTRIBUTION, Snapshots, load_snapshots
from gradviz.viz.export import MIME_TYPES, figure_to_bytes, snapshots_to_npz, static_export_available
from gradviz.viz.models import (
    snapshot_animation_figure, snapshot_epochs, snapshot_grid_figure, snapshot_images, snapshot_strip_figure,
)
from gradviz.ui.widgets import download_buttons

__all__ = ["READING", "live_snapshots", "read_snapshots", "snapshot_cell", "snapshot_file", "snapshots_panel"]

#: What to look for, in one line: what the shipped snapshots show (the eps-family runs
#: pgd-linf-0.05/0.1/0.2 and pgd-l2-0.5/1/3, measured on their files: mean over the 8 images of
#: cos(gradient, image) -0.01 at epoch 0, 0.60-0.68 after epoch 1; cos(gradient, last epoch's)
#: 0.71-0.76 after epoch 1, >= 0.95 from epoch 4; mean ||gradient|| from epoch 1 to the last:
#: x2.6 at linf 0.05 and l2 0.5, x2.3 at 0.1 / 1, x1.4 at linf 0.2, x0.7 at l2 3).
READING = (
    "**What to look for:** before training (epoch 0) the gradient is speckle; after one epoch it already "
    "traces each digit's strokes, and later epochs refine it rather than redraw it (in the shipped eps-family "
    "runs its cosine with the last epoch's gradient is about 0.7 after epoch 1 and above 0.95 from epoch 4). "
    "With *raw* scaling you see its size too: the larger the training radius, the less it grows (2.6-fold "
    "from epoch 1 to 10 in pgd-linf-0.05 and pgd-l2-0.5; pgd-l2-3's shrinks after epoch 1)."
)

_NONE = "(none)"
#: The snapshot figures' scalings (their "shared" is per image, over models and epochs).
_SCALINGS = {"per_panel": "Per panel", "shared": "Shared per image", "raw": "Raw values"}


def snapshot_file(card: zoo.ModelCard) -> Optional[Path]:
    """The snapshot file beside a card's checkpoint (:func:`gradviz.zoo.snapshot_path`);
    None for a card without a checkpoint path."""
    return zoo.snapshot_path(card.path) if card.path else None


@st.cache_data(max_entries=16, show_spinner=False)
def _load(path: str, mtime_ns: int, size: int) -> Snapshots:
    return load_snapshots(path)


def read_snapshots(path: Optional[Union[str, Path]]) -> tuple[Optional[Snapshots], Optional[str]]:
    """The snapshots in ``path`` (cached on its size and modification time) and None, or
    None and why not: "missing" for no file, else the reader's message."""
    if path is None:
        return None, "missing"
    p = Path(path)
    try:
        stat = p.stat()
        return _load(str(p), stat.st_mtime_ns, stat.st_size), None
    except FileNotFoundError:
        return None, "missing"
    except (ValueError, OSError) as err:
        return None, str(err)


def snapshot_cell(card: zoo.ModelCard) -> str:
    """The Models table's "snapshots" cell: which epochs the card records ("epochs 0–10"),
    "yes" for a file the card does not list, "file missing" for a card whose file is gone,
    "–" for none."""
    recorded = ((card.training or {}).get("snapshots") or {}).get("epochs") or []
    path = snapshot_file(card)
    present = path is not None and path.is_file()
    if recorded and present:
        return f"epochs {recorded[0]}–{recorded[-1]}" if len(recorded) > 1 else f"epoch {recorded[0]}"
    if present:
        return "yes"
    return "file missing" if recorded else "–"


def _class_names(dataset: str) -> Optional[list[str]]:
    info = DATASETS.get(dataset)
    return list(info.classes) if info is not None and getattr(info, "classes", None) else None


def _card_runs(card: zoo.ModelCard) -> tuple[Optional[Snapshots], Optional[str]]:
    """A card's snapshots, or None and a message for the page (None: say nothing more)."""
    path = snapshot_file(card)
    s, why = read_snapshots(path)
    if s is not None and s.n_epochs == 0:
        return None, f"The snapshot file of {card.name} ({path.name}) holds no epoch yet."
    if s is not None:
        return s, None
    recorded = (card.training or {}).get("snapshots")
    if why == "missing":
        if recorded:
            return None, (f"The card of {card.name} lists training snapshots, but their file "
                          f"{recorded.get('file') or (path.name if path else '?')} is missing.")
        return None, None
    return None, f"The training snapshots of {card.name} could not be read: {why}"


def snapshots_panel(card: zoo.ModelCard, cards: Sequence[zoo.ModelCard]) -> Optional[int]:
    """The chosen model's snapshots: epoch slider, comparison, animation, exports. Returns
    the epoch shown (None when the model has no snapshots)."""
    st.subheader("Watch the gradient take shape")
    st.markdown(
        "The input gradient (the Gradients page's default map: " + SNAPSHOT_ATTRIBUTION + ") of the same "
        "held-out test images, kept before training and after every epoch. **Red**: more brightness there "
        "raises the true class's score; **blue**: lowers it."
    )
    runs_one, message = _card_runs(card)
    if runs_one is None:
        if message:
            st.warning(message, icon=":material/warning:")
        else:
            st.info(f"{card.name} has no training snapshots: it was made before gradviz kept them (or imported). "
                    "Every model trained from now on has them, from the command line or the form below.",
                    icon=":material/info:")
        return None
    st.markdown(READING)

    others = [c for c in cards if c.name != card.name and c.dataset == card.dataset
              and (p := snapshot_file(c)) is not None and p.is_file()]
    a, b = st.columns([1, 1])
    other_name = a.selectbox(
        "Compare with", [_NONE, *[c.name for c in others]], key=f"models_snap_other::{card.name}",
        help="Another model with snapshots of the same images, side by side at the same epoch.")
    scaling = b.radio(
        "Scaling", list(_SCALINGS), format_func=_SCALINGS.get, horizontal=True, key="models_snap_scaling",
        help="Per panel: each map divided by its own largest |value| (compare shapes). Shared: each image's maps "
             "share one scale over the models and all epochs (compare sizes). Raw: the gradients themselves, "
             "one colour range over all epochs.")

    runs = {card.name: runs_one}
    logs = {card.name: card.log or []}
    monitors = {card.name: (card.training or {}).get("monitor_settings") or {}}
    if other_name != _NONE:
        other = next(c for c in others if c.name == other_name)
        s, why = _card_runs(other)
        if s is None:
            st.warning(why or f"{other.name} has no snapshots.", icon=":material/warning:")
        else:
            try:
                snapshot_images({card.name: runs_one, other.name: s})
            except ValueError as err:
                st.warning(f"Not compared: {err}.", icon=":material/warning:")
            else:
                runs[other.name] = s
                logs[other.name] = other.log or []
                monitors[other.name] = (other.training or {}).get("monitor_settings") or {}

    epochs = snapshot_epochs(runs)
    key = "models_snap_epoch::" + "::".join(runs)
    if st.session_state.get(key, epochs[-1]) not in epochs:  # a file rewritten with other epochs
        del st.session_state[key]
    epoch = st.select_slider("Epoch", options=epochs, value=epochs[-1], key=key,
                             help="0: before training. The dashed line on the learning curves marks it.")
    lacking = [f"{n} has no snapshot of epoch {epoch}" for n, s in runs.items() if epoch not in s.epochs]
    for text in lacking:
        st.info(text + " (its row is empty).", icon=":material/info:")

    opts = dict(logs=logs, monitors=monitors, class_names=_class_names(card.dataset), scaling=scaling)
    settings = dict(scaling=scaling, epoch=int(epoch), attribution=SNAPSHOT_ATTRIBUTION)
    stem = "snapshots-" + "-vs-".join(n.replace("/", "_") for n in runs)
    tab_epoch, tab_play, tab_paper = st.tabs(["Epoch by epoch", "Play all epochs", "For a paper"])
    with tab_epoch:
        fig = snapshot_grid_figure(runs, epoch, scale_over=epochs, **opts)
        st.plotly_chart(fig, width="content", theme=None, key="models_snap_chart",
                        config={"displaylogo": False, "toImageButtonOptions": {"filename": stem, "scale": 2}})
        download_buttons(fig, lambda: snapshots_to_npz(runs, logs=logs, settings=settings), stem=f"{stem}-epoch{epoch}",
                         key="models_snap", data_help="NumPy .npz with every epoch of every model shown: "
                         "model_names, epochs, images, labels, indices, has_snapshot, input_gradients (signed, "
                         "before display), predictions, probabilities, clean_accuracy, robust_accuracy, settings "
                         "(gradviz.viz.export.snapshots_to_npz).")
    with tab_play:
        anim = snapshot_animation_figure(runs, start_epoch=epochs[0], **opts)
        st.plotly_chart(anim, width="content", theme=None, key="models_snap_anim", config={"displaylogo": False})
        st.download_button("Animation (HTML)", lambda: figure_to_bytes(anim, "html"), file_name=f"{stem}.html",
                           mime=MIME_TYPES["html"], key="models_snap_anim_html", on_click="ignore",
                           icon=":material/download:", help="Plays offline: plotly.js is inside the file.")
    with tab_paper:
        picked = st.multiselect("Epochs in the strip", epochs, default=_strip_default(epochs),
                                key="models_snap_strip_epochs::" + "::".join(runs))
        if picked:
            strip = snapshot_strip_figure(runs, sorted(picked), **opts)
            st.plotly_chart(strip, width="content", theme=None, key="models_snap_strip",
                            config={"displaylogo": False})
            static = static_export_available()
            row = st.container(horizontal=True, gap="small")
            for fmt in ("png", "pdf"):
                row.download_button(fmt.upper(), (lambda f=fmt: figure_to_bytes(strip, f)),
                                    file_name=f"{stem}-strip.{fmt}", mime=MIME_TYPES[fmt],
                                    key=f"models_snap_strip_{fmt}", on_click="ignore", icon=":material/download:",
                                    disabled=not static,
                                    help=None if static else "Needs Chrome or Chromium (install one, or set "
                                                             "BROWSER_PATH).")
        else:
            st.info("Choose at least one epoch.", icon=":material/info:")
    st.caption(
        "Each row: one model after the epoch in its header, with the held-out clean and robust accuracy measured "
        "then (the learning curves' numbers); under each map the model's prediction and its probability (red: "
        "wrong). " + {"per_panel": "Each map is divided by its own largest |value|.",
                      "shared": "Each image's maps share one scale over the models and all epochs.",
                      "raw": "Unscaled: one colour range over all epochs."}[scaling]
        + " The NPZ holds the signed gradients before any display step."
    )
    return int(epoch)


def _strip_default(epochs: Sequence[int]) -> list[int]:
    """Four epochs for a strip: the first, the second, the middle one and the last."""
    if len(epochs) <= 4:
        return list(epochs)
    return sorted({epochs[0], epochs[1], epochs[len(epochs) // 2], epochs[-1]})


def live_snapshots(path: Union[str, Path], log: Sequence[dict], name: str, monitor: Optional[dict] = None) -> None:
    """The newest snapshot of a run that is training (its file is rewritten after each
    epoch); nothing before the first one is written, a message for a file that cannot be read."""
    s, why = read_snapshots(path)
    if s is None or s.n_epochs == 0:
        if why not in (None, "missing"):
            st.warning(f"The run's snapshots could not be read: {why}", icon=":material/warning:")
        return
    newest = int(s.epochs[-1])
    fig = snapshot_grid_figure({name: s}, newest, logs={name: list(log)}, monitors={name: monitor or {}},
                               class_names=_class_names(s.dataset),
                               title=f"Newest snapshot: epoch {newest} (the input gradient while it trains)")
    st.plotly_chart(fig, width="content", theme=None, key="models_job_snapshots", config={"displaylogo": False})
