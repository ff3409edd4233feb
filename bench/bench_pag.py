"""Benchmark: three ways to get PAG's K input gradients with double backpropagation.

One PAG training step (docs/methods.md section 2) needs grad_x log softmax(f(x))_c for every
class c, kept on the graph, then a backward pass of a loss on them. On the same fresh
small-cnn, the same batch (``--batch`` random 28 x 28 images) and the same loss, it times

* R, replication (gradviz's :func:`gradviz.training.class_log_prob_gradients`): every image
  repeated K times, one forward pass on the N * K copies, one ``autograd.grad`` of
  sum_{i,c} log softmax(f(x_i^c))_c;
* L, a loop: one forward pass, then K ``autograd.grad`` calls (one per class);
* B, ``autograd.grad(..., is_grads_batched=True)`` with the K one-hot output gradients;
* P, one PGD-10 training step of the same batch (pgd-linf's settings), for scale;

each ``--repeats`` times after a warm-up, interleaved (load from other processes hits all
alike), checks that the three give the same gradients, and prints the medians and the
ratios L / R and B / R (gradviz's choice is right when both are >= 1). Run:
``python bench/bench_pag.py``. Exit status 0 when R is the fastest, 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import result  # noqa: E402
from gradviz.nets import build_model  # noqa: E402
from gradviz.training import PGDObjective, class_log_prob_gradients  # noqa: E402


def loop(model, x):
    xr = x.detach().requires_grad_(True)
    logits = model(xr)
    log_p = F.log_softmax(logits, 1)
    grads = [torch.autograd.grad(log_p[:, c].sum(), xr, create_graph=True)[0] for c in range(log_p.shape[1])]
    return logits, torch.stack(grads, 1)


def batched(model, x):
    xr = x.detach().requires_grad_(True)
    logits = model(xr)
    log_p = F.log_softmax(logits, 1)
    k = log_p.shape[1]
    eye = torch.eye(k).unsqueeze(1).expand(k, x.shape[0], k)
    (g,) = torch.autograd.grad(log_p, xr, grad_outputs=eye, create_graph=True, is_grads_batched=True)
    return logits, g.transpose(0, 1)


def replicated(model, x):
    return class_log_prob_gradients(model, x, create_graph=True)


def step(fn, model, x, y, target):
    logits, g = fn(model, x)
    cos = F.cosine_similarity(g.flatten(2), target.flatten(2), dim=2)
    loss = F.cross_entropy(logits, y) + (1 - cos).mean()
    model.zero_grad()
    loss.backward()
    return g.detach(), [p.grad.clone() for p in model.parameters()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("small-cnn", channels=1, num_classes=10, size=28)
    x, y = torch.rand(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    target = torch.randn(args.batch, 10, 1, 28, 28)
    ref_g, ref_p = step(replicated, model, x, y, target)
    for fn in (loop, batched):
        g, p = step(fn, model, x, y, target)
        assert torch.allclose(g, ref_g, atol=1e-5), f"{fn.__name__}: input gradients differ"
        assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(p, ref_p)), f"{fn.__name__}: weights' grads differ"
    pgd = PGDObjective(eps=0.3, steps=10)

    def pgd_step():
        loss, _ = pgd(model, x, y)
        model.zero_grad()
        loss.backward()

    runs = {"R": lambda: step(replicated, model, x, y, target), "L": lambda: step(loop, model, x, y, target),
            "B": lambda: step(batched, model, x, y, target), "P": pgd_step}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, label in (("R", "replication (gradviz)"), ("L", "K autograd.grad calls"),
                     ("B", "is_grads_batched"), ("P", "PGD-10 training step")):
        print(f"{label:24s} {med[k]:.3f} s")
    print(f"L / R = {med['L'] / med['R']:.2f}, B / R = {med['B'] / med['R']:.2f}, P / R = {med['P'] / med['R']:.2f}")
    result("pag: K grad calls / replication", med["L"] / med["R"], op=">=", target=1.0, what="PAG's K gradients")
    result("pag: is_grads_batched / replication", med["B"] / med["R"], op=">=", target=1.0, what="PAG's K gradients")
    return 0 if med["R"] <= min(med["L"], med["B"]) else 1


if __name__ == "__main__":
    sys.exit(main())
