"""Browser test: a live `streamlit run app.py`, driven by Playwright in Debian's Chromium.

Opens the Gradients page, reads the plotly figure from the page, changes widgets (the
method, then the image indices) and checks that the chart changes; saves screenshots to
tests/artifacts/.
"""

from __future__ import annotations

import io
import re

import pytest
from tests.helpers import browser_page, wait_idle

pytestmark = pytest.mark.browser

CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot'

# The figure's state as the browser has it: its title, its traces' names and types, and the
# sum of |z| over the map panels (changes when the maps change).
READ_FIGURE = """
(sel) => {
  const gd = document.querySelector(sel);
  if (!gd || !gd.data || !gd.layout) return null;
  // gd._fullData holds the decoded arrays (gd.data keeps plotly.py's base64 encoding).
  const maps = (gd._fullData || []).filter(t => t.type === "heatmap" && t.coloraxis);
  let total = 0;
  for (const t of maps) for (const row of t.z) for (const v of row) total += Math.abs(v);
  return {
    title: (gd.layout.title && gd.layout.title.text) || "",
    n_traces: gd.data.length,
    n_maps: maps.length,
    names: gd.data.map(t => t.name),
    annotations: (gd.layout.annotations || []).map(a => a.text),
    zsum: total,
    cmid: gd.layout.coloraxis && gd.layout.coloraxis.cmid,
    cmin: gd.layout.coloraxis && gd.layout.coloraxis.cmin,
    cmax: gd.layout.coloraxis && gd.layout.coloraxis.cmax,
  };
}
"""


def _png_rgb(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (220, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _figure(page):
    return page.evaluate(READ_FIGURE, CHART)


def _wait_for_change(page, before, *, timeout_ms=60_000):
    """Wait until the chart's state differs from ``before`` and Streamlit is idle again."""
    page.wait_for_function(
        """([sel, before]) => {
            const gd = document.querySelector(sel);
            if (!gd || !gd.data || !gd.layout) return false;
            const t = (gd.layout.title && gd.layout.title.text) || "";
            return t !== before.title || gd.data.length !== before.n_traces;
        }""",
        arg=[CHART, before],
        timeout=timeout_ms,
    )
    wait_idle(page)
    return _figure(page)


def test_gradients_page_chart_follows_widgets(streamlit_server, browser, shipped_models, artifacts_dir):
    with browser_page(browser, 1400, 2300, artifacts_dir / "gradients-failure.png") as page:
        page.goto(streamlit_server, wait_until="domcontentloaded")
        page.wait_for_selector(CHART, timeout=90_000)
        wait_idle(page)
        before = _figure(page)
        assert before is not None
        # Default: images 0-7, the two shipped models -> 8 rows of input + 2 maps.
        assert before["n_traces"] == 8 * 3
        assert before["n_maps"] == 16
        assert set(before["names"]) >= {"standard", "pgd-linf"}
        assert "Gradient" in before["title"]
        assert before["cmid"] == 0 and before["cmin"] == -before["cmax"]
        assert any(a.startswith("standard: ") and "%)" in a for a in before["annotations"])
        page.screenshot(path=str(artifacts_dir / "gradients.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()

        # The PNG download: made on click by kaleido in the server's Chromium.
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name="PNG", exact=True).click()
        saved = artifacts_dir / "gradients-download.png"
        download.value.save_as(str(saved))
        assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert download.value.suggested_filename == "gradients.png"

        # Change the method: Integrated Gradients.
        combo = page.get_by_role("combobox", name="Method")
        combo.click()
        combo.press_sequentially("Integrated")  # filters the options (and opens the list)
        page.get_by_role("option", name="Integrated Gradients").click()
        after = _wait_for_change(page, before)
        assert "Integrated Gradients" in after["title"]
        assert after["n_traces"] == before["n_traces"]
        assert after["zsum"] != pytest.approx(before["zsum"])
        page.screenshot(path=str(artifacts_dir / "gradients-integrated-gradients.png"), full_page=True)

        # Change the images: three indices -> three rows.
        box = page.get_by_role("textbox", name="Indices")
        box.fill("10, 11, 12")
        box.press("Enter")
        page.wait_for_function(
            "([sel]) => { const gd = document.querySelector(sel); return gd && gd.data && gd.data.length === 9; }",
            arg=[CHART], timeout=60_000,
        )
        wait_idle(page)
        three = _figure(page)
        assert three["n_traces"] == 9
        assert any(a.startswith("test #10") for a in three["annotations"])
        page.screenshot(path=str(artifacts_dir / "gradients-after-change.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()

        # Upload: a file that is not an image (refused, said so) and an RGB PNG of another
        # size (converted and resized, said so); the page keeps running.
        page.get_by_role("radio", name="Upload").check(force=True)
        dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        dropzone.wait_for(state="attached", timeout=60_000)
        dropzone.set_input_files([
            {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"},
            {"name": "red.png", "mimeType": "image/png", "buffer": _png_rgb(40, 30)},
        ])
        page.wait_for_function(
            "([sel]) => { const gd = document.querySelector(sel); return gd && gd.data && gd.data.length === 3; }",
            arg=[CHART], timeout=60_000,
        )
        wait_idle(page)
        alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
        assert any("notes.png" in a and "not an image" in a for a in alerts), alerts
        assert any("red.png" in a and "grayscale" in a and "resized" in a for a in alerts), alerts
        page.screenshot(path=str(artifacts_dir / "gradients-upload.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()

        # The shared sidebar: removing a model removes its column.
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_role("button", name=re.compile(r"^Remove pgd-linf")).click()
        page.wait_for_function(
            "([sel]) => { const gd = document.querySelector(sel); return gd && gd.data && gd.data.length === 2; }",
            arg=[CHART], timeout=60_000,
        )
        wait_idle(page)
        assert [t for t in _figure(page)["names"]] == ["red.png", "standard"]
