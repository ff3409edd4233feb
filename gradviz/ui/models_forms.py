"""Widget groups of the Models page: eps50 on request, a user model's card editor, the
training form with its live job panel, and the checkpoint import. They call the library
(:mod:`gradviz.zoo`, :mod:`gradviz.training.jobs`) and draw its answers; nothing is
computed here."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from gradviz import zoo
from gradviz.viz.attack import accuracy_vs_eps_figure
from gradviz.data import DATASETS
from gradviz.viz.models import live_loss_figure
from gradviz.nets import ARCHITECTURES
from gradviz.training import EVAL_ATTACKS, METHODS, OBJECTIVES, Option, TrainConfig, monitor_settings
from gradviz.training import jobs
from gradviz.ui.models_cache import eps50_results, measure_eps50
from gradviz.ui.models_snapshots import live_snapshots

__all__ = ["card_editor", "choose_model", "eps50_panel", "import_panel", "show_flash", "train_panel"]

#: The app's defaults where they differ from the command line's: a quicker attack (10
#: steps, not 20); eps: the dataset's evaluation radius (see :func:`_form_default`).
_FORM_DEFAULTS = {"steps": 10}
_JOB = "gv_models_job"
_SEEN = "gv_models_job_seen"
_FLASH = "gv_models_flash"
_CHOSEN = "models_chosen"
_PENDING = "gv_models_pending_choice"


def choose_model(names: Sequence[str]) -> str:
    """Draw the model choice (default: the first name; after an action: the model it
    made or changed). Returns the chosen name."""
    pending = st.session_state.pop(_PENDING, None)
    if pending in names:
        st.session_state[_CHOSEN] = pending
    elif st.session_state.get(_CHOSEN) not in names:
        st.session_state[_CHOSEN] = names[0]
    return st.selectbox("Model", names, key=_CHOSEN)


def _choose_after_rerun(name: str) -> None:
    st.session_state[_PENDING] = name


def _flash(kind: str, text: str) -> None:
    st.session_state.setdefault(_FLASH, []).append((kind, text))


def show_flash() -> None:
    """Show (once) the messages left by an action before its rerun."""
    for kind, text in st.session_state.pop(_FLASH, []):
        getattr(st, kind)(text)


# ----------------------------------------------------------------------------- eps50


def eps50_panel(cards: Sequence[zoo.ModelCard], chosen: str, device: str) -> None:
    """Choose models, measure their accuracy-vs-eps curve and eps50, draw the curves."""
    names = [c.name for c in cards]
    with st.container(border=True):
        st.markdown("**eps50 on request**: the radius at which PGD brings a model's accuracy to 50 %.")
        a, b, c = st.columns([3, 1, 1])
        picked = a.multiselect("Models to measure", names, default=[chosen] if chosen in names else [],
                               key=f"models_eps50_models::{chosen}", help="By default the model chosen above.")
        n = b.number_input("Test images", 20, 1000, 200, step=20, key="models_eps50_n",
                           help="The first N test images of each model's dataset.")
        steps = c.number_input("PGD steps", 5, 100, 20, step=5, key="models_eps50_steps")
        if st.button("Compute eps50", key="models_eps50_go", disabled=not picked, icon=":material/speed:"):
            for msg in measure_eps50(picked, device, n_images=int(n), steps=int(steps)):
                _flash("error", msg)
            st.rerun()
        done = {k: v for k, v in eps50_results().items() if k in names}
        by_grid: dict[tuple, dict] = {}
        for name, r in done.items():
            by_grid.setdefault(tuple(r["eps_grid"]), {})[name] = r
        for grid, results in by_grid.items():
            fig = accuracy_vs_eps_figure(list(grid), {k: r["accuracy"] for k, r in results.items()},
                                         eps50={k: r["eps50"] for k, r in results.items()},
                                         title="Accuracy vs eps (nested PGD, first "
                                               + ", ".join(sorted({str(r["n_images"]) for r in results.values()}))
                                               + " test images)")
            st.plotly_chart(fig, key=f"models_eps50_chart_{len(grid)}_{grid[-1]}", theme=None)
        if done:
            st.caption("Nested attacks: an image counts as robust at eps only if PGD failed at every smaller eps "
                       "of the grid; step 2.5 · eps / steps, random start, seed 0. eps50 interpolates linearly "
                       "where the curve crosses 50 %; where it does not cross inside this grid, the table says "
                       "on which side of the grid eps50 lies.")


# ----------------------------------------------------------------------------- card editor


def card_editor(card: zoo.ModelCard) -> None:
    """Edit a user model's name, method and eps, or delete it."""
    with st.expander(f"Edit or delete {card.name}", icon=":material/edit:"):
        short = card.name.split("/", 1)[1]
        a, b, c = st.columns(3)
        new = a.text_input("Name", value=short, key=f"models_edit_name::{card.name}")
        method = b.text_input("Method", value=card.method, key=f"models_edit_method::{card.name}")
        eps = c.number_input("eps (training radius, [0, 1] pixels)", 0.0, 1.0, float(card.eps or 0.0), step=0.01,
                             format="%.4f", key=f"models_edit_eps::{card.name}")
        if st.button("Save the card", key=f"models_edit_save::{card.name}", icon=":material/save:"):
            try:
                saved = zoo.edit_card(card.name, new_name=new.strip(), method=method.strip() or "unknown", eps=eps)
            except (KeyError, ValueError, OSError) as err:
                st.error(f"The card was not changed: {err}")
            else:
                _choose_after_rerun(saved.name)
                _flash("success", f"Saved the card of {saved.name}.")
                st.rerun()
        sure = st.checkbox("Yes, delete this model's files", key=f"models_delete_sure::{card.name}")
        if st.button("Delete the model", key=f"models_delete::{card.name}", disabled=not sure,
                     icon=":material/delete:"):
            try:
                zoo.delete_model(card.name)
            except (KeyError, ValueError, OSError) as err:
                st.error(f"{card.name} was not deleted: {err}")
            else:
                _flash("success", f"Deleted {card.name}.")
                st.rerun()


