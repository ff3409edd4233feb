"""Small builders shared by the tests: tiny torchvision-format datasets, tiny models, AppTest
read-outs and browser-test waits."""

from __future__ import annotations

import pickle
import re
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """Write uint8 images (N, H, W) in the IDX format MNIST uses (magic 2051)."""
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """Write uint8 labels (N,) in the IDX format MNIST uses (magic 2049)."""
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def make_mnist_like(root: Path, folder: str, n_train: int = 30, n_test: int = 20, seed: int = 0):
    """A tiny MNIST / FashionMNIST copy in torchvision's raw on-disk layout under
    ``root/<folder>/raw``. Returns the arrays written, per split: (images, labels)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[split] = (images, labels)
    return out


def make_cifar10_like(root: Path, n_per_batch: int = 4, seed: int = 0):
    """A tiny CIFAR-10 copy in torchvision's python-pickle layout under
    ``root/cifar-10-batches-py``. Returns the arrays written, per split."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out = {}
    for split, files in names.items():
        imgs, labs = [], []
        for name in files:
            data = rng.integers(0, 256, size=(n_per_batch, 3 * 32 * 32), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n_per_batch).tolist()
            with open(folder / name, "wb") as fh:
                pickle.dump({"data": data, "labels": labels}, fh)
            imgs.append(data.reshape(-1, 3, 32, 32))
            labs.extend(labels)
        out[split] = (np.concatenate(imgs), np.array(labs))
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                                     "dog", "frog", "horse", "ship", "truck"]}, fh)
    return out


