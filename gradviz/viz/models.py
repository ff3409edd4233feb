"""The Models page's figures (log entries in, ``go.Figure`` out): a model's training
curves, AGR's gradient diagnostics (docs/methods.md section 5), the input-gradient cosines the
gradient-shaping objectives optimise (IGD, PAG, L_alpha), the live loss of a run, and the
per-epoch input-gradient snapshots of a run (:mod:`gradviz.training.snapshots`): one epoch
(:func:`snapshot_grid_figure`), chosen epochs for a paper (:func:`snapshot_strip_figure`) and
all epochs as an animation (:func:`snapshot_animation_figure`).

The inputs are a card's ``log`` (one dict per epoch, see :func:`gradviz.training.train`):
keys that a log lacks (an older card, another method) are left out of the figure. The
snapshot figures take :class:`gradviz.training.snapshots.Snapshots` (arrays) by model name.
Their numbers: :func:`gradviz.viz.export.snapshots_to_npz`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradviz.attribution import SCALINGS, reduce_channels, scale_maps
from gradviz.viz.common import class_name, image_axis, image_trace, prediction_text, short_model_name
from gradviz.viz.style import DIVERGING_COLORSCALE, FONT, LAYOUT

if TYPE_CHECKING:
    from gradviz.training.snapshots import Snapshots

__all__ = [
    "GRADIENT_COSINES", "agr_diagnostics_figure", "epoch_accuracies", "gradient_cosines_figure",
    "has_agr_diagnostics", "has_gradient_cosines", "live_loss_figure", "snapshot_animation_figure",
    "snapshot_epochs", "snapshot_grid_figure", "snapshot_images", "snapshot_strip_figure", "training_curves_figure",
]

#: Loss-like log keys: (key, legend name, colour).
_LOSSES = (
    ("loss", "training loss (the objective)", "#1f77b4"),
    ("ce", "cross-entropy part", "#17becf"),
    ("kl", "KL part (TRADES)", "#9467bd"),
    ("clean_ce", "clean cross-entropy (AGR's g_cl)", "#8c564b"),
)
#: Accuracy-like log keys (fractions): (key, legend name, colour, dash).
_ACCURACIES = (
    ("accuracy", "train, clean (running mean)", "#2ca02c", "dot"),
    ("adv_accuracy", "train, adversarial (running mean)", "#d62728", "dot"),
    ("monitor_clean_accuracy", "held-out, clean", "#2ca02c", "solid"),
    ("monitor_robust_accuracy", "held-out, robust", "#d62728", "solid"),
)

#: Per-epoch input-gradient cosines that the gradient-shaping objectives log (the epoch mean
#: of per-image cosines over C*H*W, in [-1, 1]): (key, legend name, colour, dash).
GRADIENT_COSINES = (
    ("cos", "IGD: cos(student, teacher gradient of the true class's CE)", "#9467bd", "solid"),
    ("pag_cos", "PAG: cos(grad log p_c, g_c), mean over all K classes", "#ff7f0e", "solid"),
    ("pag_cos_true", "PAG: the same, own class c = y only", "#ff7f0e", "dot"),
    ("alpha", "L_alpha: alpha = cos(grad CE direction, GAN residual)", "#2ca02c", "solid"),
)


def _series(log: Sequence[dict], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for i, e in enumerate(log):
        v = e.get(key)
        if isinstance(v, (int, float)) and v == v:  # skip None and NaN
            xs.append(e.get("epoch", i + 1))
            ys.append(float(v))
    return xs, ys


def _two_panel_layout(fig: go.Figure, title: Optional[str], default: str, *, height: int) -> go.Figure:
    """The layout of a two-panel per-epoch figure: x axes titled "epoch", the title
    (None: ``default``; "": none), the legend below."""
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(
        **LAYOUT, height=height,
        title=(title if title is not None else default) or None,
        margin=dict(l=60, r=20, t=70 if title != "" else 40, b=60),
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
    )
    return fig


def training_curves_figure(log: Sequence[dict], *, title: Optional[str] = None,
                           monitor: Optional[dict] = None, mark_epoch: Optional[int] = None) -> go.Figure:
    """A model's learning curves: loss (left) and accuracies in % (right) per epoch.

    Args:
        log: per-epoch entries (``epoch``, ``loss``, ``accuracy``, ``adv_accuracy``,
            ``monitor_clean_accuracy``, ``monitor_robust_accuracy``, ... as present).
        title: figure title (None: "Training curves"; "": none).
        monitor: the card's ``training["monitor_settings"]`` (names the held-out images and
            the attack in the legend).
        mark_epoch: an epoch to mark with a dashed vertical line in both panels (the epoch
            the snapshots show); None (default): no line.

    Returns:
        ``go.Figure`` with one line per key found (legend names say which).

    Raises:
        ValueError: an empty log.
    """
    if not log:
        raise ValueError("the log is empty: no training curves to draw")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy (%)"), horizontal_spacing=0.1)
    for key, name, colour in _LOSSES:
        xs, ys = _series(log, key)
        if xs and not (key == "ce" and ys == _series(log, "loss")[1]):
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line=dict(color=colour),
                                     hovertemplate="epoch %{x}<br>%{y:.4f}<extra>" + name + "</extra>"), 1, 1)
    suffix = {}
    if monitor:
        n = f"{monitor.get('n_images', '?')} test images"
        attack = monitor.get("attack") or {}
        suffix = {"monitor_clean_accuracy": f" ({n})",
                  "monitor_robust_accuracy": f" ({n}, PGD-{attack['steps']} eps {attack['eps']:g})" if attack
                  else f" ({n})"}
    for key, name, colour, dash in _ACCURACIES:
        xs, ys = _series(log, key)
        if xs:
            label = name + suffix.get(key, "")
            fig.add_trace(go.Scatter(x=xs, y=[100 * y for y in ys], mode="lines+markers", name=label,
                                     line=dict(color=colour, dash=dash),
                                     hovertemplate="epoch %{x}<br>%{y:.1f} %<extra>" + name + "</extra>"), 1, 2)
    fig.update_yaxes(range=[-2, 102], row=1, col=2)
    if mark_epoch is not None:
        for col in (1, 2):
            fig.add_vline(x=mark_epoch, line=dict(color="#888888", dash="dash", width=1), row=1, col=col)
    return _two_panel_layout(fig, title, "Training curves", height=380)


def has_agr_diagnostics(log: Sequence[dict]) -> bool:
    """Whether the log holds AGR's per-epoch diagnostics (``agr_cos``, ``agr_gop_rate``)."""
    return any("agr_cos" in e for e in log or ())


