"""Standard training: empirical risk minimisation with the cross-entropy on clean images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.training.objectives.base import ObjectiveBase

__all__ = ["StandardObjective"]


@dataclass
class StandardObjective(ObjectiveBase):
    """Empirical risk: the mean cross-entropy CE(f(x), y) over the batch's clean images.

    No options. Logged per batch: ``loss`` and ``accuracy`` (clean, a fraction in [0, 1]).
    """

    name = "standard"
    label = "standard (cross-entropy)"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None):
        """``(loss, stats)`` of the batch x (N, C, H, W) in [0, 1], y (N,): the scalar mean
        cross-entropy on the graph and ``{"loss", "accuracy"}``."""
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "accuracy": (logits.argmax(1) == y).float().mean().item()}

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set=None, progress=None) -> "StandardObjective":
        """The objective of ``method="standard"`` (nothing to set)."""
        return cls()
