"""Time to build the interactive pages' image-grid figures, against plotly's subplot API.

The server builds one figure per page run while holding Python's GIL, so with several
sessions the figures of all of them take turns (issue 14). gradviz builds its image grids
(:func:`gradviz.viz.gradients.gradient_grid_figure`, :func:`gradviz.viz.attack.attack_panels_figure`)
as one layout dictionary and one ``go.Figure(data, layout)`` call (gradviz.viz.common). The
reference, measured in the same run, is the same grid made the usual way: ``make_subplots``
with subplot titles, ``add_trace(row=, col=)`` per panel, ``update_xaxes`` / ``update_yaxes``
for the image axes and a square-pixel anchor per panel (what gradviz did before), on the same
traces and layout settings. Both figures are
checked to place the same traces on the same domains before the timing.

    python bench/bench_figures.py                 # Gradients grid: 8 images x 2 models
    python bench/bench_figures.py --images 16 --models 4

Target: the gradviz figure takes at most 0.3x the reference's time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._report import result  # noqa: E402


def reference_builder(fig):
    """A function that rebuilds ``fig`` (an image grid) with make_subplots and per-panel
    updates, from the trace and layout settings read out of ``fig`` beforehand (not timed)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layout = fig.layout.to_plotly_json()
    n_x = sum(1 for k in layout if k.startswith("xaxis"))
    ax = lambda kind, k: layout[f"{kind}axis{'' if k == 1 else k}"]  # noqa: E731
    cols = len({tuple(ax("x", k)["domain"]) for k in range(1, n_x + 1)})
    rows = n_x // cols
    h = ax("x", 2)["domain"][0] - ax("x", 1)["domain"][1] if cols > 1 else 0.0
    v = ax("y", 1)["domain"][0] - ax("y", 1 + cols)["domain"][1] if rows > 1 else 0.0
    titles = [a["text"] for a in layout["annotations"]]
    font = layout["annotations"][0].get("font") if titles else None
    specs = []
    for trace in fig.data:
        spec = trace.to_plotly_json()
        spec.pop("xaxis", None), spec.pop("yaxis", None)
        specs.append(spec)
    axis = {key: val for key, val in layout["xaxis"].items() if key not in ("domain", "anchor")}
    rest = {key: val for key, val in layout.items() if not key.startswith(("xaxis", "yaxis")) and key != "annotations"}

    def build():
        ref = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=h, vertical_spacing=v)
        for k, spec in enumerate(specs):
            ref.add_trace((go.Heatmap if spec["type"] == "heatmap" else go.Image)(spec),
                          row=k // cols + 1, col=k % cols + 1)
        ref.update_xaxes(axis)
        ref.update_yaxes(dict(axis, autorange="reversed"))
        for k in range(1, n_x + 1):
            ref.layout[f"yaxis{'' if k == 1 else k}"].scaleanchor = f"x{'' if k == 1 else k}"
        ref.update_layout(rest)
        for a in ref.layout.annotations:
            a.font = font
        return ref

    return build


def same_panels(a, b) -> bool:
    """Whether two grids place the same number of traces on the same axis domains."""
    ja, jb = a.layout.to_plotly_json(), b.layout.to_plotly_json()
    keys = sorted(k for k in ja if k.startswith(("xaxis", "yaxis")))
    return len(a.data) == len(b.data) and all(np.allclose(ja[k]["domain"], jb[k]["domain"]) for k in keys)


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(fastest, median) seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--models", type=int, default=2, help="the first N shipped mnist-5k models")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import torch

    from gradviz import data, zoo
    from gradviz.attacks import run_attack
    from gradviz.gradients import compute_gradient_grid
    from gradviz.viz.attack import attack_panels_figure
    from gradviz.viz.gradients import gradient_grid_figure

    torch.set_num_threads(1)
    ds = data.load_dataset("mnist-5k", "test")
    names = [c.name for c in zoo.list_models("mnist-5k", include_user=False)][: args.models]
    models = {n: zoo.load_model(n) for n in names}
    idx = list(range(args.images))
    grid = compute_gradient_grid(models, ds.x[idx], ds.y[idx], names=[f"test #{i}" for i in idx])
    attacks = {n: run_attack(m, ds.x[:1], ds.y[:1], eps=0.3, norm="linf", steps=10) for n, m in models.items()}
    x_adv = {n: r.x_adv[0] for n, r in attacks.items()}
    cases = {
        f"gradient grid ({args.images} images x {len(names)} models)":
            lambda: gradient_grid_figure(grid, ds.classes),
        f"attack panels ({len(names)} models x 3)":
            lambda: attack_panels_figure(ds.x[0], x_adv, label=int(ds.y[0])),
    }
    ok = True
    for what, build in cases.items():
        fig = build()
        reference = reference_builder(fig)
        if not same_panels(fig, reference()):
            print(f"{what}: the reference does not place the same panels; no timing")
            return 2
        ours_best, ours_med = best_of(build, args.repeats)
        ref_best, ref_med = best_of(reference, args.repeats)
        print(f"{what}: gradviz {1e3 * ours_best:.1f} ms (median {1e3 * ours_med:.1f}), make_subplots reference "
              f"{1e3 * ref_best:.1f} ms (median {1e3 * ref_med:.1f}); best of {args.repeats}")
        met = result(f"figures: {what.split(' (')[0]} / make_subplots", ours_best / ref_best, op="<=", target=0.3,
                     what="one figure built, gradviz over the make_subplots reference")
        ok = ok and bool(met)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
