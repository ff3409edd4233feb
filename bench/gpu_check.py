"""The GPU check in one command (issue 14 point 5): gradviz's CUDA paths against the CPU.

On a machine where torch sees a CUDA device it runs, on ``cuda`` and on the CPU, with the
shipped mnist-5k models:

1. attribution: every method of ``gradviz.attribution.attribute`` on 64 test images;
   equal within float32 tolerance (SmoothGrad draws its noise from the device's own RNG,
   so there: the same seed gives the same maps on CUDA twice, and the CUDA maps correlate
   with the CPU ones, mean cosine >= 0.8);
2. PGD: ``gradviz.attacks.pgd`` (l_inf eps 0.3, 20 steps, no random start) on 256 images;
   the same robust accuracy within 2 points and at most 1 % of the pixels different
   (a sign step at a gradient of exactly 0 may go either way);
3. residual projection: ``gradviz.generative.project`` (150 + 40 Adam steps) of 32 images
   toward (y + 1) mod 10; mean cos(dx_cuda, dx_cpu) >= 0.98 and reconstruction errors within
   10 % (float summation order differs and Adam amplifies it);
4. training: one epoch of ``standard`` on the 4,000 training images, seed 0; clean test
   accuracy of both within 3 points, both above 90 %;
5. the app's Gradients grid: ``gradviz.ui.cache.cached_gradient_grid`` (the page's code,
   models loaded through the app's cache, its compute slot) for 8 images x 2 models on
   ``cuda``; equal to the CPU grid within tolerance, same predictions;

prints each check's numbers and verdict, then runs ``bench/run_all.py --device cuda`` on
the benchmarks that take a device (gradients, gini, pgd, residual: each ratio on the GPU).
It is sized to finish within 10 minutes on one GPU (``--no-benchmarks`` for the checks
alone, about a minute).

Exit status: 0 every check passed; 1 a check failed; 3 no CUDA device (nothing was run:
the script says so; on such a machine that is the expected outcome, not a failure of
gradviz).

    python bench/gpu_check.py            # or: bench/gpu_check.sh
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NO_CUDA_EXIT = 3
MODELS = ("mnist-5k/standard", "mnist-5k/pgd-linf")


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0


def cuda_status() -> tuple[bool, str]:
    """(whether a CUDA device can be used, a sentence saying what torch sees)."""
    built = torch.version.cuda
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if built is None else f"torch (CUDA {built}) sees no CUDA device"
        return False, f"no CUDA device: {why}"
    return True, f"CUDA device: {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {built})"


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-3) -> tuple[bool, float]:
    """Whether a and b agree to ``rtol`` of b's largest |value|; returns (ok, relative max diff)."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    scale = float(b.abs().max()) or 1.0
    rel = float((a - b).abs().max()) / scale
    return rel <= rtol, rel


def mean_cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().cpu().flatten(1), b.detach().float().cpu().flatten(1)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).mean())


def check_attribution(models_cpu, models_cuda, x, y, device="cuda") -> Check:
    from gradviz.attribution import METHODS, attribute

    lines, ok = [], True
    model_c, model_g = models_cpu["mnist-5k/pgd-linf"], models_cuda["mnist-5k/pgd-linf"]
    xg, yg = x.to(device), y.to(device)
    for method in METHODS:
        opts = {"n_steps": 16} if method == "integrated_gradients" else {}
        if method == "smoothgrad":
            a = attribute(model_g, xg, yg, method, seed=0)
            again = attribute(model_g, xg, yg, method, seed=0)
            ref = attribute(model_c, x, y, method, seed=0)
            same, cos = torch.equal(a, again), mean_cos(a, ref)
            good = same and cos >= 0.8
            lines.append(f"{method}: same seed same maps on CUDA {same}, mean cos with CPU {cos:.3f}")
        else:
            good, rel = close(attribute(model_g, xg, yg, method, **opts), attribute(model_c, x, y, method, **opts))
            lines.append(f"{method}: max |cuda - cpu| / max |cpu| = {rel:.1e}")
        ok = ok and good
    return Check("attribution", ok, "; ".join(lines))


def check_pgd(models_cpu, models_cuda, x, y, device="cuda") -> Check:
    from gradviz.attacks import pgd

    settings = dict(eps=0.3, norm="linf", steps=20, random_start=False)
    m_c, m_g = models_cpu["mnist-5k/standard"], models_cuda["mnist-5k/standard"]
    adv_c = pgd(m_c, x, y, **settings)
    adv_g = pgd(m_g, x.to(device), y.to(device), **settings).cpu()
    with torch.no_grad():
        acc_c = float((m_c(adv_c).argmax(1) == y).float().mean())
        acc_g = float((m_c(adv_g).argmax(1) == y).float().mean())
    differ = float(((adv_c - adv_g).abs() > 1e-4).float().mean())
    ok = abs(acc_c - acc_g) <= 0.02 and differ <= 0.01
    return Check("pgd", ok, f"robust accuracy cpu {100 * acc_c:.1f} %, {device} {100 * acc_g:.1f} %; pixels that differ "
                            f"{100 * differ:.2f} %")


