"""The alignment penalty L_alpha (Bigolin Lanfredi, Schroeder, Tasdizen, "Quantifying the
Preferential Direction of the Model Gradient in Adversarial Training With Projected Gradient
Descent", Eq. 9; docs/methods.md section 1): its GAN residuals, the loss gradient's direction
and the objective."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.alignment import closest_class
from gradviz.generative import FAST_STEPS, NoGeneratorError, load_generator, residual, residuals_for
from gradviz.tensors import per_image_cosine
from gradviz.training.objectives.base import (
    ObjectiveBase, Option, check_weight, same_dataset_model, standard_model_of, training_images,
)
from gradviz.utils import report

__all__ = ["LALPHA_LAMBDA", "LALPHA_PROJECTION_STEPS", "LAlphaObjective", "LAlphaResiduals",
           "loss_gradient_direction"]

#: Default weight lambda of the alignment term of L_alpha (docs/methods.md section 1: 0.1 to 0.3).
LALPHA_LAMBDA = 0.3
#: Projection steps (free, penalised) of L_alpha's training residuals: those of the
#: Alignment page, :data:`gradviz.generative.FAST_STEPS` (half the paper's; measured there).
LALPHA_PROJECTION_STEPS = FAST_STEPS


class LAlphaResiduals:
    """The residuals L_alpha aligns the gradient with, one per training image (Bigolin
    Lanfredi et al., docs/methods.md section 1, Eqs. 5 and 15-16):

        dx_i = G(z*, c~_i) - x_i,

    with c~_i the closest inaccurate class (Eq. 5) of a *reference* model (default the
    dataset's standard model) and G(z*, c~_i) the class-conditional generator's projection of
    x_i onto that class. They are computed once, before training (a projection per image and
    step would cost more than the training itself: 4,000 mnist-5k images x 375 Adam steps
    of G are ~8 CPU-minutes), so the class is the reference model's, not the current
    model's, and the images must not be translated (``augment=False``): a residual belongs
    to its unshifted image.

    Args:
        dx: (M, C, H, W) float residuals of the M training images, in training-set order.
        target: (M,) int64 the classes they point to.
        meta: how they were made (generator, reference model, steps, seconds).

    Raises:
        ValueError: dx not 4-D or target not (M,).
    """

    def __init__(self, dx: torch.Tensor, target: torch.Tensor, meta: Optional[dict] = None):
        if dx.ndim != 4 or target.shape != dx.shape[:1]:
            raise ValueError(f"dx must be (M, C, H, W) and target (M,), got {tuple(dx.shape)} and {tuple(target.shape)}")
        self.dx, self.target, self.meta = dx, target.long(), dict(meta or {})

    @classmethod
    def compute(cls, generator: nn.Module, reference: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                dataset: Optional[str] = None, split: str = "train", steps=LALPHA_PROJECTION_STEPS,
                batch_size: int = 1024, progress=None) -> "LAlphaResiduals":
        """Project the training images ``x`` (M, C, H, W) in [0, 1] with labels ``y`` (M,)
        onto the closest class of ``reference`` (:func:`gradviz.alignment.closest_class`).

        With ``dataset``, ``x`` must be the first M images of that dataset's ``split`` (the
        whole split or a ``limit`` prefix): the residuals then come from, and go to, the
        on-disk store of :func:`gradviz.generative.residuals_for`, so a second run with the
        same generator and reference model projects nothing. Without it they are computed
        with :func:`gradviz.generative.residual` and kept in memory only.
        ``batch_size``: images per closest-class call and pairs per projection batch.
        ``progress(fraction, message)`` while projecting. Raises ValueError for bad images or
        labels (see those functions)."""
        start = time.perf_counter()
        chunks = [closest_class(reference, x[i:i + batch_size], y[i:i + batch_size])
                  for i in range(0, len(x), batch_size)]
        target = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long, device=x.device)
        if dataset is not None:
            dx = residuals_for(generator, dataset, split, torch.arange(len(x)), target.cpu(), steps=steps,
                               batch_size=batch_size, device=x.device, progress=progress).to(x.device)
        else:
            dx = residual(generator, x, target, y=y, steps=steps, batch_size=batch_size, progress=progress)
        meta = dict(steps=list(steps), n=len(x), seconds=round(time.perf_counter() - start, 1),
                    reference=getattr(reference, "gradviz_info", {}).get("name"),
                    generator=getattr(generator, "gradviz_info", {}).get("path"))
        return cls(dx.detach(), target, meta)

    def to(self, device) -> "LAlphaResiduals":
        self.dx, self.target = self.dx.to(device), self.target.to(device)
        return self

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) residuals of the training images at positions ``index`` (B,)."""
        return self.dx[index.to(self.dx.device)]


