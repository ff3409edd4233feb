"""App tests (streamlit.testing.v1.AppTest) of the Models page: the table and curves, AGR's
diagnostics, card edits, eps50 on request, a tiny training started from the form that
finishes and shows up in the table, bad uploads refused with a clear message, and the
training snapshots (epoch slider, comparison, the newest epoch while a model trains, models
without snapshots or with a bad file).

Every test points GRADVIZ_HOME at a temporary folder: nothing lands in assets/ or in the
real user folder.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from gradviz import zoo
from gradviz.attacks import format_curve_eps50
from gradviz.nets import build_model
from gradviz.training import TrainConfig, jobs, model_card, train
from gradviz.training.snapshots import SnapshotRecorder, load_snapshots
from tests.helpers import app_charts as charts

TIMEOUT = 300
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    yield tmp_path
    for job in list(jobs._JOBS.values()):
        job.cancel()
        job.wait(60)


def models_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/models.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def start_tiny_pgd(at: AppTest, name: str, *, epochs: int) -> None:
    """Fill the training form for a tiny PGD run (64 images, PGD-1, curves and card on 16 and
    20 test images) and press Start."""
    at.selectbox(key="models_train_method").set_value("pgd").run()
    at.text_input(key="models_train_name::pgd").set_value(name)
    at.number_input(key="models_train_epochs").set_value(epochs)
    at.number_input(key="models_train_limit").set_value(64)
    at.number_input(key="models_train_steps").set_value(1)
    at.number_input(key="models_train_monitor").set_value(16)
    at.number_input(key="models_train_eval_n").set_value(20)
    at.button(key="models_train_go").click().run()


def table(at: AppTest) -> list[dict]:
    return at.dataframe[0].value.to_dict("records")


def _state_dict_bytes(**shape) -> bytes:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_model("small-cnn", **{"channels": 1, "num_classes": 10, "size": 28, **shape}).state_dict(), buf)
    return buf.getvalue()


class _Exploit:
    """Unpickling this would run code (it writes a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _fake_agr_model(home: Path) -> str:
    log = [{"epoch": e, "loss": 2.0 / e, "adv_accuracy": 0.2 * e, "agr_cos": 0.5 - 0.2 * e, "agr_gop_rate": 0.1 * e,
            "agr_norm_adv": 1.0, "agr_norm_clean": 0.5, "agr_norm": 0.1 if e >= 2 else 1.0,
            "agr_active": float(e >= 2), "monitor_clean_accuracy": 0.5, "monitor_robust_accuracy": 0.1 * e}
           for e in (1, 2, 3)]
    card = zoo.ModelCard(name="mnist-5k/fake-agr", dataset="mnist-5k", arch="small-cnn", method="agr", eps=0.3,
                         norm="linf", metrics={"clean_accuracy": 0.5, "robust_accuracy": 0.1},
                         training={"agr_base": "pgd", "agr_start_epoch": 2, "epochs": 3}, log=log,
                         command="python -m gradviz train --method agr ...")
    zoo.save_model(build_model("small-cnn", channels=1, num_classes=10, size=28), card,
                   home / "models" / "mnist-5k" / "fake-agr.pt")
    return card.name


def test_models_page_table_and_training_curves(home, shipped_models):
    at = models_page()
    assert at.title[0].value == "Models"
    assert at.expander and "What am I looking at" in at.expander[0].label
    rows = {r["name"]: r for r in table(at)}
    for name in shipped_models:
        assert rows[name]["source"] == "shipped" and rows[name]["dataset"] == "mnist-5k"
    card = zoo.get_card("mnist-5k/pgd-linf")
    assert rows["mnist-5k/pgd-linf"]["robust %"] == pytest.approx(100 * card.metrics["robust_accuracy"], abs=0.05)
    assert rows["mnist-5k/pgd-linf"]["attack"] == "PGD-40 linf eps 0.3"
    for name in shipped_models:  # every shipped card carries AutoAttack beside PGD-40 (issue 15)
        aa = zoo.get_card(name).metrics["autoattack"]
        assert rows[name]["AutoAttack %"] == pytest.approx(100 * aa["robust_accuracy"], abs=0.05)
        assert rows[name]["AutoAttack %"] <= rows[name]["robust %"] + 100 * 0.01  # PGD-40 on 1,000 images vs 200
    assert rows["mnist-5k/pgd-linf"]["norm"] == "linf" and rows["mnist-5k/standard"]["norm"] == "–"
    assert rows["mnist-5k/pgd-linf"]["eps50"] == f"{card.metrics['curve']['eps50']:.4g}"  # from the card's curve
    at.selectbox(key="models_chosen").set_value("mnist-5k/pgd-linf").run()
    assert not at.exception and not at.error
    curves = charts(at)["Training curves: mnist-5k/pgd-linf"]
    names = [t["name"] for t in curves["data"]]
    assert "training loss (the objective)" in names and "train, adversarial (running mean)" in names
    assert not any(t.startswith("AGR") for t in charts(at))
    assert not any(t.startswith("Input-gradient alignment") for t in charts(at))  # PGD logs no input cosine
    assert any(card.command in c.value for c in at.code)


def test_pag_model_shows_its_input_gradient_cosines(home, shipped_models):
    pag = zoo.get_card("mnist-5k/pag-cm")
    at = models_page()
    at.selectbox(key="models_chosen").set_value(pag.name).run()
    assert not at.exception and not at.error
    fig = charts(at)[f"Input-gradient alignment: {pag.name}"]
    lines = {t["hovertemplate"].split("<extra>")[1].removesuffix("</extra>"): t for t in fig["data"]}
    assert set(lines) == {"pag_cos", "pag_cos_true"}  # the shipped card's own log, nothing else
    assert list(lines["pag_cos"]["y"]) == pytest.approx([e["pag_cos"] for e in pag.log])
    assert list(lines["pag_cos_true"]["x"]) == [e["epoch"] for e in pag.log]


def test_agr_diagnostics_card_edit_and_eps50(home):
    name = _fake_agr_model(home)
    at = models_page()
    at.selectbox(key="models_chosen").set_value(name).run()
    assert not at.exception
    figs = charts(at)
    agr = figs[f"AGR diagnostics: {name}"]
    assert {t["name"] for t in agr["data"]} == {"mean cosine", "GOP rate (cos <= 0)", "|g_adv|", "|g_cl|", "|g| used"}
    curves = figs[f"Training curves: {name}"]
    assert any(t["name"].startswith("held-out, robust") for t in curves["data"])

    # eps50 on request, on 20 test images with 5 PGD steps
    at.number_input(key="models_eps50_n").set_value(20)
    at.number_input(key="models_eps50_steps").set_value(5)
    at.button(key="models_eps50_go").click().run()
    assert not at.exception and not at.error
    row = next(r for r in table(at) if r["name"] == name)
    measured = at.session_state["gv_models_eps50"][name]  # gradviz.ui.models_cache.eps50_results()
    # a number where the curve crosses 50 % inside the grid, else on which side of it eps50 lies
    assert row["eps50"] == format_curve_eps50(measured) and row["eps50"] != "–"
    assert row["eps50"].startswith(("below the grid", "above the grid")) or float(row["eps50"]) >= 0
    assert any(t.startswith("Accuracy vs eps") for t in charts(at))

    # the card editor: rename, change method and eps
    at.text_input(key=f"models_edit_name::{name}").set_value("renamed")
    at.text_input(key=f"models_edit_method::{name}").set_value("agr-pgd")
    at.button(key=f"models_edit_save::{name}").click().run()
    assert not at.exception and not at.error
    assert any("Saved the card of mnist-5k/renamed" in s.value for s in at.success)
    rows = {r["name"]: r for r in table(at)}
    assert "mnist-5k/renamed" in rows and name not in rows and rows["mnist-5k/renamed"]["method"] == "agr-pgd"
    assert at.selectbox(key="models_chosen").value == "mnist-5k/renamed"


def test_tiny_training_from_the_form_finishes_and_shows_up(home):
    at = models_page()
    start_tiny_pgd(at, "tiny-app", epochs=1)
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["gv_models_job"])
    assert job is not None and job.config.method == "pgd" and job.config.limit == 64
    assert job.wait(600), "the tiny training did not finish"
    assert job.snapshot().status == "done", job.snapshot().error
    at.run()
    assert not at.exception
    assert any("Training finished: mnist-5k/tiny-app is saved" in s.value for s in at.success)
    rows = {r["name"]: r for r in table(at)}
    assert rows["mnist-5k/tiny-app"]["source"] == "yours" and rows["mnist-5k/tiny-app"]["method"] == "pgd"
    assert at.selectbox(key="models_chosen").value == "mnist-5k/tiny-app"
    assert "Training curves: mnist-5k/tiny-app" in charts(at)
    assert (home / "models" / "mnist-5k" / "tiny-app.pt").is_file()
    assert "mnist-5k/tiny-app" in [c.name for c in zoo.list_models("mnist-5k")]  # the sidebar's list


