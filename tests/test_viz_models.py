"""Unit tests of gradviz.viz.models: which log keys become which lines, and bad logs; the
training-snapshot figures (one epoch, a strip of epochs, the animation) and their NPZ."""

import io
import math

import numpy as np
import pytest

from gradviz.training.snapshots import Snapshots
from gradviz.viz.export import figure_to_bytes, snapshots_to_npz, static_export_available
from gradviz.viz.models import (
    agr_diagnostics_figure, epoch_accuracies, gradient_cosines_figure, has_agr_diagnostics, has_gradient_cosines,
    live_loss_figure, snapshot_animation_figure, snapshot_epochs, snapshot_grid_figure, snapshot_images,
    snapshot_strip_figure, training_curves_figure,
)
from gradviz.viz.style import DIVERGING_COLORSCALE


def _names(fig) -> list[str]:
    return [t.name for t in fig.data]


def test_training_curves_draw_the_keys_a_log_has_in_percent():
    log = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "monitor_clean_accuracy": 0.6},
           {"epoch": 2, "loss": 0.5, "accuracy": 0.75, "monitor_clean_accuracy": float("nan")}]
    fig = training_curves_figure(log, monitor={"n_images": 100})
    assert _names(fig) == ["training loss (the objective)", "train, clean (running mean)",
                           "held-out, clean (100 test images)"]
    loss, train, held_out = fig.data
    assert list(train.y) == [50.0, 75.0]
    assert list(held_out.x) == [1] and list(held_out.y) == [60.0]  # the NaN epoch is left out
    with pytest.raises(ValueError, match="empty"):
        training_curves_figure([])


def test_training_curves_leave_out_a_ce_equal_to_the_loss():
    log = [{"epoch": e, "loss": 1.0 / e, "ce": 1.0 / e} for e in (1, 2)]
    assert _names(training_curves_figure(log)) == ["training loss (the objective)"]
    log[1]["ce"] = 0.4
    assert "cross-entropy part" in _names(training_curves_figure(log))


def test_agr_diagnostics_from_a_log_and_its_start_line():
    log = [{"epoch": e, "agr_cos": 0.1 * e, "agr_gop_rate": 0.2, "agr_norm_adv": 1.0} for e in (1, 2, 3)]
    assert has_agr_diagnostics(log) and not has_agr_diagnostics([{"loss": 1.0}])
    fig = agr_diagnostics_figure(log, start_epoch=2)
    assert _names(fig) == ["mean cosine", "GOP rate (cos <= 0)", "|g_adv|"]
    assert [s.x0 for s in fig.layout.shapes] == [1.5, 1.5]  # the dashed line in both panels


def test_gradient_cosines_one_line_per_objective_key():
    pag = [{"epoch": e, "pag_cos": 0.1 * e, "pag_cos_true": -0.05 * e, "loss": 1.0} for e in (1, 2, 3)]
    assert has_gradient_cosines(pag)
    fig = gradient_cosines_figure(pag, title="")
    assert [t.hovertemplate.split("<extra>")[1] for t in fig.data] == ["pag_cos</extra>", "pag_cos_true</extra>"]
    assert list(fig.data[1].y) == pytest.approx([-0.05, -0.1, -0.15])
    assert tuple(fig.layout.yaxis.range) == (-1.05, 1.05) and fig.layout.title.text is None
    igd = gradient_cosines_figure([{"epoch": 1, "cos": 0.7}, {"epoch": 2, "cos": math.nan}])
    assert len(igd.data) == 1 and list(igd.data[0].x) == [1] and igd.data[0].name.startswith("IGD")
    assert gradient_cosines_figure([{"epoch": 1, "alpha": 0.4}]).data[0].name.startswith("L_alpha")


def test_gradient_cosines_refuse_a_log_without_any():
    assert not has_gradient_cosines([{"epoch": 1, "loss": 1.0}]) and not has_gradient_cosines([])
    with pytest.raises(ValueError, match="no input-gradient cosine"):
        gradient_cosines_figure([{"epoch": 1, "loss": 1.0}])


