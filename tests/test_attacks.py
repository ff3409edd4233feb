import math

import pytest
import torch
from torch import nn

from gradviz import attacks


def _mlp(seed=0, k=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, k)).eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    return x, y


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_perturbation_stays_in_ball_and_image_range(batch, norm, eps):
    x, y = batch
    x_adv = attacks.pgd(_mlp(), x, y, eps=eps, norm=norm, steps=10, seed=0)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_agrees_with_torchattacks_without_random_start(batch, norm):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch
    model = _mlp()
    eps, alpha, steps = (0.1, 0.02, 7) if norm == "linf" else (1.0, 0.2, 7)
    ref_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    ref = ref_cls(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    ours = attacks.pgd(model, x, y, eps=eps, norm=norm, steps=steps, step_size=alpha, random_start=False)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_untargeted_attack_raises_the_loss(batch):
    x, y = batch
    model = _mlp()
    x_adv = attacks.pgd(model, x, y, eps=0.2, steps=10, seed=0)
    ce = nn.functional.cross_entropy
    assert ce(model(x_adv), y) > ce(model(x), y)


def test_targeted_attack_reaches_its_target(batch):
    x, _ = batch
    model = _mlp()
    target = torch.full((len(x),), 3)
    x_adv = attacks.pgd(model, x, target, eps=1.0, steps=50, targeted=True, seed=0)
    assert (model(x_adv).argmax(1) == target).float().mean() == 1.0


def test_eps_zero_returns_x(batch):
    x, y = batch
    assert torch.equal(attacks.pgd(_mlp(), x, y, eps=0.0), x)


def test_seed_makes_random_start_reproducible(batch):
    x, y = batch
    model = _mlp()
    a = attacks.pgd(model, x, y, eps=0.1, steps=3, seed=7)
    b = attacks.pgd(model, x, y, eps=0.1, steps=3, seed=7)
    c = attacks.pgd(model, x, y, eps=0.1, steps=3, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_model_is_left_unchanged(batch):
    x, y = batch
    model = _mlp().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attacks.pgd(model, x, y, eps=0.1, steps=3)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_trace_records_every_step(batch):
    x, y = batch
    x_adv, trace = attacks.pgd(_mlp(), x, y, eps=0.1, steps=5, seed=0, trace=True)
    assert trace.loss.shape == (6, 16) and trace.logits.shape == (6, 16, 10) and trace.norm.shape == (6, 16)
    assert (trace.norm <= 0.1 + 1e-6).all()
    assert trace.loss[-1].mean() > trace.loss[0].mean()
    torch.testing.assert_close(trace.norm[-1], (x_adv - x).flatten(1).abs().amax(1))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(eps=-0.1), "eps must be >= 0"),
        (dict(eps=float("nan")), "eps must be >= 0"),
        (dict(eps=1.5), "above 1"),
        (dict(eps=0.1, steps=0), "steps must be"),
        (dict(eps=0.1, step_size=0.0), "step_size"),
        (dict(eps=0.1, norm="l1"), "unknown norm"),
    ],
)
def test_bad_settings_are_refused(batch, kwargs, match):
    x, y = batch
    with pytest.raises(ValueError, match=match):
        attacks.pgd(_mlp(), x, y, **kwargs)