def test_the_training_form_draws_each_objectives_options_from_the_registry(home, monkeypatch):
    from gradviz.training import OBJECTIVES

    def option_keys(at: AppTest) -> set:
        fixed = {"models_train_method", "models_train_dataset", "models_train_epochs", "models_train_seed",
                 "models_train_batch", "models_train_limit", "models_train_monitor", "models_train_eval_n"}
        return {w.key for w in [*at.number_input, *at.selectbox] if w.key and w.key.startswith("models_train_")} - fixed

    at = models_page()
    for method, cls in OBJECTIVES.items():
        at.selectbox(key="models_train_method").set_value(method).run()
        assert not at.exception, [e.value for e in at.exception]
        assert option_keys(at) == {f"models_train_{o.name}" for o in cls.options_for({})}, method
    at.selectbox(key="models_train_method").set_value("agr").run()
    at.selectbox(key="models_train_agr_base").set_value("trades").run()  # the wrapped objective's options follow
    assert "models_train_trades_beta" in option_keys(at)
    assert at.number_input(key="models_train_trades_beta").value == OBJECTIVES["trades"].options[-1].default
    started = []

    def fake_start(config, **kwargs):  # what the form asks for, without training
        started.append(config)
        raise ValueError("not in this test")

    monkeypatch.setattr(jobs, "start_job", fake_start)
    at.button(key="models_train_go").click().run()
    assert not at.exception and any("Training not started: not in this test" in e.value for e in at.error)
    (config,) = started
    c = config.resolved()
    assert (c.method, c.agr_base, c.trades_beta, c.agr_clip, c.steps) == ("agr", "trades", 6.0, 0.1, 10)
    assert config.agr_start_epoch is None and c.agr_start_epoch == int(0.775 * c.epochs) + 1  # 0: the default
    assert config.step_size is None and config.eps == 0.3  # the dataset's evaluation eps