def test_live_loss_batches_and_epoch_means():
    fig = live_loss_figure([(0.25, 2.0), (0.5, 1.0)], 2, log=[{"epoch": 1, "loss": 1.5}])
    assert _names(fig) == ["batch loss", "epoch mean"]
    assert list(fig.data[0].x) == [0.5, 1.0] and tuple(fig.layout.xaxis.range) == (0, 2)


# ----------------------------------------------------------------------- training snapshots

K, H = 3, 4


def _snapshots(epochs=(0, 1, 2), seed=0, scale=None, images=None) -> Snapshots:
    """K = 3 images of 1 x 4 x 4; the gradient of image k at epoch row e is seeded noise times
    ``scale[e]`` (default e + 1); predictions right from the second epoch on, except image 2."""
    rng = np.random.default_rng(seed)
    e = len(epochs)
    scale = np.arange(1, e + 1) if scale is None else np.asarray(scale)
    grads = (rng.standard_normal((e, K, 1, H, H)) * scale[:, None, None, None, None]).astype(np.float32)
    labels = np.array([0, 1, 2])
    preds = np.tile(labels, (e, 1))
    preds[:1] = 5
    preds[:, 2] = 7
    return Snapshots(
        epochs=np.asarray(epochs, dtype=np.int64),
        images=images if images is not None else np.linspace(0, 1, K * H * H, dtype=np.float32).reshape(K, 1, H, H),
        labels=labels, indices=np.array([10, 20, 30]), input_gradients=grads, predictions=preds,
        probabilities=np.full((e, K), 0.875, dtype=np.float32), seconds=np.zeros(e), dataset="mnist-5k",
    )


LOG = [{"epoch": 1, "monitor_clean_accuracy": 0.5, "monitor_robust_accuracy": 0.25},
       {"epoch": 2, "monitor_clean_accuracy": 0.75}]
MONITOR = {"attack": {"steps": 10, "eps": 0.3}}


def _heatmaps(fig):
    return [t for t in fig.data if t.type == "heatmap" and t.coloraxis]


