"""Attack: PGD on one image, accuracy-vs-eps curves with eps50, and the perceptually aligned
gradients view.

UI only: read the widgets, call gradviz.attacks (through gradviz.ui.attack_cache), draw
gradviz.viz.attack.
"""

import math

import pandas as pd
import streamlit as st

from gradviz import findings, ui, zoo
from gradviz.viz.attack import accuracy_vs_eps_figure, attack_panels_figure, loss_trace_figure, pag_grid_figure
from gradviz.viz.common import short_model_name
from gradviz.viz.export import attack_to_npz, curves_to_csv, sweep_to_npz
from gradviz.attacks import PAG_EPS, PAG_STEPS, TARGET_EPS_GRID, TARGET_EPS_STEPS, eps50, format_eps50
from gradviz.ui.attack_cache import cached_accuracy_curve, cached_attacks, cached_sweeps, parse_eps_grid
from gradviz.ui.pag_cache import cached_target_eps

ui.require_app_entry()  # opened by its URL on a fresh server: run through app.py's frame

NORMS = {"linf": "l∞ (max per pixel)", "l2": "l2 (Euclidean)"}
CHART_CONFIG = {"displaylogo": False}

st.title("Adversarial attacks (PGD)")
st.markdown(
    "Projected gradient descent changes an image, within a budget **ε**, to make the model "
    "wrong (or, with a target class, to make it say that class). Compare how far each model "
    "has to be pushed, and **what the change looks like**."
)
measured = findings.robustness_guidance(ui.sidebar_state().dataset)  # the shipped models' cards, read now
with st.expander("What am I looking at? What should I look for?", icon=":material/school:"):
    st.markdown(
        """
**The attack.** PGD (Madry et al. 2018) takes `steps` small steps up the model's loss, each
along the sign of the input gradient (l∞) or along the gradient itself (l2), and after each
step pulls the image back into the ε-ball around the original and into the [0, 1] pixel
range. ε is in pixel units: l∞ ε = 0.3 lets every pixel change by up to 0.3 (on a 0–1 scale).
Madry et al. found that training on such attacks makes an MNIST model hold at ε 0.3, where
a standard model fails.
"""
    )
    if measured:
        st.markdown(measured)
    st.markdown(
        """
**What to look for.**
- A *standard* model flips within ε: its loss shoots up in a few steps.
- A *robust* (`pgd-linf`) model holds on most images: its loss rises slowly, if at all.
- Where does the perturbation sit, on the digit's strokes or over the background? Both are
  bounded by ε per pixel; compare where each model lets the attack work.
- The perturbation panel is **amplified** (the factor is in its title): the real change is
  that much fainter. Hover over a pixel to read the actual value.

**Accuracy vs ε** shows, over many test images, how accuracy falls as ε grows. **ε50** is
where it crosses 50 % (median robustness): larger is more robust.
"""
    )

inputs = ui.page_inputs()
state, ds, models = inputs.state, inputs.dataset, inputs.models
names, versions = inputs.names, inputs.versions
rgb = int(ds.x.shape[1]) == 3
classes = list(ds.classes)


def eps_slider(norm: str, *, key: str, label: str = "ε") -> float:
    """ε in pixel units; l∞ on RGB data is chosen in /255."""
    if norm == "linf" and rgb:
        return st.slider(f"{label} (l∞, /255)", 0, 64, 8, key=f"{key}_linf255") / 255.0
    if norm == "linf":
        return float(st.slider(f"{label} (l∞, pixel units)", 0.0, 1.0, 0.3, 0.01, key=f"{key}_linf"))
    return float(st.slider(f"{label} (l2, pixel units)", 0.0, 10.0, 0.5 if rgb else 2.0, 0.1, key=f"{key}_l2"))


with st.container(border=True):
    c_img, c_attack, c_more = st.columns(3, gap="large")
    with c_img:
        index = int(st.number_input(f"Test image (0 to {len(ds) - 1})", 0, len(ds) - 1, 0, key="atk_index"))
        label = int(ds.y[index])
        st.caption(f"test #{index} · label **{classes[label]}**")
        target = st.selectbox("Target class", [None, *range(len(classes))], key="atk_target",
                              format_func=lambda k: "none (untargeted)" if k is None else classes[k],
                              help="Untargeted: move away from the label. Targeted: toward this class "
                                   "(it must differ from the label).")
    with c_attack:
        norm = st.radio("Norm", list(NORMS), format_func=NORMS.get, key="atk_norm", horizontal=True)
        eps = eps_slider(norm, key="atk_eps")
        steps = int(st.slider("Steps", 1, 200, 40, key="atk_steps"))
    with c_more:
        unit = 255.0 if (norm == "linf" and rgb) else 1.0
        step_in = st.number_input("Step size (0: the default 2.5 · ε / steps)", 0.0, 64.0 if unit > 1 else 10.0,
                                  0.0, 0.001 if unit == 1 else 0.5, format="%.4f", key="atk_step",
                                  help="In the units of ε." + (" (/255)" if unit > 1 else ""))
        random_start = st.toggle("Random start", False, key="atk_random",
                                 help="Start at a random point of the ε-ball (off: step 0 is the image itself).")
        seed = int(st.number_input("Seed", 0, 2**31 - 1, 0, key="atk_seed", disabled=not random_start))

