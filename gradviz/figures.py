"""Plotly figure builders (arrays in, ``go.Figure`` out) and their exports.

* :func:`gradient_grid_figure` draws a :class:`gradviz.gradients.GradientGrid`: one row per
  image, the input then one attribution map per model, titled with each model's
  prediction and confidence; signed maps on a diverging colour scale centred on 0.
* :func:`figure_to_bytes` exports a figure as PNG, SVG or PDF (through kaleido, which drives
  a Chrome/Chromium: see :func:`find_browser`) or as a self-contained HTML page (always
  available, plotly.js embedded so that it works offline).
* :func:`grid_to_npz` writes the numbers behind a gradient grid as a NumPy ``.npz``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from gradviz.attribution import METHODS, OBJECTIVES, reduce_channels

if TYPE_CHECKING:
    from gradviz.gradients import GradientGrid

__all__ = [
    "DIVERGING_COLORSCALE",
    "EXPORT_FORMATS",
    "MIME_TYPES",
    "PALETTE",
    "StaticExportUnavailable",
    "export_figure",
    "figure_to_bytes",
    "find_browser",
    "gradient_grid_figure",
    "grid_to_npz",
    "model_colours",
    "resolve_colours",
    "short_model_name",
    "static_export_available",
]

#: Model colours, in the order of the compared models (plotly's first eight, red second).
PALETTE: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                            "#e377c2", "#17becf")
#: The diverging colour scale of signed maps: blue negative, white 0, red positive.
DIVERGING_COLORSCALE = "RdBu_r"

#: Export format -> MIME type. "html" needs nothing; the others need a Chrome/Chromium.
MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "html": "text/html",
}
EXPORT_FORMATS: tuple[str, ...] = tuple(MIME_TYPES)
STATIC_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

_SCALING_TITLES = {
    "per_panel": "attribution<br>÷ panel max |·|",
    "shared": "attribution<br>÷ row max |·|",
    "raw": "attribution<br>(raw)",
}
_WRONG = "#b2182b"  # title colour of a prediction that differs from the known label
_FONT = "Inter, Helvetica, Arial, sans-serif"


def short_model_name(name: str) -> str:
    """``"mnist-5k/pgd-linf"`` -> ``"pgd-linf"``; a path -> its file stem; else unchanged."""
    if name.endswith(".pt"):
        return Path(name).stem
    return name.rsplit("/", 1)[-1]


def model_colours(names: Sequence[str]) -> dict[str, str]:
    """name -> colour of :data:`PALETTE`, by position (cycling after 8 models)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def resolve_colours(colours: Mapping[str, str] | None, names: Sequence[str]) -> dict[str, str]:
    """name -> colour for each of ``names``: ``colours[name]`` where given, else its
    :func:`model_colours` colour (by position among ``names``)."""
    default = model_colours(list(names))
    return {n: (colours or {}).get(n, default[n]) for n in names}


def class_name(classes: Sequence[str] | None, k: int) -> str:
    """``classes[k]`` as text, or ``str(k)`` without names or for k out of range."""
    if classes is not None and 0 <= k < len(classes):
        return str(classes[k])
    return str(k)


