"""Tests for gradviz.viz.export: static export (HTML always; PNG/SVG/PDF through kaleido where
a Chromium is present) and the numbers behind every page's figures (CSV / NPZ)."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest
import torch

from gradviz import attacks
from gradviz.viz.export import (
    StaticExportUnavailable,
    alignment_to_csv,
    alignment_to_npz,
    attack_to_npz,
    curves_to_csv,
    examples_to_npz,
    export_figure,
    figure_to_bytes,
    find_browser,
    gini_to_csv,
    grid_to_npz,
    image_to_npz,
    noise_to_csv,
    occlusion_to_csv,
    residual_figure_to_npz,
    static_export_available,
    sweep_to_npz,
)
from gradviz.viz.gradients import gradient_grid_figure
from gradviz.viz.inequality import image_inequality_figure
from tests.helpers import linear_classifier
from tests.test_viz_alignment import _batch
from tests.test_viz_gradients import CLASSES, H, K, N, W, make_grid
from tests.test_viz_inequality import A, B, C, one_hot_and_flat

# ------------------------------------------------------------------------- static export and the grid


def test_grid_npz_round_trip():
    grid = make_grid(method="integrated_gradients", n_steps=4, clip=(1.0, 99.0))
    data = np.load(io.BytesIO(grid_to_npz(grid)), allow_pickle=False)
    assert list(data["model_names"]) == grid.model_names
    assert list(data["names"]) == grid.names
    np.testing.assert_array_equal(data["x"], grid.x.numpy())
    np.testing.assert_array_equal(data["labels"], grid.labels.numpy())
    assert data["attributions"].shape == (2, N, 1, H, W)
    assert data["maps"].shape == (2, N, 1, H, W)
    assert data["logits"].shape == data["probabilities"].shape == (2, N, K)
    assert data["predictions"].shape == data["targets"].shape == (2, N)
    for j, name in enumerate(grid.model_names):
        np.testing.assert_array_equal(data["attributions"][j], grid.attributions[name].numpy())
        np.testing.assert_array_equal(data["predictions"][j], grid.predictions[name].numpy())
    settings = json.loads(str(data["settings"]))
    assert settings["method"] == "integrated_gradients"
    assert settings["options"] == {"n_steps": 4} and settings["clip"] == [1.0, 99.0]


def test_html_export_is_standalone():
    fig = gradient_grid_figure(make_grid(), CLASSES)
    html = figure_to_bytes(fig, "html").decode("utf-8")
    assert html.lstrip().lower().startswith("<html") or html.lstrip().lower().startswith("<!doctype")
    assert 'src="https://cdn.plot.ly' not in html  # plotly.js embedded: works offline
    assert "Plotly.newPlot" in html and len(html) > 1_000_000
    with pytest.raises(ValueError, match="unknown export format"):
        figure_to_bytes(fig, "bmp")


def test_static_export_reports_a_missing_browser(monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    assert find_browser() is None
    assert not static_export_available()
    fig = gradient_grid_figure(make_grid(), CLASSES)
    with pytest.raises(StaticExportUnavailable, match="Chrome or Chromium"):
        figure_to_bytes(fig, "png")
    assert figure_to_bytes(fig, "html")  # HTML needs no browser


def test_static_exports():
    if not static_export_available():
        msg = "no Chrome/Chromium for kaleido (install chromium or set BROWSER_PATH)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    fig = gradient_grid_figure(make_grid(), CLASSES, panel_size=100)
    out = export_figure(fig, ("png", "svg", "pdf"), scale=1)  # one browser for the three
    png = out["png"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert (width, height) == (fig.layout.width, fig.layout.height)
    assert b"<svg" in out["svg"][:500]
    assert out["pdf"].startswith(b"%PDF")
    # figure_to_bytes: one format per call, PNG at scale 2 by default.
    png2 = figure_to_bytes(fig, "png")
    assert int.from_bytes(png2[16:20], "big") == 2 * fig.layout.width
    with pytest.raises(ValueError, match="not a static export format"):
        export_figure(fig, ("html",))


# ------------------------------------------------------------------------------------- Attack page


def test_curves_to_csv():
    grid = [0.0, 0.1, 0.2, 0.3]
    curves = {"m/standard": [0.98, 0.3, 0.0, 0.0], "m/pgd-linf": [0.97, 0.9, 0.8, 0.7]}
    e50 = {k: attacks.eps50(grid, v) for k, v in curves.items()}
    csv_text = curves_to_csv(grid, curves, e50).decode()
    rows = [r.split(",") for r in csv_text.strip().splitlines()]
    assert rows[0] == ["eps", "m/standard", "m/pgd-linf"] and rows[2] == ["0.1", "0.3", "0.9"]
    assert rows[-1][0] == "eps50" and rows[-1][2] == "nan"  # pgd-linf stays above 50 %: eps50 is NaN


def test_sweep_to_npz():
    g = torch.Generator().manual_seed(0)
    imgs = {"m/standard": torch.rand(10, 1, 8, 8, generator=g), "m/pgd": torch.rand(10, 1, 8, 8, generator=g)}
    x = torch.rand(1, 1, 8, 8, generator=g)
    data = np.load(io.BytesIO(sweep_to_npz(x, imgs, range(10), {"eps": 3.0})), allow_pickle=False)
    assert data["images"].shape == (2, 10, 1, 8, 8) and list(data["classes"]) == list(range(10))
    assert "min_eps" not in data and "probs" not in data
    # the smallest-eps view: each target's eps (NaN: none), probabilities, the grid, what was reached
    eps = {"m/standard": np.r_[np.full(9, 2.0), np.nan], "m/pgd": np.full(10, 4.0)}
    probs = {n: np.full(10, 0.6) for n in imgs}
    reached = {n: np.ones((10, 3), dtype=bool) for n in imgs}
    data = np.load(io.BytesIO(sweep_to_npz(x, imgs, range(10), {"mode": "smallest"}, probs=probs, min_eps=eps,
                                           eps_grid=[0.0, 2.0, 4.0], reached=reached)), allow_pickle=False)
    assert data["min_eps"].shape == (2, 10) and np.isnan(data["min_eps"][0, 9]) and data["min_eps"][1, 0] == 4.0
    assert data["probs"].shape == (2, 10) and data["reached"].shape == (2, 10, 3) and data["reached"].dtype == bool
    assert list(data["eps_grid"]) == [0.0, 2.0, 4.0]


def test_attack_to_npz():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 8, 8, generator=g), torch.randint(0, 10, (2,), generator=g)
    res = {n: attacks.run_attack(linear_classifier(64, 10, seed=s).eval(), x, y, eps=0.1, steps=3)
           for s, n in enumerate(["a", "b"])}
    data = np.load(io.BytesIO(attack_to_npz(res)), allow_pickle=False)
    assert data["x_adv"].shape == (2, 2, 1, 8, 8) and data["loss"].shape == (2, 4, 2)
    assert data["logits"].shape == (2, 4, 2, 10) and list(data["model_names"]) == ["a", "b"]
    with pytest.raises(ValueError, match="at least one"):
        attack_to_npz({})


# --------------------------------------------------------------------------------- Inequality page


def test_inequality_numbers_csv_and_npz():
    x, attrs = one_hot_and_flat()
    data = np.load(io.BytesIO(image_to_npz(x, attrs, block=2, settings={"index": 0})), allow_pickle=False)
    assert list(data["model_names"]) == [A, B, C]
    assert data["attributions"].shape == (3, 1, 4, 4)
    assert data["gini"] == pytest.approx([15 / 16, 0.0, 14 / 16])
    assert data["lorenz_shares"].shape == (3, 17)
    assert np.isfinite(data["regional_gini"]).all()

    rows = list(csv.reader(io.StringIO(gini_to_csv([0, 1], {A: [0.5, 0.6]}, {A: [0.4, 0.3]},
                                                       np.array([True, False])).decode())))
    assert rows[0] == ["index", "common_correct", f"gini {A}", f"regional {A}"]
    assert rows[2] == ["1", "0", "0.6", "0.3"]
    rows = list(csv.reader(io.StringIO(noise_to_csv([1, 7], 784, {A: [0.0, 0.25]}, {A: [0.0, 0.1]}).decode())))
    assert rows[0] == ["k", "k_percent", f"inductive {A}", f"random {A}"]
    assert rows[2][:2] == ["7", "0.892857"] and rows[2][2:] == ["0.25", "0.1"]
    rows = list(csv.reader(io.StringIO(occlusion_to_csv([1, 2], {A: [0.1, 0.2], B: [0.0, 0.05]}).decode())))
    assert rows == [["radius", A, B], ["1", "0.1", "0"], ["2", "0.2", "0.05"]]

    ex = np.load(io.BytesIO(examples_to_npz(x, {A: {"u": x, "v": x}}, {"k": 7})), allow_pickle=False)
    assert ex["images"].shape == (1, 2, 1, 4, 4) and list(ex["variants"]) == ["u", "v"]


def test_inequality_figures_export_as_html():
    x, attrs = one_hot_and_flat()
    html = figure_to_bytes(image_inequality_figure(x, attrs), "html")
    assert b"<html" in html[:100] and b"Lorenz" in html


# ---------------------------------------------------------------------------------- Alignment page


def test_alignment_exporters_round_trip():
    x, dx, grads = _batch(n=2)
    raw = residual_figure_to_npz(x, dx, grads, targets=[3, 4], labels=[0, 1], indices=[7, 9], dx_true=dx,
                                 alphas={"mnist-5k/standard": [0.1, 0.2]}, settings={"steps": [300, 75]})
    d = np.load(io.BytesIO(raw), allow_pickle=False)
    assert d["gradients"].shape == (2, 2, 1, 6, 6) and list(d["indices"]) == [7, 9] and "dx_true" in d
    assert d["alpha_dx"][0].tolist() == pytest.approx([0.1, 0.2]) and np.isnan(d["alpha_dx"][1]).all()
    assert json.loads(str(d["settings"])) == {"steps": [300, 75]}
    targets = {"m/a": [3, 4], "m/b": [3, 5]}
    adx, ax = {"m/a": [0.1, 0.2], "m/b": [0.3, 0.4]}, {"m/a": [0.01, 0.02], "m/b": [0.03, 0.04]}
    rows = list(csv.reader(io.StringIO(alignment_to_csv([7, 9], [0, 1], targets, adx, ax, cos_true=[0.5, 0.6])
                                       .decode())))
    assert rows[0] == ["index", "label", "target m/a", "alpha_dx m/a", "alpha_x m/a", "target m/b", "alpha_dx m/b",
                       "alpha_x m/b", "cos_true"]
    assert rows[2] == ["9", "1", "4", "0.2", "0.02", "5", "0.4", "0.04", "0.6"]
    d = np.load(io.BytesIO(alignment_to_npz([7, 9], [0, 1], targets, adx, ax)), allow_pickle=False)
    assert d["targets"].tolist() == [[3, 4], [3, 5]] and d["alpha_dx"].shape == (2, 2)
    assert np.isnan(d["cos_true"]).all() and np.isnan(d["alpha_dx_true"]).all()
