"""The parameter gradient of every objective under DistributedDataParallel against one
process's gradient of the whole batch, for tests/test_training_distributed.py.

Run as torchrun's script (``python -m torch.distributed.run --nproc_per_node K
tests/torchrun_ddp_gradients.py``): every rank computes the one-process reference on the
whole batch of B = 8K training images, then its K-th of the batch through a DDP-wrapped copy
of the same model and ``loss.backward()``; rank 0 prints one JSON line: objective -> the
largest |difference| of a parameter gradient entry over the largest |entry| of the
reference. The attacks' random starts are replaced by a fixed function of the pixels, so
that an image gets the same start in the whole batch and in a rank's part (the random
numbers are not what is tested; TRADES' start is moved 0.1 away from x, where the KL's
gradient is not nearly 0, so that the sign steps do not depend on the last bits). AGR is absent: it is refused under DDP.
"""

from __future__ import annotations

import copy
import json
import sys

import torch


def _deterministic_starts() -> None:
    from gradviz import attacks

    def start(x, eps, norm, generator):
        return eps * torch.sin(x * 1234.5 + 0.1)

    attacks._random_start = start
    randn_like = torch.randn_like
    attacks.torch = type(sys)("torch_for_attacks")  # trades_attack's torch.randn_like, pixel-wise
    attacks.torch.__dict__.update(torch.__dict__)
    # TRADES' start x + 0.001 * randn: 0.001 * 100 * cos(...), away from x, where the KL's gradient is not ~0
    # (at x its sign would flip with the last bits of a batch-size-dependent kernel)
    attacks.torch.randn_like = (lambda t, **kw: 100 * torch.cos(t * 2345.6 + 0.2) if t.dim() == 4
                                else randn_like(t, **kw))


def main() -> int:
    from torch.nn.parallel import DistributedDataParallel

    from gradviz import zoo
    from gradviz.data import load_dataset
    from gradviz.nets import build_model
    from gradviz.studies import distributed
    from gradviz.training.objectives import (
        IGDObjective, LAlphaObjective, LAlphaResiduals, PAGObjective, PAGTargets, PGDObjective, StandardObjective,
        TRADESObjective,
    )

    torch.use_deterministic_algorithms(True)
    _deterministic_starts()
    ctx = distributed.init("cpu")
    k, rank = ctx.world_size, ctx.rank
    train = load_dataset("mnist-5k", "train").subset(slice(0, 200))
    n = 8 * k
    x, y, index = train.x[:n], train.y[:n], torch.arange(n)
    gen = torch.Generator().manual_seed(1)
    residuals = LAlphaResiduals(torch.randn(len(train), *train.x.shape[1:], generator=gen),
                                torch.randint(0, 10, (len(train),), generator=gen))
    objectives = {
        "standard": StandardObjective(),
        "pgd": PGDObjective(eps=0.3, steps=3),
        "igd": IGDObjective(eps=0.3, steps=3, teacher=zoo.load_model("mnist-5k/standard"), igd_lambda=1.0),
        "trades": TRADESObjective(eps=0.3, steps=3, beta=6.0),
        "pag-cm": PAGObjective(PAGTargets(train.x, train.y, "cm", num_classes=10), 1.5),
        "pag-nn": PAGObjective(PAGTargets(train.x, train.y, "nn", num_classes=10), 1.5),
        "lalpha": LAlphaObjective(residuals, 0.3),
    }
    torch.manual_seed(0)
    model = build_model("small-cnn", channels=1, num_classes=10, size=28)
    part = slice(rank * 8, (rank + 1) * 8)
    out = {}
    for name, objective in objectives.items():
        ref = copy.deepcopy(model).train()
        loss, _ = objective(ref, x, y, epoch=0, index=index)
        loss.backward()
        net = DistributedDataParallel(copy.deepcopy(model).train())
        loss, _ = objective(net, x[part], y[part], epoch=0, index=index[part])
        loss.backward()
        diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(ref.parameters(), net.module.parameters()))
        scale = max(float(a.grad.abs().max()) for a in ref.parameters())
        out[name] = diff / scale
        del net
    if rank == 0:
        print("GRADIENTS " + json.dumps(out), flush=True)
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
