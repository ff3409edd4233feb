"""Tests for the IGD training method (docs/methods.md section 3): the loss against a hand
computation on linear models, double backpropagation, the adversarial cross-entropy and the
clean-image gradients it is made of, the training loop and the command line. The cosine
convention is tested with its one implementation, in test_tensors.py."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import input_spy, linear_classifier

from gradviz import zoo
from gradviz.__main__ import main
from gradviz.training import TrainConfig, train
from gradviz.training.objectives import IGDObjective, true_class_input_gradient

C, H, W, K = 1, 3, 3, 4
D = C * H * W


def _linear(seed: int, dtype=torch.float32) -> nn.Sequential:
    """f(x) = W flatten(x) + b, so grad_x f_y = W[y]."""
    return linear_classifier(D, K, seed, dtype)


def _batch(n=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, C, H, W, generator=g, dtype=dtype), torch.tensor([0, 1, 2, 3, 1, 2][:n])


# ----------------------------------------------------------------------------- the loss


def test_igd_loss_equals_the_hand_computation_on_linear_models():
    student, teacher = _linear(1), _linear(2).eval().requires_grad_(False)
    x, y = _batch()
    lam = 2.5
    obj = IGDObjective(eps=0.0, teacher=teacher, igd_lambda=lam)  # eps 0: x_adv = x
    loss, stats = obj(student, x, y)

    # by hand: grad_x f_y = W[y] for both models
    w = student[1].weight.detach().clone().requires_grad_(True)
    b = student[1].bias.detach().clone().requires_grad_(True)
    wt = teacher[1].weight.detach()
    ce = F.cross_entropy(x.flatten(1) @ w.T + b, y)
    cos = F.cosine_similarity(w[y], wt[y], dim=1)
    hand = ce + lam * (1 - cos).mean()
    assert loss.item() == pytest.approx(hand.item(), rel=1e-6)
    assert stats["ce"] == pytest.approx(ce.item(), rel=1e-6)
    assert stats["cos"] == pytest.approx(cos.mean().item(), rel=1e-6)
    assert stats["loss"] == pytest.approx(hand.item(), rel=1e-6)

    # the parameter gradient runs through the input gradient (double backprop)
    loss.backward()
    hand.backward()
    assert torch.allclose(student[1].weight.grad, w.grad, atol=1e-6)
    assert torch.allclose(student[1].bias.grad, b.grad, atol=1e-6)
    # ... and differs from the gradient of the cross-entropy alone
    w_ce = w.detach().clone().requires_grad_(True)
    (ce_grad,) = torch.autograd.grad(F.cross_entropy(x.flatten(1) @ w_ce.T + b.detach(), y), w_ce)
    assert not torch.allclose(student[1].weight.grad, ce_grad, atol=1e-3)


def test_igd_gradient_matches_finite_differences_on_a_smooth_network():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.Softplus(), nn.Linear(8, K)).double()
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, K)).double().eval()
    x, y = _batch(dtype=torch.float64)
    obj = IGDObjective(eps=0.0, teacher=teacher, igd_lambda=3.0)
    params = list(student.parameters())
    loss, _ = obj(student, x, y)
    grads = torch.autograd.grad(loss, params)
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
    h = 1e-5
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(h * d)
    plus = obj(student, x, y)[0].item()
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.sub_(2 * h * d)
    minus = obj(student, x, y)[0].item()
    assert analytic == pytest.approx((plus - minus) / (2 * h), rel=1e-5)


def test_teacher_gradient_is_the_true_class_logit_gradient_and_the_teacher_is_untouched():
    teacher = _linear(2).eval().requires_grad_(False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x, y = _batch()
    g = true_class_input_gradient(teacher, x, y)
    assert torch.allclose(g, teacher[1].weight[y].view(-1, C, H, W))
    IGDObjective(eps=0.1, steps=1, teacher=teacher)(_linear(1), x, y)
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_igd_inherits_the_pgd_settings_and_eps_warmup():
    obj = IGDObjective(eps=0.3, steps=2, warmup_epochs=3, teacher=_linear(2).eval())
    assert [round(obj.eps_at(e), 4) for e in range(4)] == [0.1, 0.2, 0.3, 0.3]
    x, y = _batch()
    student = input_spy(_linear(1)).train()
    loss, stats = obj(student, x, y, epoch=0)
    assert stats["eps"] == pytest.approx(0.1)
    assert set(stats) >= {"loss", "ce", "cos", "adv_accuracy", "eps"}
    # the cross-entropy at the PGD attack of epoch 0's eps (0.1), the gradient at the clean images
    x_adv, x_grad = student.seen
    d = (x_adv - x).abs().amax((1, 2, 3))
    assert d.max() <= 0.1 + 1e-6 and d.min() > 0.05
    assert torch.equal(x_grad, x)
    assert stats["ce"] == pytest.approx(F.cross_entropy(student.model(x_adv), y).item(), rel=1e-6)
    assert loss.item() == pytest.approx(stats["ce"] + obj.igd_lambda * (1 - stats["cos"]), rel=1e-6)


def test_igd_refuses_a_bad_lambda_or_a_missing_teacher():
    with pytest.raises(ValueError, match="igd_lambda"):
        IGDObjective(igd_lambda=-1.0, teacher=_linear(2))
    with pytest.raises(ValueError, match="teacher"):
        IGDObjective()(_linear(1), *_batch())


# ----------------------------------------------------------------------------- loop and CLI


def test_one_epoch_igd_training_with_the_shipped_standard_teacher():
    cfg = TrainConfig(method="igd", limit=64, epochs=1, steps=2, batch_size=32, igd_lambda=2.0)
    model, log = train(cfg, device="cpu")
    entry = log[0]
    assert set(entry) >= {"loss", "ce", "cos", "adv_accuracy", "eps", "seconds"}
    assert -1.0 <= entry["cos"] <= 1.0
    # per-batch loss = ce + lambda (1 - cos); the epoch means keep that relation
    assert entry["loss"] == pytest.approx(entry["ce"] + 2.0 * (1 - entry["cos"]), rel=1e-5)
    assert not model.training


def test_igd_teacher_must_exist_and_fit_the_dataset(tmp_path):
    with pytest.raises(ValueError, match="IGD needs a teacher model: no model named 'nope/standard'"):
        train(TrainConfig(method="igd", teacher="nope/standard", limit=8, epochs=1))
    from gradviz.nets import build_model

    other = build_model("small-cnn", channels=3, num_classes=10, size=32)
    card = zoo.ModelCard(name="cifar10/tiny", dataset="cifar10", arch="small-cnn", method="standard")
    path = zoo.save_model(other, card, tmp_path / "cifar10" / "tiny.pt")
    with pytest.raises(ValueError, match="made for 'cifar10', not 'mnist-5k'"):
        train(TrainConfig(method="igd", teacher=str(path), limit=8, epochs=1))


def test_cli_trains_igd_with_a_teacher_checkpoint_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    teacher = zoo.get_card("mnist-5k/standard").path
    argv = ["train", "--method", "igd", "--teacher", teacher, "--igd-lambda", "3", "--eps", "0.3",
            "--steps", "1", "--epochs", "1", "--limit", "64", "--no-eval", "--device", "cpu"]
    assert main(argv) == 0
    card = json.loads((tmp_path / "models" / "mnist-5k" / "igd.json").read_text())  # default name "igd"
    assert card["method"] == "igd" and card["eps"] == 0.3 and card["norm"] == "linf"
    assert card["training"]["teacher"] == teacher and card["training"]["igd_lambda"] == 3.0
    assert "cos" in card["log"][0]


def test_cli_records_no_igd_settings_for_other_methods(tmp_path, monkeypatch):
    import gradviz.training

    seen = []

    def fake_train(config, **kwargs):  # the configuration is all this test needs
        seen.append(config)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), []

    monkeypatch.setattr(gradviz.training, "train", fake_train)
    monkeypatch.setattr(zoo, "save_model", lambda *args, **kwargs: None)
    for method in ("standard", "pgd"):
        assert main(["train", "--method", method, "--igd-lambda", "2", "--no-eval", "--out", str(tmp_path)]) == 0
    assert [(c.teacher, c.igd_lambda) for c in seen] == [(None, None), (None, None)]
    assert main(["train", "--method", "igd", "--no-eval", "--out", str(tmp_path)]) == 0
    assert (seen[-1].teacher, seen[-1].igd_lambda) == ("mnist-5k/standard", TrainConfig().igd_lambda)