def agr_diagnostics_figure(log: Sequence[dict], *, start_epoch: Optional[int] = None,
                           title: Optional[str] = None) -> go.Figure:
    """AGR's diagnostics per epoch (docs/methods.md section 5): the mean cosine between the
    adversarial and clean parameter gradients and the GOP rate (fraction of parameter
    tensors with cos <= 0, projected) on the left; the mean per-tensor gradient norms
    |g_adv|, |g_cl| and |g| (the one used, after projection / interpolation and the clip) on
    the right.

    Args:
        log: per-epoch entries with ``agr_cos``, ``agr_gop_rate``, ``agr_norm_adv``,
            ``agr_norm_clean``, ``agr_norm``.
        start_epoch: AGR's first epoch (a dashed line marks it; before it g = g_adv).
        title: figure title (None: "AGR diagnostics"; "": none).

    Returns:
        ``go.Figure`` with one line per key found (cosines in [-1, 1]; norms on a log axis).

    Raises:
        ValueError: no AGR diagnostics in the log.
    """
    if not has_agr_diagnostics(log):
        raise ValueError("the log holds no AGR diagnostics (agr_cos, agr_gop_rate)")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("cos(g_adv, g_cl) and GOP rate", "mean gradient norm per tensor"))
    for key, name, colour, col in (
        ("agr_cos", "mean cosine", "#1f77b4", 1),
        ("agr_gop_rate", "GOP rate (cos <= 0)", "#ff7f0e", 1),
        ("agr_norm_adv", "|g_adv|", "#d62728", 2),
        ("agr_norm_clean", "|g_cl|", "#2ca02c", 2),
        ("agr_norm", "|g| used", "#9467bd", 2),  # not the cosine's blue: one colour, one quantity
    ):
        xs, ys = _series(log, key)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line=dict(color=colour),
                                     hovertemplate="epoch %{x}<br>%{y:.4g}<extra>" + name + "</extra>"), 1, col)
    if start_epoch is not None:
        for col in (1, 2):
            fig.add_vline(x=start_epoch - 0.5, line=dict(color="#888888", dash="dash", width=1), row=1, col=col)
        fig.add_annotation(x=start_epoch - 0.5, y=1.02, xref="x", yref="y domain", text="AGR on",
                           showarrow=False, xanchor="left", font=dict(size=11, color="#555555"))
    fig.update_yaxes(range=[-1.05, 1.05], row=1, col=1)
    fig.update_yaxes(type="log", dtick="D2", row=1, col=2)
    return _two_panel_layout(fig, title, "AGR diagnostics", height=360)