# ----------------------------------------------------------------------------- training


def _standard_models(dataset: str) -> list:
    """The dataset's standard models (IGD's teacher, L_alpha's reference), or [None]: the
    training then says that the default <dataset>/standard is missing."""
    return [m.name for m in zoo.list_models(dataset) if m.method == "standard"] or [None]


def _form_default(option: Option, dataset: str):
    """The widget's initial value: the dataset's evaluation eps for eps, the app's quicker
    attack (:data:`_FORM_DEFAULTS`), else the objective's default."""
    if option.name == "eps":
        return float(EVAL_ATTACKS[dataset]["eps"])
    return _FORM_DEFAULTS.get(option.name, option.default)


def _option_widget(option: Option, dataset: str, column):
    """One widget for ``option`` in ``column`` (key ``models_train_<name>``); returns the
    value for TrainConfig (None: the method's default)."""
    key, label = f"models_train_{option.name}", option.label or option.name
    help_text = f"{option.help[:1].upper()}{option.help[1:]}; default {option.describe_default()}."
    if option.kind == "model":
        return column.selectbox(label, _standard_models(dataset), key=key, help=help_text)
    if option.choices:
        words = option.choice_labels or {}
        return column.selectbox(label, option.choices, format_func=lambda v: words.get(v, v), key=key,
                                help=help_text)
    default = _form_default(option, dataset)
    computed = default is None  # a default computed from the rest: 0 stands for it
    if computed:
        label += f" (0: {option.describe_default()})"
    number = int if option.type is int else float
    low = number(0 if computed or option.low is None else option.low)
    high = number(10_000 if option.high is None else option.high)
    value = column.number_input(label, low, high, number(default or 0), key=key, help=help_text,
                                **({} if number is int else {"format": "%.4f"}))
    return None if computed and not value else number(value)


def _option_widgets(method: str, dataset: str) -> dict:
    """The widgets of the options ``OBJECTIVES[method]`` uses, four to a row, in the order
    the objective lists them; an option that depends on another one's value (AGR's base's
    options on ``agr_base``) is drawn once that value is chosen. Returns name -> value."""
    cls, values = OBJECTIVES[method], {}
    while True:
        todo = [o for o in cls.options_for(values) if o.name not in values]
        if not todo:
            return values
        row = todo[:4]
        for option, column in zip(row, st.columns(4)):
            values[option.name] = _option_widget(option, dataset, column)


