"""Alignment: does a model's gradient point toward the closest image of another class?
GAN residuals, alpha_dx and alpha_x (docs/methods.md section 1, Bigolin Lanfredi et al.).

UI only: read the widgets, call gradviz (through gradviz.ui.alignment_cache), draw
gradviz.viz.alignment.
"""

import streamlit as st

from gradviz import findings, ui
from gradviz.alignment import background_share
from gradviz.generative import DEFAULT_STEPS, FAST_STEPS
from gradviz.viz.alignment import alpha_histogram_figure, alpha_scatter_figure, residual_figure
from gradviz.viz.common import short_model_name
from gradviz.viz.export import residual_figure_to_npz
from gradviz.viz.style import model_colours
from gradviz.ui.alignment_cache import (
    cached_generator,
    dataset_alignment,
    find_generator,
    image_alignment,
    stored_alignment,
)
from gradviz.ui.widgets import parse_indices

ui.require_app_entry()  # opened by its URL on a fresh server: run through app.py's frame

CHART_CONFIG = {"displaylogo": False}
DATASET_NPZ_HELP = ("NumPy .npz, per image and model: indices, labels, targets (the closest class), alpha_dx, "
                    "alpha_x, alpha_dx_true and cos_true where the true residual is known; settings.")
MAX_ROWS = 8
STEP_CHOICES = {
    "fast": f"{FAST_STEPS[0]} + {FAST_STEPS[1]} (fast)",
    "paper": f"{DEFAULT_STEPS[0]} + {DEFAULT_STEPS[1]} (the paper's)",
    "custom": "Custom",
}
TARGETS = {"closest": "Closest class of a model", "class": "A fixed class"}

st.title("Gradient alignment")
st.markdown(
    "Does a model's input gradient point toward **the nearest image of another class**? A "
    "class-conditional GAN finds, for each image, the closest image it can generate of the class the "
    "model would most easily switch to; the difference is the **residual** dx̂. We compare each model's "
    "gradient with it (Bigolin Lanfredi, Schroeder and Tasdizen)."
)
measured = findings.alignment_guidance(ui.sidebar_state().dataset)  # the shipped models' cards, read now
with st.expander("What am I looking at? What should I look for?", icon=":material/school:"):
    st.markdown(
        """
**The residual dx̂.** For an image x of class y and another class c, the generator G(z, c) draws
images of class c. We search for the z whose image G(z, c) is closest to x (Adam steps on
the squared error, then a few more with a penalty that keeps z ordinary: Eqs. 15-16 of the
paper). Then dx̂ = G(z*, c) − x is the smallest change that turns x into a member of class c,
*as far as the generator knows*: x + dx̂ should look like a plausible c that still resembles x.

**Which class c?** The *closest inaccurate class* c̃ of a model (Eq. 5): the class whose
decision boundary is nearest to x if the model were linear, (d_y − d_c) / |∇d_y − ∇d_c|.

**α_dx** (Eq. 8) is the cosine between the model's gradient ∇ₓ(d_c̃ − d_y), the direction that
makes c̃ more likely fastest, and the residual dx̂. 1: the gradient points straight at the
nearest c̃; 0: no relation. **α_x** (Etmann et al.) is |cos(x, ∇ₓ loss)|, how much the gradient
looks like the image itself: a baseline.

**The paper's finding** (MNIST, mean α_dx): a model trained with the alignment penalty
L_α reaches **0.575**, a PGD adversarially trained model **0.169**, a standard model **0.078**
(α_x: 0.319, 0.040, 0.045). Adversarial training makes the gradient point toward the closest
image of another class, and L_α does so directly.
"""
    )
    st.markdown(measured or "**What gradviz measured:** no shipped model card of this dataset holds alignment "
                           "numbers (`metrics[\"alignment\"]`), so there is nothing to compare with the paper here.")
    st.markdown(
        """
**What to look for.**
- In the figure, does x + dx̂ look like a digit of the target class? If not, the generator is
  the weak link and α_dx means little for that image.
- Compare each model's gradient map with dx̂: the more alike (red where dx̂ is red, blue where it
  is blue), the higher α_dx. Where dx̂ draws a new stroke on the black background, a gradient
  that is blank there cannot follow it (the figure's caption gives each model's share on the
  background).
- Over the test split: whose histogram lies right of `standard`'s? Compare with the measured
  order above, not only with the paper's.
- On `squares` the exact residual is known (the other class's square minus this one): the
  cos(dx̂, dx true) column says how good the generator's residuals are (the authors: 0.61
  on 32-pixel squares).
"""
    )

inputs = ui.page_inputs()
state, ds, models = inputs.state, inputs.dataset, inputs.models
found = find_generator(state.dataset)
if found is None:
    st.error(
        f"**No generator for the dataset {state.dataset!r}.** This page needs a class-conditional GAN of the "
        f"dataset to compute the residuals dx̂. Shipped generators exist for mnist-5k and squares; train one "
        f"for {state.dataset} with `python -m gradviz train-gan --dataset {state.dataset}`, or choose another "
        f"dataset in the sidebar.", icon=":material/error:")
    st.stop()
