"""The PGD explorer's library side: accuracy-vs-eps, eps50, run_attack, the PAG class sweep,
torchattacks agreement on the shipped CNN. The Attack page's figure builders: test_viz_attack."""

import math

import numpy as np
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


@pytest.fixture(scope="module")
def standard():
    from gradviz import data, zoo

    try:
        model = zoo.load_model("mnist-5k/standard")
    except KeyError:
        pytest.skip("the shipped mnist-5k/standard checkpoint is missing")
    test = data.load_dataset("mnist-5k", "test")
    return model, test.x[:32], test.y[:32]


class _Linear2(nn.Module):
    """Two-class linear model f(x) = W x + b, whose worst l_inf attack is known exactly."""

    def __init__(self, w, b):
        super().__init__()
        self.lin = nn.Linear(w.shape[1], 2)
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)

    def forward(self, x):
        return self.lin(x.flatten(1))


# ----------------------------------------------------------------------- oracle on the CNN


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_agrees_with_torchattacks_on_the_shipped_cnn(standard, norm, targeted):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = standard
    x, y = x[:16], y[:16]  # a power of 2: torchattacks' batch-mean loss scales gradients exactly
    y = (y + 3) % 10 if targeted else y
    eps, alpha = (0.3, 0.02) if norm == "linf" else (2.0, 0.2)
    if norm == "linf":
        ref_atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=15, random_start=False)
    else:  # gradviz divides by |grad| exactly; torchattacks adds 1e-10 unless told otherwise
        ref_atk = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=15, random_start=False,
                                     eps_for_division=1e-30)
    if targeted:
        ref_atk.set_mode_targeted_by_function(lambda images, labels: labels)
    ref = ref_atk(x, y)
    ours = attacks.pgd(model, x, y, eps=eps, norm=norm, steps=15, step_size=alpha,
                       random_start=False, targeted=targeted)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_targeted_attack_reaches_its_target_on_the_standard_model(standard):
    model, x, y = standard
    target = (y + 5) % 10  # MNIST's standard l_inf radius, 20 steps, random start
    x_adv = attacks.pgd(model, x, target, eps=0.3, steps=20, targeted=True, seed=0, labels=y)
    assert torch.equal(model(x_adv).argmax(1), target)
    assert (model(x).argmax(1) != target).all()
    assert (x_adv - x).abs().amax() <= 0.3 + 1e-6


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 1.5)])
@pytest.mark.parametrize("random_start", [False, True])
def test_ball_and_range_on_the_standard_model(standard, norm, eps, random_start):
    model, x, y = standard
    x_adv = attacks.pgd(model, x, y, eps=eps, norm=norm, steps=10, step_size=eps / 2,
                        random_start=random_start, seed=0)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps * (1 + 1e-6) + 1e-6).all()
    assert size.max() > 0.5 * eps  # it did move (a test that can fail)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


# ------------------------------------------------------------------------ pgd: bad input


def test_target_equal_to_label_is_refused(batch):
    x, y = batch
    target = (y + 1) % 10
    target[3] = y[3]
    with pytest.raises(ValueError, match=r"equals the true label for image\(s\) \[3\]"):
        attacks.pgd(_mlp(), x, target, eps=0.1, targeted=True, labels=y)
    with pytest.raises(ValueError, match="only used by targeted"):
        attacks.pgd(_mlp(), x, y, eps=0.1, labels=y)
    # without labels the caller takes responsibility: no error
    attacks.pgd(_mlp(), x, target, eps=0.1, steps=2, targeted=True)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(eps=float("inf"), norm="l2"), "finite"),
        (dict(eps=0.1, steps=-3), "steps must be"),
        (dict(eps=0.1, steps=2.5), "steps must be"),
        (dict(eps=0.1, step_size=float("nan")), "step_size"),
    ],
)
def test_more_bad_settings(batch, kwargs, match):
    x, y = batch
    with pytest.raises(ValueError, match=match):
        attacks.pgd(_mlp(), x, y, **kwargs)


def test_float_labels_are_refused(batch):
    x, y = batch
    with pytest.raises(ValueError, match="integer class indices"):
        attacks.pgd(_mlp(), x, y.float(), eps=0.1)


