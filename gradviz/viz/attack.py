"""The Attack page's figures (arrays in, ``go.Figure`` out).

* :func:`attack_panels_figure`: per model, x | x_adv | the perturbation (diverging scale
  centred on 0, amplified, the factor in the labels), titled with the predictions.
* :func:`loss_trace_figure`: the loss per PGD step, one line per model.
* :func:`accuracy_vs_eps_figure`: accuracy-vs-eps curves with the 50 % line and eps50.
* :func:`pag_grid_figure`: the "perceptually aligned gradients" grid, one row per model,
  one column per target class.

Their numbers: :func:`gradviz.viz.export.curves_to_csv`, :func:`~gradviz.viz.export.attack_to_npz`,
:func:`~gradviz.viz.export.sweep_to_npz`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np
import plotly.graph_objects as go

from gradviz.viz.common import as_array, chw, class_name, image_trace_spec, prediction_text, short_model_name
from gradviz.viz.common import grid_axes, image_grid_layout, values_by_model
from gradviz.viz.style import DIVERGING_COLORSCALE, LAYOUT, PALETTE

__all__ = [
    "accuracy_vs_eps_figure",
    "attack_panels_figure",
    "loss_trace_figure",
    "pag_grid_figure",
]


def attack_panels_figure(
    x,
    x_adv: Mapping[str, object],
    *,
    label: Optional[int] = None,
    target: Optional[int] = None,
    before: Optional[Mapping[str, tuple]] = None,
    after: Optional[Mapping[str, tuple]] = None,
    class_names: Optional[Sequence[str]] = None,
    amplify: Optional[float] = None,
    panel_size: int = 170,
    title: Optional[str] = None,
) -> go.Figure:
    """One row per model: the clean image x | the attacked image x_adv | the perturbation.

    The perturbation panel shows ``amplify * (x_adv - x)`` (3-channel images: its mean over
    the channels), clipped to [-1, 1], on :data:`~gradviz.viz.style.DIVERGING_COLORSCALE` centred on 0
    (``cmid = 0``); its panel title and colour bar name the factor (``× A``) and the pixel
    value that the end of the scale stands for (``±1/A``, [0, 1] pixel units); hovering
    shows the raw value.

    Args:
        x: the clean image, (C, H, W) or (1, C, H, W), in [0, 1].
        x_adv: model name -> its attacked image (C, H, W), in [0, 1].
        label: true class of x (None or -1: unknown). target: target class, if targeted.
        before, after: model name -> (predicted class, confidence in [0, 1]) on x / x_adv.
        class_names: class index -> name; default the index.
        amplify: amplification factor A > 0; default ``1 / max |x_adv - x|`` over all
            models (so the largest change reaches the end of the scale; 1 when there is
            none).
        panel_size: side of a panel in pixels (>= 40), default 170.
        title: figure title; None: a default naming label and target; "": none.

    Returns:
        ``go.Figure`` with 3 traces per model (row by row: x, x_adv, perturbation).

    Raises:
        ValueError: no model; shapes that differ or are not one image; amplify <= 0;
            panel_size < 40.
    """
    if panel_size < 40:
        raise ValueError(f"panel_size must be >= 40 pixels; got {panel_size}")
    if not x_adv:
        raise ValueError("x_adv must hold at least one model's attacked image")
    x0 = chw(x, "x", channels=(1, 3))
    adv = {k: chw(v, f"x_adv[{k!r}]", channels=(1, 3)) for k, v in x_adv.items()}
    for k, v in adv.items():
        if v.shape != x0.shape:
            raise ValueError(f"x_adv[{k!r}] has shape {v.shape}, x has {x0.shape}")
    deltas = {k: (v - x0).mean(0) for k, v in adv.items()}  # (H, W); C = 1: the map itself
    peak = max(float(np.abs(d).max()) for d in deltas.values())
    if amplify is None:
        amplify = 1.0 / peak if peak > 0 else 1.0
    if not (amplify > 0 and math.isfinite(amplify)):
        raise ValueError(f"amplify must be > 0, got {amplify}")
    label = None if label is None or label < 0 else int(label)
    names = list(adv)
    rows, cols = len(names), 3
    gap_x, gap_y = 14, 52
    top = 64 + (30 if title != "" else 0)
    margin = dict(l=16, r=130, t=top, b=16)
    plot_w = cols * panel_size + (cols - 1) * gap_x
    plot_h = rows * panel_size + (rows - 1) * gap_y
    channel_note = " (channel mean)" if x0.shape[0] == 3 else ""
    titles = []
    for k in names:
        b = prediction_text((before or {}).get(k), class_names, label)
        a = prediction_text((after or {}).get(k), class_names, label)
        titles += [f"{short_model_name(k)}: x → {b}" if b else f"{short_model_name(k)}: x",
                   f"x_adv → {a}" if a else "x_adv",
                   f"(x_adv − x) × {amplify:.3g}{channel_note}"]
    traces = []
    for i, k in enumerate(names):
        d = deltas[k]
        traces += [
            image_trace_spec(x0, "x", **grid_axes(3 * i + 1)),
            image_trace_spec(adv[k], f"x_adv {short_model_name(k)}", **grid_axes(3 * i + 2)),
            dict(
                type="heatmap", z=np.clip(amplify * d, -1, 1), customdata=d, coloraxis="coloraxis",
                name=f"perturbation {short_model_name(k)}",
                hovertemplate=("x %{x}, y %{y}<br>x_adv − x = %{customdata:.4f}<br>"
                               f"shown (× {amplify:.3g}) %{{z:.3f}}<extra>{short_model_name(k)}</extra>"),
                **grid_axes(3 * i + 3),
            ),
        ]
    if title is None:
        what = f"label {class_name(class_names, label)}" if label is not None else "label unknown"
        if target is not None:
            what += f" · target {class_name(class_names, int(target))}"
        title = f"PGD attack · {what}"
    width, height = plot_w + margin["l"] + margin["r"], plot_h + margin["t"] + margin["b"]
    layout = image_grid_layout(rows, cols, titles=titles, h_spacing=gap_x / plot_w,
                               v_spacing=gap_y / plot_h if rows > 1 else 0.0)
    return go.Figure(data=traces, layout=dict(
        layout, width=width, height=height, margin=margin, **LAYOUT,
        title=dict(text=title, x=0, xref="paper", y=1 - 12 / height, yanchor="top",
                   font=dict(size=14)) if title else None,
        coloraxis=dict(
            colorscale=list(DIVERGING_COLORSCALE), cmid=0.0, cmin=-1.0, cmax=1.0,
            colorbar=dict(title=dict(text=f"δ × {amplify:.3g}<br>(±1 = ±{1 / amplify:.3g})", side="top"),
                          lenmode="pixels", len=min(plot_h, 320), y=1, yanchor="top", thickness=14,
                          x=1 + 18 / plot_w, xanchor="left", outlinewidth=0),
        ),
        meta={"amplify": amplify},
    ))


def loss_trace_figure(
    losses: Mapping[str, object],
    *,
    targeted: bool = False,
    title: Optional[str] = None,
    log_y: bool = False,
) -> go.Figure:
    """The cross-entropy at every PGD iterate, one line per model (step 0: the start).

    Args:
        losses: model name -> (steps + 1,) losses of one image (e.g.
            ``result.trace.loss[:, i]``), or (steps + 1, N): then the mean over the images
            is drawn.
        targeted: the loss is w.r.t. the target class (it should fall), else the label (it
            should rise); only the axis title changes.
        title: figure title (None: a default; "": none).
        log_y: logarithmic loss axis.

    Returns:
        ``go.Figure`` with one line trace per model.

    Raises:
        ValueError: no model, or a loss array that is not 1-D or 2-D.
    """
    if not losses:
        raise ValueError("losses must hold at least one model's trace")
    traces = []
    for i, (name, loss) in enumerate(losses.items()):
        arr = as_array(loss)
        if arr.ndim == 2:
            arr = arr.mean(1)
        if arr.ndim != 1:
            raise ValueError(f"losses[{name!r}] must be (steps + 1,) or (steps + 1, N), got {arr.shape}")
        traces.append(dict(
            type="scatter", x=np.arange(len(arr)), y=arr, mode="lines+markers", name=short_model_name(name),
            line=dict(color=PALETTE[i % len(PALETTE)]), marker=dict(size=4),
            hovertemplate=f"step %{{x}}<br>loss %{{y:.4g}}<extra>{short_model_name(name)}</extra>",
        ))
    what = "cross-entropy w.r.t. the target (falls)" if targeted else "cross-entropy w.r.t. the label (rises)"
    return go.Figure(data=traces, layout=dict(
        **LAYOUT, height=340,
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=50),
        title=(title if title is not None else "Loss per PGD step") or None,
        xaxis=dict(title=dict(text="PGD step")),
        yaxis=dict(title=dict(text=what), type="log" if log_y else "linear"),
        legend=dict(title=dict(text="model")),
    ))


def accuracy_vs_eps_figure(
    eps_grid,
    curves: Mapping[str, object],
    *,
    norm: str = "linf",
    eps50: Optional[Mapping[str, float]] = None,
    per_255: bool = False,
    title: Optional[str] = None,
) -> go.Figure:
    """Accuracy-vs-eps curves (docs/methods.md section 1), one line per model, with a dashed
    50 % line and each model's eps50 marked on it.

    Args:
        eps_grid: (G,) radii in [0, 1] pixel units.
        curves: model name -> (G,) accuracies in [0, 1] (drawn in %).
        norm: "linf" or "l2" (axis title only).
        eps50: model name -> eps50 in pixel units (inf / nan: not marked).
        per_255: show eps in /255 units on the axis (RGB l_inf convention).
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure``: one line per model, the 50 % line, then one marker per finite eps50.

    Raises:
        ValueError: no model or a curve whose length differs from the grid.
    """
    grid = as_array(eps_grid).reshape(-1)
    accuracies = values_by_model(curves, "curves", grid.size, "eps values")
    scale, unit = (255.0, " (/255)") if per_255 else (1.0, " ([0, 1] pixel units)")
    fig = go.Figure()
    for i, (name, a) in enumerate(accuracies.items()):
        fig.add_trace(go.Scatter(
            x=grid * scale, y=100 * a, mode="lines+markers", name=short_model_name(name),
            line=dict(color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"eps %{{x:.4g}}<br>accuracy %{{y:.1f}} %<extra>{short_model_name(name)}</extra>",
        ))
    fig.add_trace(go.Scatter(x=[grid.min() * scale, grid.max() * scale], y=[50, 50], mode="lines",
                             line=dict(color="#888888", dash="dash", width=1), name="50 %",
                             hoverinfo="skip", showlegend=False))
    for i, name in enumerate(curves):
        e = (eps50 or {}).get(name)
        if e is None or not math.isfinite(e):
            continue
        fig.add_trace(go.Scatter(
            x=[e * scale], y=[50], mode="markers", name=f"eps50 {short_model_name(name)}", showlegend=False,
            marker=dict(symbol="x", size=11, color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"eps50 %{{x:.4g}}<extra>{short_model_name(name)}</extra>",
        ))
    nname = {"linf": "l∞", "l2": "l2"}.get(norm, norm)
    fig.update_layout(
        **LAYOUT, height=380,
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=50),
        title=(title if title is not None else f"Accuracy under PGD ({nname})") or None,
        xaxis_title=f"ε, {nname}{unit}", yaxis_title="accuracy (%)",
        yaxis=dict(range=[-2, 102]), legend=dict(title="model"),
    )
    return fig


def pag_grid_figure(
    images: Mapping[str, object],
    class_names: Optional[Sequence[str]] = None,
    *,
    x=None,
    classes: Optional[Sequence[int]] = None,
    probs: Optional[Mapping[str, object]] = None,
    eps: Optional[Mapping[str, object]] = None,
    eps_max: Optional[float] = None,
    panel_size: int = 80,
    title: Optional[str] = None,
) -> go.Figure:
    """The "perceptually aligned gradients" grid (docs/methods.md section 2): one row per model,
    one column per target class (plus the clean image first when ``x`` is given); the
    model's name stands vertically left of its row (the first panel's y-axis title).

    Args:
        images: model name -> (K, C, H, W) in [0, 1], from
            :func:`gradviz.attacks.targeted_class_sweep`.
        class_names: class index -> name; default the index.
        x: the clean image (C, H, W) or (1, C, H, W); drawn as column 0 when given.
        classes: the K target classes of the columns (default 0..K-1).
        probs: model name -> (K,) the model's probability of each target class on its
            attacked image (second line of each title, in %).
        eps: model name -> (K,) the radius each image was attacked with: the smallest eps
            that reaches its target (:func:`gradviz.attacks.smallest_target_eps`), NaN where
            none did. Second line of each title: ``"ε 2.5 · 61 %"``, or ``"none ≤ ε 10"`` (with
            ``eps_max``, the grid's largest eps) where the target was not reached.
        eps_max: the largest eps tried (for the "not reached" titles).
        panel_size: side of a panel in pixels (>= 30), default 80.
        title: figure title (None: a default; "": none).

    Returns:
        ``go.Figure`` with (K + [x given]) traces per model, row by row.

    Raises:
        ValueError: no model, K that differ between models, or not (K, C, H, W) arrays.
    """
    if panel_size < 30:
        raise ValueError(f"panel_size must be >= 30 pixels; got {panel_size}")
    if not images:
        raise ValueError("images must hold at least one model's sweep")
    arrs = {k: as_array(v) for k, v in images.items()}
    shapes = {v.shape for v in arrs.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4:
        raise ValueError(f"every sweep must be one (K, C, H, W) array of the same shape; got {shapes}")
    k_cls = next(iter(shapes))[0]
    classes = list(range(k_cls)) if classes is None else [int(c) for c in classes]
    if len(classes) != k_cls:
        raise ValueError(f"{len(classes)} classes for {k_cls} columns")
    x0 = chw(x, "x", channels=(1, 3)) if x is not None else None
    names = list(arrs)
    rows, cols = len(names), k_cls + (x0 is not None)
    two_lines = bool(probs) or bool(eps)
    gap_x, gap_y = 6, 46 if two_lines else 30
    top = (70 if two_lines else 56) + (30 if title != "" else 0)
    margin = dict(l=40, r=16, t=top, b=16)  # room for the model names left of each row
    plot_w = cols * panel_size + (cols - 1) * gap_x
    plot_h = rows * panel_size + (rows - 1) * gap_y
    titles = []
    for name in names:
        p = as_array(probs[name]).reshape(-1) if probs and name in probs else None
        e = as_array(eps[name]).reshape(-1) if eps and name in eps else None
        if x0 is not None:
            titles.append("x")
        for j, c in enumerate(classes):
            t = f"→ {class_name(class_names, c)}"
            second = []
            if e is not None:
                if math.isfinite(float(e[j])):
                    second.append(f"ε {float(e[j]):g}")
                else:
                    second.append("none ≤ ε " + (f"{float(eps_max):g}" if eps_max is not None else "max"))
            if p is not None:
                second.append(f"{100 * p[j]:.0f} %")
            if second:
                t += "<br>" + " · ".join(second)
            titles.append(t)
    traces = []
    for i, name in enumerate(names):
        panels = ([(x0, "x")] if x0 is not None else []) + [
            (arrs[name][j], f"{short_model_name(name)} → {class_name(class_names, c)}") for j, c in enumerate(classes)]
        traces += [image_trace_spec(img, label, **grid_axes(i * cols + j + 1)) for j, (img, label) in enumerate(panels)]
    layout = image_grid_layout(rows, cols, titles=titles, title_size=11,
                               h_spacing=gap_x / plot_w if cols > 1 else 0.0,
                               v_spacing=gap_y / plot_h if rows > 1 else 0.0)
    for i, name in enumerate(names):  # the model's name, vertical, left of its row
        axis = layout["yaxis" + ("" if i == 0 else str(i * cols + 1))]
        axis["title"] = dict(text=f"<b>{short_model_name(name)}</b>", standoff=4, font=dict(size=12))
    width, height = plot_w + margin["l"] + margin["r"], plot_h + margin["t"] + margin["b"]
    if title is None:
        title = "Large-eps targeted l_2 PGD toward each class (perceptually aligned gradients)"
    return go.Figure(data=traces, layout=dict(
        layout, width=width, height=height, margin=margin, **LAYOUT,
        title=dict(text=title, x=0, xref="paper", y=1 - 12 / height, yanchor="top",
                   font=dict(size=14)) if title else None))