gen_path, gen_version = found
try:
    generator = cached_generator(gen_path, gen_version)
except (ValueError, KeyError, OSError, RuntimeError) as err:
    st.error(f"The generator {gen_path} could not be loaded: {err}", icon=":material/error:")
    st.stop()
names, versions = inputs.names, inputs.versions
colours = model_colours(names)
classes = list(ds.classes)
has_true = "residual" in (getattr(ds, "extras", None) or {})

with st.container(border=True):
    c_img, c_target, c_steps = st.columns(3, gap="large")
    text = c_img.text_input("Test images", "0-3", key="align_indices",
                            help=f"Indices into the test split (0 to {len(ds) - 1}): a list like '0, 5, 17' or a "
                                 f"range like '0-3'; at most {MAX_ROWS} images (one row each).")
    indices, problems = parse_indices(text, len(ds), limit=MAX_ROWS)
    mode = c_target.radio("Residual toward", list(TARGETS), format_func=TARGETS.get, key="align_target",
                          horizontal=True,
                          help="The class the residual moves each image into; every model's gradient is taken "
                               "toward the same class, so the columns compare.")
    if mode == "closest":
        chooser = c_target.selectbox("Closest class (Eq. 5) under", names, key="align_chooser",
                                     format_func=short_model_name)
        target_key = f"closest:{chooser}"
    else:
        fixed = int(c_target.selectbox("Class", range(len(classes)), key="align_class",
                                       format_func=lambda k: str(classes[k])))
        target_key = f"class:{fixed}"
    preset = c_steps.radio("Projection steps (Adam, free + penalised)", list(STEP_CHOICES),
                           format_func=STEP_CHOICES.get, key="align_steps",
                           help="The paper projects with 600 + 150 Adam steps. Half as many gave residuals with "
                                "mean cosine 0.995 to the paper's on 1,000 mnist-5k test images, at half the "
                                "compute. Residuals are stored on disk per setting and reused.")
    if preset == "custom":
        s1c, s2c = c_steps.columns(2)
        steps = (int(s1c.number_input("Free steps", 0, 3000, FAST_STEPS[0], 25, key="align_s1")),
                 int(s2c.number_input("Penalised steps", 0, 1000, FAST_STEPS[1], 5, key="align_s2")))
    else:
        steps = FAST_STEPS if preset == "fast" else DEFAULT_STEPS
    if preset == "fast":
        c_steps.caption("Measured: mean cos 0.995 with the paper's 600 + 150 residual, at half the compute.")
for p in problems:
    st.error(f"Indices: {p}.", icon=":material/error:")
if sum(steps) < 1:
    st.error("The projection needs at least one step.", icon=":material/error:")
    st.stop()
if not indices:
    st.warning("Give at least one test index.", icon=":material/warning:")
    st.stop()

# ----------------------------------------------------------------------- chosen images
st.header("Residuals and gradients", divider="gray")
if mode == "class":
    own = [i for i in indices if int(ds.y[i]) == fixed]
    if own:
        st.warning(
            f"{', '.join(f'Test #{i}' for i in own)} {'has' if len(own) == 1 else 'have'} the label "
            f"**{classes[fixed]}**: a residual toward the image's own class is not defined (it moves an image "
            f"into *another* class), so {'it is' if len(own) == 1 else 'they are'} left out. Choose another "
            f"class, or the closest class of a model.", icon=":material/warning:")
        indices = [i for i in indices if int(ds.y[i]) != fixed]
        if not indices:
            st.stop()
try:
    with st.spinner(f"Projecting {len(indices)} image(s) onto the generator ({steps[0]} + {steps[1]} steps)…"):
        ia = image_alignment(names, state.device, versions, state.dataset, tuple(indices), target_key, gen_path,
                             gen_version, tuple(steps))
except (ValueError, RuntimeError) as err:
    st.error(f"The residuals could not be computed: {err}", icon=":material/error:")
    st.stop()
rows = [f"test #{i}" for i in ia.indices]
what = (f"the closest class of {short_model_name(chooser)}" if mode == "closest" else f"class {classes[fixed]}")
fig = residual_figure(ia.x, ia.dx_hat, ia.gradients, targets=ia.targets, labels=ia.labels, dx_true=ia.dx_true,
                      alphas=ia.alpha_dx, cos_true=ia.cos_true, class_names=classes, row_names=rows,
                      title=f"GAN residual toward {what} and each model's gradient toward it")
st.plotly_chart(fig, width="content", theme=None, key="align_figure_chart", config=CHART_CONFIG)
ui.download_buttons(fig, lambda: residual_figure_to_npz(
    ia.x, ia.dx_hat, ia.gradients, targets=ia.targets, labels=ia.labels, indices=ia.indices, dx_true=ia.dx_true,
    alphas=ia.alpha_dx, settings={"dataset": state.dataset, "target": target_key, "steps": list(steps),
                                  "generator": generator.gradviz_info.get("fingerprint")}),
    stem="alignment_residuals", key="align_fig",
    data_help="NumPy .npz: x, dx_hat, indices, labels, targets, model_names, gradients (signed, unscaled), "
              "alpha_dx, dx_true where known, settings (gradviz.viz.export.residual_figure_to_npz).")
