"""Benchmark: one study on 1 rank and on 2 torchrun ranks (gloo, CPU), one thread per rank.

In one run it times, as subprocesses with ``OMP_NUM_THREADS=1``,

* T1: ``python -m gradviz study robustness ...`` (one process: the plain run),
* T2: ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m gradviz study
  robustness ...`` (the same units shared out over two ranks),

each on a fresh store, then each again on its filled store (S1, S2: the fixed cost of
starting Python and torch, joining the group, loading the data and models, and reading the
stored units, with nothing to compute). It prints the wall times, the ratio T1 / T2 (the
speed-up of the whole command) and (T1 - S1) / (T2 - S2) (the speed-up of the computing
part), and checks that both runs wrote the same table and npz.

What 2 cores can give: at most 2.0 for the computing part (two ranks, one thread each, on
two otherwise idle cores; the units are independent and need no communication but a few
status messages), in practice about 1.7-1.9 because the two ranks share the caches and the
memory bandwidth. The whole command gains less, since the start-up (5-10 s of imports and
loading per process, run in parallel but not shortened) does not shrink. When other jobs
hold the cores (PGD training, other studies), two ranks compete with them for the same two
cores and the ratio falls towards 1, or below on a saturated machine: read it with the load
average the benchmark prints. On a machine with K free cores (or K GPUs), K ranks give up to
K for the computing part, as long as there are at least K missing units (each rank takes
every K-th missing unit; a study of U units cannot use more than U ranks).

Run: ``python bench/bench_studies_distributed.py`` (``--help`` for options). Exit status 0
when the two runs' outputs are equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._report import result  # noqa: E402


def _run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mnist-5k/standard", "mnist-5k/pgd-linf"])
    p.add_argument("--n", type=int, default=200, help="images (default 200)")
    p.add_argument("--chunk", type=int, default=25, help="images per unit (default 25: 8 units per model)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps per eps (default 10)")
    args = p.parse_args(argv)

    import numpy as np

    study = ["study", "robustness", "--models", *args.models, "--n-images", str(args.n), "--chunk",
             str(args.chunk), "--steps", str(args.steps), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    launch = {1: [sys.executable, "-m", "gradviz"],
              2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gradviz"]}
    times, fixed = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        env["GRADVIZ_HOME"] = str(Path(tmp) / "home")
        load0 = os.getloadavg()[0]
        for ranks in (1, 2):
            folder = Path(tmp) / f"r{ranks}"
            cmd = launch[ranks] + study + ["--store", str(folder / "store"), "--out", str(folder / "out")]
            times[ranks] = _run(cmd, env)
            fixed[ranks] = _run(cmd, env)  # everything stored: the fixed cost
        load1 = os.getloadavg()[0]
        same = (Path(tmp, "r1", "out", "robustness.csv").read_text()
                == Path(tmp, "r2", "out", "robustness.csv").read_text())
        a, b = np.load(Path(tmp, "r1", "out", "robustness.npz")), np.load(Path(tmp, "r2", "out", "robustness.npz"))
        same = same and sorted(a.files) == sorted(b.files) and all(a[k].tobytes() == b[k].tobytes() for k in a.files)

    units = len(args.models) * -(-args.n // args.chunk)
    print(f"robustness study: {len(args.models)} models x {args.n} images in chunks of {args.chunk} "
          f"({units} units), PGD-{args.steps} on the default l_inf grid; CPU, 1 thread per rank; "
          f"{os.cpu_count()} cores, load average {load0:.1f} before, {load1:.1f} after")
    for r in (1, 2):
        print(f"  {r} rank{'s' if r > 1 else ' '}: {times[r]:7.1f} s  (fixed cost with all stored: {fixed[r]:5.1f} s)")
    whole = times[1] / times[2]
    part = (times[1] - fixed[1]) / max(times[2] - fixed[2], 1e-9)
    print(f"ratio 1-rank / 2-rank time          = {whole:.2f}  (whole command)")
    print(f"ratio without the fixed cost        = {part:.2f}  (the computing part; at most 2.0 on 2 cores)")
    print(f"same table and npz: {same}")
    result("studies: 1-rank / 2-rank, computing part", part, what=f"{units} units; at most 2 on 2 cores")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
