"""Browser test of the Attack page: a live `streamlit run app.py` (the server fixture of
tests/conftest.py), driven by Playwright in Debian's Chromium.

Opens /attack, reads the plotly figures from the page, changes the target class, computes
the accuracy-vs-eps curves and the class sweep on request, and saves screenshots to
tests/artifacts/.
"""

from __future__ import annotations

import re

import pytest
from tests.helpers import browser_page, menu_titles, wait_idle

pytestmark = pytest.mark.browser

# Every plotly figure on the page: title, trace count and names, annotations, colour axis.
READ_FIGURES = """
() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'))
  .filter(gd => gd.data && gd.layout)
  .map(gd => ({
    title: (gd.layout.title && gd.layout.title.text) || "",
    n_traces: gd.data.length,
    names: gd.data.map(t => t.name),
    modes: gd.data.map(t => t.mode || ""),
    annotations: (gd.layout.annotations || []).map(a => a.text),
    cmid: gd.layout.coloraxis ? gd.layout.coloraxis.cmid : null,
    colorbar: gd.layout.coloraxis && gd.layout.coloraxis.colorbar && gd.layout.coloraxis.colorbar.title
      ? gd.layout.coloraxis.colorbar.title.text : "",
  }))
"""


def _figures(page) -> dict[str, dict]:
    return {f["title"]: f for f in page.evaluate(READ_FIGURES)}


def _figure(page, prefix: str) -> dict | None:
    found = [f for t, f in _figures(page).items() if t.startswith(prefix)]
    return found[0] if found else None


def _wait_for_title(page, prefix: str, timeout_ms=240_000):
    page.wait_for_function(
        """(prefix) => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'))
             .some(gd => gd.layout && gd.layout.title && (gd.layout.title.text || "").startsWith(prefix))""",
        arg=prefix, timeout=timeout_ms,
    )
    wait_idle(page)


def _slider_to_min(page, label: str, *, last: bool = False) -> None:
    """Move the (first or last) slider labelled exactly ``label`` to its minimum with the keyboard."""
    sliders = page.locator('[data-testid="stSlider"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(f"^{re.escape(label)}$")))
    thumb = (sliders.last if last else sliders.first).get_by_role("slider")
    thumb.focus()
    thumb.press("Home")


def test_attack_page_in_the_browser(streamlit_server, browser, shipped_models, artifacts_dir):
    with browser_page(browser, 1400, 2400, artifacts_dir / "attack-failure.png") as page:
        # A shared link, opened first on a fresh server (this module's own): Streamlit starts
        # in its legacy pages/-folder mode, which runs pages/attack.py alone; the page then runs
        # itself through app.py's frame (gradviz.ui.require_app_entry), so app.py's navigation,
        # page config and sidebar are there and the URL still names the Attack page.
        page.goto(f"{streamlit_server}/attack", wait_until="domcontentloaded")
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_role("combobox", name="Dataset").wait_for(timeout=90_000)
        assert menu_titles(sidebar) == ["Gradients", "Attack", "Models", "Inequality", "Alignment", "Trade-off"]  # not file names
        _wait_for_title(page, "PGD attack")
        assert page.url.rstrip("/").endswith("/attack")
        assert sidebar.get_by_role("combobox", name="Dataset").count() == 1  # app.py's sidebar is there
        panels = _figure(page, "PGD attack")
        assert panels["n_traces"] == 2 * 3
        assert panels["names"][:3] == ["x", "x_adv standard", "perturbation standard"]
        assert panels["cmid"] == 0 and "×" in panels["colorbar"]
        assert any(a.startswith("(x_adv − x) × ") for a in panels["annotations"])
        assert any(a.startswith("standard: x → ") for a in panels["annotations"])
        loss = _figure(page, "Loss per PGD step")
        assert loss["names"] == ["standard", "pgd-linf"]
        assert page.get_by_text("Adversarial attacks (PGD)").first.is_visible()
        page.screenshot(path=str(artifacts_dir / "attack.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()

        # A targeted attack: test #0 is an 8; aim at 3.
        combo = page.get_by_role("combobox", name="Target class")
        combo.click()
        page.get_by_role("option", name="3", exact=True).click()
        _wait_for_title(page, "PGD attack · label 8 · target 3")
        assert "target" in (_figure(page, "PGD attack")["title"])

        # Accuracy vs eps on request: 50 images, a 3-point grid.
        _slider_to_min(page, "Test images")
        wait_idle(page)
        grid = page.get_by_role("textbox", name="ε grid")
        grid.fill("0, 0.1, 0.3")
        grid.press("Enter")
        wait_idle(page)
        page.get_by_role("button", name="Compute the curves").click()
        _wait_for_title(page, "Accuracy under PGD")
        curves = _figure(page, "Accuracy under PGD")
        assert [n for n, m in zip(curves["names"], curves["modes"]) if m == "lines+markers"] == ["standard", "pgd-linf"]
        assert page.locator('[data-testid="stDataFrame"]').count() == 2  # the attack's table and the eps50 table

        # The perceptually aligned gradients view on request, at its defaults: each target at the
        # smallest eps of the grid that reaches it (l2, 40 steps); standard, pgd-linf, pgd-l2, pag-cm rows
        page.get_by_role("button", name="Attack toward every class").click()
        _wait_for_title(page, "Targeted l2 PGD toward each class at the smallest ε", timeout_ms=600_000)
        pag = _figure(page, "Targeted l2 PGD toward each class")
        assert pag["n_traces"] == 4 * 11
        assert pag["annotations"][0] == "x" and pag["annotations"][1].startswith("→ 0<br>")
        assert all(re.match(r"→ \d<br>(ε [\d.]+|none ≤ ε 10) · \d+ %$", a) for a in pag["annotations"] if a != "x")
        assert page.get_by_text("Smallest l2 ε that reaches a target").count() == 1
        page.locator('[data-testid="stPlotlyChart"]').last.screenshot(path=str(artifacts_dir / "attack-pag.png"))
        page.screenshot(path=str(artifacts_dir / "attack-full.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()
