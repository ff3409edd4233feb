"""What gradviz measured on its shipped models, read from their cards at run time, beside
what the papers found: the numbers and sentences of the app's guidance (docs/methods.md,
the "Measured on the shipped models" sections).

Every number these functions print as a gradviz measurement comes from a shipped model
card (``assets/models/<dataset>/<name>.json``, key ``metrics``), so the text stays true
when a model is retrained and its card rewritten; a card without the metric is left out
(and a dataset with none gets ``None``: the page then says nothing about measurements).
Every number attributed to a paper is one of the constants below, with its source.

No streamlit here: the pages call these functions and draw their markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from gradviz import zoo

__all__ = [
    "PAPER_ALIGNMENT",
    "PAPER_DUAN_GINI",
    "alignment_guidance",
    "alignment_means",
    "card_value",
    "fmt_pct",
    "gradients_guidance",
    "inequality_guidance",
    "inequality_numbers",
    "l2_robustness",
    "linf_robustness",
    "noise_comparison",
    "pag_guidance",
    "robustness_guidance",
    "shipped_cards",
    "below_standard_note",
    "target_eps_summary",
]

#: Bigolin Lanfredi, Schroeder and Tasdizen, MNIST (docs/methods.md section 1.10): mean alpha_dx
#: of the L_alpha model, the PGD model and the baseline.
PAPER_ALIGNMENT = {"L_alpha": 0.575, "PGD": 0.169, "baseline": 0.0775}
#: Duan et al. (ICLR 2023), CIFAR-10 ResNet-18: global Gini of a standard and an l_inf-AT model.
PAPER_DUAN_GINI = (0.58, 0.73)


# ----------------------------------------------------------------------------- cards


def shipped_cards(dataset: str) -> dict[str, Any]:
    """The shipped model cards of ``dataset``, by short name (``"standard"`` for
    ``mnist-5k/standard``): ``standard`` first, then in the zoo's order. User models are left out: the guidance speaks
    of what gradviz ships and measured."""
    cards = {c.name.split("/", 1)[-1]: c for c in zoo.list_models(dataset, include_user=False)}
    return dict(sorted(cards.items(), key=lambda kv: kv[0] != "standard"))  # standard first: the reference


def card_value(card: Any, *keys: Any) -> Any:
    """``card.metrics[k1][k2]...``, or None where a key (or index) is missing."""
    value: Any = getattr(card, "metrics", None) or {}
    for k in keys:
        try:
            value = value[k]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def fmt_pct(v: float) -> str:
    """A fraction in [0, 1] as a percentage with one decimal: 0.882 -> ``"88.2 %"``."""
    return f"{100 * float(v):.1f} %"


def _f3(v: float) -> str:
    return f"{float(v):.3f}"


def _join(items: Sequence[str], word: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _code(name: str) -> str:
    return f"`{name}`"


def _is_linf_trained(card: Any) -> bool:
    return (card.norm == "linf") and float(card.eps or 0) > 0


# ------------------------------------------------------------------------ alignment


def alignment_means(dataset: str) -> dict[str, float]:
    """Short model name -> mean alpha_dx from its card's ``metrics["alignment"]``, highest
    first; models without that metric are left out."""
    out = {n: float(v) for n, c in shipped_cards(dataset).items()
           if (v := card_value(c, "alignment", "mean_alpha_dx")) is not None}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def alignment_guidance(dataset: str) -> Optional[str]:
    """Markdown: the cards' mean alpha_dx of every shipped model of ``dataset``, what agrees
    with the paper's order (L_alpha > PGD > baseline) and what does not, and why. None when
    no card of the dataset holds ``metrics["alignment"]``."""
    means = alignment_means(dataset)
    if not means:
        return None
    cards = shipped_cards(dataset)
    n_img = {card_value(cards[n], "alignment", "n_images") for n in means} - {None}
    where = f"{dataset}, {_join([str(v) for v in sorted(n_img)], 'or')} test images" if n_img else dataset
    lines = [f"**What gradviz measured** on its shipped models ({where}, each model's own closest class; from "
             "the model cards): mean α_dx " + ", ".join(f"{_code(n)} **{_f3(v)}**" for n, v in means.items())
             + ". The paper (MNIST): L_α " + f"{PAPER_ALIGNMENT['L_alpha']:g} > PGD {PAPER_ALIGNMENT['PGD']:g} > "
             f"baseline {PAPER_ALIGNMENT['baseline']:g}."]
    std = means.get("standard")
    agree, differ = [], []
    if "lalpha" in means:
        top = next(iter(means))
        if top == "lalpha":
            agree.append(f"L_α is the most aligned here too ({_f3(means['lalpha'])}, the paper "
                         f"{PAPER_ALIGNMENT['L_alpha']:g}).")
        else:
            differ.append(f"L_α ({_f3(means['lalpha'])}) is not the most aligned here: {_code(top)} "
                          f"({_f3(means[top])}) is.")
    if std is not None:
        robust = {n: v for n, v in means.items() if cards[n].method in ("pgd", "trades", "agr", "igd")}
        above = [n for n, v in robust.items() if v > std]
        below = [n for n, v in robust.items() if v <= std]
        l2_above = [n for n in above if cards[n].norm == "l2"]
        if above:
            agree.append("Adversarial training above standard (" + _f3(std) + "), as the paper found: "
                         + _join([f"{_code(n)} {_f3(means[n])}" for n in above]) + ".")
        linf_below = [n for n in below if _is_linf_trained(cards[n])]
        if below:
            differ.append(
                "**Not reproduced:** " + _join([f"{_code(n)} ({_f3(means[n])})" for n in below])
                + f" {'lies' if len(below) == 1 else 'lie'} *below* `standard` ({_f3(std)}), so do not expect "
                + ("its" if len(below) == 1 else "their") + " histogram right of standard's."
                + (" Why: an l∞-trained MNIST model learns to threshold its input, and its gradient is zero on the "
                   "black background, most of the image (the figure's caption gives each model's share on the "
                   "images shown). The residual dx̂ toward another digit draws new strokes on that background, "
                   "so such a gradient can line up only with the part of dx̂ on the existing strokes."
                   if linf_below else "")
                + (f" Models trained against l2 attacks ({_join([_code(n) for n in l2_above])}) keep a gradient "
                   "on the background and do lie above standard." if linf_below and l2_above else ""))
            if "igd" in above and linf_below:
                differ.append(f"`igd` is l∞-trained as well but pulled toward the standard model's gradient "
                              f"during training, and lies above standard ({_f3(means['igd'])}).")
        if dataset.startswith("mnist") and std > PAPER_ALIGNMENT["baseline"] * 2:
            differ.append(f"gradviz's standard model is far more aligned than the paper's baseline ({_f3(std)} "
                          f"against {PAPER_ALIGNMENT['baseline']:g}); gradviz has not measured why (its standard "
                          f"model, data, architecture and generator all differ from the paper's).")
    if agree:
        lines.append("**As in the paper:** " + " ".join(agree))
    lines.extend(differ)
    return "\n\n".join(lines)


# ----------------------------------------------------------------------- inequality


def inequality_numbers(dataset: str, method: str = "gradient") -> dict[str, dict]:
    """Short model name -> the card's ``metrics["inequality"][method]`` block (mean Gini,
    regional Gini, inductive and random noise error rates) with ``k_fractions`` and
    ``n_common_correct`` added; models without it are left out."""
    out = {}
    for n, c in shipped_cards(dataset).items():
        block = card_value(c, "inequality", method)
        if block:
            out[n] = dict(block, k_fractions=card_value(c, "inequality", "k_fractions") or [],
                          n_common_correct=card_value(c, "inequality", "n_common_correct"),
                          n_images=card_value(c, "inequality", "n_images"))
    return out


def noise_comparison(k_fractions: Sequence[float], inductive: Mapping[str, Sequence[float]],
                     random: Mapping[str, Sequence[float]]) -> dict[str, str]:
    """Per model, where its top-k error rates lie against the random-k ones:
    ``"above"`` (top-k >= random at every k, and above at one), ``"below"`` (<= at every k,
    below at one), ``"equal"``, ``"mixed"``, or ``"unknown"`` (every rate NaN: no image to
    count). Rates are fractions or percentages, the same for both; a k whose rate is NaN is
    skipped.

    Raises:
        ValueError: a model whose rate lists do not match ``k_fractions`` in length."""
    out = {}
    for n in inductive:
        t = [float(v) for v in inductive[n]]
        r = [float(v) for v in random[n]]
        if len(t) != len(r) or len(t) != len(k_fractions):
            raise ValueError(f"{n}: {len(t)} inductive and {len(r)} random rates for {len(k_fractions)} k")
        pairs = [(a, b) for a, b in zip(t, r) if math.isfinite(a) and math.isfinite(b)]
        if not pairs:
            out[n] = "unknown"
            continue
        ge = all(a >= b for a, b in pairs)
        le = all(a <= b for a, b in pairs)
        out[n] = "equal" if ge and le else "above" if ge else "below" if le else "mixed"
    return out


def inequality_guidance(dataset: str) -> Optional[str]:
    """Markdown: the cards' Gini and inductive-noise error rates beside Duan et al.'s and
    the IGD paper's findings, and why the noise results differ here. None when no card of
    ``dataset`` holds ``metrics["inequality"]``."""
    grad = inequality_numbers(dataset, "gradient")
    if not grad:
        return None
    ig = inequality_numbers(dataset, "integrated_gradients")
    first = next(iter(grad.values()))
    ks = list(first["k_fractions"])
    lines = [
        f"**What gradviz measured** (model cards, {dataset}, {first.get('n_images')} test images, the true "
        "class's gradient): mean Gini " + ", ".join(
            f"{_code(n)} **{v['mean_global_gini']:.3f}**" for n, v in grad.items())
        + " (regional, 4 × 4: " + ", ".join(
            f"{v['mean_regional_gini_block4']:.3f}" for v in grad.values() if "mean_regional_gini_block4" in v)
        + ")" + (("; with integrated gradients " + ", ".join(f"{_code(n)} {v['mean_global_gini']:.3f}"
                                                            for n, v in ig.items())) if ig else "")
        + f". Duan et al. (CIFAR-10): {PAPER_DUAN_GINI[0]:g} → {PAPER_DUAN_GINI[1]:g} with l∞ training."
    ]
    std, linf = grad.get("standard"), grad.get("pgd-linf")
    if std and linf:
        if linf["mean_global_gini"] > std["mean_global_gini"]:
            lines.append(f"**As in the paper:** l∞ training makes the gradient far more unequal "
                         f"({std['mean_global_gini']:.3f} → {linf['mean_global_gini']:.3f})"
                         + (f", and IGD brings it back down ({grad['igd']['mean_global_gini']:.3f})"
                            if "igd" in grad and grad["igd"]["mean_global_gini"] < linf["mean_global_gini"] else "")
                         + "."
                         + (" With integrated gradients every model is about as unequal (" + _f3(min(ig_g)) + " to "
                            + _f3(max(ig_g)) + "): it is 0 on the black background, most of an MNIST image."
                            if (ig_g := [v["mean_global_gini"] for v in ig.values()]) and max(ig_g) - min(ig_g) < 0.05
                            and dataset.startswith("mnist") else ""))
        else:
            lines.append(f"**Not reproduced:** `pgd-linf`'s gradient is not more unequal than `standard`'s "
                         f"({linf['mean_global_gini']:.3f} against {std['mean_global_gini']:.3f}).")
    if ks:
        j = len(ks) - 1
        kmax = f"{100 * ks[j]:g} %"
        n_common = first.get("n_common_correct")
        rates = "; ".join(
            f"{_code(n)} {fmt_pct(v['inductive_noise_error_rate'][j])} / {fmt_pct(v['random_noise_error_rate'][j])}"
            for n, v in grad.items())
        small = [i for i, k in enumerate(ks) if k <= 0.02]
        worst_small = max((max(v["inductive_noise_error_rate"][i], v["random_noise_error_rate"][i])
                           for v in list(grad.values()) + list(ig.values()) for i in small), default=None)
        order = sorted(grad, key=lambda n: -grad[n]["inductive_noise_error_rate"][j])
        lines.append(
            f"**Inductive noise** (cards: N(0, 1) added to the top-k pixels by signed gradient / to k random "
            f"pixels, error rate at k = {kmax} over the {n_common} images every model gets right): {rates}. "
            "The papers: the more unequal l∞ model breaks more under noise on its top pixels, and IGD cuts that "
            "error by up to 60 %."
            + (f" **Not reproduced here:** {_code(order[0])} breaks most, and the more unequal "
               f"`pgd-linf` less ({fmt_pct(linf['inductive_noise_error_rate'][j])})." if linf and order[0] != "pgd-linf"
               else "")
            + _random_above_text(ks, grad)
            + (f" In the papers' range (k ≤ 2 %) no error rate on the cards exceeds {fmt_pct(worst_small)}."
               if worst_small is not None else ""))
    return "\n\n".join(lines)


def _random_above_text(ks: Sequence[float], grad: Mapping[str, dict]) -> str:
    j = len(ks) - 1
    above = [n for n, v in grad.items() if v["random_noise_error_rate"][j] > v["inductive_noise_error_rate"][j]]
    if not above:
        return ""
    every = len(above) == len(grad)
    return (f" At k = {100 * ks[j]:g} % noise on *random* pixels breaks "
            + ("every model" if every else _join([_code(n) for n in above]))
            + " more than noise on its top pixels. Why: the top pixels by signed attribution are where more "
              "brightness raises the true class's score, almost all on the digit's strokes, so noise there mostly "
              "saturates or dims a stroke; random pixels lie mostly on the black background, where the noise "
              "draws bright dots, far larger changes than the ε 0.3 per pixel the l∞ models were trained against. "
              "The papers' natural images have no such background. (The IGD paper ranks by |saliency|: "
              "switch **Rank pixels by |attribution|** to use its ranking.)")


# ----------------------------------------------------------------------- robustness


def linf_robustness(dataset: str) -> dict[str, dict]:
    """Short model name -> ``{"clean", "robust", "eps", "steps", "step_size", "n_images",
    "eps50"}`` from its card (the dataset's standard attack; eps50 from the card's curve,
    None where missing)."""
    out = {}
    for n, c in shipped_cards(dataset).items():
        clean, robust, attack = (card_value(c, k) for k in ("clean_accuracy", "robust_accuracy", "attack"))
        if clean is None or robust is None or not attack:
            continue
        e50 = card_value(c, "curve", "eps50")
        out[n] = dict(clean=float(clean), robust=float(robust), eps=attack.get("eps"), norm=attack.get("norm"),
                      steps=attack.get("steps"), step_size=attack.get("step_size"),
                      n_images=card_value(c, "n_images"),
                      eps50=float(e50) if e50 is not None and math.isfinite(float(e50)) else None)
    return out


def l2_robustness(dataset: str) -> dict[str, dict[float, float]]:
    """Short model name -> {l_2 eps: robust accuracy} from its card's
    ``metrics["other_attacks"]`` (l_2 PGD entries); models without any are left out."""
    out: dict[str, dict[float, float]] = {}
    for n, c in shipped_cards(dataset).items():
        for entry in card_value(c, "other_attacks") or []:
            attack = entry.get("attack") or {}
            if attack.get("norm") == "l2" and "robust_accuracy" in entry:
                out.setdefault(n, {})[float(attack["eps"])] = float(entry["robust_accuracy"])
    return out


def robustness_guidance(dataset: str, names: Sequence[str] = ("standard", "pgd-linf")) -> Optional[str]:
    """Markdown for the Attack page: the cards' clean and robust accuracy and eps50 of
    ``names`` (short names; those without numbers are left out). None when none of them has
    numbers."""
    rob = linf_robustness(dataset)
    shown = [n for n in names if n in rob]
    if not shown:
        return None
    a = rob[shown[0]]
    head = (f"**What gradviz measured** (model cards, {dataset}, {a['n_images']} test images, l∞ PGD-{a['steps']} "
            f"at ε {a['eps']:g}, step {a['step_size']:g}, random start): " + "; ".join(
                f"{_code(n)} {fmt_pct(rob[n]['clean'])} clean, **{fmt_pct(rob[n]['robust'])}** under attack"
                + (f", ε50 {rob[n]['eps50']:.3f}" if rob[n]["eps50"] is not None else "") for n in shown) + ".")
    return head


# ------------------------------------------------------------------------------ PAG


def pag_guidance(dataset: str) -> Optional[str]:
    """Markdown for the perceptually-aligned-gradients view: the cards' l_2 robust accuracies
    (``metrics["other_attacks"]``) beside Ganz et al.'s claim. None without such numbers."""
    l2 = l2_robustness(dataset)
    if not l2:
        return None
    eps_all = sorted({e for v in l2.values() for e in v})
    parts = [f"{_code(n)} " + " / ".join(fmt_pct(v[e]) if e in v else "–" for e in eps_all) for n, v in l2.items()]
    text = (f"**What gradviz measured** (model cards, untargeted l2 PGD-40, accuracy at ε "
            + " / ".join(f"{e:g}" for e in eps_all) + "): " + "; ".join(parts) + ".")
    if "pag-cm" in l2 and "standard" in l2 and eps_all:
        e = eps_all[-1]
        if e in l2["pag-cm"] and e in l2["standard"] and l2["pag-cm"][e] > l2["standard"][e]:
            text += (f" As Ganz et al. found (CIFAR-10, STL), training the gradients alone (PAG, no adversarial "
                     f"examples) brings l2 robustness: `pag-cm` keeps {fmt_pct(l2['pag-cm'][e])} at ε {e:g}, "
                     f"`standard` {fmt_pct(l2['standard'][e])}"
                     + (f", l2 adversarial training (`pgd-l2`) {fmt_pct(l2['pgd-l2'][e])}." if e in l2.get("pgd-l2", {})
                        else "."))
    if "standard" in l2 and eps_all and l2["standard"].get(eps_all[0], 0) > 0.5:
        text += (f" On MNIST even the standard model needs an l2 change of more than ε {eps_all[0]:g} on most "
                 f"images (it keeps {fmt_pct(l2['standard'][eps_all[0]])} there): no model here is fooled by an "
                 "invisible l2 change; what differs is *how large* and *what* the change must be.")
    return text