@pytest.mark.parametrize("filename, data, expected", [
    ("cifar.pt", _state_dict_bytes(channels=3, size=32), "another input shape than mnist-5k's 1 x 28 x 28"),
    ("seven.pt", _state_dict_bytes(num_classes=7), "it predicts 7 classes, mnist-5k has 10"),
    ("evil.pt", None, "weights_only"),
])
def test_bad_uploads_are_refused_with_a_clear_message(home, filename, data, expected):
    if data is None:  # a pickle that would run code on load
        marker = home / "marker.txt"
        buf = io.BytesIO()
        torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Exploit(marker)}, buf)
        data = buf.getvalue()
    at = models_page()
    at.file_uploader(key="models_import_file").upload(filename, data, "application/octet-stream")
    at.run()
    at.text_input(key="models_import_name").set_value("upload")
    at.button(key="models_import_go").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith(f"Not imported: {filename}") and expected in e for e in errors), errors
    assert not (home / "models" / "mnist-5k" / "upload.pt").exists()
    if filename == "evil.pt":
        assert not (home / "marker.txt").exists()


def test_good_upload_is_imported_and_listed(home):
    at = models_page()
    at.file_uploader(key="models_import_file").upload("mine.pt", _state_dict_bytes(), "application/octet-stream")
    at.run()
    at.text_input(key="models_import_name").set_value("mine")
    at.text_input(key="models_import_method").set_value("standard")
    at.button(key="models_import_go").click().run()
    assert not at.exception and not at.error
    assert any("Imported mnist-5k/mine (small-cnn)" in s.value for s in at.success)
    rows = {r["name"]: r for r in table(at)}
    assert rows["mnist-5k/mine"]["source"] == "yours" and rows["mnist-5k/mine"]["clean %"] is not None
    assert at.selectbox(key="models_chosen").value == "mnist-5k/mine"


# ----------------------------------------------------------------------- training snapshots


