"""Trade-off: Kim, Seo and Jeon's robustness / interpretability trade-off on PGD eps families.

UI only: read the widgets, call gradviz.gradients.compute_gradient_grid and
gradviz.studies.tradeoff (through gradviz.ui caches), draw gradviz.viz figures.
"""

import math

import streamlit as st

from gradviz import ui, zoo
from gradviz.studies.tradeoff import MEASURES, monotone
from gradviz.training.snapshots import snapshot_indices
from gradviz.ui.tradeoff_cache import compute_family_measures, family_names, stored_family_measures
from gradviz.viz.export import grid_to_npz
from gradviz.viz.gradients import gradient_grid_figure
from gradviz.viz.tradeoff import MEASURE_TITLES, tradeoff_figure

ui.require_app_entry()  # opened by its URL on a fresh server: run through app.py's frame

#: Kim et al.'s gradient map: the loss gradient of the predicted class, summed over channels,
#: clipped to its 0.5-99.5 percentiles, each map scaled to its own largest |value|.
KIM_MAP = dict(method="gradient", target_choice="predicted", objective="loss", channel_reduction="sum",
               clip=(0.5, 99.5), scaling="per_panel")
NORMS = {"linf": "l∞ (PGD l∞)", "l2": "l₂ (PGD l₂)"}

st.title("Robustness and interpretability: the trade-off")
st.markdown(
    "Kim, Seo and Jeon found that the **larger the radius eps a model is adversarially trained at**, the more "
    "its loss gradient looks like the object, and the **lower its clean accuracy**. Move the slider: the same "
    "test images, each model of one family trained at a larger eps.")
with st.expander("What am I looking at? What should I look for?", icon=":material/school:"):
    st.markdown(
        """
**The family.** The standard model (eps 0) and models trained with PGD at growing radii eps, with
the same recipe otherwise (the cards say how each was made). l∞ radii bound every pixel's change;
l₂ radii bound the change's length.

**The map** is Kim et al.'s: the gradient of the loss at the predicted class, summed over channels,
clipped to its 0.5–99.5 percentiles; red: more of this pixel raises the loss (makes the prediction
less likely), blue: lowers it.

**The paper's three findings.** (1) Adversarial training keeps the gradient close to the data
*manifold*: an adversarial example of a robust model stays nearer to images the generator can make.
(2) The gradient becomes *quantitatively* meaningful: removing the pixels it ranks first (ROAR) hurts
a retrained model more, keeping only them (KAR) keeps more accuracy. (3) The two move against clean
accuracy as eps grows: a trade-off. The table below says, measure by measure, whether that holds on
the shipped mnist-5k models.
"""
    )

state = ui.sidebar_state()  # the dataset and device; the family replaces the sidebar's model choice
try:
    ds = ui.cached_dataset(state.dataset, "test")
except (ValueError, FileNotFoundError, OSError) as err:
    st.error(f"The dataset {state.dataset!r} could not be loaded: {err}", icon=":material/error:")
    st.stop()
norm = st.radio("Family", list(NORMS), format_func=NORMS.get, horizontal=True, key="trade_norm")
names = family_names(state.dataset, norm)
if len(names) < 2:
    st.info(f"The dataset {state.dataset!r} has no PGD {norm} family: train models with "
            f"`python -m gradviz train --method pgd --norm {norm} --eps EPS --name pgd-{norm}-EPS`.",
            icon=":material/info:")
    st.stop()
cards = {n: zoo.get_card(n) for n in names}
eps_of = {n: float(cards[n].eps) for n in names}

# ------------------------------------------------------------------ the gradients as eps grows
st.header("The gradient as eps grows", divider="gray")
picks = snapshot_indices(ds.y, 6, seed=0)  # the images the training snapshots keep too
x, labels = ds.x[picks], [int(ds.y[i]) for i in picks]
chosen = st.select_slider("Training eps", options=list(names), key="trade_eps",
                          format_func=lambda n: f"{eps_of[n]:g}" + (" (standard)" if eps_of[n] == 0 else ""))
versions = tuple(ui.model_version(n) for n in names)
settings = {**KIM_MAP}
try:
    grid = ui.cached_gradient_grid((chosen,), state.device, (ui.model_version(chosen),), x.numpy(), tuple(labels),
                                   tuple(f"test #{i}" for i in picks), settings)
    fig = gradient_grid_figure(grid, ds.classes, panel_size=150,
                               title=f"{chosen}: trained at {norm} eps {eps_of[chosen]:g}")
