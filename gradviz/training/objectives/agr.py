"""Adversarial training with Adaptive Gradient Reconstruction (AGR; docs/methods.md section 5;
"Balancing Generalization and Robustness in Adversarial Training via Steering through Clean
and Adversarial Gradient Directions", code RUIYUN-ML/AGR) around PGD or TRADES."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.tensors import per_image_cosine
from gradviz.training.objectives.base import ObjectiveBase, Option
from gradviz.training.objectives.pgd import PGDObjective
from gradviz.training.objectives.trades import TRADESObjective

__all__ = ["AGR_BASE", "AGR_BASE_CLASSES", "AGR_BASES", "AGR_CLIP", "AGRObjective", "agr_combine",
           "default_start_epoch"]

#: The adversarial objectives AGR can wrap (name -> class), their names, and the default one.
AGR_BASE_CLASSES = {"pgd": PGDObjective, "trades": TRADESObjective}
AGR_BASES = tuple(AGR_BASE_CLASSES)
AGR_BASE = "pgd"
#: The per-tensor norm bound of the reconstructed gradient (the authors': 0.1).
AGR_CLIP = 0.1
#: AGR starts after this fraction of the epochs (the authors: from epoch 156 of 200).
AGR_START_FRACTION = 0.775


def default_start_epoch(config) -> int:
    """AGR's default first epoch (1-based): ``int(0.775 * epochs) + 1``, 156 of 200 as the
    authors (their ``i >= 155`` counting from 0)."""
    return int(AGR_START_FRACTION * config.epochs) + 1


@torch.no_grad()
def agr_combine(g_adv: Sequence[torch.Tensor], g_cl: Sequence[torch.Tensor], *, clip: Optional[float] = AGR_CLIP,
                apply: bool = True) -> tuple[list[torch.Tensor], dict]:
    """Adaptive Gradient Reconstruction (AGR; docs/methods.md section 5, the authors' ``train.py``
    of RUIYUN-ML/AGR), one parameter tensor at a time: with c = cos(g_adv, g_cl) over the
    tensor's entries (0 when either is 0),

    * c <= 0, Gradient Orthogonal Projection: ``g = g_adv - (<g_adv, g_cl> / |g_cl|^2) g_cl``
      (orthogonal to g_cl; ``g = g_adv`` when g_cl = 0);
    * c > 0, interpolation: ``g = c g_cl + (1 - c) g_adv``;

    then the clip ``g <- g * min(1, clip / |g|)`` (per tensor; |g| = 0 stays 0).

    Args:
        g_adv: per-tensor gradients of the adversarial training loss (PGD or TRADES).
        g_cl: per-tensor gradients of the clean cross-entropy, same shapes.
        clip: the norm bound > 0 (default :data:`AGR_CLIP` = 0.1, the authors'); None: no
            clip.
        apply: False returns ``g_adv`` unchanged (the epochs before AGR starts) but still
            measures the diagnostics, as the authors' code does.

    Returns:
        ``(g, stats)``: the gradients to use, and ``agr_cos`` (mean c over tensors),
        ``agr_gop_rate`` (fraction of tensors with c <= 0, "GOP rate"), ``agr_norm_adv``,
        ``agr_norm_clean``, ``agr_norm`` (mean per-tensor l_2 norms of g_adv, g_cl and g).

    Raises:
        ValueError: empty lists or lists of different lengths; two tensors of different
            shapes.
    """
    if len(g_adv) != len(g_cl) or not len(g_adv):
        raise ValueError("g_adv and g_cl must be non-empty lists of the same length")
    out, cosines, norms_adv, norms_cl, norms = [], [], [], [], []
    for ga, gc in zip(g_adv, g_cl):
        if ga.shape != gc.shape:
            raise ValueError(f"gradient shapes differ: {tuple(ga.shape)} and {tuple(gc.shape)}")
        c = per_image_cosine(ga.reshape(1, -1), gc.reshape(1, -1))[0]
        n_cl2 = (gc * gc).sum()
        if not apply:
            g = ga
        elif c <= 0:
            g = ga - ((ga * gc).sum() / n_cl2) * gc if n_cl2 > 0 else ga
        else:
            g = c * gc + (1 - c) * ga
        if apply and clip is not None:
            n = torch.linalg.vector_norm(g)
            if n > clip:
                g = g * (clip / n)
        out.append(g.clone())
        cosines.append(float(c))
        norms_adv.append(float(torch.linalg.vector_norm(ga)))
        norms_cl.append(float(torch.linalg.vector_norm(gc)))
        norms.append(float(torch.linalg.vector_norm(g)))
    r = len(out)
    return out, {
        "agr_cos": sum(cosines) / r,
        "agr_gop_rate": sum(c <= 0 for c in cosines) / r,
        "agr_norm_adv": sum(norms_adv) / r,
        "agr_norm_clean": sum(norms_cl) / r,
        "agr_norm": sum(norms) / r,
    }


@dataclass
class AGRObjective(ObjectiveBase):
    """Adversarial training with Adaptive Gradient Reconstruction (docs/methods.md section 5;
    "Balancing Generalization and Robustness in Adversarial Training via Steering through
    Clean and Adversarial Gradient Directions", code RUIYUN-ML/AGR) around a base objective,
    :class:`PGDObjective` (Madry AT) or :class:`TRADESObjective`.

    Each batch takes two backward passes: g_adv of the base loss, g_cl of the clean
    cross-entropy CE(f(x), y); :func:`agr_combine` merges them per parameter tensor, the
    result becomes ``p.grad`` and the optimizer steps. From epoch ``start_epoch`` (1-based,
    as in the log) on; before it the update is the base method's (g = g_adv), but the
    diagnostics are measured from the first epoch, as in the authors' code.

    Differences from the authors' code: gradviz's loop uses Adam with a one-cycle schedule
    (they: SGD, lr 0.1, steps at epochs 100 and 150, AGR from epoch 156 of 200 when
    counting from 1); with a TRADES base, x_adv comes from TRADES' KL attack (they reuse the
    PGD cross-entropy attack for every method).

    Attributes:
        base: the adversarial objective whose gradient is reconstructed.
        start_epoch: first epoch (1-based, >= 1) with AGR (default 1 here; a TrainConfig's
            default is :func:`default_start_epoch`, ``int(0.775 * epochs) + 1``: 156 of 200,
            the authors' setting).
        clip: the per-tensor norm bound > 0 (default :data:`AGR_CLIP` = 0.1, the
            authors'); None: no clip.

    Logged per batch: the base's numbers, ``clean_ce``, the diagnostics of
    :func:`agr_combine` and ``agr_active`` (1 when AGR changed the update).

    Raises:
        ValueError: start_epoch not an integer >= 1; clip not a finite number > 0.
    """

    base: Union[PGDObjective, TRADESObjective] = field(default_factory=PGDObjective)
    start_epoch: int = 1
    clip: Optional[float] = AGR_CLIP
    name = "agr"
    label = "AGR: adaptive gradient reconstruction"
    options = (
        Option("agr_base", AGR_BASE, "the adversarial objective it wraps (uses --eps, --steps, ...)", type=str,
               choices=AGR_BASES, label="AGR wraps", what="AGR base"),
        Option("agr_start_epoch", None, "first epoch (1-based) with AGR", type=int, compute=default_start_epoch,
               default_text="int(0.775 * epochs) + 1: 156 of 200, the authors'", label="AGR from epoch",
               low=1, high=500),
        Option("agr_clip", AGR_CLIP, "per-tensor gradient norm clip", label="Gradient clip", low=0.001, high=10.0),
    )
    adversarial = True
    distributed_refusal = (
        "its step takes the clean and the adversarial parameter gradients with torch.autograd.grad, which "
        "DistributedDataParallel never all-reduces, and combines them per tensor (cosine, projection, norm "
        "clip), which is not linear: the average of the processes' reconstructed gradients is not the "
        "reconstruction of the full batch's gradients")

    def __post_init__(self):
        if isinstance(self.start_epoch, bool) or int(self.start_epoch) != self.start_epoch or self.start_epoch < 1:
            raise ValueError(f"agr start epoch must be an integer >= 1 (1-based), got {self.start_epoch!r}")
        if self.clip is not None and not (self.clip > 0 and self.clip != float("inf")):
            raise ValueError(f"agr clip must be a finite number > 0 (the authors: {AGR_CLIP:g}), got {self.clip!r}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None):
        """The base objective's ``(loss, stats)`` (what AGR reconstructs the gradient of)."""
        return self.base(model, x, y, epoch=epoch, index=index)

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
             epoch: int = 0, index=None) -> dict:
        """One optimisation step with the reconstructed gradient; returns the batch's numbers."""
        params = [p for p in model.parameters() if p.requires_grad]
        loss_adv, stats = self.base(model, x, y, epoch=epoch, index=index)
        g_adv = torch.autograd.grad(loss_adv, params)
        clean = F.cross_entropy(model(x), y)
        g_cl = torch.autograd.grad(clean, params)
        active = epoch + 1 >= self.start_epoch
        grads, diag = agr_combine(g_adv, g_cl, clip=self.clip, apply=active)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        return {**stats, "clean_ce": clean.item(), **diag, "agr_active": float(active)}

    @classmethod
    def base_class(cls, settings: Mapping[str, Any]) -> type:
        """The class of the wrapped objective that ``settings["agr_base"]`` names (None:
        :data:`AGR_BASE`). Raises ValueError for another name."""
        base = settings.get("agr_base") or AGR_BASE
        if base not in AGR_BASES:
            raise ValueError(f"AGR wraps one of {AGR_BASES}, not {base!r}")
        return AGR_BASE_CLASSES[base]

    @classmethod
    def options_for(cls, settings: Mapping[str, Any]) -> tuple[Option, ...]:
        """AGR's options, then the wrapped objective's (the attack's; TRADES' beta)."""
        return cls.options + cls.base_class(settings).options_for(settings)

    @classmethod
    def possible_options(cls) -> tuple[Option, ...]:
        """AGR's options, then those of every objective it can wrap (each once)."""
        out = list(cls.options)
        for base in AGR_BASE_CLASSES.values():
            out += [o for o in base.possible_options() if o not in out]
        return tuple(out)

    @classmethod
    def default_model_name(cls, config) -> str:
        """``agr`` around PGD, ``agr-<base>`` around another objective (``agr-trades``)."""
        return cls.name if config.agr_base == AGR_BASE else f"{cls.name}-{config.agr_base}"

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set=None, progress=None) -> "AGRObjective":
        """The objective of a resolved ``method="agr"`` configuration, around the base it
        names (built from the same configuration)."""
        base = cls.base_class(vars(config)).from_config(dataclasses.replace(config, method=config.agr_base),
                                                         device=device, train_set=train_set, progress=progress)
        return cls(base, start_epoch=config.agr_start_epoch, clip=config.agr_clip)