def snapshot_model(home: Path, name: str, epochs: int) -> str:
    """A tiny PGD run (64 training images, PGD-1, held-out curves on 16 test images) saved as
    the user model ``mnist-5k/<name>`` with its snapshots (8 images, epochs 0..``epochs``)."""
    config = TrainConfig(method="pgd", epochs=epochs, limit=64, batch_size=32, steps=1, monitor=16, snapshots=8,
                         augment=False)
    path = home / "models" / "mnist-5k" / f"{name}.pt"
    model, log = train(config, device="cpu", snapshot_path=zoo.snapshot_path(path))
    card = model_card(config, name=f"mnist-5k/{name}", log=log, metrics={}, command="python -m gradviz train ...",
                      snapshot_path=zoo.snapshot_path(path))
    zoo.save_model(model, card, path)
    return card.name


def _array(value) -> np.ndarray:
    """A plotly JSON array (a list, or plotly's base64 typed array) as NumPy."""
    if isinstance(value, dict) and "bdata" in value:
        shape = [int(v) for v in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).reshape(shape)
    return np.asarray(value, dtype=float)


def _snapshot_chart(at: AppTest) -> dict:
    """The epoch-by-epoch snapshot grid (the chart with key models_snap_chart)."""
    found = [c for c in at.get("plotly_chart") if c.proto.id and "models_snap_chart" in c.proto.id]
    assert len(found) == 1, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def _headers(spec: dict) -> list[str]:
    return [a["text"] for a in spec["layout"]["annotations"] if a["text"].startswith("<b>")]


def _maps(spec: dict) -> list[np.ndarray]:
    return [_array(t["z"]) for t in spec["data"] if t["type"] == "heatmap" and t.get("coloraxis")]


def test_a_model_with_snapshots_has_an_epoch_slider_that_changes_the_figure(home):
    name = snapshot_model(home, "tiny-snap", epochs=2)
    s = load_snapshots(home / "models" / "mnist-5k" / "tiny-snap.snapshots.npz")
    at = models_page()
    rows = {r["name"]: r for r in table(at)}
    assert rows[name]["snapshots"] == "epochs 0–2"
    at.selectbox(key="models_chosen").set_value(name).run()
    assert not at.exception and not at.error and not at.warning, [w.value for w in at.warning]
    slider = at.select_slider(key=f"models_snap_epoch::{name}")
    assert [int(o) for o in slider.options] == [0, 1, 2] and slider.value == 2
    assert any(m.value.startswith("**What to look for:**") for m in at.markdown)
    spec = _snapshot_chart(at)
    assert spec["layout"]["title"]["text"].startswith("Input gradients at epoch 2")
    (header,) = [h for h in _headers(spec) if "tiny-snap" in h]
    assert header.startswith("<b>tiny-snap</b> · epoch 2 · held-out clean ") and "robust (PGD-10 eps 0.3)" in header
    late = _maps(spec)
    assert len(late) == 8
    g = s.input_gradients[2, 0, 0]
    np.testing.assert_allclose(late[0], g / np.abs(g).max(), rtol=1e-5)  # per-panel, signed
    curves = charts(at)[f"Training curves: {name}"]
    assert {sh["x0"] for sh in curves["layout"]["shapes"]} == {2}  # the curves mark the epoch shown

    at.select_slider(key=f"models_snap_epoch::{name}").set_value(0).run()
    assert not at.exception
    spec = _snapshot_chart(at)
    assert spec["layout"]["title"]["text"].startswith("Input gradients at epoch 0")
    assert "<b>tiny-snap</b> · before training (epoch 0)" in _headers(spec)
    early = _maps(spec)
    g0 = s.input_gradients[0, 0, 0]
    np.testing.assert_allclose(early[0], g0 / np.abs(g0).max(), rtol=1e-5)
    assert not np.allclose(early[0], late[0])
    assert {sh["x0"] for sh in charts(at)[f"Training curves: {name}"]["layout"]["shapes"]} == {0}
    anim = [c for c in at.get("plotly_chart") if "models_snap_anim" in (c.proto.id or "")]
    assert len(anim) == 1  # the Play tab's animation


