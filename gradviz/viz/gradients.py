"""The Gradients page's figure: the gradient grid (arrays in, ``go.Figure`` out).

:func:`gradient_grid_figure` draws a :class:`gradviz.gradients.GradientGrid`: one row per
image, the input then one attribution map per model, titled with each model's prediction
and confidence; signed maps on :data:`gradviz.viz.style.DIVERGING_COLORSCALE` centred on 0.
Its numbers: :func:`gradviz.viz.export.grid_to_npz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from gradviz.attribution import METHODS, OBJECTIVES, reduce_channels
from gradviz.viz.common import class_name, grid_axes, image_grid_layout, image_trace_spec, short_model_name
from gradviz.viz.style import DIVERGING_COLORSCALE, FONT, LAYOUT, WRONG

if TYPE_CHECKING:
    from gradviz.gradients import GradientGrid

__all__ = ["gradient_grid_figure"]

_SCALING_TITLES = {
    "per_panel": "attribution<br>÷ panel max |·|",
    "shared": "attribution<br>÷ row max |·|",
    "raw": "attribution<br>(raw)",
}


def gradient_grid_figure(
    grid: "GradientGrid",
    class_names: Sequence[str] | None = None,
    *,
    panel_size: int = 190,
    title: str | None = None,
    show_colorbar: bool = True,
) -> go.Figure:
    """The gradient grid as a figure: row i = image i; columns = input, then each model.

    Input panels are grayscale heatmaps (or RGB images for 3-channel inputs) titled with the
    image's name and true label. Map panels are heatmaps of ``grid.maps`` titled
    ``"<model>: <predicted class> (<confidence> %)"`` (red when it differs from a known
    label; ``· target <t>`` is added when the explained class is not the prediction). All
    maps share one colour axis: :data:`~gradviz.viz.style.DIVERGING_COLORSCALE` with
    ``cmid = 0`` and a symmetric range ``[-m, m]`` (``m = 1`` for per-panel / shared scaling,
    the largest |value| of all maps for raw), with one labelled colour bar. Hovering a map shows the
    pixel, the shown value and the value before clipping and scaling.

    Args:
        grid: from :func:`gradviz.gradients.compute_gradient_grid`; its maps must have one
            channel (any reduction but ``"none"`` on multi-channel inputs).
        class_names: class index -> name (e.g. ``dataset.classes``); default: the index.
        panel_size: side of each square panel in pixels (>= 40). Default 190.
        title: figure title; ``None`` (default): method, objective, target and scaling;
            ``""``: none.
        show_colorbar: draw the colour bar. Default True.

    Returns:
        ``go.Figure`` with N * (1 + M) traces (row by row: input, then the models in
        ``grid.model_names`` order), fixed width and height in pixels.

    Raises:
        ValueError: maps with more than one channel; ``panel_size`` < 40.
    """
    if panel_size < 40:
        raise ValueError(f"panel_size must be >= 40 pixels; got {panel_size}")
    n, m_models = grid.n_images, len(grid.model_names)
    for name in grid.model_names:
        if grid.maps[name].shape[1] != 1:
            raise ValueError(
                f"the maps of {name!r} have {grid.maps[name].shape[1]} channels; a heatmap needs "
                "one: compute the grid with a channel reduction other than 'none'"
            )
    rows, cols = n, 1 + m_models

    # Geometry in pixels: square panels, room above each row for its titles.
    gap_x, gap_y = 14, 48
    plot_w = cols * panel_size + (cols - 1) * gap_x
    if title is None:
        title = _default_title(grid)
    title_lines = _wrap(title, max(20, int((plot_w + 100) / 7.6))) if title else []
    top = 42 + 20 * len(title_lines)
    margin = dict(l=16, r=110 if show_colorbar else 16, t=top, b=16)
    plot_h = rows * panel_size + (rows - 1) * gap_y
    width = plot_w + margin["l"] + margin["r"]
    height = plot_h + margin["t"] + margin["b"]

    per_line = max(8, int(panel_size / 6.6))  # characters of 12 px text per panel width
    titles: list[str] = []
    for i in range(n):
        label = int(grid.labels[i])
        head = _fit(grid.names[i], per_line - 10) + (
            f" · label {class_name(class_names, label)}" if label >= 0 else "")
        titles.append(head)
        for name in grid.model_names:
            pred = int(grid.predictions[name][i])
            conf = float(grid.confidence(name)[i]) * 100
            text = f"{_fit(short_model_name(name), per_line - 12)}: {class_name(class_names, pred)} ({conf:.1f} %)"
            target = int(grid.targets[name][i])
            lines = [text]
            if target != pred:
                lines = _wrap(text + f" · target {class_name(class_names, target)}", per_line)
            if label >= 0 and pred != label:
                lines = [f"<span style='color:{WRONG}'>{line}</span>" for line in lines]
            titles.append("<br>".join(lines))

    maps = {k: grid.maps[k][:, 0].numpy().astype(np.float32) for k in grid.model_names}
    before = {
        k: reduce_channels(grid.attributions[k], grid.channel_reduction)[:, 0].numpy()
        for k in grid.model_names
    }
    if grid.scaling == "raw":
        peak = max((float(np.abs(v).max()) if v.size else 0.0) for v in maps.values())
        peak = peak if peak > 0 else 1.0
    else:
        peak = 1.0

    x_np = grid.x.numpy()
    traces = []
    for i in range(n):
        traces.append(image_trace_spec(x_np[i], grid.names[i], hover="input", **grid_axes(i * cols + 1)))
        for j, name in enumerate(grid.model_names):
            traces.append(dict(
                type="heatmap", z=maps[name][i], customdata=before[name][i], coloraxis="coloraxis",
                name=short_model_name(name),
                hovertemplate=(
                    "x %{x}, y %{y}<br>shown %{z:.3f}<br>before scaling %{customdata:.3g}"
                    f"<extra>{short_model_name(name)}</extra>"
                ),
                **grid_axes(i * cols + j + 2),
            ))

    layout = image_grid_layout(rows, cols, titles=titles,
                               h_spacing=gap_x / plot_w if cols > 1 else 0.0,
                               v_spacing=gap_y / plot_h if rows > 1 else 0.0)
    return go.Figure(data=traces, layout=dict(
        layout,
        width=width,
        height=height,
        margin=margin,
        **LAYOUT,
        title=dict(text="<br>".join(title_lines), x=0, xref="paper", xanchor="left",
                   y=1 - 14 / height, yanchor="top", font=dict(size=14)) if title_lines else None,
        coloraxis=dict(
            colorscale=list(DIVERGING_COLORSCALE), cmid=0.0, cmin=-peak, cmax=peak,
            showscale=show_colorbar,
            colorbar=dict(
                title=dict(text=_SCALING_TITLES[grid.scaling], side="right"),
                lenmode="pixels", len=min(plot_h, 320), y=1, yanchor="top",
                thickness=14, x=1 + 18 / plot_w, xanchor="left", outlinewidth=0,
            ),
        ),
        hoverlabel=dict(font=dict(family=FONT)),
    ))


def _fit(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters (at least 4) with an ellipsis."""
    n = max(4, n)
    return text if len(text) <= n else text[: n - 1] + "…"


