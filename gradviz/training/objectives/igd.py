"""Input Gradient Distillation (Chen, Dong and Xie; docs/methods.md section 3): PGD adversarial
training plus the alignment of the student's input gradient with a standard teacher's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from gradviz.tensors import per_image_cosine
from gradviz.training.objectives.base import Option, check_weight, same_dataset_model, standard_model_of
from gradviz.training.objectives.pgd import PGDObjective, attack_settings

__all__ = ["IGD_LAMBDA", "IGDObjective", "true_class_input_gradient"]

#: Default weight lambda of the distillation term (docs/methods.md section 3; the paper: 1 to 4).
IGD_LAMBDA = 1.0


def true_class_input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                              create_graph: bool = False) -> torch.Tensor:
    """grad_x f(x)_y, the input gradient of the true-class logit, (N, C, H, W) like x.

    Each image's logit depends on its own input only, so one backward pass of the summed
    logits gives every image's gradient. With ``create_graph`` the result stays on the
    graph (double backpropagation, for a loss on the gradient); otherwise it is detached.
    The model runs in its own mode.

    Args:
        model: classifier (N, C, H, W) -> logits (N, K).
        x: (N, C, H, W) images in [0, 1]; y: (N,) int64 classes in [0, K).
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        logit = model(xr).gather(1, y[:, None]).sum()
        (grad,) = torch.autograd.grad(logit, xr, create_graph=create_graph)
    return grad if create_graph else grad.detach()


@dataclass
class IGDObjective(PGDObjective):
    """Input Gradient Distillation (Chen, Dong and Xie; docs/methods.md section 3): PGD adversarial
    training plus an alignment of the student's input gradient with a standard teacher's::

        L = CE(f_S(x_adv), y) + lambda * mean_i (1 - cos(grad_x f_S(x_i)_y, g_T(x_i)))

    with g_T = grad_x f_T(x)_y, the teacher's true-class-logit gradient at the clean image
    (fixed, no graph), the student's gradient at the clean image taken with
    ``create_graph=True`` (double backpropagation), cos per image over C*H*W
    (:func:`gradviz.tensors.per_image_cosine`, 0 with a zero vector). x_adv is the PGD
    attack of :class:`PGDObjective`, with its settings and eps warm-up.

    Attributes:
        eps, norm, steps, step_size, warmup_epochs: the training attack (see
            :class:`PGDObjective`).
        teacher: the frozen standard model (eval mode, on the training device); never
            modified.
        igd_lambda: lambda >= 0, the weight of the distillation term (default
            :data:`IGD_LAMBDA` = 1; paper: 1 to 4).

    Logged per batch (the loop averages them per epoch): ``loss`` (the total), ``ce``
    (adversarial cross-entropy), ``cos`` (mean student-teacher gradient cosine, in [-1, 1]),
    ``adv_accuracy``, ``eps``.

    Raises:
        ValueError: igd_lambda negative or not a finite number; a call without a teacher.
    """

    teacher: Optional[nn.Module] = field(default=None, repr=False)
    igd_lambda: float = IGD_LAMBDA
    name = "igd"
    label = "IGD: input gradient distillation"
    options = PGDObjective.options + (
        Option("teacher", None, "the standard model whose input gradients the student follows (a zoo name or "
               "checkpoint path)", type=str, compute=standard_model_of, default_text="<dataset>/standard",
               label="Teacher (a standard model)", kind="model"),
        Option("igd_lambda", IGD_LAMBDA, "weight lambda of the input-gradient distillation term (paper 1-4)",
               label="lambda", low=0.0, high=100.0),
    )

    def __post_init__(self):
        check_weight("igd_lambda", self.igd_lambda, "paper: 1 to 4")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None):
        """``(loss, stats)``: L above (scalar, on the graph) and the logged numbers."""
        if self.teacher is None:
            raise ValueError("IGDObjective needs a teacher model (a standard model of the same dataset)")
        ce, stats = super().__call__(model, x, y, epoch=epoch)
        g_teacher = true_class_input_gradient(self.teacher, x, y)
        g_student = true_class_input_gradient(model, x, y, create_graph=True)
        cos = per_image_cosine(g_student, g_teacher)
        loss = ce + self.igd_lambda * (1.0 - cos).mean()
        stats = {**stats, "loss": loss.item(), "ce": ce.item(), "cos": cos.mean().item()}
        return loss, stats

    @classmethod
    def default_model_name(cls, config) -> str:
        """``igd``."""
        return cls.name

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set=None, progress=None) -> "IGDObjective":
        """The objective of a resolved ``method="igd"`` configuration, its teacher loaded from
        the zoo. Raises ValueError: the teacher is missing or of another dataset."""
        teacher = same_dataset_model(config.teacher, config.dataset, device, role="the IGD teacher",
                                     need="IGD needs a teacher model")
        return cls(**attack_settings(config), teacher=teacher, igd_lambda=config.igd_lambda)
