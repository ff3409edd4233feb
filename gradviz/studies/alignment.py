"""Gradient alignment over a split (docs/methods.md section 1; Bigolin Lanfredi, Schroeder and
Tasdizen): each model's closest class c~ (Eq. 5), the GAN residual dx toward it (Eqs. 15-16),
alpha_dx = cos(grad_x (d_c~ - d_y), dx) (Eq. 8) and alpha_x = |cos(x, grad_x loss)| (Etmann
et al.). On ``squares``, whose images carry their exact residual, also alpha_dx with the
exact residual and cos(dx_hat, dx_true).

The residuals come from :func:`gradviz.generative.residuals_for`, whose own store keeps each
(image, class) projection once, so pairs shared by several models are projected once.
:func:`image_alignment` is the per-image counterpart (chosen images, every model toward one
class: the Alignment page's figure), on the same residuals and the same Eq. 8;
:func:`write_card_metrics` keeps a run's means in the models' cards (``metrics["alignment"]``).

>>> from gradviz.studies import alignment
>>> res = alignment.run(["mnist-5k/standard", "mnist-5k/lalpha"], n=100)
>>> res.table()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradviz import alignment as al
from gradviz import generative
from gradviz.data import load_dataset
from gradviz.studies.base import ModelLike, Study, StudyResult, card_writer, mean_sem, run_study
from gradviz.studies.store import ChunkStore
from gradviz.tensors import eval_mode, model_device
from gradviz.utils import Progress
from gradviz.viz.alignment import alignment_table
from gradviz.viz.export import alignment_to_csv, alignment_to_npz


@dataclass(frozen=True)
class Settings:
    """Attributes:
        steps: the projection's (free, penalised) Adam steps (default
            :data:`gradviz.generative.FAST_STEPS`; the paper's: ``DEFAULT_STEPS``).
        generator: the generator's weights fingerprint (:func:`gradviz.generative.generator_fingerprint`;
            filled in by :func:`run`): part of the store key, so a retrained generator
            never reuses old numbers.
    """

    steps: tuple[int, int] = generative.FAST_STEPS
    generator: str = ""


def exact_residual(data) -> Optional[torch.Tensor]:
    """The exact residuals (N, C, H, W) a dataset carries in ``extras["residual"]`` (squares), or None."""
    r = (getattr(data, "extras", None) or {}).get("residual")
    return r if isinstance(r, torch.Tensor) else None


def _check_steps(steps: Sequence[int]) -> tuple[int, int]:
    steps = tuple(int(s) for s in steps)
    if len(steps) != 2 or min(steps) < 0 or sum(steps) < 1:
        raise ValueError(f"steps must be two counts (free, penalised) >= 0, not both 0; got {steps}")
    return steps


def _residuals(G: nn.Module, dataset: str, split: str, indices, targets, steps, device, images,
               progress: Optional[Progress] = None) -> torch.Tensor:
    """dx (B, C, H, W) of the split's images ``indices`` toward ``targets``, on ``device``
    (:func:`gradviz.generative.residuals_for`: each (image, class) pair projected once, ever)."""
    return generative.residuals_for(G, dataset, split, torch.as_tensor(np.asarray(indices), dtype=torch.int64),
                                    torch.as_tensor(np.asarray(targets), dtype=torch.int64), steps=tuple(steps),
                                    device=device, images=images, progress=progress).to(device)


def compute(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, settings: Settings,
            context: Optional[dict] = None) -> dict:
    """Per image: ``target`` (c~), ``correct`` (the clean prediction is y), ``alpha_dx``,
    ``alpha_x`` and ``alpha_x_centered`` (on the [-1, 1] scale); on data with exact
    residuals also ``alpha_true`` and ``cos_true`` (toward the other class of a two-class set)."""
    G, data, dataset, split = context["generator"], context["data"], context["dataset"], context["split"]
    idx = np.arange(start, start + len(x))
    target = al.closest_class(model, x, y)
    dx = _residuals(G, dataset, split, idx, target.cpu(), settings.steps, x.device, data.x)
    g = al.margin_gradient(model, x, y, target)
    with torch.no_grad(), eval_mode(model):
        correct = model(x).argmax(dim=1) == y
    out = {"target": target.cpu().numpy().astype(np.int64), "correct": correct.cpu().numpy(),
           "alpha_dx": al.cosine(g, dx).cpu().numpy(), "alpha_x": al.alpha_x(model, x, y).cpu().numpy(),
           "alpha_x_centered": al.alpha_x(model, x, y, centered=True).cpu().numpy()}
    exact = exact_residual(data)
    if exact is not None:
        dt = exact[start : start + len(x)].to(x.device)
        out["alpha_true"] = al.cosine(g, dt).cpu().numpy()
        dx_other = _residuals(G, dataset, split, idx, (1 - y).cpu(), settings.steps, x.device, data.x)
        out["cos_true"] = al.cosine(dx_other, dt).cpu().numpy()
    return out


@dataclass
class ImageAlignment:
    """The numbers of the per-image view (plain arrays; picklable): :func:`image_alignment`.

    Attributes:
        indices, labels, targets: (N,) split indices, labels, the residual's target class.
        x, dx_hat: (N, C, H, W) images and GAN residuals toward ``targets``.
        gradients: model name -> (N, C, H, W) grad_x (d_target - d_y), signed.
        alpha_dx: model name -> (N,) cos(gradient, dx_hat) (Eq. 8).
        closest: model name -> (N,) each model's own closest class (Eq. 5).
        dx_true, cos_true: exact residuals and cos(dx_hat, dx_true) (``squares``), else None.
    """

    indices: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    x: np.ndarray
    dx_hat: np.ndarray
    gradients: dict[str, np.ndarray]
    alpha_dx: dict[str, np.ndarray]
    closest: dict[str, np.ndarray]
    dx_true: Optional[np.ndarray] = None
    cos_true: Optional[np.ndarray] = None


def image_alignment(
    models: Mapping[str, nn.Module],
    indices: Sequence[int],
    target: Union[int, str],
    *,
    generator: nn.Module,
    dataset: str = "mnist-5k",
    split: str = "test",
    data=None,
    steps: Sequence[int] = generative.FAST_STEPS,
    device=None,
    progress: Optional[Progress] = None,
) -> ImageAlignment:
    """Residuals and gradients of chosen images of a split, every model toward the same class:
    the per-image counterpart of :func:`run` (same residual store, same Eq. 8).

    For each image: each model's closest class c~ (Eq. 5, :func:`gradviz.alignment.closest_class`),
    the GAN residual dx_hat toward ``target`` (Eqs. 15-16, :func:`gradviz.generative.residuals_for`:
    stored, each pair projected once), and for each model grad_x (d_target - d_y) and its
    cosine with dx_hat (alpha_dx, Eq. 8); on data with exact residuals (``squares``) also
    cos(dx_hat, dx_true).

    Args:
        models: model name -> classifier (each used on its own device, read-only).
        indices: (N,) positions in the split, N >= 1.
        target: a model name (each image's closest class under that model) or an int class
            (the same class for every image; never an image's label).
        generator: the dataset's class-conditional generator (:func:`gradviz.generative.load_generator`).
        dataset, split: the images, or ``data`` (the split, loaded) when given.
        steps: the projection's (free, penalised) Adam steps (default
            :data:`gradviz.generative.FAST_STEPS`).
        device: where to project (None: the first model's device).
        progress: ``progress(fraction, message)`` of the projection.

    Returns:
        :class:`ImageAlignment`.

    Raises:
        ValueError: no models or images, an index outside the split, a target model not among
            ``models``, a target equal to an image's label, bad steps.
    """
    if not models:
        raise ValueError("give at least one model")
    steps = _check_steps(steps)
    data = data if data is not None else load_dataset(dataset, split)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("give at least one image index")
    if idx.min() < 0 or idx.max() >= len(data.y):
        raise ValueError(f"image indices must lie in [0, {len(data.y)}) (the {split} split), got {idx.tolist()}")
    x, y = data.x[idx], data.y[idx]
    closest = {}
    for name, model in models.items():
        dev = model_device(model)
        closest[name] = al.closest_class(model, x.to(dev), y.to(dev)).cpu().numpy().astype(np.int64)
    if isinstance(target, str):
        if target not in closest:
            raise ValueError(f"the target model {target!r} is not among the compared models {list(closest)}")
        tg = closest[target]
    else:
        tg = np.full(idx.size, int(target), dtype=np.int64)
    dev0 = torch.device(device) if device is not None else model_device(next(iter(models.values())))
    dx = _residuals(generator, dataset, split, idx, tg, steps, dev0, data.x, progress).cpu()
    grads, alphas = {}, {}
    for name, model in models.items():
        dev = model_device(model)
        g = al.margin_gradient(model, x.to(dev), y.to(dev), torch.as_tensor(tg, device=dev)).cpu()
        grads[name] = g.numpy().astype(np.float32)
        alphas[name] = al.cosine(g, dx).numpy()
    exact = exact_residual(data)
    dx_true = cos_true = None
    if exact is not None:
        dt = exact[idx]
        dx_true = dt.numpy().astype(np.float32)
        cos_true = al.cosine(dx, dt).numpy()
    return ImageAlignment(indices=idx, labels=y.numpy(), targets=tg, x=x.numpy(), dx_hat=dx.numpy(),
                          gradients=grads, alpha_dx=alphas, closest=closest, dx_true=dx_true, cos_true=cos_true)


STUDY = Study(name="alignment", version=2, settings=Settings, compute=compute, chunk=100,
              summary="closest class, GAN residuals, alpha_dx and alpha_x")


@dataclass
class AlignmentResult(StudyResult):
    """The Alignment page's dataset-wide numbers, with the views it uses: ``targets``,
    ``alpha_dx``, ``alpha_x``, ``alpha_true`` (model -> (N,)), ``cos_true`` ((N,) or None)."""

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return self.column("target")

    @property
    def alpha_dx(self) -> dict[str, np.ndarray]:
        return self.column("alpha_dx")

    @property
    def alpha_x(self) -> dict[str, np.ndarray]:
        return self.column("alpha_x")

    @property
    def alpha_x_centered(self) -> dict[str, np.ndarray]:
        """alpha_x with x on the authors' [-1, 1] scale (:func:`gradviz.alignment.alpha_x`, ``centered``)."""
        return self.column("alpha_x_centered")

    @property
    def alpha_true(self) -> dict[str, np.ndarray]:
        return self.column("alpha_true")

    @property
    def clean_accuracy(self) -> dict[str, float]:
        """{model -> the fraction of the N images it classifies correctly}."""
        return {n: float(np.mean(c)) for n, c in self.column("correct").items()}

    @property
    def cos_true(self) -> Optional[np.ndarray]:
        first = self.per_image[self.model_names[0]]
        return first.get("cos_true")

    def table(self) -> pd.DataFrame:
        """The means per model (:func:`gradviz.viz.alignment.alignment_table`)."""
        return alignment_table(self.alpha_dx, self.alpha_x, cos_true=self.cos_true, alpha_true=self.alpha_true or None)

    def to_csv(self) -> bytes:
        """Per-image numbers (:func:`gradviz.viz.export.alignment_to_csv`)."""
        return alignment_to_csv(self.indices, self.labels, self.targets, self.alpha_dx, self.alpha_x,
                                cos_true=self.cos_true)

    def card_metrics(self, name: str) -> dict:
        """What :func:`write_card_metrics` stores as ``metrics["alignment"]`` of model ``name``:
        the images (``split``, ``n_images``), the target, the residual's settings (steps, lr,
        lambda_z, the generator's fingerprint), mean and standard error of alpha_dx, the
        means of alpha_x on the [0, 1] and [-1, 1] scales, and where the data carry exact
        residuals the mean alpha_dx with them and the mean cos(dx_hat, dx_true) (4 decimals)."""
        s = self.settings
        r4 = lambda v: round(float(v), 4)  # noqa: E731
        mean, sem, _ = mean_sem(self.alpha_dx[name])
        entry = {"split": s["split"], "n_images": self.n_images, "target": "closest class under this model (Eq. 5)",
                 "residual": {"steps": [int(v) for v in s["steps"]], "lr": s["lr"], "lambda_z": s["lambda_z"],
                              "generator": s["generator"]},
                 "mean_alpha_dx": r4(mean), "sem_alpha_dx": r4(sem),
                 "mean_alpha_x": r4(mean_sem(self.alpha_x[name])[0]),
                 "mean_alpha_x_centered": r4(mean_sem(self.alpha_x_centered[name])[0])}
        if name in self.alpha_true:
            entry["mean_alpha_dx_true_residual"] = r4(mean_sem(self.alpha_true[name])[0])
        if self.cos_true is not None:
            entry["mean_cos_dx_hat_dx_true"] = r4(mean_sem(self.cos_true)[0])
        return entry

    def to_npz(self) -> bytes:
        """Per-image numbers and settings (:func:`gradviz.viz.export.alignment_to_npz`)."""
        return alignment_to_npz(self.indices, self.labels, self.targets, self.alpha_dx, self.alpha_x,
                                cos_true=self.cos_true, alpha_true=self.alpha_true or None, settings=self.settings)


def run(models: Sequence[ModelLike], *, dataset: str = "mnist-5k", split: str = "test", n: Optional[int] = None,
        steps: Sequence[int] = generative.FAST_STEPS, generator=None, device="auto",
        progress: Optional[Progress] = None, store: Optional[ChunkStore] = None,
        recompute: bool = False, chunk: Optional[int] = None, compute_missing: bool = True) -> AlignmentResult:
    """Closest classes, GAN residuals, alpha_dx and alpha_x of each model on the first ``n``
    images of a split.

    Args:
        models: zoo names, checkpoint paths or modules.
        dataset, split, n: the images (n None: the whole split).
        steps: the projection's (free, penalised) Adam steps.
        generator: the class-conditional generator (a module, or a dataset name / checkpoint
            path for :func:`gradviz.generative.load_generator`; None: the dataset's).
        device, progress, store, recompute, chunk, compute_missing: see
            :func:`gradviz.studies.base.run_study`.

    Returns:
        :class:`AlignmentResult`.

    Raises:
        gradviz.generative.NoGeneratorError: the dataset has no generator.
        ValueError: bad steps, n out of range.
    """
    steps = _check_steps(steps)
    G = generator if isinstance(generator, torch.nn.Module) else generative.load_generator(generator or dataset)
    fingerprint = generative.generator_fingerprint(G)
    settings = Settings(steps=steps, generator=fingerprint)
    res = run_study(STUDY, models, settings, dataset=dataset, split=split, n=n, device=device, progress=progress,
                    store=store, recompute=recompute, chunk=chunk,
                    compute_missing=compute_missing, result=AlignmentResult, context={"generator": G})
    res.settings.update(lr=generative.default_projection_lr(dataset), lambda_z=generative.default_lambda_z(dataset),
                        target="each model's closest class (Eq. 5)")
    return res


#: ``write_card_metrics(result, names=None, *, measured_by=None)``: each model's
#: :meth:`AlignmentResult.card_metrics` into its card as ``metrics["alignment"]``.
write_card_metrics = card_writer(STUDY.name)
