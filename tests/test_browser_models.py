"""Browser test of the Models page: a live `streamlit run app.py` whose GRADVIZ_HOME is a
temporary folder (the ``streamlit_server_home`` fixture), driven by Playwright in Debian's
Chromium. Reads the model table, starts a training from the form, watches its live
progress and loss curve, cancels it, then runs a tiny training that finishes and shows up
in the table and the sidebar; moves the training snapshots' epoch slider and plays their
animation; saves screenshots to tests/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradviz import zoo
from tests.helpers import browser_page, open_from_menu, wait_idle
from tests.test_app_models import snapshot_model

pytestmark = pytest.mark.browser

TABLE = '[data-testid="stDataFrame"]'
#: The snapshot grid and the animation (not a stale copy that Streamlit keeps while it reruns).
SNAPSHOTS = '.st-key-models_snap_chart[data-stale="false"] .js-plotly-plot'
ANIMATION = '.st-key-models_snap_anim[data-stale="false"] .js-plotly-plot'
#: The first gradient map of the snapshot grid (after the 8 input images), as JSON (plotly's
#: base64 typed array or plain rows).
FIRST_MAP = "(sel) => JSON.stringify(document.querySelector(sel).data[8].z)"
REPO = Path(__file__).resolve().parent.parent


def _choose_model(page, name: str, expected_text: str) -> None:
    """Pick ``name`` in the page's Model box and wait for ``expected_text`` and an idle app."""
    page.get_by_role("combobox", name="Model", exact=True).click()
    page.get_by_role("option", name=name, exact=True).click()
    page.get_by_text(expected_text).first.wait_for(timeout=60_000)
    wait_idle(page)


def _table_cells(page) -> list[str]:
    return page.locator(f'{TABLE} [role="gridcell"]').all_inner_texts()


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True).first
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def _fill_form(page, *, name: str, epochs: int, limit: int, batch: int) -> None:
    combo = page.get_by_role("combobox", name="Method")
    combo.click()
    combo.press_sequentially("PGD adv")
    page.get_by_role("option", name="PGD adversarial training (Madry et al.)").click()
    wait_idle(page)
    box = page.get_by_role("textbox", name="Model name").first
    box.fill(name)
    box.press("Enter")
    wait_idle(page)
    _set_number(page, "Epochs", epochs)
    _set_number(page, "Training images (0: all)", limit)
    _set_number(page, "Batch size", batch)
    _set_number(page, "Attack steps", 1)
    _set_number(page, "Learning-curve images", 16)
    _set_number(page, "…on test images (0: all)", 20)


