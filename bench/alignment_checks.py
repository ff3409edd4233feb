"""Issue 4, item 7 checks: gradient alignment of the mnist-5k models and the generator's
residual quality on squares (Bigolin Lanfredi et al., docs/methods.md section 1).

* mnist-5k, the first ``--n`` test images (default 1,000, the whole split), for each model
  given (default: standard, pgd-linf and lalpha where present): the closest class c~ under
  that model (Eq. 5), the GAN residual dx_hat toward it (Eqs. 15-16, the shipped generator,
  :func:`gradviz.generative.residuals_for`: stored on disk, a pair shared by several models
  projected once; default steps (300, 75), ``--steps 600+150`` for the paper's), then mean
  alpha_dx = cos(grad_x (d_c~ - d_y), dx_hat) (Eq. 8) and alpha_x = |cos(x, grad_x loss)|
  (Etmann et al.; also on the authors' [-1, 1] scale), each with its standard error and n.
  The paper's finding (its MNIST setting): alpha_dx L_alpha 0.575 > PGD 0.169 > baseline 0.078.
* squares, the first ``--squares-n`` test images (default 500, the whole split): mean
  cos(dx_hat, dx_true) of the generator's residual toward the other class with the exact
  one (issue target >= 0.6; the authors: 0.608 on 32 px squares), and for each squares
  model (default: all in the zoo) alpha_dx with dx_hat and with the exact residual.

    python bench/alignment_checks.py
    python bench/alignment_checks.py --n 20 --squares-n 20
    python bench/alignment_checks.py --steps 600+150 --write

Each dataset is one run of the study :func:`gradviz.studies.alignment.run` (stored chunk by
chunk under $GRADVIZ_HOME/studies, its residuals in the generator's residual store: a second
run reads both back). ``--write`` puts each model's numbers into its card,
``metrics["alignment"]`` (:func:`gradviz.studies.alignment.write_card_metrics`, as
``python -m gradviz study alignment ... --write-cards`` does). Prints one table per dataset.
A measurement, not a benchmark: no timing ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

from gradviz import data, generative, zoo  # noqa: E402
from gradviz.studies import alignment  # noqa: E402
from gradviz.studies.base import mean_sem  # noqa: E402
from gradviz.utils import tqdm_progress  # noqa: E402

DEFAULT_MODELS = ("mnist-5k/standard", "mnist-5k/pgd-linf", "mnist-5k/lalpha")


def _steps(text: str) -> tuple[int, int]:
    parts = text.replace(",", "+").split("+")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"steps as FREE+PENALISED, e.g. 300+75; got {text!r}")
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps as FREE+PENALISED, e.g. 300+75; got {text!r}") from None


def _fmt(values) -> str:
    mean, sem, _ = mean_sem(values)
    return f"{mean:.3f} ± {sem:.3f}"


def measure(dataset: str, names: list[str], n: int, steps, device: str) -> tuple[alignment.AlignmentResult, dict]:
    """The study's result on the first ``n`` test images and what the table adds: the
    (image, class) pairs projected, the seconds."""
    n = min(n, len(data.load_dataset(dataset, "test")))
    progress, close = tqdm_progress(f"{dataset} alignment", leave=False)
    start = time.perf_counter()
    try:
        res = alignment.run(names, dataset=dataset, n=n, steps=steps, device=device, progress=progress)
    finally:
        close()
    k = int(max(max(t.max() for t in res.targets.values()), res.labels.max())) + 1
    keys = [res.indices * k + t for t in res.targets.values()]
    if res.cos_true is not None:
        keys.append(res.indices * k + (1 - res.labels))
    return res, {"pairs": int(np.unique(np.concatenate(keys)).size), "seconds": time.perf_counter() - start}


def _print_table(dataset: str, res: alignment.AlignmentResult, common: dict) -> None:
    s = res.settings
    print(f"\n{dataset} test, {res.n_images} images; residuals ({s['steps'][0]} + {s['steps'][1]} Adam steps, "
          f"lr {s['lr']:g}, lambda_z {s['lambda_z']:g}, generator {s['generator']}): {common['pairs']} (image, class) "
          f"pairs; {common['seconds']:.1f} s ({res.computed} chunks computed, {res.loaded} read from the store; "
          f"stored pairs are not projected again)")
    names, targets = res.model_names, res.targets
    for m in names[1:]:
        same = float(np.mean(targets[m] == targets[names[0]]))
        print(f"  closest class of {m} equals that of {names[0]} on {100 * same:.1f} % of the images")
    head = f"{'model':24s} {'clean':>6s} {'alpha_dx (Eq. 8)':>18s} {'alpha_x':>16s} {'alpha_x [-1,1]':>16s}"
    if res.alpha_true:
        head += f" {'alpha_dx true dx':>18s}"
    print(head)
    acc = res.clean_accuracy
    for m in names:
        line = (f"{m:24s} {100 * acc[m]:5.1f}% {_fmt(res.alpha_dx[m]):>18s} {_fmt(res.alpha_x[m]):>16s} "
                f"{_fmt(res.alpha_x_centered[m]):>16s}")
        if m in res.alpha_true:
            line += f" {_fmt(res.alpha_true[m]):>18s}"
        print(line + f"   n {mean_sem(res.alpha_dx[m])[2]}")
    if res.cos_true is not None:
        print(f"mean cos(dx_hat, dx_true) toward the other class: {_fmt(res.cos_true)} (n {mean_sem(res.cos_true)[2]}; "
              f"issue target >= 0.6, the authors 0.608 on 32 px squares)")
    means = {m: mean_sem(res.alpha_dx[m])[0] for m in names}
    print("ordered by mean alpha_dx: " + " > ".join(f"{m.rsplit('/', 1)[-1]} {means[m]:.3f}"
                                                    for m in sorted(names, key=lambda m: -means[m])))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="mnist-5k zoo names (default: standard, pgd-linf and lalpha where present)")
    parser.add_argument("--n", type=int, default=1000, help="mnist-5k test images (default 1000, the whole split)")
    parser.add_argument("--squares-models", nargs="*", default=None,
                        help="squares zoo names (default: all; give none to skip squares)")
    parser.add_argument("--squares-n", type=int, default=500, help="squares test images (default 500, all)")
    parser.add_argument("--steps", type=_steps, default=generative.FAST_STEPS,
                        help="projection steps FREE+PENALISED (default 300+75; the paper's: 600+150)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", action="store_true", help="write the numbers into each model's card")
    args = parser.parse_args(argv)
    command = "python bench/alignment_checks.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                     " " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads; "
          f"residual store: {generative.residual_cache_dir()}")
    mnist = args.models or [m for m in DEFAULT_MODELS if m in {c.name for c in zoo.list_models("mnist-5k")}]
    squares = (args.squares_models if args.squares_models is not None
               else [c.name for c in zoo.list_models("squares")])
    for dataset, names, n in (("mnist-5k", mnist, args.n), ("squares", squares, args.squares_n)):
        if not names:
            continue
        try:
            res, common = measure(dataset, names, n, args.steps, args.device)
        except generative.NoGeneratorError as err:
            print(f"\n{dataset}: skipped, {err}")
            continue
        _print_table(dataset, res, common)
        if args.write:
            for m, path in alignment.write_card_metrics(res, measured_by=command).items():
                print(f"wrote metrics['alignment'] of {m} into {path}")
    print("\nThe paper (MNIST, its setting): mean alpha_dx L_alpha 0.575 > PGD 0.169 > baseline 0.078; "
          "alpha_x 0.319 / 0.040 / 0.045 (on [-1, 1] images).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
