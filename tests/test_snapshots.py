"""Per-epoch input-gradient snapshots (gradviz.training.snapshots): what a training run keeps,
that it is the gradient of the model at that epoch, and that a cancelled run keeps it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gradviz import zoo
from gradviz.__main__ import main as cli
from gradviz.attribution import attribute
from gradviz.data import load_dataset
from gradviz.training import TrainConfig, TrainingCancelled, train
from gradviz.training import snapshots as snap_mod
from gradviz.training.snapshots import SnapshotRecorder, load_snapshots, snapshot_indices, snapshot_path

TINY = dict(method="standard", epochs=2, limit=64, batch_size=32, monitor=0, snapshots=4)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    return tmp_path


def test_snapshot_path_sits_beside_the_checkpoint(tmp_path):
    assert snapshot_path(tmp_path / "mnist-5k" / "pgd-linf.pt") == tmp_path / "mnist-5k" / "pgd-linf.snapshots.npz"


def test_snapshot_indices_take_one_image_per_class_and_follow_the_seed():
    labels = torch.arange(10).repeat(30)  # 300 images, 30 per class
    picks = snapshot_indices(labels, 8, seed=0)
    assert len(picks) == len(set(picks)) == 8
    assert [int(labels[i]) for i in picks] == list(range(8))
    assert picks == snapshot_indices(labels, 8, seed=0)
    assert picks != snapshot_indices(labels, 8, seed=1)
    # more images than classes: the round goes on to a second image of each class
    twelve = snapshot_indices(labels, 12, seed=0)
    assert sorted(int(labels[i]) for i in twelve) == sorted(list(range(10)) + [0, 1])
    assert len(snapshot_indices(torch.tensor([3, 3]), 8)) == 2
    with pytest.raises(ValueError, match=">= 1"):
        snapshot_indices(labels, 0)


def test_a_two_epoch_run_keeps_three_snapshots_equal_to_the_gradient_of_the_model_at_each_epoch(
        tmp_path, monkeypatch):
    states = []
    record = SnapshotRecorder.record

    def spy(self, model, epoch):  # keep the weights each snapshot was taken of
        states.append(copy.deepcopy(model.state_dict()))
        return record(self, model, epoch)

    monkeypatch.setattr(SnapshotRecorder, "record", spy)
    path = tmp_path / "tiny.snapshots.npz"
    model, log = train(TrainConfig(**TINY), device="cpu", snapshot_path=path)
    s = load_snapshots(path)

    test = load_dataset("mnist-5k", "test")
    assert s.epochs.tolist() == [0, 1, 2] and s.n_epochs == 3
    assert s.images.shape == (4, 1, 28, 28) and s.images.dtype == np.float32
    assert s.input_gradients.shape == (3, 4, 1, 28, 28) and s.input_gradients.dtype == np.float32
    assert s.predictions.shape == s.probabilities.shape == (3, 4)
    assert np.array_equal(s.images, test.x[s.indices].numpy()) and np.array_equal(s.labels, test.y[s.indices].numpy())
    assert s.labels.tolist() == [0, 1, 2, 3]  # one per class
    assert all("snapshot_seconds" in e for e in log)
    # each snapshot is attribute(...) of the weights at that epoch
    x, y = torch.from_numpy(s.images), torch.from_numpy(s.labels)
    for e, state in enumerate(states):
        m = copy.deepcopy(model)
        m.load_state_dict(state)
        m.eval()
        expected = attribute(m, x, y, "gradient").numpy()
        np.testing.assert_allclose(s.input_gradients[e], expected, rtol=1e-5, atol=1e-7)
        probs = torch.softmax(m(x), 1)
        assert s.predictions[e].tolist() == probs.argmax(1).tolist()
        np.testing.assert_allclose(s.probabilities[e], probs.max(1).values.detach().numpy(), rtol=1e-5)
    # the weights of successive epochs differ, and so do their gradients
    assert not np.allclose(s.input_gradients[0], s.input_gradients[2])
    # the last snapshot is the gradient of the model that train() returns (and that gets saved)
    card = zoo.ModelCard(name="mnist-5k/tiny", dataset="mnist-5k", arch="small-cnn", method="standard")
    saved = zoo.load_model(zoo.save_model(model, card, tmp_path / "tiny.pt"))
    np.testing.assert_allclose(s.input_gradients[-1], attribute(saved, x, y, "gradient").numpy(), rtol=1e-5, atol=1e-7)


def test_a_cancelled_run_leaves_a_readable_file_with_the_epochs_done(tmp_path):
    path = tmp_path / "cancelled.snapshots.npz"

    def stop(entry):
        if entry["epoch"] == 1:
            raise TrainingCancelled("stop")

    with pytest.raises(TrainingCancelled):
        train(TrainConfig(**{**TINY, "epochs": 3}), device="cpu", snapshot_path=path, on_epoch=stop)
    s = load_snapshots(path)
    assert s.epochs.tolist() == [0, 1] and s.input_gradients.shape[:2] == (2, 4)
    assert not list(tmp_path.glob("*.tmp"))  # the atomic writes left no temporary file


def test_no_snapshots_without_a_path_or_with_k_zero(tmp_path):
    path = tmp_path / "none.snapshots.npz"
    train(TrainConfig(**{**TINY, "epochs": 1, "snapshots": 0}), device="cpu", snapshot_path=path)
    assert not path.exists()


def test_load_snapshots_refuses_a_corrupt_or_foreign_file(tmp_path):
    bad = tmp_path / "bad.snapshots.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable snapshot file"):
        load_snapshots(bad)
    other = tmp_path / "other.snapshots.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="lacks"):
        load_snapshots(other)
    with pytest.raises(FileNotFoundError):
        load_snapshots(tmp_path / "missing.snapshots.npz")


def test_the_cli_writes_snapshots_beside_the_checkpoint_and_the_card_says_so(home, tmp_path):
    out = tmp_path / "models"
    rc = cli(["train", "--method", "standard", "--epochs", "1", "--limit", "64", "--batch-size", "32",
              "--monitor", "0", "--snapshots", "3", "--no-eval", "--name", "tiny", "--out", str(out)])
    assert rc == 0
    path = out / "mnist-5k" / "tiny.snapshots.npz"
    s = load_snapshots(path)
    assert s.epochs.tolist() == [0, 1] and s.labels.tolist() == [0, 1, 2]
    card = zoo.get_card(str(out / "mnist-5k" / "tiny.pt"))
    assert card.training["snapshots"]["file"] == "tiny.snapshots.npz"
    assert card.training["snapshots"]["epochs"] == [0, 1] and card.training["snapshots"]["images"] == 3
    assert "--snapshots 3" in card.command


def test_deleting_a_user_model_deletes_its_snapshots(home):
    model, _ = train(TrainConfig(**{**TINY, "epochs": 1}), device="cpu",
                     snapshot_path=zoo.user_model_dir() / "mnist-5k" / "gone.snapshots.npz")
    card = zoo.ModelCard(name="mnist-5k/gone", dataset="mnist-5k", arch="small-cnn", method="standard")
    path = zoo.save_model(model, card, zoo.user_model_dir() / "mnist-5k" / "gone.pt")
    assert snapshot_path(path).is_file()
    zoo.delete_model("mnist-5k/gone")
    assert not snapshot_path(path).exists() and not path.exists()


def test_module_exports_the_documented_names():
    assert snap_mod.SNAPSHOT_IMAGES == 8 and TrainConfig().snapshots == 8
