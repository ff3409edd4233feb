"""What every training objective is: the :class:`Objective` protocol, the :class:`Option`
that describes one of its settings (a :class:`gradviz.training.TrainConfig` field and a
``python -m gradviz train`` flag), and :class:`ObjectiveBase`, the defaults of the
protocol's class-level metadata.

The call: ``objective(model, x, y, *, epoch=0, index=None) -> (loss, stats)`` with

* ``model``: the classifier being trained, (N, C, H, W) in [0, 1] -> logits (N, K), in
  train mode;
* ``x``: (N, C, H, W) training images in [0, 1]; ``y``: (N,) int64 labels;
* ``epoch``: 0-based epoch (eps warm-up, AGR's start);
* ``index``: (N,) int64 positions of the images in the training set (PAG's
  nearest-neighbour targets and L_alpha's residuals use it), or None;
* ``loss``: a scalar tensor on the graph, to minimise; ``stats``: floats to log (at least
  ``"loss"``; the loop averages them per epoch).

An objective that shapes the parameter gradient itself (AGR) also has ``step(model,
optimizer, x, y, *, epoch, index) -> stats``, which the loop calls instead of
``loss.backward(); optimizer.step()`` (:class:`SteppingObjective`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from gradviz import zoo
from gradviz.data import ImageDataset, load_dataset
from gradviz.utils import Progress

__all__ = ["Objective", "ObjectiveBase", "Option", "SteppingObjective", "check_weight", "same_dataset_model",
           "standard_model_of", "training_images"]


@dataclass(frozen=True)
class Option:
    """One setting of an objective: a :class:`gradviz.training.TrainConfig` field of the same
    name and the flag ``--<name with dashes>`` of ``python -m gradviz train``.

    Attributes:
        name: the field's name, e.g. ``"trades_beta"``.
        default: its value when not given (None: none, or computed by ``compute``).
        help: what it is, for the command line's help and the app's tooltip.
        type: ``float``, ``int`` or ``str`` (the flag's type).
        choices: the allowed values (empty: any).
        unused: the value a configuration holds when its method does not use the option
            (what a model card records; None for most, 0 for the attack's eps, steps and
            warm-up).
        compute: ``compute(config) -> value``, the default when it depends on the rest of
            the configuration (IGD's teacher ``<dataset>/standard``, AGR's start epoch).
        default_text: how the help states a computed default.
        label: the app's short label; ``low``, ``high``: the app's bounds of a number.
        kind: ``"value"``, or ``"model"`` (a zoo model name of the dataset: the app offers
            the dataset's standard models).
        choice_labels: the app's words for the choices.
        what: the option in error messages ("unknown <what> ...").
    """

    name: str
    default: Any
    help: str
    type: type = float
    choices: tuple = ()
    unused: Any = None
    compute: Optional[Callable[[Any], Any]] = None
    default_text: Optional[str] = None
    label: Optional[str] = None
    low: Optional[float] = None
    high: Optional[float] = None
    kind: str = "value"
    choice_labels: Optional[Mapping[str, str]] = None
    what: Optional[str] = None

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--trades-beta``."""
        return "--" + self.name.replace("_", "-")

    def describe_default(self) -> str:
        """The default as the help states it, e.g. ``"6"`` or ``"<dataset>/standard"``."""
        if self.default_text is not None:
            return self.default_text
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def resolve(self, config, value):
        """``value`` checked against the choices, or the default (computed from ``config``
        where ``compute`` says) when it is None or empty. Raises ValueError for a value
        outside the choices."""
        if value is None or value == "":
            value = self.compute(config) if self.compute is not None else self.default
        if self.choices and value not in self.choices:
            raise ValueError(f"unknown {self.what or self.name} {value!r}; choose one of {self.choices}")
        return value


@runtime_checkable
class Objective(Protocol):
    """A training objective (see the module's docstring for the call's shapes and ranges).

    Class-level metadata, owned by each objective's module:

    * ``name``: the method's name (``TrainConfig.method``, the registry's key);
    * ``label``: a line for the app's method choice;
    * ``options``: its :class:`Option`\\ s, with defaults and help;
    * ``adversarial``: whether it trains on adversarial examples (then it has the attack's
      options eps, norm, steps, step_size, warmup_epochs, and cards record eps and norm);
    * ``distributed_refusal`` (optional): why it cannot be trained with DistributedDataParallel
      under torchrun (None: it can; :mod:`gradviz.training.distributed`);
    * ``options_for(settings)``: the options a configuration of this method uses
      (``options``, plus the wrapped objective's for AGR); ``possible_options()``: those any
      configuration of it may use;
    * ``default_model_name(config)``: the model name after ``<dataset>/`` when none is given;
    * ``resolve(config)``: method-specific changes to a resolved configuration;
    * ``from_config(config, *, device, train_set, progress)``: the objective a (resolved)
      :class:`gradviz.training.TrainConfig` asks for.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    options: ClassVar[tuple[Option, ...]]
    adversarial: ClassVar[bool]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, float]]: ...

    @classmethod
    def options_for(cls, settings: Mapping[str, Any]) -> tuple[Option, ...]: ...

    @classmethod
    def possible_options(cls) -> tuple[Option, ...]: ...

    @classmethod
    def default_model_name(cls, config) -> str: ...

    @classmethod
    def resolve(cls, config): ...

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set: Optional[ImageDataset] = None,
                    progress: Optional[Progress] = None) -> "Objective": ...


@runtime_checkable
class SteppingObjective(Objective, Protocol):
    """An :class:`Objective` with its own optimisation step (AGR)."""

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
             epoch: int = 0, index: Optional[torch.Tensor] = None) -> dict[str, float]: ...


class ObjectiveBase:
    """The defaults of the :class:`Objective` protocol's class-level methods; every gradviz
    objective derives from it (and is a dataclass of its own settings)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    adversarial: ClassVar[bool] = False
    #: Why the objective cannot be trained with DistributedDataParallel as is (torchrun;
    #: :mod:`gradviz.training.distributed`), or None: its loss is a mean of per-image terms,
    #: minimised by ``loss.backward()``, so DDP's average of the ranks' parameter gradients is
    #: the effective batch's gradient.
    distributed_refusal: ClassVar[Optional[str]] = None

    @classmethod
    def options_for(cls, settings: Mapping[str, Any]) -> tuple[Option, ...]:
        """The options a configuration of this method uses: :attr:`options`."""
        return cls.options

    @classmethod
    def possible_options(cls) -> tuple[Option, ...]:
        """Every option some configuration of this method may use (AGR: its own and those of
        every objective it can wrap): :attr:`options`."""
        return cls.options

    @classmethod
    def default_model_name(cls, config) -> str:
        """The model name after ``<dataset>/``: the method's name."""
        return cls.name

    @classmethod
    def resolve(cls, config):
        """Method-specific changes to a resolved configuration (none); returns it."""
        return config

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set: Optional[ImageDataset] = None,
                    progress: Optional[Progress] = None):
        raise NotImplementedError(f"{cls.__name__}.from_config")


def check_weight(label: str, value, note: str = "") -> None:
    """Raise ValueError unless ``value`` is a finite real number >= 0 (not a bool): a loss
    weight (lambda, beta). ``note`` (e.g. "paper: 1 to 4") goes into the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{label} must be a finite number >= 0{f' ({note})' if note else ''}; got {value!r}")


def training_images(config, train_set: Optional[ImageDataset] = None) -> ImageDataset:
    """``train_set``, or the images ``config`` trains on: its dataset's training split, the
    first ``config.limit`` images when ``limit`` > 0 (what :func:`gradviz.training.train`
    loads)."""
    if train_set is not None:
        return train_set
    data = load_dataset(config.dataset, "train")
    return data.subset(slice(0, config.limit)) if config.limit else data


def standard_model_of(config) -> str:
    """``<dataset>/standard``: the default of the options that name a standard model of the
    configuration's dataset (IGD's teacher, L_alpha's reference)."""
    return f"{config.dataset}/standard"


def same_dataset_model(name: Optional[str], dataset: str, device, *, role: str, need: str) -> nn.Module:
    """The zoo model ``name`` (None: ``<dataset>/standard``) that a method uses besides the one
    it trains (IGD's teacher, L_alpha's reference), in eval mode on ``device``, checked to be
    of ``dataset``.

    Raises:
        ValueError: "<need>: <why>" when it is missing; "<role> ... was made for ..." when it
            belongs to another dataset.
    """
    name = name or f"{dataset}/standard"
    try:
        model = zoo.load_model(name, device=device)
    except KeyError as err:
        raise ValueError(f"{need}: {err.args[0]}") from err
    if model.gradviz_info["dataset"] != dataset:
        raise ValueError(f"{role} {name!r} was made for {model.gradviz_info['dataset']!r}, not {dataset!r}")
    return model
