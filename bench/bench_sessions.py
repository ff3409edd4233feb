"""Load benchmark of the app (issue 14 point 2): N browser sessions at once.

Starts ``streamlit run app.py`` on 127.0.0.1 (an empty ``GRADVIZ_HOME``; or uses ``--url``)
and drives N Chromium sessions (Playwright's async API over Debian's ``/usr/bin/chromium``,
one browser, one context per session, loopback only). Each session repeats, until the
phase's time is up: four changes of the Gradients page's images (8 random test indices, so
never a cached set), then on the Attack page a random test image and three steps of the eps
slider, and back. Every widget change is timed until the chart it changes is drawn anew
(its data differ); navigation between the pages is not counted as an update.

For each N (default 1, 2, 4, 8; ``--seconds`` each, one server) it prints the chart updates
per second in all, p50 / p95 latency (widget change -> new chart), errors (a chart that did
not change within ``--timeout``, a Streamlit exception on the page, a JavaScript error, a
lost connection), the server's peak RSS during the phase, the CPU the server and the Chromium
processes used (cores, and CPU seconds per update: on a small machine the browsers take most
of it), and the ratio of the aggregate rate at N to the rate at 1 measured in the same run;
then whether the issue's targets hold on this run (4 sessions: p95 <= 1.5 s, 0 errors; 8
sessions: 0 errors). ``bench/bench_server_sessions.py`` runs the same workload without
browsers: the server's own capacity.

``--visit-all`` adds a memory phase: 8 sessions each open every page once and leave; the
server's RSS before, at peak and after it settles. ``--uploads`` adds one session that
uploads 16 large PNGs on the Gradients page and leaves; RSS before, at peak and after.

    python bench/bench_sessions.py                      # N = 1, 2, 4, 8; 40 s each
    python bench/bench_sessions.py --sessions 2 --seconds 20
    python bench/bench_sessions.py --visit-all --uploads
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._report import result  # noqa: E402
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot'
N_TEST = 1000  # mnist-5k test images
PAGES = ("Gradients", "Attack", "Models", "Inequality", "Alignment", "Trade-off")

# JavaScript run in the page: the chart whose title starts with a prefix, the sum of |z|
# over its traces' decoded arrays (changes with its data) and the test indices its row
# titles name ("test #17 · label 4").
_JS_CHART = """
  const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'));
  const gd = charts.find(g => g.layout && ((g.layout.title && g.layout.title.text) || "").startsWith(prefix));
  const zsum = (gd) => {
    let total = 0;
    for (const t of gd._fullData) {
      if (!t.z) continue;
      for (const row of t.z) {
        if (Array.isArray(row) || ArrayBuffer.isView(row)) { for (const v of row) total += Math.abs(v); }
        else total += Math.abs(row);
      }
    }
    return total;
  };
  const indices = (gd) => (gd.layout.annotations || []).map(a => a.text).filter(t => /^test #\\d+/.test(t))
                            .map(t => parseInt(t.slice(6)));
"""
# The chart's state, null while it is not drawn.
READ_CHART = "(prefix) => {" + _JS_CHART + """
  if (!gd || !gd._fullData) return null;
  return {sum: zsum(gd), indices: indices(gd)};
}"""
# Whether the chart names the indices ``want`` (when given) or its data differ from ``before``.
CHANGED = "([prefix, before, want]) => {" + _JS_CHART + """
  if (!gd || !gd._fullData) return false;
  if (want) return JSON.stringify(indices(gd)) === JSON.stringify(want);
  return zsum(gd) !== before;
}"""
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


# ----------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(log_path: Path, timeout_s: float = 90.0, extra: tuple[str, ...] = ()):
    """``streamlit run app.py`` on 127.0.0.1:<free port> with an empty GRADVIZ_HOME and the
    ``extra`` command-line options; yields ``(url, pid)``; stopped at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="gradviz-home-") as home, open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *extra],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADVIZ_HOME": home})
        try:
            deadline = time.monotonic() + timeout_s
            while not healthy(url):
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not become healthy within {timeout_s:g} s; see {log_path}")
                time.sleep(0.5)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def held_mb(url: str) -> dict[str, float]:
    """MB the server's caches hold, by kind (its ``/_stcore/metrics``: ``st_cache_data``,
    ``st_cache_resource``, ``UploadedFileManager``, ...); empty if it does not answer. A
    kind that holds nothing has no line."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/metrics?families=cache_memory_bytes", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'cache_memory_bytes\{cache_type="([^"]*)"[^}]*\}\s+(\S+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2)) / 1e6
    return out


def uploaded_mb(url: str) -> float:
    """MB of uploaded files the server holds (0 when its metrics list none)."""
    return held_mb(url).get("UploadedFileManager", 0.0)


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (10^6 bytes), from /proc; NaN if unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return float("nan")


_HZ = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int | str) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _HZ


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (NaN if unknown)."""
    try:
        return _proc_stat(pid)[1]
    except (OSError, IndexError, ValueError):
        return float("nan")


