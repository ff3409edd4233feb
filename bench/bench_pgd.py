"""Benchmark: gradviz PGD against torchattacks PGD and against its own lower bound.

In one run, on the same model (the shipped ``mnist-5k/standard``), the same batch (the first
``--batch`` mnist-5k test images) and the same settings (l_inf, eps 0.3, step 0.01,
``--steps`` 40, random start off for both), it times

* gradviz ``attacks.pgd`` (G),
* torchattacks ``PGD`` (T), a test-only reference,
* ``steps`` forward + backward passes that compute the input gradient of the summed
  cross-entropy on the batch (F): the work any PGD must do,

each ``--repeats`` times after a warm-up, interleaved (so that load from other processes
hits all three alike), and prints the medians and two ratios:

* T / G: target >= 1.0 (gradviz is not slower than torchattacks);
* G / F: target <= 1.15 (PGD costs at most 15 % more than its forward/backward passes).

It also checks that both attacks return the same images. Run: ``python bench/bench_pgd.py``
(``--help`` for options). Exit status 0 when both targets hold, 1 otherwise.
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
from gradviz import attacks, data, zoo  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mnist-5k/standard")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--step-size", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)

    import torchattacks

    if args.threads:
        torch.set_num_threads(args.threads)
    device = {"auto": torch.device("cuda" if torch.cuda.is_available() else "cpu")}.get(
        args.device, torch.device(args.device))
    model = zoo.load_model(args.model, device=str(device))
    ds = data.load_dataset("mnist-5k", "test")
    x, y = ds.x[: args.batch].to(device), ds.y[: args.batch].to(device)
    steps, eps, alpha = args.steps, args.eps, args.step_size

    def run_gradviz():
        return attacks.pgd(model, x, y, eps=eps, norm="linf", steps=steps, step_size=alpha,
                           random_start=False)

    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)

    def run_torchattacks():
        return ref(x, y)

    def run_fwd_bwd():
        for _ in range(steps):
            xa = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xa), y, reduction="sum")
            torch.autograd.grad(loss, xa)

    # warm-up (allocator, oneDNN/cuDNN kernel choice) and a correctness check
    a, b = run_gradviz(), run_torchattacks()
    run_fwd_bwd()
    same = torch.equal(a, b)
    max_diff = (a - b).abs().max().item()

    times = {"gradviz": [], "torchattacks": [], "fwd_bwd": []}
    runs = {"gradviz": run_gradviz, "torchattacks": run_torchattacks, "fwd_bwd": run_fwd_bwd}
    order = list(runs)
    for r in range(args.repeats):
        for name in order[r % 3:] + order[: r % 3]:  # rotate the order every repeat
            times[name].append(_time(runs[name], device))
    med = {k: statistics.median(v) for k, v in times.items()}
    r_ta = med["torchattacks"] / med["gradviz"]
    r_fb = med["gradviz"] / med["fwd_bwd"]

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; model "
          f"{args.model}; batch {len(x)}; l_inf eps {eps} step {alpha} x {steps} steps, no random start; "
          f"{args.repeats} repeats (median)")
    print(f"same x_adv as torchattacks: {same} (max |diff| {max_diff:.2g})")
    for k in order:
        print(f"  {k:13s} median {med[k] * 1e3:8.1f} ms   (all: {', '.join(f'{t * 1e3:.0f}' for t in times[k])})")
    ok_ta, ok_fb = r_ta >= 1.0, r_fb <= 1.15
    print(f"ratio torchattacks / gradviz          = {r_ta:.3f}  (target >= 1.0: {'OK' if ok_ta else 'MISSED'})")
    print(f"ratio gradviz / (steps x fwd+bwd)     = {r_fb:.3f}  (target <= 1.15: {'OK' if ok_fb else 'MISSED'})")
    result("pgd: torchattacks / gradviz", r_ta, op=">=", target=1.0, what=f"batch {len(x)}, {steps} steps")
    result("pgd: gradviz / bare fwd+bwd", r_fb, op="<=", target=1.15, what=f"batch {len(x)}, {steps} steps")
    return 0 if (ok_ta and ok_fb) else 1


if __name__ == "__main__":
    sys.exit(main())
