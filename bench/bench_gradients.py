"""Benchmark of the Gradients page's work (issue 2, item 7).

Measures, in one run, on the shipped mnist-5k models:

1. the Gradients page's computation (``gradviz.gradients.compute_gradient_grid``) for
   8 images x 2 models, default settings (vanilla gradient, true label, sum over
   channels, per-panel scaling); target: under 0.3 s on a 2-core CPU. The reference it is
   compared with is the bare minimum the grid needs, measured in the same run: one forward
   and one input-gradient backward pass per model on the same 8 images.
2. batched attribution over the 1,000 test images (``gradviz.attribution.attribute``, one
   call) against its floor, the bare forward and input-gradient backward pass of the same
   batch (issue 14: target <= 1.3x), and against a captum ``Saliency`` call per image
   (timed on ``--per-image-n`` images, extrapolated; on this small network per-image captum
   is cheap, so that ratio is printed but not a target any more).

Run: ``python bench/bench_gradients.py [--device cpu|cuda] [--repeats 7] [--per-image-n 1000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import result  # noqa: E402
from gradviz import attribution, data, zoo  # noqa: E402
from gradviz.gradients import compute_gradient_grid  # noqa: E402
from gradviz.utils import resolve_device  # noqa: E402

MODELS = ("mnist-5k/standard", "mnist-5k/pgd-linf")


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--per-image-n", type=int, default=1000, help="images of the per-image captum loop")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    test = data.load_dataset("mnist-5k", "test")
    models = {name: zoo.load_model(name, device) for name in MODELS}
    x8, y8 = test.x[:8].to(device), test.y[:8].to(device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    # 1. the page's grid against the bare forward + backward passes it cannot avoid
    grid_s = timed(lambda: compute_gradient_grid(models, x8, y8), args.repeats, device)

    def bare_passes():
        for model in models.values():
            xg = x8.clone().requires_grad_(True)
            logits = model(xg)
            torch.autograd.grad(logits.gather(1, y8[:, None]).sum(), xg)

    bare_s = timed(bare_passes, args.repeats, device)
    print(f"grid, 8 images x 2 models: {grid_s * 1e3:.1f} ms (target < 300 ms: "
          f"{'met' if grid_s < 0.3 else 'NOT met'}); bare fwd+bwd {bare_s * 1e3:.1f} ms; "
          f"overhead ratio grid / bare = {grid_s / bare_s:.2f}")
    result("gradients: grid 8x2 / bare fwd+bwd", grid_s / bare_s, what="page grid vs its passes")

    # 2. batched attribution over the test split against one captum call per image
    from captum.attr import Saliency

    model = models["mnist-5k/pgd-linf"]
    x, y = test.x.to(device), test.y.to(device)
    reps = max(3, args.repeats // 2)

    def bare_batch():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xg).gather(1, y[:, None]).sum(), xg)

    # interleaved, so that a change of load on a shared machine hits both alike
    batched_times, floor_times = [], []
    for _ in range(reps):
        batched_times.append(timed(lambda: attribution.attribute(model, x, y, "gradient"), 1, device))
        floor_times.append(timed(bare_batch, 1, device))
    batched_s, floor_s = statistics.median(batched_times), statistics.median(floor_times)
    floor_ratio = batched_s / floor_s
    print(f"attribution over {len(x)} test images: batched {batched_s * 1e3:.1f} ms, bare fwd+bwd of the same batch "
          f"{floor_s * 1e3:.1f} ms; ratio batched / bare = {floor_ratio:.2f}x (target <= 1.3x: "
          f"{'met' if floor_ratio <= 1.3 else 'NOT met'})")
    result("gradients: batched attribution / bare fwd+bwd", floor_ratio, op="<=", target=1.3,
           what=f"{len(x)} images, one call vs its floor")

    saliency = Saliency(model)
    n_ref = max(1, min(args.per_image_n, len(x)))

    def per_image():
        return torch.cat([saliency.attribute(x[i : i + 1].clone().requires_grad_(True), target=int(y[i]), abs=False)
                          for i in range(n_ref)])

    per_image_s = timed(per_image, 1, device) * len(x) / n_ref
    same = torch.allclose(attribution.attribute(model, x[:n_ref], y[:n_ref], "gradient"), per_image(), atol=1e-5)
    ratio = per_image_s / batched_s
    extrapolated = f" (timed on {n_ref}, extrapolated)" if n_ref < len(x) else ""
    print(f"attribution over {len(x)} test images: batched {batched_s * 1e3:.1f} ms, captum per image "
          f"{per_image_s * 1e3:.1f} ms{extrapolated}; speed-up ratio = {ratio:.1f}x; same maps: {same}")
    result("gradients: captum per image / batched", ratio, what="speed-up over one call per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
