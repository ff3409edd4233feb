"""TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and
Accuracy", ICML 2019): its loss and objective. Its attack, :func:`gradviz.attacks.trades_attack`,
lives beside PGD."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.attacks import trades_attack
from gradviz.training.objectives.base import Option, check_weight
from gradviz.training.objectives.pgd import PGDObjective, attack_settings

__all__ = ["TRADES_BETA", "TRADESObjective", "trades_loss"]

#: Default weight beta of the KL term: 6, the authors' CIFAR-10 value (they use 1 on MNIST).
TRADES_BETA = 6.0


def trades_loss(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, beta: float):
    """The TRADES loss (Zhang et al., ICML 2019, Eq. 5 as in the authors' ``trades.py``)::

        L = CE(f(x), y) + beta * (1/N) sum_i KL(softmax f(x_i) || softmax f(x_adv_i))

    the KL divergence summed over the K classes, averaged over the N images; the gradient
    flows through both f(x) and f(x_adv), as in the authors' code.

    Args:
        model: classifier (N, C, H, W) in [0, 1] -> logits (N, K).
        x, x_adv: (N, C, H, W) clean and adversarial images; y: (N,) labels.
        beta: weight of the robust (KL) term, >= 0 (the authors: 6 on CIFAR-10, 1 on MNIST).

    Returns:
        ``(loss, ce, kl, logits, logits_adv)``: scalar tensors on the graph (kl >= 0) and the
        two (N, K) logits.
    """
    logits, logits_adv = model(x), model(x_adv)
    ce = F.cross_entropy(logits, y)
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(logits, 1), reduction="batchmean", log_target=True)
    return ce + beta * kl, ce, kl, logits, logits_adv


@dataclass
class TRADESObjective(PGDObjective):
    """TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and
    Accuracy", ICML 2019, Eq. 5): :func:`trades_loss` at the x_adv of
    :func:`gradviz.attacks.trades_attack` (PGD on the KL divergence, not the cross-entropy).

    Attributes:
        eps, norm, steps, step_size, warmup_epochs: the KL attack, with the eps warm-up of
            :class:`PGDObjective` (step size scaled with eps during it).
        beta: weight of the KL term, >= 0 (default :data:`TRADES_BETA` = 6, the authors'
            CIFAR-10 value; they use 1 on MNIST).

    Logged per batch: ``loss``, ``ce`` (clean cross-entropy), ``kl``, ``accuracy`` (clean),
    ``adv_accuracy`` (at x_adv), ``eps``.

    Raises:
        ValueError: beta negative, infinite or not a number.
    """

    beta: float = TRADES_BETA
    name = "trades"
    label = "TRADES (Zhang et al.)"
    options = PGDObjective.options + (
        Option("trades_beta", TRADES_BETA, "weight beta of the KL term (Zhang et al.: 6 on CIFAR-10, 1 on MNIST)",
               label="TRADES beta", low=0.0, high=100.0),
    )

    def __post_init__(self):
        check_weight("TRADES beta", self.beta, f"default {TRADES_BETA:g}")

    def adversarial_examples(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0):
        """``(x_adv, eps)``: TRADES' KL attack of ``epoch`` on x (N, C, H, W) in [0, 1] (the
        labels are not used), x_adv in [0, 1] within eps of x, detached."""
        eps = self.eps_at(epoch)
        return trades_attack(model, x, eps=eps, norm=self.norm, steps=self.steps, step_size=self.step_at(epoch)), eps

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None):
        """``(loss, stats)``: :func:`trades_loss` (scalar, on the graph) and the logged numbers."""
        x_adv, eps = self.adversarial_examples(model, x, y, epoch=epoch)
        loss, ce, kl, logits, logits_adv = trades_loss(model, x, x_adv, y, self.beta)
        return loss, {
            "loss": loss.item(), "ce": ce.item(), "kl": kl.item(),
            "accuracy": (logits.argmax(1) == y).float().mean().item(),
            "adv_accuracy": (logits_adv.argmax(1) == y).float().mean().item(),
            "eps": eps,
        }

    @classmethod
    def default_model_name(cls, config) -> str:
        """``trades``."""
        return cls.name

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set=None, progress=None) -> "TRADESObjective":
        """The objective of a resolved configuration using TRADES (``method="trades"``, or
        AGR's base)."""
        return cls(**attack_settings(config), beta=config.trades_beta)
