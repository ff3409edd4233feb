"""The Alignment page's figures and table (arrays in, ``go.Figure`` / ``DataFrame`` out).

docs/methods.md section 1 (Bigolin Lanfredi, Schroeder, Tasdizen): the GAN residual dx_hat
(Eqs. 15-16, :func:`gradviz.generative.residuals_for`), the closest class c~ (Eq. 5), the
alignment alpha_dx = cos(grad_x (d_c~ - d_y), dx_hat) (Eq. 8) and Etmann et al.'s alpha_x
(:mod:`gradviz.alignment`).

* :func:`residual_figure`: the paper's figure: one row per image, columns x | dx_hat |
  x + dx_hat | (the true dx, on ``squares``) | each model's grad_x (d_c~ - d_y); every map
  divided by its own largest |value| into [-1, 1] (:func:`scale_by_max`), on
  :data:`gradviz.viz.style.DIVERGING_COLORSCALE` centred at 0;
* :func:`alpha_histogram_figure`: histograms of alpha_dx, overlaid per model, same bins,
  the legend with each model's mean and n;
* :func:`alpha_scatter_figure`: alpha_dx against alpha_x, one colour per model;
* :func:`alignment_table`: the means per model as a ``pandas.DataFrame``.

Their numbers: :func:`gradviz.viz.export.residual_figure_to_npz`,
:func:`~gradviz.viz.export.alignment_to_csv`, :func:`~gradviz.viz.export.alignment_to_npz`.
Models are coloured by their position in the compared list, as on the other pages
(:func:`gradviz.viz.style.model_colours`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gradviz.viz.common import ArrayLike, as_array, class_name, image_axis, image_trace, shared_bins
from gradviz.viz.common import short_model_name, values_by_model
from gradviz.viz.style import DIVERGING_COLORSCALE, FONT, LAYOUT, page_title, resolve_colours

__all__ = [
    "alignment_table",
    "alpha_histogram_figure",
    "alpha_scatter_figure",
    "residual_figure",
    "scale_by_max",
]


def scale_by_max(a: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The display step of the paper's figure: sum over channels, then divide each map by
    its own largest |value|.

    Args:
        a: (N, C, H, W) signed maps.

    Returns:
        ``(scaled, peak)``: (N, H, W) in [-1, 1] (an all-zero map stays 0) and (N,) the
        largest |value| of each channel-summed map.

    Raises:
        ValueError: ``a`` is not 4-D.
    """
    m = as_array(a)
    if m.ndim != 4:
        raise ValueError(f"maps must have shape (N, C, H, W); got {m.shape}")
    m = m.sum(axis=1)
    peak = np.abs(m).reshape(len(m), -1).max(axis=1) if m.size else np.zeros(len(m))
    safe = np.where(peak > 0, peak, 1.0)
    return m / safe[:, None, None], peak


def _signed_trace(scaled: np.ndarray, raw: np.ndarray, name: str, xa: str, ya: str, what: str) -> go.Heatmap:
    return go.Heatmap(
        z=scaled, customdata=raw, coloraxis="coloraxis", name=name, xaxis=xa, yaxis=ya,
        hovertemplate=(f"x %{{x}}, y %{{y}}<br>scaled %{{z:.3f}}<br>value %{{customdata:.4g}}"
                       f"<extra>{what}</extra>"),
    )


