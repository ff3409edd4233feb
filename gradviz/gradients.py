"""Input-gradient maps of several models on the same images: the Gradients page's computation.

:func:`compute_gradient_grid` is the one call behind the app's Gradients page and what a
notebook user calls to get the same numbers::

    from gradviz import data, zoo
    from gradviz.gradients import compute_gradient_grid, pick_indices
    from gradviz.viz.gradients import gradient_grid_figure

    ds = data.load_dataset("mnist-5k", "test")
    idx = pick_indices(len(ds), "index", indices=range(8))
    models = {n: zoo.load_model(n) for n in ("mnist-5k/standard", "mnist-5k/pgd-linf")}
    grid = compute_gradient_grid(models, ds.x[idx], ds.y[idx], method="gradient")
    gradient_grid_figure(grid, ds.classes).show()

It runs every model on the images once (logits, probabilities, predictions), resolves the
target class per model, takes the signed attribution with :func:`gradviz.attribution.attribute`
and applies the named display steps of :mod:`gradviz.attribution` in their order: channel
reduction, optional percentile clipping, scaling. The models are not modified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from gradviz.attribution import (
    CHANNEL_REDUCTIONS,
    METHODS,
    OBJECTIVES,
    SCALINGS,
    TARGET_CHOICES,
    attribute,
    clip_percentile,
    reduce_channels,
    scale_maps,
)
from gradviz.tensors import as_labels, model_device

__all__ = ["IMAGE_CHOICES", "UNKNOWN_LABEL", "GradientGrid", "compute_gradient_grid", "pick_indices"]

#: Label value meaning "no true label known" (e.g. an uploaded image).
UNKNOWN_LABEL = -1

#: Ways of picking dataset images, for :func:`pick_indices`.
IMAGE_CHOICES: tuple[str, ...] = ("index", "random", "class")

#: Options of :func:`compute_gradient_grid` forwarded to :func:`gradviz.attribution.attribute`.
_METHOD_OPTIONS = ("baselines", "n_steps", "nt_samples", "stdevs", "seed", "batch_size")


@dataclass
class GradientGrid:
    """Attributions of M models on N images, with the models' outputs and the display maps.

    All tensors are detached, on the CPU. Dicts are keyed by model name, in the order the
    models were given (:attr:`model_names`).

    Attributes:
        x: the images, (N, C, H, W) float32 in [0, 1].
        labels: true labels (N,) int64; :data:`UNKNOWN_LABEL` (-1) where none is known.
        names: one display name per image (e.g. ``"test #17"`` or a file name).
        model_names: the models' names, in column order.
        attributions: per model, the signed attribution (N, C, H, W) (units of objective per
            unit pixel for the gradient methods), before any display step.
        maps: per model, the display map after channel reduction, clipping and scaling:
            (N, 1, H, W), or (N, C, H, W) for ``channel_reduction="none"``. In [-1, 1] for
            ``"per_panel"`` / ``"shared"`` scaling, in the attribution's units for ``"raw"``.
        logits: per model, (N, K) float32.
        probabilities: per model, softmax of the logits, (N, K) in [0, 1].
        predictions: per model, argmax of the logits, (N,) int64.
        targets: per model, the class whose objective was differentiated, (N,) int64.
        method, objective, target_choice, class_index, channel_reduction, clip, scaling:
            the settings used (see :func:`compute_gradient_grid`).
        options: the method options passed on to :func:`gradviz.attribution.attribute`.
        notes: sentences about choices made on the user's behalf (e.g. images without a
            label explained for the predicted class).
    """

    x: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    model_names: list[str]
    attributions: dict[str, torch.Tensor]
    maps: dict[str, torch.Tensor]
    logits: dict[str, torch.Tensor]
    probabilities: dict[str, torch.Tensor]
    predictions: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    method: str = "gradient"
    objective: str = "logit"
    target_choice: str = "label"
    class_index: int | None = None
    channel_reduction: str = "sum"
    clip: tuple[float, float] | None = None
    scaling: str = "per_panel"
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return int(self.x.shape[0])

    def confidence(self, model_name: str) -> torch.Tensor:
        """The probability of each image's predicted class for ``model_name``, (N,) in [0, 1]."""
        p = self.probabilities[model_name]
        return p.gather(1, self.predictions[model_name][:, None]).squeeze(1)

    def settings(self) -> dict[str, Any]:
        """The settings as plain values (JSON-serialisable), e.g. for a figure caption."""
        opts = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                for k, v in self.options.items()}
        return {
            "method": self.method,
            "objective": self.objective,
            "target_choice": self.target_choice,
            "class_index": self.class_index,
            "channel_reduction": self.channel_reduction,
            "clip": list(self.clip) if self.clip is not None else None,
            "scaling": self.scaling,
            "options": opts,
            "model_names": list(self.model_names),
            "names": list(self.names),
        }