def browser_cpu_seconds() -> float:
    """CPU seconds so far of the Chromium processes this process started (its descendants
    whose command line names chromium), alive now."""
    parents, cpu, chromium = {}, {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parents[int(entry)], cpu[int(entry)] = _proc_stat(entry)
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if b"chromium" in fh.read():
                    chromium.add(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    me, total = os.getpid(), 0.0
    for pid in chromium:
        p, seen = pid, 0
        while p > 1 and seen < 64:
            p, seen = parents.get(p, 0), seen + 1
            if p == me:
                total += cpu[pid]
                break
    return total


class RssSampler:
    """Samples a process's RSS every ``period_s`` in a thread; ``peak`` (MB) since start or
    :meth:`reset`."""

    def __init__(self, pid: int | None, period_s: float = 0.25):
        self.pid, self.period_s, self.peak = pid, period_s, float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> float:
        value = rss_mb(self.pid) if self.pid else float("nan")
        if not (value <= self.peak):  # also replaces NaN
            self.peak = value if value == value else self.peak
        return value

    def reset(self) -> None:
        self.peak = float("nan")
        self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)


# ----------------------------------------------------------------------------- the sessions

@dataclass
class Record:
    """What the sessions of one phase measured."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    by_page: dict[str, list[float]] = field(default_factory=dict)  # page -> its latencies

    def add(self, page: str, seconds: float) -> None:
        self.latencies.append(seconds)
        self.by_page.setdefault(page, []).append(seconds)


async def _wait_idle(page, timeout_ms: float) -> None:
    await page.wait_for_function(IDLE, timeout=timeout_ms)


class PageError(RuntimeError):
    """The page shows a Streamlit exception (already recorded)."""


async def _check_page(page, rec: Record, who: str) -> None:
    if await page.locator('[data-testid="stException"]').count():
        rec.errors.append(f"{who}: a Streamlit exception on the page")
        raise PageError(who)


async def _timed_change(page, rec: Record, who: str, where: str, prefix: str, act, want, timeout_ms: float) -> None:
    """Do ``act()`` and time it until the chart titled ``prefix`` changes (or names ``want``)."""
    before = await page.evaluate(READ_CHART, prefix)
    t0 = time.perf_counter()
    await act()
    await page.wait_for_function(CHANGED, arg=[prefix, before and before["sum"], want], timeout=timeout_ms)
    rec.add(where, time.perf_counter() - t0)
    await _wait_idle(page, timeout_ms)
    await _check_page(page, rec, who)


async def _goto_menu(page, title: str, chart_prefix: str, timeout_ms: float) -> None:
    link = re.compile(rf"^([a-z_]+)?\s*{re.escape(title)}$")
    await page.locator('[data-testid="stSidebarNav"] a', has_text=link).click()
    await page.wait_for_function(
        """(prefix) => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'))
             .some(g => g.layout && ((g.layout.title && g.layout.title.text) || "").startsWith(prefix))""",
        arg=chart_prefix, timeout=timeout_ms)
    await _wait_idle(page, timeout_ms)


async def open_session(browser, url: str, k: int, rec: Record, *, timeout_s: float):
    """A new browser context on the app's Gradients page, drawn; returns ``(context, page)``."""
    context = await browser.new_context(viewport={"width": 1400, "height": 2300})
    page = await context.new_page()
    page.on("pageerror", lambda e: rec.errors.append(f"session {k}: JavaScript error {e}"))
    await page.goto(url, wait_until="domcontentloaded")
    await page.wait_for_selector(CHART, timeout=timeout_s * 1000)
    await _wait_idle(page, timeout_s * 1000)
    return context, page


async def session(page, k: int, deadline: float, rec: Record, *, timeout_s: float, seed: int) -> None:
    """One user on an open Gradients page until ``deadline``: the images x4, then on the
    Attack page a test image and the eps slider x3, and back; repeat."""
    who = f"session {k}"
    rng = np.random.default_rng(seed * 1000 + k)
    tmo = timeout_s * 1000
    try:
        while time.monotonic() < deadline:
            box = page.get_by_role("textbox", name="Indices")
            for _ in range(4):
                if time.monotonic() >= deadline:
                    return
                idx = sorted(int(i) for i in rng.choice(N_TEST, 8, replace=False))

                async def act(idx=idx):
                    await box.fill(", ".join(map(str, idx)))
                    await box.press("Enter")

                await _timed_change(page, rec, who, "gradients", "", act, idx, tmo)
            await _goto_menu(page, "Attack", "PGD attack", tmo)
            number = page.get_by_role("spinbutton", name=re.compile(r"^Test image"))

            i = int(rng.integers(1, N_TEST))
            if str(i) == await number.input_value():  # the page kept this image: no new chart would come
                i = i % (N_TEST - 1) + 1

            async def pick(i=i):
                await number.fill(str(i))
                await number.press("Enter")

            await _timed_change(page, rec, who, "attack", "PGD attack", pick, None, tmo)
            slider = (page.locator('[data-testid="stSlider"]')
                      .filter(has=page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(r"^ε \(")))
                      .first)
            thumb = slider.get_by_role("slider")
            for _ in range(3):
                if time.monotonic() >= deadline:
                    return
                shown = await slider.locator('[data-testid="stSliderThumbValue"]').first.inner_text()
                key = "ArrowRight" if float(shown) < 0.9 else "ArrowLeft"

                async def step(key=key):
                    await thumb.focus()
                    await thumb.press(key)

                await _timed_change(page, rec, who, "attack", "PGD attack", step, None, tmo)
            await _goto_menu(page, "Gradients", "", tmo)
    except PageError:
        pass
    except Exception as err:  # noqa: BLE001 - every failure of a session is an error of the run
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        rec.errors.append(f"{who}: {type(err).__name__}: {msg}")


