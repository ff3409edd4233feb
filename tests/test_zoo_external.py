"""timm and torchvision architectures with a local checkpoint: zoo.import_checkpoint(...,
arch="timm:<name>" | "torchvision:<name>") builds the network without pretrained weights,
loads the state_dict weights_only, wraps it with the stated normalisation (the model takes
[0, 1] input) and checks it against the dataset's shape and classes."""

from __future__ import annotations

import io

import pytest
import torch
import torchvision

from gradviz import zoo
from gradviz.nets import NormalizedModel, build_model

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRADVIZ_DATA", str(tmp_path / "no-data"))  # nothing to measure on: offline, quick
    return tmp_path


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_torchvision_checkpoint_imports_with_its_normalisation(home):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    card = zoo.import_checkpoint(_bytes(net.state_dict()), dataset="cifar10", name="tv-r18",
                                 arch="torchvision:resnet18", mean=CIFAR_MEAN, std=CIFAR_STD, filename="r18.pt")
    assert card.arch == "torchvision:resnet18" and card.dataset == "cifar10"
    assert card.training["normalization"]["mean"] == pytest.approx(CIFAR_MEAN)
    assert "not measured" in card.metrics["note"]
    model = zoo.load_model("cifar10/tv-r18")
    assert isinstance(model, NormalizedModel) and not model.training
    x = torch.rand(4, 3, 32, 32)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mean) / std))  # [0, 1] in, the network's own logits out


def test_timm_checkpoint_with_a_module_prefix_and_default_normalisation(home):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=10).eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}  # saved from DataParallel
    path = home / "timm.pth"
    torch.save({"state_dict": state, "epoch": 7}, path)
    card = zoo.import_checkpoint(path, dataset="cifar10", name="timm-r10", arch="timm:resnet10t")
    assert card.training["normalization"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
    model = zoo.load_model("cifar10/timm-r10")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))


def test_external_refusals_name_the_reason(home):
    timm = pytest.importorskip("timm")
    net10 = torchvision.models.resnet18(weights=None, num_classes=10)
    with pytest.raises(zoo.CheckpointError, match=r"r18\.pt does not fit cifar100: it predicts 10 classes, "
                                                  r"cifar100 has 100 \(fc\.weight: \(10, 512\)"):
        zoo.import_checkpoint(_bytes(net10.state_dict()), dataset="cifar100", name="x", filename="r18.pt",
                              arch="torchvision:resnet18")
    with pytest.raises(zoo.CheckpointError, match=r"it is not a torchvision:resnet34 state_dict \(missing"):
        zoo.import_checkpoint(_bytes(net10.state_dict()), dataset="cifar10", name="x", arch="torchvision:resnet34")
    with pytest.raises(zoo.CheckpointError, match=r"cannot be built as torchvision:resnet81: torchvision has no "
                                                  r"architecture 'resnet81'; did you mean resnet18"):
        zoo.import_checkpoint(_bytes(net10.state_dict()), dataset="cifar10", name="x", arch="torchvision:resnet81")
    with pytest.raises(zoo.CheckpointError, match="torchvision's resnet18 takes 3-channel"):
        zoo.import_checkpoint(_bytes(net10.state_dict()), dataset="mnist-5k", name="x", arch="torchvision:resnet18")
    with pytest.raises(zoo.CheckpointError, match="mean has 2 values for 3-channel images"):
        zoo.import_checkpoint(_bytes(net10.state_dict()), dataset="cifar10", name="x", arch="torchvision:resnet18",
                              mean=(0.5, 0.5))
    one_channel = timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1)
    with pytest.raises(zoo.CheckpointError, match="another input shape than cifar10's 3 x 32 x 32"):
        zoo.import_checkpoint(_bytes(one_channel.state_dict()), dataset="cifar10", name="x", arch="timm:resnet10t")
    assert zoo.list_models("cifar10") == []  # nothing was saved


def test_a_pickle_with_code_is_refused_for_external_archs_too(home):
    marker = home / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    with pytest.raises(zoo.CheckpointError, match="weights_only=True only"):
        zoo.import_checkpoint(_bytes({"fc.weight": Exploit()}), dataset="cifar10", name="x",
                              arch="torchvision:resnet18")
    assert not marker.exists()


def test_build_model_wraps_external_networks_with_the_normalisation():
    m = build_model("torchvision:resnet18", channels=3, num_classes=5, size=224, mean=(0.5,), std=(0.25,))
    assert set(m.state_dict()) >= {"normalize.mean", "normalize.std", "net.fc.weight"}
    assert m.normalize.std.flatten().tolist() == [0.25] * 3
    with pytest.raises(ValueError, match="std must be > 0"):
        build_model("torchvision:resnet18", channels=3, num_classes=5, size=32, std=(0.0,))
    with pytest.raises(ValueError, match="'timm:<name>' or 'torchvision:<name>'"):
        build_model("resnet18", channels=3, num_classes=5, size=32)
