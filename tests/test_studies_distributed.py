"""Studies on torchrun (gradviz.studies.distributed): 2-process gloo runs on the CPU give the
table and npz of a 1-process run, bit for bit; a killed or partial run resumes under another
number of processes; ranks without a shared store gather over torch.distributed; a rank that
raises, dies or hangs makes the run fail with a clear message within a bounded time.

Each test starts ``python -m torch.distributed.run --standalone --nproc_per_node 2`` as a
subprocess with one thread per rank (the single-process references run in this process with
one thread too, so that the CPU kernels sum in the same order). On an idle 2-core machine a
test takes 20-60 s; :data:`TIMEOUT` leaves room for a machine shared with other jobs. The
faults are injected by tests/torchrun_study.py; an injected hang sleeps for an hour, so a run
that ends within :data:`TIMEOUT` was ended by gradviz's timeout, not by the hang.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gradviz.studies import ChunkStore, alignment, distributed, inequality, roar_kar, robustness
from tests.helpers import run_torchrun

REPO = Path(__file__).resolve().parent.parent
STD, PGD = "mnist-5k/standard", "mnist-5k/pgd-linf"
#: 24 images in chunks of 6, two models: 8 units.
ROB_ARGS = ["--models", STD, PGD, "--n-images", "24", "--chunk", "6", "--steps", "3", "--eps-grid", "0", "0.1",
            "0.3", "--device", "cpu"]
ROB_KW = dict(n=24, chunk=6, steps=3, eps_grid=(0.0, 0.1, 0.3), device="cpu")
#: Seconds a torchrun subprocess may take (far below the injected hang's hour).
TIMEOUT = 600


def torchrun(args: list[str], tmp: Path, *, script: bool = False, env: dict | None = None,
             timeout: float = TIMEOUT, nproc: int = 2):
    """:func:`tests.helpers.run_torchrun` of ``-m gradviz ARGS`` (or tests/torchrun_study.py ARGS)."""
    return run_torchrun(args, tmp, script="torchrun_study.py" if script else None, env=env, timeout=timeout,
                        nproc=nproc)


@pytest.fixture
def one_thread():
    """This process on one thread (as each rank is), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_same_npz(blob_or_path, reference: bytes) -> None:
    """Same arrays, names, dtypes and bytes (NaNs included)."""
    got = np.load(blob_or_path if isinstance(blob_or_path, Path) else io.BytesIO(blob_or_path))
    ref = np.load(io.BytesIO(reference))
    assert sorted(got.files) == sorted(ref.files)
    for k in ref.files:
        assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
        assert got[k].tobytes() == ref[k].tobytes(), f"{k} differs"


def unit_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npz"))


def study_args(name: str, args: list[str], tmp: Path, sub: str = "two") -> list[str]:
    return ["study", name, *args, "--store", str(tmp / sub / "store"), "--out", str(tmp / sub / "out")]


# --------------------------------------------------------------------------- without torchrun


def test_share_gives_every_unit_to_exactly_one_rank():
    for n in range(0, 12):
        items = list(range(100, 100 + n))
        for world in (1, 2, 3, 5):
            for blocks in (False, True):
                parts = [distributed._share(items, r, world, blocks) for r in range(world)]
                assert sorted(sum(parts, [])) == items
                assert max(map(len, parts)) - min(map(len, parts)) <= 1
                if blocks:
                    assert sum(parts, []) == items  # contiguous, in order


