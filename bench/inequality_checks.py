"""Issue 5, item 5 checks: saliency inequality and inductive noise of the mnist-5k models.

On the mnist-5k test images (default all 1,000), for every model given (default: the
shipped standard and pgd-linf, plus igd when its checkpoint exists), and for both
attributions of docs/methods.md section 3 -- integrated gradients (50 steps, zero baseline;
Duan et al.) and the plain gradient (saliency; the IGD paper) of the true-class logit:

* the mean global Gini of |A| (all C*H*W entries) and the mean regional Gini over 4 x 4
  blocks, over all images and over the common-correct ones (mean +- standard error);
* the error rate under inductive noise at k = 0.2 %, 1 %, 2 % of the features (N(0, 1)
  added to the top-k features by signed attribution, clamped to [0, 1]; seed 0) and the
  random-feature baseline with the same noise, over the images that every compared model
  classifies correctly (the study's ``among``).

    python bench/inequality_checks.py
    python bench/inequality_checks.py --n 200 --models mnist-5k/standard mnist-5k/pgd-linf
    python bench/inequality_checks.py --k 0.002 0.01 0.02 0.05 0.1 --rank magnitude

Each attribution method is one run of the study :func:`gradviz.studies.inequality.run`
(stored chunk by chunk under $GRADVIZ_HOME/studies: a second run reads its numbers back; the
noise of the chunk starting at image s uses seed + s), which also measures the inductive
occlusion that this script does not print. Prints one table per attribution method. No
timing ratios: a measurement, not a benchmark. ``--write`` puts each model's numbers into its
card, ``metrics["inequality"]`` (:func:`gradviz.studies.inequality.write_card_metrics`; the
common-correct images depend on the models compared, so write with the same set for every
card), as ``python -m gradviz study inequality ... --write-cards`` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

from gradviz import data, zoo  # noqa: E402
from gradviz import inequality as iq  # noqa: E402
from gradviz.studies import inequality  # noqa: E402
from gradviz.studies.base import mean_sem  # noqa: E402
from gradviz.utils import tqdm_progress  # noqa: E402

DEFAULT_MODELS = ("mnist-5k/standard", "mnist-5k/pgd-linf", "mnist-5k/igd")


def _mean_sem(v) -> str:
    mean, sem, n = mean_sem(v)
    return f"{mean:.3f} ± {sem:.3f}" if n else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="zoo names (default: standard, pgd-linf and igd where present)")
    parser.add_argument("--n", type=int, default=1000, help="test images (default 1000, the whole split)")
    parser.add_argument("--steps", type=int, default=50, help="integrated-gradients steps (default 50)")
    parser.add_argument("--block", type=int, default=4, help="regional-Gini block side (default 4)")
    parser.add_argument("--k", type=float, nargs="+", default=[0.002, 0.01, 0.02],
                        help="k as fractions of C*H*W (default 0.002 0.01 0.02)")
    parser.add_argument("--mode", choices=iq.NOISE_MODES, default="add")
    parser.add_argument("--noise", choices=iq.NOISE_DISTRIBUTIONS, default="normal")
    parser.add_argument("--rank", choices=("signed", "magnitude"), default="signed",
                        help="rank features by signed attribution (docs/methods.md) or |attribution| (IGD paper)")
    parser.add_argument("--methods", nargs="+", default=["integrated_gradients", "gradient"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", action="store_true", help="write the numbers into each model's card")
    args = parser.parse_args()
    command = " ".join(["python bench/inequality_checks.py", *sys.argv[1:]]).replace(" --write", "")

    names = args.models or [n for n in DEFAULT_MODELS if n in {c.name for c in zoo.list_models("mnist-5k")}]
    n = min(args.n, len(data.load_dataset("mnist-5k", "test")))
    settings = dict(n_steps=args.steps, block=args.block, k=tuple(args.k), mode=args.mode, noise=args.noise,
                    by_magnitude=args.rank == "magnitude", seed=args.seed)
    results, seconds = {}, {}
    for method in args.methods:
        progress, close = tqdm_progress(f"inequality, {method}", leave=False)
        t0 = time.perf_counter()
        try:
            results[method] = inequality.run(names, dataset="mnist-5k", n=n, device=args.device, method=method,
                                             progress=progress, **settings)
        finally:
            close()
        seconds[method] = time.perf_counter() - t0
    first = results[args.methods[0]]
    counts = first.k_counts
    print(f"mnist-5k test, {n} images; {first.n_common} classified correctly by all of "
          f"{', '.join(names)}; torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads")
    print(f"inductive noise: {args.mode} {args.noise} noise on the top-k features by {args.rank} attribution, "
          f"k = " + ", ".join(f"{100 * k:g} % ({c} feature{'s' if c != 1 else ''})" for k, c in zip(args.k, counts))
          + f", seed {args.seed} (+ each chunk's first image); random baseline: the same noise on k random "
            f"features\n")

    for method, res in results.items():
        among = res.among
        head = (f"{'model':<20} {'clean':>6}  {'Gini (all)':>13}  {'Gini (common)':>13}  "
                f"{'regional b' + str(args.block):>13}  "
                + "  ".join(f"{'ind/rnd k ' + format(100 * k, 'g') + '%':>15}" for k in args.k))
        print(f"== {method}" + (f" ({args.steps} steps, zero baseline)" if method == "integrated_gradients" else "")
              + f", true-class logit; {seconds[method]:.0f} s ({res.computed} chunks computed, {res.loaded} read "
                f"from the store)")
        print(head)
        print("-" * len(head))
        for m in names:
            acc = float(np.mean(res.per_image[m]["correct"]))
            g = res.gini[m]
            errs = "  ".join(f"{100 * i:6.1f} /{100 * r:5.1f} %" for i, r in zip(res.inductive[m], res.random[m]))
            print(f"{m.rsplit('/', 1)[-1]:<20} {100 * acc:5.1f}%  {_mean_sem(g):>13}  {_mean_sem(g[among]):>13}  "
                  f"{_mean_sem(res.regional[m]):>13}  {errs}")
        print()
    if args.write:
        for res in results.values():
            for m, path in inequality.write_card_metrics(res, measured_by=command).items():
                print(f"wrote metrics['inequality'] ({res.settings['method']}) of {m} into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
