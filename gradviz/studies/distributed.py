"""Studies on torchrun: the stored units of a study shared out over torch.distributed ranks.

``torchrun --nproc_per_node K -m gradviz study NAME ...`` starts K processes; each joins the
process group (:func:`init`: gloo on the CPU, NCCL on CUDA with one GPU per rank, device
``cuda:LOCAL_RANK``) and :func:`gradviz.studies.base.run_study` hands its (model, image
range) units to :meth:`Context.run_units` instead of its plain loop. ``run_study`` consults
:func:`context`, which is None unless torch.distributed is initialised with more than one
rank or torchrun's environment (``RANK``, ``WORLD_SIZE`` > 1) says so, so the library and a
plain ``run()`` work as before without torch.distributed.

The protocol of :meth:`Context.run_units` (every rank runs it with the same unit list):

1. **Plan.** Rank 0 reads its store: the units found there are done; the others are
   *missing* and every rank learns the list. Rank ``r`` computes the missing units at
   positions ``r, r + K, r + 2K, ...`` of that list (``blocks=True``: one contiguous block
   each, for units that share costly set-up, e.g. roar_kar's rankings), so a resumed run
   shares out only what is left. The units are image ranges (or retrainings), never ranks:
   a run killed under K processes resumes under any other number, or none.
2. **Compute.** Each rank computes its units and stores each one in *its* store as soon as
   it is done (atomic files, :class:`~gradviz.studies.store.ChunkStore`). A unit already in
   a non-zero rank's own store (a node's local store from an earlier run) is read, not
   computed.
3. **Gather.** Rank 0 reads the units the others computed from its own store: on one
   machine, or several machines sharing the store's filesystem (NFS, Lustre, ...), *the
   store is the gather* and nothing but a short status travels over the network. A unit
   rank 0 cannot read there (machines without a shared filesystem, each with its own
   ``$GRADVIZ_HOME``) is sent by the rank that computed it over torch.distributed's object
   collectives (``gather_object`` on the gloo group, as ``.npz`` bytes, one unit per rank
   per round) and rank 0 stores it. Which path a unit took is decided per unit, so a
   partly shared or lagging filesystem still ends complete.
4. **Assemble.** Rank 0 reads every unit and broadcasts them, so every rank returns the
   same result (only rank 0 should print or write files; the command line does so).

**Failures.** Every step ends with a status exchange on the gloo group: a monitored barrier
(``torch.distributed.monitored_barrier``, timeout :data:`DEFAULT_TIMEOUT` s or
``--dist-timeout`` / ``$GRADVIZ_DIST_TIMEOUT``), then each rank's error, if any. A rank
whose Python code raises reaches the barrier at once with its error, and every rank fails
with :class:`DistributedStudyError` naming the rank, its host and the error (an error that
every rank raised alike, e.g. a bad ``n``, is raised as itself). A rank that dies (killed,
out of memory) on one machine is noticed by torchrun's agent, which stops the other ranks at
once and names the rank and its exit code; a rank that hangs, or dies on another machine,
makes rank 0's monitored barrier fail after the timeout, naming the ranks that did not
arrive. The timeout also bounds ``init_process_group``. It must exceed the longest wait of a
rank that finished its share for the others (about one unit's time), so leave it well above
the slowest unit. Whatever the ranks stored before a failure stays stored: running the same
command again (with any number of processes) computes only the rest.

**Equality with one process.** The units are the same image ranges with the same per-range
seeds (``seed + start``) as a plain run, and each is computed by the same code on one rank,
so with the same device type and thread count the stored arrays are bitwise equal to the
single-process ones (tested on the CPU with gloo). What may differ in the last bits: a
different number of threads per process (the CPU's BLAS / oneDNN kernels may split their
sums differently; torchrun sets ``OMP_NUM_THREADS=1`` per rank by default), a CUDA run
against a CPU run (other kernels and summation orders; and the random starts and noise come
from CUDA's Philox generator, a different stream from the CPU's, so CUDA and CPU runs agree
statistically, not number by number), and GPUs of another model or cuDNN version (kernel
choice). Between ranks of one run on identical GPUs, cuDNN's autotuned or atomic-add
kernels may differ in the last bits from run to run; a PGD decision or a top-k ranking that
sits on such a tie may then flip.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional, Union

import numpy as np
import torch

from gradviz.utils import Progress, report

#: Seconds a rank waits for the others at a step's end (and for ``init_process_group``).
DEFAULT_TIMEOUT = 1800.0
#: The environment variable that overrides :data:`DEFAULT_TIMEOUT`.
TIMEOUT_ENV = "GRADVIZ_DIST_TIMEOUT"

_RESUME = "what the ranks finished is stored: the same command (with any number of processes) resumes from there"


class DistributedStudyError(RuntimeError):
    """A study under torch.distributed failed on some rank (or a rank did not arrive in time)."""


def launched() -> bool:
    """True when torchrun (or another launcher setting ``RANK`` and ``WORLD_SIZE``) started
    this process as one of several ranks."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True when a study should share its units out: torch.distributed is initialised with
    more than one rank, or :func:`launched`."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return dist.get_world_size() > 1
    return launched()


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def rank_device(device: Union[str, torch.device, None], local_rank: int) -> torch.device:
    """The device of the rank with ``LOCAL_RANK`` ``local_rank``: ``"auto"`` -> ``cuda:<local_rank>``
    when torch sees CUDA, else the CPU; ``"cuda"`` -> ``cuda:<local_rank>``; an explicit
    ``cuda:<i>`` or ``cpu`` as given.

    Raises:
        ValueError: CUDA asked for without one, or fewer GPUs than ranks on this machine.
    """
    from gradviz.utils import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(f"local rank {local_rank} has no GPU: this machine has {count}; start at most "
                             f"{count} processes per machine (--nproc_per_node) or use --device cpu")
        dev = torch.device("cuda", local_rank)
    return dev


