"""The AutoAttack study (gradviz.studies.autoattack) and ``eval --autoattack``.

On a linear model the exact l_inf robust accuracy is computable: the logit margin
z_y - z_j is linear in x, so its minimum over the eps-ball intersected with the [0, 1] box is
reached pixel by pixel at an end of [max(0, x - eps), min(1, x + eps)]. AutoAttack must
reach it (it breaks no image that is provably robust, and misses none that is provably
breakable), and PGD can only be weaker or equal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradviz.__main__ import main
from gradviz.data import load_dataset
from gradviz.studies import STUDIES, ChunkStore, autoattack

EPS = 0.1


@pytest.fixture(scope="module")
def linear_model() -> nn.Module:
    """A multinomial logistic regression on mnist-5k, trained for a few hundred steps."""
    torch.manual_seed(0)
    train = load_dataset("mnist-5k", "train")
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(300):
        i = torch.randint(0, len(train.y), (128,))
        loss = nn.functional.cross_entropy(model(train.x[i]), train.y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def exact_linf_robust(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float) -> np.ndarray:
    """(N,) bool: correct and no x' in the eps-ball and the box with another class ahead."""
    lin = model[1]
    w, b = lin.weight.detach(), lin.bias.detach()
    flat = x.flatten(1)
    lo, hi = (flat - eps).clamp(0, 1), (flat + eps).clamp(0, 1)
    robust = model(x).argmax(1) == y
    for j in range(w.shape[0]):
        d = w[y] - w[j]  # (N, D): margin z_y - z_j = d . x + (b_y - b_j)
        worst = torch.where(d > 0, lo, hi)  # the pixel values that lower the margin most
        margin = (d * worst).sum(1) + b[y] - b[j]
        robust &= (j == y) | (margin > 0)
    return robust.numpy()


def test_autoattack_reaches_the_exact_robust_accuracy_of_a_linear_model(linear_model, tmp_path):
    data = load_dataset("mnist-5k", "test")
    n = 60
    res = autoattack.run([linear_model], n=n, eps=EPS, store=ChunkStore(tmp_path), chunk=30, device="cpu")
    name = res.model_names[0]
    exact = exact_linf_robust(linear_model, data.x[:n], data.y[:n], EPS)
    robust = res.per_image[name]["robust"]
    assert 0 < exact.sum() < n  # the radius leaves some images robust and breaks others
    assert not (robust & ~exact).any(), "AutoAttack left images robust that a linear attack breaks"
    assert not (~robust & exact).any(), "AutoAttack broke provably robust images"
    row = res.table().iloc[0]
    assert row["autoattack"] <= row["pgd40"]
    assert row["autoattack"] == pytest.approx(exact.mean())
    # every adversarial example lies in the eps-ball; none where nothing was broken
    broken = res.per_image[name]["broken_by"] >= 0
    assert (res.per_image[name]["linf"][broken] <= EPS + 1e-5).all()
    assert (res.per_image[name]["linf"][~broken] == 0).all()
    # the accuracy after each attack never rises, and ends at the robust accuracy
    after = res.after_each(name)
    steps = [after["clean"]] + [after[a] for a in autoattack.STANDARD_ATTACKS]
    assert steps == sorted(steps, reverse=True) and steps[-1] == pytest.approx(robust.mean())


def test_stored_chunks_are_read_back_and_a_larger_n_reuses_them(linear_model, tmp_path):
    store = ChunkStore(tmp_path)
    first = autoattack.run([linear_model], n=20, eps=EPS, attacks=("apgd-ce",), store=store, chunk=10, device="cpu")
    again = autoattack.run([linear_model], n=30, eps=EPS, attacks=("apgd-ce",), store=store, chunk=10, device="cpu")
    assert (first.computed, again.computed, again.loaded) == (2, 1, 2)
    name = first.model_names[0]
    np.testing.assert_array_equal(again.per_image[name]["broken_by"][:20], first.per_image[name]["broken_by"])
    assert first.card_metrics(name)["attack"]["version"] == "subset"


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="l1"), "norm"),
    (dict(eps=0.0), "eps"),
    (dict(eps=float("nan")), "eps"),
    (dict(eps=1.5), "eps"),
    (dict(attacks=("apgd-t", "apgd-ce")), "order"),
    (dict(attacks=("pgd",)), "attacks"),
    (dict(attacks=()), "attacks"),
])
def test_bad_settings_are_refused_before_any_work(linear_model, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        autoattack.run([linear_model], n=4, store=ChunkStore(tmp_path), device="cpu", **kwargs)


def test_the_study_is_registered_for_the_command_line():
    assert STUDIES["autoattack"] is autoattack


def test_cli_eval_autoattack_writes_the_card_beside_pgd(tmp_path, monkeypatch, capsys):
    from gradviz import zoo
    from tests.helpers import save_random_user_model

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    save_random_user_model(tmp_path, metrics={"note": "kept"})
    assert main(["eval", "mnist-5k/rand", "--autoattack", "--aa-attacks", "apgd-ce", "--limit", "12", "--write",
                 "--device", "cpu"]) == 0
    metrics = zoo.get_card("mnist-5k/rand").metrics
    aa = metrics["autoattack"]
    assert aa["attack"]["attacks"] == ["apgd-ce"] and aa["attack"]["version"] == "subset"
    assert aa["attack"]["eps"] == 0.3 and aa["attack"]["norm"] == "linf" and aa["n_images"] == 12
    assert 0 <= aa["robust_accuracy"] <= aa["after_each"]["clean"] <= 1
    assert aa["measured_by"].startswith("python -m gradviz eval mnist-5k/rand --autoattack")
    assert metrics["note"] == "kept" and "robust_accuracy" in metrics
    assert '"autoattack"' in capsys.readouterr().out


def test_the_model_table_shows_autoattack_beside_pgd():
    from gradviz import zoo

    card = zoo.ModelCard(name="mnist-5k/x", dataset="mnist-5k", arch="small-cnn", method="pgd", metrics={
        "robust_accuracy": 0.883, "attack": {"name": "PGD", "norm": "linf", "eps": 0.3, "steps": 40},
        "autoattack": {"robust_accuracy": 0.8391, "n_images": 1000,
                       "attack": {"name": "AutoAttack", "version": "standard", "norm": "linf", "eps": 0.3}}})
    row = zoo.card_summary(card)
    assert (row["robust %"], row["AutoAttack %"]) == (88.3, 83.9)
    assert row["AutoAttack"] == "standard linf eps 0.3, 1000 images"
    bare = zoo.card_summary(zoo.ModelCard(name="mnist-5k/y", dataset="mnist-5k", arch="small-cnn", method="standard"))
    assert bare["AutoAttack %"] is None and bare["AutoAttack"] == ""
