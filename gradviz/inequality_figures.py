"""Plotly figure builders of the Inequality page (arrays in, ``go.Figure`` out) and the
numbers behind them (CSV / NPZ bytes).

docs/methods.md section 3 (Duan et al., ICLR 2023; Chen, Dong and Xie, IGD):

* :func:`image_inequality_figure`: one image, each model's |attribution| map titled with
  its Gini, and beside them the models' Lorenz curves with the equality diagonal;
* :func:`lorenz_figure`: Lorenz curves (e.g. the mean curve over a test set) per model;
* :func:`gini_histogram_figure`: per-image Gini histograms, overlaid per model, global and
  regional side by side, with each model's mean;
* :func:`noise_error_figure`: error rate against k for inductive noise (solid) and the
  random-feature baseline (dashed);
* :func:`occlusion_error_figure`: inductive-occlusion error rate against the radius;
* :func:`perturbed_examples_figure`: example perturbed images, one row per model;
* :func:`image_to_npz`, :func:`gini_to_csv`, :func:`noise_to_csv`,
  :func:`occlusion_to_csv`, :func:`examples_to_npz`: the numbers.

Every figure colours a model the same way (:func:`model_colours`: by its position in the
list of compared models). Figures export with :func:`gradviz.figures.figure_to_bytes`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Optional, Union

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from gradviz.figures import PALETTE, model_colours, resolve_colours
from gradviz.figures import as_array as _np, class_name as _cls, short_model_name as _short
from gradviz.inequality import gini, lorenz_curve, regional_gini

__all__ = [
    "PALETTE",
    "examples_to_npz",
    "gini_histogram_figure",
    "gini_to_csv",
    "image_inequality_figure",
    "image_to_npz",
    "lorenz_figure",
    "model_colours",
    "noise_error_figure",
    "noise_to_csv",
    "occlusion_error_figure",
    "occlusion_to_csv",
    "perturbed_examples_figure",
]

#: Sequential colour scale of |attribution| maps (black 0, bright large): plotly's Inferno
#: with its first stop "#000004" made "#000000" -- Streamlit's frontend treats the colours
#: "#000001".."#00000f" as placeholders of its own theme and replaces them, even with
#: ``theme=None`` (the maps' background turned lavender).
MAGNITUDE_COLORSCALE: tuple[str, ...] = ("#000000", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446",
                                         "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4")
_FONT = "Inter, Helvetica, Arial, sans-serif"
_WRONG = "#b2182b"

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[float]]



def _chw(a, what: str) -> np.ndarray:
    a = _np(a)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"{what} must be one image (C, H, W); got shape {a.shape}")
    return a


def _image_trace(img: np.ndarray, name: str, xaxis: str = "x", yaxis: str = "y") -> go.BaseTraceType:
    """A (C, H, W) image in [0, 1]: grayscale heatmap (C = 1) or RGB image (C = 3)."""
    if img.shape[0] == 3:
        rgb = np.clip(np.round(img.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
        return go.Image(z=rgb, name=name, xaxis=xaxis, yaxis=yaxis,
                        hovertemplate=f"x %{{x}}, y %{{y}}<br>RGB %{{z}}<extra>{name}</extra>")
    return go.Heatmap(z=img[0], colorscale="gray", zmin=0.0, zmax=1.0, showscale=False, name=name,
                      xaxis=xaxis, yaxis=yaxis,
                      hovertemplate=f"x %{{x}}, y %{{y}}<br>pixel %{{z:.3f}}<extra>{name}</extra>")


def _image_axis(fig: go.Figure, k: int, x_dom: tuple[float, float], y_dom: tuple[float, float]) -> None:
    """Configure axis pair k (1-based) as a square image panel at the given domains."""
    s = "" if k == 1 else str(k)
    x_dom = tuple(min(max(float(v), 0.0), 1.0) for v in x_dom)
    y_dom = tuple(min(max(float(v), 0.0), 1.0) for v in y_dom)
    common = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=True,
                  linecolor="#bbbbbb", mirror=True, constrain="domain")
    fig.layout[f"xaxis{s}"] = dict(domain=list(x_dom), anchor=f"y{s}", **common)
    fig.layout[f"yaxis{s}"] = dict(domain=list(y_dom), anchor=f"x{s}", autorange="reversed",
                                   scaleanchor=f"x{s}", **common)


def _pred_text(pred, class_names, label: Optional[int]) -> str:
    """``"3 (97.2 %)"``, red when it differs from a known label; '' for None."""
    if pred is None:
        return ""
    k, conf = int(pred[0]), float(pred[1])
    text = f"{_cls(class_names, k)} ({100 * conf:.1f} %)"
    if label is not None and label >= 0 and k != label:
        text = f"<span style='color:{_WRONG}'>{text}</span>"
    return text


def _lorenz_traces(fractions: np.ndarray, shares: Mapping[str, np.ndarray], colours: Mapping[str, str],
                   ginis: Mapping[str, float], xaxis: str, yaxis: str, *, what: str) -> list[go.Scatter]:
    traces = [go.Scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="equality (Gini 0)", xaxis=xaxis, yaxis=yaxis,
        line=dict(color="#888888", dash="dot", width=1.5), hoverinfo="skip",
    )]
    for name, s in shares.items():
        g = ginis.get(name)
        label = _short(name) + (f" · Gini {g:.3f}" if g is not None and math.isfinite(g) else "")
        traces.append(go.Scatter(
            x=100 * fractions, y=100 * s, mode="lines", name=label, xaxis=xaxis, yaxis=yaxis,
            line=dict(color=colours[name], width=2.5),
            hovertemplate=(f"the {what} %{{x:.1f}} % of the features<br>hold %{{y:.2f}} % of "
                           f"|attribution|<extra>{_short(name)}</extra>"),
        ))
    return traces


def _lorenz_axes(fig: go.Figure, s: str, x_dom, y_dom, anchor_x: str, anchor_y: str) -> None:
    fig.layout[f"xaxis{s}"] = dict(domain=list(x_dom), anchor=anchor_y, range=[0, 100],
                                   title=dict(text="features, smallest first (%)"), ticksuffix="",
                                   gridcolor="#eeeeee", zeroline=False, showline=True, linecolor="#888888")
    fig.layout[f"yaxis{s}"] = dict(domain=list(y_dom), anchor=anchor_x, range=[0, 100],
                                   title=dict(text="share of |attribution| (%)"),
                                   gridcolor="#eeeeee", zeroline=False, showline=True, linecolor="#888888")


def image_inequality_figure(
    x: ArrayLike,
    attributions: Mapping[str, ArrayLike],
    *,
    block: Optional[int] = None,
    label: Optional[int] = None,
    predictions: Optional[Mapping[str, tuple[int, float]]] = None,
    class_names: Optional[Sequence[str]] = None,
    colours: Optional[Mapping[str, str]] = None,
    panel_size: int = 150,
    title: Optional[str] = None,
) -> go.Figure:
    """One image: the input, each model's |attribution| map, and the models' Lorenz curves.

    Map panels show |A| summed over channels (a display step), each divided by its own
    largest value (:data:`MAGNITUDE_COLORSCALE`, black 0 to bright 1), titled with the
    model, its prediction and its Gini (:func:`gradviz.inequality.gini` of |A| over all
    C x H x W entries; with ``block``, also the regional Gini). Hover gives the pixel, |A|
    and its share of the map's total. The Lorenz panel (right) has the equality diagonal and
    one curve per model (:func:`gradviz.inequality.lorenz_curve`, all n + 1 points): the
    further a curve bows below the diagonal, the fewer features hold the attribution.

    Args:
        x: the image (C, H, W) or (1, C, H, W) in [0, 1].
        attributions: model name -> signed attribution of the same shape.
        block: regional-Gini block side (must divide H and W), or None.
        label: the true label (titles; -1 / None: unknown).
        predictions: model name -> (class, probability) for the titles.
        class_names: class index -> name.
        colours: model name -> colour (default :func:`model_colours` of the keys).
        panel_size: side of each map panel in pixels (>= 60; default 150; the Lorenz panel
            is 1.7 x as large).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: 1 + M heatmaps (input first), then the diagonal and M Lorenz curves.

    Raises:
        ValueError: no model; an attribution whose shape differs from ``x``; ``block`` not
            dividing the image; ``panel_size`` < 60.
    """
    if not attributions:
        raise ValueError("attributions must hold at least one model's map")
    if panel_size < 60:
        raise ValueError(f"panel_size must be >= 60 pixels; got {panel_size}")
    img = _chw(x, "x")
    names = list(attributions)
    colours = resolve_colours(colours, names)
    maps, ginis, regional = {}, {}, {}
    fractions, shares = None, {}
    for n in names:
        a = _chw(attributions[n], f"attribution of {n!r}")
        if a.shape != img.shape:
            raise ValueError(f"the attribution of {n!r} has shape {a.shape}; the image has {img.shape}")
        t = torch.from_numpy(a)[None]
        ginis[n] = float(gini(t)[0])
        if block is not None:
            regional[n] = float(regional_gini(t, block)[0])
        f, s = lorenz_curve(t)
        fractions, shares[n] = f.numpy(), s[0].numpy()
        maps[n] = np.abs(a).sum(axis=0)
    m = len(names)

    # Geometry in pixels: 1 + M square panels, a colour bar, then the Lorenz square.
    p, gap, cb, lz = panel_size, 20, 80, int(1.7 * panel_size)
    lz_x0 = (m + 1) * (p + gap) - gap + cb + 75
    plot_w = lz_x0 + lz
    plot_h = lz
    if title is None:
        title = "Attribution maps and Lorenz curves"
    top = 30 + (28 if title else 0)
    margin = dict(l=16, r=16, t=top, b=58)
    fig = go.Figure()
    # the maps and their (up to 4-line) titles, centred on the Lorenz panel's height
    bottom = max(0.0, (plot_h - p - 64) / 2)
    y_map = (bottom / plot_h, (bottom + p) / plot_h)
    titles = []
    for i in range(m + 1):
        x0 = i * (p + gap) / plot_w
        _image_axis(fig, i + 1, (x0, x0 + p / plot_w), y_map)
    fig.add_trace(_image_trace(img, "input", "x", "y"))
    head = "input" + (f" · label {_cls(class_names, int(label))}" if label is not None and label >= 0 else "")
    titles.append(head)
    for i, n in enumerate(names):
        k = str(i + 2)
        mp = maps[n]
        peak = float(mp.max())
        total = float(mp.sum())
        shown = mp / peak if peak > 0 else mp
        share = 100 * mp / total if total > 0 else np.zeros_like(mp)
        fig.add_trace(go.Heatmap(
            z=shown, customdata=np.stack([mp, share], axis=-1), coloraxis="coloraxis", name=_short(n),
            xaxis=f"x{k}", yaxis=f"y{k}",
            hovertemplate=("x %{x}, y %{y}<br>|A| %{customdata[0]:.4g}<br>share of the map "
                           f"%{{customdata[1]:.2f}} %<extra>{_short(n)}</extra>"),
        ))
        pred = _pred_text((predictions or {}).get(n), class_names, label)
        g = f"Gini {ginis[n]:.3f}" + (f"<br>regional {regional[n]:.3f}" if n in regional else "")
        titles.append(f"<b>{_short(n)}</b>" + (f"<br>→ {pred}" if pred else "") + f"<br>{g}")
    for i, t in enumerate(titles):
        x_mid = (i * (p + gap) + p / 2) / plot_w
        fig.add_annotation(text=t, x=x_mid, xref="paper", y=y_map[1], yref="paper", yanchor="bottom",
                           showarrow=False, font=dict(size=11, family=_FONT), yshift=4, align="center")
    lz_s = str(m + 2)
    _lorenz_axes(fig, lz_s, (lz_x0 / plot_w, 1.0), (0.0, 1.0), f"x{lz_s}", f"y{lz_s}")
    for tr in _lorenz_traces(fractions, shares, colours, ginis, f"x{lz_s}", f"y{lz_s}", what="smallest"):
        fig.add_trace(tr)
    maps_end = ((m + 1) * (p + gap) - gap) / plot_w
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12),
        width=plot_w + margin["l"] + margin["r"], height=plot_h + margin["t"] + margin["b"],
        margin=margin,
        coloraxis=dict(colorscale=list(MAGNITUDE_COLORSCALE), cmin=0.0, cmax=1.0,
                       colorbar=dict(title=dict(text="|A| ÷ map max", side="right"), x=maps_end + 8 / plot_w,
                                     xanchor="left", y=y_map[0], yanchor="bottom", len=p / plot_h,
                                     thickness=14, outlinewidth=0)),
        legend=dict(x=lz_x0 / plot_w + 0.01, xanchor="left", y=0.99, yanchor="top",
                    bgcolor="rgba(255,255,255,0.85)", font=dict(size=11)),
        title=dict(text=title, x=0, xref="paper", y=1, yref="container", yanchor="top", pad=dict(t=10),
                   font=dict(size=14)) if title else None,
    )
    return fig


def lorenz_figure(
    fractions: ArrayLike,
    shares: Mapping[str, ArrayLike],
    *,
    ginis: Optional[Mapping[str, float]] = None,
    colours: Optional[Mapping[str, str]] = None,
    title: Optional[str] = None,
    size: int = 380,
) -> go.Figure:
    """Lorenz curves, one per model, with the equality diagonal.

    Args:
        fractions: (P,) cumulative share of features in [0, 1] (from
            :func:`gradviz.inequality.lorenz_curve`).
        shares: model name -> (P,) cumulative share of |attribution| in [0, 1] (e.g. the
            mean of the per-image curves over a test set).
        ginis: model name -> a Gini shown in the legend (e.g. the mean Gini).
        colours: model name -> colour (default :func:`model_colours`).
        title: figure title (None: a default; "": none).
        size: height in pixels (the plot area is square).

    Returns:
        ``go.Figure``: the diagonal, then one line per model.

    Raises:
        ValueError: no model; a curve whose length differs from ``fractions``.
    """
    f = _np(fractions).reshape(-1)
    if not shares:
        raise ValueError("shares must hold at least one model's curve")
    names = list(shares)
    cols = resolve_colours(colours, names)
    curves = {}
    for n in names:
        s = _np(shares[n]).reshape(-1)
        if s.shape != f.shape:
            raise ValueError(f"the curve of {n!r} has {s.size} points; fractions has {f.size}")
        curves[n] = s
    fig = go.Figure(_lorenz_traces(f, curves, cols, dict(ginis or {}), "x", "y", what="smallest"))
    title = "Lorenz curves" if title is None else title
    top = 50 if title else 20
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12), height=size,
        width=size - top - 50 + 70 + 20, margin=dict(l=70, r=20, t=top, b=50),
        title=dict(text=title, font=dict(size=14)) if title else None,
        legend=dict(x=0.02, xanchor="left", y=0.98, yanchor="top", bgcolor="rgba(255,255,255,0.85)"),
    )
    _lorenz_axes(fig, "", (0, 1), (0, 1), "x", "y")
    fig.layout.yaxis.scaleanchor = "x"
    return fig


def gini_histogram_figure(
    global_gini: Mapping[str, ArrayLike],
    regional: Optional[Mapping[str, ArrayLike]] = None,
    *,
    block: Optional[int] = None,
    colours: Optional[Mapping[str, str]] = None,
    bins: int = 30,
    title: Optional[str] = None,
) -> go.Figure:
    """Histograms of the per-image Gini coefficients, overlaid per model.

    Left: global Gini; right (when ``regional`` is given): regional Gini over ``block`` x
    ``block`` squares. Every model's histogram shares the panel's bins; y is the percentage
    of that model's images; a dashed vertical line marks each model's mean. Hover gives the
    bin, the share and the count.

    Args:
        global_gini: model name -> (N,) Gini per image in [0, 1].
        regional: model name -> (N,) regional Gini per image, or None.
        block: the regional block side (axis title only).
        colours: model name -> colour (default :func:`model_colours`).
        bins: number of bins over the panel's range of values (>= 1).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: per panel, one histogram per model then one mean line per model.

    Raises:
        ValueError: no model; ``bins`` < 1.
    """
    if not global_gini:
        raise ValueError("global_gini must hold at least one model's values")
    if bins < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    names = list(global_gini)
    cols = resolve_colours(colours, names)
    panels = [("global", global_gini)] + ([("regional", regional)] if regional else [])
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08)
    for c, (kind, values) in enumerate(panels, start=1):
        arrays = {n: _np(values[n]).reshape(-1) for n in names}
        finite = np.concatenate([v[np.isfinite(v)] for v in arrays.values()] or [np.zeros(0)])
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.005, hi + 0.005
        size = (hi - lo) / bins
        for n in names:
            v = arrays[n]
            fig.add_trace(go.Histogram(
                x=v, name=_short(n), legendgroup=n, showlegend=c == 1, histnorm="percent",
                xbins=dict(start=lo, end=hi + 1e-9, size=size), marker=dict(color=cols[n], line=dict(width=0)),
                opacity=0.55, customdata=np.full(v.shape, v.size),
                hovertemplate=f"{kind} Gini %{{x}}<br>%{{y:.1f}} % of the images<extra>{_short(n)}</extra>",
            ), row=1, col=c)
        for n in names:
            v = arrays[n]
            mean = float(np.nanmean(v)) if v.size else float("nan")
            if not math.isfinite(mean):
                continue
            fig.add_trace(go.Scatter(
                x=[mean, mean], y=[0, 1], mode="lines", name=f"mean {_short(n)}",
                legendgroup=n, showlegend=False, line=dict(color=cols[n], dash="dash", width=2),
                hovertemplate=f"mean {kind} Gini {mean:.3f}<extra>{_short(n)}</extra>",
            ), row=1, col=c)
        what = "global Gini (all C·H·W entries)" if kind == "global" else (
            f"regional Gini ({block} × {block} blocks)" if block else "regional Gini")
        fig.update_xaxes(title_text=what, row=1, col=c)
        fig.update_yaxes(title_text="images (%)" if c == 1 else None, row=1, col=c)
    # mean lines span the panel height: draw them on a second y axis per panel, 0..1
    for c in range(1, len(panels) + 1):
        s = "" if c == 1 else str(c)
        for tr in fig.data:
            if tr.type == "scatter" and tr.xaxis == f"x{s}":
                tr.yaxis = f"y{len(panels) + c}"
        fig.layout[f"yaxis{len(panels) + c}"] = dict(overlaying=f"y{s}", range=[0, 1], visible=False,
                                                     anchor=f"x{s}")
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12), barmode="overlay", height=360,
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=50),
        title=dict(text=title if title is not None else "Gini per test image", font=dict(size=14))
        if title != "" else None,
        legend=dict(title="model (dashed: mean)"), bargap=0.02,
    )
    return fig


def noise_error_figure(
    k_percent: ArrayLike,
    inductive: Mapping[str, ArrayLike],
    random: Optional[Mapping[str, ArrayLike]] = None,
    *,
    k_counts: Optional[Sequence[int]] = None,
    colours: Optional[Mapping[str, str]] = None,
    n_images: Optional[int] = None,
    title: Optional[str] = None,
) -> go.Figure:
    """Error rate against k under inductive noise (solid) and random noise (dashed).

    Args:
        k_percent: (K,) k as a percentage of the C*H*W features.
        inductive: model name -> (K,) error rates in [0, 1] with the top-k features noised.
        random: model name -> (K,) error rates with k random features noised (the baseline).
        k_counts: (K,) k as counts (hover only).
        colours: model name -> colour (default :func:`model_colours`).
        n_images: how many images the rates are over (axis title only).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: per model, its inductive line then (if given) its random line.

    Raises:
        ValueError: no model; a curve whose length differs from ``k_percent``.
    """
    kp = _np(k_percent).reshape(-1)
    if not inductive:
        raise ValueError("inductive must hold at least one model's error rates")
    names = list(inductive)
    cols = resolve_colours(colours, names)
    counts = list(k_counts) if k_counts is not None else [None] * kp.size
    custom = np.array([c if c is not None else -1 for c in counts])
    fig = go.Figure()
    for n in names:
        for kind, curves, dash in (("inductive", inductive, "solid"), ("random", random, "dash")):
            if curves is None:
                continue
            e = _np(curves[n]).reshape(-1)
            if e.shape != kp.shape:
                raise ValueError(f"the {kind} curve of {n!r} has {e.size} points for {kp.size} values of k")
            fig.add_trace(go.Scatter(
                x=kp, y=100 * e, customdata=custom, mode="lines+markers", name=f"{_short(n)} · {kind}",
                legendgroup=n, line=dict(color=cols[n], dash=dash, width=2.5 if kind == "inductive" else 1.8),
                marker=dict(symbol="circle" if kind == "inductive" else "circle-open", size=7),
                hovertemplate=(f"{kind} noise<br>k %{{x:.3g}} % (%{{customdata}} features)<br>error "
                               f"%{{y:.1f}} %<extra>{_short(n)}</extra>"),
            ))
    over = f" ({n_images} images)" if n_images is not None else ""
    rows = math.ceil(len(fig.data) / 2)  # legend below the plot, two entries per line
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12), height=360 + 22 * rows,
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=80 + 22 * rows),
        title=dict(text=title if title is not None else "Error under inductive noise", font=dict(size=14))
        if title != "" else None,
        xaxis_title="k: noised features (% of C·H·W)", yaxis_title=f"error rate (%){over}",
        yaxis=dict(rangemode="tozero"), xaxis=dict(rangemode="tozero"),
        legend=dict(title=dict(text="solid: top-k (inductive)<br>dashed: k random", side="left"),
                    orientation="h", x=0, xanchor="left", y=-0.2 - 0.02 * rows, yanchor="top",
                    entrywidth=150, entrywidthmode="pixels", font=dict(size=11)),
    )
    return fig


def occlusion_error_figure(
    radii: Sequence[int],
    errors: Mapping[str, ArrayLike],
    *,
    colours: Optional[Mapping[str, str]] = None,
    n_pixels: Optional[int] = None,
    colour: Optional[float] = None,
    n_images: Optional[int] = None,
    title: Optional[str] = None,
) -> go.Figure:
    """Inductive-occlusion error rate against the largest radius tried.

    Args:
        radii: (R,) radii r in pixels, ascending.
        errors: model name -> (R,) fraction of images broken at some setting with radius
            <= r (cumulative, in [0, 1]).
        colours: model name -> colour (default :func:`model_colours`).
        n_pixels: the largest number of occluded top pixels (title only).
        colour: the occlusion value (title only).
        n_images: how many images the rates are over (axis title only).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: one line per model.

    Raises:
        ValueError: no model; a curve whose length differs from ``radii``.
    """
    r = _np(radii).reshape(-1)
    if not errors:
        raise ValueError("errors must hold at least one model's curve")
    names = list(errors)
    cols = resolve_colours(colours, names)
    fig = go.Figure()
    for n in names:
        e = _np(errors[n]).reshape(-1)
        if e.shape != r.shape:
            raise ValueError(f"the curve of {n!r} has {e.size} points for {r.size} radii")
        fig.add_trace(go.Scatter(
            x=r, y=100 * e, mode="lines+markers", name=_short(n), line=dict(color=cols[n], width=2.5),
            hovertemplate=f"radius ≤ %{{x}} px<br>error %{{y:.1f}} %<extra>{_short(n)}</extra>",
        ))
    if title is None:
        title = "Error under inductive occlusion"
        extra = []
        if n_pixels is not None:
            extra.append(f"1–{n_pixels} top pixels")
        if colour is not None:
            extra.append(f"colour {colour:g}")
        if extra:
            title += " (" + ", ".join(extra) + ")"
    over = f" ({n_images} images)" if n_images is not None else ""
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12), height=380,
        margin=dict(l=60, r=20, t=50 if title else 20, b=50),
        title=dict(text=title, font=dict(size=14)) if title else None,
        xaxis=dict(title="largest radius r (px): squares of side 2r", dtick=1 if r.size <= 20 else None),
        yaxis=dict(title=f"error rate (%){over}", rangemode="tozero"), legend=dict(title="model"),
    )
    return fig


def perturbed_examples_figure(
    x: ArrayLike,
    images: Mapping[str, Mapping[str, ArrayLike]],
    *,
    predictions: Optional[Mapping[str, Mapping[str, tuple[int, float]]]] = None,
    notes: Optional[Mapping[str, Mapping[str, str]]] = None,
    label: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    colours: Optional[Mapping[str, str]] = None,
    panel_size: int = 130,
    title: Optional[str] = None,
) -> go.Figure:
    """Example perturbed images: one row per model, the clean image then each variant.

    Args:
        x: the clean image (C, H, W) in [0, 1].
        images: model name -> {variant title -> perturbed image (C, H, W)}; every model
            has the same variants in the same order (e.g. "inductive noise k 2 %",
            "random noise k 2 %", "occluded n 3, r 2").
        predictions: model name -> {"clean" or a variant title -> (class, probability)}.
        notes: model name -> {variant title -> a short note on its own line under that
            panel's title, e.g. "k 2 %" or the occlusion setting "n 3, r 2"}.
        label: the true label (titles; wrong predictions in red).
        class_names: class index -> name.
        colours: model name -> colour of the row label (default :func:`model_colours`).
        panel_size: side of each panel in pixels (>= 60).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure`` with M * (1 + V) image traces, row by row.

    Raises:
        ValueError: no model; models with different variants; ``panel_size`` < 60.
    """
    if not images:
        raise ValueError("images must hold at least one model's perturbed images")
    if panel_size < 60:
        raise ValueError(f"panel_size must be >= 60 pixels; got {panel_size}")
    names = list(images)
    variants = list(images[names[0]])
    for n in names:
        if list(images[n]) != variants:
            raise ValueError(f"model {n!r} has variants {list(images[n])}; expected {variants}")
    cols = resolve_colours(colours, names)
    img = _chw(x, "x")
    rows, ncol = len(names), 1 + len(variants)
    gap_x, gap_y, left = 16, 56, 80
    title = ("Perturbed images and each model's prediction" if title is None else title)
    top = 52 + (30 if title else 0)
    plot_w = ncol * panel_size + (ncol - 1) * gap_x
    plot_h = rows * panel_size + (rows - 1) * gap_y
    fig = go.Figure()
    k = 0
    for i, n in enumerate(names):
        preds = (predictions or {}).get(n, {})
        y1 = 1 - i * (panel_size + gap_y) / plot_h
        y_dom = (y1 - panel_size / plot_h, y1)
        for j, (vt, im) in enumerate([("clean", img)] + [(v, _chw(images[n][v], v)) for v in variants]):
            k += 1
            s = "" if k == 1 else str(k)
            x0 = j * (panel_size + gap_x) / plot_w
            _image_axis(fig, k, (x0, x0 + panel_size / plot_w), y_dom)
            fig.add_trace(_image_trace(np.clip(im, 0, 1), f"{_short(n)} · {vt}", f"x{s}", f"y{s}"))
            pred = _pred_text(preds.get(vt), class_names, label)
            note = (notes or {}).get(n, {}).get(vt)
            head = vt + (f"<br>{note}" if note else "")
            fig.add_annotation(text=head + (f"<br>→ {pred}" if pred else ""), x=x0 + panel_size / plot_w / 2,
                               xref="paper", y=y1, yref="paper", yanchor="bottom", yshift=3, showarrow=False,
                               font=dict(size=11, family=_FONT))
        fig.add_annotation(text=f"<b>{_short(n)}</b>", x=0, xref="paper", xanchor="right", xshift=-8,
                           y=(y_dom[0] + y_dom[1]) / 2, yref="paper", showarrow=False, textangle=0,
                           font=dict(size=13, family=_FONT, color=cols[n]))
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12), showlegend=False,
        width=plot_w + left + 16, height=plot_h + top + 12, margin=dict(l=left, r=16, t=top, b=12),
        title=dict(text=title, x=0, xref="paper", y=1, yref="container", yanchor="top", pad=dict(t=10),
                   font=dict(size=14)) if title else None,
    )
    return fig


# ----------------------------------------------------------------------------- numbers


def image_to_npz(x: ArrayLike, attributions: Mapping[str, ArrayLike], *, block: Optional[int] = None,
                 settings: Optional[dict] = None) -> bytes:
    """One image's numbers as ``.npz`` bytes: ``x`` (C, H, W), ``model_names`` (M,),
    ``attributions`` (M, C, H, W) float32 signed, ``gini`` (M,), ``regional_gini`` (M,)
    (NaN without ``block``), ``lorenz_fractions`` (n + 1,), ``lorenz_shares`` (M, n + 1),
    ``settings`` 0-d str (JSON)."""
    names = list(attributions)
    a = np.stack([_chw(attributions[n], n) for n in names])
    t = torch.from_numpy(a)
    f, s = lorenz_curve(t)
    buf = io.BytesIO()
    np.savez_compressed(
        buf, x=_chw(x, "x").astype(np.float32), model_names=np.array(names, dtype=str),
        attributions=a.astype(np.float32), gini=gini(t).numpy(),
        regional_gini=regional_gini(t, block).numpy() if block else np.full(len(names), np.nan),
        lorenz_fractions=f.numpy(), lorenz_shares=s.numpy(),
        settings=np.array(json.dumps(settings or {})),
    )
    return buf.getvalue()


def gini_to_csv(indices: Sequence[int], global_gini: Mapping[str, ArrayLike],
                regional: Optional[Mapping[str, ArrayLike]] = None,
                among: Optional[ArrayLike] = None) -> bytes:
    """Per-image Gini as CSV bytes: ``index``, ``common_correct`` (when ``among`` is
    given), then ``gini <model>`` and ``regional <model>`` columns."""
    names = list(global_gini)
    cols = [("gini " + n, _np(global_gini[n]).reshape(-1)) for n in names]
    if regional:
        cols += [("regional " + n, _np(regional[n]).reshape(-1)) for n in names]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index"] + (["common_correct"] if among is not None else []) + [c for c, _ in cols])
    am = None if among is None else np.asarray(among, dtype=bool).reshape(-1)
    for r, idx in enumerate(indices):
        w.writerow([int(idx)] + ([int(am[r])] if am is not None else []) + [f"{v[r]:.6g}" for _, v in cols])
    return buf.getvalue().encode("utf-8")


def noise_to_csv(k_counts: Sequence[int], n_features: int, inductive: Mapping[str, ArrayLike],
                 random: Optional[Mapping[str, ArrayLike]] = None) -> bytes:
    """Error rates under noise as CSV bytes: ``k``, ``k_percent``, then ``inductive
    <model>`` and ``random <model>`` (fractions in [0, 1])."""
    names = list(inductive)
    cols = [("inductive " + n, _np(inductive[n]).reshape(-1)) for n in names]
    if random:
        cols += [("random " + n, _np(random[n]).reshape(-1)) for n in names]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["k", "k_percent"] + [c for c, _ in cols])
    for r, k in enumerate(k_counts):
        w.writerow([int(k), f"{100 * k / n_features:.6g}"] + [f"{v[r]:.6g}" for _, v in cols])
    return buf.getvalue().encode("utf-8")


def occlusion_to_csv(radii: Sequence[int], errors: Mapping[str, ArrayLike]) -> bytes:
    """Occlusion error rates as CSV bytes: ``radius`` then one column per model."""
    names = list(errors)
    cols = [_np(errors[n]).reshape(-1) for n in names]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["radius", *names])
    for r, rad in enumerate(radii):
        w.writerow([int(rad)] + [f"{c[r]:.6g}" for c in cols])
    return buf.getvalue().encode("utf-8")


def examples_to_npz(x: ArrayLike, images: Mapping[str, Mapping[str, ArrayLike]],
                    settings: Optional[dict] = None) -> bytes:
    """Example perturbed images as ``.npz`` bytes: ``x`` (C, H, W), ``model_names`` (M,),
    ``variants`` (V,), ``images`` (M, V, C, H, W) float32, ``settings`` 0-d str (JSON)."""
    names = list(images)
    variants = list(images[names[0]]) if names else []
    buf = io.BytesIO()
    np.savez_compressed(
        buf, x=_chw(x, "x").astype(np.float32), model_names=np.array(names, dtype=str),
        variants=np.array(variants, dtype=str),
        images=np.stack([np.stack([_chw(images[n][v], v) for v in variants]) for n in names]).astype(np.float32),
        settings=np.array(json.dumps(settings or {})),
    )
    return buf.getvalue()
