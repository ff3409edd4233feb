"""Training on torchrun (gradviz.training.distributed): a 2-process gloo run trains one epoch
with DistributedDataParallel and writes a model that loads, with the world size in its card;
the DDP gradient of every allowed objective equals one process's gradient of the whole
batch; AGR is refused with its reason; a rank that dies or hangs makes the run fail with a
clear message within a bounded time; a plain process trains as before.

Each torchrun test starts ``python -m torch.distributed.run --standalone --nproc_per_node 2``
as a subprocess with one thread per rank (as tests/test_studies_distributed.py does). On an
idle 2-core machine one takes 20-60 s (mostly starting Python and torch twice);
:data:`TIMEOUT` leaves room for a machine shared with other jobs. The faults are injected by
tests/torchrun_train.py; an injected hang sleeps for an hour, so a run that ends within
:data:`TIMEOUT` was ended by gradviz's timeout, not by the hang.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gradviz import zoo
from gradviz.training import METHODS, TrainConfig, train
from gradviz.training import distributed as ddp
from tests.helpers import run_torchrun

REPO = Path(__file__).resolve().parent.parent
#: Seconds a torchrun subprocess may take (far below the injected hang's hour).
TIMEOUT = 600
#: One epoch of standard training on 256 images, 2 x 32 per step; no evaluation.
TRAIN_ARGS = ["train", "--method", "standard", "--epochs", "1", "--limit", "256", "--batch-size", "64",
              "--monitor-images", "20", "--snapshots", "2", "--no-eval", "--device", "cpu"]


def torchrun(args: list[str], tmp: Path, *, script: str | None = None, env: dict | None = None,
             timeout: float = TIMEOUT):
    """:func:`tests.helpers.run_torchrun` with this file's timeout."""
    return run_torchrun(args, tmp, script=script, env=env, timeout=timeout)


# --------------------------------------------------------------------------- without torchrun


def test_only_agr_is_refused_and_says_why():
    refused = {m for m in METHODS if ddp.refusal(TrainConfig(method=m).resolved())}
    assert refused == {"agr"}
    with pytest.raises(ValueError, match="'agr' cannot be trained on 2 processes.*autograd.grad.*not linear"):
        ddp.check(TrainConfig(method="agr").resolved(), 2)
    assert ddp.check(TrainConfig(method="pag", batch_size=64).resolved(), 2) == 32


def test_the_batch_size_is_the_effective_batch():
    assert ddp.per_rank_batch(128, 4) == 32 and ddp.per_rank_batch(3, 3) == 1
    with pytest.raises(ValueError, match="multiple of 3 \\(e.g. 126 or 129\\)"):
        ddp.per_rank_batch(128, 3)
    with pytest.raises(ValueError, match="multiple of 4"):
        ddp.per_rank_batch(2, 4)


def test_rank_seeds_differ_and_repeat():
    seeds = {ddp.rank_seed(s, r) for s in range(3) for r in range(4)}
    assert len(seeds) == 12 and ddp.rank_seed(0, 1) == ddp.rank_seed(0, 1)
    assert all(0 <= s < 2**63 for s in seeds)


