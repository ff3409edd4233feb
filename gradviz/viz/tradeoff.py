"""Figures of the Trade-off page (Kim, Seo and Jeon): clean accuracy against an
interpretability measure across the training eps of PGD model families."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from gradviz.viz.style import LAYOUT, PALETTE

#: Axis titles of the measures of :func:`gradviz.studies.tradeoff.measures`.
MEASURE_TITLES = {
    "alpha_dx": "mean α_dx (gradient · GAN residual)",
    "gini": "mean global Gini of |integrated gradients|",
    "manifold": "mean ‖x_adv − G(z*)‖₂ (l₂ PGD, eps 3)",
    "roar_area": "ROAR area (mean accuracy over q; lower: more meaningful)",
    "kar_area": "KAR area (mean accuracy over q; higher: more meaningful)",
}
_NORM_NAMES = {"linf": "l∞ family", "l2": "l₂ family"}


def tradeoff_figure(tables: Mapping[str, pd.DataFrame], measure: str, *, title: str | None = None,
                    height: int = 430) -> go.Figure:
    """Clean accuracy (x, %) against ``measure`` (y) for each family, one line per norm in
    ascending eps, each point labelled with its training eps (0: the standard model).

    Args:
        tables: norm -> the rows of :func:`gradviz.studies.tradeoff.measures` for that family
            (columns ``eps``, ``clean_accuracy`` and ``measure``).
        measure: a key of :data:`MEASURE_TITLES`.
        title: figure title (None: "Clean accuracy against <measure>").
        height: pixels.

    Raises:
        ValueError: an unknown measure, or a table without its columns.
    """
    if measure not in MEASURE_TITLES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {sorted(MEASURE_TITLES)}")
    fig = go.Figure()
    for i, (norm, table) in enumerate(tables.items()):
        missing = {"eps", "clean_accuracy", measure} - set(table.columns)
        if missing:
            raise ValueError(f"the {norm} table lacks the columns {sorted(missing)}")
        t = table.sort_values("eps")
        t = t[[not (isinstance(v, float) and math.isnan(v)) for v in t[measure]]]
        fig.add_trace(go.Scatter(
            x=100 * t["clean_accuracy"], y=t[measure], mode="lines+markers+text", name=_NORM_NAMES.get(norm, norm),
            # labels above the first family's points, below the second's: the standard model and
            # the small radii sit close together in both
            text=[f"{e:g}" for e in t["eps"]], textposition="top center" if i % 2 == 0 else "bottom center",
            line=dict(color=PALETTE[i % len(PALETTE)], width=2), marker=dict(size=9),
            customdata=t[["model", "eps"]].values,
            hovertemplate="%{customdata[0]}<br>training eps %{customdata[1]}<br>clean accuracy %{x:.1f} %"
                          "<br>%{y:.3f}<extra></extra>"))
    fig.update_layout(**LAYOUT, height=height, title=title or f"Clean accuracy against {MEASURE_TITLES[measure]}",
                      xaxis_title="clean test accuracy (%)", yaxis_title=MEASURE_TITLES[measure],
                      legend=dict(orientation="h", y=-0.2), margin=dict(l=60, r=20, t=60, b=60))
    return fig