def as_array(a, dtype=np.float64) -> np.ndarray:
    """A tensor (detached, on the CPU) or array-like as a NumPy array of ``dtype``."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


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
    maps share one colour axis: :data:`DIVERGING_COLORSCALE` with ``cmid = 0`` and a
    symmetric range ``[-m, m]`` (``m = 1`` for per-panel / shared scaling, the largest
    |value| of all maps for raw), with one labelled colour bar. Hovering a map shows the
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
    channels = int(grid.x.shape[1])
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
                lines = [f"<span style='color:{_WRONG}'>{line}</span>" for line in lines]
            titles.append("<br>".join(lines))

    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=gap_x / plot_w if cols > 1 else 0.0,
        vertical_spacing=gap_y / plot_h if rows > 1 else 0.0,
    )

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
    for i in range(n):
        if channels == 3:
            rgb = np.clip(np.round(x_np[i].transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
            fig.add_trace(
                go.Image(z=rgb, name=grid.names[i],
                         hovertemplate="x %{x}, y %{y}<br>RGB %{z}<extra>input</extra>"),
                row=i + 1, col=1,
            )
        else:
            fig.add_trace(
                go.Heatmap(
                    z=x_np[i, 0], colorscale="gray", zmin=0.0, zmax=1.0, showscale=False,
                    name=grid.names[i],
                    hovertemplate="x %{x}, y %{y}<br>pixel %{z:.3f}<extra>input</extra>",
                ),
                row=i + 1, col=1,
            )
        for j, name in enumerate(grid.model_names):
            fig.add_trace(
                go.Heatmap(
                    z=maps[name][i], customdata=before[name][i], coloraxis="coloraxis",
                    name=short_model_name(name),
                    hovertemplate=(
                        "x %{x}, y %{y}<br>shown %{z:.3f}<br>before scaling %{customdata:.3g}"
                        f"<extra>{short_model_name(name)}</extra>"
                    ),
                ),
                row=i + 1, col=j + 2,
            )

    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     constrain="domain", showline=True, linecolor="#bbbbbb", mirror=True)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     autorange="reversed", constrain="domain", showline=True,
                     linecolor="#bbbbbb", mirror=True)
    for k in range(1, rows * cols + 1):  # square pixels in every panel
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    for ann in fig.layout.annotations:
        ann.font = dict(size=12, family=_FONT)
    fig.update_layout(
        width=width,
        height=height,
        margin=margin,
        template="plotly_white",
        font=dict(family=_FONT, size=12),
        title=dict(text="<br>".join(title_lines), x=0, xref="paper", xanchor="left",
                   y=1 - 14 / height, yanchor="top", font=dict(size=14)) if title_lines else None,
        coloraxis=dict(
            colorscale=DIVERGING_COLORSCALE, cmid=0.0, cmin=-peak, cmax=peak,
            showscale=show_colorbar,
            colorbar=dict(
                title=dict(text=_SCALING_TITLES[grid.scaling], side="right"),
                lenmode="pixels", len=min(plot_h, 320), y=1, yanchor="top",
                thickness=14, x=1 + 18 / plot_w, xanchor="left", outlinewidth=0,
            ),
        ),
        hoverlabel=dict(font=dict(family=_FONT)),
    )
    return fig


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
    scaling = {"per_panel": "per-panel", "shared": "shared per row", "raw": "raw"}[grid.scaling]
    clip = f" · clipped {grid.clip[0]:g}–{grid.clip[1]:g} %ile" if grid.clip else ""
    return (f"{method} of the {objective} · target: {target} · "
            f"channels: {grid.channel_reduction} · scaling: {scaling}{clip}")


# ------------------------------------------------------------------------------- export


class StaticExportUnavailable(RuntimeError):
    """PNG/SVG/PDF export needs a Chrome or Chromium, and none was found."""


def find_browser() -> str | None:
    """The Chrome/Chromium that kaleido will drive for static export, or None.

    Looked up in this order: the ``BROWSER_PATH`` environment variable (choreographer's
    own override, used only if it names an executable file); then choreographer's search
    (its local download from ``kaleido.get_chrome()``, the names ``chrome``,
    ``chromium``, ``chromium-browser``, ... on ``PATH``, and typical install paths such as
    ``/usr/bin/chromium``).
    """
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if (os.path.isfile(env) and os.access(env, os.X_OK)) else None
    try:
        from choreographer.browsers.chromium import Chromium

        path = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - an unusual choreographer: fall back to PATH
        path = shutil.which("chromium") or shutil.which("google-chrome")
    return str(path) if path and os.path.isfile(path) else None


def static_export_available() -> bool:
    """Whether PNG/SVG/PDF export can work here: kaleido is importable and a browser found."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return find_browser() is not None


def figure_to_bytes(
    fig: go.Figure,
    fmt: str,
    *,
    scale: float = 2.0,
    timeout: float = 90.0,
) -> bytes:
    """Export ``fig`` as PNG, SVG, PDF or HTML bytes.

    PNG/SVG/PDF are rendered by kaleido in a headless Chrome/Chromium (see
    :func:`export_figure`); each call starts and closes one browser (a few seconds).
    HTML is a standalone page with plotly.js embedded (about 4.7 MB; works offline).

    Args:
        fig: the figure; its layout width/height set the image size (plotly's default
            700 x 500 otherwise).
        fmt: ``"png"``, ``"svg"``, ``"pdf"`` or ``"html"``.
        scale: PNG only: pixels per layout pixel (default 2, for print). Ignored otherwise.
        timeout: seconds kaleido waits for one render. Default 90.

    Returns:
        the file's bytes.

    Raises:
        ValueError: unknown format.
        StaticExportUnavailable: PNG/SVG/PDF asked for, but kaleido or a browser is missing.
        RuntimeError: the browser failed to render (kaleido's message inside).
    """
    fmt = fmt.lower()
    if fmt not in MIME_TYPES:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {list(MIME_TYPES)}")
    if fmt == "html":
        html = fig.to_html(include_plotlyjs=True, full_html=True,
                           config={"displaylogo": False, "responsive": False})
        return html.encode("utf-8")
    return export_figure(fig, (fmt,), scale=scale, timeout=timeout)[fmt]


