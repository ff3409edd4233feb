"""Tests for gradviz.viz.style: one palette, one diverging scale centred on 0."""

import plotly.graph_objects as go

from gradviz.viz.style import DIVERGING_COLORSCALE, PALETTE, model_colours, resolve_colours

A, B, C = "mnist-5k/standard", "mnist-5k/pgd-linf", "mnist-5k/igd"


def test_model_colours_by_position_and_cycling():
    cols = model_colours([A, B, C])
    assert cols == {A: PALETTE[0], B: PALETTE[1], C: PALETTE[2]}
    many = model_colours([f"m{i}" for i in range(len(PALETTE) + 2)])
    assert many["m0"] == many[f"m{len(PALETTE)}"] == PALETTE[0]


def test_resolve_colours_keeps_given_colours():
    assert resolve_colours({B: "#123456"}, [A, B]) == {A: PALETTE[0], B: "#123456"}


def test_diverging_scale_is_symmetric_with_white_in_the_middle():
    scale = DIVERGING_COLORSCALE
    assert len(scale) % 2 == 1 and scale[len(scale) // 2] == "#f7f7f7"
    # the same colours as plotly's "RdBu_r" (blue negative, red positive)
    named = go.layout.Coloraxis(colorscale="RdBu_r").colorscale
    ours = go.layout.Coloraxis(colorscale=list(scale)).colorscale
    as_rgb = [f"rgb({int(c[1:3], 16)},{int(c[3:5], 16)},{int(c[5:7], 16)})" for _, c in ours]
    assert [c.replace(" ", "") for _, c in named] == as_rgb
