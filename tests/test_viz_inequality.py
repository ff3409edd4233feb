"""Figure builders of the Inequality page (gradviz.viz.inequality): traces, colours, hover,
known Gini values, errors. The numbers behind the figures (CSV / NPZ): test_viz_export."""

from __future__ import annotations

import numpy as np
import pytest

from gradviz.viz.inequality import (
    gini_histogram_figure,
    image_inequality_figure,
    lorenz_figure,
    noise_error_figure,
    occlusion_error_figure,
    perturbed_examples_figure,
)
from gradviz.viz.style import PALETTE

A, B, C = "mnist-5k/standard", "mnist-5k/pgd-linf", "mnist-5k/igd"


def one_hot_and_flat():
    """A 1 x 4 x 4 image; model A's attribution is one pixel (Gini 15/16), B's is constant
    (Gini 0), C's is signed with two equal magnitudes (Gini 14/16)."""
    x = np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 4, 4)
    a = np.zeros((1, 4, 4), np.float32)
    a[0, 1, 2] = 3.0
    b = np.full((1, 4, 4), -0.5, np.float32)
    c = np.zeros((1, 4, 4), np.float32)
    c[0, 0, 0], c[0, 3, 3] = 1.0, -1.0
    return x, {A: a, B: b, C: c}


def test_image_inequality_figure_ginis_lorenz_and_colours():
    x, attrs = one_hot_and_flat()
    fig = image_inequality_figure(x, attrs, block=2, label=3, predictions={A: (3, 0.9), B: (5, 0.6), C: (3, 0.99)},
                                  class_names=[str(i) for i in range(10)])
    heat = [t for t in fig.data if t.type == "heatmap"]
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(heat) == 1 + 3 and heat[0].name == "input"
    assert [t.name for t in heat[1:]] == ["standard", "pgd-linf", "igd"]
    # maps: |A| summed over channels, divided by their own max; hover carries |A| and share
    assert np.max(heat[1].z) == 1.0 and heat[1].z[1][2] == 1.0
    assert heat[1].customdata[1][2][0] == pytest.approx(3.0) and heat[1].customdata[1][2][1] == pytest.approx(100.0)
    assert "share of the map" in heat[1].hovertemplate
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1
    # the equality diagonal, then one Lorenz curve per model in the model colours
    assert lines[0].name.startswith("equality") and list(lines[0].x) == [0, 1]
    assert [t.line.color for t in lines[1:]] == [PALETTE[0], PALETTE[1], PALETTE[2]]
    assert "Gini 0.938" in lines[1].name and "Gini 0.000" in lines[2].name and "Gini 0.875" in lines[3].name
    flat = lines[2]
    assert np.allclose(flat.y, flat.x)  # a constant map's Lorenz curve is the diagonal
    one = lines[1]
    assert np.allclose(one.y[:-1], 0.0) and one.y[-1] == pytest.approx(100.0)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "input · label 3"
    assert "Gini 0.938<br>regional" in titles[1] and "3 (90.0 %)" in titles[1]
    assert "#b2182b" in titles[2]  # a wrong prediction in red
    assert fig.layout.width > 0 and fig.layout.height > 0


def test_image_inequality_figure_errors():
    x, attrs = one_hot_and_flat()
    with pytest.raises(ValueError, match="does not divide"):
        image_inequality_figure(x, attrs, block=3)
    with pytest.raises(ValueError, match="shape"):
        image_inequality_figure(x, {A: np.zeros((1, 5, 5), np.float32)})
    with pytest.raises(ValueError, match="at least one"):
        image_inequality_figure(x, {})
    fig = image_inequality_figure(x[None], {A: attrs[A][None]})  # (1, C, H, W) accepted
    assert "regional" not in fig.layout.annotations[1].text


def test_lorenz_figure():
    f = np.linspace(0, 1, 5)
    fig = lorenz_figure(f, {A: f ** 2, B: f ** 3}, ginis={A: 0.3, B: 0.5})
    assert [t.name for t in fig.data] == ["equality (Gini 0)", "standard · Gini 0.300", "pgd-linf · Gini 0.500"]
    assert list(fig.data[1].y) == pytest.approx(list(100 * f ** 2))
    assert fig.data[2].line.color == PALETTE[1]
    assert "hold" in fig.data[1].hovertemplate
    with pytest.raises(ValueError, match="points"):
        lorenz_figure(f, {A: f[:3]})
    with pytest.raises(ValueError):
        lorenz_figure(f, {})