def _timeout(seconds: Optional[float]) -> float:
    value = float(seconds if seconds is not None else os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    if not value > 0:
        raise ValueError(f"the distributed timeout must be > 0 seconds, got {value}")
    return value


_CONTEXT: Optional["Context"] = None


def init(device: Union[str, torch.device, None] = "auto", timeout: Optional[float] = None) -> Optional["Context"]:
    """Join the process group of a torchrun launch (or take the one already initialised) and
    return the study :class:`Context`; None when there is only one rank (a plain run).

    The backend is NCCL when this rank's device (:func:`rank_device`) is a GPU, which is
    then made the current CUDA device, else gloo; the control messages (status, gathered
    arrays) always go over a gloo group. Calling it again returns the same context.

    Args:
        device: the study's device (see :func:`rank_device`).
        timeout: seconds (default ``$GRADVIZ_DIST_TIMEOUT`` or :data:`DEFAULT_TIMEOUT`):
            ``init_process_group``'s timeout and each step's monitored barrier.

    Raises:
        DistributedStudyError: launched by torchrun with a torch built without distributed.
        ValueError: a bad device or timeout.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    dist = _dist()
    if dist is None:
        if launched():
            raise DistributedStudyError("launched as one of several ranks, but this torch has no torch.distributed")
        return None
    seconds = _timeout(timeout)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if not launched():
            return None
        dev = rank_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl", timeout=timedelta(seconds=seconds), device_id=dev)
        else:
            dist.init_process_group("gloo", timeout=timedelta(seconds=seconds))
        atexit.register(shutdown)
    else:
        dev = rank_device(device, local_rank)
    if dist.get_world_size() == 1:
        return None
    backend = dist.get_backend()
    control = (dist.group.WORLD if backend == "gloo"
               else dist.new_group(backend="gloo", timeout=timedelta(seconds=seconds)))
    _CONTEXT = Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       device=dev, backend=backend, control=control, timeout=seconds)
    return _CONTEXT


def context(device: Union[str, torch.device, None] = "auto") -> Optional["Context"]:
    """The study context when :func:`active` (initialising the process group from torchrun's
    environment when nobody did: :func:`init`), else None."""
    return init(device) if active() else None


def step(ctx: Optional["Context"], what: str):
    """``with step(ctx, "loading the models"): ...``: :meth:`Context.step` under torchrun, a
    plain block when ``ctx`` is None."""
    return contextlib.nullcontext() if ctx is None else ctx.step(what)


def shutdown() -> None:
    """Leave the process group (the command line calls it at the end of a distributed run)."""
    global _CONTEXT
    dist = _dist()
    _CONTEXT = None
    if dist is not None and dist.is_initialized():
        with contextlib.suppress(Exception):  # a peer that is gone must not hang the exit
            dist.destroy_process_group()


def error_line(ctx: Optional["Context"], error: BaseException) -> Optional[str]:
    """The line a command prints for ``error`` on this rank, or None: rank 0 (or a plain run)
    prints every error; another rank prints only an error of its own that the status
    exchange did not report (one it raised outside a synchronised step)."""
    if ctx is None or ctx.is_main:
        return f"error: {error}"
    if isinstance(error, DistributedStudyError) or getattr(error, "gradviz_all_ranks", False):
        return None
    return f"error (rank {ctx.rank}): {error}"


def _arrays_to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _arrays_from_bytes(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@dataclass
class Context:
    """This process's place in a distributed study run (made by :func:`init`).

    Attributes:
        rank, world_size, local_rank: torch.distributed's (``LOCAL_RANK``: on this machine).
        device: this rank's device (``cuda:<local_rank>`` on GPUs).
        backend: the default group's backend (``"gloo"`` or ``"nccl"``).
        control: the gloo group of the status messages and gathered arrays.
        timeout: seconds a rank waits for the others at each step's end.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    control: Any
    timeout: float

    def device_for(self, device: Union[str, torch.device, None]) -> torch.device:
        """A study's ``device`` argument on this rank (:func:`rank_device`)."""
        return rank_device(device, self.local_rank)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports progress, assembles the result and writes files."""
        return self.rank == 0

    def share(self, items: Sequence, blocks: bool = False) -> list:
        """This rank's part of ``items``: positions ``rank, rank + K, ...`` (round robin), or
        with ``blocks`` the ``rank``-th of K contiguous blocks (sizes differing by at most 1)."""
        return _share(items, self.rank, self.world_size, blocks)

    def check(self, step: str, error: Optional[BaseException] = None, *, hint: str = _RESUME,
              error_class: type = DistributedStudyError, **info) -> list[dict]:
        """End ``step`` on every rank: a monitored barrier, then every rank's status.

        ``hint`` ends the messages (default: how a study resumes); ``error_class`` is the
        error raised (a subclass of :class:`DistributedStudyError`, e.g. training's).

        Returns:
            every rank's status dict (``rank``, ``host``, ``error`` and this call's ``info``),
            in rank order, when no rank failed.

        Raises:
            DistributedStudyError: a rank did not arrive within the timeout, or failed while
                some other rank did not.
            the local error itself: when every rank failed with the same error (e.g. a bad
                argument), so a caller sees the error it would see without torchrun.
        """
        dist = _dist()
        host = socket.gethostname()
        text = None if error is None else f"{type(error).__name__}: {error}"
        if error is not None and not isinstance(error, (ValueError, KeyError, LookupError, DistributedStudyError)):
            print(f"[gradviz rank {self.rank}/{self.world_size} on {host}] failed while {step}:\n"
                  + "".join(traceback.format_exception(error)), file=sys.stderr, flush=True)
        status = {"rank": self.rank, "host": host, "error": text, **info}
        try:
            dist.monitored_barrier(group=self.control, timeout=timedelta(seconds=self.timeout), wait_all_ranks=True)
            statuses: list = [None] * self.world_size
            dist.all_gather_object(statuses, status, group=self.control)
        except RuntimeError as err:
            raise error_class(
                f"rank {self.rank}/{self.world_size} ({host}) while {step}: not every rank arrived within "
                f"{self.timeout:g} s (a rank died or hangs; its output above says why; raise --dist-timeout if a "
                f"unit takes longer): {str(err).strip().splitlines()[0] if str(err).strip() else err!r}; "
                + hint) from err
        failed = [s for s in statuses if s["error"]]
        if not failed:
            return statuses
        if error is not None and len(failed) == self.world_size and len({s["error"] for s in failed}) == 1:
            error.gradviz_all_ranks = True  # error_line: rank 0 reports it for all
            raise error
        where = "; ".join(f"rank {s['rank']} ({s['host']}): {s['error']}" for s in failed)
        raise error_class(f"{len(failed)} of {self.world_size} ranks failed while {step}: {where}; " + hint) from error

    @contextlib.contextmanager
    def step(self, what: str, **options) -> Iterator[None]:
        """``with ctx.step("loading the models"): ...`` runs the block on every rank, then
        :meth:`check` with the block's error (or None); ``options``: :meth:`check`'s ``hint``
        and ``error_class``."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 - every error is reported to all ranks
            self.check(what, err, **options)
            raise
        self.check(what, **options)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled over the gloo group)."""
        box = [obj if self.is_main else None]
        _dist().broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def run_units(
        self,
        units: Sequence,
        *,
        load: Callable[[Any], Optional[dict]],
        compute: Callable[[Any], dict],
        save: Callable[[Any, dict], Any],
        describe: Callable[[Any], str],
        progress: Optional[Progress] = None,
        recompute: bool = False,
        blocks: bool = False,
    ) -> tuple[list[dict], int, int]:
        """Share the missing ``units`` out over the ranks, compute and store them, gather on
        rank 0 (see the module docstring for the protocol).

        Every rank must call it with the same ``units`` (in the same order).

        Args:
            units: the study's units (any objects the callbacks understand).
            load: ``load(unit) -> arrays or None``: the unit's stored arrays in this rank's
                store (None: not stored).
            compute: ``compute(unit) -> {name: array}`` (does not store).
            save: ``save(unit, arrays)``: store a unit in this rank's store.
            describe: ``describe(unit) -> str``, the progress message of a unit.
            progress: ``progress(fraction, message)``, called on rank 0 only (its own share).
            recompute: compute every unit again (stored ones are not read first).
            blocks: contiguous blocks instead of round robin (see :meth:`share`).

        Returns:
            ``(arrays of every unit in order, units computed by all ranks, units read from
            rank 0's store)``, the same on every rank.

        Raises:
            DistributedStudyError / the error itself: see :meth:`check`.
        """
        units = list(units)
        stored: dict[int, dict] = {}
        error = None
        try:
            if self.is_main and not recompute:
                for i, unit in enumerate(units):
                    arrays = load(unit)
                    if arrays is not None:
                        stored[i] = arrays
        except Exception as err:  # noqa: BLE001 - reported to every rank
            error = err
        missing = [i for i in range(len(units)) if i not in stored] if self.is_main else None
        missing = self.check("reading the store", error, missing=missing)[0]["missing"]
        mine = _share(missing, self.rank, self.world_size, blocks)
        computed = 0
        with self.step("computing"):
            for j, i in enumerate(mine):
                if self.is_main:
                    report(progress, j / max(len(mine), 1),
                           f"{describe(units[i])} [rank 0 of {self.world_size}: {len(mine)} of {len(missing)}]")
                arrays = None if self.is_main or recompute else load(units[i])
                if arrays is None:
                    arrays = {k: np.asarray(v) for k, v in compute(units[i]).items()}
                    save(units[i], arrays)
                    computed += 1
                if self.is_main:
                    stored[i] = arrays
        needed: Optional[list[int]] = None
        error = None
        try:
            if self.is_main:
                needed = []
                for i in missing:
                    if i not in stored:
                        arrays = load(units[i])
                        if arrays is None:
                            needed.append(i)
                        else:
                            stored[i] = arrays
        except Exception as err:  # noqa: BLE001 - reported to every rank
            error = err
        statuses = self.check("reading the other ranks' units", error, computed=computed, needed=needed)
        needed = statuses[0]["needed"]
        if needed:
            if self.is_main:
                report(progress, 1.0, f"receiving {len(needed)} units over torch.distributed (no shared store)")
            with self.step("sending units to rank 0"):
                self._gather_units(units, needed, blocks, missing, load, save, stored)
        arrays_all = self.broadcast([stored[i] for i in range(len(units))] if self.is_main else None)
        total = sum(int(s["computed"]) for s in statuses)
        return arrays_all, total, len(units) - total

    def _gather_units(self, units, needed, blocks, missing, load, save, stored) -> None:
        """Rank 0 receives the ``needed`` units from the ranks that computed them, one unit
        per rank per round (``gather_object`` on the gloo group, ``.npz`` bytes), and stores
        them. A rank that cannot read a unit back sends its error instead, so every rank
        takes part in every round; rank 0 raises after the last."""
        owner = {i: r for r in range(self.world_size) for i in _share(missing, r, self.world_size, blocks)}
        mine = [i for i in needed if owner[i] == self.rank]
        rounds = max(sum(1 for i in needed if owner[i] == r) for r in range(self.world_size))
        errors = []
        for k in range(rounds):
            sent = None
            if k < len(mine) and not self.is_main:
                try:
                    arrays = load(units[mine[k]])
                    sent = (mine[k], None if arrays is None else _arrays_to_bytes(arrays), "not in its store")
                except Exception as err:  # noqa: BLE001 - sent to rank 0
                    sent = (mine[k], None, f"{type(err).__name__}: {err}")
            box = [None] * self.world_size if self.is_main else None
            _dist().gather_object(sent, box, dst=0, group=self.control)
            if self.is_main:
                for r, item in enumerate(box):
                    if item is None:
                        continue
                    i, blob, why = item
                    if blob is None:
                        errors.append(f"rank {r} could not send unit {i} ({why})")
                        continue
                    arrays = _arrays_from_bytes(blob)
                    save(units[i], arrays)
                    stored[i] = arrays
        if errors:
            raise DistributedStudyError("; ".join(errors))


def _share(items: Sequence, rank: int, world: int, blocks: bool) -> list:
    """Rank ``rank``'s part of ``items`` (see :meth:`Context.share`)."""
    if blocks:
        n = len(items)
        return list(items[rank * n // world:(rank + 1) * n // world])
    return list(items[rank::world])


__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_ENV", "Context", "DistributedStudyError", "active", "context",
           "error_line", "init", "launched", "rank_device", "shutdown", "step"]
