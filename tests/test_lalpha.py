"""Tests for the alignment penalty L_alpha (Bigolin Lanfredi et al., Eq. 9; docs/methods.md
section 1): the loss against a hand computation on a linear model, its residual targets
(closest class, Eq. 5, and the GAN projection, Eqs. 15-16) on a generator with a known
projection, that minimising it raises the alignment, and tiny runs through the loop and the
command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import linear_classifier

from gradviz import zoo
from gradviz.__main__ import main
from gradviz.alignment import closest_class, loss_gradient
from gradviz.generative import Generator, save_generator
from gradviz.training import (
    LAlphaObjective, LAlphaResiduals, TrainConfig, cli_command, loss_gradient_direction,
)

C, H, W, K = 1, 4, 4, 3
D = C * H * W


def _linear(seed: int = 0) -> nn.Sequential:
    """f(x) = W flatten(x) + b: grad_x CE = W^T (softmax - onehot)."""
    return linear_classifier(D, K, seed)


class TemplateGenerator(nn.Module):
    """G(z, c) = T_c + A z with the templates orthogonal to range(A): the projection of
    T_y + A z onto class c is T_c + A z, so the residual toward c is exactly T_c - T_y."""

    def __init__(self, seed: int = 0, z_dim: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(D, K + z_dim, generator=g))
        self.register_buffer("A", basis[:, :z_dim] * 0.05)
        self.register_buffer("T", 0.5 + 0.4 * basis[:, z_dim:].T)
        self.z_dim, self.num_classes, self.channels, self.size = z_dim, K, C, H

    def forward(self, z, c):
        return (self.T[c] + z @ self.A.T).view(-1, C, H, W)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    return tmp_path


def test_loss_gradient_of_a_linear_model():
    model = _linear()
    x, y = torch.rand(5, C, H, W), torch.tensor([0, 1, 2, 0, 1])
    grad = loss_gradient(model, x, y)
    p = F.softmax(model(x), 1).detach()
    expected = (p - F.one_hot(y, K)) @ model[1].weight.detach()
    torch.testing.assert_close(grad.flatten(1), expected)


def test_loss_gradient_direction_has_the_loss_gradients_cosine_without_vanishing():
    model = _linear(3)
    x, y = torch.rand(5, C, H, W), torch.tensor([0, 1, 2, 0, 1])
    p_y = F.softmax(model(x), 1).gather(1, y[:, None])
    grad = loss_gradient(model, x, y)
    _, direction = loss_gradient_direction(model, x, y)
    torch.testing.assert_close(direction, grad / (1 - p_y).view(-1, 1, 1, 1), rtol=1e-4, atol=1e-6)
    # a confident image: the loss gradient underflows to 0 in float32, the direction does not
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([200.0, 0.0, 0.0]))
    x0, y0 = x[:1], torch.tensor([0])
    assert loss_gradient(model, x0, y0).abs().max() == 0
    _, d0 = loss_gradient_direction(model, x0, y0)
    w = model[1].weight.detach()
    q = F.softmax(model(x0)[0, 1:], 0).detach()
    torch.testing.assert_close(d0.flatten(), q @ w[1:] - w[0])


def test_lalpha_loss_equals_the_hand_computation_and_backpropagates_twice():
    model = _linear(1)
    x, y = torch.rand(6, C, H, W), torch.tensor([0, 1, 2, 0, 1, 2])
    dx = torch.randn(10, C, H, W)
    index = torch.tensor([3, 0, 9, 4, 4, 7])
    lam = 0.25
    loss, stats = LAlphaObjective(LAlphaResiduals(dx, torch.zeros(10, dtype=torch.long)), lam)(
        model, x, y, index=index)
    logits = model(x)
    grad = (F.softmax(logits, 1) - F.one_hot(y, K)) @ model[1].weight
    cos = F.cosine_similarity(grad, dx[index].flatten(1), dim=1)
    expected = F.cross_entropy(logits, y) - lam * cos.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["alpha"] == pytest.approx(cos.mean().item(), rel=1e-5)
    loss.backward()  # the cosine term reaches the weights through the input gradient
    (expected_grad,) = torch.autograd.grad(expected, model[1].weight)
    torch.testing.assert_close(model[1].weight.grad, expected_grad)


def test_minimising_lalpha_raises_the_alignment():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, K))
    x, y = torch.rand(32, C, H, W), torch.arange(32) % K
    residuals = LAlphaResiduals(torch.randn(32, C, H, W), torch.zeros(32, dtype=torch.long))
    objective = LAlphaObjective(residuals, 1.0)
    index = torch.arange(32)
    before = objective(model, x, y, index=index)[1]["alpha"]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss, _ = objective(model, x, y, index=index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = objective(model, x, y, index=index)[1]["alpha"]
    assert after > before + 0.3, (before, after)


def test_residual_targets_point_to_the_reference_models_closest_class():
    G, model = TemplateGenerator(), _linear(2)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    z = torch.randn(len(y), G.z_dim)
    x = G(z, y).detach()
    res = LAlphaResiduals.compute(G, model, x, y, steps=(200, 0))
    target = closest_class(model, x, y)
    torch.testing.assert_close(res.target, target)
    expected = (G.T[target] - G.T[y]).view(-1, C, H, W)
    torch.testing.assert_close(res(torch.arange(len(y))), expected, atol=2e-3, rtol=0)
    assert (res.target != y).all() and res.meta["n"] == len(y) and res.meta["steps"] == [200, 0]


def test_residuals_of_a_dataset_are_stored_and_not_projected_twice(home):
    from gradviz.data import load_dataset

    train_set = load_dataset("mnist-5k", "train").subset(slice(0, 6))
    G, reference = Generator(z_dim=8, width=8), linear_classifier(28 * 28, 10, seed=5)
    calls = []
    first = LAlphaResiduals.compute(G, reference, train_set.x, train_set.y, dataset="mnist-5k", steps=(4, 1),
                                    progress=lambda f, m: calls.append(f))
    assert calls and first.dx.shape == (6, 1, 28, 28)
    torch.testing.assert_close(first.target, closest_class(reference, train_set.x, train_set.y))
    calls.clear()
    again = LAlphaResiduals.compute(G, reference, train_set.x, train_set.y, dataset="mnist-5k", steps=(4, 1),
                                    progress=lambda f, m: calls.append(f))
    assert not calls  # every pair came from the store
    torch.testing.assert_close(again.dx, first.dx)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="alpha_lambda"):
        LAlphaObjective(LAlphaResiduals(torch.zeros(2, C, H, W), torch.zeros(2)), -1.0)
    with pytest.raises(ValueError, match="residuals"):
        LAlphaObjective()(_linear(), torch.rand(2, C, H, W), torch.tensor([0, 1]), index=torch.tensor([0, 1]))
    res = LAlphaResiduals(torch.zeros(2, C, H, W), torch.zeros(2))
    with pytest.raises(ValueError, match="index"):
        LAlphaObjective(res)(_linear(), torch.rand(2, C, H, W), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(M, C, H, W\)"):
        LAlphaResiduals(torch.zeros(2, D), torch.zeros(2))


def test_config_resolution_and_command_line_round_trip():
    c = TrainConfig(method="lalpha", epochs=3).resolved()
    assert (c.lalpha_lambda, c.lalpha_reference, c.augment, c.eps, c.steps) == (0.3, "mnist-5k/standard", False, 0.0, 0)
    assert TrainConfig(method="pgd").resolved().lalpha_lambda is None
    command = cli_command(TrainConfig(method="lalpha", lalpha_lambda=0.1, epochs=3), name="la")
    assert "--lalpha-lambda 0.1" in command and "--no-augment" in command


def _save_tiny_generator(home, dataset="mnist-5k"):
    G = Generator(z_dim=8, width=8)
    card = zoo.ModelCard(name=f"{dataset}/generator", dataset=dataset, arch="cgan-dcgan", method="cgan",
                         command="tests")
    save_generator(G, card, home / "generators" / f"{dataset}.pt")


def test_tiny_lalpha_run_through_the_loop_and_the_command_line(home, monkeypatch, capsys):
    import gradviz.generative

    monkeypatch.setattr(gradviz.generative, "ASSETS_DIR", home / "no-shipped-generators")
    argv = ["train", "--method", "lalpha", "--epochs", "1", "--limit", "24", "--batch-size", "12",
            "--no-eval", "--device", "cpu"]
    assert main(argv + ["--monitor", "0"]) == 2
    assert "lalpha needs the dataset's generator" in capsys.readouterr().err
    _save_tiny_generator(home)
    assert main(argv + ["--monitor", "8"]) == 0
    card = json.loads((home / "models" / "mnist-5k" / "lalpha.json").read_text())
    assert card["method"] == "lalpha" and card["eps"] == 0.0
    t = card["training"]
    assert (t["lalpha_lambda"], t["lalpha_reference"], t["augment"]) == (0.3, "mnist-5k/standard", False)
    entry = card["log"][0]
    assert {"ce", "alpha", "accuracy", "monitor_clean_accuracy", "monitor_robust_accuracy"} <= set(entry)
    assert all(math.isfinite(v) for v in entry.values())
    # the loss is CE - lambda * cos(gradient, residual), batch by batch and so in the epoch means
    assert -1 <= entry["alpha"] <= 1 and entry["alpha"] != 0  # the residuals were found and used
    assert entry["loss"] == pytest.approx(entry["ce"] - t["lalpha_lambda"] * entry["alpha"], rel=1e-4)
