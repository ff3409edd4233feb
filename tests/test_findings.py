"""gradviz.findings: the guidance's numbers come from the shipped cards, and its sentences
follow the numbers (a synthetic set of cards where the paper's order holds gets no "not
reproduced"); gradviz.alignment.background_share."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gradviz import findings
from gradviz.alignment import background_share
from gradviz.checkpoints import ModelCard

CARDS = Path(__file__).resolve().parent.parent / "assets" / "models" / "mnist-5k"


def card_metrics(name: str) -> dict:
    """metrics of a shipped mnist-5k card, read straight from its JSON file."""
    return json.loads((CARDS / f"{name}.json").read_text())["metrics"]


def shipped_alignment() -> dict[str, float]:
    out = {}
    for p in sorted(CARDS.glob("*.json")):
        a = json.loads(p.read_text())["metrics"].get("alignment")
        if a and (CARDS / f"{p.stem}.pt").is_file():
            out[p.stem] = a["mean_alpha_dx"]
    return out


def _needs_cards():
    if not (CARDS / "standard.json").is_file():
        pytest.skip("the shipped mnist-5k cards are missing")


# ------------------------------------------------------------------ from the real cards


def test_alignment_numbers_are_the_cards():
    _needs_cards()
    expected = shipped_alignment()
    got = findings.alignment_means("mnist-5k")
    assert got == pytest.approx(expected) and list(got.values()) == sorted(got.values(), reverse=True)
    text = findings.alignment_guidance("mnist-5k")
    for name, v in expected.items():
        assert f"`{name}` **{v:.3f}**" in text
    assert "0.575" in text and "0.169" in text  # the paper's, beside them
    std = expected["standard"]
    below = [n for n in ("pgd-linf", "trades", "agr") if n in expected and expected[n] <= std]
    if below:  # what the cards say today: the l_inf models below standard, and why
        assert "**Not reproduced:**" in text and all(f"`{n}`" in text.split("Not reproduced")[1] for n in below)
        assert "zero on the black background" in text


def test_inequality_numbers_are_the_cards():
    _needs_cards()
    text = findings.inequality_guidance("mnist-5k")
    for name in ("standard", "pgd-linf", "igd"):
        m = card_metrics(name)["inequality"]
        g = m["gradient"]
        assert f"`{name}` **{g['mean_global_gini']:.3f}**" in text
        j = len(m["k_fractions"]) - 1
        assert (f"`{name}` {100 * g['inductive_noise_error_rate'][j]:.1f} % / "
                f"{100 * g['random_noise_error_rate'][j]:.1f} %") in text
    assert "0.58 → 0.73" in text  # Duan et al.
    above = [n for n in ("standard", "pgd-linf", "igd")
             if card_metrics(n)["inequality"]["gradient"]["random_noise_error_rate"][-1]
             > card_metrics(n)["inequality"]["gradient"]["inductive_noise_error_rate"][-1]]
    if len(above) == 3:
        assert "breaks every model more than noise on its top pixels" in text


def test_robustness_and_pag_numbers_are_the_cards():
    _needs_cards()
    text = findings.robustness_guidance("mnist-5k")
    for name in ("standard", "pgd-linf"):
        m = card_metrics(name)
        assert f"`{name}` {100 * m['clean_accuracy']:.1f} % clean, **{100 * m['robust_accuracy']:.1f} %**" in text
        assert f"ε50 {m['curve']['eps50']:.3f}" in text
    pag = findings.pag_guidance("mnist-5k")
    for name in ("standard", "pag-cm", "pgd-l2"):
        for entry in card_metrics(name)["other_attacks"]:
            assert f"{100 * entry['robust_accuracy']:.1f} %" in pag


def test_no_measurements_for_a_dataset_without_them():
    assert findings.alignment_guidance("no-such-dataset") is None
    assert findings.inequality_guidance("no-such-dataset") is None
    assert findings.pag_guidance("no-such-dataset") is None
    assert findings.robustness_guidance("no-such-dataset") is None


# ------------------------------------------------------------- sentences follow numbers


def _card(name, method, alpha=None, norm=None, eps=0.0, **metrics):
    if alpha is not None:
        metrics["alignment"] = {"mean_alpha_dx": alpha, "n_images": 100}
    return ModelCard(name=f"toy/{name}", dataset="toy", arch="x", method=method, eps=eps, norm=norm,
                     metrics=metrics, shipped=True)


def test_alignment_sentences_follow_the_numbers(monkeypatch):
    def cards(alphas):
        c = {"standard": _card("standard", "standard", alphas[0]),
             "pgd-linf": _card("pgd-linf", "pgd", alphas[1], "linf", 0.3),
             "lalpha": _card("lalpha", "lalpha", alphas[2])}
        monkeypatch.setattr(findings, "shipped_cards", lambda dataset: c)

    cards((0.1, 0.2, 0.5))  # the paper's order
    text = findings.alignment_guidance("toy")
    assert "Not reproduced" not in text and "L_α is the most aligned here too (0.500" in text
    assert "above standard (0.100), as the paper found: `pgd-linf` 0.200" in text
    cards((0.3, 0.2, 0.25))  # PGD below standard, L_alpha not the top
    text = findings.alignment_guidance("toy")
    assert "**Not reproduced:** `pgd-linf` (0.200) lies *below* `standard` (0.300)" in text
    assert "zero on the black background" in text
    assert "L_α (0.250) is not the most aligned here: `standard` (0.300) is." in text


def test_noise_comparison():
    ks = [0.01, 0.1]
    where = findings.noise_comparison(ks, {"a": [0.1, 0.2], "b": [0.0, 0.1], "c": [0.1, 0.0], "d": [0.1, 0.1],
                                           "e": [math.nan, math.nan]},
                                      {"a": [0.0, 0.1], "b": [0.1, 0.3], "c": [0.0, 0.1], "d": [0.1, 0.1],
                                       "e": [0.1, 0.1]})
    assert where == {"a": "above", "b": "below", "c": "mixed", "d": "equal", "e": "unknown"}
    with pytest.raises(ValueError, match="rates"):
        findings.noise_comparison(ks, {"a": [0.1]}, {"a": [0.1, 0.2]})


def test_target_eps_summary():
    text = findings.target_eps_summary({"mnist-5k/standard": [2.0, 1.0, 3.0], "mnist-5k/pgd-l2": [4.0, math.nan]},
                                       eps_max=10)
    assert text == ("Smallest l2 ε that reaches a target: `standard` median ε **2** (1 to 3); "
                    "`pgd-l2` median ε **4** (4 to 4), 1 not reached by ε 10.")


def test_below_standard_note_names_the_linf_models_by_their_cards():
    _needs_cards()
    note = findings.below_standard_note({"mnist-5k/standard": 0.3, "mnist-5k/pgd-linf": 0.2,
                                         "mnist-5k/pgd-l2": 0.1, "mnist-5k/igd": 0.05})
    assert note.startswith(" Here `pgd-linf` lies at or below `standard` (0.300)")  # pgd-l2 is l_2; igd copies
    assert findings.below_standard_note({"mnist-5k/standard": 0.3, "mnist-5k/pgd-linf": 0.4}) == ""
    assert findings.below_standard_note({"mnist-5k/pgd-linf": 0.4}) == ""


# ----------------------------------------------------------------------- background share


def test_background_share():
    x = torch.zeros(3, 1, 4, 4)
    x[:, :, 1:3, 1:3] = 1.0  # 4 stroke pixels, 12 background
    a = torch.ones(3, 1, 4, 4)
    a[1, :, 1:3, 1:3] = 0  # all on the background
    a[2] = 0  # no gradient at all
    share = background_share(a, x)
    assert share.dtype == torch.float64
    torch.testing.assert_close(share, torch.tensor([0.75, 1.0, 0.0], dtype=torch.float64))
    assert background_share(-a, x.numpy()).tolist() == share.tolist()  # signs and arrays
    rgb = torch.zeros(1, 3, 2, 2)
    rgb[0, 1, 0, 0] = 0.5  # a pixel with one bright channel is not background
    torch.testing.assert_close(background_share(torch.ones(1, 3, 2, 2), rgb),
                               torch.tensor([0.75], dtype=torch.float64))
    assert background_share(torch.ones(1, 3, 2, 2), rgb, level=0.6).item() == 1.0
    with pytest.raises(ValueError, match="same shape"):
        background_share(a[:2], x)
    with pytest.raises(ValueError, match="level"):
        background_share(a, x, level=1.0)
    with pytest.raises(ValueError, match="NaN"):
        background_share(a * float("nan"), x)
