"""Inequality: Gini coefficients and Lorenz curves of attribution maps, and the inductive
noise and occlusion that exploit an unequal map (docs/methods.md section 3).

UI only: read the widgets, call gradviz.inequality (through gradviz.ui.inequality_cache),
draw gradviz.viz.inequality.
"""

import streamlit as st
import torch

from gradviz import findings, ui
from gradviz.attribution import METHODS
from gradviz.inequality import block_sums
from gradviz.ui.inequality_cache import (
    cached_examples,
    cached_image_attributions,
    dataset_inequality,
    parse_k_list,
    stored_inequality,
)
from gradviz.viz.common import short_model_name
from gradviz.viz.export import examples_to_npz, gini_to_csv, image_to_npz, noise_to_csv, occlusion_to_csv
from gradviz.viz.inequality import (
    gini_histogram_figure, image_inequality_figure, lorenz_figure, noise_error_figure, occlusion_error_figure,
    perturbed_examples_figure,
)
from gradviz.viz.style import model_colours

ui.require_app_entry()  # opened by its URL on a fresh server: run through app.py's frame

CHART_CONFIG = {"displaylogo": False}
DATASET_NPZ_HELP = ("NumPy .npz of the whole computation: per image gini, regional_gini, labels; per model the "
                    "mean Lorenz curve and the inductive, random and occlusion error rates; settings.")
ATTRIBUTIONS = ("integrated_gradients", "gradient", "input_x_gradient")
NOISES = {"normal": "N(0, 1) (IGD paper)", "uniform": "U[min x, max x] (Duan et al.)"}
MODES = {"add": "added", "replace": "replacing the pixel"}

st.title("Saliency inequality")
st.markdown(
    "How **unequally** does a model spread its attribution over the pixels? A few pixels holding "
    "most of it makes a model sensitive to noise put on exactly those pixels. Each model's "
    "attribution of the true class, its **Lorenz curve** and its **Gini coefficient**, then the "
    "same over many test images, with the **inductive noise** and **occlusion** that target the "
    "top pixels (Duan et al., ICLR 2023; IGD, Chen et al.)."
)
measured = findings.inequality_guidance(ui.sidebar_state().dataset)  # the shipped models' cards, read now
with st.expander("What am I looking at? What should I look for?", icon=":material/school:"):
    st.markdown(
        """
**Lorenz curve and Gini.** Sort the |attribution| of all pixels, smallest first, and add up
their shares: the Lorenz curve says "the smallest x % of the pixels hold y % of the
attribution". If every pixel held the same share it would be the diagonal. The further it
bows below the diagonal, the fewer pixels hold the attribution. The **Gini coefficient** is
twice the area between the diagonal and the curve: 0 for perfect equality, close to 1 when
one pixel holds everything. The **regional Gini** does the same with the sums over b × b
blocks (is the attribution packed into few *regions*?).

**Why it matters.** Duan et al. found that l∞ adversarial training makes attributions more
unequal (CIFAR-10: global Gini 0.58 → 0.73). If a few pixels decide, then noise on just
those pixels (**inductive noise**: the top-k pixels by attribution) or squares covering
them (**inductive occlusion**) may flip the prediction, a threat the l∞ ball does not
cover. IGD trains a robust model whose gradient stays close to a standard model's, to make
the attribution more equal again while keeping the robustness.
"""
    )
    st.markdown(measured or "**What gradviz measured:** no shipped model card of this dataset holds inequality "
                           "numbers (`metrics[\"inequality\"]`), so there is nothing to compare with the papers here.")
    st.markdown(
        """
**What to look for.**
- Lorenz curves: with the *gradient*, is the robust model's (`pgd-linf`) bowed further than
  the standard one's, and the IGD model's in between? With integrated gradients (the default)
  every curve stays at 0 over the black background and the models differ less. The
  histograms show the same over many images.
- Noise curves: a solid line (top-k pixels) above its dashed twin (k random pixels) means
  the attribution finds the pixels that matter; the caption under the chart says, for the
  numbers shown, which lies above. Then compare the models: does the more unequal one break
  more? On the shipped MNIST models it does not (above): judge by the numbers.
"""
    )

inputs = ui.page_inputs()
state, ds, models = inputs.state, inputs.dataset, inputs.models
names, versions = inputs.names, inputs.versions
colours = model_colours(names)
classes = list(ds.classes)
_, channels, height, width = ds.x.shape
n_feat = int(channels * height * width)

