"""Bench: torch intra-op threads for the app's interactive work under concurrent requests
(issue 14 point 1; the numbers behind :mod:`gradviz.ui.compute`'s policy).

A request is the Gradients page's default computation, ``compute_gradient_grid`` of 8 test
images x the two shipped models (``mnist-5k/standard``, ``mnist-5k/pgd-linf``), each on
other images (as uncached requests are). ``C`` Python threads (Streamlit runs each
session's script in its own thread) send requests back to back for ``--seconds``; each
thread sets its own torch intra-op threads (``torch.set_num_threads`` sets the calling
thread's OpenMP team size). Configurations: 1 or 2 torch threads per request, with or
without a semaphore of as many slots as usable cores (:func:`gradviz.ui.compute.compute_slot`),
for C = 1 .. 4. Prints per configuration the requests per second in all, per-request
latency p50 / p95, the process's CPU time per request (what a saturated server can serve:
cores / CPU per request; on a shared machine also the measure least moved by the other
tenants, who take CPU from a process in proportion to its running threads), and the ratio
of the rate to the reference measured in this run (1 torch thread, 1 request at a time).

    python bench/bench_threads.py [--seconds 4] [--concurrency 1 2 3 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import result  # noqa: E402
from gradviz import data, zoo  # noqa: E402
from gradviz.gradients import compute_gradient_grid  # noqa: E402

MODELS = ("mnist-5k/standard", "mnist-5k/pgd-linf")


def run(models, x, y, *, concurrency: int, torch_threads: int, slots: int | None, seconds: float):
    """C threads sending grid requests for ``seconds``; returns (requests/s, latencies in s,
    CPU seconds of this process per request).
    With ``slots``, a semaphore lets that many compute at once (the wait counts in latency)."""
    sem = threading.BoundedSemaphore(slots) if slots else None
    latencies: list[float] = []
    lock = threading.Lock()
    start, cpu0 = time.perf_counter(), time.process_time()
    deadline = start + seconds

    def worker(k: int):
        torch.set_num_threads(torch_threads)
        rng = np.random.default_rng(k)
        while time.perf_counter() < deadline:
            idx = torch.as_tensor(rng.choice(len(x), 8, replace=False))
            t0 = time.perf_counter()
            if sem is not None:
                sem.acquire()
            try:
                compute_gradient_grid(models, x[idx], y[idx])
            finally:
                if sem is not None:
                    sem.release()
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = (time.process_time() - cpu0) / max(1, len(latencies))
    return len(latencies) / (time.perf_counter() - start), latencies, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per configuration")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    test = data.load_dataset("mnist-5k", "test")
    models = {n: zoo.load_model(n) for n in MODELS}
    compute_gradient_grid(models, test.x[:8], test.y[:8])  # warm-up
    print(f"torch {torch.__version__}, {cores} usable cores, load average {os.getloadavg()[0]:.2f}; request: "
          f"8 images x {len(models)} models, gradient grid; {args.seconds:g} s per configuration")
    configs = [(c, t, None) for c in args.concurrency for t in (1, 2)]
    configs += [(c, 1, cores) for c in args.concurrency if c > cores]
    ref = None
    rates, cpus = {}, {}
    print(f"{'requests at once':>16} {'torch threads':>13} {'slots':>5} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'CPU ms/req':>10} {'ratio to 1x1':>12}")
    for c, t, slots in configs:
        rate, lat, cpu = run(models, test.x, test.y, concurrency=c, torch_threads=t, slots=slots, seconds=args.seconds)
        if ref is None:
            ref = rate
        rates[c, t, slots] = rate
        p50, p95 = (float(np.percentile(lat, q)) * 1e3 for q in (50, 95))
        print(f"{c:>16} {t:>13} {slots or '-':>5} {rate:7.1f} {p50:7.0f} {p95:7.0f} {cpu * 1e3:10.0f} "
              f"{rate / ref:11.2f}x")
        cpus[c, t, slots] = cpu
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    c = max(args.concurrency)
    if (c, 1, None) in rates and (c, 2, None) in rates:
        result(f"threads: {c} requests at once, 1 / 2 torch threads", rates[c, 1, None] / rates[c, 2, None],
               what="aggregate rate (the app's policy: 1)")
        result(f"threads: {c} requests at once, CPU per request 2 / 1 torch threads", cpus[c, 2, None] / cpus[c, 1, None],
               what="CPU time per request (the app's policy: 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
