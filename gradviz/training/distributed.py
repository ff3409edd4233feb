"""Training on torchrun: :func:`gradviz.training.train` with ``distributed=True`` trains one
model with PyTorch's DistributedDataParallel (DDP) over the ranks of a torchrun launch.

``torchrun --nproc_per_node K -m gradviz train ...`` starts K processes; each joins the
process group through :func:`gradviz.studies.distributed.init` (gloo on the CPU, NCCL on
CUDA with one GPU per rank, ``cuda:LOCAL_RANK``; ``--dist-timeout`` / ``$GRADVIZ_DIST_TIMEOUT``
bounds the joining and every collective), so studies and training share one way of
starting, timing out and failing. What a distributed run does:

* **Batches.** ``--batch-size`` stays the *effective* batch, the images of one optimiser
  step over all ranks: each rank takes ``batch_size / K`` of them (K must divide it), so the
  learning rate, the one-cycle schedule and the number of steps mean what they mean on one
  process. The card's ``training["distributed"]`` records the world size, the per-rank and
  the effective batch (:func:`card_info`).
* **Data and seeds.** A ``DistributedSampler(shuffle=True, seed=config.seed,
  drop_last=False)`` with ``set_epoch(epoch)`` before each epoch: every rank draws the same
  permutation of the training images and takes every K-th one; when K does not divide the
  number of images, the sampler repeats the first few so that every rank has as many
  batches (a DDP requirement), and those images count twice in that epoch. The weights
  start equal on every rank (the same seed, and DDP broadcasts rank 0's at the start); then
  each rank's torch generator is re-seeded with :func:`rank_seed` ``(seed, rank)`` so the
  random translations and the attacks' random starts differ between ranks and are
  reproducible. A K-rank run is not bitwise equal to a one-process run (other batches per
  step, other random numbers, sums split over ranks); a one-process run is unchanged.
* **Gradients.** DDP all-reduces (averages) the parameter gradients during
  ``loss.backward()``. Every loss gradviz allows under DDP is a mean over the batch of
  per-image terms, so the average of the K per-rank gradients is the gradient of the
  effective batch's loss (tested against a one-process full-batch gradient:
  tests/test_training_distributed.py). The input-gradient terms of IGD, PAG and L_alpha
  (``torch.autograd.grad`` with respect to the *images*, ``create_graph=True``) are
  per-image too: their second-order contribution to a parameter's gradient reaches it
  through the same ``backward()`` and is averaged with the rest.
* **Refused** (:func:`refusal`, the objective's ``distributed_refusal``): AGR, whose step
  takes the clean and the adversarial parameter gradients with ``torch.autograd.grad`` on
  the parameters (DDP's hooks never see them: nothing is reduced, and DDP's next iteration
  fails) and combines them with a per-tensor cosine, projection and norm clip, which are not
  linear: the average of K per-rank reconstructions is not the reconstruction of the
  full-batch gradients. It would need both gradients all-reduced *before* the combination.
* **Batch norm.** gradviz's own architectures have none (batch statistics would also break
  PAG's batched class gradients). An external one with batch norm is not converted to
  SyncBatchNorm (it needs CUDA and is not twice differentiable): each rank normalises with
  its own per-rank batch, and DDP broadcasts rank 0's running statistics at each forward
  (``broadcast_buffers``), so the saved model carries rank 0's.
* **Set-up.** Rank 0 builds the objective first (it may write caches: L_alpha's residual
  store), then the other ranks (which read them where the store is shared); a set-up error
  on any rank fails every rank with its message (:meth:`Context.step`).
* **Rank 0 only** reports progress, measures the per-epoch learning curves on its own
  (``--monitor``: the other ranks wait for it at the next epoch's first all-reduce; keep the
  timeout above the monitor's time), takes the input-gradient snapshots, evaluates, and
  writes the checkpoint, card and snapshots; the per-epoch log's numbers are averaged over
  all ranks' images (one all-reduce per epoch). The other ranks write nothing.
* **Failures.** A rank that dies on the same machine is noticed by torchrun's agent, which
  stops the others and names it and its exit code. A rank that hangs or dies on another
  machine makes the others' next all-reduce fail (a closed connection at once, a hang after
  the timeout): they raise :class:`DistributedTrainingError`, naming the epoch and the
  cause. Nothing is written: a failed run is started again from the beginning.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Optional

import numpy as np
import torch
from torch import nn

from gradviz.studies.distributed import Context, DistributedStudyError, init
from gradviz.training.objectives import objective_class

__all__ = ["DistributedTrainingError", "card_info", "check", "collective_failure", "has_batch_norm", "join",
           "per_rank_batch", "rank_seed", "reduce_sums", "refusal", "wrap"]

#: The hint a failed distributed training step ends with (:meth:`Context.check`).
RESTART = "nothing was written: start the training again"


class DistributedTrainingError(DistributedStudyError):
    """A training under torch.distributed failed on some rank, or a rank did not answer in time."""


def refusal(config) -> Optional[str]:
    """Why ``config``'s objective cannot be trained with DDP as is (its class's
    ``distributed_refusal``), or None when it can."""
    return getattr(objective_class(config.method), "distributed_refusal", None)


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Each rank's batch: ``batch_size / world_size`` (the effective batch stays ``batch_size``).

    Raises:
        ValueError: ``world_size`` does not divide ``batch_size``.
    """
    if world_size < 1 or batch_size < world_size or batch_size % world_size:
        lower = max(world_size, batch_size // world_size * world_size)
        raise ValueError(f"--batch-size {batch_size} is the effective batch of one step over all {world_size} "
                         f"processes and must be a multiple of {world_size} (e.g. {lower} or "
                         f"{lower + world_size})")
    return batch_size // world_size


def check(config, world_size: int) -> int:
    """Whether ``config`` (resolved) can be trained on ``world_size`` ranks; returns the
    per-rank batch.

    Raises:
        ValueError: the objective is refused (:func:`refusal`, with the reason) or the batch
            does not split (:func:`per_rank_batch`).
    """
    reason = refusal(config)
    if reason:
        raise ValueError(f"method {config.method!r} cannot be trained on {world_size} processes with "
                         f"DistributedDataParallel: {reason}. Train it in one process (python -m gradviz train "
                         f"..., one GPU)")
    return per_rank_batch(int(config.batch_size), world_size)


def join(config, device) -> Optional[Context]:
    """The process group's :class:`~gradviz.studies.distributed.Context` of a torchrun
    launch (joined with :func:`gradviz.studies.distributed.init` when nobody did), after
    :func:`check`; None when there is only one rank (a plain run)."""
    from gradviz.studies.distributed import launched

    import torch.distributed as dist

    if not (launched() or (dist.is_available() and dist.is_initialized())):
        return None
    ctx = init(device)
    if ctx is not None:
        check(config, ctx.world_size)
    return ctx


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s torch generator after the model is built (random
    translations, attacks' random starts): ``SeedSequence((seed, rank))``'s first 63 bits,
    distinct for every (seed, rank)."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` has a batch-norm layer (running statistics that DDP must broadcast)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    """``model`` in DistributedDataParallel on this rank's device (rank 0's weights broadcast
    to all); buffers broadcast at each forward only with batch norm (gradviz's own models'
    only buffers are their constant input normalisation)."""
    from torch.nn.parallel import DistributedDataParallel

    import inspect

    dev = ctx.device
    sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else "broadcast_buffers")  # torch >= 2.12 renamed it
    return DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None,
                                   **{sync: has_batch_norm(model)})


def reduce_sums(ctx: Context, sums: dict, count: int) -> tuple[dict, int]:
    """The per-epoch sums of the logged numbers and the image count, summed over the ranks
    (one all-reduce on the gloo group; every rank has the same keys, in the same order)."""
    import torch.distributed as dist

    keys = list(sums)
    t = torch.tensor([float(sums[k]) for k in keys] + [float(count)], dtype=torch.float64)
    dist.all_reduce(t, group=ctx.control)
    return {k: float(v) for k, v in zip(keys, t[:-1].tolist())}, int(t[-1].item())


def collective_failure(ctx: Context, where: str, err: BaseException) -> DistributedTrainingError:
    """The error a rank raises when a collective failed ``where`` (another rank died, hangs or
    failed)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
    return DistributedTrainingError(
        f"rank {ctx.rank}/{ctx.world_size} ({socket.gethostname()}) {where}: the exchange with the other ranks "
        f"failed or did not complete within {ctx.timeout:g} s: another rank died, hangs or failed (torchrun's "
        f"report and that rank's output say which; raise --dist-timeout if an epoch's monitor or snapshot takes "
        f"longer): {type(err).__name__}: {text}; {RESTART}")


@contextlib.contextmanager
def guard(ctx: Optional[Context], where: str) -> Iterator[None]:
    """Turn a failed collective inside the block into :class:`DistributedTrainingError`
    (a RuntimeError from torch.distributed: a closed connection, a timeout)."""
    if ctx is None:
        yield
        return
    try:
        yield
    except DistributedStudyError:
        raise
    except RuntimeError as err:
        if _is_collective_error(err):
            raise collective_failure(ctx, where, err) from err
        raise


def _is_collective_error(err: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err).lower()
    return any(w in text for w in ("gloo", "nccl", "connection", "timed out", "timeout", "processgroup",
                                   "broken pipe", "peer"))


def card_info(config, ctx: Context) -> dict:
    """The card's ``training["distributed"]``: how the run was split."""
    per_rank = per_rank_batch(int(config.batch_size), ctx.world_size)
    return {
        "world_size": ctx.world_size,
        "per_rank_batch_size": per_rank,
        "effective_batch_size": per_rank * ctx.world_size,
        "backend": ctx.backend,
        "device": ctx.device.type,
        "processes_per_node": int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size)),
        "threads_per_rank": torch.get_num_threads(),
        "wrapper": "torch.nn.parallel.DistributedDataParallel (gradients averaged over the ranks)",
        "sampler": f"DistributedSampler(shuffle=True, seed={config.seed}, drop_last=False), set_epoch each epoch",
        "rank_seeds": "numpy SeedSequence((seed, rank)) after the model is built",
        "batch_norm": "per-rank batch statistics, rank 0's running statistics (no SyncBatchNorm)",
        "monitor": "rank 0 only",
    }