def residual_figure(
    x: ArrayLike,
    dx_hat: ArrayLike,
    gradients: Mapping[str, ArrayLike],
    *,
    targets: Sequence[int],
    labels: Sequence[int],
    dx_true: Optional[ArrayLike] = None,
    alphas: Optional[Mapping[str, ArrayLike]] = None,
    cos_true: Optional[ArrayLike] = None,
    class_names: Optional[Sequence[str]] = None,
    row_names: Optional[Sequence[str]] = None,
    panel_size: int = 110,
    title: Optional[str] = None,
) -> go.Figure:
    """The paper's figure of residuals and gradients (Bigolin Lanfredi et al., docs/methods.md
    section 1): one row per image; columns x | dx_hat | x + dx_hat | (true dx) | the
    gradient grad_x (d_c - d_y) of each model, c the row's target class (e.g. the closest
    class c~ of Eq. 5).

    Signed maps (dx_hat, true dx, gradients) are summed over channels and each divided by
    its own largest |value| into [-1, 1] (:func:`scale_by_max`, a display step), drawn on one
    diverging colour scale centred at 0 (:data:`~gradviz.viz.style.DIVERGING_COLORSCALE`: red positive, blue
    negative); hover gives the scaled and the raw value. x and x + dx_hat are images in
    [0, 1]. A column header names each column (and its model); a title over each panel gives
    the row's classes, e.g. "→ 3" over dx_hat and "∇(d3 − d8) · α 0.21" over a gradient.
    When the gradient's direction matches the residual's, the model's map looks like the
    residual map: alpha_dx is their cosine (Eq. 8).

    Args:
        x: (N, C, H, W) images in [0, 1].
        dx_hat: (N, C, H, W) residuals toward ``targets`` (x + dx_hat = G(z*, c)).
        gradients: model name -> (N, C, H, W) grad_x (d_target - d_y)
            (:func:`gradviz.alignment.margin_gradient`).
        targets: (N,) destination class per image (never its label).
        labels: (N,) true labels.
        dx_true: (N, C, H, W) exact residuals (``squares``), or None: no column.
        alphas: model name -> (N,) alpha_dx for the panel titles, or None.
        cos_true: (N,) cos(dx_hat, dx_true) for the true-dx panel titles, or None.
        class_names: class index -> name.
        row_names: one name per row (default "#i").
        panel_size: side of a panel in pixels (>= 50; default 110).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure`` with N x (3 + [1] + M) traces, row by row, in column order.

    Raises:
        ValueError: no image; shapes that differ from x; targets or labels of another length;
            a target equal to its label; panel_size < 50.
    """
    xs = as_array(x)
    if xs.ndim != 4 or len(xs) == 0:
        raise ValueError(f"x must be a non-empty batch (N, C, H, W); got shape {xs.shape}")
    if panel_size < 50:
        raise ValueError(f"panel_size must be >= 50 pixels; got {panel_size}")
    n = len(xs)
    dxh = as_array(dx_hat)
    if dxh.shape != xs.shape:
        raise ValueError(f"dx_hat has shape {dxh.shape}; x has {xs.shape}")
    grads = {}
    for name, g in gradients.items():
        grads[name] = as_array(g)
        if grads[name].shape != xs.shape:
            raise ValueError(f"the gradient of {name!r} has shape {grads[name].shape}; x has {xs.shape}")
    tg = [int(t) for t in targets]
    lb = [int(v) for v in labels]
    if len(tg) != n or len(lb) != n:
        raise ValueError(f"targets ({len(tg)}) and labels ({len(lb)}) must have one entry per image ({n})")
    bad = [i for i in range(n) if tg[i] == lb[i]]
    if bad:
        raise ValueError(f"the target equals the label for row {bad[0]} (class {class_name(class_names, lb[bad[0]])}); "
                         f"a residual moves an image into another class")
    dxt = None if dx_true is None else as_array(dx_true)
    if dxt is not None and dxt.shape != xs.shape:
        raise ValueError(f"dx_true has shape {dxt.shape}; x has {xs.shape}")
    rows = list(row_names) if row_names is not None else [f"#{i}" for i in range(n)]
    names = list(grads)

    same = len(set(tg)) == 1  # one target for every row: name it in the headers
    c_name = class_name(class_names, tg[0]) if same else "c"
    columns: list[tuple[str, str]] = [("image", "input x"), ("residual", f"residual dx̂<br>toward {c_name}"),
                                      ("moved", f"x + dx̂<br>= G(z*, {c_name})")]
    if dxt is not None:
        columns.append(("true", f"true residual dx<br>toward {c_name}"))
    columns += [("model:" + m, f"<b>{short_model_name(m)}</b><br>∇ₓ(d<sub>{c_name}</sub> − d<sub>y</sub>)")
                for m in names]
    scaled = {"residual": scale_by_max(dxh)[0]}
    if dxt is not None:
        scaled["true"] = scale_by_max(dxt)[0]
    for m in names:
        scaled["model:" + m] = scale_by_max(grads[m])[0]
    raw = {"residual": dxh.sum(axis=1), "true": None if dxt is None else dxt.sum(axis=1),
           **{"model:" + m: grads[m].sum(axis=1) for m in names}}
    moved = np.clip(xs + dxh, 0.0, 1.0)

    p, gap, row_title, head, cb = int(panel_size), 10, 30, 34, 70
    ncol = len(columns)
    plot_w = ncol * (p + gap) - gap + cb
    plot_h = head + n * (p + row_title)
    fig = go.Figure()
    k = 0
    for r in range(n):
        y1 = 1 - (head + r * (p + row_title) + row_title) / plot_h
        y0 = y1 - p / plot_h
        for c, (kind, _) in enumerate(columns):
            k += 1
            s = "" if k == 1 else str(k)
            x0 = c * (p + gap) / plot_w
            image_axis(fig, k, (x0, x0 + p / plot_w), (y0, y1))
            xa, ya = f"x{s}", f"y{s}"
            t, lab = class_name(class_names, tg[r]), class_name(class_names, lb[r])
            if kind == "image":
                fig.add_trace(image_trace(np.clip(xs[r], 0.0, 1.0), "x", hover=f"{rows[r]} · x", xaxis=xa, yaxis=ya))
                text = f"{rows[r]} · label {lab}"
            elif kind == "moved":
                fig.add_trace(image_trace(moved[r], "x + dx̂", hover=f"{rows[r]} · x + dx̂", xaxis=xa, yaxis=ya))
                text = f"G(z*, {t})"
            elif kind == "residual":
                fig.add_trace(_signed_trace(scaled[kind][r], raw[kind][r], "dx̂", xa, ya,
                                            f"{rows[r]} · dx̂ → {t}"))
                text = f"{lab} → {t}"
            elif kind == "true":
                fig.add_trace(_signed_trace(scaled[kind][r], raw[kind][r], "dx", xa, ya,
                                            f"{rows[r]} · true dx → {t}"))
                text = f"{lab} → {t}"
                if cos_true is not None:
                    text += f"<br>cos(dx̂, dx) {float(as_array(cos_true).reshape(-1)[r]):.2f}"
            else:
                m = kind.split(":", 1)[1]
                fig.add_trace(_signed_trace(scaled[kind][r], raw[kind][r], short_model_name(m), xa, ya,
                                            f"{rows[r]} · {short_model_name(m)} ∇(d{t} − d{lab})"))
                text = f"∇(d<sub>{t}</sub> − d<sub>{lab}</sub>)"
                if alphas is not None and m in alphas:
                    text += f"<br>α_dx {float(as_array(alphas[m]).reshape(-1)[r]):.2f}"
            fig.add_annotation(text=text, x=(x0 + p / (2 * plot_w)), xref="paper", y=y1, yref="paper",
                               xanchor="center", yanchor="bottom", showarrow=False, yshift=2,
                               font=dict(size=10, family=FONT))
    for c, (_, header) in enumerate(columns):
        fig.add_annotation(text=header, x=(c * (p + gap) + p / 2) / plot_w, xref="paper", y=1.0, yref="paper",
                           xanchor="center", yanchor="top", showarrow=False, font=dict(size=11, family=FONT),
                           align="center")
    grid_end = (ncol * (p + gap) - gap) / plot_w
    margin = dict(l=10, r=10, t=30 + (26 if title != "" else 0), b=10)
    fig.update_layout(
        **{**LAYOUT, "font": dict(family=FONT, size=11)},
        width=plot_w + margin["l"] + margin["r"], height=plot_h + margin["t"] + margin["b"], margin=margin,
        coloraxis=dict(colorscale=list(DIVERGING_COLORSCALE), cmin=-1.0, cmax=1.0, cmid=0.0,
                       colorbar=dict(title=dict(text="÷ own max |value|", side="right"), x=grid_end + 8 / plot_w,
                                     xanchor="left", y=0.5, yanchor="middle", len=min(1.0, 2.5 * p / plot_h),
                                     thickness=14, outlinewidth=0, tickvals=[-1, -0.5, 0, 0.5, 1])),
        title=page_title("GAN residuals and the models' gradients toward the same class" if title is None else title),
    )
    return fig