def test_models_page_train_cancel_finish(streamlit_server_home, browser, shipped_models, artifacts_dir):
    url, home = streamlit_server_home
    with browser_page(browser, 1400, 2400, artifacts_dir / "models-failure.png") as page:
        # The app's entry first (st.navigation takes over), then the Models page from the sidebar.
        open_from_menu(page, url, "Models", timeout_ms=120_000)
        page.wait_for_selector(TABLE, timeout=120_000)
        wait_idle(page)
        shipped = sorted(f"{p.parent.name}/{p.stem}" for p in (REPO / "assets" / "models").glob("*/*.pt"))
        assert len(shipped) >= len(shipped_models)
        for _ in range(60):  # the grid draws its rows a moment after the page is idle (seen under load)
            cells = _table_cells(page)
            if all(name in cells for name in shipped):
                break
            page.wait_for_timeout(500)
        for name in shipped:  # every shipped checkpoint, whatever the dataset chosen in the sidebar
            assert name in cells, name
        assert page.get_by_text("Training curves: mnist-5k/", exact=False).count() or page.locator(
            '[data-testid="stPlotlyChart"]').count()
        page.screenshot(path=str(artifacts_dir / "models.png"), full_page=True)

        # AGR's diagnostics from the shipped model's real training log
        if "mnist-5k/agr" in shipped:
            _choose_model(page, "mnist-5k/agr", "AGR diagnostics: mnist-5k/agr")
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(artifacts_dir / "models-agr.png"), full_page=True)

        # PAG's input-gradient cosines per epoch, from the shipped model's real training log
        if "mnist-5k/pag-cm" in shipped:
            _choose_model(page, "mnist-5k/pag-cm", "Input-gradient alignment: mnist-5k/pag-cm")
            traces = page.evaluate(
                """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
                         .filter(gd => gd.layout.title && gd.layout.title.text.startsWith('Input-gradient'))
                         .flatMap(gd => gd.data.map(t => [t.name, t.y.length]))""")
            log = zoo.get_card("mnist-5k/pag-cm").log
            assert [n.split(":")[0] for n, _ in traces] == ["PAG", "PAG"] and {k for _, k in traces} == {len(log)}
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(artifacts_dir / "models-pag.png"), full_page=True)

        # A longer run: live progress and loss curve, then cancelled.
        _fill_form(page, name="browser-long", epochs=400, limit=400, batch=20)  # long enough to cancel
        page.get_by_role("button", name="Start training").click()
        page.wait_for_selector('[data-testid="stProgress"]', timeout=120_000)
        page.wait_for_function(  # the live loss chart has points
            """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
                     .some(gd => gd.layout && gd.layout.title && gd.layout.title.text === 'Loss while training'
                                 && gd.data[0].x && gd.data[0].x.length >= 2)""",
            timeout=240_000,
        )
        page.wait_for_function(  # the run's newest input-gradient snapshot (epoch 0: written before training)
            """() => [...document.querySelectorAll('.st-key-models_job_snapshots .js-plotly-plot')]
                     .some(gd => gd.layout.title.text.startsWith('Newest snapshot: epoch '))""",
            timeout=240_000,
        )
        assert page.get_by_role("button", name="Start training").is_disabled()
        page.screenshot(path=str(artifacts_dir / "models-training.png"), full_page=True)
        # the live panel redraws at every poll: under load the button never holds still for
        # Playwright's stability check, so click without it
        page.get_by_role("button", name="Cancel training").click(force=True)
        page.get_by_text("cancelled; nothing was saved").wait_for(timeout=120_000)
        assert not (home / "models" / "mnist-5k" / "browser-long.pt").exists()

        # A tiny run that finishes and shows up in the table and the sidebar.
        _fill_form(page, name="browser-tiny", epochs=1, limit=64, batch=32)
        page.get_by_role("button", name="Start training").click()
        page.get_by_text("Training finished: mnist-5k/browser-tiny is saved").wait_for(timeout=600_000)
        wait_idle(page)
        page.wait_for_function(
            """(sel) => [...document.querySelectorAll(sel + ' [role="gridcell"]')]
                        .some(c => c.innerText.trim() === 'mnist-5k/browser-tiny')""",
            arg=TABLE, timeout=60_000,
        )
        assert (home / "models" / "mnist-5k" / "browser-tiny.pt").is_file()
        assert page.get_by_text("Training curves: mnist-5k/browser-tiny").count() or True
        page.screenshot(path=str(artifacts_dir / "models-finished.png"), full_page=True)
        sidebar = page.locator('[data-testid="stSidebar"]')
        combo = sidebar.get_by_role("combobox", name=re.compile("Models"))
        combo.click()
        combo.press_sequentially("browser-tiny")  # the list is long (the eps family): filter it
        page.get_by_role("option", name=re.compile(r"browser-tiny .*yours")).wait_for(timeout=30_000)
        page.keyboard.press("Escape")
        assert not page.locator('[data-testid="stException"]').count()


def _grid_title(page) -> str:
    return page.evaluate("(sel) => document.querySelector(sel).layout.title.text", SNAPSHOTS)


