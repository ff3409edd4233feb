"""One machine-readable line per measured ratio, beside each benchmark's own output, for
bench/run_all.py: ``RESULT {"name": ..., "ratio": ..., "target": ..., "op": ..., "met": ...}``."""

from __future__ import annotations

import json
import math
import operator

_OPS = {"<=": operator.le, ">=": operator.ge}


def result(name: str, ratio: float, *, op: str | None = None, target: float | None = None, what: str = "",
           unit: str = "x") -> bool | None:
    """Print one RESULT line; returns whether ``ratio op target`` holds (None without a target).

    Args:
        name: short name of the measurement (unique across the benchmarks).
        ratio: the measured ratio (against a reference measured in the same run).
        op, target: the target, e.g. ``"<=", 1.3``.
        what: what the ratio divides by what, for the table.
        unit: "x" for a ratio; another unit (e.g. "s") for a measured value with a target.
    """
    met = None
    if op is not None and target is not None:
        met = bool(_OPS[op](ratio, target)) if math.isfinite(ratio) else False
    print("RESULT " + json.dumps(dict(name=name, ratio=float(ratio), op=op, target=target, met=met, what=what,
                                           unit=unit)))
    return met
