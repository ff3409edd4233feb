"""gradviz.studies.inequality beyond the stored run (tests/test_studies.py): the card entry
metrics["inequality"] in the format bench/inequality_checks.py wrote, one key per attribution
method, merged or replaced."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gradviz import zoo
from gradviz.studies import ChunkStore, inequality

STD, PGD = "mnist-5k/standard", "mnist-5k/pgd-linf"
TINY = dict(n=30, k=(0.01, 0.05), radii=(1, 2), n_pixels=2, device="cpu", chunk=15)


@pytest.fixture
def store(tmp_path):
    return ChunkStore(tmp_path / "store", read_only=[])


@pytest.fixture
def copy(tmp_path):
    """A copy of the shipped standard model's checkpoint and card (cards are written)."""
    card = zoo.get_card(STD)
    pt = tmp_path / "models" / "copy.pt"
    pt.parent.mkdir()
    shutil.copy(card.path, pt)
    shutil.copy(str(card.path).replace(".pt", ".json"), pt.with_suffix(".json"))
    return pt


def _entry(pt):
    return json.loads(pt.with_suffix(".json").read_text())["metrics"]["inequality"]


def test_card_metrics_keep_the_benchs_format(store, copy):
    shipped = zoo.get_card(STD).metrics.get("inequality")
    res = inequality.run([str(copy), PGD], method="gradient", store=store, **TINY)
    name = res.model_names[0]
    written = inequality.write_card_metrics(res, [name], measured_by="A")
    assert written == {name: copy.with_suffix(".json")}
    entry = _entry(copy)
    if shipped:  # the keys bench/inequality_checks.py wrote before it called the study
        assert set(entry) == set(shipped) - {"integrated_gradients"}
        assert set(entry["gradient"]) == set(shipped["gradient"])
    assert entry["measured_by"] == "A" and entry["split"] == "test" and entry["n_images"] == 30
    assert entry["n_common_correct"] == res.n_common and entry["k_fractions"] == [0.01, 0.05]
    assert entry["noise"].startswith("N(0, 1) added to the top-k features by signed attribution")
    g = entry["gradient"]
    assert g["mean_global_gini"] == round(float(np.mean(res.gini[name])), 3)
    assert g["mean_regional_gini_block4"] == round(float(np.mean(res.regional[name])), 3)
    assert g["inductive_noise_error_rate"] == [round(float(v), 4) for v in res.inductive[name]]
    assert g["random_noise_error_rate"] == [round(float(v), 4) for v in res.random[name]]
    assert "n_steps" not in g


def test_a_second_method_joins_the_entry_and_other_images_replace_it(store, copy):
    res = inequality.run([str(copy), PGD], method="gradient", store=store, **TINY)
    name = res.model_names[0]
    inequality.write_card_metrics(res, [name], measured_by="A")
    ig = inequality.run([str(copy), PGD], method="integrated_gradients", n_steps=4, store=store, **TINY)
    inequality.write_card_metrics(ig, [name], measured_by="B")
    entry = _entry(copy)
    assert list(entry)[-2:] == ["gradient", "integrated_gradients"] and entry["measured_by"] == "B"
    assert entry["gradient"]["measured_by"] == "A" and entry["integrated_gradients"]["n_steps"] == 4
    assert "measured_by" not in entry["integrated_gradients"]
    fewer = inequality.run([str(copy), PGD], method="gradient", store=store, **{**TINY, "n": 15})
    inequality.write_card_metrics(fewer, [name])
    entry = _entry(copy)
    assert "integrated_gradients" not in entry and entry["n_images"] == 15 and "measured_by" not in entry


def test_counts_given_as_k_are_written_as_fractions(store, copy):
    res = inequality.run([str(copy)], method="gradient", store=store, **{**TINY, "k": (8,)})
    inequality.write_card_metrics(res, measured_by="C")
    assert _entry(copy)["k_fractions"] == [8 / 784]
