"""Server capacity of the app (issue 14): N sessions over Streamlit's own websocket protocol,
no browser.

``bench/bench_sessions.py`` drives real Chromium sessions on the same machine as the server,
so on a small machine it measures the browsers as much as the server: drawing one update of
the Gradients page takes Chromium about 1.1 CPU-seconds against the server's 0.2 (measured in
the README's table). A class's browsers run on the students' own computers; what the server
can sustain is measured here. Each session opens a websocket to ``/_stcore/stream`` (as the
browser's Streamlit client does), asks for script runs with the widget values a user would
set (``BackMsg.rerun_script`` with ``WidgetStates``) and reads the server's ``ForwardMsg``
stream until the run's ``script_finished``. The workload is the browser benchmark's: four
changes of the Gradients page's images (8 random test indices), then on the Attack page a
random test image and three steps of the eps slider, and back. A change is timed from the
request to the end of the run, and counts only if the run drew a new chart (the Gradients
chart names the requested images; the Attack page draws its "PGD attack" chart) without an
exception on the page.

For each N (default 1, 2, 4, 8; ``--seconds`` each, one server) it prints updates per second
in all, p50 / p95 latency, errors, the server's peak RSS, its CPU use (cores, and CPU seconds
per update), and the ratio of
the rate at N to the rate at 1; then whether the issue's latency target (4 sessions: p95 <=
1.5 s, 0 errors) holds for the server alone.

    python bench/bench_server_sessions.py
    python bench/bench_server_sessions.py --sessions 4 8 16 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_sessions import N_TEST, Record, RssSampler, measure_phases, report_phases, serve  # noqa: E402

@dataclass
class Run:
    """What the server sent for one script run."""

    seconds: float
    status: str  # ScriptFinished's status name, or "timeout"
    widgets: dict[str, tuple[str, object]] = field(default_factory=dict)  # label -> (kind, proto)
    charts: list[dict] = field(default_factory=list)  # plotly specs (layout only)
    exceptions: list[str] = field(default_factory=list)


class ProtocolSession:
    """One browser-less session: a websocket to the app speaking Streamlit's protocol.

    Widget values persist per page as a browser's would (a rerun sends every value set on the
    current page); moving to another page forgets them.
    """

    def __init__(self, url: str):
        self.ws_url = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.pages: dict[str, str] = {}  # page name -> page_script_hash
        self.page_hash = ""
        self.values: dict[str, object] = {}  # widget id -> WidgetState
        self._ws = None

    async def __aenter__(self):
        import websockets

        self._ws = await websockets.connect(self.ws_url, subprotocols=["streamlit"], max_size=None)
        return self

    async def __aexit__(self, *exc):
        await self._ws.close()

    async def run(self, *, page: str | None = None, set_values: dict[str, object] = (), timeout_s: float = 60.0) -> Run:
        """Ask for a script run (on ``page``, a page name, when given) with the widget values
        ``set_values`` (widget id -> WidgetState) added to the page's; wait for its end."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if page is not None and self.pages.get(page, "") != self.page_hash:
            self.page_hash, self.values = self.pages[page], {}
        self.values.update(dict(set_values))
        msg = BackMsg()
        state = msg.rerun_script
        state.page_script_hash = self.page_hash
        for ws in self.values.values():
            state.widget_states.widgets.append(ws)
        t0 = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        out = Run(seconds=float("nan"), status="timeout")
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    fwd = ForwardMsg()
                    fwd.ParseFromString(await self._ws.recv())
                    kind = fwd.WhichOneof("type")
                    if kind == "navigation":
                        self.pages = {p.page_name: p.page_script_hash for p in fwd.navigation.app_pages}
                        self.page_hash = self.page_hash or fwd.navigation.page_script_hash
                    elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                        self._read_element(fwd.delta.new_element, out)
                    elif kind == "script_finished":
                        status = ForwardMsg.ScriptFinishedStatus.Name(fwd.script_finished)
                        if status == "FINISHED_EARLY_FOR_RERUN":
                            continue
                        out.seconds, out.status = time.perf_counter() - t0, status
                        return out
        except TimeoutError:
            out.seconds = time.perf_counter() - t0
            return out

    @staticmethod
    def _read_element(el, out: Run) -> None:
        kind = el.WhichOneof("type")
        if kind == "exception":
            out.exceptions.append(f"{el.exception.type}: {el.exception.message}"[:200])
        elif kind == "plotly_chart":
            spec = json.loads(el.plotly_chart.spec) if el.plotly_chart.spec else {}
            out.charts.append(spec.get("layout", {}))
        elif kind in ("text_input", "number_input", "slider"):
            proto = getattr(el, kind)
            out.widgets[proto.label] = (kind, proto)


def _widget(run: Run, prefix: str, kind: str):
    for label, (k, proto) in run.widgets.items():
        if k == kind and label.startswith(prefix):
            return proto
    raise LookupError(f"no {kind} labelled {prefix!r}… on the page (widgets: {sorted(run.widgets)})")


def _state(widget_id: str, **value):
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    ws = WidgetState(id=widget_id)
    for name, v in value.items():
        if name == "double_array_value":
            ws.double_array_value.data.extend(v)
        else:
            setattr(ws, name, v)
    return ws


