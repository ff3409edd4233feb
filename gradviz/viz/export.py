"""Everything that leaves a figure as a file: static export and the numbers behind each figure.

* Static export: :func:`figure_to_bytes` (PNG, SVG, PDF through kaleido, which drives a
  Chrome/Chromium: see :func:`find_browser`; or a self-contained HTML page, always
  available, plotly.js embedded so that it works offline), :func:`export_figure` (several
  static formats with one browser), :func:`static_export_available`, :data:`MIME_TYPES`.
* The numbers, as ``.npz`` (compressed, no pickled objects: ``np.load(io.BytesIO(data),
  allow_pickle=False)`` reads them) or CSV bytes (UTF-8, ``\n`` line ends), one function
  per figure:

  - Gradients page: :func:`grid_to_npz`;
  - Attack page: :func:`curves_to_csv`, :func:`attack_to_npz`, :func:`sweep_to_npz`;
  - Inequality page: :func:`image_to_npz`, :func:`gini_to_csv`, :func:`noise_to_csv`,
    :func:`occlusion_to_csv`, :func:`examples_to_npz`;
  - Alignment page: :func:`residual_figure_to_npz`, :func:`alignment_to_csv`,
    :func:`alignment_to_npz`;
  - Models page: :func:`snapshots_to_npz` (a run's per-epoch input-gradient snapshots).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import plotly.graph_objects as go
import torch

from gradviz.inequality import gini, lorenz_curve, regional_gini
from gradviz.viz.common import ArrayLike, as_array, chw
from gradviz.viz.models import epoch_accuracies, snapshot_epochs, snapshot_images

if TYPE_CHECKING:
    from gradviz.attacks import AttackResult
    from gradviz.gradients import GradientGrid
    from gradviz.training.snapshots import Snapshots

__all__ = [
    "EXPORT_FORMATS",
    "MIME_TYPES",
    "STATIC_FORMATS",
    "StaticExportUnavailable",
    "alignment_to_csv",
    "alignment_to_npz",
    "attack_to_npz",
    "curves_to_csv",
    "examples_to_npz",
    "export_figure",
    "figure_to_bytes",
    "find_browser",
    "gini_to_csv",
    "grid_to_npz",
    "image_to_npz",
    "noise_to_csv",
    "occlusion_to_csv",
    "residual_figure_to_npz",
    "snapshots_to_npz",
    "static_export_available",
    "sweep_to_npz",
]

#: Export format -> MIME type. "html" needs nothing; the others need a Chrome/Chromium.
MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "html": "text/html",
}
EXPORT_FORMATS: tuple[str, ...] = tuple(MIME_TYPES)
STATIC_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")


# ------------------------------------------------------------------------ static export


class StaticExportUnavailable(RuntimeError):
    """PNG/SVG/PDF export needs a Chrome or Chromium, and none was found."""


def find_browser() -> str | None:
    """The Chrome/Chromium that kaleido will drive for static export, or None.

    Looked up in this order: the ``BROWSER_PATH`` environment variable (choreographer's
    own override, used only if it names an executable file); then choreographer's search
    (its local download from ``kaleido.get_chrome()``, the names ``chrome``,
    ``chromium``, ``chromium-browser``, ... on ``PATH``, and typical install paths such as
    ``/usr/bin/chromium``).
    """
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if (os.path.isfile(env) and os.access(env, os.X_OK)) else None
    try:
        from choreographer.browsers.chromium import Chromium

        path = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - an unusual choreographer: fall back to PATH
        path = shutil.which("chromium") or shutil.which("google-chrome")
    return str(path) if path and os.path.isfile(path) else None


def static_export_available() -> bool:
    """Whether PNG/SVG/PDF export can work here: kaleido is importable and a browser found."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return find_browser() is not None