def _wrap(text: str, width: int) -> list[str]:
    """Split ``text`` at " · " into lines of at most ``width`` characters where possible."""
    lines: list[str] = []
    for part in text.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return lines


def _default_title(grid: "GradientGrid") -> str:
    method = METHODS.get(grid.method, grid.method)
    objective = {"logit": "target logit", "loss": "cross-entropy loss"}.get(
        grid.objective, OBJECTIVES.get(grid.objective, grid.objective))
    target = {"label": "true label", "predicted": "predicted class",
              "class": f"class {grid.class_index}"}.get(grid.target_choice, grid.target_choice)
    if grid.target_choice == "label" and not bool((grid.labels >= 0).all()):  # uploads: no true label
        # what compute_gradient_grid did (and its notes say): the predicted class where no label is known
        target = ("predicted class (no true label)" if not bool((grid.labels >= 0).any())
                  else "true label, else the predicted class")
    scaling = {"per_panel": "per-panel", "shared": "shared per row", "raw": "raw"}[grid.scaling]
    clip = f" · clipped {grid.clip[0]:g}–{grid.clip[1]:g} %ile" if grid.clip else ""
    return (f"{method} of the {objective} · target: {target} · "
            f"channels: {grid.channel_reduction} · scaling: {scaling}{clip}")
