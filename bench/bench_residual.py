"""Benchmark of GAN residuals (issue 4, item 8).

Measures, in one run, the time to compute the residuals dx = G(z*, c) - x (Eqs. 15-16 of
Bigolin Lanfredi et al.; 600 + 150 Adam steps at lr 0.2) of the mnist-5k test images toward
their closest class (Eq. 5, under ``mnist-5k/standard``; target (y + 1) mod 10 when that
model is missing):

1. batched: ``gradviz.generative.residual`` on all N images at once (one z per image,
   optimised together);
2. reference: the plain per-image procedure (one image, one z, one Adam, 750 steps), timed
   on ``--n-ref`` images and extrapolated linearly to N (the output says so);

and prints the ratio reference / batched (issue 14: target >= 10x), the largest difference
between the two methods' residuals on the reference images (they optimise the same
per-image objective), and the batched time against its floor: 750 bare forward passes of
the generator on the batch with the gradient w.r.t. z (``--floor-steps`` of them timed,
scaled to 750).

With ``--fast STEPS ...`` (e.g. ``--fast 300+75 150+40``) it also times shorter projections
and reports their quality against the paper's procedure: mean cos(dx_fast, dx_paper) and
the ratio of the final reconstruction errors.

Needs a generator: the shipped one (``assets/generators/mnist-5k.pt``) when present, else an
untrained generator of the same architecture, which times the same but says nothing about
quality (the output says which).

Run: ``python bench/bench_residual.py [--n 1000] [--n-ref 10] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import result  # noqa: E402
from gradviz import data, generative, zoo  # noqa: E402
from gradviz.alignment import closest_class, cosine  # noqa: E402
from gradviz.utils import resolve_device  # noqa: E402


def per_image_reference(G, x: torch.Tensor, c: torch.Tensor, steps=(600, 150), lr=0.2, lambda_z=1.5) -> torch.Tensor:
    """The plain procedure, one image at a time (as the authors' code, batch of one):
    z = 0, Adam on MSE, then a fresh Adam on MSE + lambda_z mean(z^2); returns dx (N, C, H, W)."""
    out = []
    for i in range(len(x)):
        xi, ci = x[i : i + 1], c[i : i + 1]
        z = torch.zeros(1, G.z_dim, device=x.device, requires_grad=True)
        for stage, n in enumerate(steps):
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(n):
                opt.zero_grad()
                loss = 4 * (G(z, ci) - xi).pow(2).mean()  # [-1, 1] scale, as gradviz
                if stage:
                    loss = loss + lambda_z * z.pow(2).mean()
                loss.backward()
                opt.step()
        with torch.no_grad():
            out.append(G(z, ci) - xi)
    return torch.cat(out)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="test images (default all 1,000)")
    parser.add_argument("--n-ref", type=int, default=10, help="images for the per-image reference")
    parser.add_argument("--batch-size", type=int, default=1000, help="pairs per batched chunk")
    parser.add_argument("--fast", nargs="*", default=[], help="shorter step schedules to try, e.g. 300+75")
    parser.add_argument("--generator", default="mnist-5k", help="dataset name or generator checkpoint path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--floor-steps", type=int, default=100, help="bare generator steps timed for the floor")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    test = data.load_dataset("mnist-5k", "test").subset(slice(0, args.n))
    x, y = test.x.to(device), test.y.to(device)
    try:
        G = generative.load_generator(args.generator, device)
        gen_note = f"generator {G.gradviz_info['path']}"
    except generative.NoGeneratorError:
        torch.manual_seed(0)
        G = generative.Generator().eval().requires_grad_(False).to(device)
        G.gradviz_info = {"dataset": "mnist-5k"}
        gen_note = "UNTRAINED generator of the default architecture (no shipped one yet): timing only"
    try:
        target = closest_class(zoo.load_model("mnist-5k/standard", device), x, y)
        target_note = "closest class (Eq. 5) under mnist-5k/standard"
    except KeyError:
        target = (y + 1) % 10
        target_note = "(y + 1) mod 10 (mnist-5k/standard missing)"
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; {gen_note}")
    print(f"{len(x)} mnist-5k test images, target: {target_note}; steps 600 + 150, lr 0.2, lambda_z 1.5")

    sync(device)
    t0 = time.perf_counter()
    proj = generative.project(G, x, target, batch_size=args.batch_size)
    sync(device)
    batched_s = time.perf_counter() - t0
    dx = proj.x_hat - x

    n_ref = min(args.n_ref, len(x))
    sync(device)
    t0 = time.perf_counter()
    dx_ref = per_image_reference(G, x[:n_ref], target[:n_ref])
    sync(device)
    ref_s = time.perf_counter() - t0
    ref_total = ref_s / n_ref * len(x)
    diff = (dx[:n_ref] - dx_ref).abs().max().item()
    agree = cosine(dx[:n_ref], dx_ref)
    print(f"batched residual:  {batched_s:8.1f} s for {len(x)} images ({batched_s / len(x) * 1e3:.1f} ms per image)")
    print(f"per-image 750-step reference: {ref_s:.1f} s for {n_ref} images, extrapolated x{len(x) / n_ref:g} "
          f"to {ref_total:8.1f} s for {len(x)} images")
    print(f"ratio reference / batched = {ref_total / batched_s:.1f}x (target >= 10x: "
          f"{'met' if ref_total / batched_s >= 10 else 'NOT met'})")
    result("residual: per-image 750 steps / batched", ref_total / batched_s, op=">=", target=10.0,
           what=f"{len(x)} images, paper's 600+150 steps")

    # the floor: the generator's forward + gradient w.r.t. z on each batch, per step
    z = torch.zeros(min(args.batch_size, len(x)), G.z_dim, device=device, requires_grad=True)
    xb, cb = x[: len(z)], target[: len(z)]
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.floor_steps):
        torch.autograd.grad(4 * (G(z, cb) - xb).pow(2).mean(), z)
    sync(device)
    floor_s = (time.perf_counter() - t0) * (750 / args.floor_steps) * (len(x) / len(z))
    print(f"floor: 750 bare generator fwd+bwd steps on the batch {floor_s:.1f} s ({args.floor_steps} timed); "
          f"ratio batched / floor = {batched_s / floor_s:.2f}x")
    result("residual: batched / bare generator fwd+bwd", batched_s / floor_s, what="750 steps vs their passes")
    print(f"agreement on the {n_ref} reference images: max |dx_batched - dx_reference| = {diff:.2e}, mean cos "
          f"{agree.mean().item():.4f} (min {agree.min().item():.4f}; float summation order differs, and 750 "
          f"Adam steps on a non-convex objective amplify it)")

    for spec in args.fast:
        s1, s2 = (int(v) for v in spec.split("+"))
        sync(device)
        t0 = time.perf_counter()
        fast = generative.project(G, x, target, steps=(s1, s2), batch_size=args.batch_size)
        sync(device)
        fast_s = time.perf_counter() - t0
        cos = cosine(fast.x_hat - x, dx)
        print(f"steps {s1}+{s2}: {fast_s:.1f} s ({batched_s / fast_s:.1f}x faster than 600+150); mean cos with the "
              f"paper's dx {cos.mean().item():.4f} (min {cos.min().item():.4f}); reconstruction MSE ratio "
              f"{(fast.mse.mean() / proj.mse.mean()).item():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