def _texts(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_epoch_accuracies_read_the_monitor_of_that_epoch():
    assert epoch_accuracies(LOG, 1) == (0.5, 0.25)
    assert epoch_accuracies(LOG, 2) == (0.75, None)
    assert epoch_accuracies(LOG, 0) == (None, None) and epoch_accuracies([], 3) == (None, None)
    assert epoch_accuracies([{"epoch": 1, "monitor_clean_accuracy": float("nan")}], 1) == (None, None)


def test_snapshot_grid_one_epoch_signed_per_panel_maps_with_predictions_and_accuracies():
    s = _snapshots()
    fig = snapshot_grid_figure({"mnist-5k/run": s}, 1, logs={"mnist-5k/run": LOG},
                               monitors={"mnist-5k/run": MONITOR})
    maps = _heatmaps(fig)
    assert len(fig.data) == 2 * K and len(maps) == K  # the inputs, then one map per image
    for k, t in enumerate(maps):  # per-panel: the gradient / its own max |value|, signs kept
        g = s.input_gradients[1, k, 0]
        np.testing.assert_allclose(t.z, g / np.abs(g).max(), rtol=1e-6)
        np.testing.assert_allclose(t.customdata, g, rtol=1e-6)  # hover: the value before scaling
    ca = fig.layout.coloraxis
    assert ca.cmid == 0 and (ca.cmin, ca.cmax) == (-1, 1) and tuple(c for _, c in ca.colorscale) == DIVERGING_COLORSCALE
    texts = _texts(fig)
    assert "<b>run</b> · epoch 1 · held-out clean 50.0 %, robust (PGD-10 eps 0.3) 25.0 %" in texts
    assert "0 (87.5 %)" in texts and "1 (87.5 %)" in texts
    assert any(t.startswith("<span") and "7 (87.5 %)" in t for t in texts)  # wrong: red
    assert "#20: 1" in texts  # the input's test index and true class
    assert fig.layout.title.text.startswith("Input gradients at epoch 1")
    before = _texts(snapshot_grid_figure({"mnist-5k/run": s}, 0, logs={"mnist-5k/run": LOG}))
    assert "<b>run</b> · before training (epoch 0)" in before


def test_snapshot_grid_shared_and_raw_scales_range_over_the_chosen_epochs():
    s = _snapshots(scale=[1.0, 2.0, 4.0])
    raw = snapshot_grid_figure({"r": s}, 1, scaling="raw", scale_over=[0, 1, 2])
    peak = float(np.abs(s.input_gradients).max())
    assert raw.layout.coloraxis.cmax == pytest.approx(peak) and raw.layout.coloraxis.cmin == pytest.approx(-peak)
    np.testing.assert_allclose(_heatmaps(raw)[0].z, s.input_gradients[1, 0, 0])
    alone = snapshot_grid_figure({"r": s}, 1, scaling="raw")
    assert alone.layout.coloraxis.cmax == pytest.approx(float(np.abs(s.input_gradients[1]).max()))
    shared = snapshot_grid_figure({"r": s}, 1, scaling="shared", scale_over=[0, 1, 2])
    for k, t in enumerate(_heatmaps(shared)):  # image k over every epoch
        np.testing.assert_allclose(t.z, s.input_gradients[1, k, 0] / np.abs(s.input_gradients[:, k]).max(), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown scaling"):
        snapshot_grid_figure({"r": s}, 1, scaling="log")


def test_snapshot_grid_compares_two_models_and_says_which_epoch_one_lacks():
    a, b = _snapshots((0, 1, 2)), _snapshots((0, 1), seed=1)
    fig = snapshot_grid_figure({"mnist-5k/a": a, "mnist-5k/b": b}, 2, logs={"mnist-5k/a": LOG})
    maps = _heatmaps(fig)
    assert len(maps) == 2 * K
    assert all(v is None for row in maps[K].z for v in row)  # b's row is empty
    assert "<b>b</b> · no snapshot of epoch 2 (it has epochs 0–1)" in _texts(fig)
    assert "<b>a</b> · epoch 2 · held-out clean 75.0 %" in _texts(fig)
    assert snapshot_epochs({"a": a, "b": _snapshots((0, 3))}) == [0, 1, 2, 3]
    other = _snapshots(images=np.zeros((K, 1, H, H), np.float32))
    with pytest.raises(ValueError, match="different images"):
        snapshot_grid_figure({"a": a, "c": other}, 1)


def test_snapshot_figures_refuse_what_they_cannot_draw():
    s = _snapshots()
    with pytest.raises(ValueError, match="at least one"):
        snapshot_grid_figure({}, 0)
    with pytest.raises(ValueError, match="no snapshot yet"):
        snapshot_grid_figure({"r": _snapshots(())}, 0)
    with pytest.raises(ValueError, match="positions in 0..2"):
        snapshot_images({"r": s}, [3])
    with pytest.raises(ValueError, match="panel_size"):
        snapshot_grid_figure({"r": s}, 0, panel_size=10)
    with pytest.raises(ValueError, match="at least one epoch"):
        snapshot_strip_figure({"r": s}, [])
    with pytest.raises(ValueError, match="start_epoch"):
        snapshot_animation_figure({"r": s}, start_epoch=7)


def test_snapshot_strip_stacks_the_chosen_epochs_of_each_model():
    a, b = _snapshots(), _snapshots(seed=1)
    fig = snapshot_strip_figure({"mnist-5k/a": a, "mnist-5k/b": b}, [2, 0, 2], images=[0, 2])
    assert len(fig.data) == 2 + 2 * 2 * 2  # 2 inputs; epochs 2 and 0, each a then b, 2 images each
    headers = [t for t in _texts(fig) if t.startswith("<b>") and "input" not in t]
    assert [h.split(" · ")[:2] for h in headers] == [["<b>a</b>", "epoch 2"], ["<b>b</b>", "epoch 2"],
                                                       ["<b>a</b>", "before training (epoch 0)"],
                                                       ["<b>b</b>", "before training (epoch 0)"]]
    np.testing.assert_allclose(_heatmaps(fig)[1].customdata, a.input_gradients[2, 2, 0])  # image 2 of a at epoch 2
    assert fig.layout.title.text.startswith("Input gradients at epochs 2, 0")


@pytest.mark.skipif(not static_export_available(), reason="kaleido or a Chromium is missing")
def test_snapshot_strip_exports_as_png():
    png = figure_to_bytes(snapshot_strip_figure({"r": _snapshots()}, [0, 2]), "png", scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_animation_has_a_frame_per_epoch_a_slider_and_play():
    a, b = _snapshots((0, 1, 2), scale=[1.0, 2.0, 4.0]), _snapshots((0, 1), seed=1)
    fig = snapshot_animation_figure({"a": a, "b": b}, scaling="raw", logs={"a": LOG}, frame_ms=300)
    assert [f.name for f in fig.frames] == ["0", "1", "2"]
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == ["0", "1", "2"] and slider.active == 0
    assert list(slider.steps[1].args[0]) == ["1"] and slider.steps[1].method == "animate"
    play, pause = fig.layout.updatemenus[0].buttons
    assert "Play" in play.label and play.args[1]["frame"]["duration"] == 300 and "Pause" in pause.label
    last = fig.frames[2]
    assert list(last.traces) == list(range(K, 3 * K))  # the heatmaps change, the inputs stay
    np.testing.assert_allclose(last.data[0].z, a.input_gradients[2, 0, 0])
    assert all(v is None for row in last.data[K].z for v in row)  # b has no epoch 2
    assert "<b>b</b> · no snapshot of epoch 2 (it has epochs 0–1)" in [t["text"] for t in last.layout.annotations]
    assert last.layout.title.text.startswith("Input gradients at epoch 2")
    peak = max(float(np.abs(s.input_gradients).max()) for s in (a, b))
    assert fig.layout.coloraxis.cmax == pytest.approx(peak)  # raw: one range over every frame
    html = figure_to_bytes(fig, "html")
    assert b"Plotly.addFrames" in html or b'"frames"' in html
    started = snapshot_animation_figure({"a": a}, start_epoch=2)
    assert started.layout.sliders[0].active == 2 and started.layout.title.text.startswith("Input gradients at epoch 2")


def test_snapshots_to_npz_holds_every_epoch_of_every_model():
    a, b = _snapshots((0, 1, 2)), _snapshots((0, 1), seed=1)
    data = np.load(io.BytesIO(snapshots_to_npz({"a": a, "b": b}, logs={"a": LOG}, settings={"scaling": "raw"})),
                   allow_pickle=False)
    assert data["model_names"].tolist() == ["a", "b"] and data["epochs"].tolist() == [0, 1, 2]
    assert data["input_gradients"].shape == (2, 3, K, 1, H, H) and data["input_gradients"].dtype == np.float32
    np.testing.assert_array_equal(data["input_gradients"][0], a.input_gradients)
    np.testing.assert_array_equal(data["input_gradients"][1, :2], b.input_gradients)
    assert np.isnan(data["input_gradients"][1, 2]).all() and data["has_snapshot"].tolist() == [[True] * 3,
                                                                                                [True, True, False]]
    assert data["predictions"][1, 2].tolist() == [-1] * K and data["predictions"][0, 0].tolist() == [5, 5, 7]
    np.testing.assert_array_equal(data["images"], a.images)
    assert data["labels"].tolist() == [0, 1, 2] and data["indices"].tolist() == [10, 20, 30]
    np.testing.assert_allclose(data["clean_accuracy"][0], [np.nan, 0.5, 0.75])
    np.testing.assert_allclose(data["robust_accuracy"][0], [np.nan, 0.25, np.nan])
    assert np.isnan(data["clean_accuracy"][1]).all() and str(data["dataset"]) == "mnist-5k"
    assert '"scaling": "raw"' in str(data["settings"])


def test_training_curves_mark_the_epoch_the_snapshots_show():
    log = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.3 * e} for e in (1, 2, 3)]
    fig = training_curves_figure(log, mark_epoch=2)  # in both panels
    assert [s.x0 for s in fig.layout.shapes] == [2, 2]
    assert not training_curves_figure(log).layout.shapes
