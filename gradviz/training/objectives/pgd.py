"""Madry et al.'s PGD adversarial training, and the training attack's settings that every
adversarial objective (IGD, TRADES, AGR) shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.attacks import default_step_size, pgd
from gradviz.tensors import NORMS
from gradviz.training.objectives.base import ObjectiveBase, Option

__all__ = ["ATTACK_OPTIONS", "PGDObjective", "attack_settings"]

#: The training attack's defaults: l_inf eps 0.3 (Madry et al.'s MNIST radius), 20 steps,
#: no eps warm-up.
PGD_EPS, PGD_NORM, PGD_STEPS, PGD_WARMUP_EPOCHS = 0.3, "linf", 20, 0

#: The training attack's options (fields of TrainConfig), shared by every objective that
#: trains on adversarial examples; unused by the others, which record eps 0, norm None,
#: steps 0.
ATTACK_OPTIONS = (
    Option("eps", PGD_EPS, "training attack radius, [0, 1] pixel units", unused=0.0,
           label="eps (training radius)", low=0.0, high=1.0),
    Option("norm", PGD_NORM, "training attack norm", type=str, choices=NORMS, label="Norm", what="norm"),
    Option("steps", PGD_STEPS, "steps of the training attack", type=int, unused=0, label="Attack steps",
           low=1, high=100),
    Option("step_size", None, "step size of the training attack", default_text="2.5 * eps / steps",
           label="Attack step size", low=0.0, high=1.0),
    Option("warmup_epochs", PGD_WARMUP_EPOCHS, "epochs over which eps ramps up linearly (0: full eps from the "
           "start)", type=int, unused=0, label="eps warm-up epochs", low=0, high=100),
)


def attack_settings(config) -> dict:
    """The attack's keyword arguments of an adversarial objective (eps, norm, steps,
    step_size, warmup_epochs) from a resolved :class:`gradviz.training.TrainConfig`."""
    return {o.name: getattr(config, o.name) for o in ATTACK_OPTIONS}


@dataclass
class PGDObjective(ObjectiveBase):
    """Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR
    2018), Eq. 2.1: minimise CE(f(x_adv), y) where x_adv is a PGD attack on the current
    model (:func:`gradviz.attacks.pgd`: random start, ``steps`` steps of ``step_size``, the
    model in eval mode during the attack), the loss then taken in the model's own mode.

    Attributes:
        eps: ball radius in [0, 1] pixel units (default 0.3, Madry et al.'s MNIST l_inf; 0:
            clean training).
        norm: ``"linf"`` (default) or ``"l2"``.
        steps: attack steps (default 20).
        step_size: default :func:`gradviz.attacks.default_step_size` (2.5 * eps / steps).
        warmup_epochs: eps grows linearly from eps / warmup_epochs to eps over the first
            epochs (0, default: full eps from the start); helps small data sets escape the
            trivial constant classifier at large eps.

    Logged per batch: ``loss`` (the adversarial cross-entropy), ``adv_accuracy`` (at x_adv,
    a fraction in [0, 1]), ``eps`` (this epoch's radius).
    """

    eps: float = PGD_EPS
    norm: str = PGD_NORM
    steps: int = PGD_STEPS
    step_size: Optional[float] = None
    warmup_epochs: int = PGD_WARMUP_EPOCHS
    name = "pgd"
    label = "PGD adversarial training (Madry et al.)"
    options = ATTACK_OPTIONS
    adversarial = True

    def eps_at(self, epoch: int) -> float:
        """The radius at 0-based ``epoch``: eps * (epoch + 1) / warmup_epochs during the
        warm-up, then eps."""
        if self.warmup_epochs <= 0 or epoch >= self.warmup_epochs:
            return self.eps
        return self.eps * (epoch + 1) / self.warmup_epochs

    def step_at(self, epoch: int) -> float:
        """The attack's step size at ``epoch``: ``step_size`` (default 2.5 * eps / steps),
        scaled down with eps during the warm-up."""
        eps = self.eps_at(epoch)
        step = self.step_size if self.step_size is not None else default_step_size(self.eps, self.steps)
        return step * eps / self.eps if self.eps > 0 else step

    def adversarial_examples(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0):
        """``(x_adv, eps)``: the PGD attack of ``epoch`` on x (N, C, H, W) in [0, 1] with
        labels y (N,), x_adv in [0, 1] within eps of x, detached; x itself when eps is 0."""
        eps, step = self.eps_at(epoch), self.step_at(epoch)
        if eps <= 0:
            return x, eps
        return pgd(model, x, y, eps=eps, norm=self.norm, steps=self.steps, step_size=step or None,
                   random_start=True), eps

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None):
        """``(loss, stats)``: the mean cross-entropy at x_adv (scalar, on the graph) and the
        logged numbers."""
        x_adv, eps = self.adversarial_examples(model, x, y, epoch=epoch)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        return loss, {
            "loss": loss.item(),
            "adv_accuracy": (logits.argmax(1) == y).float().mean().item(),
            "eps": eps,
        }

    @classmethod
    def default_model_name(cls, config) -> str:
        """``pgd-<norm>``, e.g. ``pgd-linf``."""
        return f"pgd-{config.norm}"

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set=None, progress=None) -> "PGDObjective":
        """The objective of a resolved ``method="pgd"`` configuration."""
        return cls(**attack_settings(config))