def export_figure(
    fig: go.Figure,
    formats: Sequence[str] = STATIC_FORMATS,
    *,
    scale: float = 2.0,
    timeout: float = 90.0,
) -> dict[str, bytes]:
    """Render ``fig`` to several static formats with one browser session.

    kaleido (1.x) drives a headless Chrome/Chromium through choreographer. gradviz passes
    it the executable that :func:`find_browser` finds (``BROWSER_PATH``, else
    ``chromium`` / ``chrome`` on ``PATH`` or in the usual places, e.g.
    ``/usr/bin/chromium``) and turns MathJax off, so nothing is fetched from the network
    (kaleido's plotly.js comes from the installed plotly package). The rendering runs in
    its own thread and event loop, so it also works inside Streamlit or Jupyter.

    Args:
        fig: the figure (its layout width/height give the size; 700 x 500 otherwise).
        formats: any of ``"png"``, ``"svg"``, ``"pdf"``. Default all three.
        scale: PNG pixels per layout pixel. Default 2.
        timeout: seconds kaleido waits for one render. Default 90.

    Returns:
        format -> bytes.

    Raises:
        ValueError: a format that is not static (``"html"``: use :func:`figure_to_bytes`).
        StaticExportUnavailable: kaleido or a browser is missing.
        RuntimeError: the browser failed to render (kaleido's message inside).
    """
    formats = [f.lower() for f in formats]
    bad = [f for f in formats if f not in STATIC_FORMATS]
    if bad:
        raise ValueError(f"not a static export format: {bad}; choose from {list(STATIC_FORMATS)}")
    try:
        import kaleido
    except ImportError as err:
        raise StaticExportUnavailable("PNG/SVG/PDF export needs the kaleido package") from err
    browser = find_browser()
    if browser is None:
        raise StaticExportUnavailable(
            "PNG/SVG/PDF export needs Chrome or Chromium, and none was found: install one "
            "(e.g. apt install chromium) or set BROWSER_PATH to its executable. HTML export "
            "works without it."
        )
    fig_dict = fig.to_dict()
    size = dict(width=fig.layout.width or 700, height=fig.layout.height or 500)

    async def render() -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        async with kaleido.Kaleido(n=1, timeout=timeout, path=browser, mathjax=False) as k:
            for f in formats:
                opts = dict(format=f, scale=scale if f == "png" else 1, **size)
                out[f] = bytes(await k.calc_fig(fig_dict, opts=opts))
        return out

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = asyncio.run(render())
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = err

    thread = threading.Thread(target=run, name="gradviz-kaleido", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        err = result["error"]
        raise RuntimeError(f"static export ({', '.join(formats)}) with {browser} failed: {err}") from err
    return result["value"]


def grid_to_npz(grid: "GradientGrid") -> bytes:
    """The numbers of a gradient grid as ``.npz`` bytes (compressed; no pickled objects).

    Keys (N images, M models in ``model_names`` order, K classes):

    - ``x``: (N, C, H, W) float32 in [0, 1], the images;
    - ``labels``: (N,) int64, -1 where unknown; ``names``: (N,) str;
    - ``model_names``: (M,) str;
    - ``attributions``: (M, N, C, H, W) float32, signed, before any display step;
    - ``maps``: (M, N, C', H, W) float32, the display maps (C' = 1 after a reduction);
    - ``logits``, ``probabilities``: (M, N, K) float32; ``predictions``, ``targets``:
      (M, N) int64;
    - ``settings``: 0-d str, JSON of the settings (method, objective, target choice,
      class index, channel reduction, clip, scaling, method options).

    Load with ``np.load(io.BytesIO(data))`` (``allow_pickle=False`` works).
    """
    names = grid.model_names

    def stack(d: dict[str, torch.Tensor], dtype) -> np.ndarray:
        return np.stack([d[k].numpy() for k in names]).astype(dtype)

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        x=grid.x.numpy().astype(np.float32),
        labels=grid.labels.numpy().astype(np.int64),
        names=np.array(grid.names, dtype=str),
        model_names=np.array(names, dtype=str),
        attributions=stack(grid.attributions, np.float32),
        maps=stack(grid.maps, np.float32),
        logits=stack(grid.logits, np.float32),
        probabilities=stack(grid.probabilities, np.float32),
        predictions=stack(grid.predictions, np.int64),
        targets=stack(grid.targets, np.int64),
        settings=np.array(json.dumps(grid.settings())),
    )
    return buf.getvalue()
