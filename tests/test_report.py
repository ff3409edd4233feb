"""The report (gradviz.report, ``python -m gradviz report``): findings computed from the
shipped cards and stored studies, figures written as PNG/PDF, report.md that links them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gradviz import findings as fnd
from gradviz import report
from gradviz.__main__ import main
from gradviz.viz.export import static_export_available


def _by_claim(found, fragment):
    hits = [f for f in found if fragment in f.claim]
    assert len(hits) == 1, [f.claim for f in found]
    return hits[0]


def test_findings_follow_the_cards(shipped_models):
    found = report.findings("mnist-5k")
    assert {f.paper for f in found} >= {"bigolin", "ganz", "duan", "agr"}
    assert all(f.verdict in report.VERDICTS for f in found)
    grad = fnd.inequality_numbers("mnist-5k", "gradient")
    gini = _by_claim(found, "more unequal (higher Gini)")
    g0, g1 = grad["standard"]["mean_global_gini"], grad["pgd-linf"]["mean_global_gini"]
    assert f"{g0:.3f}" in gini.measured and f"{g1:.3f}" in gini.measured
    assert gini.verdict == ("holds" if g1 > g0 else "does not hold")
    la = _by_claim(found, "(L_α)")
    means = fnd.alignment_means("mnist-5k")
    assert la.verdict == ("holds" if max(means, key=means.get) == "lalpha" else "does not hold")
    # without trade-off tables, Kim et al.'s finding is "not measured", never guessed
    assert [f.verdict for f in found if f.paper == "kim"] == ["not measured"]


def test_kim_verdicts_count_the_models_that_beat_the_standard_one():
    t = pd.DataFrame({"model": ["s", "a", "b"], "eps": [0.0, 0.1, 0.2], "clean_accuracy": [0.99, 0.98, 0.97],
                      "manifold": [6.0, 5.0, 6.5], "alpha_dx": [0.2, 0.3, 0.4], "roar_area": [0.8, 0.9, 0.95]})
    found = report.findings("mnist-5k", {"linf": t})
    assert _by_claim(found, "Clean accuracy falls").verdict == "holds"
    manifold = _by_claim(found, "closer to the data manifold")
    assert manifold.verdict == "holds partly" and "1 of 2" in manifold.note
    assert _by_claim(found, "more interpretable").verdict == "holds"
    assert _by_claim(found, "ROAR").verdict == "does not hold"
    flat = t.assign(clean_accuracy=[0.97, 0.98, 0.99])
    assert _by_claim(report.findings("mnist-5k", {"linf": flat}), "Clean accuracy falls").verdict == "does not hold"


def test_a_finding_refuses_an_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        report.Finding("kim", "c", "p", "m", "probably")


def test_models_table_carries_pgd_and_autoattack(shipped_models):
    table = report.models_table("mnist-5k").set_index("model")
    for name in shipped_models:
        card = fnd.shipped_cards("mnist-5k")[name.split("/")[-1]]
        row = table.loc[name.split("/")[-1]]
        assert row["pgd40"] == pytest.approx(card.metrics["robust_accuracy"])
        aa = card.metrics.get("autoattack")
        assert (math.isnan(row["autoattack"]) if aa is None else row["autoattack"] == aa["robust_accuracy"])


def test_build_rejects_an_unknown_figure():
    with pytest.raises(ValueError, match="unknown figures"):
        report.build("mnist-5k", include=("gradients", "nonsense"))


@pytest.mark.skipif(not static_export_available(), reason="kaleido or a Chromium is missing")
def test_cli_report_writes_figures_and_markdown_from_stored_results(tmp_path, monkeypatch, capsys, shipped_models):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))  # only the shipped (stored) study results
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--only", "tradeoff", "agr", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"tradeoff_alpha_dx.png", "tradeoff_alpha_dx.pdf", "tradeoff_manifold.png", "agr_diagnostics.png",
            "agr_diagnostics.pdf", "report.md"} <= names
    assert (out / "tradeoff_alpha_dx.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "agr_diagnostics.pdf").read_bytes()[:5] == b"%PDF-"
    md = (out / "report.md").read_text()
    assert "![tradeoff_alpha_dx](tradeoff_alpha_dx.png)" in md and "![agr_diagnostics](agr_diagnostics.png)" in md
    for paper in ("Bigolin Lanfredi", "Ganz", "Duan", "Kim", "AGR"):
        assert paper in md
    # the trade-off tables came from the stored studies: Kim et al.'s findings are measured
    kim = md.split("## Kim")[1].split("## ")[0]
    assert "not measured" not in kim and "closer to the data manifold" in kim
    assert "| `pgd-linf` |" in md  # the models table
    assert "findings:" in printed and "wrote" in printed
    assert not (tmp_path / "home" / "studies").exists() or not any((tmp_path / "home" / "studies").rglob("*.npz"))


def test_the_studies_of_the_report_ship_so_a_fresh_clone_computes_none(tmp_path, monkeypatch, shipped_models):
    from gradviz.studies import alignment, inequality

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))  # an empty user store: only assets/studies
    names = [f"mnist-5k/{n}" for n in report.ALIGNMENT_MODELS]
    res = alignment.run(names, n=report.ALIGNMENT_N, device="cpu", compute_missing=False)
    assert res.loaded == len(names) and res.computed == 0
    names = [f"mnist-5k/{n}" for n in report.INEQUALITY_MODELS]
    res = inequality.run(names, n=report.INEQUALITY_N, device="cpu", method="gradient", compute_missing=False)
    assert res.computed == 0