x = ds.x[index : index + 1]
settings = dict(eps=eps, norm=norm, steps=steps, step_size=(step_in / unit) or None,
                random_start=random_start, seed=seed, target=target)
results = None  # no attack to show: the rest of the page stays
if target is not None and target == label:
    st.warning(f"Test image #{index} is labelled **{classes[label]}**, the target class: a targeted attack toward "
               "an image's own label has nothing to do. Choose another target class, or none for an untargeted "
               "attack. The sections below do not depend on the target.", icon=":material/block:")
else:
    try:
        with st.spinner("Attacking…"):
            results = cached_attacks(names, state.device, versions, x.numpy(), label, settings, f"test #{index}")
    except ValueError as err:
        st.error(f"The attack on test image #{index} could not run: {err}", icon=":material/error:")


if results is not None:
    fig = attack_panels_figure(
        x[0], {n: r.x_adv[0] for n, r in results.items()}, label=label, target=target,
        before={n: r.prediction() for n, r in results.items()},
        after={n: r.prediction(after=True) for n, r in results.items()}, class_names=classes,
    )
    st.plotly_chart(fig, width="content", theme=None, key="atk_chart", config=CHART_CONFIG)
    ui.download_buttons(fig, lambda: attack_to_npz(results), stem="attack", key="atk",
                        data_help="NumPy .npz: x, labels, x_adv, probs_before/after, and per PGD step loss, norm, "
                                  "logits; settings (gradviz.viz.export.attack_to_npz).")
    eps_shown = f"{eps * 255:g}/255" if unit > 1 else f"{eps:g}"
    st.dataframe(pd.DataFrame([{"model": n, **r.table_row(classes)} for n, r in results.items()]),
                 hide_index=True, key="atk_table")
    st.plotly_chart(loss_trace_figure({n: r.trace.loss[:, 0] for n, r in results.items()}, targeted=target is not None),
                    width="stretch", theme=None, key="atk_loss", config=CHART_CONFIG)
    st.caption(f"{NORMS[norm].split()[0]} PGD, ε = {eps_shown}, {steps} steps of "
               f"{results[names[0]].settings['step_size'] * unit:.4g}"
               + (" (/255)" if unit > 1 else "") + ", " + ("random start" if random_start else "no random start")
               + ". The loss is the cross-entropy w.r.t. " + ("the target." if target is not None else "the label."))

# ------------------------------------------------------------------- accuracy vs eps
st.header("Accuracy vs ε", divider="gray")
st.markdown("Untargeted PGD on the first test images at each ε of a grid. An image counts as "
            "robust at ε when it is classified correctly clean and after the attacks at every "
            "ε' ≤ ε. Computed on request (it takes a while on a CPU) and kept for later.")
g1, g2, g3 = st.columns(3, gap="large")
n_images = int(g1.slider("Test images", 50, len(ds), min(200, len(ds)), 50, key="atk_curve_n"))
default_grid = ("0, 2, 4, 6, 8, 12, 16" if rgb else "0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4") \
    if norm == "linf" else ("0, 0.25, 0.5, 1, 1.5, 2" if rgb else "0, 0.5, 1, 1.5, 2, 2.5, 3, 4")
grid_text = g2.text_input(f"ε grid ({'/255' if unit > 1 else 'pixel units'}, {NORMS[norm].split()[0]})",
                          default_grid, key=f"atk_grid_{norm}{'_rgb' if rgb else ''}",
                          help="Radii separated by commas; the norm is the one chosen above.")
curve_steps = int(g3.slider("Steps per attack", 5, 100, 20, 5, key="atk_curve_steps",
                            help="PGD steps at each ε (step size 2.5 · ε / steps, random start)."))
grid, problems = parse_eps_grid(grid_text, scale=unit, limit=255.0 if unit > 1 else (1.0 if norm == "linf" else 1e6))
for p in problems:
    st.error(f"ε grid: {p}.", icon=":material/error:")
request = (state.dataset, names, state.device, n_images, tuple(grid), norm, curve_steps)
if st.button("Compute the curves", key="atk_curve_go", icon=":material/play_arrow:", disabled=not grid):
    st.session_state["atk_curve_request"] = request