def _finite(v: np.ndarray) -> np.ndarray:
    return v[np.isfinite(v)]


def _mean_n(v: np.ndarray) -> tuple[float, int]:
    f = _finite(v)
    return (float(f.mean()) if f.size else float("nan")), int(f.size)


def alpha_histogram_figure(
    alpha_dx: Mapping[str, ArrayLike],
    *,
    colours: Optional[Mapping[str, str]] = None,
    bins: int = 40,
    title: Optional[str] = None,
    what: str = "α_dx = cos(∇ₓ(d_c̃ − d_y), dx̂)",
) -> go.Figure:
    """Histograms of alpha_dx per image (Eq. 8), overlaid per model (the paper's figure).

    All models share the bins (``bins`` equal bins over the range of all values, widened to
    include 0); y is the percentage of that model's images; a dashed vertical line marks each
    model's mean, and the legend reads "model · mean 0.123 · n 300" (NaN values are left
    out of n and the mean).

    Args:
        alpha_dx: model name -> (N,) values in [-1, 1].
        colours: model name -> colour (default :func:`~gradviz.viz.style.model_colours`).
        bins: number of bins (>= 1).
        title: figure title (None: a default; "": none).
        what: x-axis title.

    Returns:
        ``go.Figure``: one histogram per model, then one mean line per model.

    Raises:
        ValueError: no model; ``bins`` < 1.
    """
    arrays = values_by_model(alpha_dx, "alpha_dx")
    names = list(arrays)
    cols = resolve_colours(colours, names)
    xbins = shared_bins([*arrays.values(), np.zeros(1)], bins, pad=0.01)  # the range includes 0
    fig = go.Figure()
    for m in names:
        mean, cnt = _mean_n(arrays[m])
        fig.add_trace(go.Histogram(
            x=arrays[m], name=f"{short_model_name(m)} · mean {mean:.3f} · n {cnt}", legendgroup=m, histnorm="percent",
            xbins=xbins, marker=dict(color=cols[m], line=dict(width=0)),
            opacity=0.55, hovertemplate=f"α %{{x}}<br>%{{y:.1f}} % of the images<extra>{short_model_name(m)}</extra>",
        ))
    for m in names:
        mean, _ = _mean_n(arrays[m])
        if math.isfinite(mean):
            fig.add_trace(go.Scatter(
                x=[mean, mean], y=[0, 1], yaxis="y2", mode="lines", name=f"mean {short_model_name(m)}", legendgroup=m,
                showlegend=False, line=dict(color=cols[m], dash="dash", width=2),
                hovertemplate=f"mean {mean:.3f}<extra>{short_model_name(m)}</extra>",
            ))
    fig.update_layout(
        **LAYOUT, barmode="overlay", bargap=0.02, height=380,
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=50),
        xaxis=dict(title=dict(text=what), zeroline=True, zerolinecolor="#999999"),
        yaxis=dict(title=dict(text="images (%)")),
        yaxis2=dict(overlaying="y", range=[0, 1], visible=False),
        legend=dict(title=dict(text="model (dashed: mean)")),
        title=dict(text=title if title is not None else "Alignment of the gradient with the residual, per image",
                   font=dict(size=14)) if title != "" else None,
    )
    return fig


