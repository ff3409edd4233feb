"""Tests for gradviz.viz.gradients: the gradient-grid figure (its exports: test_viz_export)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from gradviz.gradients import compute_gradient_grid
from gradviz.viz.common import short_model_name
from gradviz.viz.gradients import gradient_grid_figure
from gradviz.viz.style import DIVERGING_COLORSCALE

N, H, W, K = 3, 8, 8, 4
CLASSES = ["zero", "one", "two", "three"]


def linear(channels: int, seed: int, scale: float = 1.0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(channels * H * W, K))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(K, channels * H * W, generator=g) * scale)
        model[1].bias.copy_(torch.randn(K, generator=g))
    return model.eval()


def make_grid(channels: int = 1, **kwargs):
    x = torch.rand(N, channels, H, W, generator=torch.Generator().manual_seed(0))
    models = {"toy/standard": linear(channels, 1), "toy/pgd-linf": linear(channels, 2, scale=5.0)}
    labels = torch.tensor([0, 1, -1])
    return compute_gradient_grid(models, x, labels, names=["a", "b", "c"], **kwargs)


def map_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if getattr(t, "coloraxis", None) == "coloraxis"]


def test_grid_figure_panels_titles_and_colour_axis():
    grid = make_grid()
    fig = gradient_grid_figure(grid, CLASSES, panel_size=150)
    assert len(fig.data) == N * 3
    assert [t.name for t in fig.data[:3]] == ["a", "standard", "pgd-linf"]
    maps = map_traces(fig)
    assert len(maps) == N * 2
    for t in maps:
        assert isinstance(t, go.Heatmap) and t.hovertemplate and "customdata" in t.hovertemplate
    ca = fig.layout.coloraxis
    assert ca.cmid == 0 and ca.cmin == -ca.cmax == -1.0
    assert ca.colorbar.title.text  # labelled
    assert ca.colorscale == go.layout.Coloraxis(colorscale=DIVERGING_COLORSCALE).colorscale
    # Input panels: grayscale in [0, 1], no colour bar of their own.
    inp = fig.data[0]
    assert inp.zmin == 0 and inp.zmax == 1 and inp.showscale is False
    # Titles: each model's prediction and confidence.
    texts = [a.text for a in fig.layout.annotations]
    for i in range(N):
        for name in grid.model_names:
            pred = int(grid.predictions[name][i])
            conf = 100 * float(grid.confidence(name)[i])
            assert any(f"{short_model_name(name)}: {CLASSES[pred]} ({conf:.1f} %)" in t for t in texts)
    assert texts[0].startswith("a · label zero")
    assert texts[6] == "c"  # unknown label: no label shown
    assert "Gradient" in fig.layout.title.text


def test_grid_figure_square_panels_and_size():
    grid = make_grid()
    fig = gradient_grid_figure(grid, CLASSES, panel_size=120, title="")
    assert fig.layout.title.text is None
    m = fig.layout.margin
    plot_w = fig.layout.width - m.l - m.r
    plot_h = fig.layout.height - m.t - m.b
    xd, yd = fig.layout.xaxis.domain, fig.layout.yaxis.domain
    assert (xd[1] - xd[0]) * plot_w == pytest.approx(120, abs=1)
    assert (yd[1] - yd[0]) * plot_h == pytest.approx(120, abs=1)
    assert fig.layout.yaxis2.scaleanchor == "x2"
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 of the image on top
    with pytest.raises(ValueError, match="panel_size"):
        gradient_grid_figure(grid, panel_size=10)


def test_wrong_prediction_title_is_marked_and_target_shown():
    grid = make_grid(target_choice="class", class_index=3)
    fig = gradient_grid_figure(grid, CLASSES)
    texts = [a.text for a in fig.layout.annotations]
    for i in range(N):
        for j, name in enumerate(grid.model_names):
            text = texts[i * 3 + 1 + j]
            pred = int(grid.predictions[name][i])
            assert ("target three" in text) == (pred != 3)
            label = int(grid.labels[i])
            assert ("color" in text) == (label >= 0 and pred != label)


def test_raw_scaling_range_is_symmetric_over_all_maps():
    grid = make_grid(scaling="raw")
    fig = gradient_grid_figure(grid, CLASSES)
    peak = max(float(grid.maps[n].abs().max()) for n in grid.model_names)
    ca = fig.layout.coloraxis
    assert ca.cmid == 0
    assert ca.cmax == pytest.approx(peak) and ca.cmin == pytest.approx(-peak)
    assert "raw" in ca.colorbar.title.text


def test_rgb_inputs_and_channel_reduction():
    grid = make_grid(channels=3, channel_reduction="l2")
    fig = gradient_grid_figure(grid, CLASSES)
    assert isinstance(fig.data[0], go.Image)
    assert np.asarray(fig.data[0].z).shape == (H, W, 3)
    none = make_grid(channels=3, channel_reduction="none")
    with pytest.raises(ValueError, match="channel reduction"):
        gradient_grid_figure(none)
