"""The app's thread and concurrency policy (gradviz.ui.compute): slot pools hand out at most
their size at once, first come first served; a waiter that is told to stop leaves the line;
a compute section runs with the policy's torch threads."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from gradviz.ui import compute
from gradviz.ui.compute import SlotPool


def _hold(pool, started, release, log, tag):
    with pool.slot():
        log.append(tag)
        started.set()
        release.wait(10)


def test_a_pool_runs_at_most_its_size_at_once_in_arrival_order():
    pool = SlotPool("test", 2)
    release = threading.Event()
    log: list[str] = []
    holders = []
    for tag in ("a", "b"):
        ev = threading.Event()
        t = threading.Thread(target=_hold, args=(pool, ev, release, log, tag))
        t.start()
        assert ev.wait(5)
        holders.append(t)
    assert pool.running == 2
    waiters = []
    for tag in ("c", "d", "e"):
        t = threading.Thread(target=_hold, args=(pool, threading.Event(), release, log, tag))
        t.start()
        waiters.append(t)
        deadline = time.monotonic() + 5
        while pool.waiting < len(waiters) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert pool.waiting == 3 and pool.running == 2 and log == ["a", "b"]
    release.set()
    for t in holders + waiters:
        t.join(10)
    assert sorted(log[2:]) == ["c", "d", "e"] and pool.running == 0 and pool.waiting == 0


def test_first_come_first_served():
    pool = SlotPool("test", 1)
    order: list[int] = []
    gate = threading.Event()

    def first():
        with pool.slot():
            gate.wait(10)

    t0 = threading.Thread(target=first)
    t0.start()
    while pool.running == 0:
        time.sleep(0.01)
    threads = []

    def waiter(k):  # enters in turn and leaves at once
        with pool.slot():
            order.append(k)

    for k in range(4):
        t = threading.Thread(target=waiter, args=(k,))
        t.start()
        threads.append(t)
        while pool.waiting < k + 1:
            time.sleep(0.01)
    gate.set()
    for t in [t0, *threads]:
        t.join(10)
    assert order == [0, 1, 2, 3]


def test_on_wait_reports_the_line_and_an_exception_there_leaves_it():
    pool = SlotPool("test", 1)
    gate = threading.Event()
    holder = threading.Thread(target=_hold, args=(pool, threading.Event(), gate, [], "h"))
    holder.start()
    while pool.running == 0:
        time.sleep(0.01)
    seen: list[int] = []

    class SessionGone(Exception):
        pass

    def on_wait(ahead):
        seen.append(ahead)
        if len(seen) == 3:
            raise SessionGone

    with pytest.raises(SessionGone):
        with pool.slot(on_wait, poll_s=0.01):
            pytest.fail("must not get the slot")
    assert seen == [0, 0, 0]
    assert pool.waiting == 0  # left the line
    gate.set()
    holder.join(10)
    with pool.slot():  # the slot is free again: nothing leaked
        assert pool.running == 1
    assert pool.running == 0


def test_compute_slot_sets_the_policys_torch_threads_in_its_thread():
    got = {}

    def run():
        torch.set_num_threads(2)
        with compute.compute_slot("interactive"):
            got["inside"] = torch.get_num_threads()

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert got["inside"] == compute.TORCH_THREADS
    with pytest.raises(ValueError, match="unknown kind"):
        with compute.compute_slot("bulk"):
            pass


def test_pool_sizes_follow_the_environment(monkeypatch):
    monkeypatch.setenv("GRADVIZ_HEAVY_SLOTS", "3")
    assert compute._env_int("GRADVIZ_HEAVY_SLOTS", 1) == 3
    monkeypatch.setenv("GRADVIZ_HEAVY_SLOTS", "0")
    with pytest.raises(ValueError, match="GRADVIZ_HEAVY_SLOTS"):
        compute._env_int("GRADVIZ_HEAVY_SLOTS", 1)
    assert compute.HEAVY_SLOTS >= 1 and compute.INTERACTIVE_SLOTS >= 1
    with pytest.raises(ValueError):
        SlotPool("x", 0)


def test_the_waiting_message_says_where_the_request_is_in_line():
    assert compute.waiting_message("heavy", 0).endswith("(this one is next)…")
    assert "(2 more waiting before this one)" in compute.waiting_message("heavy", 2)
    assert compute.waiting_message("heavy", 0).startswith("Waiting for a free slot: the server runs ")


def test_heavy_work_on_a_page_waits_for_its_slot_then_runs():
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from gradviz.ui.cache import heavy_progress

        with heavy_progress() as progress:
            progress(0.5, "half way")
            st.session_state["ran"] = True
        st.write("done")

    heavy = compute.pool("heavy")
    held, release = threading.Event(), threading.Event()

    def hold():
        with heavy.slot():
            held.set()
            release.wait(30)

    holder = [threading.Thread(target=hold) for _ in range(heavy.size)]
    for t in holder:
        t.start()
    while heavy.running < heavy.size:
        time.sleep(0.01)
    timer = threading.Timer(1.5, release.set)
    timer.start()
    t0 = time.monotonic()
    at = AppTest.from_function(page, default_timeout=60).run()
    assert time.monotonic() - t0 >= 1.0  # it waited for the slot
    assert not at.exception and at.session_state["ran"]
    assert [m.value for m in at.markdown] == ["done"]
    assert not at.get("progress")  # the bar is gone at the end
    for t in holder:
        t.join(10)
    assert heavy.running == 0 and heavy.waiting == 0


def test_freeze_long_lived_freezes_once_and_new_garbage_is_still_collected(monkeypatch):
    """The first call freezes what is alive (the app's modules, preloaded before any session),
    later calls do nothing, and a cycle made afterwards is still collected."""
    import gc
    import sys
    import weakref

    assert all(name in sys.modules for name in compute.PRELOADED if name != "kaleido")
    monkeypatch.setattr(compute, "_frozen", False)
    assert compute.freeze_long_lived() is True
    assert gc.get_freeze_count() > 0
    assert compute.freeze_long_lived() is False

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle made after the freeze
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    assert ref() is None
