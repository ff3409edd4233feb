"""gradviz.studies.alignment beyond the stored run (tests/test_studies.py): the per-image
counterpart image_alignment (the Alignment page's figure) against the study and the library,
and the card entry metrics["alignment"] in the format bench/alignment_checks.py wrote."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from gradviz import alignment as al
from gradviz import generative, zoo
from gradviz.data import load_dataset
from gradviz.studies import ChunkStore, alignment

STEPS = (4, 2)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh $GRADVIZ_HOME (the residual store) for each test."""
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def store(tmp_path):
    return ChunkStore(tmp_path / "store", read_only=[])


@pytest.fixture(scope="module")
def squares():
    names = [c.name for c in zoo.list_models("squares")]
    if not names:
        pytest.skip("no shipped squares models")
    return {n: zoo.load_model(n) for n in names}, load_dataset("squares", "test"), generative.load_generator("squares")


def test_image_alignment_is_the_studys_alpha_dx_on_the_same_images(home, store, squares):
    models, data, G = squares
    names = list(models)
    res = alignment.run(names, dataset="squares", n=6, steps=STEPS, generator=G, device="cpu", store=store, chunk=3)
    idx = [5, 0, 3]
    ia = alignment.image_alignment(models, idx, names[0], generator=G, dataset="squares", data=data, steps=STEPS)
    assert ia.indices.tolist() == idx and ia.labels.tolist() == data.y[idx].tolist()
    np.testing.assert_array_equal(ia.targets, 1 - ia.labels)  # two classes: the closest is the other one
    for n, model in models.items():
        np.testing.assert_array_equal(ia.closest[n], res.targets[n][idx])
        # the same residuals (one store) and Eq. 8: the study's numbers for these images
        np.testing.assert_allclose(ia.alpha_dx[n], res.alpha_dx[n][idx], atol=1e-5)
        g = al.margin_gradient(model, data.x[idx], data.y[idx], torch.as_tensor(ia.targets))
        np.testing.assert_allclose(ia.gradients[n], g.numpy(), atol=1e-6)
    assert ia.x.shape == ia.dx_hat.shape == ia.dx_true.shape == (3, *data.x.shape[1:])
    np.testing.assert_allclose(ia.cos_true, al.cosine(torch.from_numpy(ia.dx_hat), data.extras["residual"][idx]),
                               atol=1e-6)
    np.testing.assert_allclose(ia.x + ia.dx_hat, np.clip(ia.x + ia.dx_hat, 0, 1))  # G(z*, c) is an image


def test_image_alignment_toward_a_fixed_class_and_its_errors(home, squares):
    models, data, G = squares
    zeros = [int(i) for i in torch.nonzero(data.y == 0).flatten()[:2]]
    ia = alignment.image_alignment(models, zeros, 1, generator=G, dataset="squares", data=data, steps=STEPS)
    assert ia.targets.tolist() == [1, 1]
    for bad, match in (([0, len(data.y)], "indices must lie in"), ([], "at least one image")):
        with pytest.raises(ValueError, match=match):
            alignment.image_alignment(models, bad, 1, generator=G, dataset="squares", data=data, steps=STEPS)
    with pytest.raises(ValueError, match="not among the compared models"):
        alignment.image_alignment(models, zeros, "squares/other", generator=G, dataset="squares", data=data,
                                  steps=STEPS)
    with pytest.raises(ValueError, match="target equals the label"):
        alignment.image_alignment(models, zeros, 0, generator=G, dataset="squares", data=data, steps=STEPS)
    with pytest.raises(ValueError, match="steps"):
        alignment.image_alignment(models, zeros, 1, generator=G, dataset="squares", data=data, steps=(0, 0))


def test_card_metrics_keep_the_benchs_format_and_refuse_a_changed_checkpoint(home, store, tmp_path, squares):
    card = zoo.get_card("squares/standard")
    shipped = (card.metrics or {}).get("alignment")
    pt = tmp_path / "models" / "copy.pt"
    pt.parent.mkdir()
    shutil.copy(card.path, pt)
    shutil.copy(str(card.path).replace(".pt", ".json"), pt.with_suffix(".json"))
    res = alignment.run([str(pt)], dataset="squares", n=6, steps=STEPS, device="cpu", store=store, chunk=3)
    name = res.model_names[0]
    written = alignment.write_card_metrics(res, measured_by="python -m gradviz study alignment ...")
    assert written == {name: pt.with_suffix(".json")}
    metrics = json.loads(pt.with_suffix(".json").read_text())["metrics"]
    entry = metrics["alignment"]
    if shipped:  # the keys bench/alignment_checks.py wrote before it called the study
        assert set(entry) == set(shipped) and set(entry["residual"]) == set(shipped["residual"])
    assert entry["measured_by"] == "python -m gradviz study alignment ..." and entry["n_images"] == 6
    assert entry["mean_alpha_dx"] == round(float(np.mean(res.alpha_dx[name])), 4)
    assert entry["sem_alpha_dx"] == round(float(np.std(res.alpha_dx[name], ddof=1) / np.sqrt(6)), 4)
    assert entry["mean_alpha_x_centered"] == round(float(np.mean(res.alpha_x_centered[name])), 4)
    assert entry["mean_alpha_dx_true_residual"] == round(float(np.mean(res.alpha_true[name])), 4)
    assert entry["mean_cos_dx_hat_dx_true"] == round(float(np.mean(res.cos_true)), 4)
    assert entry["residual"] == {"steps": list(STEPS), "lr": res.settings["lr"],
                                 "lambda_z": res.settings["lambda_z"], "generator": res.settings["generator"]}
    assert "clean_accuracy" in metrics  # the card's other numbers stay
    # alpha_x on the [-1, 1] scale and the clean accuracy are the library's
    model, data = zoo.load_model(str(pt)), load_dataset("squares", "test")
    np.testing.assert_allclose(res.alpha_x_centered[name], al.alpha_x(model, data.x[:6], data.y[:6], centered=True),
                               atol=1e-6)
    assert res.clean_accuracy[name] == pytest.approx(float((model(data.x[:6]).argmax(1) == data.y[:6]).float().mean()))
    with open(pt, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="changed"):
        alignment.write_card_metrics(res)
