"""The one style of gradviz's figures: font, colours, colour scales and layout defaults.

Every builder in :mod:`gradviz.viz` takes its look from here, so that a model has the same
colour on every page and every signed map the same diverging scale centred on 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "DIVERGING_COLORSCALE",
    "FONT",
    "IMAGE_AXIS",
    "LAYOUT",
    "MAGNITUDE_COLORSCALE",
    "PALETTE",
    "TEMPLATE",
    "WRONG",
    "model_colours",
    "page_title",
    "resolve_colours",
]

#: Font family of every figure (text, hover labels, panel titles).
FONT = "Inter, Helvetica, Arial, sans-serif"

#: Name of gradviz's plotly template, registered in ``plotly.io.templates`` on import: plotly's
#: "plotly_white" with its trace defaults kept only for the trace types gradviz draws (scatter,
#: heatmap, histogram, bar; go.Image has none). A figure copies its template when it is made;
#: plotly_white's defaults for 24 trace types made that copy 16 ms, against 5 ms for this one,
#: on every figure of every page run. The figures look the same.
TEMPLATE = "gradviz"
_white = pio.templates["plotly_white"]
pio.templates[TEMPLATE] = go.layout.Template(
    layout=_white.layout, data={k: _white.data[k] for k in ("scatter", "heatmap", "histogram", "bar")})

#: Layout defaults of every figure: ``fig.update_layout(**LAYOUT, ...)``.
LAYOUT: dict[str, Any] = {"template": TEMPLATE, "font": {"family": FONT, "size": 12}}

#: Model colours, in the order of the compared models (plotly's first eight, red second).
PALETTE: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                            "#e377c2", "#17becf")

#: Colour of a prediction that differs from the known label (in panel titles).
WRONG = "#b2182b"

#: The diverging colour scale of every signed map (gradients, attributions, residuals,
#: perturbations): ColorBrewer RdBu reversed, 11 stops, blue negative, white (#f7f7f7) in
#: the middle, red positive. Figures pin its middle to 0 (``cmid = 0``, a symmetric range).
#: These are the colours plotly.py resolves the name ``"RdBu_r"`` to, written out so that
#: the figures do not depend on plotly's table of names.
DIVERGING_COLORSCALE: tuple[str, ...] = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
                                         "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f")

#: Sequential colour scale of |attribution| maps (black 0, bright large): plotly's Inferno
#: with its first stop "#000004" made "#000000" -- Streamlit's frontend treats the colours
#: "#000001".."#00000f" as placeholders of its own theme and replaces them, even with
#: ``theme=None`` (the maps' background turned lavender).
MAGNITUDE_COLORSCALE: tuple[str, ...] = ("#000000", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446",
                                         "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4")

#: Axis settings of an image panel: no ticks or grid, a thin frame, the data's aspect kept.
IMAGE_AXIS: dict[str, Any] = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": "",
                              "showline": True, "linecolor": "#bbbbbb", "mirror": True, "constrain": "domain"}


def model_colours(names: Sequence[str]) -> dict[str, str]:
    """name -> colour of :data:`PALETTE`, by position (cycling after 8 models)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def resolve_colours(colours: Mapping[str, str] | None, names: Sequence[str]) -> dict[str, str]:
    """name -> colour for each of ``names``: ``colours[name]`` where given, else its
    :func:`model_colours` colour (by position among ``names``)."""
    default = model_colours(list(names))
    return {n: (colours or {}).get(n, default[n]) for n in names}


def page_title(text: str | None) -> dict[str, Any] | None:
    """A figure title at the top left of the figure (10 px down), 14 px; None for no text."""
    if not text:
        return None
    return dict(text=text, x=0, xref="paper", y=1, yref="container", yanchor="top", pad=dict(t=10),
                font=dict(size=14))
