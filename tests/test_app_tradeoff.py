"""App tests (AppTest) of the Trade-off page: the eps slider moves through the family's
gradients, and the trade-off plot draws from the stored (shipped) results."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from gradviz.studies import tradeoff
from tests.helpers import app_charts, plotly_values

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def tradeoff_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/tradeoff.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_slider_walks_the_family_and_the_title_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    at = tradeoff_page()
    assert at.title[0].value.startswith("Robustness and interpretability")
    names = [c.name for c in tradeoff.family("mnist-5k", "linf")]
    slider = at.select_slider(key="trade_eps")
    assert list(slider.options) == [f"{c.eps:g}" + (" (standard)" if c.eps == 0 else "")
                                    for c in tradeoff.family("mnist-5k", "linf")]
    assert any(t.startswith(f"{names[0]}: trained at linf eps 0") for t in app_charts(at))
    slider.set_value(names[-1]).run()
    assert not at.exception
    assert any(t.startswith(f"{names[-1]}: trained at linf eps") for t in app_charts(at))
    at.radio(key="trade_norm").set_value("l2").run()
    assert not at.exception
    l2 = [c.name for c in tradeoff.family("mnist-5k", "l2")]
    assert any(t.startswith(f"{l2[0]}: trained at l2 eps 0") for t in app_charts(at))


def test_the_tradeoff_plot_draws_from_stored_results_without_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))  # an empty user store: only shipped results
    at = tradeoff_page()
    charts = app_charts(at)
    plots = [s for t, s in charts.items() if t.startswith("Clean accuracy against")]
    assert len(plots) == 1, list(charts)
    spec = plots[0]
    assert [tr["name"] for tr in spec["data"]] == ["l∞ family", "l₂ family"]
    for norm, trace in zip(("linf", "l2"), spec["data"]):  # every member of each family has a point
        assert len(plotly_values(trace["x"])) == len(tradeoff.family("mnist-5k", norm)) >= 5
    assert sum(len(plotly_values(tr["x"])) for tr in spec["data"]) >= 8 + 2  # >= 8 models (standard is in both)
    assert any("clean accuracy" in m.value and "rises" in m.value or "falls" in m.value for m in at.markdown)
    assert not (tmp_path / "studies").exists()  # nothing was computed into the user store
    # another measure: the manifold distance, also stored for every member
    at.radio(key="trade_measure").set_value("manifold").run()
    assert not at.exception
    spec = [s for t, s in app_charts(at).items() if t.startswith("Clean accuracy against")][0]
    assert all(len(plotly_values(tr["x"])) >= 5 for tr in spec["data"])