def alpha_scatter_figure(
    alpha_dx: Mapping[str, ArrayLike],
    alpha_x: Mapping[str, ArrayLike],
    *,
    indices: Optional[Sequence[int]] = None,
    colours: Optional[Mapping[str, str]] = None,
    title: Optional[str] = None,
) -> go.Figure:
    """alpha_dx (Eq. 8, y) against alpha_x (Etmann et al., x) per image, one colour per
    model, with each model's mean as a large cross. Points above the diagonal: the gradient
    follows the residual more than the image itself. Hover gives the image index.

    Args:
        alpha_dx, alpha_x: model name -> (N,) values (the same models and N).
        indices: (N,) dataset indices for the hover (default 0..N-1).
        colours: model name -> colour.
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: per model a scatter of the points, then one of its mean.

    Raises:
        ValueError: no model; models or lengths that differ between the two mappings.
    """
    if not alpha_dx:
        raise ValueError("alpha_dx must hold at least one model's values")
    names = list(alpha_dx)
    if set(names) != set(alpha_x):
        raise ValueError(f"alpha_dx and alpha_x must hold the same models; got {names} and {list(alpha_x)}")
    cols = resolve_colours(colours, names)
    fig = go.Figure()
    for m in names:
        a, b = as_array(alpha_dx[m]).reshape(-1), as_array(alpha_x[m]).reshape(-1)
        if a.shape != b.shape:
            raise ValueError(f"{m!r}: alpha_dx has {a.size} values, alpha_x {b.size}")
        idx = np.arange(a.size) if indices is None else np.asarray(indices).reshape(-1)
        fig.add_trace(go.Scatter(
            x=b, y=a, mode="markers", name=short_model_name(m), legendgroup=m, customdata=idx,
            marker=dict(color=cols[m], size=6, opacity=0.6, line=dict(width=0)),
            hovertemplate=("image #%{customdata}<br>α_x %{x:.3f}<br>α_dx %{y:.3f}"
                           f"<extra>{short_model_name(m)}</extra>"),
        ))
    for m in names:
        (ma, _), (mb, _) = _mean_n(as_array(alpha_dx[m]).reshape(-1)), _mean_n(as_array(alpha_x[m]).reshape(-1))
        fig.add_trace(go.Scatter(
            x=[mb], y=[ma], mode="markers", name=f"mean {short_model_name(m)}", legendgroup=m, showlegend=False,
            marker=dict(color=cols[m], size=16, symbol="x-thin", line=dict(width=3, color=cols[m])),
            hovertemplate=f"mean α_x {mb:.3f}<br>mean α_dx {ma:.3f}<extra>{short_model_name(m)}</extra>",
        ))
    values = [as_array(v) for v in (*alpha_dx.values(), *alpha_x.values())]
    top = max([float(np.nanmax(np.abs(v))) for v in values if v.size and np.isfinite(v).any()] + [0.05])
    fig.add_shape(type="line", x0=0, y0=0, x1=top, y1=top, line=dict(color="#aaaaaa", dash="dot", width=1))
    fig.update_layout(
        **LAYOUT, height=420,
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=50),
        xaxis=dict(title=dict(text="α_x = |cos(x, ∇ₓ loss)| (Etmann et al.)"), rangemode="tozero"),
        yaxis=dict(title=dict(text="α_dx = cos(∇ₓ(d_c̃ − d_y), dx̂)"), zeroline=True, zerolinecolor="#999999"),
        legend=dict(title=dict(text="model (×: mean)")),
        title=dict(text=title if title is not None else "α_dx against α_x, per image", font=dict(size=14))
        if title != "" else None,
    )
    return fig