def has_gradient_cosines(log: Sequence[dict]) -> bool:
    """Whether the log holds any of :data:`GRADIENT_COSINES` (IGD, PAG and L_alpha runs)."""
    keys = {key for key, *_ in GRADIENT_COSINES}
    return any(keys & set(e) for e in log or ())


def gradient_cosines_figure(log: Sequence[dict], *, title: Optional[str] = None) -> go.Figure:
    """The input-gradient cosine a gradient-shaping objective pulls up, per epoch (epoch mean
    over training batches, in [-1, 1]): IGD's student-teacher cosine (Duan et al.; docs/methods.md
    section 3), PAG's cosine with the target gradients g_c (Ganz et al., section 2; the
    objective's mean over all classes, and the own class alone) and L_alpha's alpha with the
    GAN residuals (Bigolin Lanfredi et al., Eq. 9, section 1).

    Args:
        log: per-epoch entries; the keys of :data:`GRADIENT_COSINES` it holds are drawn.
        title: figure title (None: "Input-gradient alignment while training"; "": none).

    Returns:
        ``go.Figure`` with one line per key found, y in [-1, 1].

    Raises:
        ValueError: the log holds none of those keys.
    """
    if not has_gradient_cosines(log):
        raise ValueError("the log holds no input-gradient cosine (cos, pag_cos, pag_cos_true, alpha)")
    fig = go.Figure()
    for key, name, colour, dash in GRADIENT_COSINES:
        xs, ys = _series(log, key)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line=dict(color=colour, dash=dash),
                                     hovertemplate="epoch %{x}<br>%{y:.3f}<extra>" + key + "</extra>"))
    fig.add_hline(y=0, line=dict(color="#aaaaaa", width=1))
    fig.update_layout(
        **LAYOUT, height=340,
        title=(title if title is not None else "Input-gradient alignment while training") or None,
        xaxis_title="epoch", yaxis=dict(title="mean cosine", range=[-1.05, 1.05]),
        margin=dict(l=60, r=20, t=60 if title != "" else 30, b=60),
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0),
    )
    return fig


