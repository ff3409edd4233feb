"""Tests for the package gradviz.training.objectives as a whole: the registry OBJECTIVES is
complete (one module, one class, one name each) and is what the loop, the command line and
the cards read; every objective satisfies the Objective protocol; each option's default is
defined once, in its objective's module, and reaches TrainConfig, the command line and the
objective; ``adversarial`` says what the objective really trains on (checked by watching
the model's inputs). The objectives' losses are tested in test_training_methods.py,
test_igd.py and test_lalpha.py."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import input_spy, linear_classifier

import gradviz.training.objectives as objectives_pkg
from gradviz.__main__ import _default_name, build_parser
from gradviz.training import ATTACK_METHODS, METHODS, OBJECTIVES, TrainConfig, objective_class
from gradviz.training.objectives import (
    AGRObjective, IGDObjective, LAlphaObjective, LAlphaResiduals, Objective, ObjectiveBase, PAGObjective,
    PAGTargets, PGDObjective, StandardObjective, TRADESObjective, all_options, option_defaults,
)
from gradviz.training.objectives.base import SteppingObjective

C, H, W, K = 1, 4, 4, 3
D = C * H * W
GRADVIZ = Path(objectives_pkg.__file__).resolve().parent.parent.parent


def _batch(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, C, H, W, generator=g), torch.arange(n) % K


def _tiny(method: str):
    """A small instance of each objective, with what it needs besides the model."""
    xt, yt = _batch(9, seed=1)
    return {
        "standard": lambda: StandardObjective(),
        "pgd": lambda: PGDObjective(eps=0.1, steps=3),
        "igd": lambda: IGDObjective(eps=0.1, steps=3, teacher=linear_classifier(D, K, 5).eval()),
        "trades": lambda: TRADESObjective(eps=0.1, steps=3),
        "pag": lambda: PAGObjective(PAGTargets(xt, yt, "cm", num_classes=K)),
        "agr": lambda: AGRObjective(PGDObjective(eps=0.1, steps=3)),
        "lalpha": lambda: LAlphaObjective(LAlphaResiduals(torch.randn(9, C, H, W), torch.zeros(9, dtype=torch.long))),
    }[method]()


# ----------------------------------------------------------------------------- the registry


def test_the_registry_has_one_class_per_module_and_is_what_the_loop_lists():
    modules = sorted(m.name for m in pkgutil.iter_modules(objectives_pkg.__path__) if m.name != "base")
    assert modules == sorted(OBJECTIVES)
    for name in modules:
        module = importlib.import_module(f"gradviz.training.objectives.{name}")
        defined = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, ObjectiveBase)
                   and v.__module__ == module.__name__]
        assert defined == [OBJECTIVES[name]], name  # each module owns exactly its objective
        assert OBJECTIVES[name].name == name and OBJECTIVES[name].label
    assert METHODS == tuple(OBJECTIVES) == ("standard", "pgd", "igd", "trades", "pag", "agr", "lalpha")
    assert ATTACK_METHODS == ("pgd", "igd", "trades", "agr")
    assert [a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
            if a.dest == "method"][0].choices == METHODS
    assert objective_class("pag") is PAGObjective
    with pytest.raises(ValueError, match="unknown training method 'magic'; choose one of"):
        objective_class("magic")


@pytest.mark.parametrize("method", METHODS)
def test_every_objective_satisfies_the_protocol(method):
    objective = _tiny(method)
    assert isinstance(objective, Objective) and isinstance(objective, OBJECTIVES[method])
    assert isinstance(objective, SteppingObjective) == (method == "agr")  # only AGR brings its own step
    x, y = _batch()
    loss, stats = objective(linear_classifier(D, K, 0).train(), x, y, epoch=0, index=torch.arange(6))
    assert loss.ndim == 0 and loss.requires_grad
    assert stats["loss"] == pytest.approx(loss.item()) and all(isinstance(v, float) for v in stats.values())
    assert not isinstance(object(), Objective)


# ----------------------------------------------------------------------------- options and defaults

#: Where an option's default is also an objective's own attribute default.
ATTRIBUTES = {
    "eps": (PGDObjective, "eps"), "norm": (PGDObjective, "norm"), "steps": (PGDObjective, "steps"),
    "step_size": (PGDObjective, "step_size"), "warmup_epochs": (PGDObjective, "warmup_epochs"),
    "igd_lambda": (IGDObjective, "igd_lambda"), "trades_beta": (TRADESObjective, "beta"),
    "pag_lambda": (PAGObjective, "pag_lambda"), "agr_clip": (AGRObjective, "clip"),
    "lalpha_lambda": (LAlphaObjective, "alpha_lambda"),
}


def test_each_default_is_the_objectives_and_reaches_the_config_and_the_command_line():
    options = all_options()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train._actions}
    assert set(options) <= set(fields)
    for name, (option, methods) in options.items():
        assert fields[name].default == option.default, name
        assert flags[name].default is None and option.flag in flags[name].option_strings  # None: the method's
        assert option.describe_default() in flags[name].help and all(m in flags[name].help for m in methods)
        assert tuple(flags[name].choices or ()) == option.choices
        if name in ATTRIBUTES:
            cls, attr = ATTRIBUTES[name]
            assert {f.name: f.default for f in dataclasses.fields(cls)}[attr] == option.default, name
    defaults = option_defaults()
    assert (defaults["trades_beta"], defaults["agr_clip"], defaults["pag_lambda"], defaults["pag_target"],
            defaults["lalpha_lambda"], defaults["igd_lambda"]) == (6.0, 0.1, 1.5, "cm", 0.3, 1.0)


def test_an_option_two_objectives_share_is_one_definition():
    options = all_options()
    assert options["eps"][1] == ("pgd", "igd", "trades", "agr")
    assert options["trades_beta"][1] == ("trades", "agr")
    assert all(options[o.name][0] is o for cls in OBJECTIVES.values() for o in cls.possible_options())


def _literal_option_values(path: Path) -> list[str]:
    """Places in a module where an option (or its objective attribute) gets a number
    literal: an assignment, a keyword argument or a parameter default."""
    names = set(all_options()) | {attr for _, attr in ATTRIBUTES.values()} | {"beta", "clip"}
    names -= {"eps", "steps", "norm", "step_size"}  # also every attack's own arguments
    found = []

    def literal(node):
        return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and \
            not isinstance(node.value, bool)

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            pairs = [(node.target.id, node.value)]
        elif isinstance(node, ast.Assign):
            pairs = [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.Call):
            pairs = [(k.arg, k.value) for k in node.keywords if k.arg]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            pos = a.posonlyargs + a.args
            pairs = list(zip([p.arg for p in pos[len(pos) - len(a.defaults):]], a.defaults))
            pairs += [(p.arg, d) for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
        else:
            continue
        found += [f"{path.name}:{v.lineno} {n} = {v.value}" for n, v in pairs if n in names and literal(v)]
    return found


def test_no_module_restates_an_objectives_default():
    """TRADES' beta, AGR's clip, the lambdas: each is a named constant of its objective's
    module, never a number written again elsewhere (the CLI, the form, the loop)."""
    found = [hit for p in sorted(GRADVIZ.rglob("*.py")) for hit in _literal_option_values(p)]
    assert not found, found


@pytest.mark.parametrize("method", METHODS)
def test_resolution_keeps_the_methods_options_and_clears_the_others(method):
    c = TrainConfig(method=method, epochs=40).resolved()
    used = {o.name for o in OBJECTIVES[method].options_for(vars(c))}
    for name, (option, _) in all_options().items():
        if name not in used:
            assert getattr(c, name) == option.unused, name
        elif option.compute is not None:
            assert getattr(c, name) == option.compute(c) is not None, name
        else:
            assert getattr(c, name) == option.default, name
    assert (c.method in ATTACK_METHODS) == (c.eps > 0) == OBJECTIVES[method].adversarial


def test_computed_defaults_and_method_specific_resolution():
    assert TrainConfig(method="igd", dataset="squares").resolved().teacher == "squares/standard"
    assert TrainConfig(method="lalpha").resolved().lalpha_reference == "mnist-5k/standard"
    assert TrainConfig(method="lalpha", augment=True).resolved().augment is False
    assert TrainConfig(method="agr", epochs=200).resolved().agr_start_epoch == 156
    assert TrainConfig(method="agr", epochs=200, agr_start_epoch=10).resolved().agr_start_epoch == 10
    with pytest.raises(ValueError, match="unknown norm 'l1'"):
        TrainConfig(method="pgd", norm="l1").resolved()
    with pytest.raises(ValueError, match="unknown PAG target 'x'"):
        TrainConfig(method="pag", pag_target="x").resolved()


@pytest.mark.parametrize("config, name", [
    (dict(method="standard"), "standard"), (dict(method="pgd"), "pgd-linf"), (dict(method="pgd", norm="l2"), "pgd-l2"),
    (dict(method="igd"), "igd"), (dict(method="trades"), "trades"), (dict(method="pag", pag_target="nn"), "pag-nn"),
    (dict(method="agr"), "agr"), (dict(method="agr", agr_base="trades"), "agr-trades"),
    (dict(method="lalpha"), "lalpha"),
])
def test_default_model_names(config, name):
    c = TrainConfig(**config).resolved()
    assert OBJECTIVES[c.method].default_model_name(c) == _default_name(c) == name


# ----------------------------------------------------------------------------- from a TrainConfig


def test_a_config_builds_its_objective_with_its_settings():
    small = dict(limit=20, eps=0.2, norm="l2", steps=3, step_size=0.05, warmup_epochs=2)
    assert type(TrainConfig(method="standard").objective()) is StandardObjective
    pgd = TrainConfig(method="pgd", **small).objective()
    assert type(pgd) is PGDObjective and (pgd.eps, pgd.norm, pgd.steps, pgd.step_size, pgd.warmup_epochs) == (
        0.2, "l2", 3, 0.05, 2)
    trades = TrainConfig(method="trades", trades_beta=2.5, **small).objective()
    assert type(trades) is TRADESObjective and trades.beta == 2.5 and trades.norm == "l2"
    igd = TrainConfig(method="igd", igd_lambda=3.0, **small).objective()
    assert type(igd) is IGDObjective and igd.igd_lambda == 3.0 and igd.steps == 3
    assert igd.teacher.gradviz_info["name"] == "mnist-5k/standard" and not igd.teacher.training
    pag = TrainConfig(method="pag", pag_target="nn", pag_lambda=2.0, limit=20).objective()
    assert type(pag) is PAGObjective and pag.pag_lambda == 2.0 and pag.targets.source == "nn"
    assert len(pag.targets.x_train) == 20  # the images the configuration trains on
    agr = TrainConfig(method="agr", agr_base="trades", trades_beta=1.0, agr_clip=0.5, agr_start_epoch=3,
                      **small).objective()
    assert type(agr) is AGRObjective and (agr.start_epoch, agr.clip) == (3, 0.5)
    assert type(agr.base) is TRADESObjective and agr.base.beta == 1.0 and agr.base.eps == 0.2
    assert type(TrainConfig(method="agr", limit=20).objective().base) is PGDObjective


def test_lalpha_is_built_from_the_generator_and_the_reference_model(monkeypatch):
    import gradviz.training.objectives.lalpha as lalpha

    seen = {}

    def fake_compute(generator, reference, x, y, **kwargs):
        seen.update(generator=generator, reference=reference, n=len(x), **kwargs)
        return LAlphaResiduals(torch.zeros(len(x), *x.shape[1:]), torch.zeros(len(x), dtype=torch.long))

    monkeypatch.setattr(lalpha, "load_generator", lambda dataset, device: f"G of {dataset}")
    monkeypatch.setattr(LAlphaResiduals, "compute", staticmethod(fake_compute))
    obj = TrainConfig(method="lalpha", lalpha_lambda=0.2, limit=12).objective()
    assert type(obj) is LAlphaObjective and obj.alpha_lambda == 0.2 and len(obj.residuals.dx) == 12
    assert seen["generator"] == "G of mnist-5k" and seen["reference"].gradviz_info["name"] == "mnist-5k/standard"
    assert (seen["n"], seen["dataset"], seen["split"]) == (12, "mnist-5k", "train")


# ----------------------------------------------------------------------------- what they train on


@pytest.mark.parametrize("method", METHODS)
def test_adversarial_says_whether_the_loss_sees_adversarial_examples(method):
    """The loss's inputs (the model's forward passes in train mode; attacks run in eval
    mode) are the clean images, or copies of them, unless the objective is adversarial:
    then some are moved, and none leaves the eps-ball."""
    torch.manual_seed(0)
    objective = _tiny(method)
    model = input_spy(nn.Sequential(nn.Flatten(), nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, K))).train()
    x, y = _batch()
    objective(model, x, y, epoch=0, index=torch.arange(6))
    seen = model.seen
    assert seen
    # each row's l_inf distance to the nearest clean image
    dist = torch.cat([(s.flatten(1)[:, None] - x.flatten(1)[None]).abs().amax(2).amin(1) for s in seen])
    if OBJECTIVES[method].adversarial:
        assert dist.max() <= 0.1 + 1e-6 and (dist > 0.05).sum() >= len(x)
    else:
        assert dist.max() == 0
