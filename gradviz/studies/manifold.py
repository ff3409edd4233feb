"""Distance of adversarial examples to the data manifold (docs/methods.md section 4; Kim, Seo
and Jeon, "Bridging Adversarial Robustness and Gradient Interpretability").

Kim et al.'s first finding: adversarial training keeps the loss gradient close to the image
manifold, so a PGD step of a robust model moves an image along the manifold rather than off
it. They measure it as the distance of adversarial examples to the range of a generative
model. gradviz uses its class-conditional GAN and the projection of docs/methods.md
section 1 (Bigolin Lanfredi et al., Eqs. 15-16):

1. x_adv = untargeted l_2 PGD of the model at ``eps`` (default 3, in [0, 1] pixel units;
   random start, seeded per chunk);
2. c = the model's prediction on x_adv; G(z*, c) = the projection of x_adv onto the
   generator's class c;
3. ``distance_adv`` = ||x_adv - G(z*, c)||_2 per image.

The floor is the same distance for the clean image x projected onto its true class
(``distance_clean``, the generator's own reconstruction error, model-independent). Why eps
3: an MNIST digit has an l_2 norm of about 9 on this scale; at eps 3 every shipped model is
fooled on a large share of images (the standard model on all of them), the perturbation is
large enough to be seen, and the models' attacks differ in *where* they spend the budget,
which is what the distance measures. At the l_2 training radii (0.5 to 3) a smaller eps
leaves most robust models' images unchanged in class, and the distance would mostly measure
the start.

>>> from gradviz.studies import manifold
>>> res = manifold.run(["mnist-5k/standard", "mnist-5k/pgd-l2"], n=100)
>>> res.table()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from gradviz import generative
from gradviz.attacks import pgd
from gradviz.studies.base import ModelLike, Study, StudyResult, run_study
from gradviz.studies.store import ChunkStore
from gradviz.utils import Progress


@dataclass(frozen=True)
class Settings:
    """Attributes:
        eps: the l_2 radius of the attack ([0, 1] pixel units; default 3).
        steps: PGD steps (default 40; step size 2.5 * eps / steps).
        seed: the random start's seed; the chunk at split position s uses ``seed + s``.
        projection_steps: the projection's (free, penalised) Adam steps.
        generator: the generator's weights fingerprint (filled in by :func:`run`).
    """

    eps: float = 3.0
    steps: int = 40
    seed: int = 0
    projection_steps: tuple[int, int] = generative.FAST_STEPS
    generator: str = ""


def distance_to_range(generator: torch.nn.Module, x: torch.Tensor, target, *,
                      steps: Sequence[int] = generative.FAST_STEPS) -> torch.Tensor:
    """||x - G(z*, c)||_2 per image: the l_2 distance ([0, 1] pixel units) of each image to
    the generator's class-c range, G(z*, c) being :func:`gradviz.generative.project`'s
    closest generated image (Eqs. 15-16 of Bigolin Lanfredi et al.).

    Args:
        generator: class-conditional generator (read-only).
        x: (N, C, H, W) images in [0, 1].
        target: (N,) classes (or an int for all).
        steps: the projection's (free, penalised) Adam steps.

    Returns:
        (N,) float tensor on x's device, >= 0.
    """
    proj = generative.project(generator, x, target, steps=tuple(steps))
    return (x - proj.x_hat.to(x.device)).flatten(1).norm(dim=1)


def compute(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, settings: Settings,
            context: Optional[dict] = None) -> dict:
    """Per image: ``distance_adv``, ``distance_clean`` (l_2, [0, 1] scale), ``fooled`` (the
    attack changed the prediction away from y), ``predicted_adv``."""
    G = context["generator"]
    x_adv = pgd(model, x, y, eps=settings.eps, norm="l2", steps=settings.steps, seed=settings.seed + start)
    with torch.no_grad():
        pred = model(x_adv).argmax(dim=1)
    floors = context.setdefault("clean_distances", {})  # model-independent: once per chunk and run
    if start not in floors:
        floors[start] = distance_to_range(G, x, y, steps=settings.projection_steps).cpu().numpy()
    return {
        "distance_adv": distance_to_range(G, x_adv, pred, steps=settings.projection_steps).cpu().numpy(),
        "distance_clean": floors[start],
        "fooled": (pred != y).cpu().numpy(),
        "predicted_adv": pred.cpu().numpy().astype(np.int64),
    }


STUDY = Study(name="manifold", version=1, settings=Settings, compute=compute, chunk=100,
              summary="distance of l_2 PGD examples to the generator's range (Kim et al.)")


@dataclass
class ManifoldResult(StudyResult):
    """Views: ``distance_adv`` and ``distance_clean`` (model -> (N,))."""

    @property
    def distance_adv(self) -> dict[str, np.ndarray]:
        return self.column("distance_adv")

    @property
    def distance_clean(self) -> np.ndarray:
        return self.per_image[self.model_names[0]]["distance_clean"]

    def table(self) -> pd.DataFrame:
        """One row per model: mean and median ||x_adv - G(z*)||_2, the share of images the
        attack fooled, and the clean floor's mean (the same for every model)."""
        rows = []
        for n in self.model_names:
            d = self.per_image[n]
            rows.append({"model": n, "mean_distance_adv": float(np.mean(d["distance_adv"])),
                         "median_distance_adv": float(np.median(d["distance_adv"])),
                         "fooled": float(np.mean(d["fooled"])),
                         "mean_distance_clean": float(np.mean(d["distance_clean"]))})
        return pd.DataFrame(rows)


def run(models: Sequence[ModelLike], *, dataset: str = "mnist-5k", split: str = "test", n: Optional[int] = None,
        eps: float = 3.0, steps: int = 40, seed: int = 0, projection_steps: Sequence[int] = generative.FAST_STEPS,
        generator=None, device="auto", progress: Optional[Progress] = None, store: Optional[ChunkStore] = None,
        recompute: bool = False, chunk: Optional[int] = None, compute_missing: bool = True) -> ManifoldResult:
    """Distances of each model's l_2 PGD examples (and of the clean images) to the
    generator's range, on the first ``n`` images of a split.

    Args:
        models: zoo names, checkpoint paths or modules.
        dataset, split, n: the images (n None: the whole split).
        eps, steps, seed, projection_steps: see :class:`Settings`.
        generator: a module, dataset name or checkpoint path (None: the dataset's).
        device, progress, store, recompute, chunk, compute_missing: see
            :func:`gradviz.studies.base.run_study`.

    Raises:
        gradviz.generative.NoGeneratorError: the dataset has no generator.
        ValueError: eps <= 0, bad steps, n out of range.
    """
    if not float(eps) > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    projection_steps = tuple(int(s) for s in projection_steps)
    G = generator if isinstance(generator, torch.nn.Module) else generative.load_generator(generator or dataset)
    settings = Settings(eps=float(eps), steps=int(steps), seed=int(seed), projection_steps=projection_steps,
                        generator=generative.generator_fingerprint(G))
    return run_study(STUDY, models, settings, dataset=dataset, split=split, n=n, device=device, progress=progress,
                     store=store, recompute=recompute, chunk=chunk, compute_missing=compute_missing,
                     result=ManifoldResult, context={"generator": G})
