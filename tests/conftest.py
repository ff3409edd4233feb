"""Shared fixtures for the app tests (AppTest) and the browser tests (a live server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHIPPED_MODELS = ("mnist-5k/standard", "mnist-5k/pgd-linf")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_shipped_models() -> list[str]:
    """Shipped checkpoints (assets/models/<name>.pt) that are not there."""
    return [n for n in SHIPPED_MODELS if not (REPO / "assets" / "models" / f"{n}.pt").is_file()]


@pytest.fixture
def shipped_models() -> tuple[str, ...]:
    """The shipped model names; skips (fails in CI) when a shipped checkpoint is missing."""
    missing = missing_shipped_models()
    if missing:
        msg = f"shipped checkpoints missing: {missing} (train them: see README)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return SHIPPED_MODELS


@pytest.fixture
def artifacts_dir() -> Path:
    """tests/artifacts/ (gitignored): screenshots and files made by the tests."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


@pytest.fixture(scope="module")
def streamlit_server(tmp_path_factory):
    """A live ``streamlit run app.py`` on 127.0.0.1:<free port>; yields its base URL.

    Waits (up to 90 s) for /_stcore/health to answer "ok"; the server is stopped at the end
    of the module. ``GRADVIZ_HOME`` is an empty temporary folder, so what the server finds
    stored is only what ships (results an earlier run left in the user's folder would be
    drawn instead of computed). Its output goes to tests/artifacts/streamlit-server.log.
    """
    home = tmp_path_factory.mktemp("gradviz-home")
    yield from _serve("streamlit-server.log", env={"GRADVIZ_HOME": str(home)})


@pytest.fixture(scope="module")
def streamlit_server_home(tmp_path_factory):
    """Like :func:`streamlit_server`, with ``GRADVIZ_HOME`` set to a fresh temporary folder
    for the server process (models it trains or imports land there, not in assets/ or the
    real user folder). Yields ``(url, home)``; log: tests/artifacts/streamlit-server-home.log.
    """
    home = tmp_path_factory.mktemp("gradviz-home")
    for url in _serve("streamlit-server-home.log", env={"GRADVIZ_HOME": str(home)}):
        yield url, home


#: Run before streamlit's command line in :func:`streamlit_server_field`: torchvision's md5
#: check of CIFAR's files passes any file that exists (the tests' CIFAR-10 is not the original
#: archive; the AppTests monkeypatch the same function).
CIFAR_ANY_FILE = (
    "import os, torchvision.datasets.cifar as c\n"
    "c.check_integrity = lambda path, md5=None: os.path.isfile(path)\n"
)


@pytest.fixture(scope="module")
def streamlit_server_field(tmp_path_factory):
    """A live server on the field's models and data (issue 15): ``GRADVIZ_HOME`` holds a
    RobustBench architecture with random weights in the package's layout
    (``robustbench/cifar10/Linf/<name>.pt``, tests.test_robustbench's model) and ``cifar10/tiny``
    (a random 3-channel small-cnn); ``GRADVIZ_DATA`` a fake CIFAR-10 in torchvision's on-disk
    format (60 test images). Skips without the robustbench package. Yields
    ``(url, written)``, ``written`` the CIFAR arrays per split; log:
    tests/artifacts/streamlit-server-field.log."""
    import torch

    from gradviz import zoo
    from gradviz.checkpoints import ModelCard
    from gradviz.nets import build_model
    from tests.helpers import make_cifar10_like
    from tests.test_robustbench import SMALL, rb_architecture

    home = tmp_path_factory.mktemp("gradviz-home")
    data = tmp_path_factory.mktemp("gradviz-data")
    rb = home / "robustbench" / "cifar10" / "Linf" / f"{SMALL}.pt"
    rb.parent.mkdir(parents=True)
    torch.save(rb_architecture().state_dict(), rb)  # skips without robustbench
    torch.manual_seed(0)
    tiny = build_model("small-cnn", channels=3, num_classes=10, size=32).eval()
    zoo.save_model(tiny, ModelCard(name="cifar10/tiny", dataset="cifar10", arch="small-cnn", method="standard"),
                   home / "models" / "cifar10" / "tiny.pt")
    written = make_cifar10_like(data, n_per_batch=60)
    env = {"GRADVIZ_HOME": str(home), "GRADVIZ_ROBUSTBENCH": str(home / "robustbench"), "GRADVIZ_DATA": str(data)}
    for url in _serve("streamlit-server-field.log", env=env, prelude=CIFAR_ANY_FILE):
        yield url, written


def _serve(log_name: str, env: dict | None = None, prelude: str | None = None):
    """Run ``streamlit run app.py`` (after the Python code ``prelude``, if given, in the same
    process) until the generator is closed; yields its base URL once healthy."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(ARTIFACTS / log_name, "wb")
    launch = ([sys.executable, "-m", "streamlit"] if prelude is None else
              [sys.executable, "-c", prelude + "\nfrom streamlit.web.cli import main\nmain(prog_name='streamlit')"])
    proc = subprocess.Popen(
        [
            *launch, "run", "app.py",
            "--server.headless", "true",
            "--server.port", str(port),
            "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
        ],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy within 90 s; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    """Playwright's Chromium driving Debian's /usr/bin/chromium (never `playwright install`).

    Fails in CI (CI=true) and skips elsewhere when /usr/bin/chromium or playwright is absent.
    """
    def unavailable(msg: str):
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)

    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} not found: browser tests need Debian's chromium (apt install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright (python) is not installed: pip install -r requirements-test.txt")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
