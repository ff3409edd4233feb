"""The accuracy / interpretability trade-off across training eps (docs/methods.md section 4;
Kim, Seo and Jeon): one row per member of a PGD eps family, its clean accuracy next to each
interpretability measure that the other studies store.

A family is the dataset's standard model (eps 0) and its PGD-trained models of one norm,
in ascending training eps (:func:`family`). :func:`measures` reads each measure from the
stored study results at the settings of :data:`MEASURE_SETTINGS` (the ones whose results
ship for the shipped models), so the table draws at once; a measure that is not stored is
NaN, or is computed with ``compute_missing=True``.

============== ============================================================== ===========
column         what                                                            better
============== ============================================================== ===========
clean_accuracy the card's clean test accuracy                                  higher
alpha_dx       mean cos(gradient, GAN residual) (:mod:`.alignment`)            higher
gini           mean global Gini of |integrated gradients| (:mod:`.inequality`) see below
manifold       mean ||x_adv - G(z*)||_2 of l_2 PGD examples (:mod:`.manifold`) lower
roar_area      mean ROAR accuracy over q (:mod:`.roar_kar`)                    lower
kar_area       mean KAR accuracy over q (:mod:`.roar_kar`)                     higher
============== ============================================================== ===========

A higher Gini is a sparser attribution; Kim et al. read interpretability from how the map
looks, Duan et al. read a high Gini as a risk. Both readings are shown, neither assumed.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from gradviz import zoo
from gradviz.studies import NotStored, alignment, inequality, manifold, roar_kar
from gradviz.studies.store import ChunkStore
from gradviz.utils import Progress, report

#: The settings each measure is read at: those of the shipped results.
MEASURE_SETTINGS = {
    "alpha_dx": dict(study=alignment, n=100, settings={}),
    "gini": dict(study=inequality, n=200, settings=dict(k=(0.002, 0.01, 0.02, 0.05, 0.1))),
    "manifold": dict(study=manifold, n=100, settings={}),
    "roar_kar": dict(study=roar_kar, n=None, settings={}),
}
#: Measure columns of :func:`measures`, and which direction reads as "more interpretable".
MEASURES = {"alpha_dx": "higher", "gini": "higher (sparser)", "manifold": "lower", "roar_area": "lower",
            "kar_area": "higher"}


def family(dataset: str = "mnist-5k", norm: str = "linf") -> list[zoo.ModelCard]:
    """The dataset's ``<dataset>/standard`` (eps 0) and its PGD-trained models of ``norm``,
    ascending in training eps (shipped and the user's own). Raises ValueError for a norm
    other than ``"linf"`` / ``"l2"``."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    cards = zoo.list_models(dataset)
    members = [c for c in cards if c.name == f"{dataset}/standard"]
    members += sorted((c for c in cards if c.method == "pgd" and c.norm == norm and c.eps > 0), key=lambda c: c.eps)
    return members


def _value(fn) -> float:
    try:
        return float(fn())
    except NotStored:
        return math.nan


def measures(cards: Sequence[zoo.ModelCard], *, store: Optional[ChunkStore] = None, compute_missing: bool = False,
             include: Sequence[str] = ("alpha_dx", "gini", "manifold", "roar_kar"), device="auto",
             progress: Optional[Progress] = None) -> pd.DataFrame:
    """One row per model: ``model``, ``norm``, ``eps``, ``clean_accuracy``, ``robust_accuracy``
    (the card's, under the dataset's standard attack) and the measures of :data:`MEASURES`,
    read from the stored studies at :data:`MEASURE_SETTINGS` (NaN where not stored, unless
    ``compute_missing``).

    Args:
        cards: the models (e.g. :func:`family`).
        store: the study store (default: the user's, then the shipped results).
        compute_missing: compute what is not stored (minutes to hours on a CPU: the GAN
            projections and ROAR/KAR retrainings).
        include: which studies to read ("alpha_dx", "gini", "manifold", "roar_kar").
        device, progress: as every study.
    """
    rows = []
    steps = len(cards) * len(include)
    for i, card in enumerate(cards):
        m = card.metrics or {}
        row = {"model": card.name, "norm": card.norm or "–", "eps": float(card.eps),
               "clean_accuracy": m.get("clean_accuracy", math.nan), "robust_accuracy": m.get("robust_accuracy", math.nan)}
        for j, what in enumerate(include):
            report(progress, (i * len(include) + j) / max(steps, 1), f"{card.name}: {what}")
            spec = MEASURE_SETTINGS[what]
            kw = dict(dataset=card.dataset, n=spec["n"], device=device, store=store, compute_missing=compute_missing,
                      **spec["settings"])
            run = spec["study"].run
            if what == "alpha_dx":
                row["alpha_dx"] = _value(lambda: np.mean(run([card.name], **kw).alpha_dx[card.name]))
            elif what == "gini":
                row["gini"] = _value(lambda: np.mean(run([card.name], **kw).gini[card.name]))
            elif what == "manifold":
                row["manifold"] = _value(lambda: np.mean(run([card.name], **kw).distance_adv[card.name]))
                row["manifold_floor"] = _value(lambda: np.mean(run([card.name], **kw).distance_clean))
            elif what == "roar_kar":
                try:
                    t = run([card.name], **kw).table().set_index("model")
                    row["roar_area"], row["kar_area"] = float(t.loc[card.name, "roar_area"]), float(t.loc[card.name, "kar_area"])
                    row["random_roar_area"], row["random_kar_area"] = (float(t.loc["random", "roar_area"]),
                                                                       float(t.loc["random", "kar_area"]))
                except NotStored:
                    row["roar_area"] = row["kar_area"] = math.nan
        rows.append(row)
    report(progress, 1.0, "trade-off: done")
    return pd.DataFrame(rows)


def monotone(values: Sequence[float]) -> str:
    """``"rises"``, ``"falls"`` or ``"not monotone"`` (NaNs dropped; ``"n/a"`` for < 2 values):
    how a measure moves along a family in ascending eps."""
    v = [x for x in values if not (isinstance(x, float) and math.isnan(x))]
    if len(v) < 2:
        return "n/a"
    d = np.diff(v)
    if np.all(d > 0):
        return "rises"
    if np.all(d < 0):
        return "falls"
    return "not monotone"
