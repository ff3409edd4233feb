"""App tests (streamlit.testing.v1.AppTest) of the Alignment page.

The page uses the shipped generator of a dataset when there is one (assets/generators), else
a tiny untrained one written for the test into a temporary GRADVIZ_HOME (the residuals are
then meaningless, but the page works the same). Residuals are stored in that temporary home,
and the projection runs with few steps (the page's "Custom" setting) to stay fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from gradviz import generative, zoo
from gradviz.data import load_dataset
from tests.helpers import app_chart as chart, app_charts as charts

TIMEOUT = 300
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def gen_home(tmp_path, monkeypatch):
    """A fresh GRADVIZ_HOME (residual store, user generators) with a tiny generator for
    mnist-5k and squares wherever no shipped one exists."""
    home = tmp_path / "home"
    monkeypatch.setenv("GRADVIZ_HOME", str(home))
    shipped = {p.stem for p in generative.ASSETS_DIR.glob("*.pt")} if generative.ASSETS_DIR.is_dir() else set()
    for dataset, k in (("mnist-5k", 10), ("squares", 2)):
        if dataset not in shipped:
            G = generative.Generator(z_dim=8, num_classes=k, width=8).eval()
            card = zoo.ModelCard(name=f"{dataset}/generator", dataset=dataset, arch="cgan-dcgan", method="cgan",
                                 command="test fixture: untrained")
            generative.save_generator(G, card, home / "generators" / f"{dataset}.pt")
    return home


def annotations(spec: dict) -> list[str]:
    return [a.get("text", "") for a in spec["layout"].get("annotations", [])]


def alignment_page(dataset: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if dataset:
        at.session_state["gv_dataset"] = dataset
    at.run()
    at.switch_page("pages/alignment.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.radio(key="align_steps").set_value("custom").run()
    at.number_input(key="align_s1").set_value(10)
    at.number_input(key="align_s2").set_value(5).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_on_mnist_with_the_shipped_models(shipped_models, gen_home):
    at = alignment_page()
    assert at.title[0].value == "Gradient alignment"
    assert "What am I looking at" in at.expander[0].label
    assert any("0.575" in m.value and "0.169" in m.value and "0.078" in m.value for m in at.markdown)
    assert not at.error and not at.warning
    spec = chart(at, "GAN residual toward the closest class of standard")
    heat = [t for t in spec["data"] if t["type"] == "heatmap"]
    assert len(heat) == 4 * (3 + 2)  # images 0-3: x | dx_hat | x + dx_hat | standard | pgd-linf
    text = annotations(spec)
    assert any(t.startswith("<b>standard</b>") for t in text) and any(t.startswith("<b>pgd-linf</b>") for t in text)
    assert not any(t.startswith("true residual") for t in text)  # mnist has no exact residual
    y = load_dataset("mnist-5k", "test").y
    assert f"test #0 · label {int(y[0])}" in text
    # the residuals are stored on disk, in the temporary home
    assert list((gen_home / "residuals").glob("mnist-5k-test-*-10+5-*.pairs.pt"))

    # over the test split, on request
    assert not at.get("plotly_chart")[1:] and any("Press **Compute**" in i.value for i in at.info)
    at.number_input(key="align_n").set_value(12)
    at.button(key="align_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    hist = chart(at, "α_dx per test image (12 images")
    names = [t["name"] for t in hist["data"] if t["type"] == "histogram"]
    assert len(names) == 2 and names[0].startswith("standard · mean ") and names[0].endswith(" · n 12")
    chart(at, "α_dx against α_x (12 images)")
    table = at.dataframe[0].value
    assert list(table["model"]) == ["standard", "pgd-linf"] and list(table["n images"]) == [12, 12]
    assert np.all(np.abs(table["mean α_dx"]) <= 1) and "mean cos(dx̂, dx true)" not in table.columns

    # a fixed class equal to an image's label: a message, that image left out
    label0 = int(y[0])
    at.radio(key="align_target").set_value("class").run()
    at.selectbox(key="align_class").set_value(label0).run()
    assert not at.exception
    assert any("Test #0 has the label" in w.value and "not defined" in w.value for w in at.warning)
    spec = chart(at, f"GAN residual toward class {label0}")
    assert "test #0 · label" not in " ".join(annotations(spec))
    # only that image: the message and no figure, no exception
    at.text_input(key="align_indices").set_value("0").run()
    assert not at.exception and any("Test #0 has the label" in w.value for w in at.warning)
    assert not [t for t in charts(at) if t.startswith("GAN residual")]


def test_squares_shows_the_true_residual(gen_home):
    if not (Path(APP).parent / "assets" / "models" / "squares" / "standard.pt").is_file():
        pytest.skip("shipped squares models missing")
    at = alignment_page("squares")
    assert not at.error
    spec = chart(at, "GAN residual toward the closest class of ")
    text = annotations(spec)
    assert any(t.startswith("true residual dx") for t in text)
    assert any(t.endswith("label small") or t.endswith("label large") for t in text)  # squares' classes
    assert any("cos(dx̂, dx)" in t for t in text)
    assert len([t for t in spec["data"] if t["type"] == "heatmap"]) == 4 * (4 + 2)
    at.number_input(key="align_n").set_value(8)
    at.button(key="align_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert "mean cos(dx̂, dx true)" in table.columns and list(table["n (cos)"]) == [8, 8]
    assert sorted(table["model"]) == ["pgd-linf", "standard"]
    assert "mean α_dx (true dx)" in table.columns


def test_dataset_without_a_generator_gives_a_clear_error(shipped_models, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(generative, "ASSETS_DIR", tmp_path / "no-generators")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/alignment.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No generator for the dataset 'mnist-5k'" in e.value and "train-gan" in e.value for e in at.error)
    assert not at.get("plotly_chart") and not at.button


def test_the_shipped_results_over_the_test_split_draw_at_once(shipped_models, tmp_path, monkeypatch):
    """At the page's defaults (standard and pgd-linf, fast projection, 300 images) the results
    ship in assets/studies: the section draws on the first visit, computing nothing."""
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))  # an empty user store
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/alignment.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("Press **Compute**" in i.value for i in at.info)
    assert chart(at, "α_dx per test image (300 images")
    table = at.dataframe[0].value
    assert len(table) == 2 and "mean α_dx" in table.columns
    assert not (tmp_path / "studies").exists()
