"""``python -m gradviz train`` with test-only faults, for tests/test_training_distributed.py.

Run as torchrun's script: ``python -m torch.distributed.run --nproc_per_node 2
tests/torchrun_train.py train ...`` (the arguments of ``python -m gradviz``).

Environment:
    GRADVIZ_TEST_FAULT="RANK:KIND:AFTER": on rank RANK, the training loop's step runs AFTER
        times normally (default 0), then the next step raises (KIND ``raise``), sleeps for an
        hour (``hang``) or ends the process at once with exit status 9 (``exit``: a crash, an
        out-of-memory kill).
"""

from __future__ import annotations

import os
import sys
import time


def _inject(kind: str, after: int) -> None:
    from gradviz.training import loop

    calls = {"n": 0}
    step = loop._backward_step

    def faulty(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= after:
            return step(*args, **kwargs)
        if kind == "raise":
            raise RuntimeError(f"injected failure on rank {os.environ['RANK']}")
        if kind == "hang":
            time.sleep(3600)
        os._exit(9)

    loop._backward_step = faulty


def main() -> int:
    fault = os.environ.get("GRADVIZ_TEST_FAULT", "")
    if fault:
        parts = fault.split(":")
        if parts[0] == os.environ.get("RANK", "0"):
            _inject(parts[1], int(parts[2]) if len(parts) > 2 else 0)
    from gradviz.__main__ import main as gradviz_main

    return gradviz_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