def test_bad_inputs_are_refused(batch):
    x, y = batch
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        attacks.pgd(_mlp(), bad, y, eps=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.pgd(_mlp(), x * 3, y, eps=0.1)
    with pytest.raises(ValueError, match="labels"):
        attacks.pgd(_mlp(), x, y[:3], eps=0.1)
    with pytest.raises(ValueError, match="labels must lie"):
        attacks.pgd(_mlp(), x, torch.full((16,), 12), eps=0.1)


def test_accuracies(batch):
    x, y = batch
    model = _mlp()
    pred = model(x).argmax(1)
    assert attacks.clean_accuracy(model, x, pred) == 1.0
    robust = attacks.robust_accuracy(model, x, pred, eps=0.3, steps=20, batch_size=5)
    assert 0.0 <= robust < 1.0


# ------------------------------------------------------------------ eps50 outside the grid


def test_eps50_is_nan_when_the_curve_does_not_cross_50_percent_inside_the_grid():
    # the grid "1" of the Attack page: 0 % accuracy there, so eps50 lies below eps 1 (was 1)
    assert math.isnan(attacks.eps50([1.0], [0.0]))
    assert attacks.eps50_outside([1.0], [0.0]) == "below"
    assert attacks.format_eps50(attacks.eps50([1.0], [0.0]), [1.0], [0.0]) == "below the grid's smallest eps (1)"
    # still above 50 % at the largest eps (was inf)
    assert math.isnan(attacks.eps50([0.0, 0.1, 0.2], [1.0, 0.9, 0.6]))
    assert attacks.eps50_outside([0.0, 0.1, 0.2], [1.0, 0.9, 0.6]) == "above"
    assert attacks.format_eps50(None, [0.0, 4 / 255, 8 / 255], [1.0, 0.9, 0.6], scale=255) == \
        "above the grid's largest eps (8)"
    # a crossing inside the grid is a number
    assert attacks.eps50_outside([0.0, 0.1, 0.2], [1.0, 0.6, 0.4]) is None
    assert attacks.format_eps50(attacks.eps50([0.0, 0.1, 0.2], [1.0, 0.6, 0.4]), [0.0, 0.1, 0.2],
                                [1.0, 0.6, 0.4]) == "0.15"


def test_format_eps50_reads_the_values_older_cards_stored():
    curve_above = {"eps_grid": [0.0, 0.25, 0.5], "accuracy": [0.99, 0.9, 0.7], "eps50": float("inf")}
    assert attacks.format_curve_eps50(curve_above) == "above the grid's largest eps (0.5)"
    # an older card stored the grid's first eps for a curve already below 50 % there
    curve_below = {"eps_grid": [0.1, 0.2], "accuracy": [0.2, 0.0], "eps50": 0.1}
    assert attacks.format_curve_eps50(curve_below) == "below the grid's smallest eps (0.1)"
    assert attacks.format_curve_eps50({"eps50": float("inf")}) == "above the grid"  # no curve stored
    assert attacks.format_curve_eps50({"eps50": float("nan")}) == "outside the grid"
    assert attacks.format_curve_eps50({"eps50": 0.32512}) == "0.3251"
    assert attacks.format_curve_eps50({"eps50": 0.32512}, fmt=".3f") == "0.325"
    assert attacks.format_curve_eps50(None) == attacks.format_curve_eps50({}) == "–"
    assert attacks.format_eps50(None) == "not measured"


# ----------------------------------------------------------------------------- TRADES' attack


def _authors_trades_linf(model, x, eps, step_size, steps):
    """The l_inf loop of Zhang et al.'s ``trades.py`` (KLDivLoss(size_average=False) against
    the clean softmax, sign steps, min/max to the box, clamp to [0, 1])."""
    p_clean = torch.softmax(model(x), 1).detach()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape)
    for _ in range(steps):
        x_adv.requires_grad_()
        loss_kl = nn.KLDivLoss(reduction="sum")(torch.log_softmax(model(x_adv), 1), p_clean)
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    return x_adv


def test_trades_attack_is_the_authors_loop(batch):
    x, _ = batch
    model = _mlp(3)
    torch.manual_seed(7)
    ours = attacks.trades_attack(model, x, eps=0.1, steps=5, step_size=0.03)
    torch.manual_seed(7)
    theirs = _authors_trades_linf(model, x, 0.1, 0.03, 5)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_trades_attack_stays_in_the_ball_and_raises_the_kl(batch, norm, eps):
    x, _ = batch
    model = _mlp(6).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    x_adv = attacks.trades_attack(model, x, eps=eps, norm=norm, steps=5)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all() and (size > eps / 2).all()  # it moved, within the ball
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not x_adv.requires_grad

    def kl(xa):
        with torch.no_grad():
            return torch.nn.functional.kl_div(torch.log_softmax(model(xa), 1), torch.log_softmax(model(x), 1),
                                              reduction="sum", log_target=True).item()

    start = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
    assert kl(x_adv) > 10 * kl(start)
    assert model.training  # left in its mode, unchanged
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_trades_attack_without_a_budget_returns_x_and_refuses_bad_settings(batch):
    x, _ = batch
    assert torch.equal(attacks.trades_attack(_mlp(), x, eps=0.0), x)
    assert torch.equal(attacks.trades_attack(_mlp(), x, eps=0.1, steps=0), x)
    with pytest.raises(ValueError, match="unknown norm"):
        attacks.trades_attack(_mlp(), x, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="above 1"):
        attacks.trades_attack(_mlp(), x, eps=1.5)


def test_run_attack_names_the_images_whose_target_is_their_label(batch):
    x, y = batch
    target = (y[:3] + 1) % 10
    target[1] = y[1]
    with pytest.raises(ValueError, match=rf"equals the true label of test #17 \(class {int(y[1])}\): choose another"):
        attacks.run_attack(_mlp(), x[:3], y[:3], eps=0.1, target=target, names=["test #4", "test #17", "test #9"])
    with pytest.raises(ValueError, match=r"true label of the image\(s\) at batch position\(s\) 1:"):
        attacks.run_attack(_mlp(), x[:3], y[:3], eps=0.1, target=target)


def test_an_attack_result_gives_its_predictions_and_table_row(batch):
    x, y = batch
    r = attacks.run_attack(_mlp(), x[:2], y[:2], eps=0.2, steps=5)
    classes = [f"c{k}" for k in range(10)]
    for i in range(2):
        (b, pb), (a, pa) = r.prediction(i), r.prediction(i, after=True)
        assert b == int(r.pred_before[i]) and a == int(r.pred_after[i])
        assert pb == pytest.approx(float(r.probs_before[i].max())) and 0 <= pa <= 1
        row = r.table_row(classes, i)
        assert row["before"] == f"c{b} ({100 * pb:.1f} %)" and row["after"].startswith(f"c{a} (")
        assert row["attack succeeded"] == bool(r.success[i])
        assert row["|δ|∞"] == pytest.approx(float(r.delta[i].abs().max())) and row["|δ|∞"] <= 0.2 + 1e-6
        assert row["|δ|2"] == pytest.approx(float(r.delta[i].flatten().norm()))
