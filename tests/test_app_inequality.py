"""App tests (streamlit.testing.v1.AppTest) of the Inequality page, and of its k parser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from gradviz.ui.inequality_cache import MAX_K, parse_k_list
from tests.helpers import plotly_values as values, app_chart as chart

TIMEOUT = 300
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def inequality_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/inequality.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def traces(spec: dict, kind: str) -> list[dict]:
    return [t for t in spec["data"] if t.get("type") == kind]


def test_parse_k_list():
    assert parse_k_list("0.2%, 1%, 2%", 784) == ([1, 7, 15], [])
    assert parse_k_list("5 20; 5", 784) == ([5, 20], [])
    counts, problems = parse_k_list("1%, abc, 0.5, 1000, 0%, 150%", 784)
    assert counts == [7]
    assert any("'abc'" in p for p in problems)
    assert any("'0.5'" in p and "%" in p for p in problems)
    assert any("'1000'" in p and "larger than the number of features" in p and "784" in p for p in problems)
    assert any("'0%'" in p for p in problems) and any("'150%'" in p for p in problems)
    counts, problems = parse_k_list(" ".join(str(i) for i in range(1, 30)), 784)
    assert len(counts) == MAX_K and any("smallest" in p for p in problems)
    assert parse_k_list("", 784) == ([], [])


def test_inequality_page_default(shipped_models, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))  # an empty user store: only the shipped results
    at = inequality_page()
    assert at.title[0].value == "Saliency inequality"
    assert at.expander and "What am I looking at" in at.expander[0].label
    assert not at.error
    assert at.selectbox(key="ineq_method").value == "integrated_gradients"
    # the note for students: integrated gradients are 0 on the black background
    assert any("exactly 0 on black pixels" in i.value and "Lorenz curve then stays at 0" in i.value for i in at.info)
    spec = chart(at, "Integrated Gradients (50 steps) of the true class · test #0")
    heat = traces(spec, "heatmap")
    assert [t["name"] for t in heat] == ["input", "standard", "pgd-linf"]
    lines = traces(spec, "scatter")
    assert lines[0]["name"].startswith("equality") and len(lines) == 1 + 2
    assert all("Gini 0." in t["name"] for t in lines[1:])
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert any("standard" in t and "Gini" in t and "regional" in t for t in titles)
    labels = [b.label for b in at.get("download_button")]
    assert labels[:5] == ["PNG", "SVG", "PDF", "HTML", "Arrays (NPZ)"]  # the per-image figure's
    assert any(b.label == "Compute" for b in at.button)
    # over the test split: the shipped models' results at the default settings ship
    # (assets/studies) and draw at once, without computing
    assert not any("Press **Compute**" in i.value for i in at.info)
    assert chart(at, "Gini per test image (Integrated Gradients, 200 images)")
    assert chart(at, "Mean Lorenz curve (200 images)")
    assert any(m.value.startswith("**") and "of 200** test images are classified correctly" in m.value
               for m in at.markdown)
    assert not (tmp_path / "studies").exists()  # read, not computed


def test_widget_changes_rerun(shipped_models):
    at = inequality_page()
    before = chart(at, "Integrated Gradients")
    at.selectbox(key="ineq_method").set_value("gradient").run()
    assert not at.exception and not at.error
    grad = chart(at, "Gradient")
    assert traces(grad, "heatmap")[1]["z"] != traces(before, "heatmap")[1]["z"]
    assert not any("exactly 0 on black pixels" in i.value for i in at.info)
    at.number_input(key="ineq_index").set_value(7).run()
    assert not at.exception
    spec = chart(at, "Gradient")
    assert "test #7" in spec["layout"]["title"]["text"]
    assert traces(spec, "heatmap")[0]["z"] != traces(grad, "heatmap")[0]["z"]
    at.selectbox(key="ineq_method").set_value("integrated_gradients").run()
    at.slider(key="ineq_steps").set_value(8).run()
    assert not at.exception
    assert "(8 steps)" in chart(at, "Integrated Gradients")["layout"]["title"]["text"]


def test_block_not_dividing_the_image_is_an_error_not_an_exception(shipped_models):
    at = inequality_page()
    at.number_input(key="ineq_block").set_value(5).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("does not divide" in e and "28 x 28" in e and "[1, 2, 4, 7, 14, 28]" in e for e in errors), errors
    spec = chart(at, "Integrated Gradients")  # the global Gini is still shown
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert any("Gini" in t for t in titles) and not any("regional" in t for t in titles)
    at.number_input(key="ineq_block").set_value(7).run()
    assert not at.error


def test_dataset_wide_on_request_with_bad_k(shipped_models):
    at = inequality_page()
    at.selectbox(key="ineq_method").set_value("gradient").run()
    at.slider(key="ineq_n").set_value(50)
    at.text_input(key="ineq_k").set_value("0.2%, 2%, 10%, 1000")
    at.slider(key="ineq_radii").set_value((1, 3))
    at.slider(key="ineq_npix").set_value(3)
    at.button(key="ineq_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any("'1000'" in e and "larger than the number of features" in e for e in errors), errors
    assert any("classified correctly by every model" in m.value for m in at.markdown)

    hist = chart(at, "Gini per test image")
    h = traces(hist, "histogram")
    assert len(h) == 2 * 2  # global and regional, two models
    lorenz = chart(at, "Mean Lorenz curve")
    assert len(traces(lorenz, "scatter")) == 1 + 2
    noise = chart(at, "Error under inductive noise")
    names = [t["name"] for t in noise["data"]]
    assert names == ["standard · inductive", "standard · random", "pgd-linf · inductive", "pgd-linf · random"]
    assert noise["data"][0]["line"]["dash"] == "solid" and noise["data"][1]["line"]["dash"] == "dash"
    assert values(noise["data"][0]["x"]) == pytest.approx([100 / 784, 100 * 15 / 784, 100 * 78 / 784])
    occ = chart(at, "Error under inductive occlusion")
    assert len(occ["data"]) == 2
    examples = chart(at, "Test #0 perturbed")
    assert len(examples["data"]) == 2 * 4
    table = at.dataframe[0].value
    assert list(table["model"]) == ["standard", "pgd-linf"]
    labels = [b.label for b in at.get("download_button")]
    assert {"Gini per image (CSV)", "Noise error rates (CSV)", "Occlusion error rates (CSV)"} <= set(labels)
    assert labels.count("Arrays (NPZ)") == 6

    # The results stay while the per-image section changes; changing a setting asks again.
    at.number_input(key="ineq_index").set_value(3).run()
    assert not at.exception and chart(at, "Test #3 perturbed")
    at.selectbox(key="ineq_method").set_value("input_x_gradient").run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert any("Press **Compute**" in i.value for i in at.info)


def test_only_bad_k_computes_nothing(shipped_models):
    at = inequality_page()
    at.text_input(key="ineq_k").set_value("5000")
    at.button(key="ineq_go").click().run()
    assert not at.exception
    assert any("'5000'" in e.value and "784" in e.value for e in at.error)
    assert any("at least one valid k" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 1


def test_dataset_npz_numbers(shipped_models):
    """The NPZ behind the dataset figures, read back (through the cache module directly)."""
    import io

    from gradviz.ui.inequality_cache import dataset_inequality

    res = dataset_inequality(("mnist-5k/standard",), "cpu", (0.0,), "mnist-5k", 20, method="gradient", n_steps=50,
                             block=4, k_counts=(1, 7), radii=(1, 2), n_pixels=2)
    data = np.load(io.BytesIO(res.to_npz()), allow_pickle=False)
    assert data["gini"].shape == (1, 20) and data["regional_gini"].shape == (1, 20)
    assert list(data["k"]) == [1, 7] and data["inductive_error"].shape == (1, 2)
    assert data["occlusion_error"].shape == (1, 2) and data["common_correct"].dtype == bool
    assert np.all(np.diff(data["occlusion_error"][0]) >= 0)  # cumulative in the radius
    assert json.loads(str(data["settings"]))["method"] == "gradient"
