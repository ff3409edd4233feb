"""RobustBench models by name, offline (gradviz.robustbench_zoo through zoo.load_model): a
RobustBench architecture with random weights saved into a temporary model_dir in the
package's layout, loaded by name; what is listed; the errors for a missing file, an unknown
name, a model that needs the network, an unsafe pickle. Tests that need the robustbench
package skip when it is not installed (requirements-robustbench.txt)."""

from __future__ import annotations

import pytest
import torch

from gradviz import robustbench_zoo as rz
from gradviz import zoo
from gradviz.checkpoints import CheckpointError

#: A small model of RobustBench's CIFAR-10 l_inf zoo (WRN-28-4, 5.8M parameters; its
#: Standard WRN-28-10 has 36M and is slow on a CPU).
SMALL = "Ding2020MMA"
NAME = f"robustbench:cifar10/Linf/{SMALL}"


def _robustbench():
    try:
        return rz.import_robustbench()
    except CheckpointError as err:
        pytest.skip(f"robustbench is not installed: {err}")


def rb_architecture(name: str = SMALL, dataset: str = "cifar10", threat: str = "Linf", seed: int = 0):
    """RobustBench's own architecture for ``name``, randomly initialised (seeded), eval mode."""
    _robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(seed)
    return model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat)][name]["model"]().eval()


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GRADVIZ_ROBUSTBENCH", raising=False)
    return tmp_path / "home" / "robustbench"  # the default: $GRADVIZ_HOME/robustbench


def test_names_and_paths(model_dir, monkeypatch, tmp_path):
    assert rz.parse_name("robustbench:CIFAR10/linf/Standard") == ("cifar10", "Linf", "Standard")
    assert rz.checkpoint_path(NAME) == model_dir / "cifar10" / "Linf" / f"{SMALL}.pt"
    assert rz.checkpoint_path(NAME, tmp_path / "mine") == tmp_path / "mine" / "cifar10" / "Linf" / f"{SMALL}.pt"
    monkeypatch.setenv("GRADVIZ_ROBUSTBENCH", str(tmp_path / "rb"))
    assert rz.robustbench_dir() == tmp_path / "rb"
    with pytest.raises(ValueError, match="write robustbench:<dataset>/<threat>/<name>"):
        rz.parse_name("robustbench:Standard")
    with pytest.raises(ValueError, match="RobustBench has no dataset 'mnist'"):
        rz.parse_name("robustbench:mnist/Linf/Standard")
    with pytest.raises(ValueError, match="no threat model 'L1'; it has Linf, L2, corruptions"):
        rz.parse_name("robustbench:cifar10/L1/Standard")


def test_local_checkpoints_are_listed_with_their_dataset_without_importing_robustbench(model_dir):
    for rel in ("cifar10/Linf/Standard.pt", "cifar10/L2/Standard.pt", "imagenet/Linf/Salman2020Do_R18.pt",
                "cifar10/Linf/Chen2020Adversarial_m0.pt", "cifar10/Linf/notes.txt", "mnist/Linf/X.pt"):
        (model_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / rel).write_bytes(b"")
    names = [c.name for c in zoo.list_models("cifar10")]
    assert names == ["robustbench:cifar10/L2/Standard", "robustbench:cifar10/Linf/Standard"]
    card = zoo.get_card("robustbench:imagenet/Linf/Salman2020Do_R18")
    assert card.dataset == "imagenet" and card.eps == pytest.approx(4 / 255) and card.norm == "linf"
    assert zoo.card_summary(card)["source"] == "RobustBench"
    assert zoo.list_models("cifar10", include_user=False) == []
    with pytest.raises(ValueError, match="is RobustBench's"):
        zoo.delete_model("robustbench:cifar10/Linf/Standard")


def test_a_saved_architecture_loads_by_name_and_gives_its_logits(model_dir):
    net = rb_architecture()
    path = model_dir / "cifar10" / "Linf" / f"{SMALL}.pt"
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    model = zoo.load_model(NAME)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.gradviz_info == {"arch": "robustbench", "dataset": "cifar10", "path": str(path), "name": NAME,
                                  "threat_model": "Linf"}
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, net(x))
    assert out.shape == (3, 10)
    assert [c.name for c in zoo.list_models("cifar10")] == [NAME]


def test_missing_checkpoint_names_the_path_to_put_it_at(model_dir):
    _robustbench()
    with pytest.raises(CheckpointError) as err:
        zoo.load_model("robustbench:cifar10/Linf/Standard")
    expected = model_dir / "cifar10" / "Linf" / "Standard.pt"
    assert str(err.value).startswith(f"no checkpoint for robustbench:cifar10/Linf/Standard: put RobustBench's file "
                                     f"at {expected} (")
    assert "gradviz does not download" in str(err.value)
    assert not expected.parent.exists()  # nothing was created, nothing downloaded


def test_names_robustbench_cannot_serve_offline(model_dir):
    _robustbench()
    with pytest.raises(CheckpointError, match="has no cifar10 Linf model 'Standrd'; did you mean Standard"):
        zoo.load_model("robustbench:cifar10/Linf/Standrd")
    with pytest.raises(CheckpointError, match="is an ensemble stored as 3 files"):
        zoo.load_model("robustbench:cifar10/Linf/Chen2020Adversarial")
    with pytest.raises(CheckpointError, match="from torchvision's pretrained weights"):
        zoo.load_model("robustbench:imagenet/Linf/Standard_R50")


def test_a_pickle_that_needs_code_is_refused_before_robustbench_reads_it(model_dir, tmp_path):
    _robustbench()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    path = model_dir / "cifar10" / "Linf" / f"{SMALL}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": Exploit()}}, path)
    with pytest.raises(CheckpointError, match="weights_only=True only"):
        zoo.load_model(NAME)
    assert not marker.exists()


def test_a_file_of_another_architecture_is_refused_with_robustbench_reason(model_dir):
    _robustbench()
    path = model_dir / "cifar10" / "Linf" / f"{SMALL}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=f"{SMALL}.pt does not load as RobustBench's cifar10 Linf {SMALL}"):
        zoo.load_model(NAME)
