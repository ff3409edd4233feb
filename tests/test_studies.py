"""The studies layer (gradviz.studies): each study against the library call it stores, the
chunk store (atomic, checksummed, keyed on content), and a run killed with SIGKILL that
resumes with the numbers of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gradviz import inequality as iq
from gradviz import zoo
from gradviz.attacks import accuracy_vs_eps, eps50
from gradviz.attribution import attribute
from gradviz.data import load_dataset
from gradviz.studies import STUDIES, ChunkStore, NotStored, alignment, inequality, robustness
from gradviz.studies.store import model_fingerprint

REPO = Path(__file__).resolve().parent.parent
STD, PGD = "mnist-5k/standard", "mnist-5k/pgd-linf"


@pytest.fixture
def store(tmp_path):
    return ChunkStore(tmp_path / "store", read_only=[])


def test_the_registry_names_every_study():
    assert set(STUDIES) >= {"robustness", "inequality", "alignment"}
    for name, module in STUDIES.items():
        assert module.STUDY.name == name and callable(module.run) and module.STUDY.chunk >= 1


def test_robustness_equals_the_library_curve_and_is_read_back_not_recomputed(store):
    grid = [0.0, 0.1, 0.3]
    res = robustness.run([STD, PGD], n=40, eps_grid=grid, steps=5, device="cpu", store=store)
    assert (res.computed, res.loaded) == (2, 0)
    test = load_dataset("mnist-5k", "test")
    for name in (STD, PGD):
        expected = accuracy_vs_eps(zoo.load_model(name), test.x[:40], test.y[:40], grid, steps=5, seed=0,
                                   batch_size=40)
        np.testing.assert_allclose(res.accuracy()[name], expected)
    table = res.table()
    assert list(table["model"]) == [STD, PGD] and len(table) == 2
    assert table["eps50"].iloc[0] == pytest.approx(eps50(grid, res.accuracy()[STD]), nan_ok=True)
    again = robustness.run([STD, PGD], n=40, eps_grid=grid, steps=5, device="cpu", store=store)
    assert (again.computed, again.loaded) == (0, 2)
    np.testing.assert_array_equal(again.per_image[PGD]["robust"], res.per_image[PGD]["robust"])
    with np.load(__import__("io").BytesIO(res.to_npz())) as f:
        assert f["robust"].shape == (2, 40, 3) and list(f["model_names"]) == [STD, PGD]


def test_other_settings_or_other_weights_are_other_keys(store):
    robustness.run([STD], n=20, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=store)
    other = robustness.run([STD], n=20, eps_grid=[0.0, 0.2], steps=3, device="cpu", store=store)
    assert other.computed == 1
    model = zoo.load_model(STD)
    changed = zoo.load_model(STD)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    changed.gradviz_info = {"name": "changed"}
    assert model_fingerprint(changed) != model_fingerprint(model)
    res = robustness.run([changed], n=20, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=store)
    assert res.computed == 1 and res.model_names == ["changed"]


def test_compute_missing_false_reads_only(store):
    with pytest.raises(NotStored):
        robustness.run([STD], n=20, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=store, compute_missing=False)
    robustness.run([STD], n=20, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=store)
    res = robustness.run([STD], n=20, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=store, compute_missing=False)
    assert res.loaded == 1


def test_a_corrupt_or_truncated_chunk_is_recomputed_never_read(store):
    first = robustness.run([STD], n=30, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=store, chunk=10)
    files = sorted((store.root / "robustness").rglob("*.npz"))
    assert len(files) == 3
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    raw = bytearray(files[1].read_bytes())
    raw[-200] ^= 0xFF  # one flipped byte
    files[1].write_bytes(bytes(raw))
    again = robustness.run([STD], n=30, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=store, chunk=10)
    assert (again.computed, again.loaded) == (2, 1)
    np.testing.assert_array_equal(again.per_image[STD]["robust"], first.per_image[STD]["robust"])


def test_a_read_only_store_is_searched_after_the_writable_one(tmp_path):
    shipped = ChunkStore(tmp_path / "shipped", read_only=[])
    robustness.run([STD], n=20, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=shipped)
    user = ChunkStore(tmp_path / "user", read_only=[tmp_path / "shipped"])
    res = robustness.run([STD], n=20, eps_grid=[0.0, 0.1], steps=3, device="cpu", store=user, compute_missing=False)
    assert res.loaded == 1 and not (tmp_path / "user").exists()


def test_inequality_stores_the_library_numbers(store):
    res = inequality.run([STD, PGD], n=30, method="gradient", k=(0.01, 0.05), radii=(1, 3), n_pixels=3,
                         device="cpu", store=store, chunk=15)
    test = load_dataset("mnist-5k", "test")
    x, y = test.x[:30], test.y[:30]
    for name in (STD, PGD):
        model = zoo.load_model(name)
        a = attribute(model, x, y, "gradient")
        np.testing.assert_allclose(res.gini[name], iq.gini(a).numpy(), rtol=1e-6)
        np.testing.assert_allclose(res.regional[name], iq.regional_gini(a, 4).numpy(), rtol=1e-6)
        _, shares = iq.lorenz_curve(a, points=201)
        np.testing.assert_allclose(res.lorenz_mean[name], shares.double().mean(0).numpy(), rtol=1e-6)
        # the flips of the first chunk are the library's, with the chunk's seed (seed + start)
        flips = iq.noise_flips(model, x[:15], y[:15], a[:15], res.k_counts, seed=0)
        np.testing.assert_array_equal(res.per_image[name]["inductive"][:15], flips.numpy())
    among = res.among
    assert among.dtype == bool and res.n_common == int(among.sum()) > 0
    for name in (STD, PGD):
        np.testing.assert_allclose(res.inductive[name], res.per_image[name]["inductive"][among].mean(0))
    assert res.k_counts == [iq.resolve_k(0.01, 784), iq.resolve_k(0.05, 784)]
    assert len(res.table()) == 2 and len(res.to_npz()) > 0


def test_noise_flips_average_to_noise_error_rate():
    model = zoo.load_model(STD)
    test = load_dataset("mnist-5k", "test")
    x, y = test.x[:40], test.y[:40]
    a = attribute(model, x, y, "gradient")
    everyone = torch.ones(40, dtype=torch.bool)
    rate = iq.noise_error_rate(model, x, y, a, [8, 40], among=everyone, seed=3)
    flips = iq.noise_flips(model, x, y, a, [8, 40], seed=3)
    np.testing.assert_allclose(rate.numpy(), flips.double().mean(0).numpy())


def test_alignment_on_squares_with_their_exact_residual(store):
    models = [m.name for m in zoo.list_models("squares")]
    res = alignment.run(models, dataset="squares", n=6, steps=(4, 2), device="cpu", store=store, chunk=3)
    assert res.model_names == models
    for name in models:
        assert res.alpha_dx[name].shape == res.alpha_x[name].shape == res.alpha_true[name].shape == (6,)
        assert np.all(np.abs(res.alpha_dx[name]) <= 1 + 1e-6) and np.all(res.alpha_x[name] >= 0)
        assert np.all(res.targets[name] == 1 - res.labels)  # two classes: the other one
    assert res.cos_true.shape == (6,)
    table = res.table()
    assert len(table) == len(models)
    again = alignment.run(models, dataset="squares", n=6, steps=(4, 2), device="cpu", store=store, chunk=3)
    assert again.computed == 0
    np.testing.assert_array_equal(again.alpha_dx[models[0]], res.alpha_dx[models[0]])


def _cli(store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gradviz", "study", "robustness", "--models", STD, "--n", "160", "--chunk", "8",
            "--eps-grid", "0", "0.1", "0.2", "--steps", "10", "--device", "cpu", "--store", str(store), *extra]


def test_a_study_killed_with_sigkill_resumes_with_the_same_numbers(tmp_path):
    env = {**os.environ, "GRADVIZ_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while len(list(killed.rglob("*.npz"))) < 3:
            assert proc.poll() is None, "the study ended before it could be killed"
            assert time.monotonic() < deadline, "no chunk was stored in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    stored_at_kill = len(list(killed.rglob("*.npz")))
    assert 3 <= stored_at_kill < 20
    assert not [p for p in killed.rglob("*") if p.is_file() and p.suffix not in (".npz", ".json", ".tmp")]

    out = tmp_path / "out-resumed"
    resumed = subprocess.run(_cli(killed, "--out", str(out)), cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{20 - stored_at_kill} chunks computed, {stored_at_kill} read from the store" in resumed.stdout

    fresh_out = tmp_path / "out-fresh"
    fresh = subprocess.run(_cli(tmp_path / "fresh", "--out", str(fresh_out)), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    assert (out / "robustness.csv").read_text() == (fresh_out / "robustness.csv").read_text()
    with np.load(out / "robustness.npz") as a, np.load(fresh_out / "robustness.npz") as b:
        np.testing.assert_array_equal(a["robust"], b["robust"])


def test_the_cli_lists_the_studies_and_refuses_bad_settings(tmp_path):
    env = {**os.environ, "GRADVIZ_HOME": str(tmp_path / "home")}
    help_text = subprocess.run([sys.executable, "-m", "gradviz", "study", "--help"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120).stdout
    for name in STUDIES:
        assert name in help_text
    bad = subprocess.run([sys.executable, "-m", "gradviz", "study", "robustness", "--models", STD, "--n", "5",
                          "--norm", "l3", "--store", str(tmp_path / "s")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "norm must be one of" in bad.stderr


def test_the_cli_offers_each_study_only_the_options_it_takes():
    from gradviz.__main__ import build_parser

    parser = build_parser()
    for name, module in STUDIES.items():
        args = parser.parse_args(["study", name, "--models", STD])
        assert hasattr(args, "chunk") == module.STUDY.chunked, name
        assert hasattr(args, "write_cards") == hasattr(module, "write_card_metrics"), name
        assert args.split == module.STUDY.splits[0]
    assert not STUDIES["roar_kar"].STUDY.chunked and STUDIES["roar_kar"].STUDY.splits == ("test",)
    for extra in (["--chunk", "5"], ["--split", "train"]):  # roar_kar refuses both: the CLI does not offer them
        with pytest.raises(SystemExit):
            parser.parse_args(["study", "roar_kar", "--models", STD, *extra])
    assert {n for n, m in STUDIES.items() if hasattr(m, "write_card_metrics")} >= {"inequality", "alignment",
                                                                                     "roar_kar"}


def test_the_cli_writes_cards_with_the_command_that_made_the_numbers(tmp_path, monkeypatch, capsys):
    import json
    import shutil

    from gradviz.__main__ import main

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    card = zoo.get_card("squares/standard")
    pt = tmp_path / "models" / "copy.pt"
    pt.parent.mkdir()
    shutil.copy(card.path, pt)
    shutil.copy(str(card.path).replace(".pt", ".json"), pt.with_suffix(".json"))
    argv = ["study", "alignment", "--models", str(pt), "--dataset", "squares", "--n", "4", "--steps", "4", "2",
            "--chunk", "2", "--device", "cpu", "--store", str(tmp_path / "store"), "--write-cards"]
    assert main(argv) == 0
    assert "wrote metrics['alignment']" in capsys.readouterr().out
    entry = json.loads(pt.with_suffix(".json").read_text())["metrics"]["alignment"]
    assert entry["measured_by"] == "python -m gradviz " + " ".join(a for a in argv if a != "--write-cards")
    assert entry["n_images"] == 4 and entry["residual"]["steps"] == [4, 2]
