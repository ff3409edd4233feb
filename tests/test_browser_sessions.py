"""Live-server tests of the load benchmarks: the short form of bench/bench_sessions.py (two
Chromium sessions at once change the Gradients page's images and the Attack page's eps for
20 s) and of bench/bench_server_sessions.py (the same workload over Streamlit's websocket
protocol, no browser). Every change must draw its new chart, with no error. No timing is
asserted (the benchmarks print the rates and latencies)."""

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
    assert len(rec.by_page.get("gradients", [])) >= 2, summary
    assert summary["updates"] == len(rec.latencies) > 0


def _server_bench():
    path = BENCH.with_name("bench_server_sessions.py")
    spec = importlib.util.spec_from_file_location("bench_server_sessions", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_protocol_sessions_get_every_chart_they_ask_for(streamlit_server, shipped_models):
    """The browser-less form (bench/bench_server_sessions.py): 3 websocket sessions for 15 s;
    every run must end normally with the chart the change asked for (the Gradients chart
    naming the requested images; the Attack page's PGD chart), on both pages."""
    pytest.importorskip("websockets")
    bench = _server_bench()
    rec, wall = asyncio.run(bench.run_phase(streamlit_server, 3, 15.0, timeout_s=120.0))
    assert rec.errors == []
    assert len(rec.by_page.get("gradients", [])) >= 3 and len(rec.by_page.get("attack", [])) >= 1, rec.by_page
    assert all(t > 0 for t in rec.latencies)


def test_a_protocol_session_reports_a_run_without_the_chart_it_asked_for(streamlit_server, shipped_models):
    """The check behind the benchmark's error count can fail: indices the page refuses
    (out of range) draw no chart naming them, and the session records an error."""
    pytest.importorskip("websockets")
    bench = _server_bench()

    async def one():
        async with bench.ProtocolSession(streamlit_server) as s:
            first = await s.run(timeout_s=120.0)
            box = bench._widget(first, "Indices", "text_input")
            run = await s.run(set_values={box.id: bench._state(box.id, string_value="5000000")}, timeout_s=120.0)
            return first, run

    first, run = asyncio.run(one())
    assert first.status == "FINISHED_SUCCESSFULLY" and first.charts
    assert run.status == "FINISHED_SUCCESSFULLY"
    assert not any(bench._indices(c) == [5000000] for c in run.charts)