def train_panel(device: str) -> None:
    """The training form; starts a background job (:mod:`gradviz.training.jobs`)."""
    busy = jobs.active_job()
    with st.container(border=True):
        a, b, c = st.columns(3)
        dataset = a.selectbox("Dataset", list(DATASETS), key="models_train_dataset",
                              help="mnist-5k and squares ship with gradviz; the others must be downloaded.")
        method = b.selectbox("Method", METHODS, format_func=lambda m: OBJECTIVES[m].label, key="models_train_method")
        name = c.text_input("Model name", value=f"my-{method}", key=f"models_train_name::{method}",
                            help=f"Saved as {dataset}/<name> in your model folder ({zoo.user_model_dir()}).")
        a, b, c, d = st.columns(4)
        epochs = a.number_input("Epochs", 1, 500, 3, key="models_train_epochs")
        seed = b.number_input("Seed", 0, 2**31 - 1, 0, key="models_train_seed")
        batch = c.number_input("Batch size", 1, 1024, 128, key="models_train_batch")
        limit = d.number_input("Training images (0: all)", 0, 100_000, 0, step=100, key="models_train_limit")
        options = _option_widgets(method, dataset)
        a, b, c, d = st.columns(4)
        augment = a.checkbox("Random shifts", value=True, key="models_train_augment")
        monitor = b.number_input("Learning-curve images", 0, 10_000, 200, step=50, key="models_train_monitor",
                                 help="After each epoch: accuracy on the first N test images (robust too, with a "
                                      "PGD-10). Only for the curves, never for choosing a model. 0: none.")
        evaluate = c.checkbox("Measure the card's accuracies", value=True, key="models_train_eval",
                              help="Clean and robust accuracy (PGD-40, the dataset's standard attack) afterwards.")
        eval_limit = d.number_input("…on test images (0: all)", 0, 100_000, 0, step=100, key="models_train_eval_n")
        overwrite = st.checkbox("Replace my model of that name if there is one", key="models_train_overwrite")
        if busy is not None:
            st.info(f"A training is running ({busy.snapshot().name}): one at a time.", icon=":material/hourglass:")
        if st.button("Start training", key="models_train_go", type="primary", disabled=busy is not None,
                     icon=":material/play_arrow:"):
            try:
                config = TrainConfig(dataset=dataset, method=method, epochs=int(epochs), seed=int(seed),
                                     batch_size=int(batch), limit=int(limit), augment=augment,
                                     monitor=int(monitor), **options)
                job = jobs.start_job(config, name=name.strip(), device=device, evaluate=evaluate,
                                     eval_limit=int(eval_limit), overwrite=overwrite)
            except (ValueError, RuntimeError) as err:
                st.error(f"Training not started: {err}", icon=":material/error:")
            else:
                st.session_state[_JOB] = job.id
                st.rerun()  # redraw the form as busy, with the job's panel
    job_panel()


def job_panel() -> None:
    """This session's training job: live progress and loss while it runs (refreshed every
    second), then its outcome; a finished model makes the whole app rerun once, so that the
    table and the sidebar list it."""
    job = jobs.get_job(st.session_state.get(_JOB))
    if job is None:
        return
    st.fragment(run_every=1.0 if job.running else None)(_draw_job)(job)


def _draw_job(job: jobs.TrainingJob) -> None:
    snap = job.snapshot()
    with st.container(border=True, key="models_job"):
        if snap.running:
            st.progress(min(max(snap.fraction, 0.0), 1.0), text=f"{snap.name}: {snap.message}")
            st.button("Cancel training", key="models_job_cancel", on_click=job.cancel, icon=":material/stop:")
            if snap.losses:
                st.plotly_chart(live_loss_figure(snap.losses, job.config.epochs, log=snap.epochs),
                                key="models_job_loss", theme=None)
            live_snapshots(job.snapshot_path, snap.epochs, snap.name, monitor_settings(job.config))
            return
        if snap.status == "done":
            m = (snap.card.metrics if snap.card else {}) or {}
            numbers = ""
            if "clean_accuracy" in m:
                numbers = f": clean accuracy {100 * m['clean_accuracy']:.1f} %"
                if "robust_accuracy" in m:
                    numbers += f", robust {100 * m['robust_accuracy']:.1f} % (PGD-{m['attack']['steps']} " \
                               f"eps {m['attack']['eps']:g}, {m['n_images']} test images)"
            st.success(f"Training finished: {snap.name} is saved{numbers}. It is in the table above and in the "
                       "sidebar's model list.", icon=":material/check_circle:")
        elif snap.status == "cancelled":
            st.warning(f"Training of {snap.name} cancelled; nothing was saved.", icon=":material/cancel:")
        else:
            st.error(f"Training of {snap.name} failed: {snap.error}", icon=":material/error:")
        if snap.losses:
            st.plotly_chart(live_loss_figure(snap.losses, job.config.epochs, log=snap.epochs),
                            key="models_job_loss", theme=None)
    if snap.status == "done" and st.session_state.get(_SEEN) != snap.id:
        st.session_state[_SEEN] = snap.id
        _choose_after_rerun(snap.name)
        st.rerun(scope="app")


