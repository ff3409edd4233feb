"""Gradients: each model's input-gradient map beside each chosen image.

UI only: read the widgets, call gradviz.gradients.compute_gradient_grid (through a cache),
draw gradviz.viz.gradients.gradient_grid_figure.
"""

import streamlit as st

from gradviz import findings, ui
from gradviz.viz.export import grid_to_npz
from gradviz.viz.gradients import gradient_grid_figure

ui.require_app_entry()  # opened by its URL on a fresh server: run through app.py's frame

st.title("Input gradients")
st.markdown(
    "Each row is one image; beside it, for every model, a map of **how the model's score "
    "for the target class changes when a pixel gets a little brighter**. "
    "**Red**: brighter raises the score, **blue**: brighter lowers it, white: no effect."
)
dataset_name = ui.sidebar_state().dataset
measured = findings.gradients_guidance(dataset_name)  # the shipped models' cards, read now
robustness = findings.linf_robustness(dataset_name)
with st.expander("What am I looking at? What should I look for?", icon=":material/school:"):
    std_e50 = (robustness.get("standard") or {}).get("eps50")
    st.markdown(
        """
**The input gradient.** A classifier gives each class a score (a *logit*). The gradient of
that score with respect to the input image has one number per pixel: how fast the score
rises (red) or falls (blue) if that pixel alone gets brighter. It is the model's local,
linear answer to "which pixels matter, and which way?".

**What the papers found.** A *standard* network's gradient looks like noise: scattered
pixels, many of them far from the object, and small changes along it flip the prediction
(adversarial examples). An adversarially trained network's gradient *looks like something*,
the object's features (Tsipras et al. 2019; Kim, Seo & Jeon): robust training makes the
gradient perceptually aligned.
"""
        + (f"""
On the shipped models the standard one does flip under small changes: its accuracy under an
l∞ PGD attack falls to 50 % at ε {std_e50:.3f} per pixel on the 0–1 scale (its card's ε50).
""" if std_e50 is not None else "")
    )
    if measured:
        st.markdown(measured)
    st.markdown(
        """
**What to look for.**
- Where does each gradient sit: scattered over the background, on the digit's strokes only,
  or where ink would be added to turn it into another digit?
- Compare the titles too: each model's prediction and confidence. A red title is a wrong
  prediction.

**Careful with the colours.** With *per-panel* scaling every map is stretched to its own
strongest pixel, so you compare *shapes*, not sizes. Choose *shared per row* to compare how
large the gradients of the models are, or *raw values* to see the actual numbers. Hover
over a pixel to read its value before scaling.

**Other methods.** *Integrated Gradients* averages gradients along a path from a black image;
*SmoothGrad* averages them over noisy copies (less speckle); *Input × Gradient* weights the
gradient by the pixel value (zero on the black background). With the *loss* as objective
the map points the other way: toward making the target class *less* likely.
"""
    )

inputs = ui.page_inputs()
state, ds, models = inputs.state, inputs.dataset, inputs.models

with st.container(border=True):
    col_images, col_method, col_display = st.columns(3, gap="large")
    with col_images:
        images = ui.image_picker(ds, key="grad")
    with col_method:
        method = ui.method_picker(ds.classes, key="grad")
    with col_display:
        display = ui.display_picker(int(ds.x.shape[1]), key="grad")

ui.show_messages(images.uploads)
for msg in images.errors:
    st.error(msg, icon=":material/error:")
for msg in images.infos:
    st.info(msg, icon=":material/info:")
if images.x.shape[0] == 0:
    st.warning("No image to show: choose at least one.", icon=":material/image_not_supported:")
    st.stop()

names = inputs.names
try:
    with st.spinner("Computing the gradients…"):
        grid = ui.cached_gradient_grid(
            names,
            state.device,
            inputs.versions,
            images.x.numpy(),
            tuple(int(v) for v in images.labels),
            tuple(images.names),
            {**method.settings(), **display.settings()},
        )
    fig = gradient_grid_figure(grid, ds.classes, panel_size=display.panel_size)
except (ValueError, KeyError, RuntimeError) as err:
    st.error(f"The gradients could not be computed: {err}", icon=":material/error:")
    st.stop()

for note in grid.notes:
    st.info(note[0].upper() + note[1:] + ".", icon=":material/info:")
st.plotly_chart(
    fig, width="content", theme=None, key="grad_chart",
    config={"displaylogo": False, "toImageButtonOptions": {"filename": "gradients", "scale": 2}},
)
ui.download_buttons(fig, lambda: grid_to_npz(grid), stem="gradients", key="grad",
                    data_help="NumPy .npz: x, labels, model_names, attributions (signed, before display), maps, "
                              "logits, probabilities, predictions, targets, settings (gradviz.viz.export.grid_to_npz).")
st.caption(
    "Each map is the attribution of the target class's "
    + ("logit" if grid.objective == "logit" else "cross-entropy loss")
    + (f", reduced over channels ({grid.channel_reduction}), " if ds.x.shape[1] > 1 else ", ")
    + (f"clipped to its {grid.clip[0]:g}–{grid.clip[1]:g} percentiles, " if grid.clip else "")
    + {"per_panel": "divided by its own largest |value|.",
       "shared": "divided by the largest |value| of its row.",
       "raw": "unscaled."}[grid.scaling]
    + " The NPZ holds the signed attributions before any of these steps."
)