def figure_to_bytes(
    fig: go.Figure,
    fmt: str,
    *,
    scale: float = 2.0,
    timeout: float = 90.0,
) -> bytes:
    """Export ``fig`` as PNG, SVG, PDF or HTML bytes.

    PNG/SVG/PDF are rendered by kaleido in a headless Chrome/Chromium (see
    :func:`export_figure`); each call starts and closes one browser (a few seconds).
    HTML is a standalone page with plotly.js embedded (about 4.7 MB; works offline).

    Args:
        fig: the figure; its layout width/height set the image size (plotly's default
            700 x 500 otherwise).
        fmt: ``"png"``, ``"svg"``, ``"pdf"`` or ``"html"``.
        scale: PNG only: pixels per layout pixel (default 2, for print). Ignored otherwise.
        timeout: seconds kaleido waits for one render. Default 90.

    Returns:
        the file's bytes.

    Raises:
        ValueError: unknown format.
        StaticExportUnavailable: PNG/SVG/PDF asked for, but kaleido or a browser is missing.
        RuntimeError: the browser failed to render (kaleido's message inside).
    """
    fmt = fmt.lower()
    if fmt not in MIME_TYPES:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {list(MIME_TYPES)}")
    if fmt == "html":
        html = fig.to_html(include_plotlyjs=True, full_html=True,
                           config={"displaylogo": False, "responsive": False})
        return html.encode("utf-8")
    return export_figure(fig, (fmt,), scale=scale, timeout=timeout)[fmt]