def test_distributed_outside_torchrun_is_a_plain_run(monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    config = TrainConfig(epochs=1, limit=64, batch_size=32, monitor=0, snapshots=0)
    plain, log = train(config, device="cpu")
    same, log2 = train(config, device="cpu", distributed=True)
    for a, b in zip(plain.state_dict().values(), same.state_dict().values()):
        assert torch.equal(a, b)
    assert [e["loss"] for e in log] == [e["loss"] for e in log2]


# --------------------------------------------------------------------------- 2 processes


def test_two_ranks_train_an_epoch_and_the_model_loads(tmp_path):
    out = tmp_path / "out"
    proc, seconds = torchrun(TRAIN_ARGS + ["--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = out / "mnist-5k" / "standard.pt"
    assert proc.stdout.count("wrote ") == 1 and proc.stdout.count("  epoch 1") == 1  # rank 0 alone prints
    model = zoo.load_model(str(path))
    assert not model.training and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    card = json.loads(path.with_suffix(".json").read_text())
    dist = card["training"]["distributed"]
    assert dist["world_size"] == 2 and dist["per_rank_batch_size"] == 32 and dist["effective_batch_size"] == 64
    assert dist["backend"] == "gloo" and card["training"]["batch_size"] == 64
    assert card["command"].startswith("torchrun --nproc_per_node 2 -m gradviz train")
    (entry,) = card["log"]
    assert 0 < entry["loss"] < 10 and 0 <= entry["monitor_clean_accuracy"] <= 1  # rank 0's monitor
    assert path.with_name("standard.snapshots.npz").is_file()
    assert sorted(p.name for p in (out / "mnist-5k").iterdir()) == ["standard.json", "standard.pt",
                                                                     "standard.snapshots.npz"]
    print(f"2-rank torchrun training: {seconds:.1f} s in all, epoch {entry['seconds']} s")


def test_ddp_gradients_equal_the_whole_batch_gradient(tmp_path):
    """Every allowed objective: the average of the two ranks' gradients (DDP) is one
    process's gradient of the whole batch, to float32 rounding (relative 1e-5)."""
    proc, _ = torchrun([], tmp_path, script="torchrun_ddp_gradients.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("GRADIENTS "))
    rel = json.loads(line.split(" ", 1)[1])
    assert set(rel) == {"standard", "pgd", "igd", "trades", "pag-cm", "pag-nn", "lalpha"}
    assert all(v < 1e-5 for v in rel.values()), rel


def test_agr_is_refused_under_torchrun(tmp_path):
    proc, _ = torchrun(["train", "--method", "agr", "--epochs", "1", "--limit", "64", "--device", "cpu",
                        "--out", str(tmp_path / "out")], tmp_path)
    assert proc.returncode != 0
    assert "error: method 'agr' cannot be trained on 2 processes with DistributedDataParallel" in proc.stderr
    assert proc.stderr.count("error: method 'agr'") == 1  # rank 0 alone says it
    assert not (tmp_path / "out").exists()


def test_a_rank_that_dies_stops_the_run(tmp_path):
    """Rank 1 ends (exit status 9, as a crash or an out-of-memory kill) after one step:
    torchrun stops rank 0 and names rank 1; nothing is written."""
    proc, seconds = torchrun(TRAIN_ARGS + ["--out", str(tmp_path / "out")], tmp_path, script="torchrun_train.py",
                             env={"GRADVIZ_TEST_FAULT": "1:exit:1"})
    assert proc.returncode != 0 and seconds < TIMEOUT
    assert "exitcode  : 9" in proc.stderr and "rank      : 1" in proc.stderr
    assert not (tmp_path / "out" / "mnist-5k" / "standard.pt").exists()


def test_a_rank_that_hangs_fails_the_run_after_the_timeout(tmp_path):
    """Rank 1 sleeps for an hour in its second step; rank 0's all-reduce gives up after
    --dist-timeout 40 s with a message naming the epoch, and torchrun stops rank 1. (The
    timeout also bounds the set-up, where rank 1 waits for rank 0's: on a busy machine that
    took over 20 s, hence 40.)"""
    proc, seconds = torchrun(TRAIN_ARGS + ["--out", str(tmp_path / "out"), "--dist-timeout", "40"], tmp_path,
                             script="torchrun_train.py", env={"GRADVIZ_TEST_FAULT": "1:hang:1"})
    assert proc.returncode != 0 and seconds < TIMEOUT
    assert ("error: rank 0/2" in proc.stderr and "in epoch 1/1: the exchange with the other ranks failed or did not "
            "complete within 40 s: another rank died, hangs or failed" in proc.stderr), proc.stderr[-3000:]
    assert not (tmp_path / "out" / "mnist-5k" / "standard.pt").exists()
