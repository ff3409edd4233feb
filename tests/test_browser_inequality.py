"""Browser test of the Inequality page: a live `streamlit run app.py` driven by Playwright in
Debian's Chromium.

Opens the page from the navigation, adds the IGD model when the zoo has it, reads the
per-image figure (maps and Lorenz curves) from the page, checks a bad block size gives a
message, computes the dataset-wide results, changes the attribution and checks that the
charts follow; saves screenshots to tests/artifacts/inequality*.png.
"""

from __future__ import annotations

import pytest

from gradviz import zoo
from tests.helpers import add_sidebar_model, browser_page, open_from_menu, wait_idle

try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # the browser fixture skips (or fails in CI) without playwright
    PlaywrightError = Exception

pytestmark = pytest.mark.browser

IMAGE_CHART = ".st-key-ineq_image_chart .js-plotly-plot"
NOISE_CHART = ".st-key-ineq_noise_chart .js-plotly-plot"
EXAMPLES_CHART = ".st-key-ineq_examples_chart .js-plotly-plot"  # the last chart of the page

READ_FIGURE = """
(sel) => {
  const gd = document.querySelector(sel);
  if (!gd || !gd.data || !gd.layout) return null;
  const full = gd._fullData || [];
  // Lorenz curves: the scatter traces after the equality diagonal; area under each (trapezoid)
  const lorenz = full.filter(t => t.type === "scatter" && !(t.name || "").startsWith("equality"));
  const area = (t) => { let s = 0; for (let i = 1; i < t.x.length; i++) s += (t.x[i] - t.x[i-1]) * (t.y[i] + t.y[i-1]) / 2; return s / 1e4; };
  let zsum = 0;
  for (const t of full.filter(t => t.type === "heatmap" && t.coloraxis)) for (const row of t.z) for (const v of row) zsum += v;
  return {
    title: (gd.layout.title && gd.layout.title.text) || "",
    names: gd.data.map(t => t.name),
    n_heatmaps: full.filter(t => t.type === "heatmap").length,
    lorenz: Object.fromEntries(lorenz.map(t => [t.name.split(" · ")[0], area(t)])),
    annotations: (gd.layout.annotations || []).map(a => a.text),
    zsum: zsum,
  };
}
"""


def _figure(page, sel=IMAGE_CHART):
    return page.evaluate(READ_FIGURE, sel)


def _wait_title(page, fragment: str, sel=IMAGE_CHART, timeout_ms=120_000):
    page.wait_for_function(
        """([sel, frag]) => { const gd = document.querySelector(sel);
            return !!(gd && gd.layout && gd.layout.title && gd.layout.title.text.includes(frag)); }""",
        arg=[sel, fragment], timeout=timeout_ms)
    wait_idle(page)


def test_inequality_page_follows_widgets(streamlit_server, browser, shipped_models, artifacts_dir):
    has_igd = "mnist-5k/igd" in {c.name for c in zoo.list_models("mnist-5k")}
    with browser_page(browser, 1500, 3800, artifacts_dir / "inequality-failure.png") as page:
        # Enter at the root and follow the sidebar link, as a user does (opening a page's URL
        # directly is the Attack page's browser test).
        sidebar = open_from_menu(page, streamlit_server, "Inequality")
        page.wait_for_selector(IMAGE_CHART, timeout=120_000)
        wait_idle(page)
        assert page.url.rstrip("/").endswith("/inequality")
        assert sidebar.get_by_role("combobox", name="Dataset").count() == 1  # app.py's sidebar is there
        wait_idle(page)
        if has_igd:  # the third model, from the shared sidebar
            add_sidebar_model(page, sidebar, "igd")
            page.wait_for_function(
                "([sel]) => { const gd = document.querySelector(sel); return gd && gd.data && "
                "gd.data.filter(t => t.type === 'heatmap').length === 4; }", arg=[IMAGE_CHART], timeout=120_000)
            wait_idle(page)
        fig = _figure(page)
        models = ["standard", "pgd-linf"] + (["igd"] if has_igd else [])
        assert "Integrated Gradients" in fig["title"]
        assert fig["n_heatmaps"] == 1 + len(models)
        assert sorted(fig["lorenz"]) == sorted(models)
        assert all(0 < a < 0.5 for a in fig["lorenz"].values())  # below the diagonal
        assert any("Gini" in a for a in fig["annotations"])
        assert page.get_by_text("exactly 0 on black pixels").count() == 1
        page.screenshot(path=str(artifacts_dir / "inequality.png"), full_page=True)

        # A block that does not divide 28: a message, and the page goes on.
        block = page.get_by_role("spinbutton", name="Regional block b (pixels)")
        block.fill("5")
        block.press("Enter")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=\"stAlert\"]')].some(a => a.innerText.includes('does not divide'))",
            timeout=120_000)
        wait_idle(page)
        assert not any("regional" in a for a in _figure(page)["annotations"])
        block.fill("4")
        block.press("Enter")
        page.wait_for_function(
            "() => ![...document.querySelectorAll('[data-testid=\"stAlert\"]')].some(a => a.innerText.includes('does not divide'))",
            timeout=120_000)
        wait_idle(page)

        # Dataset-wide: the shipped results of the default settings (200 test images) are
        # already drawn; then, on request, 100 test images.
        page.wait_for_selector(EXAMPLES_CHART, timeout=120_000)
        assert page.get_by_text("200 test images", exact=False).count() >= 1
        slider = page.locator(".st-key-ineq_n input[type=range]")
        for _ in range(3):  # the form may be re-rendered under the keyboard by a late rerun
            try:
                slider.focus()
                slider.press("Home")
                slider.press("ArrowRight")  # 50 -> 100
            except PlaywrightError:
                wait_idle(page)
                continue
            if slider.get_attribute("aria-valuetext") == "100":
                break
        assert slider.get_attribute("aria-valuetext") == "100"
        page.get_by_role("button", name="Compute").click()
        page.wait_for_function("() => document.body.innerText.includes('100 test images')", timeout=600_000)
        page.wait_for_selector(EXAMPLES_CHART, timeout=600_000)
        wait_idle(page, timeout_ms=600_000)
        noise = page.evaluate("(sel) => document.querySelector(sel).data.map(t => t.name)", NOISE_CHART)
        assert noise[:2] == ["standard · inductive", "standard · random"] and len(noise) == 2 * len(models)
        assert page.get_by_text("100 test images", exact=False).count() >= 1
        page.screenshot(path=str(artifacts_dir / "inequality-dataset.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()

        # Change the attribution: the per-image chart follows; the dataset section waits again.
        before = _figure(page)
        combo = page.get_by_role("combobox", name="Attribution")
        combo.click()
        combo.press_sequentially("Gradient (")
        page.get_by_role("option", name="Gradient (vanilla, signed)").click()
        _wait_title(page, "Gradient (vanilla")
        after = _figure(page)
        assert after["zsum"] != pytest.approx(before["zsum"])
        assert after["lorenz"] != before["lorenz"]
        assert page.get_by_text("exactly 0 on black pixels").count() == 0
        # The old chart stays on screen, greyed, until the rerun that the title came from ends.
        page.wait_for_selector(NOISE_CHART, state="detached", timeout=120_000)
        wait_idle(page)
        assert page.locator(NOISE_CHART).count() == 0
        page.get_by_role("button", name="Compute").click()
        page.wait_for_function("() => document.body.innerText.includes('100 test images')", timeout=600_000)
        page.wait_for_selector(EXAMPLES_CHART, timeout=600_000)
        wait_idle(page, timeout_ms=600_000)
        page.screenshot(path=str(artifacts_dir / "inequality-gradient.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()
