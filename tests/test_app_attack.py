"""App tests (streamlit.testing.v1.AppTest) of the Attack page, and of its grid parser."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from gradviz.ui.attack_cache import MAX_GRID, parse_eps_grid
from tests.helpers import app_chart as chart, app_charts as charts

TIMEOUT = 240
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def values(v) -> np.ndarray:
    """A plotly array from a figure's JSON: a list, or plotly.py's base64 ``{"dtype", "bdata"}``."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def attack_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/attack.py")  # straight to the Attack page (app.py still draws the sidebar)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_parse_eps_grid():
    assert parse_eps_grid("0, 0.1 0.05;0.1") == ([0.0, 0.05, 0.1], [])
    grid, problems = parse_eps_grid("0, 8, 4", scale=255.0)
    assert grid == [0.0, 4 / 255, 8 / 255] and not problems
    grid, problems = parse_eps_grid("0.1, abc, -1, 2, nan", limit=1.0)
    assert grid == [0.1]
    assert any("'abc'" in p for p in problems) and any("'-1'" in p for p in problems)
    assert any("'2'" in p and "largest" in p for p in problems) and any("'nan'" in p for p in problems)
    grid, problems = parse_eps_grid(" ".join(str(i) for i in range(40)))
    assert len(grid) == MAX_GRID and any("first" in p for p in problems)


def test_attack_page_default(shipped_models):
    at = attack_page()
    assert at.title[0].value == "Adversarial attacks (PGD)"
    assert at.expander and "What am I looking at" in at.expander[0].label
    assert not at.error
    panels = chart(at, "PGD attack")
    # x | x_adv | perturbation for each of the two shipped models
    assert len(panels["data"]) == 2 * 3
    assert [t["name"] for t in panels["data"][1:3]] == ["x_adv standard", "perturbation standard"]
    ca = panels["layout"]["coloraxis"]
    assert ca["cmid"] == 0 and ca["cmin"] == -1 and ca["cmax"] == 1
    assert "×" in ca["colorbar"]["title"]["text"]
    titles = [a["text"] for a in panels["layout"]["annotations"]]
    assert any(t.startswith("standard: x → ") and "%)" in t for t in titles)
    assert any(t.startswith("(x_adv − x) × ") for t in titles)
    loss = chart(at, "Loss per PGD step")
    assert [t["name"] for t in loss["data"]] == ["standard", "pgd-linf"]
    assert len(values(loss["data"][0]["y"])) == 41  # 40 steps + the start
    table = at.dataframe[0].value
    assert list(table["model"]) == list(shipped_models)
    assert (table["|δ|∞"] <= 0.3 + 1e-6).all() and table["attack succeeded"].iloc[0]  # the standard model falls
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["PNG", "SVG", "PDF", "HTML", "Arrays (NPZ)"]
    assert {b.label for b in at.button} >= {"Compute the curves", "Attack toward every class"}
    assert len(at.main.info) == 2  # the two on-request sections wait for their buttons


def test_attack_widgets_targets_and_errors(shipped_models):
    at = attack_page()
    label = int(at.main.caption[0].value.split("**")[1])
    target = (label + 1) % 10
    at.selectbox(key="atk_target").set_value(target).run()
    assert not at.exception and not at.error
    panels = chart(at, "PGD attack")
    assert f"target {target}" in panels["layout"]["title"]["text"]
    assert "target" in chart(at, "Loss per PGD step")["layout"]["yaxis"]["title"]["text"]

    at.selectbox(key="atk_target").set_value(label).run()  # a target equal to the label: that attack only is skipped
    assert not at.exception and not at.error
    assert any(w.value.startswith("Test image #0 is labelled") for w in at.warning)

    at.selectbox(key="atk_target").set_value(None).run()
    at.radio(key="atk_norm").set_value("l2").run()
    at.slider(key="atk_eps_l2").set_value(1.5).run()
    at.slider(key="atk_steps").set_value(12).run()
    assert not at.exception and not at.error
    assert len(values(chart(at, "Loss per PGD step")["data"][0]["y"])) == 13
    table = at.dataframe[0].value
    assert (table["|δ|2"] <= 1.5 + 1e-5).all() and (table["|δ|2"] > 0.5).any()

    at.slider(key="atk_eps_l2").set_value(0.0).run()  # eps 0: x_adv is x
    assert not at.exception
    table = at.dataframe[0].value
    assert (table["|δ|2"] == 0).all() and not table["attack succeeded"].any()

    at.number_input(key="atk_index").set_value(5).run()
    assert not at.exception and "test #5" in at.main.caption[0].value


