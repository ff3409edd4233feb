"""Pages run through app.py, also when a browser opens a page's URL first.

Streamlit still has its legacy multipage mode: a server whose entry script has a ``pages/``
folder beside it starts in that mode, and only leaves it once a script calls
``st.navigation``. Until then, a session that opens ``/attack`` before anyone has opened
``/`` gets pages/attack.py run *alone*, under an automatic listing of the folder: no page
config, no shared sidebar, no model choice. app.py marks the runs it makes
(:func:`app_entry`); every page starts with :func:`require_app_entry`, which notices a run that
did not come through app.py, registers the navigation (leaving the legacy mode for the whole
server) and reruns, so that app.py runs and opens the same page by its URL.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

_run = threading.local()  # Streamlit runs each session's script in its own thread


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


def app_pages() -> list:
    """The app's pages, in menu order (the first is the default): ``st.Page`` objects over the
    files in pages/ (paths relative to app.py's folder, where Streamlit resolves them)."""
    return [
        st.Page("pages/gradients.py", title="Gradients", icon=":material/gradient:", default=True),
        st.Page("pages/attack.py", title="Attack", icon=":material/bolt:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
        st.Page("pages/inequality.py", title="Inequality", icon=":material/equalizer:"),
        st.Page("pages/alignment.py", title="Alignment", icon=":material/join_inner:"),
    ]


def require_app_entry() -> None:
    """The first call of every page: return at once when app.py runs the page; otherwise
    (Streamlit's legacy ``pages/`` mode ran the file alone) switch the server to app.py's
    ``st.navigation`` and rerun. The rerun keeps the URL, so app.py opens this same page
    (pages are matched by URL path: ``pages/attack.py`` is ``/attack`` in both modes).

    Raises streamlit's rerun exception in the second case (the page stops there).
    """
    if came_through_app():
        return
    st.navigation(app_pages())  # resolves this page's URL to the same page; leaves legacy mode
    st.rerun()
