"""Gradient alignment over a split (docs/methods.md section 1; Bigolin Lanfredi, Schroeder and
Tasdizen): each model's closest class c~ (Eq. 5), the GAN residual dx toward it (Eqs. 15-16),
alpha_dx = cos(grad_x (d_c~ - d_y), dx) (Eq. 8) and alpha_x = |cos(x, grad_x loss)| (Etmann
et al.). On ``squares``, whose images carry their exact residual, also alpha_dx with the
exact residual and cos(dx_hat, dx_true).

The residuals come from :func:`gradviz.generative.residuals_for`, whose own store keeps each
(image, class) projection once, so pairs shared by several models are projected once.

>>> from gradviz.studies import alignment
>>> res = alignment.run(["mnist-5k/standard", "mnist-5k/lalpha"], n=100)
>>> res.table()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from gradviz import alignment as al
from gradviz import generative
from gradviz.studies.base import ModelLike, Study, StudyResult, run_study
from gradviz.studies.store import ChunkStore
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


def compute(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, settings: Settings,
            context: Optional[dict] = None) -> dict:
    """Per image: ``target`` (c~), ``alpha_dx``, ``alpha_x``; on data with exact residuals
    also ``alpha_true`` and ``cos_true`` (toward the other class of a two-class set)."""
    G, data = context["generator"], context["data"]
    idx = torch.arange(start, start + len(x))
    target = al.closest_class(model, x, y)
    dx = generative.residuals_for(G, context["dataset"], context["split"], idx, target.cpu(), steps=settings.steps,
                                  device=x.device, images=data.x).to(x.device)
    g = al.margin_gradient(model, x, y, target)
    out = {"target": target.cpu().numpy().astype(np.int64), "alpha_dx": al.cosine(g, dx).cpu().numpy(),
           "alpha_x": al.alpha_x(model, x, y).cpu().numpy()}
    exact = exact_residual(data)
    if exact is not None:
        dt = exact[start : start + len(x)].to(x.device)
        out["alpha_true"] = al.cosine(g, dt).cpu().numpy()
        other = (1 - y).cpu()
        dx_other = generative.residuals_for(G, context["dataset"], context["split"], idx, other, steps=settings.steps,
                                            device=x.device, images=data.x).to(x.device)
        out["cos_true"] = al.cosine(dx_other, dt).cpu().numpy()
    return out


STUDY = Study(name="alignment", version=1, settings=Settings, compute=compute, chunk=100,
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
    def alpha_true(self) -> dict[str, np.ndarray]:
        return self.column("alpha_true")

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
    steps = tuple(int(s) for s in steps)
    if len(steps) != 2 or min(steps) < 0 or sum(steps) < 1:
        raise ValueError(f"steps must be two counts (free, penalised) >= 0, not both 0; got {steps}")
    G = generator if isinstance(generator, torch.nn.Module) else generative.load_generator(generator or dataset)
    fingerprint = generative.generator_fingerprint(G)
    settings = Settings(steps=steps, generator=fingerprint)
    res = run_study(STUDY, models, settings, dataset=dataset, split=split, n=n, device=device, progress=progress,
                    store=store, recompute=recompute, chunk=chunk,
                    compute_missing=compute_missing, result=AlignmentResult, context={"generator": G})
    res.settings.update(lr=generative.default_projection_lr(dataset), lambda_z=generative.default_lambda_z(dataset),
                        target="each model's closest class (Eq. 5)")
    return res