def live_loss_figure(losses: Sequence[tuple[float, float]], epochs: int, *,
                     log: Sequence[dict] = (), title: Optional[str] = None) -> go.Figure:
    """The loss of a running training: one point per batch (x in epochs), and each finished
    epoch's mean.

    Args:
        losses: (fraction of the training in [0, 1], batch loss) pairs.
        epochs: the run's number of epochs (x axis 0..epochs).
        log: the finished epochs' entries (their ``loss`` is drawn at the epoch's end).
        title: figure title (None: "Loss while training"; "": none).

    Returns:
        ``go.Figure``: the batch losses, then (once an epoch has finished) the epoch means.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[f * epochs for f, _ in losses], y=[v for _, v in losses], mode="lines",
                             name="batch loss", line=dict(color="#9ecae1", width=1),
                             hovertemplate="epoch %{x:.2f}<br>loss %{y:.4f}<extra></extra>"))
    xs, ys = _series(log, "loss")
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name="epoch mean",
                                 line=dict(color="#1f77b4"),
                                 hovertemplate="epoch %{x}<br>mean loss %{y:.4f}<extra></extra>"))
    fig.update_layout(
        **LAYOUT, height=300,
        title=(title if title is not None else "Loss while training") or None,
        xaxis=dict(title="epoch", range=[0, max(epochs, 1)]), yaxis_title="loss",
        margin=dict(l=60, r=20, t=50 if title != "" else 20, b=50), showlegend=True,
    )
    return fig


# ----------------------------------------------------------------------- training snapshots

#: The colour bar's title for each scaling of the snapshot figures (``scaling=``, as
#: :func:`gradviz.attribution.scale_maps`).
_SNAPSHOT_SCALING_TITLES = {
    "per_panel": "gradient<br>÷ panel max |·|",
    "shared": "gradient<br>÷ image max |·|",
    "raw": "gradient<br>(raw)",
}
_SCALING_WORDS = {"per_panel": "per-panel", "shared": "shared per image", "raw": "raw"}


def snapshot_epochs(runs: Mapping[str, "Snapshots"]) -> list[int]:
    """The epochs of which at least one of ``runs`` (model name -> snapshots) has a
    snapshot, ascending (0: before training)."""
    return sorted({int(e) for s in runs.values() for e in s.epochs})


def _finite(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def epoch_accuracies(log: Sequence[dict], epoch: int) -> tuple[Optional[float], Optional[float]]:
    """The held-out clean and robust accuracy (fractions in [0, 1]) measured after
    ``epoch`` (a log entry's ``monitor_clean_accuracy`` / ``monitor_robust_accuracy``);
    None for each one not measured (epoch 0, a run without monitor, an older card)."""
    for i, entry in enumerate(log or ()):
        if int(entry.get("epoch", i + 1)) == int(epoch):
            return _finite(entry.get("monitor_clean_accuracy")), _finite(entry.get("monitor_robust_accuracy"))
    return None, None


def _accuracy_text(log: Sequence[dict], epoch: int, monitor: Optional[dict]) -> str:
    """`` · held-out clean 97.0 %, robust (PGD-10 eps 0.05) 80.0 %`` (the parts measured)."""
    clean, robust = epoch_accuracies(log, epoch)
    parts = []
    if clean is not None:
        parts.append(f"clean {100 * clean:.1f} %")
    if robust is not None:
        attack = (monitor or {}).get("attack") or {}
        how = f" (PGD-{attack['steps']} eps {attack['eps']:g})" if "steps" in attack and "eps" in attack else ""
        parts.append(f"robust{how} {100 * robust:.1f} %")
    return " · held-out " + ", ".join(parts) if parts else ""


def snapshot_images(runs: Mapping[str, "Snapshots"], images: Optional[Sequence[int]] = None
                    ) -> tuple["Snapshots", list[int]]:
    """Check that ``runs`` (model name -> snapshots) can be drawn side by side: at least one,
    each with a snapshot, all of the same images. Returns the first run and the positions
    among its K images to draw (``images``, default all K).

    Raises:
        ValueError: no runs; a run without any snapshot; runs of different images (another
            dataset, other snapshot images); a position outside 0..K-1 or none.
    """
    if not runs:
        raise ValueError("no snapshots to draw: give at least one model's snapshots")
    first_name, first = next(iter(runs.items()))
    for name, s in runs.items():
        if s.n_epochs == 0:
            raise ValueError(f"{name} has no snapshot yet")
        if (s.images.shape != first.images.shape or not np.array_equal(s.labels, first.labels)
                or not np.array_equal(s.images, first.images)):
            raise ValueError(f"the snapshots of {name} and {first_name} are of different images "
                             f"({s.dataset}, test images {s.indices.tolist()} vs {first.dataset}, "
                             f"{first.indices.tolist()}): they cannot be compared side by side")
    k = int(first.labels.shape[0])
    cols = list(range(k)) if images is None else [int(i) for i in images]
    if not cols or any(not 0 <= i < k for i in cols):
        raise ValueError(f"images must be positions in 0..{k - 1} (the {k} snapshot images); got {images}")
    return first, cols


def _snapshot_maps(runs: Mapping[str, "Snapshots"], keys: Sequence[tuple[str, int]], cols: Sequence[int],
                   scaling: str) -> tuple[dict, dict, float]:
    """(model, epoch) -> (K', H, W) channel-summed gradient, before and after ``scaling``
    (over all ``keys``: "shared" divides each image by its largest |value| over them; a
    (model, epoch) without a snapshot is left out), and the colour range's peak."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; valid scalings: {list(SCALINGS)}")
    raw = {}
    for name, epoch in dict.fromkeys(keys):
        rows = np.flatnonzero(runs[name].epochs == int(epoch))
        if rows.size:
            g = runs[name].input_gradients[int(rows[0])][cols].astype(np.float32)
            raw[(name, epoch)] = reduce_channels(g, "sum")[:, 0].numpy()
    if scaling == "raw":
        peak = max((float(np.abs(m).max()) for m in raw.values()), default=0.0)
        return raw, raw, peak if peak > 0 else 1.0
    shown = scale_maps(list(raw.values()), scaling) if raw else []
    return raw, {k: v.numpy() for k, v in zip(raw, shown)}, 1.0


@dataclass(frozen=True)
class _Geometry:
    """Pixel layout of a snapshot figure: ``n_rows`` rows (a header line, a row of
    ``n_cols`` square panels, a caption line under each panel)."""

    n_rows: int
    n_cols: int
    panel: int
    title_lines: int
    bottom: int = 16
    head: int = 20
    caption: int = 18
    gap_x: int = 8
    gap_y: int = 6
    left: int = 10

    @property
    def plot_w(self) -> int:
        return self.n_cols * self.panel + (self.n_cols - 1) * self.gap_x

    @property
    def row_h(self) -> int:
        return self.head + self.panel + self.caption

    @property
    def plot_h(self) -> int:
        return self.n_rows * self.row_h + (self.n_rows - 1) * self.gap_y

    @property
    def margin(self) -> dict:
        right = max(110, 600 - self.plot_w - self.left)  # room for the colour bar and long headers
        return dict(l=self.left, r=right, t=20 + 20 * self.title_lines, b=self.bottom)

    @property
    def width(self) -> int:
        return self.plot_w + self.margin["l"] + self.margin["r"]

    @property
    def height(self) -> int:
        return self.plot_h + self.margin["t"] + self.margin["b"]

    def x(self, col: int) -> tuple[float, float]:
        left = col * (self.panel + self.gap_x)
        return left / self.plot_w, (left + self.panel) / self.plot_w

    def row_top(self, row: int) -> float:
        return 1 - row * (self.row_h + self.gap_y) / self.plot_h

    def y(self, row: int) -> tuple[float, float]:
        top = row * (self.row_h + self.gap_y) + self.head
        return 1 - (top + self.panel) / self.plot_h, 1 - top / self.plot_h


def _snapshot_annotations(g: _Geometry, runs: Mapping[str, "Snapshots"], rows: Sequence[tuple[str, int]],
                          cols: Sequence[int], class_names: Optional[Sequence[str]],
                          logs: Mapping[str, Sequence[dict]], monitors: Mapping[str, dict]) -> list[dict]:
    """Row headers and the caption under each panel (true class; prediction and probability)."""
    first = next(iter(runs.values()))
    out: list[dict] = []

    def header(row: int, text: str) -> None:
        out.append(dict(text=text, x=0, y=g.row_top(row), xref="paper", yref="paper", xanchor="left",
                        yanchor="top", showarrow=False, font=dict(size=12, family=FONT)))

    def caption(row: int, col: int, text: str) -> None:
        x0, x1 = g.x(col)
        out.append(dict(text=text, x=(x0 + x1) / 2, y=g.y(row)[0], xref="paper", yref="paper", xanchor="center",
                        yanchor="top", showarrow=False, font=dict(size=11, family=FONT)))

    header(0, f"<b>input</b> · {first.dataset} {first.split} image #: true class")
    for j, i in enumerate(cols):
        caption(0, j, f"#{int(first.indices[i])}: {class_name(class_names, int(first.labels[i]))}")
    for r, (name, epoch) in enumerate(rows, start=1):
        s, short = runs[name], short_model_name(name)
        when = "before training (epoch 0)" if epoch == 0 else f"epoch {epoch}"
        at = np.flatnonzero(s.epochs == int(epoch))
        if at.size == 0:
            have = s.epochs.tolist()
            span = f"epoch {have[0]}" if len(have) == 1 else f"epochs {have[0]}–{have[-1]}"
            header(r, f"<b>{short}</b> · no snapshot of epoch {epoch} (it has {span})")
            continue
        header(r, f"<b>{short}</b> · {when}{_accuracy_text(logs.get(name, ()), epoch, monitors.get(name))}")
        e = int(at[0])
        for j, i in enumerate(cols):
            pred = (int(s.predictions[e, i]), float(s.probabilities[e, i]))
            caption(r, j, prediction_text(pred, class_names, int(s.labels[i])))
    return out


def _heatmap(shown: Optional[np.ndarray], raw: Optional[np.ndarray], name: str, axis: int, shape) -> go.Heatmap:
    """One gradient panel (an empty one, all None, where the model lacks the epoch)."""
    s = "" if axis == 1 else str(axis)
    if shown is None:
        empty = [[None] * shape[1] for _ in range(shape[0])]
        return go.Heatmap(z=empty, customdata=empty, coloraxis="coloraxis", name=name, xaxis=f"x{s}", yaxis=f"y{s}",
                          hoverinfo="skip")
    return go.Heatmap(z=shown, customdata=raw, coloraxis="coloraxis", name=name, xaxis=f"x{s}", yaxis=f"y{s}",
                      hovertemplate="x %{x}, y %{y}<br>shown %{z:.3f}<br>gradient %{customdata:.3g}"
                                    f"<extra>{name}</extra>")


def _panel_traces(runs, rows, cols, raw, shown) -> list[go.Heatmap]:
    """The gradient heatmaps of ``rows`` (model, epoch), row by row, on axes K'+1, ...."""
    first = next(iter(runs.values()))
    shape = first.images.shape[-2:]
    traces = []
    for r, key in enumerate(rows, start=1):
        for j in range(len(cols)):
            m, v = shown.get(key), raw.get(key)
            traces.append(_heatmap(None if m is None else m[j], None if v is None else v[j],
                                   short_model_name(key[0]), r * len(cols) + j + 1, shape))
    return traces


def _default_snapshot_title(epochs: Sequence[int], scaling: str) -> str:
    which = f"epoch {epochs[0]}" if len(epochs) == 1 else "epochs " + ", ".join(str(e) for e in epochs)
    return (f"Input gradients at {which} · d logit<sub>true class</sub> / d x, signed · "
            f"scaling: {_SCALING_WORDS[scaling]}")


def _snapshot_base(runs, rows, cols, *, keys, class_names, logs, monitors, scaling, panel_size, title, epochs,
                   show_colorbar, bottom=16) -> tuple[go.Figure, _Geometry, dict, dict]:
    """The figure of ``rows`` (model, epoch) under the input row, its geometry, and the maps of
    ``keys`` before and after scaling (shared and raw scales range over ``keys``)."""
    if panel_size < 40:
        raise ValueError(f"panel_size must be >= 40 pixels; got {panel_size}")
    first = next(iter(runs.values()))
    raw, shown, peak = _snapshot_maps(runs, keys, cols, scaling)
    title = _default_snapshot_title(epochs, scaling) if title is None else title
    g = _Geometry(n_rows=1 + len(rows), n_cols=len(cols), panel=int(panel_size), title_lines=1 if title else 0,
                  bottom=bottom)
    fig = go.Figure()
    images = first.images[cols].astype(np.float64)
    for j in range(len(cols)):
        s = "" if j == 0 else str(j + 1)
        fig.add_trace(image_trace(images[j], f"image {j}", hover="input", xaxis=f"x{s}", yaxis=f"y{s}"))
    for trace in _panel_traces(runs, rows, cols, raw, shown):
        fig.add_trace(trace)
    for r in range(g.n_rows):
        for j in range(g.n_cols):
            image_axis(fig, r * g.n_cols + j + 1, g.x(j), g.y(r))
    fig.update_layout(
        **LAYOUT, width=g.width, height=g.height, margin=g.margin, showlegend=False,
        title=dict(text=title, x=0, xref="paper", xanchor="left", y=1 - 12 / g.height, yanchor="top",
                   font=dict(size=14)) if title else None,
        annotations=_snapshot_annotations(g, runs, rows, cols, class_names, logs, monitors),
        coloraxis=dict(
            colorscale=list(DIVERGING_COLORSCALE), cmid=0.0, cmin=-peak, cmax=peak, showscale=show_colorbar,
            colorbar=dict(title=dict(text=_SNAPSHOT_SCALING_TITLES[scaling], side="right"), lenmode="pixels",
                          len=min(g.plot_h, 300), y=1, yanchor="top", thickness=14, x=1 + 14 / g.plot_w,
                          xanchor="left", outlinewidth=0),
        ),
        hoverlabel=dict(font=dict(family=FONT)),
    )
    return fig, g, raw, shown


def snapshot_grid_figure(
    runs: Mapping[str, "Snapshots"],
    epoch: int,
    *,
    logs: Optional[Mapping[str, Sequence[dict]]] = None,
    monitors: Optional[Mapping[str, dict]] = None,
    class_names: Optional[Sequence[str]] = None,
    images: Optional[Sequence[int]] = None,
    scaling: str = "per_panel",
    scale_over: Optional[Sequence[int]] = None,
    panel_size: int = 96,
    title: Optional[str] = None,
    show_colorbar: bool = True,
) -> go.Figure:
    """One epoch of a run's input-gradient snapshots (:mod:`gradviz.training.snapshots`), of
    one or more models side by side: a top row with the K test images, then one row per
    model with its signed gradient of each image's true-class logit after ``epoch``.

    Each row has a header (the model, the epoch, and the held-out clean and robust accuracy
    its ``logs`` entry measured after that epoch: "before training" for epoch 0); under each
    gradient panel the model's prediction and its softmax probability (red when wrong).
    A model without a snapshot of ``epoch`` gets an empty row that says so. All maps share
    one colour axis: :data:`~gradviz.viz.style.DIVERGING_COLORSCALE` with ``cmid = 0`` on
    ``[-m, m]`` (``m = 1`` for per-panel / shared scaling, the largest |gradient| for raw).
    Hovering a map shows the value shown and the gradient before scaling. Multi-channel
    gradients are summed over channels (:func:`gradviz.attribution.reduce_channels`).

    Args:
        runs: model name -> :class:`~gradviz.training.snapshots.Snapshots` of the same images
            (one dataset, the same snapshot images), in row order.
        epoch: the epoch (0: before training).
        logs: model name -> its card's ``log`` (per-epoch entries) for the accuracies; default none.
        monitors: model name -> its card's ``training["monitor_settings"]`` (names the attack).
        class_names: class index -> name; default: the index.
        images: positions among the K snapshot images to draw (default: all K, in order).
        scaling: ``"per_panel"`` (default: each map ÷ its own max |value|, compares shapes),
            ``"shared"`` (each image's maps ÷ one max |value| over the models and the
            ``scale_over`` epochs: compares sizes) or ``"raw"`` (the gradient itself, one
            range over them all); see :func:`gradviz.attribution.scale_maps`.
        scale_over: the epochs that shared and raw scaling range over (e.g. all of a run's,
            so that colours mean the same at every epoch of a slider); default: ``epoch``.
        panel_size: side of each panel in pixels (>= 40). Default 96.
        title: figure title; None (default): the epoch, the gradient and the scaling; "": none.
        show_colorbar: draw the colour bar. Default True.

    Returns:
        ``go.Figure`` with K' image traces, then K' heatmaps per model (row by row), fixed
        width and height in pixels.

    Raises:
        ValueError: no runs, a run without any snapshot, runs of different images, image
            positions out of range, an unknown scaling, ``panel_size`` < 40.
    """
    first, cols = snapshot_images(runs, images)
    names = list(runs)
    over = sorted({int(epoch), *(int(e) for e in (scale_over or ()))})
    fig, *_ = _snapshot_base(runs, [(n, int(epoch)) for n in names], cols,
                            keys=[(n, e) for e in over for n in names], class_names=class_names, logs=logs or {},
                            monitors=monitors or {}, scaling=scaling, panel_size=panel_size, title=title,
                            epochs=[int(epoch)], show_colorbar=show_colorbar)
    return fig


def snapshot_strip_figure(
    runs: Mapping[str, "Snapshots"],
    epochs: Sequence[int],
    *,
    logs: Optional[Mapping[str, Sequence[dict]]] = None,
    monitors: Optional[Mapping[str, dict]] = None,
    class_names: Optional[Sequence[str]] = None,
    images: Optional[Sequence[int]] = None,
    scaling: str = "per_panel",
    panel_size: int = 96,
    title: Optional[str] = None,
    show_colorbar: bool = True,
) -> go.Figure:
    """Chosen epochs of the snapshots stacked in one figure, for a paper (export it as PNG
    with :func:`gradviz.viz.export.figure_to_bytes`): the input row, then for each epoch in
    ``epochs`` one row per model (the models of one epoch next to each other). Rows, headers,
    captions and colours as :func:`snapshot_grid_figure`; shared and raw scaling range over
    the epochs shown.

    Args:
        runs: model name -> snapshots of the same images.
        epochs: the epochs, in row order (at least one; repeats are dropped).
        logs, monitors, class_names, images, scaling, panel_size, show_colorbar: as
            :func:`snapshot_grid_figure`.
        title: None (default): the epochs, the gradient and the scaling; "": none.

    Returns:
        ``go.Figure`` with K' image traces, then K' heatmaps per (epoch, model) row.

    Raises:
        ValueError: no epoch, and as :func:`snapshot_grid_figure`.
    """
    first, cols = snapshot_images(runs, images)
    chosen = list(dict.fromkeys(int(e) for e in epochs))
    if not chosen:
        raise ValueError("choose at least one epoch for the strip")
    rows = [(n, e) for e in chosen for n in runs]
    fig, *_ = _snapshot_base(runs, rows, cols, keys=rows, class_names=class_names, logs=logs or {},
                            monitors=monitors or {}, scaling=scaling, panel_size=panel_size, title=title,
                            epochs=chosen, show_colorbar=show_colorbar)
    return fig


def snapshot_animation_figure(
    runs: Mapping[str, "Snapshots"],
    *,
    epochs: Optional[Sequence[int]] = None,
    start_epoch: Optional[int] = None,
    logs: Optional[Mapping[str, Sequence[dict]]] = None,
    monitors: Optional[Mapping[str, dict]] = None,
    class_names: Optional[Sequence[str]] = None,
    images: Optional[Sequence[int]] = None,
    scaling: str = "per_panel",
    panel_size: int = 96,
    frame_ms: int = 700,
    title: Optional[str] = None,
) -> go.Figure:
    """The snapshots over the epochs as a plotly animation: one frame per epoch (named by
    the epoch), a slider under the panels and Play / Pause buttons; each frame is
    :func:`snapshot_grid_figure` of its epoch (headers, captions and title follow the
    frame). Shared and raw scaling range over every frame, so a colour means the same
    number at every epoch. Save it with :func:`gradviz.viz.export.figure_to_bytes` as
    ``"html"`` (plotly.js embedded, plays offline).

    Args:
        runs: model name -> snapshots of the same images.
        epochs: the frames' epochs (default: every epoch any run has, :func:`snapshot_epochs`).
        start_epoch: the frame shown first (default: the first epoch).
        logs, monitors, class_names, images, scaling, panel_size: as :func:`snapshot_grid_figure`.
        frame_ms: milliseconds per frame when playing (>= 50). Default 700.
        title: a fixed title; None (default): each frame's epoch, the gradient and the scaling.

    Returns:
        ``go.Figure`` with ``frames`` (E), ``layout.sliders`` (one step per epoch) and
        ``layout.updatemenus`` (Play, Pause).

    Raises:
        ValueError: no epoch, a ``start_epoch`` not among them, ``frame_ms`` < 50, and as
            :func:`snapshot_grid_figure`.
    """
    first, cols = snapshot_images(runs, images)
    names = list(runs)
    frames_at = sorted({int(e) for e in epochs}) if epochs is not None else snapshot_epochs(runs)
    if not frames_at:
        raise ValueError("no epoch to animate")
    start = frames_at[0] if start_epoch is None else int(start_epoch)
    if start not in frames_at:
        raise ValueError(f"start_epoch {start_epoch} is not among the epochs {frames_at}")
    if frame_ms < 50:
        raise ValueError(f"frame_ms must be >= 50; got {frame_ms}")
    keys = [(n, e) for e in frames_at for n in names]
    opts = dict(class_names=class_names, logs=logs or {}, monitors=monitors or {}, scaling=scaling,
                panel_size=panel_size)
    fig, g, raw, shown = _snapshot_base(runs, [(n, start) for n in names], cols, keys=keys, title=title,
                                        epochs=[start], show_colorbar=True, bottom=96, **opts)
    heatmaps = list(range(len(cols), len(cols) * (1 + len(names))))
    frames = []
    for e in frames_at:
        rows = [(n, e) for n in names]
        text = _default_snapshot_title([e], scaling) if title is None else title
        frames.append(go.Frame(
            name=str(e), traces=heatmaps, data=_panel_traces(runs, rows, cols, raw, shown),
            layout=dict(annotations=_snapshot_annotations(g, runs, rows, cols, class_names, logs or {},
                                                          monitors or {}),
                        title=dict(text=text) if text else None),
        ))
    fig.frames = frames
    step = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    fig.update_layout(
        sliders=[dict(
            active=frames_at.index(start), x=min(0.4, 170 / g.plot_w), len=1 - min(0.4, 170 / g.plot_w), y=0,
            yanchor="top", pad=dict(t=30, b=0),
            currentvalue=dict(prefix="epoch ", font=dict(size=13)),
            steps=[dict(method="animate", label=str(e), args=[[str(e)], step]) for e in frames_at],
        )],
        updatemenus=[dict(
            type="buttons", direction="left", x=0, y=0, xanchor="left", yanchor="top", pad=dict(t=38, r=10),
            showactive=False,
            buttons=[
                dict(label="▶ Play", method="animate",
                     args=[None, dict(mode="immediate", fromcurrent=True, frame=dict(duration=int(frame_ms),
                                                                                       redraw=True),
                                      transition=dict(duration=0))]),
                dict(label="❚❚ Pause", method="animate",
                     args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False),
                                        transition=dict(duration=0))]),
            ],
        )],
    )
    return fig