with st.container(border=True):
    c_img, c_method, c_block = st.columns(3, gap="large")
    index = int(c_img.number_input(f"Test image (0 to {len(ds) - 1})", 0, len(ds) - 1, 0, key="ineq_index"))
    label = int(ds.y[index])
    c_img.caption(f"test #{index} · label **{classes[label]}**")
    method = c_method.selectbox("Attribution", ATTRIBUTIONS, format_func=METHODS.get, key="ineq_method",
                                help="Of the true class's logit. Integrated gradients (50 steps, black "
                                     "baseline) as Duan et al.; the gradient (saliency) as the IGD paper.")
    n_steps = 50
    if method == "integrated_gradients":
        n_steps = int(c_method.slider("Integration steps", 4, 200, 50, key="ineq_steps"))
    block = int(c_block.number_input("Regional block b (pixels)", 1, min(height, width), 4, key="ineq_block",
                                     help=f"Regional Gini over b × b squares; b must divide {height} × {width}."))
if method in ("integrated_gradients", "input_x_gradient"):
    # the share of this image's pixels that are black in every channel: where it is large (MNIST's
    # background), the zeros dominate the Lorenz curves; on a photo (CIFAR-10) they do not
    black = float((ds.x[index] == 0).all(dim=0).float().mean())
    why = ("it multiplies by the image minus a black baseline; "
           f"{100 * black:.0f} % of this image's pixels are black")
    st.info(
        f"**{METHODS[method]} is exactly 0 on black pixels** ({why}). "
        + ("Every model's Lorenz curve then stays at 0 for those pixels and every Gini is high: the models "
           "differ only in how they spread the attribution over the rest (an MNIST digit's strokes). The plain "
           "**gradient** has no such zeros and shows the differences more clearly." if black >= 0.5 else
           "Too few for that to dominate the Lorenz curves here; on MNIST, most of whose pixels are black "
           "background, it does, and the plain **gradient** shows the differences more clearly."),
        icon=":material/lightbulb:")
try:
    block_sums(torch.zeros(1, channels, height, width), block)
    block_ok = block
except ValueError as err:
    st.error(f"Regional Gini: {err}. Only the global Gini is shown.", icon=":material/error:")
    block_ok = None

def noise_caption(where: dict[str, str]) -> str:
    """Which line lies above, per model, in the words of the noise chart (solid: top-k, dashed: random)."""
    words = {"above": "solid (top-k) above dashed (random) at every k",
             "below": "dashed (random) above solid (top-k) at every k: noise on random pixels hurts more",
             "equal": "solid and dashed equal", "mixed": "the lines cross", "unknown": "no image to count"}
    return "In these numbers: " + "; ".join(f"{short_model_name(n)}: {words[w]}" for n, w in where.items()) + "."


# ----------------------------------------------------------------------- one image
st.header("One image", divider="gray")
x = ds.x[index : index + 1]
try:
    with st.spinner("Computing the attributions…"):
        attrs, preds = cached_image_attributions(names, state.device, versions, x.numpy(), label, method, n_steps)
except (ValueError, RuntimeError) as err:
    st.error(f"The attributions could not be computed: {err}", icon=":material/error:")
    st.stop()
fig = image_inequality_figure(
    x[0], {n: a[0] for n, a in attrs.items()}, block=block_ok, label=label, predictions=preds,
    class_names=classes, colours=colours,
    title=f"{METHODS[method]}" + (f" ({n_steps} steps)" if method == "integrated_gradients" else "")
          + f" of the true class · test #{index}")
st.plotly_chart(fig, width="content", theme=None, key="ineq_image_chart", config=CHART_CONFIG)
ui.download_buttons(fig, lambda: image_to_npz(x[0], {n: a[0] for n, a in attrs.items()}, block=block_ok,
                                              settings={"index": index, "method": method, "n_steps": n_steps}),
                    stem="inequality_image", key="ineq_img",
                    data_help="NumPy .npz: x, model_names, attributions (signed), gini, regional_gini, Lorenz "
                              "curves, settings (gradviz.viz.export.image_to_npz).")
st.caption("Maps: |attribution| summed over channels, each divided by its own largest value (display "
           "only). Gini and Lorenz curves use |attribution| over all C·H·W entries"
           + (f"; the regional Gini its sums over {block_ok} × {block_ok} blocks." if block_ok else "."))

