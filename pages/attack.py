"""Attack: PGD on one image, accuracy-vs-eps curves with eps50, and the perceptually aligned
gradients view.

UI only: read the widgets, call gradviz.attacks (through gradviz.ui.attack_cache), draw
gradviz.viz.attack.
"""

import math

import pandas as pd
import streamlit as st
import torch

from gradviz import ui, zoo
from gradviz.viz.attack import accuracy_vs_eps_figure, attack_panels_figure, loss_trace_figure, pag_grid_figure
from gradviz.viz.export import attack_to_npz, curves_to_csv, sweep_to_npz
from gradviz.attacks import PAG_EPS, PAG_STEPS, eps50, format_eps50
from gradviz.ui.attack_cache import cached_accuracy_curve, cached_attacks, cached_sweeps, parse_eps_grid

ui.require_app_entry()  # opened by its URL on a fresh server: run through app.py's frame

NORMS = {"linf": "l∞ (max per pixel)", "l2": "l2 (Euclidean)"}
CHART_CONFIG = {"displaylogo": False}

st.title("Adversarial attacks (PGD)")
st.markdown(
    "Projected gradient descent changes an image, within a budget **ε**, to make the model "
    "wrong (or, with a target class, to make it say that class). Compare how far each model "
    "has to be pushed, and **what the change looks like**."
)
with st.expander("What am I looking at? What should I look for?", icon=":material/school:"):
    st.markdown(
        """
**The attack.** PGD (Madry et al. 2018) takes `steps` small steps up the model's loss, each
along the sign of the input gradient (l∞) or along the gradient itself (l2), and after each
step pulls the image back into the ε-ball around the original and into the [0, 1] pixel
range. ε is in pixel units: l∞ ε = 0.3 lets every pixel change by up to 0.3 (on a 0–1 scale).

**What to look for.**
- A *standard* model usually flips with a perturbation that looks like faint noise; its
  loss shoots up in a few steps.
- A *robust* (`pgd-linf`) model needs more: its loss rises slowly, and what the attack
  changes looks like strokes — ink added or erased where another digit would have it.
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


def pred(p: torch.Tensor) -> tuple[int, float]:
    return int(p.argmax()), float(p.max())


if results is not None:
    fig = attack_panels_figure(
        x[0], {n: r.x_adv[0] for n, r in results.items()}, label=label, target=target,
        before={n: pred(r.probs_before[0]) for n, r in results.items()},
        after={n: pred(r.probs_after[0]) for n, r in results.items()}, class_names=classes,
    )
    st.plotly_chart(fig, width="content", theme=None, key="atk_chart", config=CHART_CONFIG)
    ui.download_buttons(fig, lambda: attack_to_npz(results), stem="attack", key="atk",
                        data_help="NumPy .npz: x, labels, x_adv, probs_before/after, and per PGD step loss, norm, "
                                  "logits; settings (gradviz.viz.export.attack_to_npz).")
    eps_shown = f"{eps * 255:g}/255" if unit > 1 else f"{eps:g}"
    rows = []
    for n, r in results.items():
        b, a = pred(r.probs_before[0]), pred(r.probs_after[0])
        d = r.delta[0].flatten()
        rows.append({"model": n, "before": f"{classes[b[0]]} ({100 * b[1]:.1f} %)",
                     "after": f"{classes[a[0]]} ({100 * a[1]:.1f} %)",
                     "attack succeeded": bool(r.success[0]), "|δ|∞": float(d.abs().max()), "|δ|2": float(d.norm())})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="atk_table")
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
    "From the image above, a **large-ε targeted l2 attack toward every class**, one row per "
    "model; the percentage is the model's probability of the target class. A model whose "
    "gradients are *perceptually aligned* can only be convinced by changes that look like the "
    "target class, so the image **turns into that digit**. A standard model is convinced by "
    "changes that look like streaks and noise. (Ganz, Kawar & Elad; Santurkar et al. 2019.)"
)
with st.expander("Why does a robust model's row sometimes barely change?", icon=":material/school:"):
    st.markdown(
        "An MNIST model trained against l∞ attacks often learns to *threshold* its input: dark "
        "pixels below a level are ignored. Its gradient is then zero on the black background, "
        "so the attack can only dim or brighten the strokes that are already there: the images "
        "stay the original, faded, and some targets are never reached. That is a *masked* "
        "gradient, not an aligned one. Models trained against l2 attacks (`pgd-l2`), or with "
        "the PAG objective, show the effect best: compare the rows of `pgd-linf` and `pgd-l2`."
    )
# The l2-trained models of the dataset join the sidebar's choice here: they show the effect.
dataset_cards = zoo.list_models(state.dataset)
dataset_models = [c.name for c in dataset_cards]
l2_models = [c.name for c in dataset_cards if c.norm == "l2" and c.name not in names]
pag_names = tuple(st.multiselect(
    "Models of this view", dataset_models, default=list(names) + l2_models, key=f"atk_pag_models_{state.dataset}",
    help="The sidebar's models and the dataset's l2-trained ones (robust models whose gradients are not masked).",
))
if not pag_names:
    st.warning("Choose at least one model for this view.", icon=":material/arrow_upward:")
    st.stop()
pag_versions = tuple(ui.model_version(n) for n in pag_names)
p1, p2 = st.columns(2, gap="large")
pag_eps = float(p1.slider("ε (l2, pixel units)", 0.5, 10.0, float(PAG_EPS), 0.5, key="atk_pag_eps"))
pag_steps = int(p2.slider("Steps", 10, 200, PAG_STEPS, 10, key="atk_pag_steps"))
pag_request = (state.dataset, pag_names, state.device, index, pag_eps, pag_steps)
if st.button("Attack toward every class", key="atk_pag_go", icon=":material/play_arrow:"):
    st.session_state["atk_pag_request"] = pag_request
if st.session_state.get("atk_pag_request") == pag_request:
    with st.spinner(f"{len(classes)} targeted attacks per model…"):
        try:
            images, probs = cached_sweeps(pag_names, state.device, pag_versions, x.numpy(), pag_eps, pag_steps)
        except (KeyError, ValueError, RuntimeError) as err:  # a model that does not load or fit
            st.error(f"The targeted attacks failed: {err}", icon=":material/error:")
            st.stop()
    pag_title = f"Targeted l2 PGD toward each class · ε {pag_eps:g} · {pag_steps} steps · test #{index}"
    pfig = pag_grid_figure(images, classes, x=x[0], probs=probs, title=pag_title)
    st.plotly_chart(pfig, width="content", theme=None, key="atk_pag_chart", config=CHART_CONFIG)
    ui.download_buttons(pfig, lambda: sweep_to_npz(x[0], images, range(len(classes)),
                                                   {"eps": pag_eps, "steps": pag_steps, "index": index}),
                        stem="perceptually_aligned", key="atk_pag",
                        data_help="NumPy .npz: x, model_names, classes, images (model x target class), settings "
                                  "(gradviz.viz.export.sweep_to_npz).")
else:
    st.info("Press **Attack toward every class** (again after changing the image or the settings).",
            icon=":material/info:")