def test_l2_step_on_a_zero_gradient_is_no_step():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    nn.init.zeros_(model[1].weight)
    x = torch.rand(4, 1, 8, 8)
    x_adv = attacks.pgd(model, x, torch.zeros(4, dtype=torch.long), eps=1.0, norm="l2", steps=3,
                        random_start=False)
    assert torch.equal(x_adv, x)


def test_pgd_trace_without_random_start_starts_at_x(batch):
    x, y = batch
    model = _mlp()
    _, tr = attacks.pgd(model, x, y, eps=0.1, steps=4, random_start=False, trace=True)
    torch.testing.assert_close(tr.logits[0], model(x))
    assert torch.equal(tr.norm[0], torch.zeros(16))
    assert tr.settings["random_start"] is False and tr.loss.shape == (5, 16)


# --------------------------------------------------------------------- accuracy vs eps


def test_accuracy_vs_eps_on_a_linear_model_matches_the_closed_form():
    # f = W x + b with two classes: the worst l_inf perturbation of size eps lowers the
    # margin m = (w_y - w_o) . x + (b_y - b_o) by exactly eps * |w_y - w_o|_1 (no clamping
    # when x stays inside [eps, 1 - eps]); PGD reaches that corner in a few steps.
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(2, 64, generator=g), torch.zeros(2)
    model = _Linear2(w, b).eval()
    x = 0.3 + 0.4 * torch.rand(200, 1, 8, 8, generator=g)
    y = model(x).argmax(1)
    y[:20] = 1 - y[:20]  # 20 clean mistakes
    grid = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1]
    acc = attacks.accuracy_vs_eps(model, x, y, grid, steps=20, batch_size=64, seed=0)
    sign = torch.where(y == 0, 1.0, -1.0)
    margin = sign * ((w[0] - w[1]) @ x.flatten(1).T + b[0] - b[1])
    critical = margin / (w[0] - w[1]).abs().sum()  # robust iff eps < critical
    expected = np.array([(critical > e).float().mean().item() for e in grid])
    np.testing.assert_allclose(acc, expected, atol=1e-9)
    assert acc[0] == pytest.approx(0.9)
    # eps50 of the exact curve, against the median of the critical radii on a fine grid
    fine = np.linspace(0, 0.3, 601)
    exact = np.array([(critical > e).float().mean().item() for e in fine])
    assert attacks.eps50(fine, exact) == pytest.approx(np.quantile(critical.numpy(), 0.5), abs=2e-3)


def test_accuracy_vs_eps_is_non_increasing_and_starts_at_clean_accuracy(batch):
    x, y = batch
    model = _mlp()
    y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10
    grid = [0.0, 0.05, 0.1, 0.2, 0.4]
    seen = []
    acc = attacks.accuracy_vs_eps(model, x, y, grid, steps=10, batch_size=5, progress=lambda f, m: seen.append((f, m)))
    assert acc.shape == (5,) and acc.dtype == np.float64
    assert acc[0] == pytest.approx(attacks.clean_accuracy(model, x, y)) == 0.75
    assert (np.diff(acc) <= 0).all() and acc[-1] < acc[0]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any("eps 0.1" in m for _, m in seen)


def test_accuracy_vs_eps_not_nested_equals_robust_accuracy(batch):
    x, y = batch
    model = _mlp()
    grid = [0.0, 0.1, 0.3]
    acc = attacks.accuracy_vs_eps(model, x, y, grid, steps=5, batch_size=6, seed=3, nested=False)
    assert acc[0] == pytest.approx(attacks.clean_accuracy(model, x, y))
    for e, a in zip(grid[1:], acc[1:]):
        assert a == pytest.approx(attacks.robust_accuracy(model, x, y, eps=e, steps=5, batch_size=6, seed=3))


