"""``python -m gradviz`` with test-only faults, for tests/test_studies_distributed.py.

Run as torchrun's script: ``python -m torch.distributed.run --nproc_per_node 2
tests/torchrun_study.py study robustness ...`` (the arguments of ``python -m gradviz``).

Environment:
    GRADVIZ_TEST_FAULT="RANK:KIND:AFTER": on rank RANK, the study's compute runs AFTER times
        normally (default 0), then the next call raises (KIND ``raise``), sleeps for an hour
        (``hang``) or ends the process at once with exit status 9 (``exit``: a crash, an
        out-of-memory kill).
    GRADVIZ_TEST_STORE_PER_RANK=1: the ``--store DIR`` of rank R becomes ``DIR/rankR``: ranks
        that share no filesystem, so rank 0 must receive the others' units over
        torch.distributed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time


def _inject(kind: str, after: int) -> None:
    from gradviz.studies import STUDIES

    calls = {"n": 0}
    for module in STUDIES.values():
        def faulty(*args, _compute=module.STUDY.compute, **kwargs):
            calls["n"] += 1
            if calls["n"] <= after:
                return _compute(*args, **kwargs)
            if kind == "raise":
                raise RuntimeError(f"injected failure on rank {os.environ['RANK']}")
            if kind == "hang":
                time.sleep(3600)
            os._exit(9)

        module.STUDY = dataclasses.replace(module.STUDY, compute=faulty)


def main() -> int:
    argv = sys.argv[1:]
    rank = os.environ.get("RANK", "0")
    if os.environ.get("GRADVIZ_TEST_STORE_PER_RANK") and "--store" in argv:
        i = argv.index("--store") + 1
        argv[i] = os.path.join(argv[i], f"rank{rank}")
    fault = os.environ.get("GRADVIZ_TEST_FAULT", "")
    if fault:
        parts = fault.split(":")
        if parts[0] == rank:
            _inject(parts[1], int(parts[2]) if len(parts) > 2 else 0)
    from gradviz.__main__ import main as gradviz_main

    return gradviz_main(argv)


if __name__ == "__main__":
    sys.exit(main())