st.caption(
    "Signed maps (dx̂" + (", the true dx" if has_true else "") + " and the gradients) are summed over channels "
    "and each divided by its own largest |value| (a display step): compare directions, not sizes. "
    "α_dx is the cosine of the gradient with dx̂ over all pixels. Each model's own closest class: "
    + "; ".join(f"{short_model_name(n)} " + ", ".join(str(classes[int(c)]) for c in ia.closest[n]) for n in names)
    + ".")
if float((ia.x <= 0).all(axis=1).mean()) >= 0.3:  # a black background (MNIST), not squares' noise
    shares = {n: float(background_share(ia.gradients[n], ia.x).mean()) for n in names}
    st.caption(
        f"Black background: {100 * float((ia.x <= 0).all(axis=1).mean()):.0f} % of the pixels of the images shown. "
        "Share of each gradient's squared magnitude there: "
        + ", ".join(f"{short_model_name(n)} {100 * v:.0f} %" for n, v in shares.items())
        + ". A gradient with no share there cannot follow a residual that draws a new stroke on the background.")

# ------------------------------------------------------------------ over the test split
st.header("Over the test split", divider="gray")
st.markdown(
    "α_dx and α_x of every model on the first n test images, each model with **its own** closest class c̃ "
    "and the residual toward it (as in the paper). Residuals are computed once and stored on disk "
    "(per generator and projection setting); a pair needed by several models is projected once. On a CPU "
    f"this takes a while the first time ({steps[0]} + {steps[1]} steps per image and class).")
with st.form("align_form", border=True):
    n_images = int(st.number_input("Test images (the first n)", 1, len(ds), min(300, len(ds)), 10,
                                   key="align_n", help=f"At most the whole test split ({len(ds)})."))
    submitted = st.form_submit_button("Compute", icon=":material/play_arrow:", key="align_go")
request = (state.dataset, names, versions, state.device, n_images, tuple(steps), gen_path, gen_version)
if submitted:
    st.session_state["align_request"] = request
try:
    if st.session_state.get("align_request") == request:
        res = dataset_alignment(names, state.device, versions, state.dataset, n_images, gen_path=gen_path,
                                gen_version=gen_version, steps=tuple(steps))
    else:  # stored results of these settings (the shipped models' defaults ship) draw at once
        res = stored_alignment(names, state.device, versions, state.dataset, n_images, gen_path=gen_path,
                               gen_version=gen_version, steps=tuple(steps))
except (ValueError, RuntimeError) as err:
    st.error(f"The computation failed: {err}", icon=":material/error:")
    st.stop()
if res is not None:
    table = res.table()
    st.dataframe(table, hide_index=True, key="align_table")
    order = " > ".join(table.sort_values("mean α_dx", ascending=False)["model"].tolist())
    live = {n: float(v.mean()) for n, v in res.alpha_dx.items()}
    st.caption(f"{res.n_images} test images; projection {steps[0]} + {steps[1]} steps. Ordered by mean α_dx: "
               f"{order}. The paper (MNIST): L_α 0.575 > PGD 0.169 > standard 0.078."
               + findings.below_standard_note(live)
               + (" cos(dx̂, dx true): the generator's residual against the exact one (the authors: 0.61 on 32-px "
                  "squares)." if res.cos_true is not None else ""))
    row = st.container(horizontal=True, gap="small")
    row.download_button("Numbers per image (CSV)", res.to_csv, file_name="alignment.csv", mime="text/csv",
                        key="align_csv", icon=":material/download:", on_click="ignore")
    row.download_button("Means (CSV)", lambda: table.to_csv(index=False).encode("utf-8"),
                        file_name="alignment_means.csv", mime="text/csv", key="align_means_csv",
                        icon=":material/download:", on_click="ignore")
    hfig = alpha_histogram_figure(res.alpha_dx, colours=colours,
                                  title=f"α_dx per test image ({res.n_images} images, each model's closest class)")
    st.plotly_chart(hfig, width="stretch", theme=None, key="align_hist_chart", config=CHART_CONFIG)
    ui.download_buttons(hfig, res.to_npz, stem="alignment_histogram", key="align_hist", data_help=DATASET_NPZ_HELP)
    sfig = alpha_scatter_figure(res.alpha_dx, res.alpha_x, indices=res.indices, colours=colours,
                                title=f"α_dx against α_x ({res.n_images} images)")
    st.plotly_chart(sfig, width="stretch", theme=None, key="align_scatter_chart", config=CHART_CONFIG)
    ui.download_buttons(sfig, res.to_npz, stem="alignment_scatter", key="align_scatter", data_help=DATASET_NPZ_HELP)
else:
    st.info("Press **Compute**: these models and settings have no stored results yet (the shipped models' results "
            "for the default settings ship with gradviz and show at once).", icon=":material/info:")