def test_accuracy_vs_eps_leaves_the_model_alone(batch):
    x, y = batch
    model = _mlp().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attacks.accuracy_vs_eps(model, x, y, [0.1], steps=2)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_accuracy_vs_eps_evaluates_in_eval_mode_and_reports_in_order(batch):
    x, _ = batch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Dropout(0.9), nn.ReLU(), nn.Linear(64, 10))
    y = model.eval()(x).argmax(1)
    model.train()  # in train mode, dropout would make the predictions random
    seen = []
    acc = attacks.accuracy_vs_eps(model, x, y, [0.0, 0.01], steps=2, progress=lambda f, m: seen.append(f))
    assert acc[0] == 1.0 and model.training
    seen.clear()
    attacks.accuracy_vs_eps(model, x, y, [0.05, 0.1], steps=2, batch_size=4, progress=lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)  # the clean pass is not reported


@pytest.mark.parametrize(
    "grid,kwargs,match",
    [
        ([0.2, 0.1], {}, "ascending"),
        ([0.1, 0.1], {}, "ascending"),
        ([-0.1, 0.1], {}, ">= 0"),
        ([0.0, float("nan")], {}, "finite"),
        ([], {}, "non-empty"),
        ([0.5, 1.5], {}, "above 1"),
        ([0.1], dict(steps=0), "steps must be"),
        ([0.1], dict(batch_size=0), "batch_size"),
        ([0.1], dict(norm="l1"), "unknown norm"),
    ],
)
def test_accuracy_vs_eps_refuses_bad_input(batch, grid, kwargs, match):
    x, y = batch
    with pytest.raises(ValueError, match=match):
        attacks.accuracy_vs_eps(_mlp(), x, y, grid, **kwargs)


def test_accuracy_vs_eps_refuses_nan_images(batch):
    x, y = batch
    x = x.clone()
    x[2, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        attacks.accuracy_vs_eps(_mlp(), x, y, [0.0, 0.1])


# ------------------------------------------------------------------------------ eps50


@pytest.mark.parametrize(
    "grid,acc,expected",
    [
        ([0, 0.1, 0.2, 0.3], [1.0, 0.8, 0.4, 0.1], 0.175),
        ([0, 0.1, 0.2], [0.9, 0.5, 0.2], 0.1),  # exactly 50 % at a grid point
        ([0, 1, 2, 4], [0.9, 0.6, 0.55, 0.45], 3.0),
        ([0, 0.1, 0.2, 0.3], [0.9, 0.4, 0.7, 0.2], 0.08),  # the first crossing counts
        ([0.0, 0.1], [0.5, 0.1], 0.0),  # exactly 50 % at the first grid point
        ([0.0, 0.1], [0.4, 0.1], math.nan),  # below 50 % from the start: below the grid
        ([0.05, 0.1], [0.3, 0.1], math.nan),
        ([0, 0.1, 0.2], [1.0, 0.9, 0.6], math.nan),  # never crosses within the grid: above it
        ([0.3], [0.7], math.nan),
    ],
)
def test_eps50_on_hand_made_curves(grid, acc, expected):
    got = attacks.eps50(grid, acc)
    assert got == pytest.approx(expected) if math.isfinite(expected) else math.isnan(got)


def test_eps50_takes_tensors():
    assert attacks.eps50(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "grid,acc,match",
    [
        ([0, 0.1], [1.0], "same length"),
        ([0.1, 0.0], [1.0, 0.5], "ascending"),
        ([0, 0.1], [1.0, 1.5], r"\[0, 1\]"),
        ([0, 0.1], [100.0, 40.0], r"\[0, 1\]"),
        ([0, 0.1], [1.0, float("nan")], r"\[0, 1\]"),
        ([], [], "non-empty"),
    ],
)
def test_eps50_refuses_bad_input(grid, acc, match):
    with pytest.raises(ValueError, match=match):
        attacks.eps50(grid, acc)


# --------------------------------------------------------------------------- run_attack


def test_run_attack_untargeted(batch):
    x, y = batch
    model = _mlp()
    res = attacks.run_attack(model, x[:3], y[:3], eps=0.3, steps=8)
    assert res.x_adv.shape == (3, 1, 8, 8) and res.probs_before.shape == (3, 10)
    torch.testing.assert_close(res.probs_before, torch.softmax(model(x[:3]), 1))
    torch.testing.assert_close(res.probs_after, torch.softmax(model(res.x_adv), 1))
    assert res.trace.loss.shape == (9, 3)
    assert (res.trace.loss[-1] > res.trace.loss[0]).all()
    assert not res.targeted and torch.equal(res.y, y[:3])
    torch.testing.assert_close(res.delta, res.x_adv - x[:3])


def test_run_attack_targeted_and_unknown_label(batch):
    x, y = batch
    model = _mlp()
    pred = model(x[:2]).argmax(1)
    target = int((pred[0] + 1) % 10)
    res = attacks.run_attack(model, x[:2], torch.tensor([-1, -1]), eps=1.0, steps=30, target=target)
    assert res.targeted and res.y.tolist() == [target, target]
    assert res.success[0]
    res = attacks.run_attack(model, x[:2], torch.tensor([-1, -1]), eps=0.1, steps=2)
    assert torch.equal(res.y, pred)  # unknown label: away from the clean prediction


def test_run_attack_refuses_a_target_equal_to_the_label(batch):
    x, y = batch
    with pytest.raises(ValueError, match="target class equals the true label"):
        attacks.run_attack(_mlp(), x[:1], y[:1], eps=0.1, target=int(y[0]))
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 10\)"):
        attacks.run_attack(_mlp(), x[:1], y[:1], eps=0.1, target=10)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        attacks.run_attack(_mlp(), x[:1], y[:1], eps=-1.0)


