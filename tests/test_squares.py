import pytest
import torch

from gradviz.data import DATASETS, load_dataset, load_squares
from gradviz.squares import SQUARES_SPLITS, clean_squares, half_side, make_squares


def test_registered_with_shapes_classes_and_balanced_splits():
    info = DATASETS["squares"]
    assert (info.channels, info.size, info.classes, info.embedded) == (1, 28, ["small", "large"], True)
    for split, (n, _) in SQUARES_SPLITS.items():
        ds = load_dataset("squares", split)
        assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == torch.float32
        assert ds.y.shape == (n,) and ds.y.dtype == torch.int64
        assert ds.classes == ["small", "large"] and ds.name == "squares" and ds.split == split
        assert 0 <= ds.x.min() and ds.x.max() <= 1
        assert int((ds.y == 0).sum()) == n // 2
        assert ds.extras["residual"].shape == ds.x.shape
    assert (2000, 500) == (SQUARES_SPLITS["train"][0], SQUARES_SPLITS["test"][0])


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = make_squares(16, seed=3), make_squares(16, seed=3), make_squares(16, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    train, test = load_dataset("squares", "train"), load_dataset("squares", "test")
    assert not torch.equal(train.x[:10], test.x[:10])
    assert torch.equal(load_dataset("squares", "test").x, test.x)


def test_square_geometry_follows_methods_md():
    # half-side round(S / 2 * 0.8 * t): S = 28 -> 6 and 9; S = 32 -> 6 and 10
    assert [half_side(c, 28) for c in (0, 1)] == [6, 9]
    assert [half_side(c, 32) for c in (0, 1)] == [6, 10]
    clean = clean_squares(torch.tensor([0, 1]), 28)
    assert set(clean.unique().tolist()) == {-0.5, 0.5}
    assert int((clean[0] > 0).sum()) == 12 * 12 and int((clean[1] > 0).sum()) == 18 * 18
    inside = (clean[1, 0] > 0).nonzero()
    assert inside[:, 0].min() == 14 - 9 and inside[:, 0].max() == 14 + 9 - 1  # centred


def test_noise_is_smoothed_with_std_half_on_the_pm1_scale():
    sq = make_squares(64, seed=0)
    noise_pm = 2 * sq.x - 1 - (2 * sq.clean - 1)  # clamped where |.| is large
    unclamped = (sq.x > 0) & (sq.x < 1)
    assert 0.1 < sq.clamped_fraction < 0.25  # about 17 % (module docstring)
    # smooth: neighbouring pixels strongly correlated (white noise would give ~0)
    n = noise_pm[..., :, :-1][unclamped[..., :, :-1] & unclamped[..., :, 1:]]
    m = noise_pm[..., :, 1:][unclamped[..., :, :-1] & unclamped[..., :, 1:]]
    assert torch.corrcoef(torch.stack([n, m]))[0, 1] > 0.8
    raw = make_squares(64, seed=0, noise_std=0.0)
    assert torch.equal(raw.x, raw.clean) and raw.clamped_fraction == 0


def test_exact_residual_turns_a_clean_square_into_the_other_class():
    sq = make_squares(20, seed=1)
    other = clean_squares(1 - sq.y) / 2 + 0.5
    torch.testing.assert_close(sq.clean + sq.residual, other)
    assert set(sq.residual.unique().tolist()) <= {-0.5, 0.0, 0.5}
    small = sq.y == 0
    assert (sq.residual[small] >= 0).all() and (sq.residual[~small] <= 0).all()
    assert int((sq.residual[0] != 0).sum()) == 18 * 18 - 12 * 12  # the ring
    # without noise the image itself moves to the other class exactly
    clean = make_squares(20, seed=1, noise_std=0.0)
    torch.testing.assert_close(clean.x + clean.residual, clean_squares(1 - clean.y) / 2 + 0.5)


def test_subset_carries_the_residual_along():
    ds = load_squares("test")
    sub = ds.subset([4, 1, 7])
    assert torch.equal(sub.extras["residual"], ds.extras["residual"][[4, 1, 7]])
    assert torch.equal(sub.x, ds.x[[4, 1, 7]])
    assert sub.extras["clamped_fraction"] == ds.extras["clamped_fraction"]
    assert ds.subset(slice(0, 5)).extras["clean"].shape == (5, 1, 28, 28)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="split"):
        load_dataset("squares", "val")
    with pytest.raises(ValueError):
        make_squares(0)


def test_exact_residual_cache_gives_the_exact_residual():
    from gradviz.generative import exact_residual_cache

    cache = exact_residual_cache("test")
    ds = load_squares("test")
    idx = torch.tensor([0, 3, 9])
    dx = cache.residual(idx, ds.x[idx], 1 - ds.y[idx])
    torch.testing.assert_close(dx, ds.extras["residual"][idx], atol=2e-3, rtol=0)  # float16 storage
    assert cache.residual(idx, ds.x[idx], ds.y[idx]).abs().max() < 2e-3
