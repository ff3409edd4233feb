"""Run every benchmark in a short mode and print one table of their ratios (issue 14 point 4).

Each benchmark runs as its own process (its full output goes to ``--log``), with settings
that keep the whole run to a few minutes on a quiet 2-core CPU; every ratio it prints is
against a reference measured in the same run, and each has the target the benchmark
states, where it has one. The table lists every ``RESULT`` line (bench/_report.py) and
whether its target holds; a benchmark that fails or prints nothing is listed as such. The
load average before and after each benchmark is printed too: on a shared machine the
ratios move with it.

    python bench/run_all.py                      # every benchmark, short mode, on the CPU
    python bench/run_all.py --device cuda        # the ones that take a device, on CUDA
    python bench/run_all.py --only gradients gini

Exit status 0 when every target holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: name -> (script, short-mode arguments, takes --device)
BENCHMARKS: dict[str, tuple[str, list[str], bool]] = {
    "gradients": ("bench_gradients.py", ["--repeats", "3", "--per-image-n", "100"], True),
    "gini": ("bench_gini.py", ["--n", "100", "--max-loop-seconds", "5"], True),
    "pgd": ("bench_pgd.py", ["--batch", "128", "--steps", "20", "--repeats", "3"], True),
    "pag": ("bench_pag.py", ["--repeats", "3"], False),
    "residual": ("bench_residual.py", ["--n", "100", "--n-ref", "2", "--floor-steps", "30"], True),
    "threads": ("bench_threads.py", ["--seconds", "2", "--concurrency", "1", "2", "4"], False),
    "studies": ("bench_studies_distributed.py", ["--n", "50", "--chunk", "25", "--steps", "5"], False),
    "figures": ("bench_figures.py", ["--repeats", "5"], False),
    "server": ("bench_server_sessions.py", ["--sessions", "1", "4", "8", "--seconds", "15"], False),
    "sessions": ("bench_sessions.py", ["--sessions", "1", "2", "4", "--seconds", "15"], False),
}


def run_one(name: str, device: str | None, timeout_s: float, log) -> tuple[list[dict], str]:
    """Run one benchmark; returns (its RESULT records, a status: "ok", "exit N", "timed out")."""
    script, extra, takes_device = BENCHMARKS[name]
    cmd = [sys.executable, str(REPO / "bench" / script), *extra]
    if device and takes_device:
        cmd += ["--device", device]
    log.write(f"\n===== {name}: {' '.join(cmd)}\n")
    log.flush()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        log.write(out)
        return _records(out), f"timed out after {timeout_s:g} s"
    log.write(proc.stdout + proc.stderr)
    # bench_pgd and bench_pag exit 1 when a target is missed: the table says which
    status = "ok" if proc.returncode in (0, 1) and _records(proc.stdout) else f"exit {proc.returncode}"
    return _records(proc.stdout), status


def _records(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("RESULT "):
            try:
                out.append(json.loads(line[len("RESULT "):]))
            except json.JSONDecodeError:
                pass
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.3g} {unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[], help="leave these out")
    parser.add_argument("--device", help="passed to the benchmarks that take one (cpu, cuda, auto)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "gradviz-bench-run_all.log",
                        help="every benchmark's full output")
    args = parser.parse_args()
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    rows = []
    with open(args.log, "w") as log:
        for name in names:
            load0, t0 = os.getloadavg()[0], time.monotonic()
            print(f"{name} ...", end=" ", flush=True)
            records, status = run_one(name, args.device, args.timeout, log)
            print(f"{status}, {time.monotonic() - t0:.0f} s", flush=True)
            rows.append((name, records, status, load0, os.getloadavg()[0]))
    print(f"\n{len(os.sched_getaffinity(0))} usable cores; full output in {args.log}\n")
    print(f"| {'benchmark':<10} | {'measurement':<48} | {'value':>9} | {'target':>10} | {'holds':<5} | load |")
    print(f"|{'-' * 12}|{'-' * 50}|{'-' * 11}|{'-' * 12}|{'-' * 7}|------|")
    all_met = True
    for name, records, status, load0, load1 in rows:
        if not records or status != "ok":
            print(f"| {name:<10} | {'(' + status + ', no result)' if not records else '(' + status + ')':<48} | "
                  f"{'':>9} | {'':>10} | {'no':<5} | {load0:.1f}-{load1:.1f} |")
            all_met = False
        for r in records:
            unit = r.get("unit", "x")
            target = f"{r['op']} {_fmt(r['target'], unit)}" if r.get("op") else "-"
            holds = "-" if r.get("met") is None else ("yes" if r["met"] else "NO")
            all_met = all_met and r.get("met") is not False
            print(f"| {name:<10} | {r['name'][:48]:<48} | {_fmt(r['ratio'], unit):>9} | {target:>10} | {holds:<5} | "
                  f"{load0:.1f}-{load1:.1f} |")
    print(f"\nevery target holds: {'yes' if all_met else 'NO'}")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
