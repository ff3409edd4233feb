"""Browser test of the field's models on data from disk (issue 15, "Done when"): a live
`streamlit run app.py` whose GRADVIZ_HOME holds a RobustBench checkpoint (random weights, in the
package's layout) and whose GRADVIZ_DATA holds a fake CIFAR-10 in torchvision's on-disk format
(tests/conftest.py's streamlit_server_field), driven by Playwright in Debian's Chromium.

Picks cifar10 in the sidebar, where the RobustBench model is listed and marked; opens Gradients,
Attack and Inequality and waits for their charts; reads the input panel's pixels from the page
(the CIFAR test image, in RGB); saves screenshots to tests/artifacts/field-*.png. The
dataset-wide Inequality section is not computed here (integrated gradients of a WRN-28-4 over
50 images is minutes on a CPU; tests/test_app_colour.py computes it on a small-cnn).
"""

from __future__ import annotations

import pytest

from tests.helpers import browser_page, open_from_menu, wait_idle
from tests.test_robustbench import SMALL

pytestmark = pytest.mark.browser

CHARTS = '[data-testid="stPlotlyChart"] .js-plotly-plot'

# Every drawn plotly figure: its title, its traces' types and names, the subplot titles, and
# the first pixel and size of its first image trace as plotly.js decoded it (gd._fullData).
READ_FIGURES = """
(sel) => Array.from(document.querySelectorAll(sel)).filter(gd => gd.data && gd.layout).map(gd => {
  const full = gd._fullData || [];
  const img = full.find(t => t.type === "image");
  return {
    title: (gd.layout.title && gd.layout.title.text) || "",
    types: full.map(t => t.type),
    names: gd.data.map(t => t.name),
    annotations: (gd.layout.annotations || []).map(a => a.text),
    image: img && img.z ? {h: img.z.length, w: img.z[0].length, first: Array.from(img.z[0][0])} : null,
  };
})
"""


def _figures(page) -> list[dict]:
    return page.evaluate(READ_FIGURES, CHARTS)


def _wait_for_title(page, fragment: str, timeout_ms: int = 300_000) -> dict:
    """Wait for the figure whose title contains ``fragment`` and an idle app; return it."""
    page.wait_for_function(
        """([sel, frag]) => Array.from(document.querySelectorAll(sel))
             .some(gd => gd.layout && gd.layout.title && (gd.layout.title.text || "").includes(frag))""",
        arg=[CHARTS, fragment], timeout=timeout_ms,
    )
    wait_idle(page, timeout_ms=timeout_ms)
    (fig,) = [f for f in _figures(page) if fragment in f["title"]]
    return fig


def _no_exception(page) -> None:
    assert not page.locator('[data-testid="stException"]').count(), \
        page.locator('[data-testid="stException"]').all_inner_texts()


def test_a_robustbench_model_on_cifar10_from_disk_in_the_browser(streamlit_server_field, browser, artifacts_dir):
    url, written = streamlit_server_field
    first_image = written["test"][0][0]  # (3, 32, 32) uint8, as written to test_batch
    with browser_page(browser, 1500, 2600, artifacts_dir / "field-failure.png") as page:
        sidebar = open_from_menu(page, url, "Gradients")
        wait_idle(page)
        # The dataset: cifar10 is offered because the zoo holds models for it.
        combo = sidebar.get_by_role("combobox", name="Dataset")
        combo.click()
        page.get_by_role("option", name="cifar10", exact=True).click()
        # Its models: the RobustBench checkpoint, marked as such, and the user's small-cnn
        # (the default selection of a dataset without shipped models: its first two).
        models = sidebar.locator('[data-testid="stMultiSelect"]').first
        models.get_by_text("RobustBench", exact=False).wait_for(timeout=120_000)  # the rerun reached the sidebar
        chips = models.inner_text()
        assert f"{SMALL} (ε 8/255) · RobustBench" in chips, chips  # not 0.0313725
        assert "tiny · yours" in chips, chips

        # Gradients: the 8 first test images in RGB, one map per model.
        grad = _wait_for_title(page, "of the target logit")
        assert grad["types"].count("image") == 8 and grad["types"].count("heatmap") == 2 * 8, grad["types"]
        assert grad["image"]["h"] == grad["image"]["w"] == 32
        assert grad["image"]["first"][:3] == [int(v) for v in first_image[:, 0, 0]]
        assert any(f"{SMALL}: " in a for a in grad["annotations"]), grad["annotations"][:3]
        assert page.get_by_text("reduced over channels (sum)", exact=False).count() >= 1
        page.screenshot(path=str(artifacts_dir / "field-gradients.png"), full_page=True)
        _no_exception(page)

        # Attack: PGD on test image 0 against both models, the input in RGB.
        sidebar.locator('[data-testid="stSidebarNav"] a', has_text="Attack").click()
        atk = _wait_for_title(page, "PGD attack")
        assert atk["types"][0] == "image" and atk["image"]["first"][:3] == [int(v) for v in first_image[:, 0, 0]]
        assert any(n.startswith("x_adv") and SMALL in n for n in atk["names"]), atk["names"]
        page.screenshot(path=str(artifacts_dir / "field-attack.png"), full_page=True)
        _no_exception(page)

        # Inequality: one image's maps and Lorenz curves for both models.
        sidebar.locator('[data-testid="stSidebarNav"] a', has_text="Inequality").click()
        page.wait_for_selector(".st-key-ineq_image_chart .js-plotly-plot", timeout=300_000)
        ineq = _wait_for_title(page, "Integrated Gradients")
        assert ineq["types"][0] == "image"
        assert {n.split(" · ")[0] for n in ineq["names"] if n} >= {SMALL, "tiny"}, ineq["names"]
        assert any("Gini" in a for a in ineq["annotations"])
        # IG's zeros on black pixels: a random CIFAR image has almost none, and the note says so
        assert page.get_by_text("Too few for that to dominate the Lorenz curves here", exact=False).count() == 1
        page.screenshot(path=str(artifacts_dir / "field-inequality.png"), full_page=True)
        _no_exception(page)