def linear_classifier(num_features: int, num_classes: int, seed: int = 0, dtype=None):
    """f(x) = W flatten(x) + b with seeded N(0, 1) weights: grad_x f_c = W[c], so the input
    gradients of every loss on it are known in closed form."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(num_features, num_classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(num_classes, num_features, generator=g))
        model[1].bias.copy_(torch.randn(num_classes, generator=g))
    return model.to(dtype) if dtype is not None else model


def save_random_user_model(home: Path, name: str = "rand", metrics: dict | None = None) -> str:
    """A small-cnn with random weights (seed 0) saved as the user model ``mnist-5k/<name>`` under
    ``home`` (the test's GRADVIZ_HOME), with a card holding ``metrics``; returns its zoo name."""
    import torch

    from gradviz import zoo
    from gradviz.nets import build_model

    torch.manual_seed(0)
    card = zoo.ModelCard(name=f"mnist-5k/{name}", dataset="mnist-5k", arch="small-cnn", method="standard",
                         metrics=dict(metrics or {}))
    zoo.save_model(build_model("small-cnn", channels=1, num_classes=10, size=28), card,
                   Path(home) / "models" / "mnist-5k" / f"{name}.pt")
    return card.name


def run_torchrun(args: list[str], tmp: Path, *, script: str | None = None, env: dict | None = None,
                 timeout: float = 600, nproc: int = 2):
    """``torchrun --standalone --nproc_per_node nproc -m gradviz ARGS`` (or ``tests/<script> ARGS``),
    one thread per rank, ``$GRADVIZ_HOME`` in ``tmp/home``, the caller's torchrun variables
    removed; returns ``(the completed process, its wall time in s)``."""
    import os
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parent.parent
    target = [str(repo / "tests" / script)] if script else ["-m", "gradviz"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--monitor-interval=0.5", *target, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(repo),
                "GRADVIZ_HOME": str(tmp / "home"), **(env or {})}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(k, None)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=repo, env=full_env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def input_spy(model):
    """``model`` wrapped in a module that records every input it sees: ``spy.calls`` holds
    (input, whether in train mode) pairs, ``spy.seen`` the inputs seen in train mode (a
    training loss's: gradviz's attacks run the model in eval mode); ``spy.model`` is the
    wrapped model. For tests that check what an objective really computes its loss on."""
    from torch import nn

    class InputSpy(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.model, self.calls = inner, []

        @property
        def seen(self) -> list:
            return [x for x, training in self.calls if training]

        def forward(self, x):
            self.calls.append((x.detach().clone(), self.training))
            return self.model(x)

    return InputSpy(model)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (1-bit grayscale) with no pixel data: all that
    PIL reads before it refuses an image too large to open."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def drawn_digit(ink=0, paper=255, size: tuple[int, int] = (56, 56), mode: str = "L") -> bytes:
    """A "1" drawn as people draw it, a 5 px stroke of ``ink`` on ``paper`` (default black
    on white), as PNG bytes."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new(mode, size, paper)
    ImageDraw.Draw(img).line([(size[0] // 2, 8), (size[0] // 2, size[1] - 8)], fill=ink, width=5)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def plotly_values(v) -> np.ndarray:
    """A plotly array from a figure spec: a list, or plotly.py's base64 {"dtype", "bdata"}
    (reshaped to its "shape" where it has one)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        flat = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape is None:
            return flat
        return flat.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
    return np.asarray(v)


def plotly_image(trace: dict) -> np.ndarray:
    """The pixels of a plotly ``image`` trace from a figure spec as (H, W, C) uint8, whichever
    way plotly ships them: ``z`` (a list of rows of [r, g, b], or base64 with a shape) or
    ``source`` (a data URI of a PNG / JPEG, decoded with PIL)."""
    assert trace.get("type") == "image", trace.get("type")
    if trace.get("source"):
        import base64
        import io

        from PIL import Image

        head, _, payload = str(trace["source"]).partition(",")
        assert head.startswith("data:image/") and head.endswith(";base64"), head[:40]
        with Image.open(io.BytesIO(base64.b64decode(payload))) as img:
            return np.asarray(img.convert("RGBA" if img.mode in ("RGBA", "LA", "PA") else "RGB"))
    z = plotly_values(trace["z"])
    assert z.ndim == 3 and z.shape[-1] in (3, 4), z.shape
    return np.asarray(z, dtype=np.uint8)


def app_charts(at) -> dict[str, dict]:
    """The plotly figures an AppTest run drew, by title (a plain-string title too)."""
    import json

    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        title = spec["layout"].get("title", {})
        out[title.get("text", "") if isinstance(title, dict) else str(title)] = spec
    return out


def app_chart(at, prefix: str) -> dict:
    """The one figure whose title starts with ``prefix`` (an assertion error otherwise)."""
    found = [s for t, s in app_charts(at).items() if t.startswith(prefix)]
    assert len(found) == 1, f"expected one chart titled {prefix!r}, got {list(app_charts(at))}"
    return found[0]


# ----------------------------------------------------------------------------- browser tests
# Helpers for the Playwright tests (they take a playwright Page; nothing here imports it).

@contextmanager
def browser_page(browser, width: int, height: int, failure_png: Path):
    """A fresh browser context with one page of ``width`` x ``height`` CSS pixels (scale 1).
    After the block, JavaScript errors on the page fail the test; any failure first saves a
    full-page screenshot to ``failure_png``; the context is closed in every case."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
        assert not errors, errors
    except Exception:
        try:  # the picture helps, but must not hide the failure it illustrates
            page.screenshot(path=str(failure_png), full_page=True, timeout=60_000)
        except Exception as shot_error:  # noqa: BLE001 - reported beside the real failure
            print(f"no failure screenshot: {shot_error}")
        raise
    finally:
        context.close()


def wait_idle(page, timeout_ms: int = 120_000, settle_ms: int = 400) -> None:
    """Wait until no script run is in progress (Streamlit's status widget is gone), then
    ``settle_ms`` more for plotly to finish drawing (before a read-out or a screenshot)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=timeout_ms)
    page.wait_for_timeout(settle_ms)


def open_from_menu(page, base_url: str, title: str, timeout_ms: int = 90_000):
    """Enter the app at its root, as a user does, wait for app.py's sidebar and follow the
    menu link called ``title`` (its icon's ligature text may come first). Returns the sidebar
    locator."""
    page.goto(base_url, wait_until="domcontentloaded")
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_role("combobox", name="Dataset").wait_for(timeout=timeout_ms)
    link = re.compile(rf"^([a-z_]+)?\s*{re.escape(title)}$")
    sidebar.locator('[data-testid="stSidebarNav"] a', has_text=link).click()
    return sidebar


def add_sidebar_model(page, sidebar, short_name: str) -> None:
    """Add the model whose label starts with ``short_name`` to the sidebar's Models
    multiselect (type to filter, pick the first match, close the list)."""
    combo = sidebar.locator('[data-testid="stMultiSelect"] input')
    combo.click()
    combo.press_sequentially(short_name)
    page.get_by_role("option", name=short_name).first.click()
    page.keyboard.press("Escape")


def menu_titles(sidebar) -> list[str]:
    """The titles of the sidebar menu's links, without their icons' ligature text."""
    return [re.sub(r"^[a-z_]+\s*", "", t).strip()
            for t in sidebar.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