async def run_phase(url: str, n: int, seconds: float, *, timeout_s: float = 60.0, seed: int = 0,
                    on_start=None, on_end=None) -> tuple[Record, float]:
    """Open N sessions (not timed), then let them work for ``seconds`` (``on_start()`` is
    called as the clock starts, ``on_end()`` when it stops, before the browser closes);
    returns ``(record, wall seconds of the timed part)``."""
    from playwright.async_api import async_playwright

    rec = Record()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            opened = await asyncio.gather(*(open_session(browser, url, k, rec, timeout_s=timeout_s)
                                            for k in range(n)), return_exceptions=True)
            pages = []
            for k, o in enumerate(opened):
                if isinstance(o, BaseException):
                    rec.errors.append(f"session {k}: did not open: {type(o).__name__}: {str(o).splitlines()[0]}")
                else:
                    pages.append((k, o[1]))
            if on_start is not None:
                on_start()
            t0 = time.monotonic()
            await asyncio.gather(*(session(page, k, t0 + seconds, rec, timeout_s=timeout_s, seed=seed)
                                   for k, page in pages))
            wall = time.monotonic() - t0
            if on_end is not None:
                on_end()
        finally:
            await browser.close()
    return rec, wall


async def visit_all(url: str, n: int, *, timeout_s: float = 300.0) -> list[str]:
    """N sessions each open every page (from the menu) and wait for it to finish; returns errors."""
    from playwright.async_api import async_playwright

    errors: list[str] = []

    async def one(browser, k):
        context = await browser.new_context(viewport={"width": 1400, "height": 2300})
        page = await context.new_page()
        page.on("pageerror", lambda e: errors.append(f"visitor {k}: JavaScript error {e}"))
        try:
            await page.goto(url, wait_until="domcontentloaded")
            await page.wait_for_selector(CHART, timeout=timeout_s * 1000)
            for title in PAGES:
                link = re.compile(rf"^([a-z_]+)?\s*{re.escape(title)}$")
                await page.locator('[data-testid="stSidebarNav"] a', has_text=link).click()
                await page.wait_for_timeout(500)
                await _wait_idle(page, timeout_s * 1000)
                if await page.locator('[data-testid="stException"]').count():
                    errors.append(f"visitor {k}: exception on {title}")
        except Exception as err:  # noqa: BLE001
            errors.append(f"visitor {k}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        finally:
            await context.close()

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            await asyncio.gather(*(one(browser, k) for k in range(n)))
        finally:
            await browser.close()
    return errors


def large_pngs(folder: Path, count: int, side: int, seed: int = 0) -> list[Path]:
    """``count`` RGB noise PNGs of ``side`` x ``side`` pixels (incompressible: large files)
    written to ``folder``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        path = folder / f"noise-{i}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, compress_level=1)
        files.append(path)
    return files


async def upload_and_leave(url: str, files: list[Path], *, timeout_s: float = 300.0) -> None:
    """One session uploads ``files`` on the Gradients page, waits for the chart, and leaves."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 2300})
            page = await context.new_page()
            await page.goto(url, wait_until="domcontentloaded")
            await page.wait_for_selector(CHART, timeout=timeout_s * 1000)
            await page.get_by_role("radio", name="Upload").check(force=True)
            dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
            await dropzone.wait_for(state="attached", timeout=timeout_s * 1000)
            await dropzone.set_input_files(files)
            await page.wait_for_function(
                "(n) => { const gd = document.querySelector('" + CHART + "'); "
                "return gd && gd.data && gd.data.length === n; }", arg=3 * len(files), timeout=timeout_s * 1000)
            await _wait_idle(page, timeout_s * 1000)
            await context.close()
        finally:
            await browser.close()


# ----------------------------------------------------------------------------- the report

def summarise(rec: Record, wall: float) -> dict:
    lat = np.asarray(rec.latencies, dtype=float)
    return dict(updates=len(lat), rate=len(lat) / wall if wall > 0 else float("nan"),
                p50=float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                p95=float(np.percentile(lat, 95)) if len(lat) else float("nan"),
                errors=len(rec.errors),
                by_page={k: (len(v), float(np.percentile(v, 50)), float(np.percentile(v, 95)))
                         for k, v in sorted(rec.by_page.items())})


def page_breakdown(s: dict) -> str:
    """``"gradients 40 updates, p50 / p95 0.21 / 0.40 s; attack ..."`` of a :func:`summarise` row."""
    return "; ".join(f"{k} {n} updates, p50 / p95 {p50:.2f} / {p95:.2f} s" for k, (n, p50, p95) in s["by_page"].items())


def report_phases(rows: list[dict], *, name: str, seconds: float, latency_what: str, rate_what: str,
                  target_note: str = "") -> None:
    """Print the table of the phases (one row per N: ``n``, ``summary`` from :func:`summarise`,
    ``peak`` RSS MB, ``load0``, ``load1``, ``errors`` and optionally ``cpu``: {"server" |
    "browser": (cores used, CPU seconds per update)}), the
    per-page latencies, the first errors, and the RESULT lines named ``"<name>: ..."`` (the
    rate at N over the rate at 1; at N = 4 the p95 target of 1.5 s; errors, target 0)."""
    ref = next((r["summary"]["rate"] for r in rows if r["n"] == 1), None)
    kinds = [k for k in ("server", "browser") if any(k in r.get("cpu", {}) for r in rows)]
    print(f"\n{'sessions':>8} {'updates':>7} {'upd/s':>6} {'p50 s':>6} {'p95 s':>6} {'errors':>6} {'peak RSS MB':>11}"
          + "".join(f" {k + ' cores, CPU s/update':>28}" for k in kinds)
          + f" {'rate / rate at 1':>16} {'load before-after':>17}")
    for r in rows:
        s = r["summary"]
        ratio = f"{s['rate'] / ref:.2f}x" if ref else "-"
        cpu = "".join(f" {'%.2f, %.3f' % r['cpu'][k]:>28}" if k in r.get("cpu", {}) else f" {'-':>28}" for k in kinds)
        print(f"{r['n']:>8} {s['updates']:>7} {s['rate']:6.2f} {s['p50']:6.2f} {s['p95']:6.2f} {s['errors']:>6} "
              f"{r['peak']:11.0f}{cpu} {ratio:>16} {r['load0']:8.2f}-{r['load1']:<8.2f}")
    for r in rows:
        print(f"  N={r['n']}: {page_breakdown(r['summary'])}")
    for r in rows:
        for e in r["errors"][:5]:
            print(f"  N={r['n']} error: {e}")
    for r in rows:
        n, s = r["n"], r["summary"]
        if ref and n > 1:
            result(f"{name}: rate at {n} / rate at 1", s["rate"] / ref, what=rate_what)
        if n == 4:
            ok = s["p95"] <= 1.5 and s["errors"] == 0
            print(f"target 4 sessions p95 <= 1.5 s and 0 errors{target_note}: {'met' if ok else 'NOT met'}")
            result(f"{name}: p95 latency at 4", s["p95"], op="<=", target=1.5, unit="s", what=latency_what)
        result(f"{name}: errors at {n}", s["errors"], op="<=", target=0, unit="errors",
               what=f"{n} sessions, {seconds:g} s{target_note}")


def measure_phases(run_phase, url: str, pid: int | None, rss: RssSampler, *, sessions, seconds: float,
                   timeout_s: float, seed: int, browsers: bool) -> list[dict]:
    """Print the server's banner, warm it up (one session, 10 s), then run ``run_phase`` once
    per N in ``sessions``; returns the rows of :func:`report_phases`, with the CPU the server
    (and, with ``browsers``, this process's Chromium) used during each timed part."""
    print(f"server {url} (pid {pid or 'not ours'}), {len(os.sched_getaffinity(0))} usable cores, "
          f"load average {os.getloadavg()[0]:.2f}; RSS at start {rss.sample():.0f} MB")
    asyncio.run(run_phase(url, 1, 10.0, timeout_s=timeout_s, seed=seed + 99))  # warm-up

    def cpu_now() -> dict[str, float]:
        out = {"server": cpu_seconds(pid) if pid else float("nan")}
        if browsers:
            out["browser"] = browser_cpu_seconds()
        return out

    rows = []
    for n in sessions:
        load0, marks = os.getloadavg()[0], {}

        def started(marks=marks):
            rss.reset()
            marks["start"] = cpu_now()

        def ended(marks=marks):
            marks["end"] = cpu_now()

        rec, wall = asyncio.run(run_phase(url, n, seconds, timeout_s=timeout_s, seed=seed,
                                          on_start=started, on_end=ended))
        summary = summarise(rec, wall)
        used = {k: marks["end"][k] - marks["start"][k] for k in marks["start"]}
        rows.append(dict(n=n, summary=summary, peak=rss.peak, load0=load0, load1=os.getloadavg()[0],
                         errors=rec.errors,
                         cpu={k: (u / wall, u / max(summary["updates"], 1)) for k, u in used.items()}))
    return rows


def settle(sampler: RssSampler, seconds: float) -> float:
    """Wait ``seconds`` for the server to settle; returns its RSS then (MB)."""
    time.sleep(seconds)
    return sampler.sample()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=40.0, help="per number of sessions")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a chart may take before an error")
    parser.add_argument("--url", help="an app already running (RSS is then not measured)")
    parser.add_argument("--visit-all", action="store_true", help="8 sessions visit every page; RSS after")
    parser.add_argument("--uploads", action="store_true", help="a session uploads 16 large PNGs and leaves")
    parser.add_argument("--upload-side", type=int, default=1500, help="side of the uploaded PNGs in pixels")
    parser.add_argument("--disconnected-ttl", type=int, default=20,
                        help="the server's server.disconnectedSessionTTL (Streamlit's default is 120 s: how long "
                             "a session that left may reconnect, and keeps its uploads)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.access(CHROMIUM, os.X_OK):
        print(f"{CHROMIUM} not found: this benchmark drives Debian's chromium (apt install chromium)")
        return 2
    log = Path(tempfile.gettempdir()) / "gradviz-bench_sessions-server.log"
    ttl = ("--server.disconnectedSessionTTL", str(args.disconnected_ttl))
    with (contextlib.nullcontext((args.url, None)) if args.url else serve(log, extra=ttl)) as (url, pid):
        with RssSampler(pid) as rss:
            rows = measure_phases(run_phase, url, pid, rss, sessions=args.sessions, seconds=args.seconds,
                                  timeout_s=args.timeout, seed=args.seed, browsers=True)
            report_phases(rows, name="sessions", seconds=args.seconds, latency_what="widget change -> new chart",
                          rate_what="aggregate chart updates/s")
            if args.visit_all:
                before = rss.sample()
                rss.reset()
                errors = asyncio.run(visit_all(url, 8))
                after = settle(rss, 15.0)
                held = ", ".join(f"{k} {v:.1f} MB" for k, v in sorted(held_mb(url).items()))
                print(f"\n8 sessions visited every page and left: RSS before {before:.0f} MB, peak {rss.peak:.0f} MB, "
                      f"15 s after {after:.0f} MB; the caches hold {held or 'nothing'} (st_cache_resource counts "
                      f"entries, not bytes); errors {len(errors)}" + "".join(f"\n  {e}" for e in errors[:5]))
            if args.uploads:
                asyncio.run(visit_all(url, 1))  # every page loaded once: what the visit after will find
                folder = Path(tempfile.mkdtemp(prefix="gradviz-uploads-"))
                files = large_pngs(folder, 16, args.upload_side, args.seed)
                mb = sum(f.stat().st_size for f in files) / 1e6
                before = rss.sample()
                rss.reset()
                asyncio.run(upload_and_leave(url, files))
                left = settle(rss, 5.0)
                held_left = uploaded_mb(url)
                # past the reconnect time, the next script run (any session's) releases the files
                time.sleep(args.disconnected_ttl)
                asyncio.run(visit_all(url, 1))
                after = settle(rss, 5.0)
                held_after = uploaded_mb(url)
                print(f"\na session uploaded 16 PNGs of {args.upload_side} x {args.upload_side} ({mb:.0f} MB) and "
                      f"left: RSS before {before:.0f} MB, peak {rss.peak:.0f} MB, 5 s after it left {left:.0f} MB, "
                      f"after its reconnect time ({args.disconnected_ttl} s) and another session's visit "
                      f"{after:.0f} MB; uploaded files the server holds (its /_stcore/metrics): {held_left:.1f} MB "
                      f"after it left, {held_after:.1f} MB after its reconnect time")
                for f in files:
                    f.unlink()
                folder.rmdir()
            print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