def export_figure(
    fig: go.Figure,
    formats: Sequence[str] = STATIC_FORMATS,
    *,
    scale: float = 2.0,
    timeout: float = 90.0,
) -> dict[str, bytes]:
    """Render ``fig`` to several static formats with one browser session.

    kaleido (1.x) drives a headless Chrome/Chromium through choreographer. gradviz passes
    it the executable that :func:`find_browser` finds (``BROWSER_PATH``, else
    ``chromium`` / ``chrome`` on ``PATH`` or in the usual places, e.g.
    ``/usr/bin/chromium``) and turns MathJax off, so nothing is fetched from the network
    (kaleido's plotly.js comes from the installed plotly package). The rendering runs in
    its own thread and event loop, so it also works inside Streamlit or Jupyter.

    Args:
        fig: the figure (its layout width/height give the size; 700 x 500 otherwise).
        formats: any of ``"png"``, ``"svg"``, ``"pdf"``. Default all three.
        scale: PNG pixels per layout pixel. Default 2.
        timeout: seconds kaleido waits for one render. Default 90.

    Returns:
        format -> bytes.

    Raises:
        ValueError: a format that is not static (``"html"``: use :func:`figure_to_bytes`).
        StaticExportUnavailable: kaleido or a browser is missing.
        RuntimeError: the browser failed to render (kaleido's message inside).
    """
    formats = [f.lower() for f in formats]
    bad = [f for f in formats if f not in STATIC_FORMATS]
    if bad:
        raise ValueError(f"not a static export format: {bad}; choose from {list(STATIC_FORMATS)}")
    try:
        import kaleido
    except ImportError as err:
        raise StaticExportUnavailable("PNG/SVG/PDF export needs the kaleido package") from err
    browser = find_browser()
    if browser is None:
        raise StaticExportUnavailable(
            "PNG/SVG/PDF export needs Chrome or Chromium, and none was found: install one "
            "(e.g. apt install chromium) or set BROWSER_PATH to its executable. HTML export "
            "works without it."
        )
    fig_dict = fig.to_dict()
    size = dict(width=fig.layout.width or 700, height=fig.layout.height or 500)

    async def render() -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        async with kaleido.Kaleido(n=1, timeout=timeout, path=browser, mathjax=False) as k:
            for f in formats:
                opts = dict(format=f, scale=scale if f == "png" else 1, **size)
                out[f] = bytes(await k.calc_fig(fig_dict, opts=opts))
        return out

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = asyncio.run(render())
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = err

    thread = threading.Thread(target=run, name="gradviz-kaleido", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        err = result["error"]
        raise RuntimeError(f"static export ({', '.join(formats)}) with {browser} failed: {err}") from err
    return result["value"]


# ---------------------------------------------------------------------------- the numbers


def _npz_bytes(**arrays: Any) -> bytes:
    """``arrays`` as compressed ``.npz`` bytes."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A header and rows as CSV bytes (UTF-8, ``\n`` line ends)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _json(settings: Optional[dict]) -> np.ndarray:
    """Settings as a 0-d str array of JSON (``{}`` for None)."""
    return np.array(json.dumps(settings or {}))


def _columns(curves: Mapping[str, ArrayLike], names: Sequence[str], prefix: str = "") -> list[tuple[str, np.ndarray]]:
    """(``prefix + name``, the 1-D values of ``curves[name]``) for each of ``names``."""
    return [(prefix + n, as_array(curves[n]).reshape(-1)) for n in names]


def _stack(values: Mapping[str, ArrayLike], names: Sequence[str], dtype=np.float64) -> np.ndarray:
    """``values[name]`` for each of ``names``, stacked on a new first axis, as ``dtype``."""
    return np.stack([as_array(values[n], dtype) for n in names])


# -- Gradients page


def grid_to_npz(grid: "GradientGrid") -> bytes:
    """The numbers of a gradient grid as ``.npz`` bytes (compressed; no pickled objects).

    Keys (N images, M models in ``model_names`` order, K classes):

    - ``x``: (N, C, H, W) float32 in [0, 1], the images;
    - ``labels``: (N,) int64, -1 where unknown; ``names``: (N,) str;
    - ``model_names``: (M,) str;
    - ``attributions``: (M, N, C, H, W) float32, signed, before any display step;
    - ``maps``: (M, N, C', H, W) float32, the display maps (C' = 1 after a reduction);
    - ``logits``, ``probabilities``: (M, N, K) float32; ``predictions``, ``targets``:
      (M, N) int64;
    - ``settings``: 0-d str, JSON of the settings (method, objective, target choice,
      class index, channel reduction, clip, scaling, method options).

    Args:
        grid: from :func:`gradviz.gradients.compute_gradient_grid`.

    Returns:
        the file's bytes; ``np.load(io.BytesIO(data), allow_pickle=False)`` reads them.
    """
    names = grid.model_names
    return _npz_bytes(
        x=grid.x.numpy().astype(np.float32),
        labels=grid.labels.numpy().astype(np.int64),
        names=np.array(grid.names, dtype=str),
        model_names=np.array(names, dtype=str),
        attributions=_stack(grid.attributions, names, np.float32),
        maps=_stack(grid.maps, names, np.float32),
        logits=_stack(grid.logits, names, np.float32),
        probabilities=_stack(grid.probabilities, names, np.float32),
        predictions=_stack(grid.predictions, names, np.int64),
        targets=_stack(grid.targets, names, np.int64),
        settings=np.array(json.dumps(grid.settings())),
    )


# -- Attack page


def curves_to_csv(eps_grid: ArrayLike, curves: Mapping[str, ArrayLike],
                  eps50: Optional[Mapping[str, float]] = None) -> bytes:
    """Accuracy-vs-eps curves as CSV bytes.

    Args:
        eps_grid: (G,) radii in [0, 1] pixel units.
        curves: model name -> (G,) accuracies in [0, 1].
        eps50: model name -> eps50 (pixel units), or None: no eps50 row.

    Returns:
        columns ``eps`` then one per model (accuracy in [0, 1], 6 significant digits); with
        ``eps50``, a last row ``eps50`` (``nan``: the curve does not cross 50 % inside the
        grid, see :func:`gradviz.attacks.eps50`, or no value for that model; ``inf`` from
        older cards: above the grid).
    """
    grid = as_array(eps_grid).reshape(-1)
    names = list(curves)
    cols = [c for _, c in _columns(curves, names)]
    rows = [[f"{e:.6g}", *(f"{c[g]:.6g}" for c in cols)] for g, e in enumerate(grid)]
    if eps50 is not None:
        rows.append(["eps50", *(f"{float(eps50.get(n, float('nan'))):.6g}" for n in names)])
    return _csv_bytes(["eps", *names], rows)


def attack_to_npz(results: Mapping[str, "AttackResult"]) -> bytes:
    """The numbers of one attack per model as ``.npz`` bytes (no pickled objects).

    Keys (M models in order, N images, C x H x W, K classes, S steps): ``model_names`` (M,);
    ``x`` (N, C, H, W); ``labels``, ``y`` (N,) int64; ``x_adv`` (M, N, C, H, W);
    ``probs_before``, ``probs_after`` (M, N, K); ``loss``, ``norm`` (M, S + 1, N);
    ``logits`` (M, S + 1, N, K) (all float32); ``settings`` 0-d str (JSON per model).

    Args:
        results: model name -> :class:`gradviz.attacks.AttackResult` of the same images
            (from :func:`gradviz.attacks.run_attack`).

    Raises:
        ValueError: no model.
    """
    names = list(results)
    if not names:
        raise ValueError("results must hold at least one model's attack")
    first = results[names[0]]

    def stack(f) -> np.ndarray:
        return np.stack([f(results[n]).numpy() for n in names]).astype(np.float32)

    return _npz_bytes(
        model_names=np.array(names, dtype=str),
        x=first.x.numpy().astype(np.float32),
        labels=first.labels.numpy().astype(np.int64),
        y=first.y.numpy().astype(np.int64),
        x_adv=stack(lambda r: r.x_adv),
        probs_before=stack(lambda r: r.probs_before),
        probs_after=stack(lambda r: r.probs_after),
        loss=stack(lambda r: r.trace.loss),
        norm=stack(lambda r: r.trace.norm),
        logits=stack(lambda r: r.trace.logits),
        settings=np.array(json.dumps({n: results[n].settings for n in names})),
    )


def sweep_to_npz(x: ArrayLike, images: Mapping[str, ArrayLike], classes: Sequence[int],
                 settings: Optional[dict] = None, *, probs: Optional[Mapping[str, ArrayLike]] = None,
                 min_eps: Optional[Mapping[str, ArrayLike]] = None, eps_grid: Optional[Sequence[float]] = None,
                 reached: Optional[Mapping[str, ArrayLike]] = None) -> bytes:
    """A PAG sweep (:func:`gradviz.attacks.targeted_class_sweep`, or the smallest-eps search
    :func:`gradviz.attacks.smallest_target_eps`) as ``.npz`` bytes: ``x`` (C, H, W),
    ``model_names`` (M,), ``classes`` (K,) int64, ``images`` (M, K, C, H, W) float32 in
    [0, 1], ``settings`` 0-d str (JSON); where given, ``probs`` (M, K) the target's
    probability, ``min_eps`` (M, K) the smallest reaching eps (NaN: none in the grid),
    ``eps_grid`` (G,) and ``reached`` (M, K, G) bool.

    Raises:
        ValueError: ``x`` not one image with 1 or 3 channels.
    """
    names = list(images)
    extra = {}
    if probs is not None:
        extra["probs"] = _stack(probs, names)
    if min_eps is not None:
        extra["min_eps"] = _stack(min_eps, names)
    if eps_grid is not None:
        extra["eps_grid"] = np.asarray(list(eps_grid), dtype=np.float64)
    if reached is not None:
        extra["reached"] = np.stack([np.asarray(reached[n], dtype=bool) for n in names])
    return _npz_bytes(
        x=chw(x, "x", channels=(1, 3)).astype(np.float32),
        model_names=np.array(names, dtype=str),
        classes=np.asarray(list(classes), dtype=np.int64),
        images=_stack(images, names, np.float32),
        settings=_json(settings),
        **extra,
    )


# -- Inequality page


def image_to_npz(x: ArrayLike, attributions: Mapping[str, ArrayLike], *, block: Optional[int] = None,
                 settings: Optional[dict] = None) -> bytes:
    """One image's numbers as ``.npz`` bytes: ``x`` (C, H, W), ``model_names`` (M,),
    ``attributions`` (M, C, H, W) float32 signed, ``gini`` (M,) in [0, 1],
    ``regional_gini`` (M,) (NaN without ``block``), ``lorenz_fractions`` (n + 1,),
    ``lorenz_shares`` (M, n + 1) (n = C*H*W; :func:`gradviz.inequality.lorenz_curve`),
    ``settings`` 0-d str (JSON).

    Raises:
        ValueError: an array that is not one image; ``block`` not dividing H and W.
    """
    names = list(attributions)
    a = np.stack([chw(attributions[n], n) for n in names])
    t = torch.from_numpy(a)
    f, s = lorenz_curve(t)
    return _npz_bytes(
        x=chw(x, "x").astype(np.float32), model_names=np.array(names, dtype=str),
        attributions=a.astype(np.float32), gini=gini(t).numpy(),
        regional_gini=regional_gini(t, block).numpy() if block else np.full(len(names), np.nan),
        lorenz_fractions=f.numpy(), lorenz_shares=s.numpy(), settings=_json(settings),
    )


def gini_to_csv(indices: Sequence[int], global_gini: Mapping[str, ArrayLike],
                regional: Optional[Mapping[str, ArrayLike]] = None,
                among: Optional[ArrayLike] = None) -> bytes:
    """Per-image Gini as CSV bytes: ``index``, ``common_correct`` (0/1, when ``among`` is
    given), then ``gini <model>`` and (with ``regional``) ``regional <model>`` columns.

    Args:
        indices: (N,) dataset indices, one row each.
        global_gini, regional: model name -> (N,) Gini per image in [0, 1].
        among: (N,) bool, the images every model classifies correctly, or None.
    """
    names = list(global_gini)
    cols = _columns(global_gini, names, "gini ") + (_columns(regional, names, "regional ") if regional else [])
    am = None if among is None else np.asarray(among, dtype=bool).reshape(-1)
    header = ["index"] + (["common_correct"] if am is not None else []) + [c for c, _ in cols]
    rows = ([int(idx)] + ([int(am[r])] if am is not None else []) + [f"{v[r]:.6g}" for _, v in cols]
            for r, idx in enumerate(indices))
    return _csv_bytes(header, rows)


def noise_to_csv(k_counts: Sequence[int], n_features: int, inductive: Mapping[str, ArrayLike],
                 random: Optional[Mapping[str, ArrayLike]] = None) -> bytes:
    """Error rates under noise as CSV bytes: ``k``, ``k_percent`` (100 k / ``n_features``),
    then ``inductive <model>`` and (with ``random``) ``random <model>`` (fractions in [0, 1]).

    Args:
        k_counts: (K,) numbers of noised features, one row each.
        n_features: C*H*W, the number of features of an image.
        inductive, random: model name -> (K,) error rates.
    """
    names = list(inductive)
    cols = _columns(inductive, names, "inductive ") + (_columns(random, names, "random ") if random else [])
    rows = ([int(k), f"{100 * k / n_features:.6g}"] + [f"{v[r]:.6g}" for _, v in cols]
            for r, k in enumerate(k_counts))
    return _csv_bytes(["k", "k_percent"] + [c for c, _ in cols], rows)


def occlusion_to_csv(radii: Sequence[int], errors: Mapping[str, ArrayLike]) -> bytes:
    """Occlusion error rates as CSV bytes: ``radius`` (pixels) then one column per model
    (error rate in [0, 1] with radius <= r).

    Args:
        radii: (R,) radii, one row each.
        errors: model name -> (R,) error rates.
    """
    names = list(errors)
    cols = [c for _, c in _columns(errors, names)]
    return _csv_bytes(["radius", *names], ([int(rad)] + [f"{c[r]:.6g}" for c in cols] for r, rad in enumerate(radii)))


def examples_to_npz(x: ArrayLike, images: Mapping[str, Mapping[str, ArrayLike]],
                    settings: Optional[dict] = None) -> bytes:
    """Example perturbed images as ``.npz`` bytes: ``x`` (C, H, W), ``model_names`` (M,),
    ``variants`` (V,), ``images`` (M, V, C, H, W) float32, ``settings`` 0-d str (JSON).

    Args:
        x: the clean image (C, H, W) or (1, C, H, W) in [0, 1].
        images: model name -> {variant title -> perturbed image (C, H, W)}; the first
            model's variants name the columns.

    Raises:
        ValueError: an array that is not one image; KeyError: a model without one of the
            first model's variants.
    """
    names = list(images)
    variants = list(images[names[0]]) if names else []
    return _npz_bytes(
        x=chw(x, "x").astype(np.float32), model_names=np.array(names, dtype=str),
        variants=np.array(variants, dtype=str),
        images=np.stack([np.stack([chw(images[n][v], v) for v in variants]) for n in names]).astype(np.float32),
        settings=_json(settings),
    )


# -- Alignment page


def residual_figure_to_npz(x: ArrayLike, dx_hat: ArrayLike, gradients: Mapping[str, ArrayLike], *,
                           targets: Sequence[int], labels: Sequence[int], indices: Optional[Sequence[int]] = None,
                           dx_true: Optional[ArrayLike] = None, alphas: Optional[Mapping[str, ArrayLike]] = None,
                           settings: Optional[dict] = None) -> bytes:
    """The numbers of :func:`gradviz.viz.alignment.residual_figure` as ``.npz`` bytes:
    ``x``, ``dx_hat`` (N, C, H, W) float32, ``indices`` (default 0..N-1), ``labels``,
    ``targets`` (N,) int64, ``model_names`` (M,), ``gradients`` (M, N, C, H, W) float32
    (signed, unscaled), ``alpha_dx`` (M, N) (NaN where not given), ``dx_true`` (N, C, H, W)
    when given, ``settings`` 0-d str (JSON)."""
    xs = as_array(x, np.float32)
    names = list(gradients)
    n = len(xs)
    extra = {} if dx_true is None else {"dx_true": as_array(dx_true, np.float32)}
    return _npz_bytes(
        x=xs, dx_hat=as_array(dx_hat, np.float32),
        indices=np.asarray(range(n) if indices is None else indices, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64), targets=np.asarray(targets, dtype=np.int64),
        model_names=np.array(names, dtype=str),
        gradients=_stack(gradients, names, np.float32) if names else np.zeros((0, *xs.shape), np.float32),
        alpha_dx=np.stack([as_array(alphas[m]).reshape(-1) if alphas and m in alphas else np.full(n, np.nan)
                           for m in names]) if names else np.zeros((0, n)),
        settings=_json(settings), **extra,
    )


def alignment_to_csv(indices: Sequence[int], labels: Sequence[int], targets: Mapping[str, ArrayLike],
                     alpha_dx: Mapping[str, ArrayLike], alpha_x: Mapping[str, ArrayLike], *,
                     cos_true: Optional[ArrayLike] = None) -> bytes:
    """Per-image numbers as CSV bytes: ``index``, ``label``, then per model ``target <m>``
    (its closest class), ``alpha_dx <m>``, ``alpha_x <m>`` (cosines in [-1, 1] / [0, 1]);
    and ``cos_true`` (cos(dx_hat, dx_true)) when given.

    Args:
        indices, labels: (N,) one row per image.
        targets, alpha_dx, alpha_x: model name -> (N,) values (the models of ``alpha_dx``).
        cos_true: (N,) or None.
    """
    names = list(alpha_dx)
    cols: list[tuple[str, np.ndarray, str]] = []
    for m in names:
        cols += [(f"target {m}", as_array(targets[m]).reshape(-1), "d"),
                 (f"alpha_dx {m}", as_array(alpha_dx[m]).reshape(-1), "g"),
                 (f"alpha_x {m}", as_array(alpha_x[m]).reshape(-1), "g")]
    if cos_true is not None:
        cols.append(("cos_true", as_array(cos_true).reshape(-1), "g"))
    rows = ([int(i), int(y)] + [str(int(v[r])) if f == "d" else f"{v[r]:.6g}" for _, v, f in cols]
            for r, (i, y) in enumerate(zip(indices, labels)))
    return _csv_bytes(["index", "label"] + [c for c, _, _ in cols], rows)


def alignment_to_npz(indices: Sequence[int], labels: Sequence[int], targets: Mapping[str, ArrayLike],
                     alpha_dx: Mapping[str, ArrayLike], alpha_x: Mapping[str, ArrayLike], *,
                     cos_true: Optional[ArrayLike] = None, alpha_true: Optional[Mapping[str, ArrayLike]] = None,
                     settings: Optional[dict] = None) -> bytes:
    """Per-image numbers as ``.npz`` bytes (M models in order, N images): ``model_names``
    (M,), ``indices``, ``labels`` (N,) int64, ``targets`` (M, N) int64, ``alpha_dx``,
    ``alpha_x`` (M, N), ``alpha_dx_true`` (M, N) (NaN without ``alpha_true``), ``cos_true``
    (N,) (NaN without it), ``settings`` 0-d str (JSON)."""
    names = list(alpha_dx)
    n = len(indices)
    flat = {key: np.stack([c for _, c in _columns(values, names)]) for key, values in
            (("targets", targets), ("alpha_dx", alpha_dx), ("alpha_x", alpha_x))}
    return _npz_bytes(
        model_names=np.array(names, dtype=str), indices=np.asarray(indices, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64), targets=flat["targets"].astype(np.int64),
        alpha_dx=flat["alpha_dx"], alpha_x=flat["alpha_x"],
        alpha_dx_true=np.stack([as_array(alpha_true[m]).reshape(-1) if alpha_true and m in alpha_true
                                else np.full(n, np.nan) for m in names]),
        cos_true=as_array(cos_true).reshape(-1) if cos_true is not None else np.full(n, np.nan),
        settings=_json(settings),
    )


# -- Models page


def snapshots_to_npz(runs: Mapping[str, "Snapshots"], *, logs: Optional[Mapping[str, Sequence[dict]]] = None,
                     settings: Optional[dict] = None) -> bytes:
    """The numbers of the snapshot figures (:func:`gradviz.viz.models.snapshot_grid_figure`,
    ``snapshot_strip_figure``, ``snapshot_animation_figure``) as ``.npz`` bytes: every epoch
    of every model, not only the ones shown.

    Keys (M models in order, E epochs = every epoch any model has, K images):

    - ``model_names`` (M,) str; ``epochs`` (E,) int64 (0: before training); ``dataset`` 0-d str;
    - ``images`` (K, C, H, W) float32 in [0, 1]; ``labels``, ``indices`` (K,) int64 (the
      true classes; positions in the test split);
    - ``has_snapshot`` (M, E) bool: whether that model has that epoch;
    - ``input_gradients`` (M, E, K, C, H, W) float32, signed, before any display step (NaN
      where ``has_snapshot`` is False);
    - ``predictions`` (M, E, K) int64 (-1 where missing); ``probabilities`` (M, E, K)
      float32, the softmax probability of the prediction (NaN where missing);
    - ``clean_accuracy``, ``robust_accuracy`` (M, E) float64: the held-out accuracies the
      ``logs`` measured after each epoch, fractions (NaN where not measured);
    - ``settings`` 0-d str (JSON).

    Args:
        runs: model name -> :class:`gradviz.training.snapshots.Snapshots` of the same images.
        logs: model name -> its card's ``log``; default none (accuracies all NaN).
        settings: what the figure showed (scaling, epoch, ...), stored as JSON.

    Raises:
        ValueError: as :func:`gradviz.viz.models.snapshot_images` (no runs, runs of different
            images, a run without a snapshot).
    """
    first, _ = snapshot_images(runs)
    names, epochs = list(runs), snapshot_epochs(runs)
    m, e, k = len(names), len(epochs), int(first.labels.shape[0])
    has = np.zeros((m, e), dtype=bool)
    grads = np.full((m, e, *first.images.shape), np.nan, dtype=np.float32)
    preds = np.full((m, e, k), -1, dtype=np.int64)
    probs = np.full((m, e, k), np.nan, dtype=np.float32)
    acc = np.full((2, m, e), np.nan)
    for i, name in enumerate(names):
        s = runs[name]
        for j, epoch in enumerate(epochs):
            rows = np.flatnonzero(s.epochs == epoch)
            if rows.size:
                has[i, j] = True
                grads[i, j], preds[i, j], probs[i, j] = (s.input_gradients[rows[0]], s.predictions[rows[0]],
                                                         s.probabilities[rows[0]])
            acc[:, i, j] = [np.nan if v is None else v for v in epoch_accuracies((logs or {}).get(name, ()), epoch)]
    return _npz_bytes(
        model_names=np.array(names, dtype=str), epochs=np.asarray(epochs, dtype=np.int64),
        dataset=np.array(first.dataset), images=first.images.astype(np.float32),
        labels=first.labels.astype(np.int64), indices=first.indices.astype(np.int64), has_snapshot=has,
        input_gradients=grads, predictions=preds, probabilities=probs, clean_accuracy=acc[0],
        robust_accuracy=acc[1], settings=_json(settings),
    )