def _epoch_slider(page):
    sliders = page.locator('[data-testid="stSlider"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile("^Epoch$")))
    return sliders.first.get_by_role("slider")


def _slide_to(page, key: str, expected_epoch: int) -> None:
    """Move the Epoch slider with the keyboard (Home: the first epoch, End: the last) and wait
    for the grid of ``expected_epoch``."""
    thumb = _epoch_slider(page)
    thumb.focus()
    thumb.press(key)
    page.wait_for_function(
        "([sel, e]) => { const gd = document.querySelector(sel);"
        " return gd && gd.layout.title.text.startsWith('Input gradients at epoch ' + e + ' '); }",
        arg=[SNAPSHOTS, expected_epoch], timeout=120_000)
    wait_idle(page)


def test_models_page_snapshot_slider_and_animation(streamlit_server_home, browser, artifacts_dir):
    url, home = streamlit_server_home
    name = snapshot_model(home, "browser-snaps", epochs=2)
    with browser_page(browser, 1400, 2400, artifacts_dir / "models-snapshots-failure.png") as page:
        open_from_menu(page, url, "Models", timeout_ms=120_000)
        page.wait_for_selector(TABLE, timeout=120_000)
        wait_idle(page)
        _choose_model(page, name, "What to look for:")
        page.wait_for_selector(SNAPSHOTS, timeout=120_000)
        assert _grid_title(page).startswith("Input gradients at epoch 2 ")
        assert _epoch_slider(page).get_attribute("aria-valuetext") == "2"
        late = page.evaluate(FIRST_MAP, SNAPSHOTS)

        _slide_to(page, "Home", 0)  # back to before training
        assert _epoch_slider(page).get_attribute("aria-valuetext") == "0"
        headers = page.evaluate("(sel) => document.querySelector(sel).layout.annotations.map(a => a.text)", SNAPSHOTS)
        assert "<b>browser-snaps</b> · before training (epoch 0)" in headers
        early = page.evaluate(FIRST_MAP, SNAPSHOTS)
        assert len(early) > 100 and early != late  # the slider changed the maps, not only the title
        assert page.get_by_text("What to look for:").count() == 1
        page.locator(".st-key-models_snapshots").screenshot(path=str(artifacts_dir / "models-snapshots.png"))
        page.screenshot(path=str(artifacts_dir / "models-snapshots-page.png"), full_page=True)

        # the animation: press Play, the frames advance to the last epoch
        page.get_by_role("tab", name="Play all epochs").click()
        page.wait_for_function("(sel) => { const gd = document.querySelector(sel); return gd && gd.offsetWidth > 0; }",
                               arg=ANIMATION, timeout=60_000)
        assert page.evaluate("(sel) => document.querySelector(sel)._transitionData._frames.length", ANIMATION) == 3
        page.locator(f"{ANIMATION} .updatemenu-button").first.click()
        page.wait_for_function(
            "(sel) => document.querySelector(sel).layout.title.text.startsWith('Input gradients at epoch 2 ')",
            arg=ANIMATION, timeout=60_000)
        page.locator('.st-key-models_snap_anim[data-stale="false"]').screenshot(path=str(artifacts_dir / "models-snapshots-played.png"))

        # the shipped eps-family runs, compared epoch by epoch (when their snapshots are there)
        shipped = [f"mnist-5k/{n}" for n in ("pgd-linf-0.05", "pgd-l2-0.5")
                   if (REPO / "assets" / "models" / "mnist-5k" / f"{n}.snapshots.npz").is_file()]
        if len(shipped) == 2:
            page.get_by_role("tab", name="Epoch by epoch").click()
            _choose_model(page, shipped[0], "What to look for:")
            combo = page.get_by_role("combobox", name="Compare with")
            combo.click()
            page.get_by_role("option", name=shipped[1], exact=True).click()
            page.wait_for_function("(sel) => document.querySelector(sel) && document.querySelector(sel).data.length"
                                   " === 24", arg=SNAPSHOTS, timeout=120_000)
            wait_idle(page)
            for key, epoch in (("Home", 0), ("ArrowRight", 1), ("End", 10)):
                _slide_to(page, key, epoch)
                page.locator('.st-key-models_snap_chart[data-stale="false"]').screenshot(
                    path=str(artifacts_dir / f"models-snapshots-shipped-epoch{epoch}.png"))
        assert not page.locator('[data-testid="stException"]').count()
