"""gradviz.attacks.smallest_target_eps: the smallest eps of a grid at which a targeted attack
reaches each class (the perceptually-aligned-gradients view, docs/methods.md section 2.4),
on a linear model whose answer is known in closed form, and row by row against pgd()."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradviz import attacks


class _Linear(nn.Module):
    """f(x) = W x + b on flattened images."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)

    def forward(self, x):
        return self.lin(x.flatten(1))


def _two_class():
    """Two classes on 1 x 8 x 8 images at 0.5, w_1 - w_0 = 0.1 * (random signs): the smallest
    l_2 change that makes class 1 win is the margin over |w_1 - w_0| = 0.8, 1.5 here, and
    up to 2 * 1.5 every pixel moves by at most 3 / 8 < 0.5 (no clamping to [0, 1])."""
    g = torch.Generator().manual_seed(0)
    signs = torch.randint(0, 2, (64,), generator=g).float() * 2 - 1
    w = torch.stack([torch.zeros(64), 0.1 * signs])
    b = torch.tensor([1.2 + 0.1 * 0.5 * float(signs.sum()), 0.0])  # margin 1.2 at x = 0.5
    x = torch.full((1, 1, 8, 8), 0.5)
    with torch.no_grad():
        logits = _Linear(w, b)(x)[0]
    margin = float(logits[0] - logits[1])
    distance = margin / float((w[1] - w[0]).norm())
    return _Linear(w, b).eval(), x, margin, distance


def test_the_smallest_eps_is_the_first_grid_radius_past_the_linear_distance():
    model, x, margin, d = _two_class()
    assert margin == pytest.approx(1.2) and d == pytest.approx(1.5)  # class 0 wins clean; class 1 lies d away
    grid = sorted({0.0, round(d * 0.5, 3), round(d * 0.9, 3), round(d * 1.1, 3), round(d * 2, 3)})
    res = attacks.smallest_target_eps(model, x, grid, steps=60)
    assert res.eps_grid.tolist() == grid and res.classes.tolist() == [0, 1]
    assert res.images.shape == (2, len(grid), 1, 8, 8) and res.probs.shape == res.reached.shape == (2, len(grid))
    # class 0, the prediction, is reached by the clean image (eps 0); class 1 just past d
    assert res.min_eps[0] == 0.0
    assert res.min_eps[1] == pytest.approx(round(d * 1.1, 3))
    assert res.reached[1].tolist() == [g > d for g in grid]
    assert res.first_index.tolist() == [0, grid.index(round(d * 1.1, 3))]
    images, probs = res.at_min_eps()
    assert images.shape == (2, 1, 8, 8) and torch.equal(images[0], x[0])
    assert float((images[1] - x[0]).norm()) <= round(d * 1.1, 3) * (1 + 1e-5)
    assert probs[1] > 0.5 and model(images[1:2]).argmax(1).item() == 1
    # the perturbation follows the known direction w_1 - w_0
    w = model.lin.weight.detach()
    cos = torch.nn.functional.cosine_similarity((images[1] - x[0]).flatten(), w[1] - w[0], dim=0)
    assert cos > 0.999


def test_a_target_out_of_the_grid_is_nan_and_its_image_is_the_largest_radius():
    model, x, _, d = _two_class()
    grid = [0.0, d * 0.3, d * 0.6]
    res = attacks.smallest_target_eps(model, x, grid, steps=20)
    assert math.isnan(res.min_eps[1]) and res.first_index[1] == -1
    images, probs = res.at_min_eps()
    torch.testing.assert_close(images[1], res.images[1, -1])
    assert probs[1] < 0.5


def test_confidence_asks_for_a_larger_eps():
    model, x, _, d = _two_class()
    grid = [0.0, d * 1.05, d * 1.5, d * 3, d * 6]
    loose = attacks.smallest_target_eps(model, x, grid, steps=60)
    strict = attacks.smallest_target_eps(model, x, grid, steps=60, confidence=0.75)
    assert loose.min_eps[1] == pytest.approx(d * 1.05)
    assert strict.min_eps[1] == pytest.approx(d * 3)  # p(1) = sigmoid(0.8 eps - 1.2) >= 0.75 from eps 2.87
    assert (strict.probs[strict.reached] >= 0.75).all()


def _mlp(seed=0, k=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, k)).eval()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_every_row_is_the_pgd_attack_with_its_own_radius(norm):
    model = _mlp()
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    grid = [0.0, 0.3, 1.0] if norm == "l2" else [0.0, 0.05, 0.2]
    res = attacks.smallest_target_eps(model, x, grid, steps=7, classes=[3, 8], norm=norm, batch_size=4)
    for i, c in enumerate([3, 8]):
        for j, eps in enumerate(grid):
            one = attacks.pgd(model, x, torch.tensor([c]), eps=eps, norm=norm, steps=7, random_start=False,
                              targeted=True)
            torch.testing.assert_close(res.images[i, j], one[0], atol=1e-5, rtol=0)
            with torch.no_grad():
                p = torch.softmax(model(one), 1)[0]
            assert res.probs[i, j] == pytest.approx(float(p[c]), abs=1e-5)
            assert bool(res.reached[i, j]) == (int(p.argmax()) == c)


def test_the_model_is_left_as_it_was():
    model = _mlp().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 1, 8, 8)
    attacks.smallest_target_eps(model, x, [0.0, 1.0], steps=2)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_bad_input_is_refused():
    model, x = _mlp(), torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="one image"):
        attacks.smallest_target_eps(model, x, [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        attacks.smallest_target_eps(model, x[0], [])
    with pytest.raises(ValueError, match="ascending"):
        attacks.smallest_target_eps(model, x[0], [1.0, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        attacks.smallest_target_eps(model, x[0], [-1.0, 1.0])
    with pytest.raises(ValueError, match="l_inf eps above 1"):
        attacks.smallest_target_eps(model, x[0], [0.5, 2.0], norm="linf")
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 10\)"):
        attacks.smallest_target_eps(model, x[0], [1.0], classes=[10])
    with pytest.raises(ValueError, match="confidence"):
        attacks.smallest_target_eps(model, x[0], [1.0], confidence=1.0)
    with pytest.raises(ValueError, match="steps"):
        attacks.smallest_target_eps(model, x[0], [1.0], steps=0)


def test_default_grid_is_ascending_from_zero():
    grid = np.asarray(attacks.TARGET_EPS_GRID)
    assert grid[0] == 0 and (np.diff(grid) > 0).all()