# ------------------------------------------------------------------ over the test split
st.header("Over the test split", divider="gray")
st.markdown("Gini of every image, and how often the models break under **inductive noise** (noise on the "
            "top-k pixels by attribution; dashed: the same noise on k random pixels) and **inductive "
            "occlusion** (squares of side 2r around the top-n pixels). Computed on request (integrated "
            "gradients over hundreds of images take a while on a CPU) and kept for later.")
with st.form("ineq_form", border=True):
    f1, f2, f3 = st.columns(3, gap="large")
    n_images = int(f1.slider("Test images", 50, len(ds), min(200, len(ds)), 50, key="ineq_n"))
    k_text = f1.text_input(
        "k: noised pixels (% of C·H·W, or a count)", "0.2%, 1%, 2%, 5%, 10%", key="ineq_k",
        help=f"Percentages like 0.5% or whole counts, separated by commas; the image has {n_feat} "
             f"features. The papers use 0.2 %–2 %; on a {height} × {width} image 2 % is only "
             f"{max(1, int(0.02 * n_feat))} pixels, so larger k are offered too.")
    noise = f2.radio("Noise", list(NOISES), format_func=NOISES.get, key="ineq_noise")
    mode = f2.radio("The noise is", list(MODES), format_func=MODES.get, key="ineq_mode", horizontal=True)
    by_magnitude = f2.toggle("Rank pixels by |attribution|", False, key="ineq_rank",
                             help="Off: the largest signed attribution (docs/methods.md). On: the largest "
                                  "magnitude (the IGD paper's |saliency|).")
    radii = f3.slider("Occlusion radii r (pixels)", 1, max(height, width) // 2, (1, 6), key="ineq_radii",
                      help="The papers' radii (1–20) are for 224-pixel images; on 28 × 28 MNIST a "
                           "radius of 14 covers everything.")
    n_pixels = int(f3.slider("Occluded top pixels: 1 to n", 1, 10, 10, key="ineq_npix"))
    colour = float(f3.select_slider("Occlusion colour", [0.0, 0.5, 1.0], 0.0, key="ineq_colour",
                                    format_func=lambda v: {0.0: "0 black", 0.5: "0.5 grey", 1.0: "1 white"}[v]))
    seed = int(f1.number_input("Noise seed", 0, 2**31 - 1, 0, key="ineq_seed"))
    submitted = st.form_submit_button("Compute", icon=":material/play_arrow:", key="ineq_go")
ks, problems = parse_k_list(k_text, n_feat)
for p in problems:
    st.error(f"k: {p}.", icon=":material/error:")
radii_t = tuple(range(int(radii[0]), int(radii[1]) + 1))
request = (state.dataset, names, state.device, n_images, method, n_steps, block_ok, tuple(ks), noise, mode,
           by_magnitude, seed, radii_t, n_pixels, colour)
if submitted:
    st.session_state["ineq_request"] = request
res = None
if ks:
    split_settings = dict(method=method, n_steps=n_steps, block=block_ok, k_counts=tuple(ks), noise=noise, mode=mode,
                          by_magnitude=by_magnitude, seed=seed, radii=radii_t, n_pixels=n_pixels, colour=colour)
    try:
        if st.session_state.get("ineq_request") == request:
            res = dataset_inequality(names, state.device, versions, state.dataset, n_images, **split_settings)
        else:  # stored results of these settings (the shipped models' defaults ship) draw at once
            res = stored_inequality(names, state.device, versions, state.dataset, n_images, **split_settings)
    except (ValueError, RuntimeError) as err:
        st.error(f"The computation failed: {err}", icon=":material/error:")
        st.stop()
if not ks:
    st.warning("Give at least one valid k to compute the error rates.", icon=":material/warning:")
