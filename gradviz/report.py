"""The seed papers' key figures and findings, from the shipped models, in one run.

``python -m gradviz report --out DIR`` (also under torchrun) runs the studies the figures
need, reading stored results where they exist (``assets/studies`` ships the mnist-5k ones),
and writes:

- one figure per seed paper's key result, as PNG and PDF (kaleido): side-by-side gradients;
  the alignment histogram (Bigolin Lanfredi et al.); Lorenz curves and Gini (Duan et al.,
  IGD); the perceptually-aligned-gradients view (Ganz et al.); the trade-off plot (Kim et
  al.); the AGR diagnostics;
- ``report.md``: gradviz's measured numbers next to each paper's, finding by finding, with a
  verdict (holds / holds partly / does not hold / not measured), the figures, and the table
  of models with PGD-40 and AutoAttack robust accuracy.

Every number in the report is measured by gradviz (model cards or the studies run here);
the papers' numbers are the constants of :mod:`gradviz.findings` or are stated in words where
no number is on record. docs/methods.md gives each method and where gradviz departs from
the paper.

From a notebook::

    from gradviz import report
    rep = report.build("mnist-5k")        # figures (plotly) and findings, nothing written
    rep.findings[0]                       # Finding(paper=..., claim=..., verdict=...)
    report.write(rep, "out/")             # PNG, PDF and report.md
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from gradviz import findings as fnd
from gradviz import zoo
from gradviz.utils import Progress, report as report_progress

#: The seed papers, by the short key the findings and figures use.
PAPERS = {
    "bigolin": "Bigolin Lanfredi, Schroeder & Tasdizen: Quantifying the preferential direction of the model "
               "gradient in adversarial training with PGD",
    "ganz": "Ganz, Kawar & Elad: Do perceptually aligned gradients imply adversarial robustness? (ICML 2023)",
    "duan": "Duan et al.: Inequality phenomena in l∞-adversarial training (ICLR 2023), and its sequel, Releasing "
            "inequality phenomena via input gradient distillation (IGD)",
    "kim": "Kim, Seo & Jeon: Bridging adversarial robustness and gradient interpretability",
    "agr": "Balancing generalization and robustness in adversarial training via steering through clean and "
           "adversarial gradient directions (AGR)",
}

#: The verdicts a finding can have.
VERDICTS = ("holds", "holds partly", "does not hold", "not measured")

#: The studies' sizes the report uses (test images): what ``assets/studies`` ships.
#: The figures :func:`build` can make, in order; those that run studies (shared out over the
#: ranks under torchrun, so every rank must run them in the same order).
FIGURES = ("gradients", "alignment", "inequality", "pag", "tradeoff", "agr")
STUDY_FIGURES = ("alignment", "inequality", "tradeoff")
ALIGNMENT_N = 100
INEQUALITY_N = 200
GRADIENT_MODELS = ("standard", "pgd-linf", "pgd-l2", "trades", "lalpha", "pag-cm", "igd", "agr")
ALIGNMENT_MODELS = ("standard", "pgd-linf", "pgd-l2", "lalpha")
INEQUALITY_MODELS = ("standard", "pgd-linf", "igd")
PAG_MODELS = ("standard", "pgd-l2", "pag-cm")


@dataclass
class Finding:
    """One finding of a paper, set against gradviz's measurement.

    Attributes:
        paper: a key of :data:`PAPERS`.
        claim: the paper's finding, one sentence.
        paper_says: the paper's number(s) or, where none is on record here, its words.
        measured: gradviz's numbers, with the models and images they come from.
        verdict: one of :data:`VERDICTS`.
        note: why it differs, or what else to know (may be "").
    """

    paper: str
    claim: str
    paper_says: str
    measured: str
    verdict: str
    note: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass
class ReportFigure:
    """A figure of the report: ``name`` (its file stem), the ``paper`` it stands for (a key of
    :data:`PAPERS`, or "" for gradviz's own), a ``caption`` and the plotly ``figure``."""

    name: str
    paper: str
    caption: str
    figure: go.Figure


@dataclass
class Report:
    """What :func:`build` made: the figures, the findings, the models table (one row per
    shipped model: clean, PGD-40 and AutoAttack robust accuracy), what was skipped and why,
    and the seconds it took."""

    dataset: str
    figures: list[ReportFigure]
    findings: list[Finding]
    models: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# ------------------------------------------------------------------------- helpers


def _shipped(dataset: str, wanted: Sequence[str]) -> list[str]:
    """The full names of the shipped models of ``dataset`` among the short names ``wanted``, in that order."""
    have = fnd.shipped_cards(dataset)
    return [f"{dataset}/{n}" for n in wanted if n in have]


def _pct(v: Optional[float]) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fnd.fmt_pct(v)


def _verdict(ok: Optional[bool], partly: bool = False) -> str:
    if ok is None:
        return "not measured"
    return "holds" if ok and not partly else "holds partly" if ok else "does not hold"


def models_table(dataset: str = "mnist-5k") -> pd.DataFrame:
    """One row per shipped model of ``dataset``: method, training eps and norm, clean
    accuracy, PGD robust accuracy (the card's attack), AutoAttack robust accuracy (the
    card's ``metrics["autoattack"]``, NaN where not measured), PGD on AutoAttack's images
    and the images each used; fractions in [0, 1]."""
    rows = []
    for short, card in fnd.shipped_cards(dataset).items():
        m = card.metrics or {}
        aa = m.get("autoattack") or {}
        rows.append({"model": short, "method": card.method, "norm": card.norm or "–", "eps": float(card.eps or 0),
                     "clean": m.get("clean_accuracy", math.nan), "pgd40": m.get("robust_accuracy", math.nan),
                     "pgd_images": m.get("n_images"), "autoattack": aa.get("robust_accuracy", math.nan),
                     "pgd_on_aa_images": (aa.get("pgd_same_images") or {}).get("robust_accuracy", math.nan),
                     "aa_images": aa.get("n_images"),
                     "aa_version": (aa.get("attack") or {}).get("version", "")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ findings


def _bigolin(dataset: str) -> list[Finding]:
    means = fnd.alignment_means(dataset)
    paper = fnd.PAPER_ALIGNMENT
    out = []
    std = means.get("standard")
    pgd = {n: means[n] for n in ("pgd-linf", "pgd-l2") if n in means}
    above = [n for n, v in pgd.items() if std is not None and v > std]
    measured = ", ".join(f"`{n}` {v:.3f}" for n, v in means.items()) or "–"
    verdict = _share_verdict(len(above), len(pgd) if std is not None else 0)
    n_img = sorted({fnd.card_value(c, "alignment", "n_images") for n, c in fnd.shipped_cards(dataset).items()
                    if n in means} - {None})
    out.append(Finding(
        "bigolin", "PGD training aligns the gradient with the direction to the closest other class (mean α_dx "
                   "above the standard model's)",
        f"PGD {paper['PGD']:g} > baseline {paper['baseline']:g} (MNIST)",
        f"mean α_dx, {' or '.join(map(str, n_img))} test images (model cards): {measured}", verdict,
        "" if verdict == "holds" else (
            "The l∞-trained MNIST model's gradient is zero on the black background, where the GAN residual draws "
            "the other digit's new strokes, so it aligns less than the standard model's; the l₂-trained model's "
            "gradient is not masked" + (f" and lies above it ({pgd['pgd-l2']:.3f})" if "pgd-l2" in above else "")
            + ".")))
    la = means.get("lalpha")
    if la is not None:
        top = max(means, key=means.get)
        out.append(Finding(
            "bigolin", "Training on the alignment itself (L_α) aligns the gradient most",
            f"L_α {paper['L_alpha']:g}, the highest of the paper's models",
            f"`lalpha` {la:.3f}; the highest here: `{top}` {means[top]:.3f}",
            _verdict(top == "lalpha"),
            "" if top == "lalpha" else f"`{top}` aligns more than `lalpha` on mnist-5k."))
    return out


def _ganz(dataset: str) -> list[Finding]:
    l2 = fnd.l2_robustness(dataset)
    rob = fnd.linf_robustness(dataset)
    if not l2 or "standard" not in l2:
        return [Finding("ganz", "Training the gradients alone (PAG, no adversarial examples) brings robustness",
                        "PAG models far more robust than vanilla training (CIFAR-10, STL)", "–", "not measured")]
    e = max(l2["standard"])
    pags = [n for n in l2 if n.startswith("pag") and e in l2[n]]
    better = [n for n in pags if l2[n][e] > l2["standard"][e]]
    measured = (f"l₂ PGD-40 at ε {e:g} (model cards): `standard` {_pct(l2['standard'][e])}, "
                + ", ".join(f"`{n}` {_pct(l2[n][e])}" for n in pags)
                + (f", l₂ adversarial training `pgd-l2` {_pct(l2['pgd-l2'][e])}" if e in l2.get("pgd-l2", {}) else ""))
    linf = "; l∞ PGD-40 at ε 0.3: " + ", ".join(f"`{n}` {_pct(rob[n]['robust'])}" for n in ["standard", *pags]
                                                  if n in rob) if rob else ""
    return [Finding(
        "ganz", "Training the gradients alone (PAG, no adversarial examples) brings l₂ robustness",
        "PAG models far more robust than vanilla training, approaching adversarial training (CIFAR-10, STL)",
        measured + linf, _verdict(bool(better) if pags else None, partly=len(better) < len(pags)),
        "" if better else "")]


def _duan(dataset: str) -> list[Finding]:
    grad = fnd.inequality_numbers(dataset, "gradient")
    out = []
    std, linf, igd = grad.get("standard"), grad.get("pgd-linf"), grad.get("igd")
    n_img = (std or {}).get("n_images")
    if std and linf:
        g0, g1 = std["mean_global_gini"], linf["mean_global_gini"]
        out.append(Finding(
            "duan", "l∞ adversarial training makes the input gradient more unequal (higher Gini)",
            f"global Gini {fnd.PAPER_DUAN_GINI[0]:g} → {fnd.PAPER_DUAN_GINI[1]:g} (CIFAR-10, ResNet-18)",
            f"mean Gini of the true class's gradient, {n_img} test images (model cards): `standard` {g0:.3f} → "
            f"`pgd-linf` {g1:.3f}", _verdict(g1 > g0)))
    else:
        out.append(Finding("duan", "l∞ adversarial training makes the input gradient more unequal (higher Gini)",
                           f"{fnd.PAPER_DUAN_GINI[0]:g} → {fnd.PAPER_DUAN_GINI[1]:g}", "–", "not measured"))
    if linf and igd:
        rob = fnd.linf_robustness(dataset)
        gi, gl = igd["mean_global_gini"], linf["mean_global_gini"]
        ri, rl = (rob.get("igd") or {}).get("robust"), (rob.get("pgd-linf") or {}).get("robust")
        keeps = ri is not None and rl is not None and ri >= rl - 0.05
        out.append(Finding(
            "duan", "IGD (input gradient distillation) lowers the inequality of an l∞-trained model while keeping "
                    "its robustness",
            "Gini down toward the standard model's, robust accuracy kept (CIFAR-10)",
            f"mean Gini `igd` {gi:.3f} against `pgd-linf` {gl:.3f}; PGD-40 robust accuracy {_pct(ri)} against "
            f"{_pct(rl)}", _verdict(gi < gl, partly=not keeps)))
        j = len(linf.get("k_fractions") or []) - 1
        if j >= 0 and std:
            k = 100 * linf["k_fractions"][j]
            t_l, t_s = linf["inductive_noise_error_rate"][j], std["inductive_noise_error_rate"][j]
            t_i = igd["inductive_noise_error_rate"][j]
            out.append(Finding(
                "duan", "The more unequal l∞ model errs more under noise on its top-k pixels, and IGD cuts that "
                        "error",
                "inductive-noise error higher for l∞-AT than standard; IGD cuts it by up to 60 % (CIFAR-10)",
                f"error under N(0, 1) noise on the top {k:g} % pixels (model cards): `standard` {_pct(t_s)}, "
                f"`pgd-linf` {_pct(t_l)}, `igd` {_pct(t_i)}",
                _verdict(t_l > t_s and t_i < t_l, partly=not (t_l > t_s and t_i < t_l) and (t_l > t_s or t_i < t_l)),
                "The l∞ model's top pixels by signed gradient lie on the digit's strokes, already near 1, where "
                "added noise mostly saturates; MNIST has no textured background for it to disturb."
                if not t_l > t_s else ""))
    return out


def _family_text(tables: dict[str, pd.DataFrame], col: str) -> str:
    """"linf eps 0, 0.05, ...: v0, v1, ... (rises)" per family, for one column."""
    from gradviz.studies.tradeoff import monotone

    parts = []
    for norm, t in tables.items():
        t = t.sort_values("eps")
        if col in t and t[col].notna().sum() >= 2:
            fmt = (lambda v: f"{100 * v:.1f}") if col == "clean_accuracy" else (lambda v: f"{v:.3f}")
            parts.append(f"{norm} eps " + ", ".join(f"{e:g}" for e in t["eps"]) + ": "
                         + ", ".join(fmt(v) for v in t[col]) + f" ({monotone(list(t[col]))})")
    return "; ".join(parts)


def _beats_standard(tables: dict[str, pd.DataFrame], col: str, lower: bool) -> tuple[int, int]:
    """(PGD models whose ``col`` is below (``lower``) or above the standard model's, PGD
    models with a value) over the families."""
    better = total = 0
    for t in tables.values():
        if col not in t:
            continue
        std = t[t["eps"] == 0][col].dropna()
        pgd = t[t["eps"] > 0][col].dropna()
        if len(std):
            better += int((pgd < std.iloc[0]).sum() if lower else (pgd > std.iloc[0]).sum())
            total += len(pgd)
    return better, total


def _share_verdict(better: int, total: int) -> str:
    """All: holds; some: holds partly; none: does not hold; nothing measured: not measured."""
    if total == 0:
        return "not measured"
    return "holds" if better == total else "holds partly" if better else "does not hold"


def _kim(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    from gradviz.studies.tradeoff import monotone

    if not tables:
        return [Finding("kim", "Adversarial training trades clean accuracy for interpretable gradients",
                        "clean accuracy falls and interpretability rises with the training eps", "–",
                        "not measured")]
    by_eps = [t.sort_values("eps") for t in tables.values()]
    falls = sum(monotone(list(t["clean_accuracy"])) == "falls" for t in by_eps)
    lower_at_end = sum(t["clean_accuracy"].iloc[-1] < t["clean_accuracy"].iloc[0] for t in by_eps)
    out = [Finding(
        "kim", "Clean accuracy falls as the training eps grows", "accuracy falls with eps (one side of the trade-off)",
        "clean accuracy %: " + _family_text(tables, "clean_accuracy"),
        "holds" if falls == len(by_eps) else "holds partly" if lower_at_end else "does not hold",
        "" if falls == len(by_eps) else "Lower at the largest eps than the standard model, but not step by step: "
                                         "on MNIST the cost shows only at the largest radii.")]
    closer = _beats_standard(tables, "manifold", lower=True)
    if closer[1]:
        out.append(Finding("kim", "Adversarial examples of robust models lie closer to the data manifold",
                           "closer to the manifold as eps grows",
                           "mean distance of l₂ PGD examples (eps 3) to the GAN's range: "
                           + _family_text(tables, "manifold"), _share_verdict(*closer),
                           f"{closer[0]} of {closer[1]} PGD models lie closer than the standard model."))
    aligned = _beats_standard(tables, "alpha_dx", lower=False)
    if aligned[1]:
        rising = all(monotone(list(t["alpha_dx"])) == "rises" for t in by_eps if "alpha_dx" in t)
        verdict = _share_verdict(*aligned)
        out.append(Finding("kim", "The gradient grows more interpretable with the training eps",
                           "interpretability rises with eps", "mean α_dx: " + _family_text(tables, "alpha_dx"),
                           "holds partly" if verdict == "holds" and not rising else verdict,
                           f"{aligned[0]} of {aligned[1]} PGD models lie above the standard model"
                           + ("" if rising else "; it does not keep rising with eps") + "."))
    roar = _beats_standard(tables, "roar_area", lower=True)
    if roar[1]:
        out.append(Finding("kim", "Robust models' gradients rank pixels more meaningfully (ROAR: removing their top "
                                  "pixels hurts a retrained model more)",
                           "ROAR accuracy falls faster for robust models",
                           "ROAR area (lower: more meaningful): " + _family_text(tables, "roar_area"),
                           _share_verdict(*roar), f"{roar[0]} of {roar[1]} PGD models below the standard model."))
    return out


def _agr(dataset: str) -> list[Finding]:
    cards = fnd.shipped_cards(dataset)
    agr = cards.get("agr")
    if agr is None:
        return []
    base_method = (agr.training or {}).get("agr_base", "pgd")
    base = cards.get("trades" if base_method == "trades" else "pgd-linf")
    if base is None:
        return []
    ma, mb = agr.metrics or {}, base.metrics or {}
    ca, cb, ra, rb = (ma.get("clean_accuracy"), mb.get("clean_accuracy"), ma.get("robust_accuracy"),
                      mb.get("robust_accuracy"))
    aa_a, aa_b = (ma.get("autoattack") or {}).get("robust_accuracy"), (mb.get("autoattack") or {}).get("robust_accuracy")
    gain = ca is not None and cb is not None and ca > cb + 0.002
    keeps = ra is not None and rb is not None and ra >= rb - 0.01
    measured = (f"`agr` against its base `{base.name.split('/')[-1]}`: clean {_pct(ca)} / {_pct(cb)}, PGD-40 "
                f"{_pct(ra)} / {_pct(rb)}" + (f", AutoAttack {_pct(aa_a)} / {_pct(aa_b)}" if aa_a is not None
                                               and aa_b is not None else ""))
    return [Finding("agr", "Steering between the clean and adversarial parameter gradients raises clean accuracy "
                           "at the same robustness",
                    "higher clean accuracy than the base adversarial training, robustness kept (CIFAR-10)",
                    measured, _verdict(gain, partly=not keeps) if gain else "does not hold",
                    "" if gain else "On mnist-5k both models reach the same clean accuracy: there is little "
                                    "clean accuracy to win back.")]


def findings(dataset: str = "mnist-5k", tradeoff_tables: Optional[dict[str, pd.DataFrame]] = None) -> list[Finding]:
    """Every seed paper's findings against gradviz's measurements on the shipped models of
    ``dataset`` (model cards; ``tradeoff_tables``: norm -> :func:`gradviz.studies.tradeoff.measures`
    of that family, for Kim et al.'s). A finding whose numbers are missing is "not measured"."""
    return [*_bigolin(dataset), *_ganz(dataset), *_duan(dataset), *_kim(tradeoff_tables or {}), *_agr(dataset)]


# ------------------------------------------------------------------------- figures


def _gradients_figure(dataset: str, device) -> Optional[ReportFigure]:
    from gradviz.data import load_dataset
    from gradviz.gradients import compute_gradient_grid
    from gradviz.training.snapshots import snapshot_indices
    from gradviz.viz.gradients import gradient_grid_figure

    names = _shipped(dataset, GRADIENT_MODELS)
    if not names:
        return None
    ds = load_dataset(dataset, "test")
    picks = snapshot_indices(ds.y, 6, seed=0)
    models = {n.split("/")[-1]: zoo.load_model(n, device=device) for n in names}
    grid = compute_gradient_grid(models, ds.x[picks], ds.y[picks], method="gradient",
                                 names=[f"#{i}" for i in picks])
    fig = gradient_grid_figure(grid, ds.classes, panel_size=140, title="Input gradients of the true class's logit")
    return ReportFigure("gradients", "", "The gradient of the true class's logit per model (columns) and test "
                        "image (rows), each panel scaled to its own largest |value|.", fig)


def _alignment_figure(dataset: str, device, store, progress) -> tuple[Optional[ReportFigure], Optional[str]]:
    from gradviz.generative import NoGeneratorError
    from gradviz.studies import alignment
    from gradviz.viz.alignment import alpha_histogram_figure

    names = _shipped(dataset, ALIGNMENT_MODELS)
    try:
        res = alignment.run(names, dataset=dataset, n=ALIGNMENT_N, device=device, store=store, progress=progress)
    except NoGeneratorError as err:
        return None, str(err)
    fig = alpha_histogram_figure({n.split("/")[-1]: v for n, v in res.alpha_dx.items()},
                                 title=f"α_dx per test image ({res.n_images} images, each model's closest class)")
    means = ", ".join(f"{n.split('/')[-1]} {np.nanmean(v):.3f}" for n, v in res.alpha_dx.items())
    return ReportFigure("alignment_histogram", "bigolin",
                        f"Cosine between each model's gradient toward its closest other class and the GAN residual "
                        f"toward that class (Eq. 8); means: {means}.", fig), None


def _inequality_figure(dataset: str, device, store, progress) -> Optional[ReportFigure]:
    from gradviz.studies import inequality
    from gradviz.viz.inequality import lorenz_figure

    names = _shipped(dataset, INEQUALITY_MODELS)
    if not names:
        return None
    res = inequality.run(names, dataset=dataset, n=INEQUALITY_N, device=device, store=store, progress=progress,
                         method="gradient")
    ginis = {n.split("/")[-1]: float(g.mean()) for n, g in res.gini.items()}
    fig = lorenz_figure(res.lorenz_fractions, {n.split("/")[-1]: v for n, v in res.lorenz_mean.items()},
                        ginis=ginis, size=460,
                        title=f"Mean Lorenz curve of |gradient| ({res.n_images} test images)")
    return ReportFigure("lorenz_gini", "duan",
                        "Share of the total |gradient| held by the least-attributed pixels; the further below the "
                        "diagonal, the more unequal (legend: mean Gini, "
                        + ", ".join(f"{n} {g:.3f}" for n, g in ginis.items()) + ").", fig)


def _pag_figure(dataset: str, device) -> Optional[ReportFigure]:
    from gradviz.attacks import PAG_EPS, PAG_STEPS, target_probabilities, targeted_class_sweep
    from gradviz.data import load_dataset
    from gradviz.viz.attack import pag_grid_figure

    names = _shipped(dataset, PAG_MODELS)
    if not names:
        return None
    ds = load_dataset(dataset, "test")
    x = ds.x[:1]
    images, probs = {}, {}
    for n in names:
        model = zoo.load_model(n, device=device)
        out = targeted_class_sweep(model, x.to(next(model.parameters()).device), eps=PAG_EPS, steps=PAG_STEPS)
        images[n.split("/")[-1]] = out.cpu().numpy()
        probs[n.split("/")[-1]] = target_probabilities(model, out, torch.arange(len(out))).numpy()
    fig = pag_grid_figure(images, ds.classes, x=x[0].numpy(), probs=probs,
                          title=f"Targeted l₂ PGD toward each class · ε {PAG_EPS:g} · {PAG_STEPS} steps · test #0")
    return ReportFigure("pag_view", "ganz", "From one test image, a large targeted l₂ attack toward each class: with "
                        "perceptually aligned gradients the result looks like the target digit (second line: the "
                        "model's probability of the target).", fig)


def _tradeoff(dataset: str, device, store, progress) -> tuple[dict[str, pd.DataFrame], list[ReportFigure]]:
    from gradviz.studies import tradeoff
    from gradviz.viz.tradeoff import tradeoff_figure

    tables = {}
    for norm in ("linf", "l2"):
        fam = tradeoff.family(dataset, norm)
        if len(fam) >= 2:
            tables[norm] = tradeoff.measures(fam, store=store, compute_missing=True, device=device, progress=progress)
    figs = []
    for measure in ("alpha_dx", "manifold"):
        if any(measure in t and t[measure].notna().sum() >= 2 for t in tables.values()):
            figs.append(ReportFigure(f"tradeoff_{measure}", "kim", "Clean accuracy against an interpretability "
                                     "measure along the PGD families, each point labelled with its training eps.",
                                     tradeoff_figure(tables, measure)))
    return tables, figs


def _agr_figure(dataset: str) -> Optional[ReportFigure]:
    from gradviz.viz.models import agr_diagnostics_figure, has_agr_diagnostics

    card = fnd.shipped_cards(dataset).get("agr")
    if card is None or not has_agr_diagnostics(card.log or []):
        return None
    fig = agr_diagnostics_figure(card.log, start_epoch=(card.training or {}).get("agr_start_epoch"),
                                 title=f"AGR diagnostics: {card.name}")
    return ReportFigure("agr_diagnostics", "agr", "Mean cosine between the clean and adversarial parameter gradients "
                        "and the share of tensors where they disagree (projected), per epoch; AGR starts at the "
                        "dashed line.", fig)


def build(dataset: str = "mnist-5k", *, device: Union[str, torch.device] = "auto", progress: Optional[Progress] = None,
          store=None, include: Sequence[str] = FIGURES) -> Report:
    """Compute the report's figures and findings (nothing is written).

    Args:
        dataset: whose shipped models (default ``"mnist-5k"``).
        device: where to compute (``"auto"``: CUDA when available).
        progress: ``progress(fraction, message)``.
        store: the studies' :class:`~gradviz.studies.store.ChunkStore` (default: the user's,
            then ``assets/studies``).
        include: which of :data:`FIGURES` (default all); the findings are always all.

    Returns:
        :class:`Report`.

    Raises:
        ValueError: an unknown figure name.

    Under torchrun the studies are shared out over the ranks (:mod:`gradviz.studies.distributed`):
    every rank must build at least :data:`STUDY_FIGURES`, in the same order.
    """
    from gradviz.utils import resolve_device

    t0 = time.perf_counter()
    dev = resolve_device(device)
    unknown = sorted(set(include) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figures {unknown}; choose from {list(FIGURES)}")
    steps = [s for s in FIGURES if s in include]
    figures: list[ReportFigure] = []
    skipped: dict[str, str] = {}
    tables: dict[str, pd.DataFrame] = {}
    for i, what in enumerate(steps):
        def sub(frac, msg, i=i):
            report_progress(progress, (i + frac) / len(steps), msg)

        sub(0.0, what)
        if what == "gradients":
            fig = _gradients_figure(dataset, dev)
        elif what == "alignment":
            fig, why = _alignment_figure(dataset, dev, store, sub)
            if why:
                skipped[what] = why
        elif what == "inequality":
            fig = _inequality_figure(dataset, dev, store, sub)
        elif what == "pag":
            fig = _pag_figure(dataset, dev)
        elif what == "tradeoff":
            tables, figs = _tradeoff(dataset, dev, store, sub)
            figures.extend(figs)
            fig = None
            if not figs:
                skipped[what] = "no PGD family of two or more models"
        else:
            fig = _agr_figure(dataset)
        if fig is not None:
            figures.append(fig)
        elif what not in skipped and what != "tradeoff":
            skipped[what] = f"none of its models ships for {dataset}"
    report_progress(progress, 1.0, "report: done")
    return Report(dataset=dataset, figures=figures, findings=findings(dataset, tables), models=models_table(dataset),
                  skipped=skipped, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- writing


def markdown(rep: Report, figure_files: Optional[dict[str, str]] = None) -> str:
    """``report.md``: the findings per paper (a table: claim, paper, gradviz, verdict, note),
    the models table and the figures (``figure_files``: figure name -> file name to embed)."""
    figure_files = figure_files or {}
    counts = {v: sum(f.verdict == v for f in rep.findings) for v in VERDICTS}
    lines = [f"# gradviz report: the seed papers' findings on the shipped {rep.dataset} models", "",
             "Every gradviz number below was measured on the shipped models (model cards, or the studies this "
             "report ran); the papers' numbers are theirs, on their data sets. Verdicts: "
             + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + ".", ""]
    for key, title in PAPERS.items():
        rows = [f for f in rep.findings if f.paper == key]
        figs = [f for f in rep.figures if f.paper == key]
        if not rows and not figs:
            continue
        lines += [f"## {title}", ""]
        if rows:
            lines += ["| finding | the paper | gradviz measured | verdict |", "|---|---|---|---|"]
            for f in rows:
                lines.append(f"| {f.claim} | {f.paper_says} | {f.measured} | **{f.verdict}** |")
            lines.append("")
            lines += [f"- *{f.claim}*: {f.note}" for f in rows if f.note]
            if any(f.note for f in rows):
                lines.append("")
        for f in figs:
            if f.name in figure_files:
                lines += [f"![{f.name}]({figure_files[f.name]})", ""]
            lines += [f"*{f.caption}*", ""]
    own = [f for f in rep.figures if not f.paper]
    if own:
        lines += ["## The gradients side by side", ""]
        for f in own:
            if f.name in figure_files:
                lines += [f"![{f.name}]({figure_files[f.name]})", ""]
            lines += [f"*{f.caption}*", ""]
    lines += ["## The models: PGD-40 and AutoAttack", "",
              "| model | method | clean | PGD-40 | AutoAttack | PGD-40 on AutoAttack's images |", "|---|---|---|---|---|---|"]
    for r in rep.models.itertuples():
        trained = f" ({r.norm} eps {r.eps:g})" if r.eps else ""
        aa = _pct(r.autoattack) + (f" ({r.aa_images} images, {r.aa_version})" if isinstance(r.aa_images, (int, float))
                                   and r.aa_images == r.aa_images and r.aa_images else "")
        lines.append(f"| `{r.model}` | {r.method}{trained} | {_pct(r.clean)} | {_pct(r.pgd40)} | {aa} | "
                     f"{_pct(r.pgd_on_aa_images)} |")
    lines.append("")
    if rep.skipped:
        lines += ["## Not drawn", ""] + [f"- {k}: {v}" for k, v in rep.skipped.items()] + [""]
    lines += [f"Computed by `python -m gradviz report` in {rep.seconds:.0f} s (figures rendered after).", ""]
    return "\n".join(lines)


def write(rep: Report, out: Union[str, Path], *, formats: Sequence[str] = ("png", "pdf"),
          progress: Optional[Progress] = None) -> list[Path]:
    """Write every figure as ``<name>.<format>`` (kaleido, one browser per figure) and
    ``report.md`` into ``out`` (created). Returns the paths written.

    Raises:
        gradviz.viz.export.StaticExportUnavailable: kaleido or a Chromium is missing.
    """
    from gradviz.checkpoints import atomic_write
    from gradviz.viz.export import export_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, files = [], {}
    for i, f in enumerate(rep.figures):
        report_progress(progress, i / max(len(rep.figures), 1), f"writing {f.name}")
        rendered = export_figure(f.figure, tuple(formats))
        for fmt, data in rendered.items():
            path = out / f"{f.name}.{fmt}"
            with atomic_write(path) as fh:
                fh.write(data)
            written.append(path)
        files[f.name] = f"{f.name}.png" if "png" in rendered else f"{f.name}.{next(iter(rendered))}"
    md = out / "report.md"
    with atomic_write(md) as fh:
        fh.write(markdown(rep, files).encode("utf-8"))
    written.append(md)
    report_progress(progress, 1.0, f"wrote {len(written)} files into {out}")
    return written


def run(out: Union[str, Path], dataset: str = "mnist-5k", *, device="auto", formats: Sequence[str] = ("png", "pdf"),
        progress: Optional[Progress] = None, store=None) -> Report:
    """:func:`build` then :func:`write`: the whole report into ``out``; returns the report."""
    rep = build(dataset, device=device, progress=progress, store=store)
    write(rep, out, formats=formats)
    return rep
