"""Tests for gradviz.inequality: Gini / Lorenz by hand and against Quantus, inductive noise
and occlusion on tiny hand-built models whose behaviour is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradviz import inequality as iq


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- Gini


def test_gini_of_a_constant_map_is_zero_and_of_an_all_zero_map_too():
    a = torch.full((3, 2, 5, 5), 0.7)
    a[1] = -0.2  # sign does not matter: |a| is constant
    assert torch.allclose(iq.gini(a), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert iq.gini(torch.zeros(2, 1, 4, 4)).tolist() == [0.0, 0.0]


def test_gini_of_a_one_hot_map_is_n_minus_one_over_n():
    a = torch.zeros(2, 3, 4, 4)
    a[0, 1, 2, 3] = 5.0
    a[1, 0, 0, 0] = -1e-6  # tiny and negative: still one entry holding everything
    n = 3 * 4 * 4
    assert torch.allclose(iq.gini(a), torch.full((2,), (n - 1) / n, dtype=torch.float64), atol=1e-12)


def test_gini_by_hand_and_its_range():
    # |a| = 1, 2, 3, 4 (shuffled, signed): G = (-3*1 - 1*2 + 1*3 + 3*4) / (4 * 10) = 0.25
    a = torch.tensor([[3.0, -1.0, 4.0, -2.0]])
    assert iq.gini(a).item() == pytest.approx(0.25, abs=1e-12)
    g = iq.gini(_randn(50, 1, 6, 6, seed=1) ** 3)
    assert bool(((g > 0) & (g < 35 / 36)).all())


def test_gini_is_scale_and_sign_invariant():
    a = _randn(6, 3, 8, 8, seed=2)
    g = iq.gini(a)
    for c in (1e-4, 3.0, -2.5, 1e5):
        assert torch.allclose(iq.gini(c * a), g, atol=1e-10)
    # ... but it does see the shape of the distribution
    assert not torch.allclose(iq.gini(a**3), g, atol=1e-3)


def test_gini_accepts_numpy_and_any_trailing_shape():
    a = np.random.default_rng(0).normal(size=(4, 10))
    assert torch.allclose(iq.gini(a), iq.gini(torch.as_tensor(a).reshape(4, 1, 2, 5)))


@pytest.mark.parametrize("shape", [(8, 1, 28, 28), (6, 3, 8, 8)])
def test_gini_agrees_with_quantus_sparseness(shape):
    import quantus  # test-only dependency (requirements-test.txt)

    rng = np.random.default_rng(sum(shape))
    x = rng.random(shape).astype(np.float32)
    a = (rng.normal(size=shape) * rng.exponential(size=shape)).astype(np.float32)
    y = np.zeros(shape[0], dtype=np.int64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape[1:])), 3)).eval()
    metric = quantus.Sparseness(abs=True, normalise=False, disable_warnings=True)
    expected = np.asarray(metric(model=model, x_batch=x, y_batch=y, a_batch=a.copy(), device="cpu"))
    # Quantus adds 1e-7 to every |a| entry before the same formula: agreement to ~1e-6.
    np.testing.assert_allclose(iq.gini(torch.from_numpy(a)).numpy(), expected, atol=2e-6)


def test_gini_refuses_bad_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        iq.gini(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="one map per image"):
        iq.gini(torch.ones(5))
    with pytest.raises(ValueError, match="floating point"):
        iq.gini(torch.ones(2, 5, dtype=torch.int64))


# ----------------------------------------------------------------------------- Lorenz


def test_lorenz_curve_endpoints_monotone_and_area_gives_gini():
    a = _randn(5, 2, 6, 6, seed=3) ** 3
    frac, shares = iq.lorenz_curve(a)
    n = 2 * 6 * 6
    assert frac.shape == (n + 1,) and shares.shape == (5, n + 1)
    assert frac[0] == 0 and frac[-1] == 1
    assert torch.allclose(shares[:, 0], torch.zeros(5, dtype=torch.float64))
    assert torch.allclose(shares[:, -1], torch.ones(5, dtype=torch.float64))
    assert bool((shares.diff(dim=1) >= -1e-15).all())
    assert bool((shares <= frac + 1e-12).all())  # below the line of equality
    area = torch.trapezoid(shares, frac, dim=1)
    assert torch.allclose(iq.gini(a), 1 - 2 * area, atol=1e-12)


def test_lorenz_curve_of_equal_and_zero_maps_is_the_diagonal():
    frac, shares = iq.lorenz_curve(torch.cat([torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)]))
    assert torch.allclose(shares, frac.expand(2, -1), atol=1e-12)


def test_lorenz_curve_subsampled_points_are_exact_points_of_the_curve():
    a = _randn(3, 1, 10, 10, seed=4)
    frac, shares = iq.lorenz_curve(a)
    f5, s5 = iq.lorenz_curve(a, points=5)
    j = torch.tensor([0, 25, 50, 75, 100])
    assert torch.equal(f5, frac[j]) and torch.equal(s5, shares[:, j])
    with pytest.raises(ValueError, match="points"):
        iq.lorenz_curve(a, points=1)


# ----------------------------------------------------------------------------- regional Gini


def test_regional_gini_by_hand():
    a = torch.zeros(1, 2, 4, 4)
    a[0, 0, :2, :2] = 1.0  # block (0, 0): 4
    a[0, 1, 3, 3] = -2.0  # block (1, 1): 2, through the second channel and |.|
    assert iq.block_sums(a, 2)[0].tolist() == [[4.0, 0.0], [0.0, 2.0]]
    # sorted 0, 0, 2, 4: G = (1*2 + 3*4) / (4 * 6) = 7/12
    assert iq.regional_gini(a, 2).item() == pytest.approx(7 / 12, abs=1e-12)
    # block 1 is the Gini of the channel-summed |a|, block = image size a single region
    assert torch.allclose(iq.regional_gini(a, 1), iq.gini(a.abs().sum(1)))
    assert iq.regional_gini(a, 4).item() == 0.0


def test_regional_gini_refuses_a_block_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match=r"block 5 does not divide the image size 28 x 28.*\[1, 2, 4, 7, 14, 28\]"):
        iq.regional_gini(torch.ones(1, 1, 28, 28), 5)
    with pytest.raises(ValueError, match="block must be an integer >= 1"):
        iq.regional_gini(torch.ones(1, 1, 28, 28), 0)
    with pytest.raises(ValueError, match="4-D"):
        iq.regional_gini(torch.ones(2, 28), 2)


# ----------------------------------------------------------------------------- inductive noise


def _images_and_attribution(n=4, c=2, h=5, w=5):
    x = 0.05 + 0.9 * _rand(n, c, h, w, seed=5)  # strictly inside (0, 1)
    attr = _randn(n, c, h, w, seed=6)
    attr[:, 0, 0, :] = -100.0  # the largest |a| is negative: must not count as "top"
    return x, attr


def test_resolve_k_counts_and_fractions():
    assert iq.resolve_k(8, 784) == 8
    assert iq.resolve_k(0.01, 784) == 7  # floor(7.84), as the IGD authors' int(n * thres)
    assert iq.resolve_k(0.29, 100) == 29  # not 28 from 0.29 * 100 = 28.999...
    assert iq.resolve_k(0.0001, 784) == 1  # at least one feature
    assert iq.resolve_k(1.0, 784) == 784
    for bad, msg in [(785, "larger than the number of features C\\*H\\*W = 784"), (0, "at least 1"),
                     (1.5, r"fraction .* \(0, 1\]"), (0.0, r"\(0, 1\]"), (float("nan"), r"\(0, 1\]"),
                     (True, "int count")]:
        with pytest.raises(ValueError, match=msg):
            iq.resolve_k(bad, 784)


def test_inductive_noise_replaces_exactly_the_top_k_by_signed_attribution():
    x, attr = _images_and_attribution()
    k = 7
    out, mask = iq.inductive_noise(x, attr, k, mode="replace", noise="uniform", seed=0, return_mask=True)
    changed = out != x
    assert changed.flatten(1).sum(1).tolist() == [k] * len(x)
    expected = torch.zeros_like(mask).flatten(1)
    expected.scatter_(1, attr.flatten(1).argsort(dim=1, descending=True)[:, :k], True)
    assert torch.equal(changed.flatten(1), expected) and torch.equal(mask.flatten(1), expected)
    assert not bool(mask[:, 0, 0, :].any())  # the large negative entries were left alone
    # U[min x, max x] per image
    lo = x.flatten(1).amin(1)[:, None]
    hi = x.flatten(1).amax(1)[:, None]
    vals = out.flatten(1)
    assert bool(((vals >= lo) & (vals <= hi)).all())


def test_inductive_noise_adds_normal_noise_and_clamps_to_the_image_range():
    x, attr = _images_and_attribution()
    out, mask = iq.inductive_noise(x, attr, 0.5, mode="add", noise="normal", seed=1, return_mask=True)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert bool(((out == 0) | (out == 1))[mask].any())  # N(0, 1) on [0, 1] pixels: clamping happened
    assert torch.equal(out[~mask], x[~mask])
    # without clamping the change is the N(0, 1) draw: where not clamped it is exact
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    inside = mask & (out > 0) & (out < 1)
    assert torch.allclose(out[inside], (x + z)[inside])


def test_random_baseline_picks_k_random_features_with_the_same_noise():
    x, attr = _images_and_attribution(n=6)
    k = 5
    top, m_top = iq.inductive_noise(x, attr, k, seed=3, return_mask=True)
    rnd, m_rnd = iq.inductive_noise(x, attr, k, seed=3, random=True, return_mask=True)
    assert m_rnd.flatten(1).sum(1).tolist() == [k] * 6
    assert not torch.equal(m_rnd, m_top)
    assert len({tuple(m.flatten().nonzero().flatten().tolist()) for m in m_rnd}) > 1  # differs per image
    both = m_top & m_rnd
    assert torch.equal(top[both], rnd[both])  # same noise values where both touched
    again = iq.inductive_noise(x, attr, k, seed=3, random=True)
    assert torch.equal(again, rnd)


def test_inductive_noise_refuses_bad_input():
    x, attr = _images_and_attribution()
    n = x[0].numel()
    with pytest.raises(ValueError, match=f"k = {n + 1} is larger than the number of features C\\*H\\*W = {n}"):
        iq.inductive_noise(x, attr, n + 1)
    with pytest.raises(ValueError, match="attribution must have the images' shape"):
        iq.inductive_noise(x, attr[:, :1], 3)
    bad = attr.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        iq.inductive_noise(x, bad, 3)
    with pytest.raises(ValueError, match="NaN"):
        iq.inductive_noise(torch.where(bad.isnan(), bad, x), attr, 3)
    with pytest.raises(ValueError, match="unknown noise mode"):
        iq.inductive_noise(x, attr, 3, mode="swap")
    with pytest.raises(ValueError, match="unknown noise"):
        iq.inductive_noise(x, attr, 3, noise="salt")


class PixelSensitive(nn.Module):
    """Two classes, 1 x 8 x 8 inputs: logit_1 = 1 - 1000 |x[5, 5] - 0.7|, logit_0 = 0.
    Class 1 exactly when pixel (5, 5) is within 0.001 of 0.7: any real change flips it."""

    def forward(self, x):
        l1 = 1 - 1000 * (x[:, 0, 5, 5] - 0.7).abs()
        return torch.stack([torch.zeros_like(l1), l1], dim=1)


def _pixel_images(n=40):
    x = 0.2 * _rand(n, 1, 8, 8, seed=7)
    x[:, 0, 5, 5] = 0.7
    x[n // 2 :, 0, 5, 5] = 0.0  # these are misclassified when clean
    y = torch.ones(n, dtype=torch.int64)
    attr = _randn(n, 1, 8, 8, seed=8)
    attr[:, 0, 5, 5] = 10.0  # the one top feature
    return x, y, attr


def test_noise_error_rate_counts_flips_among_correct_images_only():
    model = PixelSensitive()
    x, y, attr = _pixel_images()
    rates = iq.noise_error_rate(model, x, y, attr, [1, 3], seed=0)
    assert rates.tolist() == [1.0, 1.0]  # the top feature is the pixel the model reads
    base = iq.noise_error_rate(model, x, y, attr, [1], random=True, seed=0)
    assert base.item() < 0.2  # 1 of 64 random features rarely hits it; misclassified images not counted
    none = torch.zeros(len(x), dtype=torch.bool)
    assert np.isnan(iq.noise_error_rate(model, x, y, attr, [1], among=none).item())


# ----------------------------------------------------------------------------- inductive occlusion


def test_occlusion_mask_geometry():
    centres = torch.tensor([[[3, 4]], [[0, 0]]])
    m = iq.occlusion_mask(centres, 2, (8, 8))
    expected = torch.zeros(2, 8, 8, dtype=torch.bool)
    expected[0, 1:5, 2:6] = True  # [p - r, p + r) x [q - r, q + r)
    expected[1, 0:2, 0:2] = True  # clipped at the border
    assert torch.equal(m, expected)
    two = iq.occlusion_mask(torch.tensor([[[1, 1], [6, 6]]]), 1, (8, 8))[0]
    assert two.sum() == 8 and two[0:2, 0:2].all() and two[5:7, 5:7].all()


class TwoChannelPixel(nn.Module):
    """Two classes, 2 x 8 x 8: class 1 when x[0, 5, 5] + x[1, 5, 5] > 1."""

    def forward(self, x):
        s = x[:, 0, 5, 5] + x[:, 1, 5, 5]
        return torch.stack([torch.ones_like(s), s], dim=1)


def test_inductive_occlusion_first_breaking_setting_by_hand():
    x = torch.full((3, 2, 8, 8), 0.3)
    x[:, :, 5, 5] = 1.0
    x[2, :, 5, 5] = 0.4  # misclassified when clean: not counted
    y = torch.ones(3, dtype=torch.int64)
    attr = torch.zeros(3, 2, 8, 8)
    # image 0: the channel mean peaks at (5, 5); a per-channel max would pick (2, 2)
    attr[0, :, 5, 5] = 1.0
    attr[0, 0, 2, 2], attr[0, 1, 2, 2] = 1.5, -1.5
    # image 1: the top pixel is (0, 0), the second (7, 7)
    attr[1, :, 0, 0] = 3.0
    attr[1, :, 7, 7] = 2.0
    model = TwoChannelPixel()
    res = iq.inductive_occlusion(model, x, y, attr, n_pixels=range(1, 3), radii=range(1, 8))
    assert res.among.tolist() == [True, True, False]
    assert res.first_setting(0) == (1, 1)  # [4, 6) covers (5, 5) at r = 1
    # [p - r, p + r) around (0, 0) reaches (5, 5) at r = 6 (not 5: half-open); around (7, 7)
    # at r = 2 (rows [5, 9)); radius outer: the first breaking setting is n = 2, r = 2
    assert res.first_setting(1) == (2, 2)
    assert res.first_setting(2) is None and res.step[2] == -1
    assert res.settings[:3] == [(1, 1), (1, 2), (2, 1)]  # radius outer, n inner
    assert res.error_rate == 1.0
    small = iq.inductive_occlusion(model, x, y, attr, n_pixels=[1], radii=range(1, 6), colour=0.0)
    assert small.broken.tolist() == [True, False, False] and small.error_rate == 0.5
    assert small.first_setting(1) is None and small.radius[1] == 0 and small.n_pixels[1] == 0
    # a white occlusion keeps the sum > 1: nothing breaks
    white = iq.inductive_occlusion(model, x, y, attr, colour=1.0)
    assert white.error_rate == 0.0


def test_inductive_occlusion_refuses_bad_settings():
    x = torch.rand(2, 1, 8, 8)
    y = torch.zeros(2, dtype=torch.int64)
    attr = torch.rand(2, 1, 8, 8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with pytest.raises(ValueError, match="larger than the number of pixels H\\*W = 64"):
        iq.inductive_occlusion(model, x, y, attr, n_pixels=[65])
    with pytest.raises(ValueError, match="radii must hold integers >= 1"):
        iq.inductive_occlusion(model, x, y, attr, radii=[0])
    with pytest.raises(ValueError, match="colour"):
        iq.inductive_occlusion(model, x, y, attr, colour=2.0)
    with pytest.raises(ValueError, match="y must have shape"):
        iq.inductive_occlusion(model, x, y[:1], attr)


# ----------------------------------------------------------------------------- error rates


class Lookup(nn.Module):
    """Predicts a stored class for image i, where x[i] is filled with i / 100."""

    def __init__(self, preds):
        super().__init__()
        self.preds = torch.as_tensor(preds)

    def forward(self, x):
        idx = torch.round(x.flatten(1)[:, 0] * 100).long()
        return nn.functional.one_hot(self.preds[idx], 3).float()


def test_error_rate_over_images_every_model_classifies_correctly():
    x = (torch.arange(6).float() / 100).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    a = Lookup([0, 1, 2, 0, 0, 0])  # right on 0-3
    b = Lookup([0, 2, 2, 0, 1, 1])  # right on 0, 2, 3, 4
    among = iq.common_correct_mask({"a": a, "b": b}, x, y)
    assert among.tolist() == [True, False, True, True, False, False]
    assert iq.common_correct_mask(a, x, y).tolist() == [True] * 4 + [False] * 2
    perturbed = Lookup([1, 1, 2, 0, 1, 2])  # as if a perturbation flipped image 0 only
    assert iq.error_rate(perturbed, x, y, among) == pytest.approx(1 / 3)
    assert iq.error_rate(perturbed, x, y) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="bool mask"):
        iq.error_rate(perturbed, x, y, among.long())
    with pytest.raises(ValueError, match="models is empty"):
        iq.common_correct_mask([], x, y)


# ----------------------------------------------------------------------------- dataset Gini


def test_dataset_gini_of_a_linear_model_is_the_gini_of_its_weight_rows():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(7, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    rows = model[1].weight.detach()[y].view(7, 1, 4, 4)  # grad_x f_y = W[y]
    out = iq.dataset_gini(model, x, y, method="gradient", block=2, batch_size=3)
    assert torch.allclose(out["global"], iq.gini(rows), atol=1e-12)
    assert torch.allclose(out["regional"], iq.regional_gini(rows, 2), atol=1e-12)
    ig = iq.dataset_gini(model, x, y, n_steps=5)["global"]  # IG of a linear map: x * W[y]
    assert torch.allclose(ig, iq.gini(x * rows), atol=1e-5)
    with pytest.raises(ValueError, match="does not divide"):
        iq.dataset_gini(model, x, y, block=3)


def test_inductive_occlusion_matches_a_plain_per_image_per_setting_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 10 * 10, 3)).eval()
    x = torch.rand(12, 2, 10, 10)
    y = model(x).argmax(1)  # all correct when clean
    attr = torch.randn(12, 2, 10, 10)
    ns, rs = [1, 2, 4], [1, 2, 3]
    res = iq.inductive_occlusion(model, x, y, attr, n_pixels=ns, radii=rs, colour=0.5, batch_size=7)
    for i in range(len(x)):
        heat = attr[i].mean(0).flatten()
        order = heat.argsort(descending=True)
        expected = None
        for r in rs:
            for n in ns:
                xo = x[i].clone()
                for j in order[:n].tolist():
                    p, q = divmod(j, 10)
                    xo[:, max(p - r, 0) : p + r, max(q - r, 0) : q + r] = 0.5
                if model(xo[None]).argmax(1).item() != y[i].item():
                    expected = (n, r)
                    break
            if expected:
                break
        assert res.first_setting(i) == expected, i
    assert 0 < res.error_rate < 1  # the grid breaks some images, not all


# ----------------------------------------------------------------------------- perturbed examples


def test_occlusion_centres_are_the_top_pixels_of_the_channel_mean_in_order():
    attr = torch.zeros(1, 2, 4, 4)
    attr[0, :, 1, 2] = 3.0
    attr[0, :, 3, 0] = 2.0
    attr[0, 0, 0, 0], attr[0, 1, 0, 0] = 5.0, -5.0  # channel mean 0: not a top pixel
    assert iq.occlusion_centres(attr, 2).tolist() == [[[1, 2], [3, 0]]]


def test_perturbed_examples_of_the_hand_model():
    x = torch.full((3, 2, 8, 8), 0.3)
    x[:, :, 5, 5] = 1.0
    y = torch.ones(3, dtype=torch.int64)
    attr = torch.zeros(3, 2, 8, 8)
    attr[0, :, 5, 5] = 1.0  # image 0: r = 1 around (5, 5) flips it
    attr[1, :, 0, 0] = 3.0  # image 1: (0, 0) then (7, 7): n = 2, r = 2 flips it
    attr[1, :, 7, 7] = 2.0
    attr[2] = -1.0  # image 2: squares of r <= 3 around (2, 2) and (0, 7) never reach (5, 5)
    attr[2, :, 2, 2] = 1.0
    attr[2, :, 0, 7] = 0.5
    model = TwoChannelPixel()
    ex = iq.perturbed_examples(model, x, y, attr, 2, mode="replace", noise="uniform", seed=4, radii=range(1, 4),
                               n_pixels=2)
    assert list(ex.images) == list(iq.EXAMPLE_VARIANTS) and ex.k == 2
    # the noise images are inductive_noise's, top-k and random, with the same seed
    torch.testing.assert_close(ex.images["inductive noise"],
                               iq.inductive_noise(x, attr, 2, mode="replace", noise="uniform", seed=4))
    torch.testing.assert_close(ex.images["random noise"],
                               iq.inductive_noise(x, attr, 2, mode="replace", noise="uniform", seed=4, random=True))
    # the occlusion is drawn at the first flipping setting, else at the grid's largest (n 2, r 3)
    assert ex.occlusion_flipped.tolist() == [True, True, False]
    assert ex.occlusion_pixels.tolist() == [1, 2, 2] and ex.occlusion_radius.tolist() == [1, 2, 3]
    occ = ex.images["occlusion"]
    expected = x.clone()
    expected[0, :, 4:6, 4:6] = 0.0
    expected[1, :, 0:2, 0:2] = 0.0
    expected[1, :, 5:8, 5:8] = 0.0
    assert iq.occlusion_centres(attr[2:], 2)[0].tolist() == [[2, 2], [0, 7]]
    for p, q in ((2, 2), (0, 7)):
        expected[2, :, max(p - 3, 0) : p + 3, max(q - 3, 0) : q + 3] = 0.0
    torch.testing.assert_close(occ, expected)
    # the occluded images of the flipped ones are predicted otherwise; the probabilities are the model's
    assert ex.predictions["clean"].tolist() == [1, 1, 1]
    assert ex.predictions["occlusion"].tolist() == [0, 0, 1]
    for name, xv in {"clean": x, **ex.images}.items():
        p = torch.softmax(model(xv), 1)
        torch.testing.assert_close(ex.probabilities[name], p.max(1).values)


def test_perturbed_examples_rank_by_magnitude_and_refuse_bad_input():
    x, attr = _images_and_attribution()
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).eval()
    y = torch.zeros(len(x), dtype=torch.int64)
    ex = iq.perturbed_examples(model, x, y, attr, 5, by_magnitude=True, mode="replace", seed=1)
    torch.testing.assert_close(ex.images["inductive noise"],
                               iq.inductive_noise(x, attr.abs(), 5, mode="replace", seed=1))
    changed = ex.images["inductive noise"] != x
    assert changed[:, 0, 0, :].any()  # the -100 row is the top by magnitude
    with pytest.raises(ValueError, match="larger than the number of features"):
        iq.perturbed_examples(model, x, y, attr, 51)
    with pytest.raises(ValueError, match="colour"):
        iq.perturbed_examples(model, x, y, attr, 2, colour=2.0)
    with pytest.raises(ValueError, match="radii"):
        iq.perturbed_examples(model, x, y, attr, 2, radii=[])
