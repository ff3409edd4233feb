"""Figure builders of the Attack page (gradviz.viz.attack): panels, amplification, loss
traces, accuracy-vs-eps with eps50, the PAG grid. Their numbers: test_viz_export."""

import numpy as np
import pytest
import torch

from gradviz import attacks
from gradviz.viz.attack import accuracy_vs_eps_figure, attack_panels_figure, loss_trace_figure, pag_grid_figure


def _images(n: int = 4) -> torch.Tensor:
    """n seeded (1, 8, 8) images in [0, 1]."""
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_attack_panels_figure():
    x = _images()
    x0, adv_a, adv_b = x[0], (x[0] + 0.1).clamp(0, 1), (x[0] - 0.05).clamp(0, 1)
    fig = attack_panels_figure(
        x0, {"mnist-5k/standard": adv_a, "mnist-5k/pgd-linf": adv_b}, label=3,
        before={"mnist-5k/standard": (3, 0.99), "mnist-5k/pgd-linf": (3, 0.9)},
        after={"mnist-5k/standard": (5, 0.8), "mnist-5k/pgd-linf": (3, 0.7)},
    )
    assert len(fig.data) == 6
    heat = fig.data[2]
    assert heat.coloraxis == "coloraxis" and fig.layout.coloraxis.cmid == 0
    assert fig.layout.coloraxis.cmin == -1 and fig.layout.coloraxis.cmax == 1
    amp = fig.layout.meta["amplify"]
    assert amp == pytest.approx(10.0, rel=1e-5)  # 1 / max |delta| = 1 / 0.1
    np.testing.assert_allclose(np.asarray(heat.customdata), (adv_a - x0)[0].numpy(), atol=1e-7)
    titles = [a.text for a in fig.layout.annotations]
    assert any("× 10" in t for t in titles)
    assert "× 10" in fig.layout.coloraxis.colorbar.title.text and "±0.1" in fig.layout.coloraxis.colorbar.title.text
    assert any("standard: x → 3 (99.0 %)" in t for t in titles)
    assert any("x_adv →" in t and "5 (80.0 %)" in t and "color" in t for t in titles)  # wrong: red


def test_attack_panels_figure_rgb_and_errors():
    x = torch.rand(3, 8, 8) * 0.5
    fig = attack_panels_figure(x, {"m": x + 0.01}, amplify=20)
    assert fig.data[0].type == "image" and fig.data[2].type == "heatmap"
    assert any("channel mean" in a.text for a in fig.layout.annotations)
    with pytest.raises(ValueError, match="amplify"):
        attack_panels_figure(x, {"m": x}, amplify=0)
    with pytest.raises(ValueError, match="shape"):
        attack_panels_figure(x, {"m": x[:1]})
    with pytest.raises(ValueError, match="at least one"):
        attack_panels_figure(x, {})


def test_loss_trace_figure():
    fig = loss_trace_figure({"a/standard": np.linspace(0.1, 3, 11), "a/pgd": np.ones((11, 4))}, targeted=True)
    assert [t.name for t in fig.data] == ["standard", "pgd"]
    assert list(fig.data[0].x) == list(range(11)) and "target" in fig.layout.yaxis.title.text
    with pytest.raises(ValueError):
        loss_trace_figure({"a": np.ones((2, 2, 2))})


def test_accuracy_vs_eps_figure():
    grid = [0.0, 0.1, 0.2, 0.3]
    curves = {"m/standard": [0.98, 0.3, 0.0, 0.0], "m/pgd-linf": [0.97, 0.9, 0.8, 0.7]}
    e50 = {k: attacks.eps50(grid, v) for k, v in curves.items()}
    fig = accuracy_vs_eps_figure(grid, curves, eps50=e50, per_255=True)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["standard", "pgd-linf"]
    np.testing.assert_allclose(lines[0].y, [98, 30, 0, 0])
    np.testing.assert_allclose(lines[0].x, np.array(grid) * 255)
    marks = [t for t in fig.data if t.name and t.name.startswith("eps50")]
    assert len(marks) == 1 and marks[0].x[0] == pytest.approx(e50["m/standard"] * 255)  # NaN (above the grid): unmarked
    with pytest.raises(ValueError, match="points"):
        accuracy_vs_eps_figure(grid, {"m": [1.0]})


def test_pag_grid_figure():
    imgs = {"m/standard": torch.rand(10, 1, 8, 8), "m/pgd": torch.rand(10, 1, 8, 8)}
    x = torch.rand(1, 1, 8, 8)
    fig = pag_grid_figure(imgs, [str(i) for i in range(10)], x=x,
                             probs={"m/standard": torch.full((10,), 0.5)})
    assert len(fig.data) == 2 * 11
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "x" and titles[1] == "→ 0<br>50 %" and titles[12] == "→ 0"
    assert fig.layout.yaxis.title.text == "<b>standard</b>" and fig.layout.yaxis12.title.text == "<b>pgd</b>"
    np.testing.assert_allclose(fig.data[1].z, imgs["m/standard"][0, 0].numpy())
    with pytest.raises(ValueError, match="same shape"):
        pag_grid_figure({"a": torch.rand(10, 1, 8, 8), "b": torch.rand(9, 1, 8, 8)})


def test_pag_grid_figure_prints_the_smallest_eps_above_each_image():
    imgs = {"m/standard": torch.rand(3, 1, 8, 8), "m/pgd-l2": torch.rand(3, 1, 8, 8)}
    fig = pag_grid_figure(imgs, ["0", "1", "2"], probs={"m/standard": [1.0, 0.61, 0.3], "m/pgd-l2": [1.0, 0.7, 0.2]},
                          eps={"m/standard": [0.0, 2.5, float("nan")], "m/pgd-l2": [0.0, 4.0, float("nan")]},
                          eps_max=10)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["→ 0<br>ε 0 · 100 %", "→ 1<br>ε 2.5 · 61 %", "→ 2<br>none ≤ ε 10 · 30 %",
                      "→ 0<br>ε 0 · 100 %", "→ 1<br>ε 4 · 70 %", "→ 2<br>none ≤ ε 10 · 20 %"]
    only_eps = pag_grid_figure({"m": torch.rand(2, 1, 8, 8)}, eps={"m": [1.5, float("nan")]})
    assert [a.text for a in only_eps.layout.annotations] == ["→ 0<br>ε 1.5", "→ 1<br>none ≤ ε max"]
