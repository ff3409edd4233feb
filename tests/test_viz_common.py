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
