import json
from pathlib import Path

import pytest
import torch

from gradviz import zoo
from gradviz.nets import build_model

SHIPPED = ["mnist-5k/standard", "mnist-5k/pgd-linf"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    return tmp_path


def _tiny_card(name="mnist-5k/tiny", method="standard"):
    return zoo.ModelCard(name=name, dataset="mnist-5k", arch="small-cnn", method=method,
                         metrics={"clean_accuracy": 0.5}, command="python -m gradviz train ...")


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("small-cnn", channels=1, num_classes=10, size=28)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_are_listed_with_measured_cards(name):
    cards = {c.name: c for c in zoo.list_models("mnist-5k")}
    assert name in cards, f"shipped model {name} missing from assets/models"
    card = cards[name]
    assert card.shipped and card.dataset == "mnist-5k" and card.arch == "small-cnn"
    assert card.command.startswith("python -m gradviz train")
    m = card.metrics
    assert m["attack"]["eps"] == 0.3 and m["attack"]["steps"] == 40 and m["attack"]["norm"] == "linf"
    assert 0 <= m["robust_accuracy"] <= m["clean_accuracy"] <= 1
    assert card["name"] == name and card.get("eps") == card.eps  # dict-like access


def test_shipped_models_meet_the_issue_targets():
    cards = {c.name: c.metrics for c in zoo.list_models("mnist-5k")}
    assert cards["mnist-5k/standard"]["clean_accuracy"] >= 0.97
    assert cards["mnist-5k/standard"]["robust_accuracy"] < 0.05
    assert cards["mnist-5k/pgd-linf"]["clean_accuracy"] >= 0.96
    assert cards["mnist-5k/pgd-linf"]["robust_accuracy"] >= 0.85


def test_shipped_card_numbers_match_the_checkpoint():
    """The card's clean accuracy is what the checkpoint really scores on the test split."""
    from gradviz.attacks import clean_accuracy
    from gradviz.data import load_dataset

    test = load_dataset("mnist-5k", "test")
    for name in SHIPPED:
        model = zoo.load_model(name)
        assert not model.training
        assert all(not p.requires_grad for p in model.parameters())
        card = zoo.get_card(name)
        assert clean_accuracy(model, test.x, test.y) == pytest.approx(card.metrics["clean_accuracy"], abs=1e-4)


def test_save_and_load_round_trip(home):
    model = _model()
    path = zoo.save_model(model, _tiny_card(), zoo.user_model_dir() / "mnist-5k" / "tiny.pt")
    assert path.is_file() and path.with_suffix(".json").is_file()
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["name"] == "mnist-5k/tiny" and "path" not in card
    loaded = zoo.load_model("mnist-5k/tiny")
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    names = [c.name for c in zoo.list_models()]
    assert "mnist-5k/tiny" in names and names.index("mnist-5k/tiny") > 0 or len(names) == 1
    assert [c for c in zoo.list_models() if c.name == "mnist-5k/tiny"][0].shipped is False


def test_checkpoint_loads_with_plain_weights_only_torch_load(home):
    path = zoo.save_model(_model(), _tiny_card(), home / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == zoo.CHECKPOINT_FORMAT and payload["arch"] == "small-cnn"


def test_load_by_path_of_a_bare_state_dict_finds_the_architecture(tmp_path):
    model = _model(1)
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    loaded = zoo.load_model(path)
    assert loaded.gradviz_info["arch"] == "small-cnn" and loaded.gradviz_info["dataset"] in ("mnist-5k", "mnist")
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))


class _Exploit:
    """Unpickling this would run code (it writes a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickle_with_code_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _model().state_dict(), "payload": _Exploit(marker)}, path)
    with pytest.raises(zoo.CheckpointError, match="weights_only"):
        zoo.load_model(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused(tmp_path):
    path = zoo.save_model(_model(), _tiny_card(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(zoo.CheckpointError, match="truncated or corrupt"):
        zoo.load_model(path)


def test_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("just some text")
    with pytest.raises(zoo.CheckpointError):
        zoo.load_model(path)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(zoo.CheckpointError, match="no state_dict"):
        zoo.load_model(tmp_path / "list.pt")


def test_wrong_architecture_is_refused(tmp_path):
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.save(other.state_dict(), tmp_path / "linear.pt")
    with pytest.raises(zoo.CheckpointError, match="no gradviz architecture"):
        zoo.load_model(tmp_path / "linear.pt")
    # the right keys with the wrong class count, against a card that names the architecture
    wrong = build_model("small-cnn", channels=1, num_classes=7, size=28)
    torch.save(wrong.state_dict(), tmp_path / "seven.pt")
    with pytest.raises(zoo.CheckpointError, match="does not fit"):
        zoo.load_model(tmp_path / "seven.pt", arch="small-cnn", dataset="mnist-5k")


def test_unknown_name_lists_known_models():
    with pytest.raises(KeyError, match="known"):
        zoo.load_model("mnist-5k/does-not-exist")


def test_corrupt_card_is_skipped_not_fatal(home):
    folder = zoo.user_model_dir() / "mnist-5k"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{not json")
    (folder / "broken.pt").write_bytes(b"")
    assert "mnist-5k/broken" not in [c.name for c in zoo.list_models()]


def test_a_card_read_again_is_the_file_as_it_is_now(home):
    """Cards are parsed once per file version (the app lists them a dozen times per run): a
    rewritten card is read afresh, a card changed in memory does not change the next read,
    and a file that holds no JSON object is no card."""
    folder = zoo.user_model_dir() / "mnist-5k"
    folder.mkdir(parents=True)
    card = _tiny_card("mnist-5k/cached")
    card.path = str(folder / "cached.pt")
    zoo.write_card(card)
    first = zoo.read_card(folder / "cached.json")
    assert first.metrics == {"clean_accuracy": 0.5}
    first.metrics = {"clean_accuracy": 0.9}  # replaced on this card only
    assert zoo.read_card(folder / "cached.json").metrics == {"clean_accuracy": 0.5}
    card.metrics = {"clean_accuracy": 0.75}
    zoo.write_card(card)
    assert zoo.read_card(folder / "cached.json").metrics == {"clean_accuracy": 0.75}
    (folder / "cached.json").write_text("[1, 2]")
    with pytest.raises(zoo.CheckpointError, match="no JSON object"):
        zoo.read_card(folder / "cached.json")


def test_pag_view_models_add_the_l2_and_pag_models_once():
    assert zoo.pag_view_models("mnist-5k", ["mnist-5k/standard"]) == [
        "mnist-5k/standard", "mnist-5k/pgd-l2", "mnist-5k/pag-cm"]
    assert zoo.pag_view_models("mnist-5k", ["mnist-5k/pag-cm", "mnist-5k/pgd-l2"]) == [
        "mnist-5k/pag-cm", "mnist-5k/pgd-l2"]
