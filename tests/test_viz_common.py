"""Tests for gradviz.viz.common: the helpers the figure modules share."""

import numpy as np
import pytest
import torch

from gradviz.viz.common import as_array, chw, class_name, image_trace, prediction_text, short_model_name


def test_short_model_name():
    assert short_model_name("mnist-5k/pgd-linf") == "pgd-linf"
    assert short_model_name("/tmp/x/my model.pt") == "my model"
    assert short_model_name("plain") == "plain"


def test_as_array_and_chw():
    t = torch.ones(1, 1, 2, 2, requires_grad=True)
    a = as_array(t)
    assert a.dtype == np.float64 and a.shape == (1, 1, 2, 2)
    assert chw(t, "x").shape == (1, 2, 2)
    with pytest.raises(ValueError, match="x must be one image"):
        chw(torch.ones(2, 1, 2, 2), "x")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        chw(torch.ones(2, 4, 4), "x", channels=(1, 3))


def test_class_name_and_prediction_text():
    assert class_name(["cat", "dog"], 1) == "dog" and class_name(["cat"], 5) == "5" and class_name(None, 2) == "2"
    assert prediction_text((1, 0.5), ["cat", "dog"], 1) == "dog (50.0 %)"
    assert "color" in prediction_text((0, 0.9), None, 1) and prediction_text(None, None, 1) == ""


def test_image_trace_gray_and_rgb():
    gray = image_trace(np.full((1, 2, 2), 0.25), "a", hover="input")
    assert gray.type == "heatmap" and gray.zmin == 0 and gray.zmax == 1 and "input" in gray.hovertemplate
    rgb = image_trace(np.ones((3, 2, 2)), "b", xaxis="x2", yaxis="y2")
    assert rgb.type == "image" and np.asarray(rgb.z).shape == (2, 2, 3) and rgb.xaxis == "x2"


@pytest.mark.parametrize("rows, cols, h, v", [(1, 1, 0.0, 0.0), (3, 4, 0.05, 0.1), (8, 3, 0.02, 0.07)])
def test_image_grid_layout_places_panels_where_make_subplots_does(rows, cols, h, v):
    from plotly.subplots import make_subplots

    from gradviz.viz.common import grid_axes, image_grid_layout

    titles = [f"panel {k}" for k in range(1, rows * cols)] + [""]  # the last panel untitled
    layout = image_grid_layout(rows, cols, h_spacing=h, v_spacing=v, titles=titles, title_size=11)
    ref = make_subplots(rows=rows, cols=cols, horizontal_spacing=h, vertical_spacing=v, subplot_titles=titles)
    for k in range(1, rows * cols + 1):
        s = "" if k == 1 else str(k)
        for kind in ("x", "y"):
            assert np.allclose(layout[f"{kind}axis{s}"]["domain"], ref.layout[f"{kind}axis{s}"].domain), (k, kind)
        assert layout[f"yaxis{s}"]["scaleanchor"] == f"x{s}" and layout[f"yaxis{s}"]["autorange"] == "reversed"
        assert grid_axes(k) == {"xaxis": f"x{s}", "yaxis": f"y{s}"}
    ours = [(a["text"], a["x"], a["y"]) for a in layout["annotations"]]
    theirs = [(a.text, a.x, a.y) for a in ref.layout.annotations]
    assert len(ours) == rows * cols - 1 == len(theirs)
    assert all(t1 == t2 and np.isclose(x1, x2) and np.isclose(y1, y2) for (t1, x1, y1), (t2, x2, y2) in zip(ours, theirs))
    assert all(a["font"]["size"] == 11 for a in layout["annotations"])


def test_image_grid_layout_refuses_an_impossible_grid():
    from gradviz.viz.common import image_grid_layout

    with pytest.raises(ValueError, match="at least one row"):
        image_grid_layout(0, 3)
    with pytest.raises(ValueError, match="no room"):
        image_grid_layout(2, 3, h_spacing=0.6)


def test_image_trace_spec_is_the_trace_as_a_dict():
    from gradviz.viz.common import image_trace_spec

    img = np.random.default_rng(0).random((1, 3, 3))
    spec = image_trace_spec(img, "a", hover="input", xaxis="x2", yaxis="y2")
    trace = image_trace(img, "a", hover="input", xaxis="x2", yaxis="y2")
    assert spec["type"] == trace.type == "heatmap"
    assert np.allclose(spec["z"], trace.z) and spec["hovertemplate"] == trace.hovertemplate and spec["xaxis"] == "x2"
