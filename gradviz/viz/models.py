"""The Models page's figures (log entries in, ``go.Figure`` out): a model's training
curves, AGR's gradient diagnostics (docs/methods.md section 5), the input-gradient cosines the
gradient-shaping objectives optimise (IGD, PAG, L_alpha), and the live loss of a run.

The inputs are a card's ``log`` (one dict per epoch, see :func:`gradviz.training.train`):
keys that a log lacks (an older card, another method) are left out of the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradviz.viz.style import LAYOUT

__all__ = [
    "GRADIENT_COSINES", "agr_diagnostics_figure", "gradient_cosines_figure", "has_agr_diagnostics",
    "has_gradient_cosines", "live_loss_figure", "training_curves_figure",
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
                           monitor: Optional[dict] = None) -> go.Figure:
    """A model's learning curves: loss (left) and accuracies in % (right) per epoch.

    Args:
        log: per-epoch entries (``epoch``, ``loss``, ``accuracy``, ``adv_accuracy``,
            ``monitor_clean_accuracy``, ``monitor_robust_accuracy``, ... as present).
        title: figure title (None: "Training curves"; "": none).
        monitor: the card's ``training["monitor_settings"]`` (names the held-out images and
            the attack in the legend).

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
        ("agr_norm", "|g| used", "#1f77b4", 2),
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