elif res is not None:
    st.markdown(f"**{res.n_common} of {res.n_images}** test images are classified correctly by every model "
                f"({', '.join(map(short_model_name, names))}); the error rates are over these. "
                f"The Gini histograms are over all {res.n_images}.")
    pct = [100 * k / res.n_features for k in res.k_counts]
    table = res.table().drop(columns="n_common_correct")  # the study's own table, rates shown in %
    rates = [c for c in table.columns if c.startswith(("top@", "random@", "occlusion@"))]
    table[rates] = (100 * table[rates]).round(1)
    table["model"] = table["model"].map(short_model_name)
    st.dataframe(table.round(3), hide_index=True, key="ineq_table")
    st.caption("Error rates in %: top@k under noise on the top-k pixels, random@k on k random pixels (k as a "
               "share of the features), occlusion@r under occlusion up to radius r.")
    row = st.container(horizontal=True, gap="small")
    for lbl, data, fname in (
        ("Gini per image (CSV)", lambda: gini_to_csv(range(res.n_images), res.gini, res.regional, res.among),
         "gini.csv"),
        ("Noise error rates (CSV)", lambda: noise_to_csv(res.k_counts, res.n_features, res.inductive, res.random),
         "inductive_noise.csv"),
        ("Occlusion error rates (CSV)", lambda: occlusion_to_csv(res.radii, res.occlusion), "occlusion.csv"),
    ):
        row.download_button(lbl, data, file_name=fname, mime="text/csv", key=f"ineq_csv_{fname}",
                            icon=":material/download:", on_click="ignore")
    hfig = gini_histogram_figure(res.gini, res.regional or None, block=res.block, colours=colours,
                                 title=f"Gini per test image ({METHODS[method]}, {res.n_images} images)")
    st.plotly_chart(hfig, width="stretch", theme=None, key="ineq_hist_chart", config=CHART_CONFIG)
    ui.download_buttons(hfig, res.to_npz, stem="inequality_gini", key="ineq_hist", data_help=DATASET_NPZ_HELP)
    c_lorenz, c_noise = st.columns(2, gap="medium")
    with c_lorenz:
        lfig = lorenz_figure(res.lorenz_fractions, res.lorenz_mean, colours=colours, size=420,
                             ginis={n: float(g.mean()) for n, g in res.gini.items()},
                             title=f"Mean Lorenz curve ({res.n_images} images)")
        st.plotly_chart(lfig, width="content", theme=None, key="ineq_lorenz_chart", config=CHART_CONFIG)
        ui.download_buttons(lfig, res.to_npz, stem="inequality_lorenz", key="ineq_lorenz", data_help=DATASET_NPZ_HELP)
    with c_noise:
        nfig = noise_error_figure(pct, res.inductive, res.random, k_counts=res.k_counts, colours=colours,
                                  n_images=res.n_common,
                                  title=f"Error under inductive noise ({NOISES[noise].split(' (')[0]} {mode})")
        st.plotly_chart(nfig, width="stretch", theme=None, key="ineq_noise_chart", config=CHART_CONFIG)
        st.caption(noise_caption(findings.noise_comparison(res.k_counts, res.inductive, res.random)))
        ui.download_buttons(nfig, res.to_npz, stem="inequality_noise", key="ineq_noise_dl", data_help=DATASET_NPZ_HELP)
    c_occ, c_examples = st.columns(2, gap="medium")
    with c_occ:
        ofig = occlusion_error_figure(res.radii, res.occlusion, colours=colours, n_pixels=n_pixels,
                                      colour=colour, n_images=res.n_common)
        st.plotly_chart(ofig, width="stretch", theme=None, key="ineq_occ_chart", config=CHART_CONFIG)
        ui.download_buttons(ofig, res.to_npz, stem="inequality_occlusion", key="ineq_occ", data_help=DATASET_NPZ_HELP)
    with c_examples:
        images, epreds, notes = cached_examples(names, state.device, versions, x.numpy(), label, method, n_steps,
                                                res.k_counts[-1], noise, mode, by_magnitude, seed, radii_t,
                                                n_pixels, colour)
        efig = perturbed_examples_figure(x[0], images, predictions=epreds, notes=notes, label=label,
                                         class_names=classes, colours=colours, panel_size=100,
                                         title=f"Test #{index} perturbed for each model (its own attribution)")
        st.plotly_chart(efig, width="content", theme=None, key="ineq_examples_chart", config=CHART_CONFIG)
        ui.download_buttons(efig, lambda: examples_to_npz(x[0], images, {"index": index, "k": res.k_counts[-1]}),
                            stem="inequality_examples", key="ineq_ex",
                            data_help="NumPy .npz: x, model_names, variants, images (model x variant), settings "
                                      "(gradviz.viz.export.examples_to_npz).")
        st.caption("Occlusion: the first setting (n top pixels, radius r) that flips the model, or the largest.")
else:
    st.info("Press **Compute**: these settings have no stored results yet (the shipped models' results for the "
            "default settings ship with gradviz and show at once).", icon=":material/info:")
