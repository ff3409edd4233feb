"""ROAR and KAR (gradviz.studies.roar_kar): the masking on hand-made maps (exactly which pixels,
how many per q, ties, channels), ROAR/KAR complementarity, the random baseline's seed, and a
tiny stored end-to-end run (read back without retraining, resumed unit by unit, the baseline
shared between models, the table, the npz and the cards)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch

from gradviz import zoo
from gradviz.attribution import attribute
from gradviz.data import load_dataset
from gradviz.studies import STUDIES, ChunkStore, NotStored, roar_kar
from gradviz.studies.roar_kar import MODES, mask_top, pixel_count, random_scores, top_mask

STD, PGD = "mnist-5k/standard", "mnist-5k/pgd-linf"
#: The tiny run: 32 training images (one batch), 1 epoch, 2 fractions, 12 test images.
TINY = dict(n=12, fractions=(0.3, 0.7), n_train=32, epochs=1, batch_size=32, device="cpu")


@pytest.fixture
def store(tmp_path):
    return ChunkStore(tmp_path / "store", read_only=[])


# --------------------------------------------------------------------------- masking


def _hand_map() -> torch.Tensor:
    """(1, 4, 5) scores: a known permutation of 0..19, so the top k pixels are known."""
    order = torch.tensor([7, 19, 3, 12, 0, 15, 8, 1, 18, 10, 5, 13, 2, 17, 9, 4, 16, 11, 6, 14], dtype=torch.float32)
    return order.reshape(1, 4, 5)


def test_pixel_count_rounds_to_nearest():
    assert [pixel_count(q, 784) for q in roar_kar.DEFAULT_FRACTIONS] == [78, 235, 392, 549, 706]
    assert [pixel_count(q, 20) for q in roar_kar.DEFAULT_FRACTIONS] == [2, 6, 10, 14, 18]
    assert pixel_count(0.29, 100) == 29  # 0.29 * 100 = 28.999...: a floor would give 28
    assert pixel_count(0.0, 10) == 0 and pixel_count(1.0, 10) == 10
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            pixel_count(bad, 10)


def test_roar_replaces_exactly_the_top_pixels_of_a_hand_made_map():
    scores = _hand_map()
    x = torch.linspace(0.05, 0.95, 20).reshape(1, 1, 4, 5)
    flat = scores.reshape(-1)
    for q, k in zip(roar_kar.DEFAULT_FRACTIONS, (2, 6, 10, 14, 18)):
        top = set(torch.argsort(flat, descending=True)[:k].tolist())  # the k largest scores (all distinct)
        out = mask_top(x, scores, q, "roar", fill=0.5)
        changed = {i for i in range(20) if out.reshape(-1)[i] == 0.5}
        assert changed == top and len(changed) == k
        kept = [i for i in range(20) if i not in top]
        assert torch.equal(out.reshape(-1)[kept], x.reshape(-1)[kept])
        kar = mask_top(x, scores, q, "kar", fill=0.5)
        assert {i for i in range(20) if kar.reshape(-1)[i] == 0.5} == set(range(20)) - top
    # q = 10 %: the two highest scores, 19 at (0, 1) and 18 at (1, 3).
    expected = torch.zeros(1, 1, 4, 5, dtype=torch.bool)
    expected[0, 0, 0, 1] = expected[0, 0, 1, 3] = True
    assert torch.equal(top_mask(scores, 0.1), expected)
    assert torch.equal(top_mask(scores.unsqueeze(1), 0.1), expected)


def test_ties_go_to_the_first_pixels_in_row_major_order():
    scores = torch.zeros(2, 3, 4)
    scores[1, 2, 3] = 1.0  # one clear winner, then ties
    mask = top_mask(scores, 0.25)  # round(3) pixels
    assert mask[0, 0].reshape(-1).nonzero().flatten().tolist() == [0, 1, 2]
    assert mask[1, 0].reshape(-1).nonzero().flatten().tolist() == [0, 1, 11]


def test_all_channels_of_a_pixel_take_their_channel_fill():
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.5
    scores = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(2))
    fill = torch.tensor([0.1, 0.2, 0.3])
    out = mask_top(x, scores, 0.5, "roar", fill)
    top = top_mask(scores, 0.5).expand_as(x)
    assert torch.equal(out[~top], x[~top])
    for c in range(3):
        assert torch.all(out[:, c][top[:, c]] == fill[c])
    assert (out != x).sum() == 2 * 3 * 10  # 10 of 20 pixels per image, every channel
    assert x.min() >= 0.5  # the input is left alone


def test_roar_and_kar_are_complementary():
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.5  # never equal to fill
    scores = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(4))
    for q in (0.1, 0.3, 0.5, 0.7, 0.9):
        roar, kar = mask_top(x, scores, q, "roar", 0.0), mask_top(x, scores, q, "kar", 0.0)
        removed, kept = roar != x, kar == x
        assert torch.equal(removed, kept)  # what ROAR removes is exactly what KAR keeps
        assert torch.equal(roar + kar, x)  # every pixel is original in exactly one (fill 0)
        per_image = removed[:, 0].reshape(3, -1).sum(1)
        assert per_image.tolist() == [pixel_count(q, 36)] * 3


def test_masking_refuses_bad_input():
    x, scores = torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        mask_top(x, scores, 0.5, "remove", 0.0)
    with pytest.raises(ValueError, match="do not match"):
        mask_top(x, torch.rand(2, 4, 5), 0.5, "roar", 0.0)
    with pytest.raises(ValueError, match="finite"):
        mask_top(x, torch.full((2, 4, 4), float("nan")), 0.5, "roar", 0.0)
    with pytest.raises(ValueError, match="fill"):
        mask_top(x, scores, 0.5, "roar", [0.1, 0.2])


def test_the_random_baseline_depends_on_its_seed_only():
    a, b = random_scores(5, 28, 28, seed=0), random_scores(5, 28, 28, seed=0)
    assert torch.equal(a, b)
    assert torch.equal(top_mask(a, 0.3), top_mask(b, 0.3))
    other = random_scores(5, 28, 28, seed=1)
    assert not torch.equal(top_mask(a, 0.3), top_mask(other, 0.3))
    assert torch.equal(random_scores(2, 28, 28, seed=0), a[:2])  # a prefix of a larger draw


def test_the_ranking_is_the_magnitude_of_the_channel_summed_predicted_class_loss_gradient():
    model = zoo.load_model(STD)
    x = load_dataset("mnist-5k", "test").x[:6]
    with torch.no_grad():
        pred = model(x).argmax(1)
    expected = attribute(model, x, pred, "gradient", objective="loss").sum(1).abs()
    torch.testing.assert_close(roar_kar.attribution_scores(model, x, batch_size=4), expected)


# --------------------------------------------------------------------------- the study


def test_a_tiny_run_is_stored_read_back_resumed_and_shares_its_baseline(store):
    messages = []
    res = roar_kar.run([STD], store=store, progress=lambda f, m: messages.append((f, m)), **TINY)
    n_units = len(MODES) * 2
    assert (res.computed, res.loaded) == (2 * n_units, 0)  # the model's units and the baseline's
    assert any(m.startswith(f"{STD}: ROAR q 30 %, epoch 1/1") for _, m in messages)
    assert any(m.startswith("random: KAR q 70 %, epoch 1/1") for _, m in messages)
    assert all(0.0 <= f <= 1.0 for f, _ in messages)

    again = roar_kar.run([STD], store=store, **TINY)
    assert (again.computed, again.loaded) == (0, 2 * n_units)
    for m in MODES:
        np.testing.assert_array_equal(again.per_image[STD][m], res.per_image[STD][m])
        np.testing.assert_array_equal(again.baseline[m], res.baseline[m])
    with pytest.raises(NotStored):
        roar_kar.run([PGD], store=store, compute_missing=False, **TINY)

    # A unit lost (as after a kill) is retrained alone, with the same numbers.
    unit = sorted((store.root / "roar_kar").glob("*/*.npz"))[0]
    unit.unlink()
    resumed = roar_kar.run([STD], store=store, **TINY)
    assert (resumed.computed, resumed.loaded) == (1, 2 * n_units - 1)
    for m in MODES:
        np.testing.assert_array_equal(resumed.per_image[STD][m], res.per_image[STD][m])
        np.testing.assert_array_equal(resumed.baseline[m], res.baseline[m])

    # Another model: only its own units are retrained, the baseline is read back.
    both = roar_kar.run([STD, PGD], store=store, **TINY)
    assert (both.computed, both.loaded) == (n_units, 2 * n_units)

    table = both.table()
    assert list(table["model"]) == [STD, PGD, "random"] and list(table["kind"]) == ["model", "model", "baseline"]
    assert list(table.columns) == ["model", "kind", "roar@30%", "roar@70%", "kar@30%", "kar@70%",
                                   "roar_area", "kar_area", "roar_gain", "kar_gain"]
    row = table.iloc[0]
    acc = both.per_image[STD]["roar"].mean(axis=0)
    assert row["roar@30%"] == pytest.approx(acc[0]) and row["roar_area"] == pytest.approx(acc.mean())
    base = table.iloc[2]
    assert base["roar_gain"] == 0 and base["kar_gain"] == 0
    assert row["kar_gain"] == pytest.approx(row["kar_area"] - base["kar_area"])
    with np.load(io.BytesIO(both.to_npz())) as f:
        assert f["accuracy"].shape == (2, 2, 2) and f["correct"].shape == (2, 2, 12, 2)
        assert f["baseline_accuracy"].shape == (2, 2) and f["area"].shape == (2, 2)
        assert list(f["model_names"]) == [STD, PGD] and list(f["modes"]) == ["roar", "kar"]
        settings = json.loads(str(f["settings"]))
    assert settings["recipe"]["epochs"] == 1 and settings["recipe"]["n_train"] == 32
    assert settings["n_images"] == 12


def test_other_settings_are_other_units_and_bad_ones_are_refused(store):
    roar_kar.run([STD], store=store, **{**TINY, "fractions": (0.5,)})
    more = roar_kar.run([STD], store=store, **{**TINY, "fractions": (0.5, 0.9)})
    assert (more.computed, more.loaded) == (4, 4)  # a new q: only its units
    seeded = roar_kar.run([STD], store=store, **{**TINY, "fractions": (0.5,), "random_seed": 1})
    assert (seeded.computed, seeded.loaded) == (2, 2)  # another random seed: only the baseline's
    for bad in (dict(fractions=(0.0, 0.5)), dict(fractions=(1.0,)), dict(epochs=0)):
        with pytest.raises(ValueError):
            roar_kar.run([STD], store=store, **{**TINY, **bad})
    with pytest.raises(ValueError, match="split"):
        roar_kar.run([STD], store=store, split="train", **TINY)
    with pytest.raises(TypeError):
        roar_kar.run([STD], store=store, shift=3, **TINY)


def test_write_card_metrics_stores_the_numbers_in_the_card(store, tmp_path):
    card = zoo.get_card(STD)
    pt = tmp_path / "models" / "copy.pt"
    pt.parent.mkdir()
    shutil.copy(card.path, pt)
    shutil.copy(str(card.path).replace(".pt", ".json"), pt.with_suffix(".json"))
    res = roar_kar.run([str(pt)], store=store, **{**TINY, "fractions": (0.5,)})
    name = res.model_names[0]
    written = roar_kar.write_card_metrics(res)
    assert list(written) == [name] and written[name] == pt.with_suffix(".json")
    metrics = json.loads(pt.with_suffix(".json").read_text())["metrics"]
    entry = metrics["roar_kar"]
    assert entry["fractions"] == [0.5]
    assert entry["accuracy"]["roar"] == [round(float(res.per_image[name]["roar"].mean()), 4)]
    assert set(entry["baseline"]["accuracy"]) == {"roar", "kar"} and entry["baseline"]["seed"] == 0
    assert entry["recipe"]["epochs"] == 1 and entry["recipe"]["lr"] == roar_kar.Settings().lr
    assert "clean_accuracy" in metrics  # the card's other numbers stay
    with open(pt, "ab") as f:  # the checkpoint changes: its old numbers are refused
        f.write(b"\0")
    with pytest.raises(ValueError, match="changed"):
        roar_kar.write_card_metrics(res)


def test_the_study_is_registered():
    assert STUDIES["roar_kar"] is roar_kar
    assert roar_kar.Settings().recipe()["epochs"] == roar_kar.Settings().epochs
