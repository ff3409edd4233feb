"""Browser test of the pages' guidance (issue 13 point 2): a live `streamlit run app.py`
driven by Playwright in Debian's Chromium. Opens the Gradients, Alignment and Inequality
pages, opens "What am I looking at?", checks that the shipped cards' numbers are shown next
to the papers', and saves full-page screenshots to tests/artifacts/guidance-*.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import browser_page, open_from_menu, wait_idle

pytestmark = pytest.mark.browser

CARDS = Path(__file__).resolve().parent.parent / "assets" / "models" / "mnist-5k"


def metrics(name: str) -> dict:
    return json.loads((CARDS / f"{name}.json").read_text())["metrics"]


def _open_guidance(page, url: str, title: str, chart_key: str) -> None:
    open_from_menu(page, url, title)
    page.wait_for_selector(f".st-key-{chart_key} .js-plotly-plot", timeout=600_000)
    wait_idle(page, timeout_ms=600_000)
    page.get_by_text("What am I looking at? What should I look for?").first.click()
    page.wait_for_timeout(500)


@pytest.mark.parametrize("title, chart_key, expected", [
    ("Gradients", "grad_chart",
     lambda: [f"{metrics(n)['inequality']['gradient']['mean_global_gini']:.3f}" for n in ("standard", "pgd-linf")]
     + [f"{metrics('standard')['curve']['eps50']:.3f}"]),
    ("Alignment", "align_figure_chart",
     lambda: [f"{metrics(n)['alignment']['mean_alpha_dx']:.3f}" for n in ("standard", "pgd-linf", "pgd-l2")]
     + ["0.575", "Not reproduced"]),
    ("Inequality", "ineq_image_chart",
     lambda: [f"{100 * metrics(n)['inequality']['gradient']['random_noise_error_rate'][-1]:.1f} %"
              for n in ("standard", "pgd-linf")] + ["0.58 → 0.73"]),
])
def test_the_guidance_shows_the_cards_numbers(streamlit_server, browser, shipped_models, artifacts_dir,
                                              title, chart_key, expected):
    stem = f"guidance-{title.lower()}"
    with browser_page(browser, 1400, 2400, artifacts_dir / f"{stem}-failure.png") as page:
        _open_guidance(page, streamlit_server, title, chart_key)
        expander = page.locator('[data-testid="stExpander"]').first
        text = expander.inner_text()
        assert "What gradviz measured" in text or "How concentrated" in text
        for number in expected():
            assert number in text, (title, number)
        page.screenshot(path=str(artifacts_dir / f"{stem}.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()
