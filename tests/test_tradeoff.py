"""The trade-off table (gradviz.studies.tradeoff) and its figure (gradviz.viz.tradeoff)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gradviz import zoo
from gradviz.studies import ChunkStore, robustness
from gradviz.studies import tradeoff
from gradviz.viz.tradeoff import MEASURE_TITLES, tradeoff_figure


def test_a_family_is_standard_then_the_norms_pgd_models_in_ascending_eps():
    for norm in ("linf", "l2"):
        fam = tradeoff.family("mnist-5k", norm)
        assert fam[0].name == "mnist-5k/standard"
        assert all(c.method == "pgd" and c.norm == norm for c in fam[1:])
        eps = [c.eps for c in fam]
        assert eps == sorted(eps) and eps[0] == 0 and len(set(eps)) == len(eps)
    assert "mnist-5k/pgd-linf" in [c.name for c in tradeoff.family("mnist-5k", "linf")]
    with pytest.raises(ValueError, match="norm"):
        tradeoff.family("mnist-5k", "l1")


def test_measures_are_nan_where_nothing_is_stored_and_read_where_it_is(tmp_path):
    store = ChunkStore(tmp_path, read_only=[])
    cards = [zoo.get_card("mnist-5k/standard"), zoo.get_card("mnist-5k/pgd-linf")]
    table = tradeoff.measures(cards, store=store, include=("gini",))
    assert list(table["model"]) == ["mnist-5k/standard", "mnist-5k/pgd-linf"]
    assert table["gini"].isna().all()
    assert table["clean_accuracy"].tolist() == [c.metrics["clean_accuracy"] for c in cards]
    # a stored inequality result at the trade-off's settings is read back
    spec = tradeoff.MEASURE_SETTINGS["gini"]
    res = spec["study"].run([cards[0].name], n=spec["n"], method="gradient", store=store, **spec["settings"])
    assert res.computed == 1  # (other settings than the table's: still NaN there)
    assert tradeoff.measures(cards[:1], store=store, include=("gini",))["gini"].isna().all()


def test_monotone_reads_a_family_in_ascending_eps():
    assert tradeoff.monotone([0.1, 0.2, 0.4]) == "rises"
    assert tradeoff.monotone([0.99, 0.98, math.nan, 0.9]) == "falls"
    assert tradeoff.monotone([0.2, 0.1, 0.3]) == "not monotone"
    assert tradeoff.monotone([0.5]) == "n/a"


def test_the_tradeoff_figure_draws_one_labelled_line_per_family():
    t = pd.DataFrame({"model": ["s", "a", "b"], "eps": [0.0, 0.1, 0.3], "clean_accuracy": [0.99, 0.98, 0.97],
                      "alpha_dx": [0.3, math.nan, 0.2]})
    fig = tradeoff_figure({"linf": t, "l2": t.assign(alpha_dx=[0.3, 0.35, 0.4])}, "alpha_dx")
    assert [tr.name for tr in fig.data] == ["l∞ family", "l₂ family"]
    assert list(fig.data[0].text) == ["0", "0.3"]  # the NaN point is left out
    assert list(fig.data[1].x) == pytest.approx([99.0, 98.0, 97.0])
    assert fig.layout.yaxis.title.text == MEASURE_TITLES["alpha_dx"]
    with pytest.raises(ValueError, match="unknown measure"):
        tradeoff_figure({"linf": t}, "nope")
    with pytest.raises(ValueError, match="lacks"):
        tradeoff_figure({"linf": t.drop(columns="eps")}, "alpha_dx")
