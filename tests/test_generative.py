import json
import pickle

import pytest
import torch
from torch import nn

from gradviz import zoo
from gradviz.generative import (
    Discriminator, Generator, NoGeneratorError, class_accuracy, generator_card, list_generators,
    load_generator, project, residual, residual_cache, residual_targets, save_generator, train_gan,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    return tmp_path


class TemplateGenerator(nn.Module):
    """G(z, c) = T_c + A z with the templates T_c orthogonal to range(A): projecting
    x = T_y + A z_true onto class c gives z* = z_true and dx = T_c - T_y exactly."""

    def __init__(self, num_classes=3, z_dim=4, size=8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = size * size
        basis, _ = torch.linalg.qr(torch.randn(d, num_classes + z_dim, generator=g))
        self.register_buffer("A", basis[:, :z_dim] * 0.05)  # (d, z_dim)
        self.register_buffer("T", 0.5 + 0.8 * basis[:, z_dim:].T)  # (K, d), orthogonal to A
        self.z_dim, self.num_classes, self.channels, self.size = z_dim, num_classes, 1, size

    def forward(self, z, c):
        return (self.T[c] + z @ self.A.T).view(-1, 1, self.size, self.size)


def _tiny_card(dataset="mnist-5k"):
    return zoo.ModelCard(name=f"{dataset}/generator", dataset=dataset, arch="cgan-dcgan", method="cgan",
                         command="python -m gradviz train-gan ...")


def test_generator_and_discriminator_shapes():
    for size in (28, 32):
        G, D = Generator(z_dim=8, num_classes=3, size=size, width=8), Discriminator(3, 1, size, width=8)
        z, c = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
        x = G(z, c)
        assert x.shape == (5, 1, size, size) and 0 <= x.min() and x.max() <= 1
        assert D(x, c).shape == (5,)
    assert Generator(channels=3, size=32, width=8)(torch.randn(2, 64), torch.tensor([0, 9])).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="divisible by 4"):
        Generator(size=30)


def test_one_epoch_tiny_training_run():
    seen = []
    from gradviz.data import ImageDataset

    data = ImageDataset(torch.rand(200, 1, 28, 28), torch.arange(200) % 10, [str(i) for i in range(10)])
    G, D, log = train_gan(data, epochs=1, limit=128, batch_size=64, width=8, z_dim=16, device="cpu",
                          seed=0, progress=lambda f, m: seen.append(f))
    assert len(log) == 1 and {"d_loss", "g_loss", "seconds"} <= set(log[0])
    assert not G.training and G(torch.randn(2, 16), torch.tensor([1, 2])).shape == (2, 1, 28, 28)
    assert seen and seen[-1] == 1.0
    with pytest.raises(ValueError, match="epochs"):
        train_gan("mnist-5k", epochs=0)


def test_save_load_round_trip_is_weights_only(home):
    G = Generator(z_dim=8, num_classes=10, width=8).eval()
    path = save_generator(G, _tiny_card("fashion-mnist"), home / "home" / "generators" / "fashion-mnist.pt")
    payload = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and values only
    assert payload["kind"] == "generator" and payload["config"]["z_dim"] == 8
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["dataset"] == "fashion-mnist" and card["command"].startswith("python -m gradviz train-gan")
    assert list_generators()["fashion-mnist"] == path
    for source in ("fashion-mnist", path):
        H = load_generator(source)
        assert not H.training and all(not p.requires_grad for p in H.parameters())
        z, c = torch.randn(3, 8), torch.tensor([0, 5, 9])
        torch.testing.assert_close(H(z, c), G(z, c))
        assert H.gradviz_info["dataset"] == "fashion-mnist"
    assert generator_card("fashion-mnist").dataset == "fashion-mnist"


def test_missing_generator_and_unsafe_file_are_refused(home):
    with pytest.raises(NoGeneratorError, match="no generator for dataset 'cifar10'; available"):
        load_generator("cifar10")
    with pytest.raises(KeyError):
        load_generator("cifar10")
    with pytest.raises(ValueError):
        load_generator("cifar10")
    evil = home / "evil.pt"

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    evil.write_bytes(pickle.dumps({"state_dict": Boom()}, protocol=2))
    with pytest.raises(zoo.CheckpointError):
        load_generator(evil)
    model_file = zoo.save_model(nn.Sequential(), _tiny_card(), home / "notagen.pt")
    with pytest.raises(zoo.CheckpointError, match="not a gradviz generator"):
        load_generator(model_file)


def test_projection_recovers_the_template_difference():
    G = TemplateGenerator()
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([0, 1, 2, 0])
    z_true = torch.randn(4, G.z_dim, generator=g)
    x = G(z_true, y).clamp(0, 1)
    assert 0 < x.min() and x.max() < 1  # no clamping happened
    target = (y + 1) % 3
    proj = project(G, x, target, lambda_z=0.0)
    torch.testing.assert_close(proj.z, z_true, atol=2e-3, rtol=0)
    dx = residual(G, x, target, lambda_z=0.0)
    want = (G.T[target] - G.T[y]).view_as(x)
    torch.testing.assert_close(dx, want, atol=1e-4, rtol=0)
    torch.testing.assert_close(proj.mse, want.flatten(1).pow(2).mean(1), atol=1e-6, rtol=1e-4)
    # the paper's z penalty pulls z toward 0: a shorter z, a slightly worse fit
    pen = project(G, x, target, lambda_z=1.5)
    assert (pen.z.norm(dim=1) < proj.z.norm(dim=1)).all()


def test_batching_over_classes_equals_separate_calls():
    G = TemplateGenerator(num_classes=4)
    x = torch.rand(5, 1, 8, 8) * 0.5 + 0.25
    y = torch.tensor([0, 1, 2, 3, 0])
    t = residual_targets(4, y)  # (5, 3): every class but the label
    assert t.shape == (5, 3) and not (t == y[:, None]).any()
    both = residual(G, x, t, steps=(60, 15))
    assert both.shape == (5, 3, 1, 8, 8)
    for j in range(3):
        torch.testing.assert_close(both[:, j], residual(G, x, t[:, j], steps=(60, 15)), atol=1e-5, rtol=0)
    torch.testing.assert_close(residual(G, x, t, steps=(60, 15), batch_size=4), both, atol=1e-5, rtol=0)
    # one image alone gives what it gives in the batch
    torch.testing.assert_close(residual(G, x[2:3], t[2:3], steps=(60, 15))[0], both[2], atol=1e-5, rtol=0)


def test_generator_is_used_read_only():
    G = Generator(z_dim=8, num_classes=10, width=8)
    G.train()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    x = torch.rand(3, 1, 28, 28)
    dx = residual(G, x, 4, steps=(3, 2))
    assert dx.shape == x.shape
    assert G.training and all(p.grad is None for p in G.parameters())
    for k, v in G.state_dict().items():
        assert torch.equal(v, before[k]), k  # batch-norm statistics untouched too


def test_bad_input_gives_clear_messages():
    G = TemplateGenerator()
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="target equals the label"):
        residual(G, x, torch.tensor([1, 2]), y=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="generator makes"):
        residual(G, torch.rand(2, 1, 28, 28), 1)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        residual(G, x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="steps"):
        residual(G, x, 1, steps=(0, 0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        residual(G, x + 2, 1)


def test_residual_cache_is_computed_once_and_reloaded(tmp_path):
    G = Generator(z_dim=8, num_classes=2, width=8).eval()
    G.gradviz_info = {"dataset": "squares"}
    cache = residual_cache(G, "squares", "test", steps=(2, 1), limit=6, folder=tmp_path, device="cpu")
    assert cache.x_hat.shape == (6, 2, 1, 28, 28) and cache.x_hat.dtype == torch.float16
    assert cache.meta["lambda_z"] == 0.03 and cache.meta["steps"] == [2, 1]
    files = list(tmp_path.glob("squares-test-*.pt"))
    assert len(files) == 1
    again = residual_cache(G, "squares", "test", steps=(2, 1), limit=6, folder=tmp_path, device="cpu")
    assert torch.equal(again.x_hat, cache.x_hat) and again.meta == cache.meta
    from gradviz.data import load_dataset

    test = load_dataset("squares", "test").subset(slice(0, 6))
    other = 1 - test.y
    dx = cache.residual(torch.arange(6), test.x, other)
    assert dx.shape == (6, 1, 28, 28)
    torch.testing.assert_close(dx, residual(G, test.x, other, steps=(2, 1)), atol=2e-3, rtol=0)  # float16
    assert cache.residual(torch.arange(6), test.x, test.y).abs().max() < 2e-3  # own class: x itself


def test_class_accuracy_counts_samples_of_their_class():
    G = TemplateGenerator(num_classes=3)

    class ByTemplate(nn.Module):  # classifies by the nearest template: always right on T_c + small A z
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return -torch.cdist(x.flatten(1), G.T)

    assert class_accuracy(G, ByTemplate(), n_per_class=10) == 1.0


def test_cli_train_gan_writes_generator_and_measured_card(home):
    from gradviz.__main__ import main

    argv = ["train-gan", "--dataset", "mnist-5k", "--epochs", "1", "--limit", "64", "--width", "8", "--z-dim", "8",
            "--quality-samples", "5", "--seed", "3", "--device", "cpu"]
    assert main(argv) == 0
    path = home / "home" / "generators" / "mnist-5k.pt"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["command"] == "python -m gradviz " + " ".join(argv)
    assert card["training"]["seed"] == 3 and card["training"]["epochs"] == 1 and len(card["log"]) == 1
    assert card["metrics"]["classifier"] == "mnist-5k/standard" and card["metrics"]["n_per_class"] == 5
    assert 0 <= card["metrics"]["class_accuracy"] <= 1
    G = load_generator(path)
    assert G.z_dim == 8 and G(torch.zeros(1, 8), torch.tensor([3])).shape == (1, 1, 28, 28)


@pytest.fixture
def counted_project(monkeypatch):
    """Wraps gradviz.generative.project to count the (image, class) pairs it projects."""
    from gradviz import generative

    class Calls(list):
        real = staticmethod(generative.project)

        def reference(self, G, x, target, steps):  # dx by the real project, not counted
            return self.real(G, x, target, steps=steps).x_hat - x

    calls = Calls()

    def counting(generator, x, target, **kw):
        calls.append(int(torch.as_tensor(target).numel()))
        return calls.real(generator, x, target, **kw)

    monkeypatch.setattr(generative, "project", counting)
    return calls


def test_residuals_for_projects_only_missing_pairs_and_persists(tmp_path, counted_project):
    from gradviz.data import load_dataset
    from gradviz.generative import residual_store_path, residuals_for

    G = Generator(z_dim=8, num_classes=10, width=8).eval()
    G.gradviz_info = {"dataset": "mnist-5k"}
    test = load_dataset("mnist-5k", "test")
    steps = (4, 2)
    idx = torch.tensor([0, 1, 2])
    t1 = (test.y[idx] + 1) % 10
    seen = []
    dx = residuals_for(G, "mnist-5k", "test", idx, t1, steps=steps, folder=tmp_path,
                       progress=lambda f, m: seen.append(f))
    assert counted_project == [3] and seen and seen[-1] == 1.0
    assert dx.shape == (3, 1, 28, 28) and dx.dtype == torch.float32
    torch.testing.assert_close(dx, counted_project.reference(G, test.x[idx], t1, steps), atol=1e-6, rtol=0)
    # second call: two stored pairs (in another order, one twice) and two new ones
    a, b = (int(test.y[3]) + 2) % 10, (int(test.y[3]) + 5) % 10
    idx2 = torch.tensor([2, 3, 1, 3, 2])
    t2 = torch.tensor([int(t1[2]), a, int(t1[1]), b, int(t1[2])])
    dx2 = residuals_for(G, "mnist-5k", "test", idx2, t2, steps=steps, folder=tmp_path)
    assert counted_project == [3, 2]
    torch.testing.assert_close(dx2[[0, 2, 4]], dx[[2, 1, 2]], atol=0, rtol=0)
    torch.testing.assert_close(dx2[[1, 3]], counted_project.reference(G, test.x[[3, 3]], torch.tensor([a, b]), steps),
                               atol=1e-6, rtol=0)
    # everything stored: no projection, no progress
    seen.clear()
    dx3 = residuals_for(G, "mnist-5k", "test", idx2, t2, steps=steps, folder=tmp_path,
                        progress=lambda f, m: seen.append(f))
    assert counted_project == [3, 2] and not seen and torch.equal(dx3, dx2)
    # persisted in one weights-only file keyed on the generator and the settings
    path = residual_store_path(G, "mnist-5k", "test", steps=steps, folder=tmp_path)
    assert path.is_file() and [p.name for p in tmp_path.glob("*.pt")] == [path.name]
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["keys"].shape == (5,) and payload["x_hat"].shape == (5, 1, 28, 28)
    assert payload["settings"]["steps"] == [4, 2] and payload["settings"]["lambda_z"] == 1.5
    # other settings or another generator: another file, computed afresh
    residuals_for(G, "mnist-5k", "test", idx[:1], t1[:1], steps=(3, 2), folder=tmp_path)
    assert counted_project == [3, 2, 1] and len(list(tmp_path.glob("*.pt"))) == 2
    H = Generator(z_dim=8, num_classes=10, width=8, embed_dim=16).eval()
    assert residual_store_path(H, "mnist-5k", "test", steps=steps, folder=tmp_path) != path
    # recompute=True projects the asked pairs again and keeps the rest
    residuals_for(G, "mnist-5k", "test", idx[:2], t1[:2], steps=steps, folder=tmp_path, recompute=True)
    assert counted_project[-1] == 2
    assert torch.load(path, weights_only=True)["keys"].shape == (5,)


def test_residuals_for_recomputes_after_a_corrupt_file(tmp_path, counted_project):
    from gradviz.generative import residual_store_path, residuals_for

    G = Generator(z_dim=8, num_classes=2, width=8).eval()
    G.gradviz_info = {"dataset": "squares"}
    idx = torch.tensor([0, 1, 2])
    from gradviz.data import load_dataset

    other = 1 - load_dataset("squares", "test").y[idx]
    dx = residuals_for(G, "squares", "test", idx, other, steps=(3, 1), folder=tmp_path)
    path = residual_store_path(G, "squares", "test", steps=(3, 1), folder=tmp_path)
    assert path.is_file() and counted_project == [3]
    for junk in (path.read_bytes()[:100], b"not a checkpoint", pickle.dumps({"format": "other"}, protocol=2)):
        path.write_bytes(junk)
        again = residuals_for(G, "squares", "test", idx, other, steps=(3, 1), folder=tmp_path)
        assert counted_project[-1] == 3  # all three projected again
        torch.testing.assert_close(again, dx, atol=1e-6, rtol=0)
        assert torch.load(path, weights_only=True)["keys"].shape == (3,)  # the file is good again
    assert len(counted_project) == 4


def test_residuals_for_refuses_bad_pairs(tmp_path, counted_project):
    from gradviz.data import load_dataset
    from gradviz.generative import residuals_for

    G = Generator(z_dim=8, num_classes=10, width=8).eval()
    y = load_dataset("mnist-5k", "test").y
    with pytest.raises(ValueError, match=r"target equals the label for 1 image\(s\) \(first: test #4"):
        residuals_for(G, "mnist-5k", "test", [3, 4], [(int(y[3]) + 1) % 10, int(y[4])], folder=tmp_path)
    with pytest.raises(ValueError, match=r"index must lie in \[0, 1000\)"):
        residuals_for(G, "mnist-5k", "test", [1000], [0], folder=tmp_path)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        residuals_for(G, "mnist-5k", "test", [0], [10], folder=tmp_path)
    with pytest.raises(ValueError, match="index has 2 entries but target 3"):
        residuals_for(G, "mnist-5k", "test", [0, 1], [1, 2, 3], folder=tmp_path)
    with pytest.raises(ValueError, match="generator makes"):
        residuals_for(Generator(z_dim=8, num_classes=10, width=8, size=32).eval(), "mnist-5k", "test", [0],
                      [(int(y[0]) + 1) % 10], folder=tmp_path)
    assert residuals_for(G, "mnist-5k", "test", [], [], folder=tmp_path).shape == (0, 1, 28, 28)
    assert not list(tmp_path.glob("*.pt")) and counted_project == [1]  # only the size check got that far
