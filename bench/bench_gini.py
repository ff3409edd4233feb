"""Bench: dataset-wide global Gini (Duan et al.'s measure, docs/methods.md section 3) of
integrated-gradients maps (50 steps, zero baseline, true class) for the mnist-5k test
images on the shipped ``mnist-5k/standard`` model.

Batched :func:`gradviz.inequality.dataset_gini` against a reference per-image loop (one
captum call and one Gini per image), both measured in this run on the same images,
interleaved chunk by chunk so that a change of load on a shared machine affects both
alike; prints the times and the ratio per-image / batched. Once the loop has run for
``--max-loop-seconds`` it is skipped for the remaining chunks: its time is then
extrapolated linearly to all images and the ratio taken on the images both paths timed
(the output says so).

Its floor (issue 14): the bare forward and input-gradient backward passes that integrated
gradients cannot avoid, ``steps`` scaled copies of each chunk's images in batches of
``--internal-batch-size``, timed on the same chunks; the ratio batched / floor has the
target <= 1.3x.

    python bench/bench_gini.py                 # 1,000 images
    python bench/bench_gini.py --n 200 --max-loop-seconds 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

from bench._report import result  # noqa: E402
from gradviz import data, zoo  # noqa: E402
from gradviz.attribution import attribute  # noqa: E402
from gradviz.inequality import dataset_gini, gini  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mnist-5k/standard")
    parser.add_argument("--n", type=int, default=1000, help="test images (default 1000, the whole split)")
    parser.add_argument("--steps", type=int, default=50, help="integrated-gradients steps")
    parser.add_argument("--batch-size", type=int, default=100, help="images per batched attribution call")
    parser.add_argument("--internal-batch-size", type=int, default=1000,
                        help="scaled images per forward pass inside captum (batched path)")
    parser.add_argument("--max-loop-seconds", type=float, default=120.0,
                        help="stop the per-image loop after this long and extrapolate")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    ds = data.load_dataset("mnist-5k", "test")
    x, y = ds.x[: args.n].to(args.device), ds.y[: args.n].to(args.device)
    model = zoo.load_model(args.model, device=args.device)
    n = len(x)
    print(f"{args.model}: global Gini of integrated gradients ({args.steps} steps, zero baseline, "
          f"true class) for {n} mnist-5k test images; torch {torch.__version__}, device {args.device}, "
          f"{torch.get_num_threads()} threads")

    # warm-up of both paths (allocator, captum imports)
    dataset_gini(model, x[:4], y[:4], n_steps=args.steps)
    gini(attribute(model, x[:1], y[:1], "integrated_gradients", n_steps=args.steps))

    # Interleaved by chunks of --batch-size images, so that a change of load on a shared
    # machine hits both paths alike: batched call on the chunk, then the loop on the same images.
    def bare_passes(xc, yc):
        alphas = (torch.arange(args.steps, dtype=xc.dtype, device=xc.device) + 0.5) / args.steps
        scaled = (alphas.view(-1, 1, 1, 1, 1) * xc.unsqueeze(0)).reshape(-1, *xc.shape[1:])
        targets = yc.repeat(args.steps)
        t0 = time.perf_counter()
        for s in range(0, len(scaled), args.internal_batch_size):
            xs = scaled[s : s + args.internal_batch_size].requires_grad_(True)
            torch.autograd.grad(model(xs).gather(1, targets[s : s + len(xs), None]).sum(), xs)
        return time.perf_counter() - t0

    batched, loop = [], []
    t_batched = t_loop = t_batched_same = t_floor = 0.0
    for start in range(0, n, args.batch_size):
        xc, yc = x[start : start + args.batch_size], y[start : start + args.batch_size]
        t0 = time.perf_counter()
        g = dataset_gini(model, xc, yc, n_steps=args.steps, batch_size=args.batch_size,
                         internal_batch_size=args.internal_batch_size)["global"]
        dt = time.perf_counter() - t0
        batched.append(g)
        t_batched += dt
        t_floor += bare_passes(xc, yc)
        if t_loop < args.max_loop_seconds:
            t0 = time.perf_counter()
            for i in range(len(xc)):
                a = attribute(model, xc[i : i + 1], yc[i : i + 1], "integrated_gradients", n_steps=args.steps)
                loop.append(gini(a))
            t_loop += time.perf_counter() - t0
            t_batched_same += dt
    batched = torch.cat(batched)
    done = len(loop)
    print(f"batched   : {t_batched:8.2f} s for {n} images ({1000 * t_batched / n:.2f} ms/image; "
          f"{args.batch_size} images per call)")
    t_loop_all = t_loop * n / done
    note = "" if done == n else (f" -- measured on the first {done} images ({t_loop:.2f} s, against "
                                 f"{t_batched_same:.2f} s batched on the same images), extrapolated")
    print(f"per image : {t_loop_all:8.2f} s for {n} images ({1000 * t_loop / done:.2f} ms/image){note}")
    diff = (torch.cat(loop) - batched[:done]).abs().max().item()
    print(f"agreement : max |Gini batched - Gini per image| = {diff:.2e} over {done} images")
    print(f"mean global Gini {batched.mean().item():.4f} (std {batched.std().item():.4f})")
    print(f"ratio per-image / batched: {t_loop / t_batched_same:.2f}x (on the {done} images both timed)")
    floor_ratio = t_batched / t_floor
    print(f"floor     : {t_floor:8.2f} s of bare fwd+bwd passes ({args.steps} scaled copies per image); ratio "
          f"batched / floor = {floor_ratio:.2f}x (target <= 1.3x: {'met' if floor_ratio <= 1.3 else 'NOT met'})")
    result("gini: batched IG + Gini / bare fwd+bwd", floor_ratio, op="<=", target=1.3,
           what=f"{n} images, {args.steps} IG steps")
    result("gini: per image / batched", t_loop / t_batched_same, what="speed-up over one call per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
