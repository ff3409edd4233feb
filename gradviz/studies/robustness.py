"""Robustness over a split: accuracy against eps under PGD, and its median eps50.

The curve of docs/methods.md section 1 (Bigolin Lanfredi et al.): for each eps of a grid,
the fraction of images still classified correctly after an untargeted PGD attack, nested
(an image counts at eps only if it survived every smaller eps of the grid:
:func:`gradviz.attacks.robust_at_eps`), and eps50, where the curve crosses 50 %
(:func:`gradviz.attacks.eps50`).

>>> from gradviz.studies import robustness
>>> res = robustness.run(["mnist-5k/standard", "mnist-5k/pgd-linf"], n=100)
>>> res.table()[["model", "clean_accuracy", "eps50"]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from gradviz.attacks import eps50, robust_at_eps
from gradviz.studies.base import ModelLike, Study, StudyResult, run_study
from gradviz.studies.store import ChunkStore
from gradviz.utils import Progress

#: The default grid ([0, 1] pixel units) per norm: the MNIST l_inf evaluation eps 0.3 times
#: 0, 1/12, ..., 5/3, and the l_2 grid up to 5 (the pgd-l2 model's training eps is 2).
DEFAULT_GRIDS = {
    "linf": (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5),
    "l2": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0),
}


@dataclass(frozen=True)
class Settings:
    """The attack of the curve.

    Attributes:
        norm: ``"linf"`` or ``"l2"``.
        eps_grid: ascending radii in [0, 1] pixel units (None: :data:`DEFAULT_GRIDS` of the norm).
        steps: PGD steps per eps (default 40); the step size is 2.5 * eps / steps.
        seed: the random starts' seed; the chunk of images starting at split position s
            uses ``seed + s`` (so results do not depend on how a run was split or resumed).
    """

    norm: str = "linf"
    eps_grid: Optional[tuple[float, ...]] = None
    steps: int = 40
    seed: int = 0

    def grid(self) -> tuple[float, ...]:
        return tuple(float(e) for e in (self.eps_grid if self.eps_grid is not None else DEFAULT_GRIDS[self.norm]))


def compute(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, settings: Settings,
            context: Optional[dict] = None) -> dict:
    """``robust`` (B, E) bool: image still correct after the nested attack at each eps."""
    if settings.norm not in DEFAULT_GRIDS:
        raise ValueError(f"norm must be one of {sorted(DEFAULT_GRIDS)}, got {settings.norm!r}")
    flags = robust_at_eps(model, x, y, settings.grid(), norm=settings.norm, steps=settings.steps,
                          seed=settings.seed + start, nested=True, batch_size=len(x))
    return {"robust": flags.numpy()}


STUDY = Study(name="robustness", version=1, settings=Settings, compute=compute, chunk=250,
              summary="accuracy vs eps under nested PGD, and eps50")


@dataclass
class RobustnessResult(StudyResult):
    """Per image and eps: ``per_image[model]["robust"]`` (N, E) bool."""

    @property
    def eps_grid(self) -> list[float]:
        return list(self.settings["eps_grid_resolved"])

    def accuracy(self) -> dict[str, np.ndarray]:
        """{model -> (E,) accuracy at each eps of the grid, fractions in [0, 1]}."""
        return {n: a.mean(axis=0) for n, a in self.column("robust").items()}

    def table(self) -> pd.DataFrame:
        """One row per model: clean accuracy (the grid's eps 0 when it has one), the
        accuracy at each eps (columns ``acc@<eps>``) and eps50 (NaN when the curve does not
        cross 50 % inside the grid)."""
        rows = []
        for name, acc in self.accuracy().items():
            row = {"model": name}
            row.update({f"acc@{e:g}": float(a) for e, a in zip(self.eps_grid, acc)})
            row["clean_accuracy"] = float(acc[0]) if self.eps_grid[0] == 0 else float("nan")
            row["eps50"] = float(eps50(self.eps_grid, acc))
            rows.append(row)
        return pd.DataFrame(rows)


def run(models: Sequence[ModelLike], *, dataset: str = "mnist-5k", split: str = "test", n: Optional[int] = None,
        norm: str = "linf", eps_grid: Optional[Sequence[float]] = None, steps: int = 40, seed: int = 0,
        device="auto", progress: Optional[Progress] = None, store: Optional[ChunkStore] = None,
        recompute: bool = False, chunk: Optional[int] = None, compute_missing: bool = True) -> RobustnessResult:
    """Accuracy vs eps and eps50 of each model on the first ``n`` images of a split.

    Args:
        models: zoo names, checkpoint paths or modules.
        dataset, split, n: the images (n None: the whole split).
        norm, eps_grid, steps, seed: the attack (see :class:`Settings`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: ``progress(fraction, message)``.
        store, recompute, chunk, compute_missing: see :func:`gradviz.studies.base.run_study`.

    Returns:
        :class:`RobustnessResult`.

    Raises:
        ValueError: an unknown norm, a bad grid (unsorted, negative, l_inf above 1), n out of range.
    """
    settings = Settings(norm=norm, eps_grid=None if eps_grid is None else tuple(float(e) for e in eps_grid),
                        steps=int(steps), seed=int(seed))
    if norm not in DEFAULT_GRIDS:
        raise ValueError(f"norm must be one of {sorted(DEFAULT_GRIDS)}, got {norm!r}")
    res = run_study(STUDY, models, settings, dataset=dataset, split=split, n=n, device=device, progress=progress,
                    store=store, recompute=recompute, chunk=chunk,
                    compute_missing=compute_missing, result=RobustnessResult)
    res.settings["eps_grid_resolved"] = list(settings.grid())
    return res
