"""Bringing your own checkpoint: gradviz.zoo.import_checkpoint (state_dicts with
weights_only, TorchScript files), its refusals with clear messages, TorchScript models in
load_model, and the user's card edits."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from gradviz import zoo
from gradviz.nets import build_model


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    return tmp_path


def _small_cnn(channels=1, classes=10, size=28, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small-cnn", channels=channels, num_classes=classes, size=size).eval()


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _script(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(path))
    return path


class _Exploit:
    """Unpickling this would run code (it writes a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_state_dict_upload_is_checked_saved_and_loads(home):
    model = _small_cnn(seed=1)
    card = zoo.import_checkpoint(_bytes(model.state_dict()), dataset="mnist-5k", name="mine", method="pgd",
                                 eps=0.3, filename="mine.pt")
    assert card.name == "mnist-5k/mine" and card.arch == "small-cnn" and card.method == "pgd"
    assert card.eps == 0.3 and card.norm == "linf" and not card.shipped
    assert card.training["source"] == "imported" and card.training["file"] == "mine.pt"
    assert 0 <= card.metrics["clean_accuracy"] <= 1 and card.metrics["n_images"] == 1000
    path = Path(card.path)
    assert path.parent == zoo.user_model_dir() / "mnist-5k" and path.is_file()
    assert torch.load(path, weights_only=True)["format"] == zoo.CHECKPOINT_FORMAT
    loaded = zoo.load_model("mnist-5k/mine")
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert "mnist-5k/mine" in [c.name for c in zoo.list_models("mnist-5k")]


def test_path_and_wrapped_state_dicts_are_accepted(home):
    path = home / "ckpt.pth"
    torch.save({"state_dict": _small_cnn().state_dict(), "epoch": 3}, path)
    card = zoo.import_checkpoint(path, dataset="mnist", name="from-path", measure=False)
    assert card.dataset == "mnist" and card.metrics == {} and card.training["file"] == "ckpt.pth"


def test_wrong_input_shape_is_refused_with_the_reason(home):
    cifar = _small_cnn(channels=3, size=32)
    with pytest.raises(zoo.CheckpointError) as err:
        zoo.import_checkpoint(_bytes(cifar.state_dict()), dataset="mnist-5k", name="x", filename="cifar.pt")
    msg = str(err.value)
    assert "cifar.pt does not fit mnist-5k" in msg and "another input shape" in msg and "1 x 28 x 28" in msg
    assert "it fits small-cnn for cifar10" in msg
    assert not (zoo.user_model_dir() / "mnist-5k" / "x.pt").exists()


def test_wrong_class_count_is_refused_with_the_reason(home):
    seven = _small_cnn(classes=7)
    with pytest.raises(zoo.CheckpointError, match=r"it predicts 7 classes, mnist-5k has 10"):
        zoo.import_checkpoint(_bytes(seven.state_dict()), dataset="mnist-5k", name="x", filename="seven.pt")
    two = _small_cnn(classes=2)  # fits squares (2 classes), and says so
    with pytest.raises(zoo.CheckpointError, match=r"predicts 2 classes.*fits small-cnn for squares"):
        zoo.import_checkpoint(_bytes(two.state_dict()), dataset="mnist-5k", name="x")


def test_pickle_with_code_is_refused_and_never_run(home):
    marker = home / "marker.txt"
    evil = _bytes({"state_dict": _small_cnn().state_dict(), "payload": _Exploit(marker)})
    with pytest.raises(zoo.CheckpointError, match="weights_only"):
        zoo.import_checkpoint(evil, dataset="mnist-5k", name="evil", filename="evil.pt")
    assert not marker.exists()
    assert not (zoo.user_model_dir() / "mnist-5k" / "evil.pt").exists()


def test_other_bad_files_are_refused(home):
    linear = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(zoo.CheckpointError, match="not a small-cnn state_dict"):
        zoo.import_checkpoint(_bytes(linear.state_dict()), dataset="mnist-5k", name="x")
    with pytest.raises(zoo.CheckpointError, match="not a readable PyTorch checkpoint"):
        zoo.import_checkpoint(b"hello, not a checkpoint", dataset="mnist-5k", name="x", filename="notes.pt")
    with pytest.raises(zoo.CheckpointError, match="empty"):
        zoo.import_checkpoint(b"", dataset="mnist-5k", name="x")
    with pytest.raises(zoo.CheckpointError, match="not a TorchScript file"):
        zoo.import_checkpoint(_bytes(_small_cnn().state_dict()), dataset="mnist-5k", name="x", arch="torchscript")
    with pytest.raises(zoo.CheckpointError, match="no checkpoint file"):
        zoo.import_checkpoint(home / "missing.pt", dataset="mnist-5k", name="x")


def test_names_are_checked(home):
    sd = _bytes(_small_cnn().state_dict())
    with pytest.raises(ValueError, match="shipped model's name"):
        zoo.import_checkpoint(sd, dataset="mnist-5k", name="pgd-linf")
    with pytest.raises(ValueError, match="model name"):
        zoo.import_checkpoint(sd, dataset="mnist-5k", name="../escape")
    zoo.import_checkpoint(sd, dataset="mnist-5k", name="twice", measure=False)
    with pytest.raises(ValueError, match="already have a model named mnist-5k/twice"):
        zoo.import_checkpoint(sd, dataset="mnist-5k", name="twice", measure=False)
    zoo.import_checkpoint(sd, dataset="mnist-5k", name="twice", method="standard", overwrite=True, measure=False)
    assert zoo.get_card("mnist-5k/twice").method == "standard"


def test_torchscript_is_imported_and_loaded(home):
    model = _small_cnn(seed=2)
    path = _script(model, home / "scripted.pt")
    card = zoo.import_checkpoint(path, dataset="mnist-5k", name="scripted", method="standard")
    assert card.arch == zoo.TORCHSCRIPT and card.training["format"] == "torchscript"
    assert 0 <= card.metrics["clean_accuracy"] <= 1
    loaded = zoo.load_model("mnist-5k/scripted")
    assert isinstance(loaded, zoo.TorchScriptModel) and not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    from gradviz.attribution import attribute

    maps = attribute(loaded, x, torch.tensor([1, 2]), method="gradient")
    assert maps.shape == (2, 1, 28, 28) and maps.abs().sum() > 0
    with pytest.raises(zoo.CheckpointError, match="TorchScript file, not a state_dict"):
        zoo.read_checkpoint(path)


def test_torchscript_with_wrong_outputs_or_input_is_refused(home):
    seven = _script(_small_cnn(classes=7), home / "seven.pt")
    with pytest.raises(zoo.CheckpointError, match=r"returns shape \(2, 7\).*logits \(2, 10\)"):
        zoo.import_checkpoint(seven, dataset="mnist-5k", name="x")
    rgb = _script(_small_cnn(channels=3, size=32), home / "rgb.pt")
    with pytest.raises(zoo.CheckpointError, match=r"does not run on mnist-5k's input \(2 x 1 x 28 x 28"):
        zoo.import_checkpoint(rgb, dataset="mnist-5k", name="x")
    assert not list((zoo.user_model_dir()).rglob("*.pt"))


def test_user_card_can_be_edited_renamed_and_deleted(home):
    zoo.import_checkpoint(_bytes(_small_cnn().state_dict()), dataset="mnist-5k", name="draft", measure=False)
    card = zoo.edit_card("mnist-5k/draft", new_name="final", method="trades", eps=0.2)
    assert card.name == "mnist-5k/final" and card.method == "trades" and card.eps == 0.2 and card.norm == "linf"
    folder = zoo.user_model_dir() / "mnist-5k"
    assert sorted(p.name for p in folder.iterdir()) == ["final.json", "final.pt"]
    assert json.loads((folder / "final.json").read_text())["name"] == "mnist-5k/final"
    assert zoo.load_model("mnist-5k/final") is not None
    assert zoo.edit_card("mnist-5k/final", eps=0.0).norm is None
    with pytest.raises(ValueError, match="shipped"):
        zoo.edit_card("mnist-5k/pgd-linf", method="x")
    with pytest.raises(ValueError, match="shipped"):
        zoo.delete_model("mnist-5k/standard")
    zoo.delete_model("mnist-5k/final")
    assert not list(folder.iterdir())
    with pytest.raises(KeyError):
        zoo.delete_model("mnist-5k/final")


def test_card_summary_row():
    card = zoo.get_card("mnist-5k/pgd-linf")
    row = zoo.card_summary(card)
    assert row["name"] == "mnist-5k/pgd-linf" and row["source"] == "shipped"
    assert row["clean %"] == pytest.approx(100 * card.metrics["clean_accuracy"], abs=0.05)
    assert row["attack"] == "PGD-40 linf eps 0.3"
    assert row["eps50"] == card.metrics["curve"]["eps50"] and 0.2 < row["eps50"] < 0.5  # eval --curve
    no_curve = zoo.ModelCard.from_dict({**card.to_dict(), "metrics": {k: v for k, v in card.metrics.items()
                                                                      if k != "curve"}})
    assert zoo.card_summary(no_curve)["eps50"] is None