# ----------------------------------------------------------------------- PAG class sweep


def test_sweep_shape_ball_range_and_targets(standard):
    model, x, y = standard
    eps = 3.0
    out = attacks.targeted_class_sweep(model, x[0], eps=eps, steps=30)
    assert out.shape == (10, 1, 28, 28) and out.device == x.device
    d = (out - x[0]).flatten(1).norm(dim=1)
    assert (d <= eps * (1 + 1e-6)).all() and d.min() > 0.1
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(model(out).argmax(1), torch.arange(10))  # every target reached


def test_sweep_equals_one_attack_per_class(batch):
    x, _ = batch
    model = _mlp()
    out = attacks.targeted_class_sweep(model, x[:1], eps=2.0, steps=5, classes=[7, 2])
    assert out.shape == (2, 1, 8, 8)
    for row, c in zip(out, [7, 2]):
        one = attacks.pgd(model, x[:1], torch.tensor([c]), eps=2.0, norm="l2", steps=5,
                          random_start=False, targeted=True)
        torch.testing.assert_close(row[None], one, atol=1e-5, rtol=0)


def test_sweep_refuses_bad_input(batch):
    x, _ = batch
    with pytest.raises(ValueError, match="one image"):
        attacks.targeted_class_sweep(_mlp(), x[:2], eps=1.0, steps=2)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 10\)"):
        attacks.targeted_class_sweep(_mlp(), x[0], eps=1.0, steps=2, classes=[3, 11])
    with pytest.raises(ValueError, match="at least one class"):
        attacks.targeted_class_sweep(_mlp(), x[0], eps=1.0, steps=2, classes=[])
    with pytest.raises(ValueError, match="eps must be >= 0"):
        attacks.targeted_class_sweep(_mlp(), x[0], eps=-1.0, steps=2)
    bad = x[:1].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        attacks.targeted_class_sweep(_mlp(), bad, eps=1.0, steps=2)


def test_target_probabilities_are_the_softmax_of_each_rows_target(batch):
    x, _ = batch
    model = _mlp().train()
    targets = torch.arange(10).repeat(2)[: len(x)]
    p = attacks.target_probabilities(model, x, targets, batch_size=5)
    assert model.training  # the mode is restored
    expected = torch.softmax(model.eval()(x), 1)[torch.arange(len(x)), targets]
    torch.testing.assert_close(p, expected.detach())
    assert p.shape == (16,) and p.device.type == "cpu"
    out = attacks.targeted_class_sweep(model, x[0], eps=3.0, steps=10)
    reached = attacks.target_probabilities(model, out, torch.arange(10))
    clean = attacks.target_probabilities(model, x[:1].expand(10, -1, -1, -1), torch.arange(10))
    assert (reached >= clean).all() and reached.mean() > clean.mean()  # the sweep raises its targets
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 10\)"):
        attacks.target_probabilities(model, x[:2], [0, 10])
    with pytest.raises(ValueError, match="shape"):
        attacks.target_probabilities(model, x[:2], [0])
