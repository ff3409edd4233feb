"""Models: the zoo's table (shipped and yours), a model's training curves, its per-epoch
input-gradient snapshots and, for AGR, its gradient diagnostics; eps50 on request; training
from the app; bringing your own checkpoint.

UI only: cards from gradviz.zoo, figures from gradviz.viz.models, the forms in
gradviz.ui.models_forms (training runs in gradviz.training.jobs), the snapshots in
gradviz.ui.models_snapshots.
"""

import streamlit as st

from gradviz import ui, zoo
from gradviz.viz.models import (
    agr_diagnostics_figure, gradient_cosines_figure, has_agr_diagnostics, has_gradient_cosines, training_curves_figure,
)
from gradviz.ui import models_forms
from gradviz.ui.models_cache import model_rows
from gradviz.ui.models_snapshots import snapshots_panel

ui.require_app_entry()  # opened by its URL on a fresh server: run through app.py's frame

st.title("Models")
st.markdown(
    "Every classifier gradviz knows: the **shipped** ones and **yours** (trained here or with "
    "`python -m gradviz train`, or imported). Pick one to see how its training went; train a new "
    "one or bring your own checkpoint below."
)
with st.expander("What am I looking at? What should I look for?", icon=":material/school:"):
    st.markdown(
        """
**The table.** *Clean %* is the accuracy on the test images; *robust %* the accuracy after a
PGD attack of the radius in *attack* (each pixel may change by at most eps). Both come from
the model's card, measured when it was made. *AutoAttack %* is the accuracy under AutoAttack
at the same radius: four stronger attacks run one after another, the figure papers report.
Where it lies below *robust %*, PGD-40 missed adversarial examples that exist. *eps50* is the radius at which the accuracy
falls to 50 %: a single number for "how robust", measured on request.

**The methods.** *standard* minimises the cross-entropy; *pgd* trains on PGD attacks (Madry
et al.); *trades* trades clean accuracy against a smooth output near each image (Zhang et
al.); *pag* trains only the input gradients to point toward the class (Ganz et al.: does
that alone bring robustness?); *agr* is PGD or TRADES with the parameter gradient steered
between the clean and adversarial directions (AGR); *igd* copies a teacher's input gradients.

**The snapshots.** Before training and after every epoch, gradviz keeps the input gradient of
the same few test images: slide through the epochs (or press Play) to watch the gradient take
shape, and compare two models at the same epoch. The dashed line on the learning curves marks
the epoch shown.

**The curves.** The loss and the training accuracy are averaged while the epoch runs. The
*held-out* curves are measured after each epoch on the first test images (robust: a quick
PGD-10): they show over- or under-fitting, but they were never used to pick a model.
For AGR models, the second figure shows the paper's diagnostics: the cosine between the
clean and adversarial parameter gradients and the share of tensors where they disagree
(cos <= 0: projected, the "GOP rate").
"""
    )
models_forms.show_flash()

state = ui.sidebar_state()
cards = zoo.list_models()
rows = model_rows(cards)
st.dataframe(
    rows, hide_index=True, key="models_table", width="stretch", height="content",  # every model, no scrolling
    column_config={
        "name": st.column_config.TextColumn("model"),
        "eps": st.column_config.NumberColumn("eps", format="%.4g", help="training radius ([0, 1] pixel units)"),
        "clean %": st.column_config.NumberColumn("clean %", format="%.1f"),
        "robust %": st.column_config.NumberColumn("robust %", format="%.1f", help="accuracy under the PGD attack in *attack*"),
        "AutoAttack %": st.column_config.NumberColumn(
            "AutoAttack %", format="%.1f",
            help="accuracy under AutoAttack (Croce & Hein 2020), the field's yardstick: four attacks in sequence, "
                 "never above the PGD figure on the same images; –: not measured (python -m gradviz eval NAME "
                 "--autoattack --write)"),
        "eps50": st.column_config.TextColumn(
            "eps50", help="radius ([0, 1] pixel units) where PGD brings the accuracy to 50 %: from the card's curve, "
                          "or computed on request (below); when the curve does not cross 50 % inside its grid, "
                          "on which side of the grid it lies"),
        "snapshots": st.column_config.TextColumn(
            "snapshots", help="the epochs whose input gradients the run kept (0: before training); pick the model "
                              "to watch them change below. –: none (made before gradviz kept them)"),
    },
)
if not cards:
    st.warning("The zoo is empty: train a model below.")
    st.stop()

chosen = models_forms.choose_model([c.name for c in cards])
card = next(c for c in cards if c.name == chosen)

models_forms.eps50_panel(cards, chosen, state.device)

st.subheader(f"How {chosen} was trained")
if card.command:
    st.code(card.command, language="bash", wrap_lines=True)
curves = st.container()
with st.container(border=True, key="models_snapshots"):
    snapshot_epoch = snapshots_panel(card, cards)
if card.log:
    monitor = (card.training or {}).get("monitor_settings")
    curves.plotly_chart(training_curves_figure(card.log, title=f"Training curves: {chosen}", monitor=monitor,
                                               mark_epoch=snapshot_epoch),
                        key="models_curves", theme=None)
    if not any("monitor_clean_accuracy" in e for e in card.log):
        curves.caption("This card has no held-out curves (it was made before gradviz measured them): "
                   "only the running training numbers are shown.")
    if has_agr_diagnostics(card.log):
        st.plotly_chart(agr_diagnostics_figure(card.log, start_epoch=(card.training or {}).get("agr_start_epoch"),
                                               title=f"AGR diagnostics: {chosen}"),
                        key="models_agr", theme=None)
        st.caption("Mean over parameter tensors and batches. Before the dashed line the update is the plain "
                   "adversarial gradient (g = g_adv); from it on, tensors with cos <= 0 get g_adv's part "
                   "orthogonal to g_cl, the others c · g_cl + (1 − c) · g_adv, each clipped to norm 0.1.")
    if has_gradient_cosines(card.log):
        st.plotly_chart(gradient_cosines_figure(card.log, title=f"Input-gradient alignment: {chosen}"),
                        key="models_cosines", theme=None)
        st.caption("The cosine the objective pulls up, on the training batches (epoch mean of per-image "
                   "cosines). PAG's own-class line can stay below zero while the all-class mean rises: for a "
                   "confidently classified image, grad log p_y = Σ_{c≠y} p_c (grad z_y − grad z_c) is a small "
                   "vector made of the other classes' logit gradients.")
else:
    st.info(f"{chosen} has no per-epoch training log (an imported model, or made without one).",
            icon=":material/info:")
with st.expander("The full model card (JSON)", icon=":material/description:"):
    st.json(card.to_dict(), expanded=False)
if not card.shipped:
    models_forms.card_editor(card)

st.header("Train a model")
st.markdown(
    "Runs in the background on this machine; you can keep using the app. The model goes to your "
    f"model folder (`{zoo.user_model_dir()}`), never among the shipped ones. Small runs first: "
    "adversarial methods cost about ten times a standard epoch."
)
models_forms.train_panel(state.device)

st.header("Bring your own checkpoint")
st.markdown(
    "A **state_dict** of one of gradviz's architectures (`torch.save(model.state_dict(), path)`) or a "
    "**TorchScript** file (`torch.jit.save`). The model must take images (N, C, H, W) in [0, 1] "
    "(normalising inside itself) and return one logit per class; it is checked on the dataset's "
    "input before it is saved."
)
models_forms.import_panel()
