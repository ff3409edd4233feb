"""Figure builders and the table of the Alignment page (gradviz.viz.alignment); its
exporters: test_viz_export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from gradviz.viz.alignment import (
    alignment_table, alpha_histogram_figure, alpha_scatter_figure, residual_figure, scale_by_max,
)


def _batch(n=3, c=1, s=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, s, s, generator=g)
    dx = torch.randn(n, c, s, s, generator=g) * 0.3
    grads = {"mnist-5k/standard": torch.randn(n, c, s, s, generator=g),
             "mnist-5k/pgd-linf": torch.randn(n, c, s, s, generator=g) * 1e-3}
    return x, dx, grads


def _annotations(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_scale_by_max_sums_channels_and_divides_by_the_peak():
    a = torch.zeros(2, 3, 2, 2)
    a[0, :, 0, 0] = torch.tensor([1.0, 2.0, -6.0])  # sum -3: the peak
    a[0, 0, 1, 1] = 1.5
    scaled, peak = scale_by_max(a)
    assert scaled.shape == (2, 2, 2) and list(peak) == [3.0, 0.0]
    assert scaled[0, 0, 0] == -1.0 and scaled[0, 1, 1] == 0.5
    assert np.all(scaled[1] == 0)  # an all-zero map stays 0
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        scale_by_max(torch.zeros(2, 2))


def test_residual_figure_columns_scaling_and_titles():
    x, dx, grads = _batch()
    alphas = {n: torch.tensor([0.1, -0.2, 0.3]) for n in grads}
    fig = residual_figure(x, dx, grads, targets=[4, 4, 4], labels=[8, 1, 0], alphas=alphas,
                          row_names=["test #5", "test #6", "test #7"])
    assert len(fig.data) == 3 * 5  # x | dx_hat | x + dx_hat | 2 models, per row
    signed = [t for t in fig.data if getattr(t, "coloraxis", None) == "coloraxis"]
    assert len(signed) == 3 * 3
    for t in signed:  # each map divided by its own max |value|
        z = np.asarray(t.z)
        assert np.isclose(np.abs(z).max(), 1.0) and z.min() >= -1 and z.max() <= 1
    # the tiny pgd gradient fills the scale as much as the big one
    pgd = [t for t in signed if t.name == "pgd-linf"][0]
    assert np.isclose(np.abs(np.asarray(pgd.z)).max(), 1.0)
    torch.testing.assert_close(torch.tensor(np.asarray(pgd.customdata)), grads["mnist-5k/pgd-linf"][0, 0].double())
    ca = fig.layout.coloraxis
    assert ca.cmin == -1 and ca.cmax == 1 and ca.cmid == 0
    text = _annotations(fig)
    # one target for all rows: headers name it and the model
    assert "residual dx̂<br>toward 4" in text and "x + dx̂<br>= G(z*, 4)" in text
    assert any(t.startswith("<b>standard</b>") and "d<sub>4</sub>" in t for t in text)
    assert any(t.startswith("<b>pgd-linf</b>") for t in text)
    assert "test #6 · label 1" in text and "1 → 4" in text and "G(z*, 4)" in text
    assert "∇(d<sub>4</sub> − d<sub>1</sub>)<br>α_dx -0.20" in text
    # x + dx_hat is clipped into [0, 1] for display
    moved = fig.data[2]
    torch.testing.assert_close(torch.tensor(np.asarray(moved.z)), (x[0, 0] + dx[0, 0]).clamp(0, 1).double())


def test_residual_figure_with_true_residual_and_class_names():
    x, dx, grads = _batch(n=2)
    fig = residual_figure(x, dx, grads, targets=[1, 0], labels=[0, 1], dx_true=-dx, cos_true=[-1.0, -1.0],
                          class_names=["small", "large"], title="")
    assert len(fig.data) == 2 * 6 and fig.layout.title.text is None
    text = _annotations(fig)
    assert "true residual dx<br>toward c" in text  # two targets: no class in the headers
    assert "small → large<br>cos(dx̂, dx) -1.00" in text and "large → small" in text
    true_maps = [t for t in fig.data if t.name == "dx"]
    assert len(true_maps) == 2
    np.testing.assert_allclose(np.asarray(true_maps[0].z), -np.asarray(fig.data[1].z))


def test_residual_figure_refuses_bad_input():
    x, dx, grads = _batch(n=2)
    with pytest.raises(ValueError, match="target equals the label for row 1"):
        residual_figure(x, dx, grads, targets=[1, 2], labels=[0, 2])
    with pytest.raises(ValueError, match="dx_hat has shape"):
        residual_figure(x, dx[:, :, :4], grads, targets=[1, 2], labels=[0, 0])
    with pytest.raises(ValueError, match="gradient of 'mnist-5k/standard'"):
        residual_figure(x, dx, {"mnist-5k/standard": dx[:1]}, targets=[1, 2], labels=[0, 0])
    with pytest.raises(ValueError, match="one entry per image"):
        residual_figure(x, dx, grads, targets=[1], labels=[0, 0])
    with pytest.raises(ValueError, match="non-empty"):
        residual_figure(x[:0], dx[:0], {}, targets=[], labels=[])


def test_histogram_shares_bins_and_reports_mean_and_n():
    a = {"mnist-5k/standard": np.array([0.0, 0.1, 0.2, np.nan]), "mnist-5k/pgd-linf": np.array([0.5, 0.7])}
    fig = alpha_histogram_figure(a, bins=10)
    hists = [t for t in fig.data if t.type == "histogram"]
    assert [h.name for h in hists] == ["standard · mean 0.100 · n 3", "pgd-linf · mean 0.600 · n 2"]
    assert hists[0].xbins.to_plotly_json() == hists[1].xbins.to_plotly_json()
    assert hists[0].xbins.start == 0.0 and np.isclose(hists[0].xbins.size, 0.07)
    means = [t for t in fig.data if t.type == "scatter"]
    assert [m.x[0] for m in means] == pytest.approx([0.1, 0.6])
    assert hists[0].marker.color != hists[1].marker.color
    with pytest.raises(ValueError):
        alpha_histogram_figure({})


def test_scatter_and_table():
    dx = {"a/standard": [0.1, 0.3], "a/pgd": [0.5, 0.7]}
    ax = {"a/standard": [0.05, 0.15], "a/pgd": [0.2, 0.4]}
    fig = alpha_scatter_figure(dx, ax, indices=[10, 11])
    pts = [t for t in fig.data if t.name in ("standard", "pgd")]
    assert list(pts[0].x) == [0.05, 0.15] and list(pts[0].y) == [0.1, 0.3] and list(pts[0].customdata) == [10, 11]
    mean = [t for t in fig.data if t.name == "mean pgd"][0]
    assert mean.x[0] == pytest.approx(0.3) and mean.y[0] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="same models"):
        alpha_scatter_figure(dx, {"a/standard": [0, 0]})
    table = alignment_table(dx, ax)
    assert isinstance(table, pd.DataFrame) and list(table["model"]) == ["standard", "pgd"]
    assert list(table.columns) == ["model", "n images", "mean α_dx", "s.e. α_dx", "mean α_x"]
    assert table["mean α_dx"].tolist() == [0.2, 0.6] and table["n images"].tolist() == [2, 2]
    assert table["s.e. α_dx"].tolist() == [0.1, 0.1]
    sq = alignment_table(dx, ax, cos_true=[0.9, 0.7, np.nan], alpha_true={"a/pgd": [1.0, 0.0]})
    assert sq["mean cos(dx̂, dx true)"].tolist() == [0.8, 0.8] and sq["n (cos)"].tolist() == [2, 2]
    assert np.isnan(sq["mean α_dx (true dx)"][0]) and sq["mean α_dx (true dx)"][1] == 0.5