except (ValueError, KeyError, RuntimeError) as err:
    st.error(f"The gradients could not be computed: {err}", icon=":material/error:")
    st.stop()
m = cards[chosen].metrics or {}
st.caption(f"{chosen}: clean accuracy {100 * m.get('clean_accuracy', math.nan):.1f} %, robust accuracy "
           f"{100 * m.get('robust_accuracy', math.nan):.1f} % under its card's attack "
           f"({(m.get('attack') or {}).get('norm', '?')} eps {(m.get('attack') or {}).get('eps', '?')}).")
st.plotly_chart(fig, width="content", theme=None, key="trade_chart",
                config={"displaylogo": False, "toImageButtonOptions": {"filename": "tradeoff_gradients", "scale": 2}})
with st.expander("All radii side by side (Kim et al.'s figure 1)", icon=":material/view_column:"):
    full = ui.cached_gradient_grid(names, state.device, versions, x.numpy(), tuple(labels),
                                   tuple(f"test #{i}" for i in picks), settings)
    ffig = gradient_grid_figure(full, ds.classes, panel_size=110, title=f"The {norm} family, eps ascending")
    st.plotly_chart(ffig, width="content", theme=None, key="trade_full_chart")
    ui.download_buttons(ffig, lambda: grid_to_npz(full), stem="tradeoff_family", key="trade_full",
                        data_help="NumPy .npz: x, labels, model_names, attributions (signed), maps, logits, "
                                  "predictions, settings (gradviz.viz.export.grid_to_npz).")

# ------------------------------------------------------------------ the trade-off
st.header("Accuracy against interpretability", divider="gray")
tables = {}
for fam_norm in NORMS:
    fam = family_names(state.dataset, fam_norm)
    if len(fam) >= 2:
        tables[fam_norm] = stored_family_measures(fam, state.device)
if st.button("Compute what is missing", icon=":material/play_arrow:", key="trade_compute",
             help="Runs the alignment, inequality, manifold and ROAR/KAR studies for the models whose results "
                  "are not stored: GAN projections and retrainings, minutes to hours on a CPU. Results are kept."):
    for fam_norm in tables:
        tables[fam_norm] = compute_family_measures(family_names(state.dataset, fam_norm), state.device)
available = [k for k in MEASURES if any(k in t.columns and t[k].notna().sum() >= 2 for t in tables.values())]
if not available:
    st.info("No interpretability measure is stored for these models yet: press **Compute what is missing**.",
            icon=":material/info:")
    st.stop()
measure = st.radio("Interpretability measure", available, format_func=lambda k: MEASURE_TITLES[k],
                   key="trade_measure")
st.plotly_chart(tradeoff_figure(tables, measure), width="stretch", theme=None, key="trade_plot")
lines = []
for fam_norm, t in tables.items():
    t = t.sort_values("eps")
    acc = monotone(list(t["clean_accuracy"]))
    lines.append(f"- **{NORMS[fam_norm]}** (eps {', '.join(f'{e:g}' for e in t['eps'])}): clean accuracy "
                 f"**{acc}** ({', '.join(f'{100 * a:.1f}' for a in t['clean_accuracy'])} %); "
                 + "; ".join(f"{k} **{monotone(list(t[k]))}**" for k in MEASURES if k in t.columns
                             and t[k].notna().sum() >= 2) + ".")
st.markdown("Measured on the shipped models, in ascending eps (a trade-off: accuracy falls while the measure "
            "moves the 'more interpretable' way: α_dx and KAR up, manifold distance and ROAR down):\n"
            + "\n".join(lines))
for fam_norm, t in tables.items():
    st.dataframe(t, hide_index=True, key=f"trade_table_{fam_norm}")
    st.download_button(f"{NORMS[fam_norm]} table (CSV)", t.to_csv(index=False).encode("utf-8"),
                       file_name=f"tradeoff_{fam_norm}.csv", mime="text/csv", key=f"trade_csv_{fam_norm}",
                       icon=":material/download:", on_click="ignore")
st.caption("α_dx over 100 test images (each model's closest class, GAN residual 300 + 75 steps); Gini over 200 "
           "(integrated gradients, 50 steps); manifold distance over 100 (l₂ PGD-40 at eps 3, projected onto the "
           "predicted class; the clean images' own distance is the floor, 'manifold_floor'); ROAR/KAR: a fresh "
           "small-cnn retrained for each q on the modified training split (see the ROAR/KAR study's recipe).")