if grid and st.session_state.get("atk_curve_request") == request:
    curves = {n: cached_accuracy_curve(n, state.device, v, state.dataset, n_images, tuple(grid), norm, curve_steps)
              for n, v in zip(names, versions)}
    e50 = {n: eps50(grid, c) for n, c in curves.items()}
    cfig = accuracy_vs_eps_figure(grid, curves, norm=norm, eps50=e50, per_255=unit > 1,
                                  title=f"Accuracy under PGD ({NORMS[norm].split()[0]}, {curve_steps} steps, "
                                        f"{n_images} test images)")
    st.plotly_chart(cfig, width="stretch", theme=None, key="atk_curve_chart", config=CHART_CONFIG)
    e50_col = f"ε50 ({'/255' if unit > 1 else 'pixel units'})"
    st.dataframe(pd.DataFrame([
        {"model": n, f"accuracy at ε {grid[0] * unit:g}": f"{100 * c[0]:.1f} %",
         f"accuracy at ε {grid[-1] * unit:g}": f"{100 * c[-1]:.1f} %",
         e50_col: format_eps50(e50[n], grid, c, scale=unit)}
        for n, c in curves.items()]), hide_index=True, key="atk_eps50_table")
    if not all(math.isfinite(v) for v in e50.values()):
        st.caption("ε50 is a number only where the curve crosses 50 % inside the grid; elsewhere the table says on "
                   "which side of the grid it lies (widen the grid to measure it) and the chart marks no ε50.")
    ui.download_buttons(cfig, lambda: curves_to_csv(grid, curves, e50), stem="accuracy_vs_eps", key="atk_curve",
                        data_format="csv", data_help="CSV: eps, then the accuracy (0 to 1) of each model; a last "
                                                     "row eps50 (nan: the curve does not cross 50 % inside the grid).")
elif grid:
    st.info("Press **Compute the curves** (again after changing the settings).", icon=":material/info:")

# ----------------------------------------------------- perceptually aligned gradients
st.header("Perceptually aligned gradients", divider="gray")
st.markdown(
    "From the image above, a **targeted l2 attack toward every class**, one row per model. The papers "
    "(Santurkar et al. 2019; Ganz, Kawar & Elad): a model whose gradients are *perceptually aligned* (a robust "
    "one, or one trained for it) can only be convinced by changes that look like the target class, so the image "
    "**turns into that class** (a 3 into an 8, a cat into a dog); a standard model is convinced by changes that "
    "look like streaks and noise.\n\n"
    "A large enough ε lets every model reach every target, a standard one included, whose images then show the "
    "target class too. So by default each panel shows the image at the **smallest ε** of a grid that makes the "
    "model predict the target, with that ε above it: compare how large it is, and **what the change looks like "
    "at that point**, row by row."
)
pag_measured = findings.pag_guidance(state.dataset)
with st.expander("What gradviz measured, and why a robust model's row may barely change", icon=":material/school:"):
    if pag_measured:
        st.markdown(pag_measured)
    st.markdown(
        "An MNIST model trained against l∞ attacks often learns to *threshold* its input: dark "
        "pixels below a level are ignored. Its gradient is then zero on the black background, "
        "so the attack can only dim or brighten the strokes that are already there: the images "
        "stay the original, faded, and some targets are never reached. That is a *masked* "
        "gradient, not an aligned one. Models trained against l2 attacks (`pgd-l2`), or with "
        "the PAG objective (`pag-cm`), show the effect best: compare the rows of `pgd-linf` and `pgd-l2`."
    )
pag_names = tuple(st.multiselect(
    "Models of this view", [c.name for c in zoo.list_models(state.dataset)],
    default=zoo.pag_view_models(state.dataset, names), key=f"atk_pag_models_{state.dataset}",
    help="The sidebar's models, the dataset's l2-trained model and its PAG model (robust or aligned models whose "
         "gradients are not masked).",
))
if not pag_names:
    st.warning("Choose at least one model for this view.", icon=":material/arrow_upward:")
    st.stop()
pag_versions = tuple(ui.model_version(n) for n in pag_names)
PAG_MODES = {"smallest": "the smallest ε that reaches it", "fixed": "one fixed ε for all"}
p0, p1, p2 = st.columns(3, gap="large")
pag_mode = p0.radio("Show each target at", list(PAG_MODES), format_func=PAG_MODES.get, key="atk_pag_mode",
                    help="Smallest ε: every ε of the grid is tried (one batch per model) and each panel shows the "
                         "image at the first ε where the model predicts the target. Fixed ε: the papers' view, one "
                         "large ε for every target.")