def _title(layout: dict) -> str:
    t = layout.get("title") or {}
    return (t.get("text") if isinstance(t, dict) else str(t)) or ""


def _indices(layout: dict) -> list[int]:
    return [int(a["text"][6:].split()[0]) for a in layout.get("annotations", [])
            if str(a.get("text", "")).startswith("test #")]


async def session(url: str, k: int, ready: asyncio.Event, t_start: asyncio.Event, deadline_box: list,
                  rec: Record, *, timeout_s: float, seed: int) -> None:
    """One user: open the app (not timed; ``ready`` is set once it has, or failed to), then
    repeat the browser benchmark's workload until the deadline (``deadline_box[0]``, set when
    ``t_start`` fires)."""
    who = f"session {k}"
    rng = np.random.default_rng(seed * 1000 + k)

    def check(run: Run, where: str, ok: bool) -> bool:
        if run.status != "FINISHED_SUCCESSFULLY":
            rec.errors.append(f"{who}: {where}: the run ended with {run.status} after {run.seconds:.1f} s")
        elif run.exceptions:
            rec.errors.append(f"{who}: {where}: {run.exceptions[0]}")
        elif not ok:
            rec.errors.append(f"{who}: {where}: the run drew no new chart")
        else:
            return True
        return False

    try:
        async with ProtocolSession(url) as s:
            first = await s.run(timeout_s=timeout_s * 2)
            ready.set()
            if not check(first, "opening", bool(first.charts)):
                return
            await t_start.wait()
            while time.monotonic() < deadline_box[0]:
                run = await s.run(page="Gradients", timeout_s=timeout_s)
                box = _widget(run, "Indices", "text_input")
                for _ in range(4):
                    if time.monotonic() >= deadline_box[0]:
                        return
                    idx = sorted(int(i) for i in rng.choice(N_TEST, 8, replace=False))
                    run = await s.run(set_values={box.id: _state(box.id, string_value=", ".join(map(str, idx)))},
                                      timeout_s=timeout_s)
                    if check(run, "gradients", any(_indices(c) == idx for c in run.charts)):
                        rec.add("gradients", run.seconds)
                run = await s.run(page="Attack", timeout_s=timeout_s)
                number = _widget(run, "Test image", "number_input")
                slider = _widget(run, "ε (", "slider")
                shown = int(number.default if not number.HasField("value") else number.value)
                i = int(rng.integers(1, N_TEST))
                i = i % (N_TEST - 1) + 1 if i == shown else i
                run = await s.run(set_values={number.id: _state(number.id, int_value=i)}, timeout_s=timeout_s)
                if check(run, "attack", any(_title(c).startswith("PGD attack") for c in run.charts)):
                    rec.add("attack", run.seconds)
                eps = float(slider.default[0])
                for _ in range(3):
                    if time.monotonic() >= deadline_box[0]:
                        return
                    eps = round(eps + slider.step if eps + slider.step <= slider.max else eps - slider.step, 6)
                    run = await s.run(set_values={slider.id: _state(slider.id, double_array_value=[eps])},
                                      timeout_s=timeout_s)
                    if check(run, "attack", any(_title(c).startswith("PGD attack") for c in run.charts)):
                        rec.add("attack", run.seconds)
    except Exception as err:  # noqa: BLE001 - every failure of a session is an error of the run
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        rec.errors.append(f"{who}: {type(err).__name__}: {msg}")
    finally:
        ready.set()


async def run_phase(url: str, n: int, seconds: float, *, timeout_s: float = 60.0, seed: int = 0,
                    on_start=None, on_end=None) -> tuple[Record, float]:
    """Open N sessions, then let them work for ``seconds`` (``on_start()`` is called as the
    clock starts, ``on_end()`` when it stops); returns ``(record, wall seconds)``."""
    rec = Record()
    start, deadline = asyncio.Event(), [0.0]
    ready = [asyncio.Event() for _ in range(n)]
    tasks = [asyncio.create_task(session(url, k, ready[k], start, deadline, rec, timeout_s=timeout_s, seed=seed))
             for k in range(n)]
    await asyncio.gather(*(r.wait() for r in ready))
    if on_start is not None:
        on_start()
    t0 = time.monotonic()
    deadline[0] = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    wall = time.monotonic() - t0
    if on_end is not None:
        on_end()
    return rec, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=40.0, help="per number of sessions")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a run may take before an error")
    parser.add_argument("--url", help="an app already running (RSS and CPU are then not measured)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    log = Path(tempfile.gettempdir()) / "gradviz-bench_server_sessions-server.log"
    with (contextlib.nullcontext((args.url, None)) if args.url else serve(log)) as (url, pid):
        with RssSampler(pid) as rss:
            rows = measure_phases(run_phase, url, pid, rss, sessions=args.sessions, seconds=args.seconds,
                                  timeout_s=args.timeout, seed=args.seed, browsers=False)
            report_phases(rows, name="server sessions", seconds=args.seconds, target_note=" (server alone)",
                          latency_what="request -> end of the run, no browser",
                          rate_what="aggregate updates/s, no browser")
            print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