# ----------------------------------------------------------------------------- import


#: Architectures from other libraries in the import form: choice -> label.
_LIBRARIES = {"timm:": "timm (by name)", "torchvision:": "torchvision (by name)"}
#: The normalisation the form proposes per input: ImageNet's for 224 x 224 colour models,
#: CIFAR's for 32 x 32 colour ones, MNIST's for grayscale.
_USUAL_STATS = {(3, 224): ("0.485, 0.456, 0.406", "0.229, 0.224, 0.225"),
                (3, 32): ("0.4914, 0.4822, 0.4465", "0.2470, 0.2435, 0.2616"),
                (1, 28): ("0.1307", "0.3081")}


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"{what} must be numbers separated by commas, got {text!r}") from None


def _library_fields(prefix: str, dataset: str) -> tuple[str, object, object]:
    """The timm / torchvision name and the normalisation; returns (arch, mean, std), where
    mean and std are lists of floats, or the text itself when it does not parse (the import
    then says why)."""
    info = DATASETS[dataset]
    usual = _USUAL_STATS.get((info.channels, info.size), ("0", "1"))
    a, b, c = st.columns(3)
    library = prefix.rstrip(":")
    net = a.text_input(f"{library} architecture name", value="resnet18", key=f"models_import_{library}_name",
                       help="Built without pretrained weights for the dataset's channels and classes; the checkpoint's "
                            "state_dict is loaded into it with weights_only=True.")
    mean = b.text_input("Normalisation mean (per channel, [0, 1] scale)", value=usual[0],
                        key=f"models_import_mean::{dataset}",
                        help="What the network subtracts from [0, 1] images in training; gradviz wraps it so that it "
                             "takes [0, 1] images like every other model. 0: none.")
    std = c.text_input("Normalisation std", value=usual[1], key=f"models_import_std::{dataset}",
                       help="What it divides by after subtracting the mean. 1: none.")
    try:
        return prefix + net.strip(), _numbers(mean, "the mean"), _numbers(std, "the std")
    except ValueError as err:
        st.error(str(err), icon=":material/error:")
        return prefix + net.strip(), [], []


def import_panel() -> None:
    """Upload (or name a file on this machine) a state_dict or TorchScript checkpoint; it is
    checked against the dataset and saved with an editable card."""
    with st.container(border=True):
        upload = st.file_uploader("Checkpoint file (.pt / .pth: a state_dict or TorchScript)", key="models_import_file",
                                  help="Within the app's upload limit (a larger file: give its path). State_dicts "
                                       "load with weights_only=True: a pickle that needs code is refused.")
        path = st.text_input("…or a path on the machine that runs gradviz", key="models_import_path")
        a, b, c = st.columns(3)
        dataset = a.selectbox("Dataset it classifies", list(DATASETS), key="models_import_dataset")
        arch = b.selectbox("Architecture", ["detect", *sorted(ARCHITECTURES), *_LIBRARIES, zoo.TORCHSCRIPT],
                           format_func=lambda v: _LIBRARIES.get(v, v), key="models_import_arch")
        name = c.text_input("Model name", value="my-model", key="models_import_name")
        mean = std = None
        if arch in _LIBRARIES:
            arch, mean, std = _library_fields(arch, dataset)
        a, b, c = st.columns(3)
        method = a.text_input("Training method (your word)", value="unknown", key="models_import_method")
        eps = b.number_input("Training eps ([0, 1] pixels, 0: none)", 0.0, 1.0, 0.0, step=0.01, format="%.4f",
                             key="models_import_eps")
        overwrite = c.checkbox("Replace my model of that name", key="models_import_overwrite")
        if st.button("Check and import", key="models_import_go", icon=":material/upload:",
                     disabled=upload is None and not path.strip()):
            source = upload if upload is not None else path.strip()
            try:
                with st.spinner("Checking the checkpoint…"):
                    card = zoo.import_checkpoint(source, dataset=dataset, name=name.strip(), method=method.strip(),
                                                 eps=eps, arch=None if arch == "detect" else arch, mean=mean, std=std,
                                                 overwrite=overwrite)
            except (zoo.CheckpointError, ValueError, TypeError) as err:
                st.error(f"Not imported: {err}", icon=":material/error:")
            else:
                acc = card.metrics.get("clean_accuracy")
                _choose_after_rerun(card.name)
                _flash("success", f"Imported {card.name} ({card.arch})"
                       + (f": clean accuracy {100 * acc:.1f} % on the {card.dataset} test split." if acc is not None
                          else ".") + " Edit its card below the curves.")
                st.rerun()
