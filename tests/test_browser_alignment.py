"""Browser test of the Alignment page: a live `streamlit run app.py` (with a temporary
GRADVIZ_HOME, so residuals are stored there) driven by Playwright in Debian's Chromium.

Opens the page from the navigation, adds the L_alpha model when the zoo has it, reads the
residual figure from the page, computes alpha_dx over the first 30 test images, reads the
histograms and the table, and saves a full-page screenshot to tests/artifacts/alignment.png.
"""

from __future__ import annotations

import pytest

from gradviz import generative, zoo
from tests.helpers import add_sidebar_model, browser_page, open_from_menu, wait_idle

pytestmark = pytest.mark.browser

FIGURE = ".st-key-align_figure_chart .js-plotly-plot"
HIST = ".st-key-align_hist_chart .js-plotly-plot"
SCATTER = ".st-key-align_scatter_chart .js-plotly-plot"

READ_FIGURE = """
(sel) => {
  const gd = document.querySelector(sel);
  if (!gd || !gd.data || !gd.layout) return null;
  return {
    title: (gd.layout.title && gd.layout.title.text) || "",
    names: gd.data.map(t => t.name),
    types: gd.data.map(t => t.type),
    annotations: (gd.layout.annotations || []).map(a => a.text),
  };
}
"""


@pytest.fixture
def shipped_generator():
    if "mnist-5k" not in {p.stem for p in generative.ASSETS_DIR.glob("*.pt")}:
        pytest.skip("no shipped generator assets/generators/mnist-5k.pt yet")


def test_alignment_page_in_the_browser(streamlit_server_home, browser, shipped_models, shipped_generator,
                                       artifacts_dir):
    url, home = streamlit_server_home
    has_lalpha = "mnist-5k/lalpha" in {c.name for c in zoo.list_models("mnist-5k")}
    with browser_page(browser, 1500, 3300, artifacts_dir / "alignment-failure.png") as page:
        sidebar = open_from_menu(page, url, "Alignment")
        page.wait_for_selector(FIGURE, timeout=180_000)
        wait_idle(page)
        assert page.url.rstrip("/").endswith("/alignment")
        models = ["standard", "pgd-linf"]
        if has_lalpha:
            add_sidebar_model(page, sidebar, "lalpha")
            page.wait_for_function(
                "([sel]) => { const gd = document.querySelector(sel); return gd && gd.layout && "
                "(gd.layout.annotations || []).some(a => a.text.startsWith('<b>lalpha</b>')); }",
                arg=[FIGURE], timeout=180_000)
            wait_idle(page)
            models.append("lalpha")
        fig = page.evaluate(READ_FIGURE, FIGURE)
        assert fig["title"].startswith("GAN residual toward the closest class of standard")
        assert fig["types"].count("heatmap") == 4 * (3 + len(models))
        assert all(any(a.startswith(f"<b>{m}</b>") for a in fig["annotations"]) for m in models)
        assert sum(a.startswith("test #") for a in fig["annotations"]) == 4
        assert page.get_by_text("mean cos 0.995", exact=False).count() >= 1  # the fast steps explained

        # over the test split: 30 images
        n = page.get_by_role("spinbutton", name="Test images (the first n)")
        n.fill("30")
        n.press("Tab")
        page.get_by_role("button", name="Compute").click()
        page.wait_for_selector(SCATTER, timeout=600_000)
        wait_idle(page, timeout_ms=600_000)
        hist = page.evaluate(READ_FIGURE, HIST)
        hnames = [nm for nm, t in zip(hist["names"], hist["types"]) if t == "histogram"]
        assert [nm.split(" · ")[0] for nm in hnames] == models
        assert all(nm.endswith(" · n 30") for nm in hnames)
        assert page.locator('[data-testid="stDataFrame"]').count() == 1
        assert list(home.glob("residuals/mnist-5k-test-*-300+75-*.pairs.pt"))  # stored in the server's home
        page.screenshot(path=str(artifacts_dir / "alignment.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()
