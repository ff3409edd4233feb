"""App tests (streamlit.testing.v1.AppTest) of app.py and the Gradients page, and unit
tests of the page's input handling (uploads, index lists)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

from gradviz import zoo
from gradviz.data import MAX_IMAGE_PIXELS
from gradviz.nets import build_model
from gradviz.ui import parse_indices, read_upload
from tests.helpers import drawn_digit, png_header

TIMEOUT = 60
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def png(mode: str, size: tuple[int, int], color=255) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


BAD_FILES = {
    "notes.png": b"this is not an image at all",
    "huge.png": png("1", (5000, 5000), 0),  # 25 Mpx, a few kB on disk
    "giant.png": png_header(20000, 20000),  # 400 Mpx: over twice PIL's own limit
}


def chart_spec(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1, "expected one plotly chart on the page"
    return json.loads(charts[0].proto.spec)


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------------------- units


def test_parse_indices():
    assert parse_indices("0-7", 100) == (list(range(8)), [])
    assert parse_indices("0, 5, 17", 100) == ([0, 5, 17], [])
    assert parse_indices(" 3 4;9 ", 100) == ([3, 4, 9], [])
    idx, problems = parse_indices("2, abc, 150, 7-5", 100)
    assert idx == [2, 5, 6, 7]
    assert any("'abc'" in p for p in problems) and any("'150'" in p for p in problems)
    idx, problems = parse_indices("0-99", 100, limit=16)
    assert idx == list(range(16)) and any("first 16" in p for p in problems)
    assert parse_indices("", 100) == ([], [])


def test_read_upload_messages():
    ok = read_upload(png("L", (28, 28), 0), "digit.png", channels=1, size=28)
    assert ok.ok and ok.x.shape == (1, 1, 28, 28) and not ok.infos and not ok.errors

    drawn = read_upload(drawn_digit(), "drawn.png", channels=1, size=28)  # black on white
    assert drawn.ok and drawn.x[0, 0, 0, 0] == 0 and drawn.x.max() == 1
    assert "drawn.png" in drawn.infos[0] and "inverted to light strokes on a dark background" in drawn.infos[0]
    kept = read_upload(drawn_digit(), "drawn.png", channels=1, size=28, invert=False)
    assert kept.x[0, 0, 0, 0] == 1 and "not inverted, as asked" in kept.infos[0]

    rgb = read_upload(png("RGB", (28, 28), (255, 0, 0)), "red.png", channels=1, size=28)
    assert rgb.ok and rgb.x.shape == (1, 1, 28, 28)
    assert len(rgb.infos) == 1 and "grayscale" in rgb.infos[0] and "red.png" in rgb.infos[0]

    rgba = read_upload(png("RGBA", (28, 28), (255, 255, 255, 0)), "clear.png", channels=1, size=28)
    assert rgba.ok and "transparency" in rgba.infos[0] and "grayscale" in rgba.infos[0]
    assert float(rgba.x.max()) == 0.0  # fully transparent -> black background

    big = read_upload(png("L", (100, 60)), "big.png", channels=1, size=28)
    assert big.ok and big.x.shape == (1, 1, 28, 28)
    assert "resized from 100 x 60 to 28 x 28" in big.infos[0]

    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(jpeg, format="JPEG")
    rgb_model = read_upload(jpeg.getvalue(), "photo.jpg", channels=3, size=32)
    assert rgb_model.ok and rgb_model.x.shape == (1, 3, 32, 32) and not rgb_model.infos

    junk = read_upload(BAD_FILES["notes.png"], "notes.png", channels=1, size=28)
    assert not junk.ok and junk.x is None
    assert "notes.png" in junk.errors[0] and "not an image" in junk.errors[0]

    huge = read_upload(BAD_FILES["huge.png"], "huge.png", channels=1, size=28)
    assert not huge.ok and "5000 x 5000" in huge.errors[0] and f"{MAX_IMAGE_PIXELS:,}" in huge.errors[0]
    giant = read_upload(BAD_FILES["giant.png"], "giant.png", channels=1, size=28)  # too large for PIL to open
    assert not giant.ok and "too large: 20000 x 20000 pixels" in giant.errors[0]

    gif = io.BytesIO()
    Image.new("L", (8, 8)).save(gif, format="GIF")
    refused = read_upload(gif.getvalue(), "anim.png", channels=1, size=28)
    assert not refused.ok and "GIF" in refused.errors[0]


# ---------------------------------------------------------------------------- the app


def test_app_default_gradients_page(shipped_models):
    at = run_app()
    # The shared sidebar: dataset, the two shipped models by default, device.
    assert at.sidebar.selectbox(key="gv_dataset").value == "mnist-5k"
    assert list(at.sidebar.multiselect(key="gv_models::mnist-5k").value) == list(shipped_models)
    assert at.sidebar.selectbox(key="gv_device").value == "auto"
    assert at.title[0].value == "Input gradients"
    assert at.expander and "What am I looking at" in at.expander[0].label
    assert not at.error
    spec = chart_spec(at)
    # Images 0-7: one row each, the input then one map per model.
    assert len(spec["data"]) == 8 * 3
    assert [t["name"] for t in spec["data"][:3]] == ["test #0", "standard", "pgd-linf"]
    ca = spec["layout"]["coloraxis"]
    assert ca["cmid"] == 0 and ca["cmin"] == -ca["cmax"]
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert any(t.startswith("standard: ") and " %)" in t for t in titles)
    assert any("pgd-linf: " in t for t in titles)
    buttons = at.get("download_button")
    assert [b.label for b in buttons] == ["PNG", "SVG", "PDF", "HTML", "Arrays (NPZ)"]
    assert "attributions (signed, before display)" in buttons[-1].proto.help  # says what the file holds


def test_widget_changes_rerun(shipped_models):
    at = run_app()
    before = chart_spec(at)

    at.selectbox(key="grad_method").set_value("integrated_gradients").run()
    assert not at.exception
    at.slider(key="grad_steps").set_value(8).run()
    assert not at.exception
    ig = chart_spec(at)
    assert "Integrated Gradients" in ig["layout"]["title"]["text"]
    assert ig["data"][1]["z"] != before["data"][1]["z"]

    at.radio(key="grad_scaling").set_value("shared").run()
    at.radio(key="grad_objective").set_value("loss").run()
    at.radio(key="grad_target").set_value("class").run()
    at.selectbox(key="grad_tclass").set_value(3).run()
    at.toggle(key="grad_clip").set_value(True).run()
    assert not at.exception and not at.error
    spec = chart_spec(at)
    title = spec["layout"]["title"]["text"]
    assert "shared" in title and "class 3" in title and "loss" in title and "clipped" in title

    at.selectbox(key="grad_method").set_value("smoothgrad").run()
    at.slider(key="grad_samples").set_value(4).run()
    assert not at.exception and len(chart_spec(at)["data"]) == 24

    at.text_input(key="grad_indices").set_value("3, 4").run()
    assert len(chart_spec(at)["data"]) == 2 * 3

    at.radio(key="grad_mode").set_value("random").run()
    at.number_input(key="grad_n").set_value(5).run()
    spec = chart_spec(at)
    assert len(spec["data"]) == 5 * 3

    at.radio(key="grad_mode").set_value("class").run()
    at.selectbox(key="grad_class").set_value(7).run()
    spec = chart_spec(at)
    assert not at.exception
    inputs = [a["text"] for a in spec["layout"]["annotations"]][::3]
    assert len(inputs) == 5 and all(t.endswith("label 7") for t in inputs)


def test_bad_indices_are_reported_and_the_page_continues(shipped_models):
    at = run_app()
    at.text_input(key="grad_indices").set_value("1, abc, 5000").run()
    assert not at.exception
    assert any("'abc'" in e.value for e in at.error)
    assert any("5000" in e.value for e in at.error)
    assert len(chart_spec(at)["data"]) == 3  # image 1 still shown
    at.text_input(key="grad_indices").set_value("nothing").run()
    assert not at.exception and at.warning and not at.get("plotly_chart")


def test_uploads_good_and_bad(shipped_models):
    at = run_app()
    at.radio(key="grad_mode").set_value("upload").run()
    assert not at.exception and not at.get("plotly_chart")
    assert any("Upload one or more images" in i.value for i in at.info)
    uploader = at.file_uploader(key="grad_upload")
    uploader.upload("notes.png", BAD_FILES["notes.png"], "image/png")
    uploader.upload("huge.png", BAD_FILES["huge.png"], "image/png")
    uploader.upload("red.png", png("RGB", (28, 28), (200, 30, 30)), "image/png")
    uploader.upload("ghost.png", png("RGBA", (28, 28), (255, 255, 255, 128)), "image/png")
    uploader.upload("wide.png", png("L", (64, 40), 0), "image/png")
    uploader.upload("giant.png", BAD_FILES["giant.png"], "image/png")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any("notes.png" in e and "not an image" in e for e in errors)
    assert any("huge.png" in e and "5000 x 5000" in e for e in errors)
    assert any("giant.png" in e and "too large: 20000 x 20000 pixels" in e for e in errors)
    infos = [i.value for i in at.info]
    assert any("red.png" in i and "grayscale" in i for i in infos)
    assert any("ghost.png" in i and "transparency" in i for i in infos)
    assert any("wide.png" in i and "resized from 64 x 40 to 28 x 28" in i for i in infos)
    assert any("no true label" in i.lower() for i in infos)  # uploads: explained for the prediction
    spec = chart_spec(at)
    assert len(spec["data"]) == 3 * 3
    assert [a["text"] for a in spec["layout"]["annotations"]][::3] == ["red.png", "ghost.png", "wide.png"]
    # the title says what the note says: no true label, so each model's predicted class
    title = spec["layout"]["title"]["text"]
    assert "target: predicted class (no true label)" in title and "true label ·" not in title


def test_uploads_drawn_black_on_white_are_inverted_with_a_toggle(shipped_models):
    at = run_app()
    at.radio(key="grad_mode").set_value("upload").run()
    assert at.radio(key="grad_invert").value == "auto"
    at.file_uploader(key="grad_upload").upload("drawn.png", drawn_digit(), "image/png")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("drawn.png" in i.value and "inverted to light strokes on a dark background" in i.value
               for i in at.info)
    auto = chart_spec(at)["data"][0]["z"]
    at.radio(key="grad_invert").set_value("never").run()
    assert not at.exception
    assert any("drawn.png" in i.value and "not inverted, as asked" in i.value for i in at.info)
    assert chart_spec(at)["data"][0]["z"] != auto  # the image the models see changed back


def test_a_model_that_fails_to_load_is_reported(tmp_path, monkeypatch):
    """A corrupt user checkpoint: st.error for it, the other model still drawn."""
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    good = build_model("small-cnn", channels=1, num_classes=10, size=28)
    card = zoo.ModelCard(name="mnist-5k/tiny", dataset="mnist-5k", arch="small-cnn", method="standard")
    zoo.save_model(good, card, tmp_path / "models" / "mnist-5k" / "tiny.pt")
    broken = zoo.ModelCard(name="mnist-5k/broken", dataset="mnist-5k", arch="small-cnn", method="standard")
    zoo.save_model(good, broken, tmp_path / "models" / "mnist-5k" / "broken.pt")
    (tmp_path / "models" / "mnist-5k" / "broken.pt").write_bytes(b"PK\x03\x04 truncated")

    # (AppTest 1.67 drops the entrypoint's sidebar from the element tree after a rerun,
    # so the selection is made through the session state before the first run.)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["gv_models::mnist-5k"] = ["mnist-5k/broken", "mnist-5k/tiny"]
    at.run()
    assert not at.exception
    assert list(at.sidebar.multiselect(key="gv_models::mnist-5k").value) == ["mnist-5k/broken", "mnist-5k/tiny"]
    assert any("mnist-5k/broken" in e.value and "could not be loaded" in e.value for e in at.error)
    spec = chart_spec(at)
    assert [t["name"] for t in spec["data"][:2]] == ["test #0", "tiny"]
    assert len(spec["data"]) == 8 * 2

    none = AppTest.from_file(APP, default_timeout=TIMEOUT)
    none.session_state["gv_models::mnist-5k"] = []
    none.run()
    assert not none.exception and not none.get("plotly_chart")
    assert any("at least one model" in w.value for w in none.warning)