def compute_gradient_grid(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    *,
    method: str = "gradient",
    target_choice: str = "label",
    class_index: int | None = None,
    objective: str = "logit",
    channel_reduction: str = "sum",
    clip: tuple[float, float] | None = None,
    scaling: str = "per_panel",
    names: Sequence[str] | None = None,
    **method_options: Any,
) -> GradientGrid:
    """Attribution maps of every model on the same images, with predictions, for display.

    For each model (in the mapping's order): one forward pass without gradients (logits,
    softmax probabilities, argmax predictions), the target per image, then
    ``attribute(model, x, target, method, objective=objective, **method_options)``. The
    display maps are ``scale_maps([clip_percentile(reduce_channels(a, channel_reduction),
    *clip) for each model], scaling)``: panels are models, rows are images (so ``"shared"``
    shares one range across the models of one image). Each model runs on its own device
    (that of its parameters); the results come back to the CPU. Work is batched over the
    images (one captum call per model).

    Args:
        models: model name -> classifier taking (N, C, H, W) in [0, 1], returning logits
            (N, K); at least one; all with the same K. Used read-only.
        x: images (N, C, H, W), float, in [0, 1], N >= 1.
        labels: true labels (N,) int, :data:`UNKNOWN_LABEL` (-1) where unknown; ``None``:
            all unknown. Needed for ``target_choice="label"``.
        method: one of :data:`gradviz.attribution.METHODS`. Default ``"gradient"``.
        target_choice: ``"label"`` (default; images whose label is unknown are explained
            for each model's predicted class, and :attr:`GradientGrid.notes` says so),
            ``"predicted"`` (each model's own argmax) or ``"class"`` (``class_index`` for
            every image and model).
        class_index: the class for ``target_choice="class"``, in [0, K).
        objective: ``"logit"`` (default) or ``"loss"`` (see ``attribute``).
        channel_reduction: one of :data:`gradviz.attribution.CHANNEL_REDUCTIONS`;
            default ``"sum"``.
        clip: ``(lower, upper)`` percentiles for ``clip_percentile`` (e.g. (0.5, 99.5)),
            applied per image and model after the channel reduction; ``None`` (default):
            no clipping.
        scaling: ``"per_panel"`` (default), ``"shared"`` or ``"raw"`` (see ``scale_maps``).
        names: one display name per image; default ``"image 0"``, ``"image 1"``, ...
        **method_options: ``n_steps``, ``nt_samples``, ``stdevs``, ``seed``, ``baselines``,
            ``batch_size``, passed to ``attribute`` (defaults there).

    Returns:
        :class:`GradientGrid`.

    Raises:
        ValueError: no models; ``x`` not a 4-D float tensor with N >= 1, or non-finite;
            labels of the wrong length, or with a class >= K; unknown method, objective,
            target choice, channel reduction or scaling; an unknown method option;
            ``class_index`` missing or outside [0, K); models with different K; invalid
            ``clip`` percentiles; whatever ``attribute`` raises for bad options.
    """
    if not models:
        raise ValueError("compute_gradient_grid needs at least one model")
    for value, valid, what in (
        (method, METHODS, "attribution method"),
        (objective, OBJECTIVES, "objective"),
        (target_choice, TARGET_CHOICES, "target choice"),
        (channel_reduction, CHANNEL_REDUCTIONS, "channel reduction"),
        (scaling, SCALINGS, "scaling"),
    ):
        if value not in valid:
            raise ValueError(f"unknown {what} {value!r}; valid: {list(valid)}")
    unknown = set(method_options) - set(_METHOD_OPTIONS)
    if unknown:
        raise ValueError(f"unknown method option(s) {sorted(unknown)}; valid: {list(_METHOD_OPTIONS)}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float tensor of shape (N, C, H, W); got {shape}")
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("x holds no images (N = 0)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    x = x.detach().to("cpu", torch.float32)
    if labels is None:
        labels_t = torch.full((n,), UNKNOWN_LABEL, dtype=torch.int64)
    else:
        labels_t = as_labels(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels, n,
                             name="labels", device="cpu")
        if bool((labels_t < UNKNOWN_LABEL).any()):
            raise ValueError("labels must be class indices >= 0, or -1 for an unknown label")
    if target_choice == "class":
        if class_index is None or isinstance(class_index, bool) or not isinstance(class_index, Integral):
            raise ValueError(f"target_choice='class' needs an int class_index; got {class_index!r}")
        class_index = int(class_index)
    if clip is not None:
        clip = (float(clip[0]), float(clip[1]))
    names = [f"image {i}" for i in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"names must hold one name per image ({n}); got {len(names)}")

    known = labels_t >= 0
    notes: list[str] = []
    if target_choice == "label" and not bool(known.all()):
        missing = [names[i] for i in torch.nonzero(~known).flatten().tolist()]
        notes.append(
            "no true label for " + ", ".join(missing)
            + ": explained for each model's predicted class instead"
        )

    model_names = [str(k) for k in models]
    attributions, logits_d, probs_d, preds_d, targets_d, reduced = {}, {}, {}, {}, {}, []
    num_classes = None
    for name, model in models.items():
        dev = model_device(model)
        xd = x.to(dev)
        with torch.no_grad():
            logits = model(xd).detach().float()
        if logits.ndim != 2 or logits.shape[0] != n:
            raise ValueError(f"model {name!r} must return logits (N, K) = ({n}, K); got {tuple(logits.shape)}")
        k = int(logits.shape[1])
        if num_classes is None:
            num_classes = k
        elif k != num_classes:
            raise ValueError(f"the models must have the same number of classes; {name!r} has {k}, "
                             f"another has {num_classes}")
        preds = logits.argmax(dim=1)
        if target_choice == "predicted":
            target = preds
        elif target_choice == "class":
            if not 0 <= class_index < k:
                raise ValueError(f"class_index {class_index} is out of range: the models have {k} "
                                 f"classes, so it must lie in [0, {k})")
            target = torch.full((n,), class_index, dtype=torch.int64, device=dev)
        else:
            if int(labels_t.max()) >= k:
                raise ValueError(f"label {int(labels_t.max())} is out of range for models with {k} classes")
            target = torch.where(known.to(dev), labels_t.to(dev), preds)
        a = attribute(model, xd, target, method, objective=objective, **method_options)
        name = str(name)
        attributions[name] = a.cpu()
        logits_d[name] = logits.cpu()
        probs_d[name] = torch.softmax(logits, dim=1).cpu()
        preds_d[name] = preds.cpu()
        targets_d[name] = target.cpu()
        m = reduce_channels(a, channel_reduction)
        if clip is not None:
            m = clip_percentile(m, *clip)
        reduced.append(m.cpu())
    maps = dict(zip(model_names, scale_maps(reduced, scaling)))
    return GradientGrid(
        x=x, labels=labels_t, names=names, model_names=model_names,
        attributions=attributions, maps=maps, logits=logits_d, probabilities=probs_d,
        predictions=preds_d, targets=targets_d, method=method, objective=objective,
        target_choice=target_choice, class_index=class_index if target_choice == "class" else None,
        channel_reduction=channel_reduction, clip=clip, scaling=scaling,
        options=dict(method_options), notes=notes,
    )


def pick_indices(
    n_total: int,
    how: str = "index",
    *,
    indices: Sequence[int] | None = None,
    n: int = 8,
    seed: int = 0,
    labels: Sequence[int] | torch.Tensor | None = None,
    class_index: int | None = None,
) -> list[int]:
    """Indices of dataset images to show.

    Args:
        n_total: number of images in the dataset (indices lie in [0, n_total)).
        how: ``"index"`` (``indices`` as given), ``"random"`` (``n`` distinct indices drawn
            with ``seed``) or ``"class"`` (the first ``n`` images of class ``class_index``
            in a seeded random order of that class, so another seed shows other images).
        indices: for ``"index"``: the indices, each in [0, n_total).
        n: for ``"random"`` / ``"class"``: how many (>= 1; fewer if the set has fewer).
        seed: for ``"random"`` / ``"class"``: the seed of a ``torch.Generator``. Default 0.
        labels: for ``"class"``: the dataset's labels (n_total,).
        class_index: for ``"class"``: the class.

    Returns:
        list of ints, in display order.

    Raises:
        ValueError: unknown ``how``; an index outside [0, n_total); ``n`` < 1; labels or
            ``class_index`` missing for ``"class"``; no image of that class.
    """
    if how not in IMAGE_CHOICES:
        raise ValueError(f"unknown image choice {how!r}; valid: {list(IMAGE_CHOICES)}")
    if how == "index":
        out = [int(i) for i in (indices or [])]
        bad = [i for i in out if not 0 <= i < n_total]
        if bad:
            raise ValueError(f"image index {bad[0]} is out of range: the set has {n_total} images "
                             f"(indices 0 to {n_total - 1})")
        return out
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    gen = torch.Generator().manual_seed(int(seed))
    if how == "random":
        return torch.randperm(n_total, generator=gen)[: int(n)].tolist()
    if labels is None or class_index is None:
        raise ValueError("how='class' needs the dataset's labels and a class_index")
    members = torch.nonzero(torch.as_tensor(labels) == int(class_index)).flatten()
    if members.numel() == 0:
        raise ValueError(f"no image of class {class_index} in this set")
    return members[torch.randperm(members.numel(), generator=gen)[: int(n)]].tolist()