def test_two_models_compared_epoch_by_epoch_say_which_epochs_one_lacks(home):
    a = snapshot_model(home, "tiny-two", epochs=2)
    b = snapshot_model(home, "tiny-one", epochs=1)
    at = models_page()
    at.selectbox(key="models_chosen").set_value(a).run()
    at.selectbox(key=f"models_snap_other::{a}").set_value(b).run()
    assert not at.exception and not at.error
    key = f"models_snap_epoch::{a}::{b}"
    assert [int(o) for o in at.select_slider(key=key).options] == [0, 1, 2]
    assert any(f"{b} has no snapshot of epoch 2" in i.value for i in at.info)
    headers = _headers(_snapshot_chart(at))
    assert "<b>tiny-one</b> · no snapshot of epoch 2 (it has epochs 0–1)" in headers
    assert any(h.startswith("<b>tiny-two</b> · epoch 2") for h in headers)
    at.select_slider(key=key).set_value(1).run()
    assert not at.exception and not any("no snapshot" in i.value for i in at.info)
    spec = _snapshot_chart(at)
    assert [h.split(" · ")[:2] for h in _headers(spec)[1:]] == [["<b>tiny-two</b>", "epoch 1"],
                                                                  ["<b>tiny-one</b>", "epoch 1"]]
    maps = _maps(spec)
    assert len(maps) == 16 and not np.allclose(maps[0], maps[8])  # two runs, two different gradients


def _card_only_model(home: Path, name: str, snapshots: dict | None = None) -> str:
    card = zoo.ModelCard(name=f"mnist-5k/{name}", dataset="mnist-5k", arch="small-cnn", method="standard",
                         log=[{"epoch": 1, "loss": 1.0}], training={"snapshots": snapshots} if snapshots else {})
    zoo.save_model(build_model("small-cnn", channels=1, num_classes=10, size=28), card,
                   home / "models" / "mnist-5k" / f"{name}.pt")
    return card.name


def test_models_without_snapshots_or_with_a_bad_file_say_so(home):
    plain = _card_only_model(home, "no-snaps")
    listed = {"file": "bad-snaps.snapshots.npz", "epochs": [0, 1], "images": 8}
    bad = _card_only_model(home, "bad-snaps", listed)
    (home / "models" / "mnist-5k" / "bad-snaps.snapshots.npz").write_bytes(b"PK\x03\x04 not a zip")
    gone = _card_only_model(home, "gone-snaps", {**listed, "file": "gone-snaps.snapshots.npz"})
    at = models_page()
    rows = {r["name"]: r for r in table(at)}
    assert (rows[plain]["snapshots"], rows[bad]["snapshots"], rows[gone]["snapshots"]) == ("–", "epochs 0–1",
                                                                                          "file missing")
    at.selectbox(key="models_chosen").set_value(plain).run()
    assert not at.exception and not at.select_slider
    assert any(f"{plain} has no training snapshots" in i.value for i in at.info)
    at.selectbox(key="models_chosen").set_value(bad).run()
    assert not at.exception and not at.select_slider
    assert any(f"The training snapshots of {bad} could not be read" in w.value and "not a readable snapshot file"
               in w.value for w in at.warning), [w.value for w in at.warning]
    at.selectbox(key="models_chosen").set_value(gone).run()
    assert not at.exception and not at.select_slider
    assert any("lists training snapshots, but their file gone-snaps.snapshots.npz is missing" in w.value
               for w in at.warning)
    assert f"Training curves: {gone}" in charts(at)  # the rest of the page is drawn


def test_the_newest_snapshot_appears_while_a_model_trains_from_the_form(home, monkeypatch):
    reached, release = threading.Event(), threading.Event()
    record = SnapshotRecorder.record

    def held(self, model, epoch):  # hold the run after its epoch-1 snapshot: it is still training
        seconds = record(self, model, epoch)
        if epoch == 1:
            reached.set()
            release.wait(300)
        return seconds

    monkeypatch.setattr(SnapshotRecorder, "record", held)
    at = models_page()
    start_tiny_pgd(at, "live-snaps", epochs=3)
    job = jobs.get_job(at.session_state["gv_models_job"])
    try:
        assert reached.wait(300), "the run did not reach its first epoch's snapshot"
        at.run()
        assert not at.exception and job.running
        live = [t for t in charts(at) if t.startswith("Newest snapshot")]
        assert live == ["Newest snapshot: epoch 1 (the input gradient while it trains)"]
    finally:
        release.set()
        job.cancel()
        job.wait(120)
