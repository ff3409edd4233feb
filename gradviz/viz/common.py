"""Helpers shared by the figure modules of :mod:`gradviz.viz`: arrays in, names, image panels.

* :func:`as_array`, :func:`chw`: tensors or array-likes as NumPy arrays, one image as (C, H, W);
* :func:`values_by_model`, :func:`shared_bins`: per-model values (curves checked against their x axis),
  one set of histogram bins for every model;
* :func:`class_name`, :func:`short_model_name`, :func:`prediction_text`: the text of titles;
* :func:`image_trace` (:func:`image_trace_spec`), :func:`image_grid_layout`, :func:`grid_axes`,
  :func:`image_axis`: image panels (square pixels, row 0 on top, no ticks) in a grid or at explicit domains.

The image grids are built as one layout dictionary and one ``go.Figure(data, layout)`` call,
with traces given as dictionaries (:func:`image_trace_spec`), so plotly validates each
property once. Built with ``make_subplots``, ``add_trace(row=, col=)`` and
``update_xaxes`` / ``update_yaxes`` instead, the Gradients page's 8 x 3 grid took 0.39-0.41 s
against 24-27 ms (``bench/bench_figures.py``, quiet machine): most of the server's time in a
page run, with Python's GIL held, so every other session waited too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import plotly.graph_objects as go
import torch

from gradviz.viz.style import FONT, IMAGE_AXIS, WRONG

__all__ = [
    "ArrayLike",
    "as_array",
    "chw",
    "class_name",
    "grid_axes",
    "image_axis",
    "image_grid_layout",
    "image_trace",
    "image_trace_spec",
    "prediction_text",
    "shared_bins",
    "short_model_name",
    "values_by_model",
]

#: What the builders accept as an array: a tensor (any device; detached), an ndarray or a
#: (nested) sequence of numbers.
ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[float]]


def as_array(a, dtype=np.float64) -> np.ndarray:
    """A tensor (detached, on the CPU) or array-like as a NumPy array of ``dtype``
    (default float64)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def chw(a, what: str, *, channels: Optional[Sequence[int]] = None) -> np.ndarray:
    """One image as a float64 (C, H, W) array; a batch of one, (1, C, H, W), is unwrapped.

    Args:
        a: (C, H, W) or (1, C, H, W), a tensor or array-like.
        what: the argument's name, for the error message.
        channels: the allowed C (e.g. ``(1, 3)``), or None (default): any.

    Raises:
        ValueError: another number of dimensions, or a C not in ``channels``.
    """
    a = as_array(a)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or (channels is not None and a.shape[0] not in channels):
        allowed = "" if channels is None else " with C = " + " or ".join(str(c) for c in channels)
        raise ValueError(f"{what} must be one image (C, H, W){allowed}; got shape {a.shape}")
    return a


def values_by_model(values: Mapping[str, ArrayLike], arg: str, n_points: Optional[int] = None,
                    x_name: str = "points") -> dict[str, np.ndarray]:
    """model name -> its values as a 1-D float64 array, in the mapping's order; with
    ``n_points``, each checked against the x axis (a curve).

    Args:
        values: model name -> (P,) values (any shape without ``n_points``: flattened).
        arg: the argument's name, for the messages (e.g. ``"inductive"``).
        n_points: P, the length of the x axis; None (default): no check.
        x_name: what the x axis holds, for the message (e.g. ``"radii"``).

    Raises:
        ValueError: no model; with ``n_points``, a curve of another length.
    """
    if not values:
        raise ValueError(f"{arg} must hold at least one model's values")
    out = {name: as_array(v).reshape(-1) for name, v in values.items()}
    for name, v in out.items():
        if n_points is not None and v.size != n_points:
            raise ValueError(f"the curve of {name!r} in {arg} has {v.size} points for {n_points} {x_name}")
    return out