def check_residual(x, y, device="cuda", steps=(150, 40)) -> Check:
    from gradviz import generative

    target = (y + 1) % 10
    G_c = generative.load_generator("mnist-5k", "cpu")
    G_g = generative.load_generator("mnist-5k", device)
    p_c = generative.project(G_c, x, target, steps=steps)
    p_g = generative.project(G_g, x.to(device), target.to(device), steps=steps)
    cos = mean_cos(p_g.x_hat - x.to(device), p_c.x_hat - x)
    mse_ratio = float(p_g.mse.mean().cpu() / p_c.mse.mean())
    ok = cos >= 0.98 and abs(mse_ratio - 1) <= 0.10
    return Check("residual", ok, f"mean cos(dx_cuda, dx_cpu) {cos:.4f}; reconstruction MSE cuda / cpu {mse_ratio:.3f}")


def check_training(test, device="cuda", limit=0, min_accuracy=0.90) -> Check:
    from gradviz.training import TrainConfig, train

    config = TrainConfig(dataset="mnist-5k", method="standard", epochs=1, seed=0, monitor=0, snapshots=0,
                         limit=limit)
    accs = {}
    for key, dev in (("cpu", "cpu"), ("device", device)):
        model, _ = train(config, device=dev)
        with torch.no_grad():
            accs[key] = float((model.cpu().eval()(test.x).argmax(1) == test.y).float().mean())
    ok = abs(accs["cpu"] - accs["device"]) <= 0.03 and min(accs.values()) >= min_accuracy
    return Check("training", ok, f"one standard epoch{f' on {limit} images' if limit else ''}, clean test accuracy "
                                 f"cpu {100 * accs['cpu']:.1f} %, {device} {100 * accs['device']:.1f} %")


def check_app_grid(test, device="cuda") -> Check:
    import numpy as np

    from gradviz.ui.cache import cached_gradient_grid, model_version

    versions = tuple(model_version(n) for n in MODELS)
    x = test.x[:8].numpy()
    labels = tuple(int(v) for v in test.y[:8])
    names = tuple(f"test #{i}" for i in range(8))
    grids = {d: cached_gradient_grid(MODELS, d, versions, x, labels, names, {"method": "gradient"})
             for d in ("cpu", device)}
    lines, ok = [], True
    for n in MODELS:
        good, rel = close(grids[device].attributions[n], grids["cpu"].attributions[n])
        same_pred = np.array_equal(np.asarray(grids[device].predictions[n].cpu()),
                                   np.asarray(grids["cpu"].predictions[n].cpu()))
        ok = ok and good and same_pred
        lines.append(f"{n}: max |cuda - cpu| / max |cpu| = {rel:.1e}, same predictions {same_pred}")
    return Check("app gradients grid", ok, "; ".join(lines))


def run_checks(device: str = "cuda") -> list[Check]:
    """Every check of ``device`` against the CPU (``device="cpu"`` runs the same code paths
    on the CPU twice, as the tests do)."""
    from gradviz import data, zoo

    test = data.load_dataset("mnist-5k", "test")
    models_cpu = {n: zoo.load_model(n, "cpu") for n in MODELS}
    models_dev = {n: zoo.load_model(n, device) for n in MODELS}
    steps = [
        lambda: check_attribution(models_cpu, models_dev, test.x[:64], test.y[:64], device),
        lambda: check_pgd(models_cpu, models_dev, test.x[:256], test.y[:256], device),
        lambda: check_residual(test.x[:32], test.y[:32], device),
        lambda: check_training(test, device),
        lambda: check_app_grid(test, device),
    ]
    names = ["attribution", "pgd", "residual", "training", "app gradients grid"]
    checks = []
    for name, step in zip(names, steps):
        t0 = time.perf_counter()
        try:
            c = step()
        except Exception as err:  # noqa: BLE001 - a check that raises has failed; the others still run
            c = Check(name, False, f"raised {type(err).__name__}: {err}")
        c.seconds = time.perf_counter() - t0
        print(f"[{'pass' if c.passed else 'FAIL'}] {c.name} ({c.seconds:.1f} s): {c.detail}", flush=True)
        checks.append(c)
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-benchmarks", action="store_true", help="the checks only, not bench/run_all.py")
    parser.add_argument("--bench-timeout", type=float, default=150.0, help="seconds per benchmark")
    args = parser.parse_args(argv)
    available, status = cuda_status()
    print(status)
    if not available:
        print("gpu_check: nothing was run (it needs a CUDA device); exit status 3")
        return NO_CUDA_EXIT
    checks = run_checks()
    failed = [c.name for c in checks if not c.passed]
    print(f"checks: {len(checks) - len(failed)} of {len(checks)} passed" + (f"; failed: {', '.join(failed)}"
                                                                           if failed else ""))
    if not args.no_benchmarks:
        print("\nbenchmarks on cuda (bench/run_all.py --device cuda):", flush=True)
        subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--device", "cuda",
                        "--only", "gradients", "gini", "pgd", "residual", "--timeout", str(args.bench_timeout)],
                       cwd=REPO, check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
