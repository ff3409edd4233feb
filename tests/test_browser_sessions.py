"""Browser test: the short form of bench/bench_sessions.py. Two Chromium sessions at once
change the Gradients page's images and the Attack page's eps for 20 s on a live server;
every change must draw its new chart, with no error. No timing is asserted (the benchmark
prints the rates and latencies)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_sessions.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sessions", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_two_sessions_for_20_s_update_their_charts_without_errors(streamlit_server, shipped_models):
    bench = _bench()
    if not os.access(bench.CHROMIUM, os.X_OK):  # as the browser fixture: fail in CI, skip elsewhere
        msg = f"{bench.CHROMIUM} not found: browser tests need Debian's chromium (apt install chromium)"
        pytest.fail(msg) if os.environ.get("CI", "").lower() in ("1", "true", "yes") else pytest.skip(msg)
    pytest.importorskip("playwright")
    rec, wall = asyncio.run(bench.run_phase(streamlit_server, 2, 20.0, timeout_s=120.0))
    summary = bench.summarise(rec, wall)
    assert rec.errors == []
    # both pages were exercised, by both sessions' changes together
    assert summary["by_page"].get("gradients", 0) >= 2, summary
    assert summary["updates"] == len(rec.latencies) > 0