# ------------------------------------------------------------------------ gradients


def gradients_guidance(dataset: str) -> Optional[str]:
    """Markdown for the Gradients page: the cards' Gini (how concentrated the gradient is)
    and alpha_dx (how well it points at another class's image) per model. None without
    such numbers."""
    grad = inequality_numbers(dataset, "gradient")
    means = alignment_means(dataset)
    if not grad and not means:
        return None
    lines = []
    if grad:
        lines.append("**How concentrated** (model cards, mean Gini of the true class's gradient; 0: spread evenly, "
                     "1: one pixel): " + ", ".join(f"{_code(n)} {v['mean_global_gini']:.3f}" for n, v in grad.items())
                     + ".")
    if means:
        lines.append("**How well it points at the nearest image of another class** (mean α_dx, Alignment page): "
                     + ", ".join(f"{_code(n)} {_f3(v)}" for n, v in means.items()) + ".")
    cards = shipped_cards(dataset)
    linf = [n for n in means if _is_linf_trained(cards[n]) and n != "igd"]
    std = means.get("standard")
    worse = [n for n in linf if n in means and std is not None and means[n] < std]
    if worse and dataset.startswith("mnist"):
        lines.append("So on MNIST the l∞-trained models' gradients (" + _join([_code(n) for n in worse])
                     + ") look cleaner: they are zero on the black background and sit on the digit's own strokes. "
                       "But they point *less* toward another digit than the standard model's (lower α_dx). The "
                       "highest α_dx: " + _join([_code(n) for n in list(means)[:3]]) + ".")
    return "\n\n".join(lines)