def alignment_table(
    alpha_dx: Mapping[str, ArrayLike],
    alpha_x: Mapping[str, ArrayLike],
    *,
    cos_true: Optional[ArrayLike] = None,
    alpha_true: Optional[Mapping[str, ArrayLike]] = None,
    digits: int = 3,
) -> pd.DataFrame:
    """The means per model: one row per model with columns ``model``, ``n images``,
    ``mean α_dx``, ``s.e. α_dx`` (standard error), ``mean α_x``; with ``cos_true`` also
    ``mean cos(dx̂, dx true)`` (the generator's quality on ``squares``, the same for every
    model) and ``n (cos)``; with ``alpha_true`` also ``mean α_dx (true dx)`` (Eq. 8 with the
    exact residual). NaN values are left out of the means and counts.

    Raises:
        ValueError: no model; alpha_x without one of alpha_dx's models.
    """
    if not alpha_dx:
        raise ValueError("alpha_dx must hold at least one model's values")
    rows = []
    for m in alpha_dx:
        if m not in alpha_x:
            raise ValueError(f"alpha_x has no values for {m!r}")
        a = _finite(as_array(alpha_dx[m]).reshape(-1))
        row = {"model": short_model_name(m), "n images": int(a.size),
               "mean α_dx": round(float(a.mean()), digits) if a.size else float("nan"),
               "s.e. α_dx": round(float(a.std(ddof=1) / math.sqrt(a.size)), digits) if a.size > 1 else float("nan"),
               "mean α_x": round(_mean_n(as_array(alpha_x[m]).reshape(-1))[0], digits)}
        if alpha_true is not None and m in alpha_true:
            row["mean α_dx (true dx)"] = round(_mean_n(as_array(alpha_true[m]).reshape(-1))[0], digits)
        if cos_true is not None:
            mean, cnt = _mean_n(as_array(cos_true).reshape(-1))
            row["mean cos(dx̂, dx true)"] = round(mean, digits)
            row["n (cos)"] = cnt
        rows.append(row)
    return pd.DataFrame(rows)
