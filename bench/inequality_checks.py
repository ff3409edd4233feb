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
  classifies correctly (:func:`gradviz.inequality.common_correct_mask`).

    python bench/inequality_checks.py
    python bench/inequality_checks.py --n 200 --models mnist-5k/standard mnist-5k/pgd-linf
    python bench/inequality_checks.py --k 0.002 0.01 0.02 0.05 0.1 --rank magnitude

Prints one table per attribution method. No timing ratios: a measurement, not a benchmark.
``--write`` puts each model's numbers into its card, ``metrics["inequality"]`` (through
:func:`gradviz.zoo.write_card`; the common-correct images depend on the models compared, so
write with the same set for every card).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

from gradviz import data, zoo  # noqa: E402
from gradviz import inequality as iq  # noqa: E402
from gradviz.attribution import attribute  # noqa: E402

DEFAULT_MODELS = ("mnist-5k/standard", "mnist-5k/pgd-linf", "mnist-5k/igd")


def _mean_sem(v: torch.Tensor) -> str:
    v = v.double()
    if v.numel() == 0:
        return "n/a"
    sem = v.std().item() / math.sqrt(v.numel()) if v.numel() > 1 else float("nan")
    return f"{v.mean().item():.3f} ± {sem:.3f}"


def _card_entry(command: str, n: int, among: torch.Tensor, args, per_method: dict) -> dict:
    noise = ("N(0, 1)" if args.noise == "normal" else "U[min x, max x]") + (
        " added to" if args.mode == "add" else " replacing") + f" the top-k features by {args.rank} attribution " \
        f"(random: k random features), clamped, seed {args.seed}"
    entry = {"measured_by": command, "split": "test", "n_images": n, "n_common_correct": int(among.sum()),
             "noise": noise, "k_fractions": list(args.k)}
    for method, r in per_method.items():
        entry[method] = {"mean_global_gini": round(r["gini"].double().mean().item(), 3),
                         f"mean_regional_gini_block{args.block}": round(r["regional"].double().mean().item(), 3),
                         "inductive_noise_error_rate": [round(v, 4) for v in r["inductive"].tolist()],
                         "random_noise_error_rate": [round(v, 4) for v in r["random"].tolist()]}
        if method == "integrated_gradients":
            entry[method]["n_steps"] = args.steps
    return entry


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
    ds = data.load_dataset("mnist-5k", "test")
    x, y = ds.x[: args.n].to(args.device), ds.y[: args.n].to(args.device)
    models = {n: zoo.load_model(n, device=args.device) for n in names}
    n_feat = math.prod(x.shape[1:])
    counts = [iq.resolve_k(k, n_feat) for k in args.k]
    among = iq.common_correct_mask(models, x, y)
    print(f"mnist-5k test, {len(x)} images; {int(among.sum())} classified correctly by all of "
          f"{', '.join(names)}; torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads")
    print(f"inductive noise: {args.mode} {args.noise} noise on the top-k features by {args.rank} attribution, "
          f"k = " + ", ".join(f"{100 * k:g} % ({c} feature{'s' if c != 1 else ''})" for k, c in zip(args.k, counts))
          + f", seed {args.seed}; random baseline: the same noise on k random features\n")
    with torch.no_grad():
        acc = {n: (m(x).argmax(1) == y).double().mean().item() for n, m in models.items()}

    results: dict[str, dict] = {n: {} for n in names}
    for method in args.methods:
        opts = {"n_steps": args.steps} if method == "integrated_gradients" else {}
        head = (f"{'model':<20} {'clean':>6}  {'Gini (all)':>13}  {'Gini (common)':>13}  "
                f"{'regional b' + str(args.block):>13}  "
                + "  ".join(f"{'ind/rnd k ' + format(100 * k, 'g') + '%':>15}" for k in args.k))
        print(f"== {method}" + (f" ({args.steps} steps, zero baseline)" if opts else "") + ", true-class logit")
        print(head)
        print("-" * len(head))
        for n, m in models.items():
            t0 = time.perf_counter()
            a = torch.cat([attribute(m, x[i : i + 50], y[i : i + 50], method, batch_size=50, **opts)
                           for i in range(0, len(x), 50)])
            g, rg = iq.gini(a), iq.regional_gini(a, args.block)
            ranked = a.abs() if args.rank == "magnitude" else a
            ind = iq.noise_error_rate(m, x, y, ranked, counts, mode=args.mode, noise=args.noise,
                                      seed=args.seed, among=among)
            rnd = iq.noise_error_rate(m, x, y, ranked, counts, mode=args.mode, noise=args.noise,
                                      seed=args.seed, among=among, random=True)
            results[n][method] = {"gini": g, "regional": rg, "inductive": ind, "random": rnd}
            errs = "  ".join(f"{100 * i:6.1f} /{100 * r:5.1f} %" for i, r in zip(ind.tolist(), rnd.tolist()))
            print(f"{n.rsplit('/', 1)[-1]:<20} {100 * acc[n]:5.1f}%  {_mean_sem(g):>13}  {_mean_sem(g[among]):>13}  "
                  f"{_mean_sem(rg):>13}  {errs}   ({time.perf_counter() - t0:.0f} s)")
        print()
    if args.write:
        for n in names:
            card = zoo.get_card(n)
            card.metrics = {**card.metrics, "inequality": _card_entry(command, len(x), among, args, results[n])}
            print(f"wrote metrics['inequality'] into {zoo.write_card(card)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
