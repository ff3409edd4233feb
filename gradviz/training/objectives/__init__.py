"""Training objectives, one module each, and their registry :data:`OBJECTIVES`.

Each objective maps a batch to a scalar loss to minimise plus a few numbers to log; the loop
in :mod:`gradviz.training.loop` is shared by all of them. The interface, and the class-level
metadata each one owns (its name, options with their defaults and help, whether it trains on
adversarial examples, its default model name, how a TrainConfig builds it), is the
:class:`~gradviz.training.objectives.base.Objective` protocol of :mod:`.base`.

* :class:`StandardObjective` (:mod:`.standard`): cross-entropy;
* :class:`PGDObjective` (:mod:`.pgd`): Madry et al. adversarial training;
* :class:`IGDObjective` (:mod:`.igd`): input gradient distillation (docs/methods.md section 3);
* :class:`TRADESObjective` (:mod:`.trades`): Zhang et al. (ICML 2019), TRADES;
* :class:`PAGObjective` (:mod:`.pag`): perceptually aligned gradients (Ganz, Kawar, Elad;
  docs/methods.md section 2), with :class:`PAGTargets` (class mean, nearest neighbour);
* :class:`AGRObjective` (:mod:`.agr`): adaptive gradient reconstruction around PGD or TRADES
  (docs/methods.md section 5), with :func:`agr_combine`;
* :class:`LAlphaObjective` (:mod:`.lalpha`): the alignment penalty L_alpha of Bigolin
  Lanfredi et al. (docs/methods.md section 1), with :class:`LAlphaResiduals` (GAN residuals).

>>> from gradviz.training import OBJECTIVES
>>> OBJECTIVES["trades"].options[-1].default   # TRADES' beta
6.0
"""

from __future__ import annotations

from gradviz.training.objectives.agr import AGR_BASES, AGR_CLIP, AGRObjective, agr_combine
from gradviz.training.objectives.base import Objective, ObjectiveBase, Option, SteppingObjective
from gradviz.training.objectives.igd import IGD_LAMBDA, IGDObjective, true_class_input_gradient
from gradviz.training.objectives.lalpha import (
    LALPHA_LAMBDA, LALPHA_PROJECTION_STEPS, LAlphaObjective, LAlphaResiduals, loss_gradient_direction,
)
from gradviz.training.objectives.pag import (
    PAG_LAMBDA, PAG_TARGETS, PAGObjective, PAGTargets, class_log_prob_gradients,
)
from gradviz.training.objectives.pgd import ATTACK_OPTIONS, PGDObjective
from gradviz.training.objectives.standard import StandardObjective
from gradviz.training.objectives.trades import TRADES_BETA, TRADESObjective, trades_loss

__all__ = [
    "AGR_BASES", "AGR_CLIP", "ATTACK_OPTIONS", "IGD_LAMBDA", "LALPHA_LAMBDA", "LALPHA_PROJECTION_STEPS",
    "OBJECTIVES", "PAG_LAMBDA", "PAG_TARGETS", "TRADES_BETA",
    "AGRObjective", "IGDObjective", "LAlphaObjective", "LAlphaResiduals", "Objective", "ObjectiveBase", "Option",
    "PAGObjective", "PAGTargets", "PGDObjective", "StandardObjective", "SteppingObjective", "TRADESObjective",
    "agr_combine", "all_options", "class_log_prob_gradients", "loss_gradient_direction", "objective_class",
    "option_defaults", "true_class_input_gradient", "trades_loss",
]

#: Every training method: its name (``TrainConfig.method``) -> its objective class, in the
#: order the command line and the app list them.
OBJECTIVES: dict[str, type] = {
    cls.name: cls
    for cls in (StandardObjective, PGDObjective, IGDObjective, TRADESObjective, PAGObjective, AGRObjective,
                LAlphaObjective)
}


def objective_class(method: str) -> type:
    """The objective class of ``method`` (a key of :data:`OBJECTIVES`).

    Raises:
        ValueError: an unknown method ("unknown training method ...; choose one of ...").
    """
    try:
        return OBJECTIVES[method]
    except (KeyError, TypeError):
        raise ValueError(f"unknown training method {method!r}; choose one of {tuple(OBJECTIVES)}") from None


def all_options() -> dict[str, tuple[Option, tuple[str, ...]]]:
    """Every option of every objective, once: name -> (the :class:`Option`, the methods
    that may use it, in :data:`OBJECTIVES` order), in order of first appearance. An option
    two objectives share (the attack's eps, TRADES' beta in AGR) is one Option object,
    defined once.

    Raises:
        RuntimeError: two objectives define different options of the same name.
    """
    out: dict[str, tuple[Option, tuple[str, ...]]] = {}
    for method, cls in OBJECTIVES.items():
        for option in cls.possible_options():
            known, methods = out.get(option.name, (option, ()))
            if known is not option:
                raise RuntimeError(f"option {option.name!r} is defined twice ({methods[0]} and {method})")
            out[option.name] = (option, methods + (method,))
    return out


def option_defaults() -> dict[str, object]:
    """name -> default of every option (None where it is computed from the configuration)."""
    return {name: option.default for name, (option, _) in all_options().items()}