def loss_gradient_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                            create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """grad_x CE(f(x_i), y_i) / (1 - p_y(x_i)): the loss gradient's direction, computed so
    that it does not vanish when the model is confident.

    Since grad_x CE = sum_c (p_c - [c = y]) grad_x d_c = (1 - p_y) sum_{c != y} q_c
    (grad_x d_c - grad_x d_y), with q the softmax over the other classes only, this returns
    ``sum_{c != y} q_c grad_x d_c - grad_x d_y`` (one vector-Jacobian product with the
    weights q - onehot(y)). Its cosine with any vector equals that of the loss gradient
    wherever p_y < 1, but its norm stays of the order of the logits' gradients: in float32
    the loss gradient of a confident image underflows to (nearly) 0, and the gradient of a
    cosine through a nearly-zero vector (a factor 1 / |g|) blew up L_alpha's training on
    mnist-5k (its loss climbed from -0.1 back to 2 in epoch 10 of 15).

    Returns ``(logits, direction)``, (N, K) and (N, C, H, W); with ``create_graph`` both stay
    on the graph (the weights q included), otherwise they are detached.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        logits = model(xr)
        onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        q = torch.softmax(logits.masked_fill(onehot.bool(), float("-inf")), 1)
        weights = q - onehot
        if not create_graph:
            weights = weights.detach()
        (direction,) = torch.autograd.grad(logits, xr, grad_outputs=weights, create_graph=create_graph)
    return (logits, direction) if create_graph else (logits.detach(), direction.detach())


@dataclass
class LAlphaObjective(ObjectiveBase):
    """The alignment penalty L_alpha (Bigolin Lanfredi, Schroeder, Tasdizen, Eq. 9;
    docs/methods.md section 1)::

        L = CE(f(x), y) - lambda * mean_i cos(grad_x CE(f(x_i), y_i), dx_i)

    with dx_i the GAN residual of image i toward its closest inaccurate class
    (:class:`LAlphaResiduals`, detached), the input gradient taken with
    ``create_graph=True`` (double backpropagation), cos per image over C*H*W
    (:func:`gradviz.tensors.per_image_cosine`: 0 with a zero vector). The cosine is computed
    with :func:`loss_gradient_direction`, the loss gradient divided by 1 - p_y: the same
    cosine, without the blow-up of a confident image's vanishing gradient. No adversarial
    examples. The authors' code aligns the gradient of the logit difference d_c~ - d_y,
    which alpha_dx (Eq. 8) measures, instead of the loss gradient; gradviz follows the
    paper's equation as docs/methods.md states it.

    Attributes:
        residuals: the training images' residuals (looked up by the batch's ``index``).
        alpha_lambda: lambda >= 0 (default :data:`LALPHA_LAMBDA` = 0.3; paper 0.1 to 0.3).

    Logged per batch: ``loss``, ``ce``, ``alpha`` (mean cosine in [-1, 1], the training
    images' alignment), ``accuracy``.

    Raises:
        ValueError: alpha_lambda negative or not a finite number; a call without residuals
            or without ``index``.
    """

    residuals: Optional[LAlphaResiduals] = field(default=None, repr=False)
    alpha_lambda: float = LALPHA_LAMBDA
    name = "lalpha"
    label = "L_alpha: alignment with the GAN residual"
    options = (
        Option("lalpha_lambda", LALPHA_LAMBDA, "weight lambda of the alignment term (paper 0.1-0.3)", label="lambda",
               low=0.0, high=10.0),
        Option("lalpha_reference", None, "the model whose closest classes the training residuals point to; needs "
               "the dataset's generator; trains without shifts", type=str, compute=standard_model_of,
               default_text="<dataset>/standard", label="Closest classes of", kind="model"),
    )

    def __post_init__(self):
        check_weight("alpha_lambda", self.alpha_lambda, "paper: 0.1 to 0.3")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None):
        """``(loss, stats)``: L above (scalar, on the graph) and the logged numbers; ``index``
        (N,): the images' training-set positions, whose residuals are looked up."""
        if self.residuals is None:
            raise ValueError("LAlphaObjective needs the training images' residuals (LAlphaResiduals)")
        if index is None:
            raise ValueError("LAlphaObjective needs each image's position in the training set (index)")
        logits, grad = loss_gradient_direction(model, x, y, create_graph=True)
        cos = per_image_cosine(grad, self.residuals(index).to(grad.dtype))
        ce = F.cross_entropy(logits, y)
        loss = ce - self.alpha_lambda * cos.mean()
        return loss, {
            "loss": loss.item(), "ce": ce.item(), "alpha": cos.mean().item(),
            "accuracy": (logits.argmax(1) == y).float().mean().item(),
        }

    @classmethod
    def resolve(cls, config):
        """No random shifts: each residual belongs to its unshifted training image."""
        config.augment = False
        return config

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set=None, progress=None) -> "LAlphaObjective":
        """The objective of a resolved ``method="lalpha"`` configuration: the residuals of
        ``train_set`` (default: the images the configuration trains on; it must be the
        dataset's training split or a prefix of it: the residuals are stored by position),
        computed once with the dataset's generator toward the closest classes of
        ``lalpha_reference``. ``progress`` reports the projection (the only slow set-up).

        Raises:
            ValueError: no generator for the dataset; the reference model missing or of
                another dataset.
        """
        images = training_images(config, train_set)
        try:
            generator = load_generator(config.dataset, device=device)
        except NoGeneratorError as err:
            raise ValueError(f"lalpha needs the dataset's generator for its residuals: {err}") from err
        reference = same_dataset_model(config.lalpha_reference, config.dataset, device, role="the lalpha reference",
                                       need="lalpha needs a reference model for the closest classes")

        def on_projection(fraction: float, message: str) -> None:
            report(progress, 0.0, f"L_alpha residuals of the training images {100 * fraction:.0f} %")

        residuals = LAlphaResiduals.compute(generator, reference, images.x.to(device), images.y.to(device),
                                            dataset=config.dataset, split="train", progress=on_projection)
        return cls(residuals, config.lalpha_lambda)