def shared_bins(values: Iterable[np.ndarray], bins: int, *, pad: float, empty: tuple[float, float] = (0.0, 1.0)
                ) -> dict[str, float]:
    """One set of ``bins`` equal histogram bins over the finite entries of all ``values``, for
    ``go.Histogram(xbins=...)``: every model's histogram then shares them.

    Args:
        values: 1-D arrays (NaN and inf are left out of the range).
        bins: number of bins (>= 1).
        pad: a range narrower than 1e-6 is widened by ``pad`` on each side.
        empty: the range when there is no finite entry. Default (0, 1).

    Returns:
        ``{"start", "end", "size"}`` (``end`` a hair beyond the largest value, so it falls in
        the last bin).

    Raises:
        ValueError: ``bins`` < 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    finite = np.concatenate([v[np.isfinite(v)] for v in values] or [np.zeros(0)])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else empty
    if hi - lo < 1e-6:
        lo, hi = lo - pad, hi + pad
    return dict(start=lo, end=hi + 1e-9, size=(hi - lo) / bins)


def short_model_name(name: str) -> str:
    """``"mnist-5k/pgd-linf"`` -> ``"pgd-linf"``; a path -> its file stem; else unchanged."""
    if name.endswith(".pt"):
        return Path(name).stem
    return name.rsplit("/", 1)[-1]


def class_name(classes: Sequence[str] | None, k: int) -> str:
    """``classes[k]`` as text, or ``str(k)`` without names or for k out of range."""
    if classes is not None and 0 <= k < len(classes):
        return str(classes[k])
    return str(k)


def prediction_text(pred: Optional[tuple], class_names: Optional[Sequence[str]], label: Optional[int]) -> str:
    """``(class, probability in [0, 1])`` -> ``"3 (97.2 %)"``, in :data:`~gradviz.viz.style.WRONG`
    red when it differs from a known label (``label`` >= 0); ``""`` for None."""
    if pred is None:
        return ""
    k, conf = int(pred[0]), float(pred[1])
    text = f"{class_name(class_names, k)} ({100 * conf:.1f} %)"
    if label is not None and label >= 0 and k != label:
        text = f"<span style='color:{WRONG}'>{text}</span>"
    return text


def image_trace_spec(img: np.ndarray, name: str, *, hover: Optional[str] = None, xaxis: Optional[str] = None,
                     yaxis: Optional[str] = None) -> dict:
    """:func:`image_trace` as a plain trace dictionary (``{"type": "heatmap", ...}``), for
    builders that make the whole figure at once: ``go.Figure(data=[specs...])`` validates it
    once, where a trace object is validated when made and again when the figure copies it."""
    hover = name if hover is None else hover
    axes = {k: v for k, v in (("xaxis", xaxis), ("yaxis", yaxis)) if v is not None}
    if img.shape[0] == 3:
        rgb = np.clip(np.round(img.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
        return dict(type="image", z=rgb, name=name,
                    hovertemplate=f"x %{{x}}, y %{{y}}<br>RGB %{{z}}<extra>{hover}</extra>", **axes)
    z = img[0] if img.shape[0] == 1 else img.mean(axis=0)
    return dict(type="heatmap", z=z, colorscale="gray", zmin=0.0, zmax=1.0, showscale=False, name=name,
                hovertemplate=f"x %{{x}}, y %{{y}}<br>pixel %{{z:.3f}}<extra>{hover}</extra>", **axes)


def image_trace(img: np.ndarray, name: str, *, hover: Optional[str] = None, xaxis: Optional[str] = None,
                yaxis: Optional[str] = None) -> go.BaseTraceType:
    """A (C, H, W) image in [0, 1] as a trace: an RGB ``go.Image`` (C = 3, rounded to 0..255)
    or else a grayscale ``go.Heatmap`` of the channel mean on [0, 1] without a colour bar.

    Args:
        img: (C, H, W) array; values outside [0, 1] saturate (RGB: clipped).
        name: the trace's name.
        hover: the hover box's label (default ``name``).
        xaxis, yaxis: the axes (``"x2"``, ...) when placed by domain; None (default): plotly's,
            or ``make_subplots``' when added with ``row`` and ``col``.
    """
    spec = image_trace_spec(img, name, hover=hover, xaxis=xaxis, yaxis=yaxis)
    return (go.Image if spec["type"] == "image" else go.Heatmap)(spec)


def grid_axes(k: int) -> dict[str, str]:
    """The trace keywords ``{"xaxis": "x<k>", "yaxis": "y<k>"}`` of panel ``k`` (1-based;
    panel 1 is plotly's ``"x"`` / ``"y"``), for :func:`image_trace` or a trace's constructor."""
    s = "" if k == 1 else str(k)
    return {"xaxis": f"x{s}", "yaxis": f"y{s}"}


def image_grid_layout(rows: int, cols: int, *, h_spacing: float = 0.0, v_spacing: float = 0.0,
                      titles: Sequence[str] = (), title_size: int = 12) -> dict[str, dict]:
    """Layout entries of a ``rows`` x ``cols`` grid of image panels, placed as plotly's
    ``make_subplots`` places them: panel k (1-based, row by row from the top left) on axes
    ``x<k>`` / ``y<k>`` (:func:`grid_axes`) with equal domains separated by the spacings, each
    an image axis (:data:`~gradviz.viz.style.IMAGE_AXIS`, row 0 on top, square pixels).

    Args:
        rows, cols: grid size (>= 1 each).
        h_spacing, v_spacing: gap between columns / rows as a fraction of the plot area's width /
            height, in [0, 1) (total gaps below 1). Default 0.
        titles: panel titles in panel order (fewer is fine; ``""`` draws none), each an
            annotation above its panel, centred, in ``title_size`` px (default 12).

    Returns:
        ``{"xaxis": ..., "yaxis": ..., "xaxis2": ..., ..., "annotations": [...]}`` for
        ``go.Figure(data, layout={**entries, ...})``.

    Raises:
        ValueError: ``rows`` or ``cols`` < 1, or spacings that leave no room for the panels.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"an image grid needs at least one row and one column, got {rows} x {cols}")
    width = (1.0 - h_spacing * (cols - 1)) / cols
    height = (1.0 - v_spacing * (rows - 1)) / rows
    if not (width > 0 and height > 0 and h_spacing >= 0 and v_spacing >= 0):
        raise ValueError(f"spacings {h_spacing:g} x {v_spacing:g} leave no room for {rows} x {cols} panels")
    layout: dict = {}
    annotations = []
    for r in range(rows):
        top = 1.0 - r * (height + v_spacing)
        for c in range(cols):
            k = r * cols + c + 1
            left = c * (width + h_spacing)
            layout.update(_image_axes(k, (left, left + width), (top - height, top)))
            title = titles[k - 1] if k <= len(titles) else ""
            if title:
                annotations.append(dict(text=title, x=left + width / 2, y=top, xref="paper", yref="paper",
                                        xanchor="center", yanchor="bottom", showarrow=False,
                                        font=dict(size=title_size, family=FONT)))
    layout["annotations"] = annotations
    return layout


def _image_axes(k: int, x_dom: Sequence[float], y_dom: Sequence[float]) -> dict[str, dict]:
    """``{"xaxis<k>": ..., "yaxis<k>": ...}``: axis pair ``k`` as an image panel at the given
    paper domains (clipped into [0, 1])."""
    s = "" if k == 1 else str(k)
    return {
        f"xaxis{s}": dict(domain=[min(max(float(v), 0.0), 1.0) for v in x_dom], anchor=f"y{s}", **IMAGE_AXIS),
        f"yaxis{s}": dict(domain=[min(max(float(v), 0.0), 1.0) for v in y_dom], anchor=f"x{s}",
                          autorange="reversed", scaleanchor=f"x{s}", **IMAGE_AXIS),
    }


def image_axis(fig: go.Figure, k: int, x_dom: Sequence[float], y_dom: Sequence[float]) -> None:
    """Make axis pair ``k`` (1-based) an image panel at the given paper domains (each
    clipped into [0, 1]): :data:`~gradviz.viz.style.IMAGE_AXIS`, row 0 on top, square pixels."""
    fig.update_layout(_image_axes(k, x_dom, y_dom))