def test_a_plain_process_is_not_distributed(monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert not distributed.launched() and not distributed.active()
    assert distributed.context("cpu") is None and distributed.init("cpu") is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: a plain run
    assert not distributed.launched() and distributed.context("cpu") is None
    assert distributed.error_line(None, ValueError("bad n")) == "error: bad n"


# --------------------------------------------------------------------------- equal to one process


@pytest.fixture(scope="module")
def rob_reference(tmp_path_factory):
    """The 1-process robustness result (this process, one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tmp = tmp_path_factory.mktemp("rob_ref")
        res = robustness.run([STD, PGD], store=ChunkStore(tmp / "store", read_only=[]), **ROB_KW)
    finally:
        torch.set_num_threads(before)
    assert res.computed == 8
    return res.table().to_csv(index=False), res.to_npz()


@pytest.fixture(scope="module")
def rob_two_ranks(tmp_path_factory):
    """A 2-rank torchrun robustness run: (its folder, the process)."""
    tmp = tmp_path_factory.mktemp("rob_two")
    proc, _ = torchrun(study_args("robustness", ROB_ARGS, tmp), tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, proc


def test_robustness_two_ranks_equal_one(rob_reference, rob_two_ranks):
    tmp, proc = rob_two_ranks
    csv, npz = rob_reference
    assert (tmp / "two" / "out" / "robustness.csv").read_text() == csv
    assert_same_npz(tmp / "two" / "out" / "robustness.npz", npz)
    assert proc.stdout.count("clean_accuracy") == 1  # only rank 0 prints the table
    assert "24 images; 8 chunks computed, 0 read from the store" in proc.stdout
    assert len(unit_files(tmp / "two" / "store")) == 8


def test_resume_of_a_two_rank_run_with_one_process(rob_reference, rob_two_ranks, tmp_path, one_thread):
    """Units are image ranges, not ranks: drop 3 of a 2-rank run's 8 chunk files, a plain
    1-process run computes exactly those 3 and ends with the same numbers."""
    src, _ = rob_two_ranks
    shutil.copytree(src / "two" / "store", tmp_path / "store")
    files = unit_files(tmp_path / "store")
    for f in files[1:7:2]:
        f.unlink()
    kept = {f: f.stat().st_mtime_ns for f in unit_files(tmp_path / "store")}
    res = robustness.run([STD, PGD], store=ChunkStore(tmp_path / "store", read_only=[]), **ROB_KW)
    assert (res.computed, res.loaded) == (3, 5)
    assert all(f.stat().st_mtime_ns == t for f, t in kept.items())
    assert res.table().to_csv(index=False) == rob_reference[0]
    assert_same_npz(res.to_npz(), rob_reference[1])


def test_inequality_two_ranks_equal_one(tmp_path, one_thread):
    kw = dict(method="gradient", k=(0.01, 0.05), radii=(1, 2), n_pixels=2, block=4, n=24, chunk=6, device="cpu")
    ref = inequality.run([STD, PGD], store=ChunkStore(tmp_path / "ref", read_only=[]), **kw)
    args = ["--models", STD, PGD, "--n-images", "24", "--chunk", "6", "--method", "gradient", "--k", "0.01", "0.05",
            "--radii", "1", "2", "--n-pixels", "2", "--block", "4", "--device", "cpu"]
    proc, _ = torchrun(study_args("inequality", args, tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "two" / "out" / "inequality.csv").read_text() == ref.table().to_csv(index=False)
    assert_same_npz(tmp_path / "two" / "out" / "inequality.npz", ref.to_npz())


def test_alignment_two_ranks_equal_one(tmp_path, one_thread, monkeypatch):
    """The GAN residuals are projected in their own store (shared by the ranks, under a lock);
    12 images in chunks of 6 and two models give each rank the same (model, chunk) order as
    the plain run, so even the projection batches are the same."""
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "ref_home"))
    ref = alignment.run([STD, PGD], n=12, chunk=6, steps=(20, 5), device="cpu",
                        store=ChunkStore(tmp_path / "ref", read_only=[]))
    args = ["--models", STD, PGD, "--n-images", "12", "--chunk", "6", "--steps", "20", "5", "--device", "cpu"]
    proc, _ = torchrun(study_args("alignment", args, tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "two" / "out" / "alignment.csv").read_text() == ref.table().to_csv(index=False)
    assert_same_npz(tmp_path / "two" / "out" / "alignment.npz", ref.to_npz())


def test_roar_kar_two_ranks_equal_one(tmp_path, one_thread):
    """Retrainings shard too: 4 units (the model's and the random ranking's ROAR and KAR)."""
    kw = dict(n=12, fractions=(0.5,), n_train=32, epochs=1, batch_size=32, device="cpu")
    ref = roar_kar.run([STD], store=ChunkStore(tmp_path / "ref", read_only=[]), **kw)
    args = ["--models", STD, "--n-images", "12", "--fractions", "0.5", "--n-train", "32", "--epochs", "1",
            "--batch-size", "32", "--device", "cpu"]
    proc, _ = torchrun(study_args("roar_kar", args, tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"4 (units|chunks) computed, 0 read from the store", proc.stdout)
    assert (tmp_path / "two" / "out" / "roar_kar.csv").read_text() == ref.table().to_csv(index=False)
    assert_same_npz(tmp_path / "two" / "out" / "roar_kar.npz", ref.to_npz())


def test_ranks_without_a_shared_store_send_their_units_to_rank_0(rob_reference, tmp_path):
    """Each rank with its own store (machines sharing no filesystem): rank 0 receives rank 1's
    units over torch.distributed, stores them, and writes the same numbers."""
    proc, _ = torchrun(study_args("robustness", ROB_ARGS, tmp_path), tmp_path, script=True,
                       env={"GRADVIZ_TEST_STORE_PER_RANK": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "receiving 4 units over torch.distributed" in proc.stderr
    assert len(unit_files(tmp_path / "two" / "store" / "rank0")) == 8
    assert len(unit_files(tmp_path / "two" / "store" / "rank1")) == 4
    assert (tmp_path / "two" / "out" / "robustness.csv").read_text() == rob_reference[0]
    assert_same_npz(tmp_path / "two" / "out" / "robustness.npz", rob_reference[1])


# --------------------------------------------------------------------------- failures


def test_a_rank_that_raises_fails_the_run_with_its_message(tmp_path):
    proc, seconds = torchrun(study_args("robustness", ROB_ARGS, tmp_path), tmp_path, script=True,
                             env={"GRADVIZ_TEST_FAULT": "1:raise"})
    assert proc.returncode != 0
    assert "error: 1 of 2 ranks failed while computing: rank 1" in proc.stderr
    assert "RuntimeError: injected failure on rank 1" in proc.stderr
    assert "resumes" in proc.stderr
    assert len(unit_files(tmp_path / "two" / "store")) == 4  # rank 0's share is stored
    assert not (tmp_path / "two" / "out").exists()
    assert seconds < TIMEOUT


def test_a_rank_that_dies_stops_the_run_and_it_resumes_with_one_process(rob_reference, tmp_path, one_thread):
    """Rank 1 ends (exit status 9, as a crash or an out-of-memory kill) after one unit:
    torchrun stops rank 0 and names rank 1; a plain run then computes only what is missing."""
    proc, seconds = torchrun(study_args("robustness", ROB_ARGS, tmp_path), tmp_path, script=True,
                             env={"GRADVIZ_TEST_FAULT": "1:exit:1"})
    assert proc.returncode != 0 and seconds < TIMEOUT
    assert "exitcode  : 9" in proc.stderr and "rank      : 1" in proc.stderr
    res = robustness.run([STD, PGD], store=ChunkStore(tmp_path / "two" / "store", read_only=[]), **ROB_KW)
    assert res.loaded >= 1 and res.computed >= 1 and res.loaded + res.computed == 8
    assert res.table().to_csv(index=False) == rob_reference[0]
    assert_same_npz(res.to_npz(), rob_reference[1])


def test_a_rank_that_hangs_fails_the_run_after_the_timeout(tmp_path):
    """Rank 1 sleeps for an hour in its first unit; rank 0 waits --dist-timeout 30 s for it
    after its own share, then fails naming the step, and torchrun stops rank 1."""
    proc, seconds = torchrun(study_args("robustness", ROB_ARGS, tmp_path) + ["--dist-timeout", "30"], tmp_path,
                             script=True, env={"GRADVIZ_TEST_FAULT": "1:hang"})
    assert proc.returncode != 0 and seconds < TIMEOUT
    assert "while computing: not every rank arrived within 30 s" in proc.stderr
    assert "1" in proc.stderr.split("not every rank arrived")[1]  # the monitored barrier names rank 1
    assert len(unit_files(tmp_path / "two" / "store")) == 4  # rank 0's share is stored
