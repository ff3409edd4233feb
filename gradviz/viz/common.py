"""Helpers shared by the figure modules of :mod:`gradviz.viz`: arrays in, names, image panels.

* :func:`as_array`, :func:`chw`: tensors or array-likes as NumPy arrays, one image as (C, H, W);
* :func:`values_by_model`, :func:`shared_bins`: per-model values (curves checked against their x axis),
  one set of histogram bins for every model;
* :func:`class_name`, :func:`short_model_name`, :func:`prediction_text`: the text of titles;
* :func:`image_trace`, :func:`subplot_image_axes`, :func:`image_axis`: image panels (square
  pixels, row 0 on top, no ticks) in a ``make_subplots`` grid or at explicit domains.
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
    "image_axis",
    "image_trace",
    "prediction_text",
    "shared_bins",
    "short_model_name",
    "subplot_image_axes",
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
    hover = name if hover is None else hover
    axes = {k: v for k, v in (("xaxis", xaxis), ("yaxis", yaxis)) if v is not None}
    if img.shape[0] == 3:
        rgb = np.clip(np.round(img.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
        return go.Image(z=rgb, name=name, hovertemplate=f"x %{{x}}, y %{{y}}<br>RGB %{{z}}<extra>{hover}</extra>",
                        **axes)
    z = img[0] if img.shape[0] == 1 else img.mean(axis=0)
    return go.Heatmap(z=z, colorscale="gray", zmin=0.0, zmax=1.0, showscale=False, name=name,
                      hovertemplate=f"x %{{x}}, y %{{y}}<br>pixel %{{z:.3f}}<extra>{hover}</extra>", **axes)


def subplot_image_axes(fig: go.Figure, n_panels: int, *, title_size: int = 12) -> None:
    """Make the first ``n_panels`` axis pairs of a ``make_subplots`` figure image panels
    (:data:`~gradviz.viz.style.IMAGE_AXIS`, row 0 on top, square pixels) and set the subplot
    titles' font (``title_size`` px, default 12)."""
    fig.update_xaxes(**IMAGE_AXIS)
    fig.update_yaxes(autorange="reversed", **IMAGE_AXIS)
    for k in range(1, n_panels + 1):
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    for ann in fig.layout.annotations:
        ann.font = dict(size=title_size, family=FONT)


def image_axis(fig: go.Figure, k: int, x_dom: Sequence[float], y_dom: Sequence[float]) -> None:
    """Make axis pair ``k`` (1-based) an image panel at the given paper domains (each
    clipped into [0, 1]): :data:`~gradviz.viz.style.IMAGE_AXIS`, row 0 on top, square pixels."""
    s = "" if k == 1 else str(k)
    fig.layout[f"xaxis{s}"] = dict(domain=[min(max(float(v), 0.0), 1.0) for v in x_dom], anchor=f"y{s}",
                                   **IMAGE_AXIS)
    fig.layout[f"yaxis{s}"] = dict(domain=[min(max(float(v), 0.0), 1.0) for v in y_dom], anchor=f"x{s}",
                                   autorange="reversed", scaleanchor=f"x{s}", **IMAGE_AXIS)
