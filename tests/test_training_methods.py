"""Tests for the TRADES, PAG and AGR training methods (docs/methods.md sections 2 and 5; Zhang et
al. 2019): each update or loss against a hand computation on hand-made inputs or tiny
linear models, then tiny runs through the loop and the command line, and the learning
curves' monitor."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import input_spy, linear_classifier

from gradviz.__main__ import build_parser, main
from gradviz.attacks import trades_attack
from gradviz.training import (
    AGRObjective,
    PAGObjective,
    PAGTargets,
    PGDObjective,
    TrainConfig,
    TRADESObjective,
    agr_combine,
    class_log_prob_gradients,
    cli_command,
    monitor_attack,
    train,
    trades_loss,
)

C, H, W, K = 1, 3, 3, 4
D = C * H * W


def _linear(seed: int = 0) -> nn.Sequential:
    """f(x) = W flatten(x) + b: grad_x f_c = W[c]."""
    return linear_classifier(D, K, seed)


def _batch(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, C, H, W, generator=g), torch.tensor([0, 1, 2, 3, 1, 2][:n])


# ----------------------------------------------------------------------------- AGR


def test_agr_negative_cosine_projects_orthogonally_to_the_clean_gradient():
    g_adv, g_cl = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # cos = -1/sqrt(2)
    (g,), stats = agr_combine([g_adv], [g_cl], clip=None)
    torch.testing.assert_close(g, torch.tensor([0.5, 0.5]))  # g_adv - (<g_adv, g_cl>/|g_cl|^2) g_cl
    assert float(g @ g_cl) == pytest.approx(0.0, abs=1e-7)
    assert stats["agr_cos"] == pytest.approx(-1 / math.sqrt(2))
    assert stats["agr_gop_rate"] == 1.0


def test_agr_positive_cosine_interpolates():
    g_adv, g_cl = torch.tensor([3.0, 0.0]), torch.tensor([1.0, 1.0])
    c = 1 / math.sqrt(2)
    (g,), stats = agr_combine([g_adv], [g_cl], clip=None)
    torch.testing.assert_close(g, c * g_cl + (1 - c) * g_adv)
    assert stats["agr_cos"] == pytest.approx(c) and stats["agr_gop_rate"] == 0.0


def test_agr_per_tensor_rates_norms_clip_and_edge_cases():
    g_adv = [torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([3.0, 0.0]), torch.tensor([0.02, 0.0]),
             torch.tensor([1.0, 2.0])]
    g_cl = [torch.tensor([[-1.0, 1.0], [0.0, 0.0]]), torch.tensor([1.0, 1.0]), torch.tensor([0.01, 0.0]),
            torch.zeros(2)]
    out, stats = agr_combine(g_adv, g_cl, clip=0.1)
    # tensor 0: projected (cos < 0) to (0.5, 0.5) then clipped to norm 0.1
    torch.testing.assert_close(out[0], torch.tensor([[0.5, 0.5], [0.0, 0.0]]) * (0.1 / math.sqrt(0.5)))
    assert float(torch.linalg.vector_norm(out[1])) == pytest.approx(0.1)  # interpolated, clipped
    torch.testing.assert_close(out[2], torch.tensor([0.01, 0.0]))  # cos 1: g = g_cl, under the clip
    # a zero clean gradient: cos 0 (convention), counted as projected, nothing to project out
    torch.testing.assert_close(out[3], torch.tensor([1.0, 2.0]) * (0.1 / math.sqrt(5)))
    assert all(torch.isfinite(g).all() for g in out)
    assert stats["agr_gop_rate"] == pytest.approx(2 / 4)
    assert stats["agr_cos"] == pytest.approx((-1 / math.sqrt(2) + 1 / math.sqrt(2) + 1 + 0) / 4)
    assert stats["agr_norm_adv"] == pytest.approx((1 + 3 + 0.02 + math.sqrt(5)) / 4)
    assert stats["agr_norm_clean"] == pytest.approx((math.sqrt(2) + math.sqrt(2) + 0.01 + 0) / 4)
    assert stats["agr_norm"] == pytest.approx((0.1 + 0.1 + 0.01 + 0.1) / 4)
    # before the start epoch: g_adv unchanged, diagnostics still measured
    same, stats_off = agr_combine(g_adv, g_cl, clip=0.1, apply=False)
    assert all(torch.equal(a, b) for a, b in zip(same, g_adv))
    assert stats_off["agr_gop_rate"] == stats["agr_gop_rate"]
    with pytest.raises(ValueError, match="shapes differ"):
        agr_combine([torch.zeros(2)], [torch.zeros(3)])


def _grads_seen_by_optimizer(objective, model, x, y, epoch):
    seen = {}

    class Capture(torch.optim.SGD):
        def step(self, closure=None):
            seen["grads"] = [p.grad.clone() for p in model.parameters()]

    torch.manual_seed(5)
    stats = objective.step(model, Capture(model.parameters(), lr=0.0), x, y, epoch=epoch)
    return seen["grads"], stats


@pytest.mark.parametrize("epoch, active", [(0, False), (2, True)])
def test_agr_step_sets_the_reconstructed_gradient(epoch, active):
    model, (x, y) = _linear(1), _batch()
    objective = AGRObjective(PGDObjective(eps=0.2, steps=2), start_epoch=3, clip=0.1)
    grads, stats = _grads_seen_by_optimizer(objective, model, x, y, epoch)
    torch.manual_seed(5)  # the same random start
    loss_adv, _ = objective.base(model, x, y, epoch=epoch)
    g_adv = torch.autograd.grad(loss_adv, list(model.parameters()))
    g_cl = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    expected, diag = agr_combine(g_adv, g_cl, clip=0.1, apply=active)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)
    if not active:
        for a, b in zip(grads, g_adv):
            torch.testing.assert_close(a, b)
    assert stats["agr_active"] == float(active) and stats["agr_cos"] == pytest.approx(diag["agr_cos"])


def test_agr_refuses_bad_settings():
    with pytest.raises(ValueError, match="start epoch"):
        AGRObjective(start_epoch=0)
    with pytest.raises(ValueError, match="clip"):
        AGRObjective(clip=0.0)


# ----------------------------------------------------------------------------- PAG


def test_class_log_prob_gradients_of_a_linear_model():
    model, (x, _) = _linear(2), _batch()
    logits, grads = class_log_prob_gradients(model, x)
    w = model[1].weight.detach()
    p = F.softmax(model(x), 1).detach()
    expected = (w.unsqueeze(0) - (p @ w).unsqueeze(1)).view(len(x), K, C, H, W)  # W_c - sum_k p_k W_k
    torch.testing.assert_close(grads, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, model(x).detach())
    assert grads.shape == (6, K, C, H, W) and not grads.requires_grad


def test_pag_class_mean_targets_are_mean_minus_x():
    xt = torch.rand(7, C, H, W)
    yt = torch.tensor([0, 0, 1, 1, 1, 2, 2])  # class 3 has no image
    targets = PAGTargets(xt, yt, "cm", num_classes=K)
    x = torch.rand(3, C, H, W)
    g = targets(x)
    assert g.shape == (3, K, C, H, W)
    for c in range(3):
        mu = xt[yt == c].mean(0)
        torch.testing.assert_close(g[:, c], mu.unsqueeze(0) - x)
    assert torch.equal(g[:, 3], torch.zeros(3, C, H, W))  # no image of class 3: target 0 (cos 0)


def test_pag_nearest_neighbour_targets_leave_the_image_itself_out():
    g = torch.Generator().manual_seed(3)
    xt = torch.rand(12, C, H, W, generator=g)
    yt = torch.tensor([0, 1, 2, 3] * 3)
    targets = PAGTargets(xt, yt, "nn", num_classes=K)
    index = torch.tensor([0, 5, 10])
    x = xt[index]
    got = targets(x, index)
    for row, i in enumerate(index.tolist()):
        for c in range(K):
            candidates = [j for j in range(12) if yt[j] == c and j != i]
            d = [float((xt[j] - xt[i]).norm()) for j in candidates]
            nearest = candidates[min(range(len(d)), key=d.__getitem__)]
            torch.testing.assert_close(got[row, c], xt[nearest] - xt[i])
    # without the index, a training image is its own nearest neighbour: target 0 for its class
    own = targets(x)
    assert all(torch.equal(own[r, int(yt[i])], torch.zeros(C, H, W)) for r, i in enumerate(index.tolist()))


def test_pag_loss_equals_the_hand_computation_on_a_linear_model():
    model, (x, y) = _linear(4), _batch()
    xt, yt = torch.rand(8, C, H, W), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    targets = PAGTargets(xt, yt, "cm", num_classes=K)
    lam = 2.5
    loss, stats = PAGObjective(targets, lam)(model, x, y)
    w = model[1].weight.detach()
    p = F.softmax(model(x), 1).detach()
    grads = (w.unsqueeze(0) - (p @ w).unsqueeze(1))  # (N, K, D)
    tgt = targets(x).flatten(2)
    cos = F.cosine_similarity(grads, tgt, dim=2)
    expected = F.cross_entropy(model(x), y) + lam * (1 - cos).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["pag_cos"] == pytest.approx(cos.mean().item(), rel=1e-5)
    loss.backward()  # double backpropagation reaches the weights
    assert torch.isfinite(model[1].weight.grad).all() and model[1].weight.grad.abs().sum() > 0


def test_pag_refuses_bad_settings():
    with pytest.raises(ValueError, match="PAG target source"):
        PAGTargets(torch.rand(2, C, H, W), torch.tensor([0, 1]), "oi")
    with pytest.raises(ValueError, match="pag_lambda"):
        PAGObjective(None, -1.0)
    with pytest.raises(ValueError, match="target gradients"):
        PAGObjective(None, 1.0)(_linear(), *_batch())


# ----------------------------------------------------------------------------- TRADES


def test_trades_loss_equals_the_hand_computation():
    model, (x, y) = _linear(5), _batch()
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    loss, ce, kl, _, _ = trades_loss(model, x, x_adv, y, beta=6.0)
    p = F.softmax(model(x), 1)
    q = F.softmax(model(x_adv), 1)
    hand_kl = (p * (p.log() - q.log())).sum(1).mean()
    hand_ce = -p.log().gather(1, y[:, None]).mean()
    assert kl.item() == pytest.approx(hand_kl.item(), rel=1e-5)
    assert ce.item() == pytest.approx(hand_ce.item(), rel=1e-5)
    assert loss.item() == pytest.approx((hand_ce + 6.0 * hand_kl).item(), rel=1e-5)


def test_trades_objective_is_its_loss_at_the_kl_attack():
    model, (x, y) = input_spy(_linear(7)).train(), _batch()
    obj = TRADESObjective(eps=0.1, steps=2, beta=3.0)
    torch.manual_seed(0)
    loss, stats = obj(model, x, y)
    clean, x_adv = model.seen  # CE and p at x, the KL at the attack
    assert torch.equal(clean, x)
    d = (x_adv - x).abs().amax((1, 2, 3))
    assert d.max() <= 0.1 + 1e-6 and d.min() > 0.05  # moved, inside the ball
    torch.manual_seed(0)
    assert torch.equal(x_adv, trades_attack(model.model, x, eps=0.1, steps=2))  # TRADES' KL attack, not PGD's
    expected, ce, kl, _, _ = trades_loss(model.model, x, x_adv, y, 3.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and kl.item() > 1e-4
    assert stats["loss"] == pytest.approx(stats["ce"] + 3.0 * stats["kl"], rel=1e-5)
    assert (stats["ce"], stats["kl"], stats["eps"]) == (pytest.approx(ce.item()), pytest.approx(kl.item()), 0.1)
    assert set(stats) >= {"accuracy", "adv_accuracy"}
    with pytest.raises(ValueError, match="beta"):
        TRADESObjective(beta=-1)


# ----------------------------------------------------------------------------- loop, CLI


def test_config_resolution_keeps_only_the_methods_settings():
    pag = TrainConfig(method="pag", pag_target="nn", trades_beta=2.0, agr_base="trades").resolved()
    assert (pag.eps, pag.norm, pag.steps, pag.trades_beta, pag.agr_base, pag.agr_start_epoch) == (0.0, None, 0, None,
                                                                                                    None, None)
    assert pag.pag_target == "nn"
    agr = TrainConfig(method="agr", epochs=40, agr_base="trades").resolved()
    assert agr.agr_start_epoch == 32 and agr.trades_beta == 6.0 and agr.pag_lambda is None
    assert TrainConfig(method="agr", epochs=200).resolved().agr_start_epoch == 156  # the authors' i >= 155
    assert TrainConfig(method="pgd", trades_beta=2.0).resolved().trades_beta is None
    with pytest.raises(ValueError, match="PAG target"):
        TrainConfig(method="pag", pag_target="sbg").resolved()
    with pytest.raises(ValueError, match="AGR wraps"):
        TrainConfig(method="agr", agr_base="mart").resolved()


def test_monitor_attack_settings():
    assert monitor_attack(TrainConfig(method="standard")) is None
    assert monitor_attack(TrainConfig(method="pgd", monitor=0)) is None
    pgd = monitor_attack(TrainConfig(method="pgd", eps=0.2))
    assert pgd == dict(norm="linf", eps=0.2, steps=10, step_size=pytest.approx(0.05), random_start=True, seed=0)
    pag = monitor_attack(TrainConfig(method="pag").resolved())  # no training attack: the eval eps
    assert pag["eps"] == 0.3 and pag["norm"] == "linf"


def test_monitor_draws_no_training_randomness():
    kw = dict(method="pgd", eps=0.3, steps=1, epochs=1, limit=64, batch_size=32)
    a, log_a = train(TrainConfig(monitor=0, **kw), device="cpu")
    b, log_b = train(TrainConfig(monitor=24, **kw), device="cpu")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert "monitor_clean_accuracy" not in log_a[0]
    assert 0 <= log_b[0]["monitor_robust_accuracy"] <= 1 and 0 <= log_b[0]["monitor_clean_accuracy"] <= 1


@pytest.mark.parametrize("method, options, keys", [
    ("trades", dict(steps=1), {"ce", "kl", "accuracy", "adv_accuracy", "monitor_robust_accuracy"}),
    ("pag", dict(pag_target="cm"), {"ce", "pag_cos", "pag_cos_true", "monitor_robust_accuracy"}),
    ("pag", dict(pag_target="nn"), {"ce", "pag_cos", "pag_cos_true"}),
    ("agr", dict(steps=1, agr_base="trades", agr_start_epoch=1), {"kl", "agr_cos", "agr_gop_rate", "agr_norm"}),
])
def test_tiny_runs_of_the_new_methods(method, options, keys):
    config = TrainConfig(method=method, epochs=1, limit=48, batch_size=24, monitor=16, **options).resolved()
    model, log = train(config, device="cpu")
    entry = log[0]
    assert set(entry) >= keys | {"epoch", "loss", "seconds", "monitor_clean_accuracy"}
    assert all(math.isfinite(v) for v in entry.values())
    assert not model.training
    if "kl" in keys:  # the KL attack moved the images: the robust term is not 0
        assert entry["kl"] > 0
        assert entry["loss"] == pytest.approx(entry["ce"] + config.trades_beta * entry["kl"], rel=1e-4)
    if "pag_cos" in keys:  # the loss is CE + lambda (1 - mean cos), epoch means included
        assert -1 <= entry["pag_cos"] <= 1
        assert entry["loss"] == pytest.approx(entry["ce"] + config.pag_lambda * (1 - entry["pag_cos"]), rel=1e-4)
    if "agr_cos" in keys:
        assert entry["agr_active"] == 1.0 and entry["agr_norm"] <= 0.1 + 1e-6  # reconstructed, clipped


def test_cli_trains_agr_and_pag_with_their_cards(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    argv = ["train", "--method", "agr", "--eps", "0.3", "--steps", "1", "--epochs", "2", "--agr-start-epoch", "2",
            "--limit", "48", "--batch-size", "24", "--monitor", "16", "--no-eval", "--device", "cpu"]
    assert main(argv) == 0
    card = json.loads((tmp_path / "models" / "mnist-5k" / "agr.json").read_text())  # default name "agr"
    assert card["method"] == "agr" and card["eps"] == 0.3 and card["norm"] == "linf"
    t = card["training"]
    assert (t["agr_base"], t["agr_start_epoch"], t["agr_clip"], t["trades_beta"], t["pag_lambda"]) == (
        "pgd", 2, 0.1, None, None)
    assert t["monitor_settings"]["attack"]["steps"] == 10 and "never" in t["monitor_settings"]["use"]
    assert [e["agr_active"] for e in card["log"]] == [0.0, 1.0]
    assert all({"agr_cos", "agr_gop_rate", "agr_norm_adv", "agr_norm_clean", "monitor_robust_accuracy"} <= set(e)
               for e in card["log"])

    assert main(["train", "--method", "pag", "--pag-target", "nn", "--pag-lambda", "3", "--epochs", "1",
                 "--limit", "24", "--monitor", "0", "--no-eval", "--device", "cpu"]) == 0
    card = json.loads((tmp_path / "models" / "mnist-5k" / "pag-nn.json").read_text())
    assert card["method"] == "pag" and card["eps"] == 0.0 and card["norm"] is None
    assert (card["training"]["pag_target"], card["training"]["pag_lambda"], card["training"]["steps"]) == ("nn", 3.0, 0)
    assert card["training"]["monitor_settings"] is None and "monitor_clean_accuracy" not in card["log"][0]


def test_cli_command_round_trips_through_the_parser():
    from dataclasses import fields

    for config in (
        TrainConfig(method="agr", epochs=40, eps=0.3, steps=10, warmup_epochs=5, batch_size=50, augment=False,
                    agr_base="trades", trades_beta=3.0, agr_start_epoch=30),
        TrainConfig(method="pag", pag_target="nn", pag_lambda=15.0, epochs=15, monitor=0, seed=3),
        TrainConfig(method="trades", eps=0.1, norm="l2", lr=2e-3, limit=100),
    ):
        command = cli_command(config, name="x", eval_limit=100)
        assert command.startswith("python -m gradviz train ")
        args = build_parser().parse_args(command.split()[3:])
        names = {f.name for f in fields(TrainConfig)}
        parsed = TrainConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None}).resolved()
        assert parsed == config.resolved(), command
        assert args.name == "x" and args.eval_limit == 100


def test_cli_eval_curve_writes_accuracy_vs_eps_and_eps50(tmp_path, monkeypatch, capsys):
    from gradviz import zoo
    from gradviz.training import default_eps_grid
    from tests.helpers import save_random_user_model

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    save_random_user_model(tmp_path, metrics={"note": "kept"})
    assert main(["eval", "mnist-5k/rand", "--curve", "--limit", "16", "--write", "--device", "cpu"]) == 0
    metrics = zoo.get_card("mnist-5k/rand").metrics
    curve = metrics["curve"]
    assert curve["eps_grid"] == default_eps_grid("mnist-5k") and {0.1, 0.2, 0.3} <= set(curve["eps_grid"])
    assert len(curve["accuracy"]) == 12 and curve["accuracy"] == sorted(curve["accuracy"], reverse=True)
    assert curve["n_images"] == 16 and metrics["n_images"] == 16 and metrics["note"] == "kept"
    assert math.isnan(curve["eps50"]) or curve["accuracy"][0] > 0.5  # a random model: below 50 % from the start
    assert "eps50" in capsys.readouterr().out

    capsys.readouterr()
    assert main(["list", "--dataset", "mnist-5k", "--markdown"]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "`mnist-5k/rand`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    assert cells[2:8] == [pct(metrics["clean_accuracy"]), pct(metrics["robust_accuracy"]), "–",  # no AutoAttack
                          pct(curve["accuracy"][4]), pct(curve["accuracy"][6]),
                          pct(curve["accuracy"][8])]  # eps 0.1, 0.2 and 0.3
    assert cells[8] == (f"{curve['eps50']:.3f}" if math.isfinite(curve["eps50"])
                        else f"below the grid's smallest eps ({curve['eps_grid'][0]:.4g})")
    assert "| `mnist-5k/standard` |" in table  # shipped models are listed too, without a curve: "–"
    assert main(["list", "--dataset", "mnist-5k", "--markdown", "--shipped"]) == 0
    assert "mnist-5k/rand" not in capsys.readouterr().out


def test_cli_eval_also_measures_other_attacks(tmp_path, monkeypatch, capsys):
    from gradviz import zoo
    from tests.helpers import save_random_user_model

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    save_random_user_model(tmp_path)
    assert main(["eval", "mnist-5k/rand", "--also", "l2:2", "--also", "linf:0.1", "--limit", "8", "--write",
                 "--curve", "--curve-limit", "4", "--device", "cpu"]) == 0
    metrics = zoo.get_card("mnist-5k/rand").metrics
    assert metrics["n_images"] == 8 and metrics["curve"]["n_images"] == 4
    other = zoo.get_card("mnist-5k/rand").metrics["other_attacks"]
    assert [(o["attack"]["norm"], o["attack"]["eps"], o["attack"]["steps"]) for o in other] == [
        ("l2", 2.0, 40), ("linf", 0.1, 40)]
    assert all(0 <= o["robust_accuracy"] <= 1 and o["n_images"] == 8 for o in other)
    for bad in ("l1:2", "l2:-1", "l2:x", "l2"):
        with pytest.raises(SystemExit):
            main(["eval", "mnist-5k/rand", "--also", bad])
    assert "expected NORM:EPS" in capsys.readouterr().err
