"""RobustBench's model zoo by name, offline: ``zoo.load_model("robustbench:cifar10/Linf/Standard")``.

A RobustBench model is named ``robustbench:<dataset>/<threat>/<name>``: ``<dataset>`` one of
RobustBench's (``cifar10``, ``cifar100``, ``imagenet``), ``<threat>`` its threat model
(``Linf``, ``L2``, ``corruptions``), ``<name>`` the model's name in its zoo (``Standard``,
``Ding2020MMA``, ...). Its checkpoint lies where RobustBench's own ``load_model`` keeps it:
``<model_dir>/<dataset>/<threat>/<name>.pt``, with ``model_dir`` (in this order) the
argument, ``$GRADVIZ_ROBUSTBENCH``, or ``$GRADVIZ_HOME/robustbench``
(:func:`robustbench_dir`). gradviz never downloads: a missing file is one error naming the
path to put it at (RobustBench writes that file when it downloads the model on a machine
that is online, with ``model_dir`` pointing there).

Loading goes through the ``robustbench`` package's own code (an optional extra:
``pip install -r requirements-robustbench.txt``): its model definitions
(``robustbench.model_zoo.model_dicts``) and its ``robustbench.utils.load_model``, which maps
each paper's checkpoint keys onto its architecture. Before that, every file is read once
with ``torch.load(weights_only=True)`` (:func:`gradviz.checkpoints.load_weights_only`): a
pickle that needs code is refused and RobustBench never sees it.

RobustBench models take [0, 1] input and normalise inside, as gradviz's do; they are read-only
here like every zoo model. Models that RobustBench serves through timm's hub, ImageNet's
``Standard_*`` (torchvision's pretrained weights) and ensembles split over several files are
not loadable offline: the error says so.

The import shim (:func:`import_robustbench`): robustbench 1.1.1 imports ``autoattack`` (the
AutoAttack git package) and ``autoattack.state`` at import time, while PyPI's AutoAttack,
``pyautoattack``, installs the module ``pyautoattack`` (and torchattacks 3.3 installs an
``autoattack`` of its own, without ``state``). Before importing robustbench,
``sys.modules["autoattack.state"]`` is made an alias of ``pyautoattack.state`` when no
``autoattack.state`` can be imported, and ``sys.modules["autoattack"]`` one of
``pyautoattack`` when no ``autoattack`` can; an installed module is never replaced.
robustbench uses nothing of them to load a model. Its other undeclared imports (``pkg_resources`` from setuptools < 81, ``bs4``,
``filelock``) come from requirements-robustbench.txt.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

import torch
from torch import nn

from gradviz.checkpoints import CheckpointError, ModelCard, gradviz_home, load_weights_only, read_card
from gradviz.data import DATASETS
from gradviz.utils import resolve_device

__all__ = [
    "PREFIX", "THREATS", "checkpoint_path", "import_robustbench", "is_robustbench_name", "list_local",
    "load", "parse_name", "robustbench_dir",
]

#: Prefix of a RobustBench model's zoo name.
PREFIX = "robustbench:"
#: RobustBench's threat models (folder names under ``<model_dir>/<dataset>/``).
THREATS = ("Linf", "L2", "corruptions")
#: RobustBench's datasets, which are gradviz's too.
RB_DATASETS = ("cifar10", "cifar100", "imagenet")
#: The radius RobustBench's leaderboard evaluates each (dataset, threat) at, [0, 1] pixel units.
LEADERBOARD_EPS = {("cifar10", "Linf"): 8 / 255, ("cifar100", "Linf"): 8 / 255, ("imagenet", "Linf"): 4 / 255,
                   ("cifar10", "L2"): 0.5, ("cifar100", "L2"): 0.5, ("imagenet", "L2"): 0.5}
INSTALL = "python -m pip install -r requirements-robustbench.txt"
_NAME = re.compile(r"robustbench:([^/]+)/([^/]+)/([^/]+)")


def robustbench_dir(model_dir: Union[str, Path, None] = None) -> Path:
    """RobustBench's ``model_dir``: ``model_dir`` if given, else ``$GRADVIZ_ROBUSTBENCH``,
    else ``$GRADVIZ_HOME/robustbench`` (default ``~/.cache/gradviz/robustbench``)."""
    if model_dir is not None:
        return Path(model_dir).expanduser()
    env = os.environ.get("GRADVIZ_ROBUSTBENCH")
    return Path(env).expanduser() if env else gradviz_home() / "robustbench"


def is_robustbench_name(name) -> bool:
    """Whether ``name`` is a string starting with :data:`PREFIX`."""
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_name(name: str) -> tuple[str, str, str]:
    """``"robustbench:cifar10/Linf/Standard"`` -> ``("cifar10", "Linf", "Standard")``.

    The dataset and threat are matched case-insensitively (``linf`` -> ``Linf``).

    Raises:
        ValueError: not of the form ``robustbench:<dataset>/<threat>/<name>``, or a dataset /
            threat RobustBench does not have.
    """
    m = _NAME.fullmatch(str(name))
    if not m:
        raise ValueError(f"{name!r} is not a RobustBench name: write robustbench:<dataset>/<threat>/<name>, "
                         "e.g. robustbench:cifar10/Linf/Standard")
    dataset, threat, model = m.groups()
    ds = {d.lower(): d for d in RB_DATASETS}.get(dataset.lower())
    th = {t.lower(): t for t in THREATS}.get(threat.lower())
    if ds is None:
        raise ValueError(f"{name}: RobustBench has no dataset {dataset!r}; it has {', '.join(RB_DATASETS)}")
    if th is None:
        raise ValueError(f"{name}: RobustBench has no threat model {threat!r}; it has {', '.join(THREATS)}")
    return ds, th, model


def checkpoint_path(name: str, model_dir: Union[str, Path, None] = None) -> Path:
    """Where RobustBench keeps the model's checkpoint: ``<model_dir>/<dataset>/<threat>/<name>.pt``.
    Raises ValueError for a bad name (:func:`parse_name`)."""
    dataset, threat, model = parse_name(name)
    return robustbench_dir(model_dir) / dataset / threat / f"{model}.pt"


def import_robustbench() -> ModuleType:
    """Import the ``robustbench`` package with the ``autoattack`` alias shim (module
    docstring) and return it.

    Raises:
        CheckpointError: robustbench (or one of its undeclared imports) is not installed;
            the message says how to install it.
    """
    try:
        has_package = importlib.util.find_spec("autoattack") is not None
        has_state = has_package and importlib.util.find_spec("autoattack.state") is not None
    except (ImportError, ValueError):
        has_package = has_state = False
    if not has_state:
        try:
            if not has_package:
                sys.modules["autoattack"] = importlib.import_module("pyautoattack")
            sys.modules["autoattack.state"] = importlib.import_module("pyautoattack.state")
        except ImportError:
            pass  # robustbench's own import error below says what is missing
    try:
        with warnings.catch_warnings():  # its dependencies' deprecation notes (pkg_resources, timm paths)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
            return importlib.import_module("robustbench")
    except ImportError as err:
        raise CheckpointError(f"RobustBench models need the robustbench package ({err}): {INSTALL}") from err


def _card(path: Path, dataset: str, threat: str, model: str) -> ModelCard:
    name = f"{PREFIX}{dataset}/{threat}/{model}"
    card = None
    if path.with_suffix(".json").is_file():  # a card gradviz wrote beside it (e.g. eval --write)
        try:
            card = read_card(path.with_suffix(".json"))
        except CheckpointError:
            card = None
    if card is None:
        card = ModelCard(name=name, dataset=dataset, arch="robustbench", method="robustbench",
                         eps=LEADERBOARD_EPS.get((dataset, threat), 0.0),
                         norm={"Linf": "linf", "L2": "l2"}.get(threat),
                         training={"source": "robustbench", "threat_model": threat, "model": model})
    card.name, card.dataset, card.arch, card.path, card.shipped = name, dataset, "robustbench", str(path), False
    return card


def list_local(dataset: Optional[str] = None, model_dir: Union[str, Path, None] = None) -> list[ModelCard]:
    """Cards of the RobustBench checkpoints present in the model directory (no import of
    robustbench, no network), sorted by name.

    A card: ``name`` ``robustbench:<dataset>/<threat>/<name>``, ``arch`` ``"robustbench"``,
    ``method`` ``"robustbench"``, ``eps``/``norm`` the leaderboard's radius for the threat
    (8/255 l_inf on CIFAR, 4/255 on ImageNet, 0.5 l_2), ``training["threat_model"]``; a JSON
    card gradviz wrote beside the file (measurements) is read instead. Ensemble parts
    (``<name>_m0.pt``, ...) are not listed.

    Args:
        dataset: keep only this dataset's models (None: all).
        model_dir: see :func:`robustbench_dir`.
    """
    root = robustbench_dir(model_dir)
    cards = []
    for ds in RB_DATASETS:
        if (dataset is not None and ds != dataset) or ds not in DATASETS:
            continue
        for threat in THREATS:
            folder = root / ds / threat
            if folder.is_dir():
                cards += [_card(p, ds, threat, p.stem) for p in sorted(folder.glob("*.pt"))
                          if p.is_file() and not re.search(r"_m\d+$", p.stem)]
    return sorted(cards, key=lambda c: c.name)


def _entry(dataset: str, threat: str, model: str) -> dict:
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    zoo = model_dicts[BenchmarkDataset(dataset)].get(ThreatModel(threat), {})
    if model not in zoo:
        close = difflib.get_close_matches(model, list(zoo), n=3)
        raise CheckpointError(f"RobustBench has no {dataset} {threat} model {model!r}"
                              + (f"; did you mean {', '.join(close)}?" if close else f" (it has {len(zoo)})"))
    return zoo[model]


def load(name: str, device: Union[str, torch.device] = "cpu", *,
         model_dir: Union[str, Path, None] = None) -> nn.Module:
    """Load a RobustBench model from its local checkpoint, in eval mode, read-only.

    Args:
        name: ``robustbench:<dataset>/<threat>/<name>`` (:func:`parse_name`).
        device: ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
        model_dir: see :func:`robustbench_dir`.

    Returns:
        RobustBench's model (input (N, 3, H, W) in [0, 1]: 32 x 32 for CIFAR, 224 x 224 for
        ImageNet; logits (N, K)), eval mode, ``requires_grad=False``, with ``gradviz_info``.

    Raises:
        CheckpointError: robustbench not installed (how to install it); a name RobustBench
            does not have (close names); no checkpoint at the expected path (the path to put
            it at); a model that needs the network (timm hub, torchvision weights) or several
            files (ensembles); a file refused by ``weights_only`` or that does not fit.
        ValueError: a malformed name.
    """
    dataset, threat, model_name = parse_name(name)
    path = checkpoint_path(name, model_dir)
    import_robustbench()
    entry = _entry(dataset, threat, model_name)
    import timm

    if timm.is_model(f"{model_name.lower().replace('-', '_')}_{dataset}_{threat.lower()}"):
        raise CheckpointError(f"{name}: RobustBench serves this model through timm's hub (a download), not a "
                              "file in its model directory; gradviz loads RobustBench models offline only")
    if isinstance(entry.get("gdrive_id"), list):
        raise CheckpointError(f"{name} is an ensemble stored as {len(entry['gdrive_id'])} files "
                              f"({model_name}_m0.pt, ...); gradviz loads single-file RobustBench models only")
    if dataset == "imagenet" and "Standard" in model_name:
        raise CheckpointError(f"{name}: RobustBench builds this model from torchvision's pretrained weights "
                              "(a download), not from a file; import a torchvision checkpoint instead "
                              "(zoo.import_checkpoint(..., arch='torchvision:<name>'))")
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint for {name}: put RobustBench's file at {path} (RobustBench's "
            f"load_model('{model_name}', model_dir=..., dataset='{dataset}', threat_model='{threat}') writes it to "
            f"<model_dir>/{dataset}/{threat}/{model_name}.pt on a machine that is online), or set "
            "GRADVIZ_ROBUSTBENCH to the model_dir that holds it; gradviz does not download"
        )
    load_weights_only(path)  # refuses a pickle that needs code before robustbench reads the file
    from robustbench.utils import load_model as rb_load_model

    try:
        model = rb_load_model(model_name, model_dir=str(robustbench_dir(model_dir)), dataset=dataset,
                              threat_model=threat)
    except Exception as err:  # RobustBench raises RuntimeError, KeyError, ... on a file that does not fit
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path.name} does not load as RobustBench's {dataset} {threat} {model_name}: "
                              f"{first}") from err
    model.eval().requires_grad_(False)
    model.gradviz_info = {"arch": "robustbench", "dataset": dataset, "path": str(path), "name": name,
                          "threat_model": threat}
    return model.to(resolve_device(device))