def test_accuracy_curves_on_request(shipped_models):
    at = attack_page()
    at.slider(key="atk_curve_n").set_value(50)
    at.text_input(key="atk_grid_linf").set_value("0, 0.1, abc, 0.3")
    at.slider(key="atk_curve_steps").set_value(5)
    at.run()
    assert any("'abc'" in e.value for e in at.error)
    assert not [t for t in charts(at) if t.startswith("Accuracy under PGD")]
    at.button(key="atk_curve_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    curves = chart(at, "Accuracy under PGD")
    lines = [t for t in curves["data"] if t["mode"] == "lines+markers"]
    assert [t["name"] for t in lines] == ["standard", "pgd-linf"]
    std, rob = (values(t["y"]) for t in lines)
    assert len(std) == 3 and (np.diff(std) <= 0).all() and (np.diff(rob) <= 0).all()
    assert rob[-1] > std[-1]  # the adversarially trained model holds up better at eps 0.3
    table = at.dataframe[1].value
    assert list(table["model"]) == list(shipped_models) and "ε50 (pixel units)" in table.columns
    buttons = {b.label: b for b in at.get("download_button")}
    assert "Table (CSV)" in buttons and buttons["Table (CSV)"].proto.help.startswith("CSV: eps, then the accuracy")
    # Another widget change keeps the curves (cached); a settings change asks again.
    at.slider(key="atk_steps").set_value(10).run()
    np.testing.assert_array_equal(values(chart(at, "Accuracy under PGD")["data"][0]["y"]), std)
    at.slider(key="atk_curve_steps").set_value(10).run()
    assert not [t for t in charts(at) if t.startswith("Accuracy under PGD")]
    assert any("Compute the curves" in i.value for i in at.info)


def test_perceptually_aligned_view_on_request(shipped_models):
    at = attack_page()
    # the sidebar's two models, then the dataset's l2-trained one and its PAG one, which show the effect
    assert at.multiselect(key="atk_pag_models_mnist-5k").value == [
        "mnist-5k/standard", "mnist-5k/pgd-linf", "mnist-5k/pgd-l2", "mnist-5k/pag-cm"]
    at.multiselect(key="atk_pag_models_mnist-5k").set_value(
        ["mnist-5k/standard", "mnist-5k/pgd-linf", "mnist-5k/pgd-l2"])
    at.radio(key="atk_pag_mode").set_value("fixed").run()  # the papers' view: one fixed eps
    at.slider(key="atk_pag_steps").set_value(10)
    at.slider(key="atk_pag_eps").set_value(3.0)
    at.run()
    at.button(key="atk_pag_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    pag = chart(at, "Targeted l2 PGD toward each class")
    assert len(pag["data"]) == 3 * 11  # per model: x then one image per class
    titles = [a["text"] for a in pag["layout"]["annotations"]]
    assert titles[0] == "x" and titles[1].startswith("→ 0<br>")
    assert pag["layout"]["yaxis"]["title"]["text"] == "<b>standard</b>"
    assert "ε 3" in pag["layout"]["title"]["text"]
    # a changed choice of models asks for the button again; none at all: a warning
    at.multiselect(key="atk_pag_models_mnist-5k").set_value(["mnist-5k/pgd-l2"]).run()
    assert not [t for t in charts(at) if t.startswith("Targeted l2 PGD")]
    at.button(key="atk_pag_go").click().run()
    assert len(chart(at, "Targeted l2 PGD toward each class")["data"]) == 11
    at.multiselect(key="atk_pag_models_mnist-5k").set_value([]).run()
    assert not at.exception and any("at least one model for this view" in w.value for w in at.warning)


def test_eps50_outside_the_grid_is_said_not_made_up(shipped_models):
    at = attack_page()
    at.slider(key="atk_curve_n").set_value(50)
    at.text_input(key="atk_grid_linf").set_value("1")  # l_inf eps 1: every image falls, 0 %
    at.slider(key="atk_curve_steps").set_value(5)
    at.run()
    at.button(key="atk_curve_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    curves = chart(at, "Accuracy under PGD")
    assert all(values(t["y"])[0] == 0 for t in curves["data"] if t["mode"] == "lines+markers")
    assert not [t for t in curves["data"] if (t.get("name") or "").startswith("eps50")]  # no 50 % marker at eps 1
    table = at.dataframe[1].value
    assert list(table["ε50 (pixel units)"]) == ["below the grid's smallest eps (1)"] * 2
    assert any("side of the grid" in c.value for c in at.main.caption)


def test_a_target_equal_to_the_label_skips_that_attack_and_keeps_the_page(shipped_models):
    at = attack_page()
    at.number_input(key="atk_index").set_value(7).run()
    label = int(at.main.caption[0].value.split("**")[1])
    at.selectbox(key="atk_target").set_value(label).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    (warning,) = [w.value for w in at.warning if "target class" in w.value]
    assert warning.startswith(f"Test image #7 is labelled **{label}**")  # the test image number, not a position
    assert not [t for t in charts(at) if t.startswith(("PGD attack", "Loss per PGD step"))]
    # everything else is still there, and works
    assert [h.value for h in at.header] == ["Accuracy vs ε", "Perceptually aligned gradients"]
    assert {b.label for b in at.button} >= {"Compute the curves", "Attack toward every class"}
    at.radio(key="atk_pag_mode").set_value("fixed").run()
    at.slider(key="atk_pag_steps").set_value(10).run()
    at.button(key="atk_pag_go").click().run()
    assert not at.exception and chart(at, "Targeted l2 PGD toward each class")
    at.selectbox(key="atk_target").set_value((label + 1) % 10).run()  # another target: the attack is back
    assert not at.warning or not any("target class" in w.value for w in at.warning)
    assert chart(at, "PGD attack")


def test_perceptually_aligned_view_shows_the_smallest_eps_of_each_target(shipped_models):
    """The default view: each panel is the image at the smallest eps of the grid that reaches
    its target, that eps in its title; the caption sums it up per model from the same numbers."""
    at = attack_page()
    at.number_input(key="atk_index").set_value(5).run()
    assert at.radio(key="atk_pag_mode").value == "smallest"
    at.multiselect(key="atk_pag_models_mnist-5k").set_value(["mnist-5k/standard", "mnist-5k/pgd-l2"])
    at.text_input(key="atk_pag_grid").set_value("0, 1, 2, 3, 4, 6")
    at.slider(key="atk_pag_search_steps").set_value(20)
    at.run()
    from gradviz.data import load_dataset
    own = float(load_dataset("mnist-5k", "test").x[5].flatten().norm())
    assert f"own l2 norm is {own:.1f}" in at.text_input(key="atk_pag_grid").help  # the image shown, not a constant
    at.button(key="atk_pag_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    pag = chart(at, "Targeted l2 PGD toward each class at the smallest ε")
    assert "grid up to 6" in pag["layout"]["title"]["text"] and "test #5" in pag["layout"]["title"]["text"]
    titles = [a["text"] for a in pag["layout"]["annotations"]]
    assert len(titles) == 2 * 11 and titles[0] == "x"
    per_model = {"standard": titles[1:11], "pgd-l2": titles[12:22]}
    eps = {}
    for name, row in per_model.items():
        values = []
        for t in row:
            second = t.split("<br>")[1]
            assert second.startswith(("ε ", "none ≤ ε 6")) and second.endswith(" %")
            values.append(float(second.split(" ")[1]) if second.startswith("ε ") else float("nan"))
        eps[name] = values
    assert eps["standard"][3] == 0 and eps["pgd-l2"][3] == 0  # test #5 is a 3: reached as it is
    # the robust model needs a larger change than the standard one, on average over the targets
    others = [k for k in range(10) if k != 3]
    std = np.nanmedian([eps["standard"][k] for k in others])
    rob = np.nanmedian([eps["pgd-l2"][k] for k in others])
    assert rob > std > 0
    caption = [c.value for c in at.main.caption if c.value.startswith("Test #5 (label 3)")][0]
    assert f"`standard` median ε **{std:g}**" in caption and f"`pgd-l2` median ε **{rob:g}**" in caption
    assert {b.label for b in at.get("download_button")} >= {"PNG", "Arrays (NPZ)"}
    # an empty grid: an error, no button
    at.text_input(key="atk_pag_grid").set_value("abc").run()
    assert any("Radii to try: 'abc'" in e.value for e in at.error)
    assert at.button(key="atk_pag_go").disabled