def below_standard_note(means: Mapping[str, float]) -> str:
    """A sentence for a live alignment result: which l_inf-trained models (by their cards)
    have a mean alpha_dx at or below the standard model's, unlike the paper's PGD model, and
    why; ``""`` when there are none, or no model named ``standard`` among ``means``.

    Args:
        means: model name (``"mnist-5k/pgd-linf"``) -> mean alpha_dx of this result.
    """
    std = next((n for n in means if n.split("/", 1)[-1] == "standard"), None)
    if std is None:
        return ""
    below = []
    for n, v in means.items():
        try:
            card = zoo.get_card(n)
        except KeyError:
            continue
        if n != std and _is_linf_trained(card) and card.method != "igd" and float(v) <= float(means[std]):
            below.append(n.split("/", 1)[-1])
    if not below:
        return ""
    return (" Here " + _join([_code(n) for n in below]) + (" lies" if len(below) == 1 else " lie")
            + f" at or below `standard` ({_f3(means[std])}), unlike the paper's PGD model: an l∞-trained MNIST "
              "model's gradient is zero on the black background, where the residual draws the other digit's new "
              "strokes (see **What am I looking at?** above).")


def target_eps_summary(min_eps: Mapping[str, Sequence[float]], *, eps_max: float) -> str:
    """A sentence for the smallest-eps view: per model, the median smallest eps over the
    targets it reached, its range, and how many targets no eps of the grid reached.

    Args:
        min_eps: model name -> the smallest reaching eps of each target (NaN: none), e.g.
            :attr:`gradviz.attacks.TargetEpsSearch.min_eps` without the image's own class.
        eps_max: the grid's largest eps.
    """
    parts = []
    for n, values in min_eps.items():
        v = [float(e) for e in values]
        hit = sorted(e for e in v if math.isfinite(e))
        missed = len(v) - len(hit)
        if hit:
            mid = len(hit) // 2
            median = hit[mid] if len(hit) % 2 else 0.5 * (hit[mid - 1] + hit[mid])
            text = f"{_code(n.split('/', 1)[-1])} median ε **{median:g}** ({hit[0]:g} to {hit[-1]:g})"
        else:
            text = f"{_code(n.split('/', 1)[-1])} none"
        if missed:
            text += f", {missed} not reached by ε {eps_max:g}"
        parts.append(text)
    return "Smallest l2 ε that reaches a target: " + "; ".join(parts) + "."
