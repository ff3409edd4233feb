"""The Inequality page's figures (arrays in, ``go.Figure`` out).

docs/methods.md section 3 (Duan et al., ICLR 2023; Chen, Dong and Xie, IGD):

* :func:`image_inequality_figure`: one image, each model's |attribution| map titled with
  its Gini, and beside them the models' Lorenz curves with the equality diagonal;
* :func:`lorenz_figure`: Lorenz curves (e.g. the mean curve over a test set) per model;
* :func:`gini_histogram_figure`: per-image Gini histograms, overlaid per model, global and
  regional side by side, with each model's mean;
* :func:`noise_error_figure`: error rate against k for inductive noise (solid) and the
  random-feature baseline (dashed);
* :func:`occlusion_error_figure`: inductive-occlusion error rate against the radius;
* :func:`perturbed_examples_figure`: example perturbed images, one row per model.

Their numbers: :func:`gradviz.viz.export.image_to_npz`, :func:`~gradviz.viz.export.gini_to_csv`,
:func:`~gradviz.viz.export.noise_to_csv`, :func:`~gradviz.viz.export.occlusion_to_csv`,
:func:`~gradviz.viz.export.examples_to_npz`. Every figure colours a model the same way
(:func:`gradviz.viz.style.model_colours`: by its position in the list of compared models).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from gradviz.inequality import gini, lorenz_curve, regional_gini
from gradviz.viz.common import ArrayLike, as_array, chw, class_name, image_axis, image_trace, prediction_text
from gradviz.viz.common import shared_bins, short_model_name, values_by_model
from gradviz.viz.style import FONT, LAYOUT, MAGNITUDE_COLORSCALE, page_title, resolve_colours

__all__ = [
    "gini_histogram_figure",
    "image_inequality_figure",
    "lorenz_figure",
    "noise_error_figure",
    "occlusion_error_figure",
    "perturbed_examples_figure",
]


def _lorenz_traces(fractions: np.ndarray, shares: Mapping[str, np.ndarray], colours: Mapping[str, str],
                   ginis: Mapping[str, float], xaxis: str, yaxis: str, *, what: str) -> list[go.Scatter]:
    traces = [go.Scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="equality (Gini 0)", xaxis=xaxis, yaxis=yaxis,
        line=dict(color="#888888", dash="dot", width=1.5), hoverinfo="skip",
    )]
    for name, s in shares.items():
        g = ginis.get(name)
        label = short_model_name(name) + (f" · Gini {g:.3f}" if g is not None and math.isfinite(g) else "")
        traces.append(go.Scatter(
            x=100 * fractions, y=100 * s, mode="lines", name=label, xaxis=xaxis, yaxis=yaxis,
            line=dict(color=colours[name], width=2.5),
            hovertemplate=(f"the {what} %{{x:.1f}} % of the features<br>hold %{{y:.2f}} % of "
                           f"|attribution|<extra>{short_model_name(name)}</extra>"),
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
    largest value (:data:`~gradviz.viz.style.MAGNITUDE_COLORSCALE`, black 0 to bright 1), titled with the
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
        colours: model name -> colour (default :func:`~gradviz.viz.style.model_colours` of the keys).
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
    img = chw(x, "x")
    names = list(attributions)
    colours = resolve_colours(colours, names)
    maps, ginis, regional = {}, {}, {}
    fractions, shares = None, {}
    for n in names:
        a = chw(attributions[n], f"attribution of {n!r}")
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
        image_axis(fig, i + 1, (x0, x0 + p / plot_w), y_map)
    fig.add_trace(image_trace(img, "input", xaxis="x", yaxis="y"))
    head = "input" + (f" · label {class_name(class_names, int(label))}" if label is not None and label >= 0 else "")
    titles.append(head)
    for i, n in enumerate(names):
        k = str(i + 2)
        mp = maps[n]
        peak = float(mp.max())
        total = float(mp.sum())
        shown = mp / peak if peak > 0 else mp
        share = 100 * mp / total if total > 0 else np.zeros_like(mp)
        fig.add_trace(go.Heatmap(
            z=shown, customdata=np.stack([mp, share], axis=-1), coloraxis="coloraxis", name=short_model_name(n),
            xaxis=f"x{k}", yaxis=f"y{k}",
            hovertemplate=("x %{x}, y %{y}<br>|A| %{customdata[0]:.4g}<br>share of the map "
                           f"%{{customdata[1]:.2f}} %<extra>{short_model_name(n)}</extra>"),
        ))
        pred = prediction_text((predictions or {}).get(n), class_names, label)
        g = f"Gini {ginis[n]:.3f}" + (f"<br>regional {regional[n]:.3f}" if n in regional else "")
        titles.append(f"<b>{short_model_name(n)}</b>" + (f"<br>→ {pred}" if pred else "") + f"<br>{g}")
    for i, t in enumerate(titles):
        x_mid = (i * (p + gap) + p / 2) / plot_w
        fig.add_annotation(text=t, x=x_mid, xref="paper", y=y_map[1], yref="paper", yanchor="bottom",
                           showarrow=False, font=dict(size=11, family=FONT), yshift=4, align="center")
    lz_s = str(m + 2)
    _lorenz_axes(fig, lz_s, (lz_x0 / plot_w, 1.0), (0.0, 1.0), f"x{lz_s}", f"y{lz_s}")
    for tr in _lorenz_traces(fractions, shares, colours, ginis, f"x{lz_s}", f"y{lz_s}", what="smallest"):
        fig.add_trace(tr)
    maps_end = ((m + 1) * (p + gap) - gap) / plot_w
    fig.update_layout(
        **LAYOUT,
        width=plot_w + margin["l"] + margin["r"], height=plot_h + margin["t"] + margin["b"],
        margin=margin,
        coloraxis=dict(colorscale=list(MAGNITUDE_COLORSCALE), cmin=0.0, cmax=1.0,
                       colorbar=dict(title=dict(text="|A| ÷ map max", side="right"), x=maps_end + 8 / plot_w,
                                     xanchor="left", y=y_map[0], yanchor="bottom", len=p / plot_h,
                                     thickness=14, outlinewidth=0)),
        legend=dict(x=lz_x0 / plot_w + 0.01, xanchor="left", y=0.99, yanchor="top",
                    bgcolor="rgba(255,255,255,0.85)", font=dict(size=11)),
        title=page_title(title),
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
        colours: model name -> colour (default :func:`~gradviz.viz.style.model_colours`).
        title: figure title (None: a default; "": none).
        size: height in pixels (the plot area is square).

    Returns:
        ``go.Figure``: the diagonal, then one line per model.

    Raises:
        ValueError: no model; a curve whose length differs from ``fractions``.
    """
    f = as_array(fractions).reshape(-1)
    curves = values_by_model(shares, "shares", f.size, "fractions")
    cols = resolve_colours(colours, list(curves))
    fig = go.Figure(_lorenz_traces(f, curves, cols, dict(ginis or {}), "x", "y", what="smallest"))
    title = "Lorenz curves" if title is None else title
    top = 50 if title else 20
    fig.update_layout(
        **LAYOUT, height=size,
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
        colours: model name -> colour (default :func:`~gradviz.viz.style.model_colours`).
        bins: number of bins over the panel's range of values (>= 1).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: per panel, one histogram per model then one mean line per model.

    Raises:
        ValueError: no model; ``bins`` < 1.
    """
    names = list(values_by_model(global_gini, "global_gini"))
    cols = resolve_colours(colours, names)
    panels = [("global", global_gini)] + ([("regional", regional)] if regional else [])
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08)
    for c, (kind, values) in enumerate(panels, start=1):
        arrays = {n: as_array(values[n]).reshape(-1) for n in names}
        xbins = shared_bins(arrays.values(), bins, pad=0.005)
        for n in names:
            v = arrays[n]
            fig.add_trace(go.Histogram(
                x=v, name=short_model_name(n), legendgroup=n, showlegend=c == 1, histnorm="percent",
                xbins=xbins, marker=dict(color=cols[n], line=dict(width=0)),
                opacity=0.55, customdata=np.full(v.shape, v.size),
                hovertemplate=f"{kind} Gini %{{x}}<br>%{{y:.1f}} % of the images<extra>{short_model_name(n)}</extra>",
            ), row=1, col=c)
        for n in names:
            v = arrays[n]
            mean = float(np.nanmean(v)) if v.size else float("nan")
            if not math.isfinite(mean):
                continue
            fig.add_trace(go.Scatter(
                x=[mean, mean], y=[0, 1], mode="lines", name=f"mean {short_model_name(n)}",
                legendgroup=n, showlegend=False, line=dict(color=cols[n], dash="dash", width=2),
                hovertemplate=f"mean {kind} Gini {mean:.3f}<extra>{short_model_name(n)}</extra>",
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
        **LAYOUT, barmode="overlay", height=360,
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
        colours: model name -> colour (default :func:`~gradviz.viz.style.model_colours`).
        n_images: how many images the rates are over (axis title only).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: per model, its inductive line then (if given) its random line.

    Raises:
        ValueError: no model; a curve whose length differs from ``k_percent``.
    """
    kp = as_array(k_percent).reshape(-1)
    lines = {"inductive": values_by_model(inductive, "inductive", kp.size, "values of k")}
    names = list(lines["inductive"])
    if random is not None:
        lines["random"] = values_by_model({n: random[n] for n in names}, "random", kp.size, "values of k")
    cols = resolve_colours(colours, names)
    counts = list(k_counts) if k_counts is not None else [None] * kp.size
    custom = np.array([c if c is not None else -1 for c in counts])
    fig = go.Figure()
    for n in names:
        for kind, dash in (("inductive", "solid"), ("random", "dash")):
            if kind not in lines:
                continue
            fig.add_trace(go.Scatter(
                x=kp, y=100 * lines[kind][n], customdata=custom, mode="lines+markers",
                name=f"{short_model_name(n)} · {kind}",
                legendgroup=n, line=dict(color=cols[n], dash=dash, width=2.5 if kind == "inductive" else 1.8),
                marker=dict(symbol="circle" if kind == "inductive" else "circle-open", size=7),
                hovertemplate=(f"{kind} noise<br>k %{{x:.3g}} % (%{{customdata}} features)<br>error "
                               f"%{{y:.1f}} %<extra>{short_model_name(n)}</extra>"),
            ))
    over = f" ({n_images} images)" if n_images is not None else ""
    rows = math.ceil(len(fig.data) / 2)  # legend below the plot, two entries per line
    fig.update_layout(
        **LAYOUT, height=360 + 22 * rows,
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
        colours: model name -> colour (default :func:`~gradviz.viz.style.model_colours`).
        n_pixels: the largest number of occluded top pixels (title only).
        colour: the occlusion value (title only).
        n_images: how many images the rates are over (axis title only).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: one line per model.

    Raises:
        ValueError: no model; a curve whose length differs from ``radii``.
    """
    r = as_array(radii).reshape(-1)
    curves = values_by_model(errors, "errors", r.size, "radii")
    cols = resolve_colours(colours, list(curves))
    fig = go.Figure()
    for n, e in curves.items():
        fig.add_trace(go.Scatter(
            x=r, y=100 * e, mode="lines+markers", name=short_model_name(n), line=dict(color=cols[n], width=2.5),
            hovertemplate=f"radius ≤ %{{x}} px<br>error %{{y:.1f}} %<extra>{short_model_name(n)}</extra>",
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
        **LAYOUT, height=380,
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
        colours: model name -> colour of the row label (default :func:`~gradviz.viz.style.model_colours`).
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
    img = chw(x, "x")
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
        for j, (vt, im) in enumerate([("clean", img)] + [(v, chw(images[n][v], v)) for v in variants]):
            k += 1
            s = "" if k == 1 else str(k)
            x0 = j * (panel_size + gap_x) / plot_w
            image_axis(fig, k, (x0, x0 + panel_size / plot_w), y_dom)
            fig.add_trace(image_trace(np.clip(im, 0, 1), f"{short_model_name(n)} · {vt}", xaxis=f"x{s}",
                                      yaxis=f"y{s}"))
            pred = prediction_text(preds.get(vt), class_names, label)
            note = (notes or {}).get(n, {}).get(vt)
            head = vt + (f"<br>{note}" if note else "")
            fig.add_annotation(text=head + (f"<br>→ {pred}" if pred else ""), x=x0 + panel_size / plot_w / 2,
                               xref="paper", y=y1, yref="paper", yanchor="bottom", yshift=3, showarrow=False,
                               font=dict(size=11, family=FONT))
        fig.add_annotation(text=f"<b>{short_model_name(n)}</b>", x=0, xref="paper", xanchor="right", xshift=-8,
                           y=(y_dom[0] + y_dom[1]) / 2, yref="paper", showarrow=False, textangle=0,
                           font=dict(size=13, family=FONT, color=cols[n]))
    fig.update_layout(
        **LAYOUT, showlegend=False,
        width=plot_w + left + 16, height=plot_h + top + 12, margin=dict(l=left, r=16, t=top, b=12),
        title=page_title(title),
    )
    return fig
