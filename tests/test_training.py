import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import input_spy

from gradviz import zoo
from gradviz.__main__ import main
from gradviz.training import PGDObjective, TrainConfig, train


def test_standard_training_learns_on_a_few_hundred_images():
    from gradviz.attacks import clean_accuracy
    from gradviz.data import load_dataset

    model, log = train(TrainConfig(method="standard", epochs=4, limit=300, batch_size=32, lr=2e-3, seed=0), device="cpu")
    assert [e["epoch"] for e in log] == [1, 2, 3, 4]
    assert log[-1]["loss"] < log[0]["loss"]
    assert not model.training
    test = load_dataset("mnist-5k", "test").subset(slice(0, 300))
    assert clean_accuracy(model, test.x, test.y) > 0.6  # chance is 0.1


def test_training_is_reproducible_with_a_seed():
    cfg = TrainConfig(method="standard", epochs=1, limit=128, batch_size=64, seed=3)
    a, _ = train(cfg, device="cpu")
    b, _ = train(cfg, device="cpu")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def _trained_on(method: str, monkeypatch, **options) -> tuple[torch.Tensor, list]:
    """Run one epoch of ``method`` on the first 96 training images (no shifts) with a spy
    around the model; returns each loss input's l_inf distance to its nearest training image."""
    import gradviz.training.loop as loop
    from gradviz.data import load_dataset

    build = loop.build_model
    spies = []
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: spies.append(input_spy(build(*a, **k))) or spies[-1])
    _, log = train(TrainConfig(method=method, epochs=1, limit=96, batch_size=48, augment=False, monitor=0, **options),
                   device="cpu")
    images = load_dataset("mnist-5k", "train").x[:96].flatten(1)
    seen = torch.cat(spies[0].seen).flatten(1)
    assert len(seen) == 96  # one loss input per training image
    return torch.stack([(row - images).abs().amax(1).min() for row in seen]), log


def test_pgd_objective_trains_on_adversarial_examples(monkeypatch):
    dist, log = _trained_on("pgd", monkeypatch, eps=0.3, steps=2)
    assert dist.max() <= 0.3 + 1e-6  # inside the eps-ball of a training image...
    assert (dist > 0.2).float().mean() > 0.9  # ... and not the image itself
    assert log[0]["eps"] == pytest.approx(0.3) and 0 <= log[0]["adv_accuracy"] <= 1
    clean, _ = _trained_on("standard", monkeypatch)  # the control: the training images themselves
    assert clean.max() == 0


def test_pgd_loss_is_the_cross_entropy_at_the_attack():
    torch.manual_seed(0)
    model = input_spy(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))).train()
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    loss, stats = PGDObjective(eps=0.2, steps=3)(model, x, y)
    (x_adv,) = model.seen
    assert (x_adv - x).abs().max() <= 0.2 + 1e-6 and not torch.equal(x_adv, x)
    assert loss.item() == pytest.approx(F.cross_entropy(model.model(x_adv), y).item())
    assert stats["adv_accuracy"] == (model.model(x_adv).argmax(1) == y).float().mean().item()


def test_pgd_eps_warmup_is_linear():
    obj = PGDObjective(eps=0.3, warmup_epochs=3)
    assert [round(obj.eps_at(e), 4) for e in range(5)] == [0.1, 0.2, 0.3, 0.3, 0.3]
    torch.manual_seed(0)
    model = input_spy(nn.Sequential(nn.Flatten(), nn.Linear(16, 3))).train()
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    for epoch, eps in ((0, 0.1), (3, 0.3)):
        _, stats = obj(model, x, y, epoch=epoch)
        d = (model.seen[-1] - x).abs().amax((1, 2, 3))
        assert stats["eps"] == pytest.approx(eps) and d.max() <= eps + 1e-6 and d.min() > eps / 2


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown training method"):
        train(TrainConfig(method="magic", epochs=1, limit=8))
    with pytest.raises(ValueError, match="epochs"):
        train(TrainConfig(epochs=0, limit=8))


def test_cli_train_writes_checkpoint_and_measured_card(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    argv = ["train", "--method", "pgd", "--eps", "0.3", "--steps", "2", "--epochs", "1", "--limit", "200",
            "--eval-limit", "40", "--name", "tiny-pgd", "--device", "cpu"]
    assert main(argv) == 0
    path = tmp_path / "models" / "mnist-5k" / "tiny-pgd.pt"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["name"] == "mnist-5k/tiny-pgd" and card["method"] == "pgd" and card["eps"] == 0.3
    assert card["command"] == "python -m gradviz " + " ".join(argv)
    assert card["training"]["epochs"] == 1 and card["training"]["seed"] == 0
    assert card["metrics"]["n_images"] == 40 and card["metrics"]["attack"]["steps"] == 40
    assert len(card["log"]) == 1
    model = zoo.load_model("mnist-5k/tiny-pgd")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert "mnist-5k/tiny-pgd" in capsys.readouterr().out
