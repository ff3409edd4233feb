"""Plotly figure builders of the Attack page (arrays in, ``go.Figure`` out) and the numbers
behind them. To be merged into :mod:`gradviz.figures` later.

* :func:`attack_panels_figure`: per model, x | x_adv | the perturbation (diverging scale
  centred on 0, amplified, the factor in the labels), titled with the predictions.
* :func:`loss_trace_figure`: the loss per PGD step, one line per model.
* :func:`accuracy_vs_eps_figure`: accuracy-vs-eps curves with the 50 % line and eps50.
* :func:`pag_grid_figure`: the "perceptually aligned gradients" grid, one row per model,
  one column per target class.
* :func:`curves_to_csv`, :func:`attack_to_npz`, :func:`sweep_to_npz`: the numbers.

Figures export with :func:`gradviz.figures.figure_to_bytes` (PNG/SVG/PDF/HTML).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradviz.figures import PALETTE, as_array as _np, class_name as _cls, short_model_name as _short

if TYPE_CHECKING:
    from gradviz.attacks import AttackResult

__all__ = [
    "accuracy_vs_eps_figure",
    "attack_panels_figure",
    "attack_to_npz",
    "curves_to_csv",
    "loss_trace_figure",
    "pag_grid_figure",
    "sweep_to_npz",
]

#: Diverging colour scale of signed maps (blue negative, white 0, red positive); the same as
#: :data:`gradviz.figures.DIVERGING_COLORSCALE`.
DIVERGING_COLORSCALE = "RdBu_r"
_FONT = "Inter, Helvetica, Arial, sans-serif"
_WRONG = "#b2182b"



def _chw(a, what: str) -> np.ndarray:
    a = _np(a)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"{what} must be one image (C, H, W) with C = 1 or 3, got shape {a.shape}")
    return a


def _image_trace(img: np.ndarray, name: str) -> go.BaseTraceType:
    """A (C, H, W) image in [0, 1]: grayscale heatmap (C = 1) or RGB image (C = 3)."""
    if img.shape[0] == 3:
        rgb = np.clip(np.round(img.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
        return go.Image(z=rgb, name=name, hovertemplate=f"x %{{x}}, y %{{y}}<br>RGB %{{z}}<extra>{name}</extra>")
    return go.Heatmap(z=img[0], colorscale="gray", zmin=0.0, zmax=1.0, showscale=False, name=name,
                      hovertemplate=f"x %{{x}}, y %{{y}}<br>pixel %{{z:.3f}}<extra>{name}</extra>")


def _image_axes(fig: go.Figure, n_panels: int) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     constrain="domain", showline=True, linecolor="#bbbbbb", mirror=True)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     autorange="reversed", constrain="domain", showline=True,
                     linecolor="#bbbbbb", mirror=True)
    for k in range(1, n_panels + 1):
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    for ann in fig.layout.annotations:
        ann.font = dict(size=12, family=_FONT)


def _pred_text(pred: Optional[tuple], class_names, label: Optional[int]) -> str:
    if pred is None:
        return ""
    k, conf = int(pred[0]), float(pred[1])
    text = f"{_cls(class_names, k)} ({100 * conf:.1f} %)"
    if label is not None and label >= 0 and k != label:
        text = f"<span style='color:{_WRONG}'>{text}</span>"
    return text


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
    the channels), clipped to [-1, 1], on :data:`DIVERGING_COLORSCALE` centred on 0
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
    x0 = _chw(x, "x")
    adv = {k: _chw(v, f"x_adv[{k!r}]") for k, v in x_adv.items()}
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
        b = _pred_text((before or {}).get(k), class_names, label)
        a = _pred_text((after or {}).get(k), class_names, label)
        titles += [f"{_short(k)}: x → {b}" if b else f"{_short(k)}: x",
                   f"x_adv → {a}" if a else "x_adv",
                   f"(x_adv − x) × {amplify:.3g}{channel_note}"]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=gap_x / plot_w, vertical_spacing=gap_y / plot_h if rows > 1 else 0.0)
    for i, k in enumerate(names):
        fig.add_trace(_image_trace(x0, "x"), row=i + 1, col=1)
        fig.add_trace(_image_trace(adv[k], f"x_adv {_short(k)}"), row=i + 1, col=2)
        d = deltas[k]
        fig.add_trace(go.Heatmap(
            z=np.clip(amplify * d, -1, 1), customdata=d, coloraxis="coloraxis", name=f"perturbation {_short(k)}",
            hovertemplate=("x %{x}, y %{y}<br>x_adv − x = %{customdata:.4f}<br>"
                           f"shown (× {amplify:.3g}) %{{z:.3f}}<extra>{_short(k)}</extra>"),
        ), row=i + 1, col=3)
    _image_axes(fig, rows * cols)
    if title is None:
        what = f"label {_cls(class_names, label)}" if label is not None else "label unknown"
        title = f"PGD attack · {what}" + (f" · target {_cls(class_names, int(target))}" if target is not None else "")
    width, height = plot_w + margin["l"] + margin["r"], plot_h + margin["t"] + margin["b"]
    fig.update_layout(
        width=width, height=height, margin=margin, template="plotly_white",
        font=dict(family=_FONT, size=12),
        title=dict(text=title, x=0, xref="paper", y=1 - 12 / height, yanchor="top",
                   font=dict(size=14)) if title else None,
        coloraxis=dict(
            colorscale=DIVERGING_COLORSCALE, cmid=0.0, cmin=-1.0, cmax=1.0,
            colorbar=dict(title=dict(text=f"δ × {amplify:.3g}<br>(±1 = ±{1 / amplify:.3g})", side="top"),
                          lenmode="pixels", len=min(plot_h, 320), y=1, yanchor="top", thickness=14,
                          x=1 + 18 / plot_w, xanchor="left", outlinewidth=0),
        ),
    )
    fig.layout.meta = {"amplify": amplify}
    return fig


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
    fig = go.Figure()
    for i, (name, loss) in enumerate(losses.items()):
        arr = _np(loss)
        if arr.ndim == 2:
            arr = arr.mean(1)
        if arr.ndim != 1:
            raise ValueError(f"losses[{name!r}] must be (steps + 1,) or (steps + 1, N), got {arr.shape}")
        fig.add_trace(go.Scatter(
            x=np.arange(len(arr)), y=arr, mode="lines+markers", name=_short(name),
            line=dict(color=PALETTE[i % len(PALETTE)]), marker=dict(size=4),
            hovertemplate=f"step %{{x}}<br>loss %{{y:.4g}}<extra>{_short(name)}</extra>",
        ))
    what = "cross-entropy w.r.t. the target (falls)" if targeted else "cross-entropy w.r.t. the label (rises)"
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12), height=340,
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=50),
        title=(title if title is not None else "Loss per PGD step") or None,
        xaxis_title="PGD step", yaxis_title=what, yaxis_type="log" if log_y else "linear",
        legend=dict(title="model"),
    )
    return fig


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
    grid = _np(eps_grid).reshape(-1)
    if not curves:
        raise ValueError("curves must hold at least one model's accuracies")
    scale, unit = (255.0, " (/255)") if per_255 else (1.0, " ([0, 1] pixel units)")
    fig = go.Figure()
    for i, (name, acc) in enumerate(curves.items()):
        a = _np(acc).reshape(-1)
        if a.shape != grid.shape:
            raise ValueError(f"curve {name!r} has {a.size} points for a grid of {grid.size}")
        fig.add_trace(go.Scatter(
            x=grid * scale, y=100 * a, mode="lines+markers", name=_short(name),
            line=dict(color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"eps %{{x:.4g}}<br>accuracy %{{y:.1f}} %<extra>{_short(name)}</extra>",
        ))
    fig.add_trace(go.Scatter(x=[grid.min() * scale, grid.max() * scale], y=[50, 50], mode="lines",
                             line=dict(color="#888888", dash="dash", width=1), name="50 %",
                             hoverinfo="skip", showlegend=False))
    for i, name in enumerate(curves):
        e = (eps50 or {}).get(name)
        if e is None or not math.isfinite(e):
            continue
        fig.add_trace(go.Scatter(
            x=[e * scale], y=[50], mode="markers", name=f"eps50 {_short(name)}", showlegend=False,
            marker=dict(symbol="x", size=11, color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"eps50 %{{x:.4g}}<extra>{_short(name)}</extra>",
        ))
    nname = {"linf": "l∞", "l2": "l2"}.get(norm, norm)
    fig.update_layout(
        template="plotly_white", font=dict(family=_FONT, size=12), height=380,
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
    arrs = {k: _np(v) for k, v in images.items()}
    shapes = {v.shape for v in arrs.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4:
        raise ValueError(f"every sweep must be one (K, C, H, W) array of the same shape; got {shapes}")
    k_cls = next(iter(shapes))[0]
    classes = list(range(k_cls)) if classes is None else [int(c) for c in classes]
    if len(classes) != k_cls:
        raise ValueError(f"{len(classes)} classes for {k_cls} columns")
    x0 = _chw(x, "x") if x is not None else None
    names = list(arrs)
    rows, cols = len(names), k_cls + (x0 is not None)
    gap_x, gap_y = 6, 46 if probs else 30
    top = (70 if probs else 56) + (30 if title != "" else 0)
    margin = dict(l=40, r=16, t=top, b=16)  # room for the model names left of each row
    plot_w = cols * panel_size + (cols - 1) * gap_x
    plot_h = rows * panel_size + (rows - 1) * gap_y
    titles = []
    for name in names:
        p = _np(probs[name]).reshape(-1) if probs and name in probs else None
        if x0 is not None:
            titles.append("x")
        for j, c in enumerate(classes):
            t = f"→ {_cls(class_names, c)}"
            if p is not None:
                t += f"<br>{100 * p[j]:.0f} %"
            titles.append(t)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=gap_x / plot_w if cols > 1 else 0.0,
                        vertical_spacing=gap_y / plot_h if rows > 1 else 0.0)
    for i, name in enumerate(names):
        offset = 0
        if x0 is not None:
            fig.add_trace(_image_trace(x0, "x"), row=i + 1, col=1)
            offset = 1
        for j, c in enumerate(classes):
            fig.add_trace(_image_trace(arrs[name][j], f"{_short(name)} → {_cls(class_names, c)}"),
                          row=i + 1, col=j + 1 + offset)
    _image_axes(fig, rows * cols)
    for i, name in enumerate(names):  # the model's name, vertical, left of its row
        fig.update_yaxes(title=dict(text=f"<b>{_short(name)}</b>", standoff=4, font=dict(size=12)),
                         row=i + 1, col=1)
    for ann in fig.layout.annotations:
        ann.font = dict(size=11, family=_FONT)
    width, height = plot_w + margin["l"] + margin["r"], plot_h + margin["t"] + margin["b"]
    if title is None:
        title = "Large-eps targeted l_2 PGD toward each class (perceptually aligned gradients)"
    fig.update_layout(width=width, height=height, margin=margin, template="plotly_white",
                      font=dict(family=_FONT, size=12),
                      title=dict(text=title, x=0, xref="paper", y=1 - 12 / height, yanchor="top",
                                 font=dict(size=14)) if title else None)
    return fig


# ----------------------------------------------------------------------------- numbers


def curves_to_csv(eps_grid, curves: Mapping[str, object], eps50: Optional[Mapping[str, float]] = None) -> bytes:
    """Accuracy-vs-eps curves as CSV bytes: columns ``eps`` then one per model (accuracy in
    [0, 1]); with ``eps50``, a last row ``eps50`` (``inf``: never crosses 50 % in the grid)."""
    grid = _np(eps_grid).reshape(-1)
    names = list(curves)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["eps", *names])
    cols = [_np(curves[n]).reshape(-1) for n in names]
    for g, e in enumerate(grid):
        w.writerow([f"{e:.6g}", *(f"{c[g]:.6g}" for c in cols)])
    if eps50 is not None:
        w.writerow(["eps50", *(f"{float(eps50.get(n, float('nan'))):.6g}" for n in names)])
    return buf.getvalue().encode("utf-8")


def attack_to_npz(results: Mapping[str, "AttackResult"]) -> bytes:
    """The numbers of one attack per model as ``.npz`` bytes (no pickled objects).

    Keys (M models in order, N images, C x H x W, K classes, S steps): ``model_names`` (M,);
    ``x`` (N, C, H, W); ``labels``, ``y`` (N,) int64; ``x_adv`` (M, N, C, H, W);
    ``probs_before``, ``probs_after`` (M, N, K); ``loss``, ``norm`` (M, S + 1, N);
    ``logits`` (M, S + 1, N, K); ``settings`` 0-d str (JSON per model).
    """
    names = list(results)
    if not names:
        raise ValueError("results must hold at least one model's attack")
    first = results[names[0]]

    def stack(f) -> np.ndarray:
        return np.stack([f(results[n]).numpy() for n in names]).astype(np.float32)

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        model_names=np.array(names, dtype=str),
        x=first.x.numpy().astype(np.float32),
        labels=first.labels.numpy().astype(np.int64),
        y=first.y.numpy().astype(np.int64),
        x_adv=stack(lambda r: r.x_adv),
        probs_before=stack(lambda r: r.probs_before),
        probs_after=stack(lambda r: r.probs_after),
        loss=stack(lambda r: r.trace.loss),
        norm=stack(lambda r: r.trace.norm),
        logits=stack(lambda r: r.trace.logits),
        settings=np.array(json.dumps({n: results[n].settings for n in names})),
    )
    return buf.getvalue()


def sweep_to_npz(x, images: Mapping[str, object], classes: Sequence[int], settings: Optional[dict] = None) -> bytes:
    """A PAG sweep as ``.npz`` bytes: ``x`` (C, H, W), ``model_names`` (M,), ``classes``
    (K,) int64, ``images`` (M, K, C, H, W) float32, ``settings`` 0-d str (JSON)."""
    names = list(images)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        x=_chw(x, "x").astype(np.float32),
        model_names=np.array(names, dtype=str),
        classes=np.asarray(list(classes), dtype=np.int64),
        images=np.stack([_np(images[n]) for n in names]).astype(np.float32),
        settings=np.array(json.dumps(settings or {})),
    )
    return buf.getvalue()
