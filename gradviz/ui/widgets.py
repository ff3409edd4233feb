"""Widget groups shared by pages: which images, which attribution, how to display, and
the download buttons. Each returns a small dataclass of plain values."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st
import torch

from gradviz.attribution import CHANNEL_REDUCTIONS, METHODS, OBJECTIVES
from gradviz.data import ImageDataset, dataset_info
from gradviz.viz.export import MIME_TYPES, STATIC_FORMATS, figure_to_bytes, static_export_available
from gradviz.gradients import UNKNOWN_LABEL, pick_indices
from gradviz.ui.uploads import INVERT_OPTIONS, UPLOAD_HELP, UPLOAD_TYPES, UploadResult, read_upload

__all__ = [
    "DisplayChoice",
    "ImageChoice",
    "MAX_IMAGES",
    "MethodChoice",
    "display_picker",
    "download_buttons",
    "image_picker",
    "method_picker",
    "parse_indices",
]

#: Most images one figure shows (rows).
MAX_IMAGES = 16

IMAGE_MODES = {
    "index": "Index",
    "random": "Random",
    "class": "Class",
    "upload": "Upload",
}
TARGET_LABELS = {
    "label": "True label",
    "predicted": "Predicted (per model)",
    "class": "A chosen class",
}
SCALING_LABELS = {
    "per_panel": "Per panel",
    "shared": "Shared per row",
    "raw": "Raw values",
}
REDUCTION_LABELS = {
    "sum": "Sum (signed)",
    "abs_sum": "|Sum|",
    "l2": "L2 norm",
}


def parse_indices(text: str, n_total: int, *, limit: int = MAX_IMAGES) -> tuple[list[int], list[str]]:
    """Parse ``"0, 5, 17"`` or ``"0-7"`` (ranges inclusive, commas or spaces) into indices.

    Returns:
        ``(indices, problems)``: the valid indices in order (at most ``limit``), and one
        sentence per token that is not an index or lies outside [0, n_total), and if the
        list was cut to ``limit``.
    """
    indices: list[int] = []
    problems: list[str] = []
    for token in re.split(r"[,;\s]+", text.strip()):
        if not token:
            continue
        m = re.fullmatch(r"(\d+)(?:\s*(?:-|\.\.|:)\s*(\d+))?", token)
        if m is None:
            problems.append(f"'{token}' is not an index or a range like 0-7")
            continue
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            lo, hi = hi, lo
        if hi >= n_total:
            problems.append(f"'{token}' is outside the {n_total} images (0 to {n_total - 1})")
            hi = n_total - 1
        indices.extend(range(lo, min(hi, lo + 10 * limit) + 1))
    if len(indices) > limit:
        problems.append(f"only the first {limit} of {len(indices)} images are shown")
        indices = indices[:limit]
    return indices, problems


@dataclass
class ImageChoice:
    """The images chosen on a page.

    Attributes:
        x: (N, C, H, W) float32 in [0, 1] (N may be 0).
        labels: true labels, -1 where unknown (uploads).
        names: one display name per image.
        indices: dataset indices, None for uploads.
        infos, errors: messages for the user (st.info / st.error).
    """

    x: torch.Tensor
    labels: list[int]
    names: list[str]
    indices: list[int] | None = None
    infos: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    uploads: list[UploadResult] = field(default_factory=list)


def image_picker(ds: ImageDataset, *, key: str) -> ImageChoice:
    """Widgets to choose images of ``ds`` (by index, random by seed, by class) or upload.

    Default: images 0-7 by index. Uploads are read with :func:`read_upload` for the
    dataset's input (channels, size); a refused file is reported and left out.
    """
    info = dataset_info(ds.name) if ds.name else None
    mode = st.radio("Images", list(IMAGE_MODES), format_func=IMAGE_MODES.get,
                    key=f"{key}_mode", horizontal=True,
                    help="By index into the test split, a random draw (seeded), images of one "
                         "class, or your own PNG/JPEG files.")
    n_total = len(ds)
    split = ds.split or "test"
    if mode == "upload":
        files = st.file_uploader(
            "PNG or JPEG images", type=list(UPLOAD_TYPES), accept_multiple_files=True,
            key=f"{key}_upload", help=UPLOAD_HELP,
        ) or []
        channels = info.channels if info else int(ds.x.shape[1])
        size = info.size if info else int(ds.x.shape[-1])
        invert = st.radio(
            "Invert (dark strokes on a light background)", list(INVERT_OPTIONS), key=f"{key}_invert",
            horizontal=True,
            help=("auto: a grayscale image on a light background (a digit drawn in black on white) is inverted "
                  "to the data's convention, light strokes on black, and you are told; always / never: as "
                  "chosen. Colour images are inverted only with 'always'."),
        )
        results = [read_upload(f.getvalue(), f.name, channels=channels, size=size, invert=INVERT_OPTIONS[invert])
                   for f in files]
        kept = [r for r in results if r.ok][:MAX_IMAGES]
        x = torch.cat([r.x for r in kept]) if kept else ds.x[:0]
        choice = ImageChoice(x, [UNKNOWN_LABEL] * len(kept), [r.name for r in kept], None, uploads=results)
        if not files:
            choice.infos.append(f"Upload one or more images. {UPLOAD_HELP}")
        if sum(r.ok for r in results) > MAX_IMAGES:
            choice.errors.append(f"Only the first {MAX_IMAGES} readable uploads are shown.")
        return choice

    problems: list[str] = []
    if mode == "index":
        text = st.text_input(
            "Indices", "0-7", key=f"{key}_indices",
            help=f"Indices into the {split} split (0 to {n_total - 1}): a list like "
                 f"'0, 5, 17' or a range like '0-7'; at most {MAX_IMAGES} images.",
        )
        indices, problems = parse_indices(text, n_total)
    else:
        c1, c2 = st.columns(2)
        n = c1.number_input("How many", 1, MAX_IMAGES, 8, key=f"{key}_n")
        seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key=f"{key}_seed",
                               help="Another seed draws other images; the same seed, the same ones.")
        class_index = None
        if mode == "class":
            class_index = st.selectbox("Class", range(len(ds.classes)), key=f"{key}_class",
                                       format_func=lambda k: ds.classes[k])
        indices = pick_indices(n_total, mode, n=int(n), seed=int(seed), labels=ds.y,
                               class_index=class_index)
    idx = torch.as_tensor(indices, dtype=torch.long)
    paths = ds.extras.get("paths") if split == "folder" else None
    return ImageChoice(
        ds.x[idx], ds.y[idx].tolist(), [f"{Path(paths[i]).name} (#{i})" if paths else f"{split} #{i}" for i in indices],
        indices,
        errors=[f"Indices: {p}." for p in problems],
    )


@dataclass
class MethodChoice:
    """What is differentiated: method, objective, target; ``options`` holds only the
    options of the chosen method (keyword arguments of ``attribute``)."""

    method: str = "gradient"
    objective: str = "logit"
    target_choice: str = "label"
    class_index: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        return dict(method=self.method, objective=self.objective, target_choice=self.target_choice,
                    class_index=self.class_index, **self.options)


def method_picker(class_names: Sequence[str], *, key: str) -> MethodChoice:
    """Widgets for the attribution method (with its options in an expander), the
    objective (logit / loss) and the target (true label / predicted / a chosen class)."""
    method = st.selectbox("Method", list(METHODS), format_func=METHODS.get, key=f"{key}_method")
    options: dict[str, Any] = {}
    if method in ("integrated_gradients", "smoothgrad"):
        with st.expander("Method options"):
            if method == "integrated_gradients":
                options["n_steps"] = int(st.slider(
                    "Integration steps", 4, 200, 50, key=f"{key}_steps",
                    help="Points on the straight path from a black image to the input."))
            else:
                options["nt_samples"] = int(st.slider(
                    "Noisy samples", 2, 100, 25, key=f"{key}_samples"))
                options["stdevs"] = float(st.slider(
                    "Noise level σ (pixel units)", 0.0, 0.5, 0.15, 0.01, key=f"{key}_noise"))
                options["seed"] = int(st.number_input(
                    "Noise seed", 0, 2**31 - 1, 0, key=f"{key}_nseed"))
    objective = st.radio(
        "Differentiate", list(OBJECTIVES), format_func=OBJECTIVES.get, key=f"{key}_objective",
        horizontal=True, help="The logit of the target class, or the cross-entropy loss for it "
                              "(its gradient points the other way: toward making the class less likely).")
    target = st.radio("Target class", list(TARGET_LABELS), format_func=TARGET_LABELS.get,
                      key=f"{key}_target", horizontal=True)
    class_index = None
    if target == "class":
        class_index = int(st.selectbox("Class", range(len(class_names)), key=f"{key}_tclass",
                                       format_func=lambda k: str(class_names[k])))
    return MethodChoice(method, objective, target, class_index, options)


@dataclass
class DisplayChoice:
    """Display steps: channel reduction, percentile clipping (or None), scaling, panel px."""

    channel_reduction: str = "sum"
    clip: tuple[float, float] | None = None
    scaling: str = "per_panel"
    panel_size: int = 190

    def settings(self) -> dict[str, Any]:
        return dict(channel_reduction=self.channel_reduction, clip=self.clip, scaling=self.scaling)


def display_picker(channels: int, *, key: str) -> DisplayChoice:
    """Widgets for scaling, channel reduction (only for multi-channel inputs), clipping
    and panel size."""
    scaling = st.radio(
        "Scaling", list(SCALING_LABELS), format_func=SCALING_LABELS.get, key=f"{key}_scaling",
        horizontal=True,
        help="Per panel: each map divided by its own largest |value| (compare shapes). "
             "Shared per row: the maps of one image share one scale (compare models). "
             "Raw: the values themselves, one colour range for the whole figure.")
    reduction = "sum"
    if channels > 1:
        reduction = st.selectbox("Channels", [m for m in CHANNEL_REDUCTIONS if m != "none"],
                                 format_func=REDUCTION_LABELS.get, key=f"{key}_reduction")
    clip_on = st.toggle("Clip outliers", False, key=f"{key}_clip",
                        help="Clamp each map to its own lower and upper percentiles (e.g. "
                             "0.5 and 99.5), so a few extreme pixels do not wash out the rest.")
    upper = 99.5
    if clip_on:
        upper = st.number_input("Upper percentile (the lower one is 100 minus it)", 50.5, 100.0,
                                99.5, 0.1, key=f"{key}_pct")
    panel = st.slider("Panel size (px)", 100, 280, 190, 10, key=f"{key}_panel")
    clip = (round(100.0 - upper, 6), float(upper)) if clip_on and upper < 100 else None
    return DisplayChoice(reduction, clip, scaling, int(panel))


#: The data file of a figure: format -> (button label, MIME type).
DATA_FORMATS = {"npz": ("Arrays (NPZ)", "application/octet-stream"), "csv": ("Table (CSV)", "text/csv")}


def download_buttons(fig: go.Figure, data: Callable[[], bytes], *, stem: str, key: str, data_help: str,
                     data_format: str = "npz") -> None:
    """One row of download buttons: the figure as PNG, SVG, PDF (when a browser is
    available) and HTML, and its numbers as a data file. Files are made only when a button is
    clicked.

    Args:
        fig: the figure.
        data: makes the data file's bytes.
        stem: file name without extension.
        key: widget-key prefix (unique on the page).
        data_help: what the data file holds (its keys or columns), shown on hover.
        data_format: "npz" (default, NumPy arrays) or "csv" (a table).

    Raises:
        ValueError: an unknown ``data_format``.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {sorted(DATA_FORMATS)}, got {data_format!r}")

    def maker(fmt: str) -> Callable[[], bytes]:
        return lambda: figure_to_bytes(fig, fmt)

    static = static_export_available()
    row = st.container(horizontal=True, gap="small")
    for fmt in (*STATIC_FORMATS, "html"):
        row.download_button(
            fmt.upper(), maker(fmt), file_name=f"{stem}.{fmt}", mime=MIME_TYPES[fmt],
            key=f"{key}_dl_{fmt}", on_click="ignore", icon=":material/download:",
            disabled=fmt in STATIC_FORMATS and not static,
            help=None if static or fmt == "html" else
            "Needs Chrome or Chromium (install one, or set BROWSER_PATH); HTML works without.",
        )
    label, mime = DATA_FORMATS[data_format]
    row.download_button(label, data, file_name=f"{stem}.{data_format}", mime=mime, key=f"{key}_dl_{data_format}",
                        on_click="ignore", icon=":material/download:", help=data_help)