def test_gini_histogram_figure_global_and_regional():
    rng = np.random.default_rng(0)
    g = {A: rng.uniform(0.5, 0.7, 50), B: rng.uniform(0.8, 0.95, 50)}
    r = {A: rng.uniform(0.3, 0.5, 50), B: rng.uniform(0.6, 0.8, 50)}
    fig = gini_histogram_figure(g, r, block=4)
    hists = [t for t in fig.data if t.type == "histogram"]
    means = [t for t in fig.data if t.type == "scatter"]
    assert len(hists) == 4 and len(means) == 4
    assert [h.name for h in hists if h.showlegend] == ["standard", "pgd-linf"]  # one legend entry per model
    assert hists[0].marker.color == means[0].line.color == PALETTE[0]
    assert hists[0].xbins.size == hists[1].xbins.size  # the models share the panel's bins
    assert means[0].x[0] == pytest.approx(g[A].mean()) and means[0].line.dash == "dash"
    assert "4 × 4" in fig.layout.xaxis2.title.text
    assert fig.layout.barmode == "overlay"
    only_global = gini_histogram_figure(g)
    assert len([t for t in only_global.data if t.type == "histogram"]) == 2
    with pytest.raises(ValueError):
        gini_histogram_figure({})


def test_noise_error_figure_solid_and_dashed():
    kp = [0.2, 1.0, 2.0]
    fig = noise_error_figure(kp, {A: [0.0, 0.1, 0.3], B: [0.0, 0.0, 0.1]}, {A: [0.0, 0.0, 0.05], B: [0, 0, 0]},
                             k_counts=[1, 7, 15], n_images=100)
    assert [t.name for t in fig.data] == ["standard · inductive", "standard · random", "pgd-linf · inductive",
                                          "pgd-linf · random"]
    assert fig.data[0].line.dash == "solid" and fig.data[1].line.dash == "dash"
    assert fig.data[0].line.color == fig.data[1].line.color == PALETTE[0]
    assert list(fig.data[0].y) == pytest.approx([0, 10, 30])
    assert list(fig.data[0].customdata) == [1, 7, 15] and "features" in fig.data[0].hovertemplate
    assert "100 images" in fig.layout.yaxis.title.text
    assert len(noise_error_figure(kp, {A: [0, 0, 0]}).data) == 1
    with pytest.raises(ValueError, match="points"):
        noise_error_figure(kp, {A: [0.0, 0.1]})


def test_occlusion_error_figure():
    fig = occlusion_error_figure([1, 2, 3], {A: [0.1, 0.5, 0.7], C: [0.0, 0.2, 0.4]}, colours={C: "#123456"},
                                 n_pixels=10, colour=0.5)
    assert [t.name for t in fig.data] == ["standard", "igd"]
    assert fig.data[1].line.color == "#123456"
    assert list(fig.data[0].y) == pytest.approx([10, 50, 70])
    assert "1–10 top pixels" in fig.layout.title.text and "colour 0.5" in fig.layout.title.text
    with pytest.raises(ValueError):
        occlusion_error_figure([1, 2], {A: [0.1]})


def test_perturbed_examples_figure():
    x, _ = one_hot_and_flat()
    v = ["inductive", "random", "occlusion"]
    images = {A: {k: x * 0.5 for k in v}, B: {k: x for k in v}}
    preds = {A: {"clean": (3, 0.9), "inductive": (5, 0.7)}, B: {"clean": (3, 0.8)}}
    fig = perturbed_examples_figure(x, images, predictions=preds, notes={A: {"occlusion": "n 2, r 1"}}, label=3)
    assert len(fig.data) == 2 * 4
    titles = [a.text for a in fig.layout.annotations]
    assert "occlusion<br>n 2, r 1" in titles[3]
    assert "#b2182b" in titles[1] and "#b2182b" not in titles[0]
    assert any("<b>standard</b>" in t for t in titles)
    with pytest.raises(ValueError, match="variants"):
        perturbed_examples_figure(x, {A: {"a": x}, B: {"b": x}})