if pag_mode == "smallest":
    pag_grid_text = p1.text_input("Radii to try (l2, pixel units)", ", ".join(f"{e:g}" for e in TARGET_EPS_GRID),
                                  key="atk_pag_grid", help=f"Radii separated by commas. This image's own l2 norm "
                                                           f"is {float(x.flatten().norm()):.1f}; every radius costs "
                                                           "one attack per class.")
    pag_grid, pag_problems = parse_eps_grid(pag_grid_text)
    for p in pag_problems:
        st.error(f"Radii to try: {p}.", icon=":material/error:")
    pag_eps = None
else:
    pag_eps = float(p1.slider("ε (l2, pixel units)", 0.5, 10.0, float(PAG_EPS), 0.5, key="atk_pag_eps"))
    pag_grid = []
if pag_mode == "smallest":  # every radius is one attack per class: fewer steps (the smallest ε did not change)
    pag_steps = int(p2.slider("Steps", 10, 200, TARGET_EPS_STEPS, 10, key="atk_pag_search_steps",
                              help=f"PGD steps of each attack (step 2.5 · ε / steps). {TARGET_EPS_STEPS}, 80 and 200 "
                                   "steps gave the same smallest ε for the shipped standard and pgd-l2 models on "
                                   "test #0 and #5."))
else:
    pag_steps = int(p2.slider("Steps", 10, 200, PAG_STEPS, 10, key="atk_pag_steps"))
pag_setting = tuple(pag_grid) if pag_mode == "smallest" else pag_eps
pag_request = (state.dataset, pag_names, state.device, index, pag_mode, pag_setting, pag_steps)
ready = pag_mode == "fixed" or bool(pag_grid)
if st.button("Attack toward every class", key="atk_pag_go", icon=":material/play_arrow:", disabled=not ready):
    st.session_state["atk_pag_request"] = pag_request
if ready and st.session_state.get("atk_pag_request") == pag_request:
    with st.spinner(f"{len(classes)} targeted attacks per model"
                    + (f" at each of {len(pag_grid)} radii…" if pag_mode == "smallest" else "…")):
        try:
            if pag_mode == "smallest":
                view = cached_target_eps(pag_names, state.device, pag_versions, x.numpy(), tuple(pag_grid), pag_steps)
                images, probs, min_eps = view.images, view.probs, view.min_eps
            else:
                images, probs = cached_sweeps(pag_names, state.device, pag_versions, x.numpy(), pag_eps, pag_steps)
                view, min_eps = None, None
        except (KeyError, ValueError, RuntimeError) as err:  # a model that does not load or fit
            st.error(f"The targeted attacks failed: {err}", icon=":material/error:")
            st.stop()
    if view is not None:
        pag_title = (f"Targeted l2 PGD toward each class at the smallest ε that reaches it · grid up to "
                     f"{pag_grid[-1]:g} · {pag_steps} steps · test #{index}")
    else:
        pag_title = f"Targeted l2 PGD toward each class · ε {pag_eps:g} · {pag_steps} steps · test #{index}"
    pfig = pag_grid_figure(images, classes, x=x[0], probs=probs, eps=min_eps,
                           eps_max=pag_grid[-1] if pag_grid else None, title=pag_title)
    st.plotly_chart(pfig, width="content", theme=None, key="atk_pag_chart", config=CHART_CONFIG)
    others = [k for k in range(len(classes)) if k != label]
    if view is not None:
        summary = findings.target_eps_summary(
            {n: [view.min_eps[n][k] for k in others] for n in pag_names}, eps_max=pag_grid[-1])
        st.caption(f"Test #{index} (label {classes[label]}), the {len(others)} other classes. " + summary
                   + " Each panel: the attacked image at that ε, and the model's probability of the target there.")
    else:
        st.caption(f"Test #{index}, the {len(others)} other classes, ε {pag_eps:g}: "
                   + "; ".join(f"{short_model_name(n)} gives {sum(float(probs[n][k]) >= 0.5 for k in others)} of them "
                               f"≥ 50 %" for n in pag_names)
                   + ". At a large ε most models reach most targets: switch to **the smallest ε that reaches it** to "
                     "see what each model needs.")
    settings = ({"mode": "smallest", "eps_grid": list(pag_grid), "steps": pag_steps, "index": index}
                if view is not None else {"mode": "fixed", "eps": pag_eps, "steps": pag_steps, "index": index})
    ui.download_buttons(pfig, lambda: sweep_to_npz(
        x[0], images, range(len(classes)), settings, probs=probs, min_eps=min_eps,
        eps_grid=view.eps_grid if view is not None else None, reached=view.reached if view is not None else None),
        stem="perceptually_aligned", key="atk_pag",
        data_help="NumPy .npz: x, model_names, classes, images (model x target class), probs, settings; in the "
                  "smallest-ε view also min_eps (NaN: not reached), eps_grid and reached (model x class x ε) "
                  "(gradviz.viz.export.sweep_to_npz).")
else:
    st.info("Press **Attack toward every class** (again after changing the image or the settings).",
            icon=":material/info:")
