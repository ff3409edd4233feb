"""The app's frame (page config, navigation, shared sidebar) around every page, also when a
browser opens a page's URL first.

Streamlit still has its legacy multipage mode: a server whose entry script has a ``pages/``
folder beside it starts in that mode, and only leaves it once a script calls
``st.navigation``. Until then, a session that opens ``/attack`` before anyone has opened
``/`` gets pages/attack.py run *alone*, under an automatic listing of the folder: no page
config, no shared sidebar, no model choice. (AppTest starts every run in that mode too.)
app.py calls :func:`run_app` (the frame, :func:`app_frame`, then the page, marked as run
through it); every page starts with :func:`require_app_entry`, which calls the same
:func:`run_app` when the run did not come through app.py. Its ``st.navigation`` call also ends the
legacy mode for the whole server, and resolves the URL to the same page (pages are matched
by URL path: ``pages/attack.py`` is ``/attack`` in both modes).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from gradviz.ui.compute import apply_thread_policy, freeze_long_lived
from gradviz.ui.state import draw_sidebar

_run = threading.local()  # Streamlit runs each session's script in its own thread


def app_pages() -> list:
    """The app's pages, in menu order (the first is the default): ``st.Page`` objects over the
    files in pages/ (paths relative to app.py's folder, where Streamlit resolves them)."""
    return [
        st.Page("pages/gradients.py", title="Gradients", icon=":material/gradient:", default=True),
        st.Page("pages/attack.py", title="Attack", icon=":material/bolt:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
        st.Page("pages/inequality.py", title="Inequality", icon=":material/equalizer:"),
        st.Page("pages/alignment.py", title="Alignment", icon=":material/join_inner:"),
        st.Page("pages/tradeoff.py", title="Trade-off", icon=":material/balance:"),
    ]


def app_frame():
    """Page config, the thread and memory policy (:mod:`gradviz.ui.compute`), ``st.navigation``
    over :func:`app_pages` and the shared sidebar (:func:`gradviz.ui.state.draw_sidebar`);
    returns the page the URL asks for (a ``StreamlitPage``, not run yet)."""
    st.set_page_config(page_title="gradviz", page_icon=":material/gradient:", layout="wide")
    freeze_long_lived()
    apply_thread_policy()
    page = st.navigation(app_pages())
    draw_sidebar()
    return page


@contextmanager
def app_entry() -> Iterator[None]:
    """Mark the page run inside as one made by app.py (see :func:`require_app_entry`)."""
    previous = getattr(_run, "from_app", False)
    _run.from_app = True
    try:
        yield
    finally:
        _run.from_app = previous


def came_through_app() -> bool:
    """Whether the current script run is inside app.py's :func:`app_entry`."""
    return getattr(_run, "from_app", False)


def run_app() -> None:
    """What app.py does: draw :func:`app_frame` and run the page the URL asks for, inside
    :func:`app_entry`."""
    page = app_frame()
    with app_entry():
        page.run()


def require_app_entry() -> None:
    """The first call of every page: nothing when app.py runs the page. Otherwise
    (Streamlit's legacy ``pages/`` mode ran the file alone) :func:`run_app` here, which runs
    this same file (opened by its URL) as app.py would, then stop the outer run with
    ``st.stop()``. The page's widgets then get the same identities as in an app.py run, so
    their values carry over between runs.
    """
    if not came_through_app():
        run_app()
        st.stop()
