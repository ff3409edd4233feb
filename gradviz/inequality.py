"""Saliency inequality: Gini coefficients and Lorenz curves of attribution maps, and the
"inductive" noise and occlusion attacks that exploit an unequal map.

Source: docs/methods.md section 3 -- Duan et al., "Inequality phenomenon in l_inf-adversarial
training, and its unrealized threats" (ICLR 2023), and Chen, Dong and Xie, "Releasing
Inequality Phenomena in L_inf-Adversarial Training via Input Gradient Distillation" (the
IGD paper, seed ``002_``).

Measures (all batched over images, torch in, torch out)
-------------------------------------------------------
- :func:`gini` -- global Gini of |A| over all C x H x W entries of each map;
- :func:`regional_gini` -- Gini of the sums of |A| over non-overlapping b x b blocks;
- :func:`lorenz_curve` -- cumulative share of |A| against cumulative share of features;
- :func:`dataset_gini` -- attribution (integrated gradients, 50 steps, by default) and Gini
  of a whole image set in chunks, with progress.

Attacks and error rates
-----------------------
- :func:`top_k_mask`, :func:`random_k_mask` -- which features an inductive attack touches;
- :func:`inductive_noise` -- noise on the top-k features by signed attribution (or, with
  ``random=True``, on k random features: the baseline);
- :func:`noise_error_rate` -- the error rate of a model under :func:`inductive_noise` for
  several k;
- :func:`inductive_occlusion` -- occlude squares around the top-n pixels, for a grid of n
  and radius r; a sample is broken at the first setting that flips it;
- :func:`perturbed_examples` -- the images as the inductive noise, random noise and
  occlusion leave them, with the model's predictions (the per-image view);
- :func:`common_correct_mask`, :func:`error_rate` -- docs/methods.md: "fraction of flipped
  predictions among the images that every compared model classifies correctly".

Comparing models the way the papers do::

    from gradviz import data, zoo, inequality as iq
    from gradviz.attribution import attribute

    ds = data.load_dataset("mnist-5k", "test")
    models = {n: zoo.load_model(n) for n in ("mnist-5k/standard", "mnist-5k/pgd-linf")}
    among = iq.common_correct_mask(models, ds.x, ds.y)
    for name, m in models.items():
        a = attribute(m, ds.x, ds.y, "integrated_gradients", n_steps=50)
        print(name, iq.gini(a)[among].mean(),
              iq.noise_error_rate(m, ds.x, ds.y, a, [0.002, 0.01, 0.02], among=among, seed=0))

Nothing here modifies a model (no mode switch, no hooks, no parameter change).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from gradviz.tensors import as_labels
from gradviz.utils import Progress, check_images, report

__all__ = [
    "EXAMPLE_VARIANTS",
    "NOISE_MODES",
    "NOISE_DISTRIBUTIONS",
    "OcclusionResult",
    "PerturbedExamples",
    "block_sums",
    "common_correct_mask",
    "dataset_gini",
    "error_rate",
    "gini",
    "inductive_noise",
    "inductive_occlusion",
    "lorenz_curve",
    "noise_error_rate",
    "occlusion_centres",
    "occlusion_mask",
    "perturbed_examples",
    "random_k_mask",
    "regional_gini",
    "resolve_k",
    "top_k_mask",
]

#: How :func:`inductive_noise` applies the noise to the chosen features.
NOISE_MODES: tuple[str, ...] = ("add", "replace")
#: Noise distributions of :func:`inductive_noise`: N(0, 1) (IGD paper) or U[min x, max x]
#: (Duan et al.).
NOISE_DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform")

ArrayLike = Union[torch.Tensor, np.ndarray]
SeedLike = Union[int, torch.Generator, None]


# --------------------------------------------------------------------------------------
# Gini and Lorenz curves
# --------------------------------------------------------------------------------------


def gini(a: ArrayLike) -> torch.Tensor:
    """Global Gini coefficient of each map's absolute values |a| over all its entries.

    With the n = C*H*W values of one image's |a| in ascending order a_(1) <= ... <= a_(n)::

        G = sum_i (2i - n - 1) a_(i) / (n * sum_i a_(i))

    (docs/methods.md section 3; Duan et al., ICLR 2023, section 3; the same formula as Quantus'
    ``Sparseness``, Chalasani et al. 2020). G lies in [0, (n - 1) / n]: 0 when every
    entry has the same magnitude, (n - 1) / n when one entry holds all of it. It is
    invariant to scaling the map by any non-zero factor, and to its sign.

    An all-zero map has no distribution to measure (0 / 0); it gets G = 0, as for a
    constant map (Quantus also gives 0 there, through the 1e-7 it adds to every entry).

    Args:
        a: attributions (N, ...) with one map per image, typically (N, C, H, W); signed
            (|a| is taken here); torch tensor or numpy array, floating point.

    Returns:
        float64 tensor (N,) on ``a``'s device, each in [0, (n - 1) / n].

    Raises:
        ValueError: ``a`` has fewer than 2 dimensions, no entries per image, is not
            floating point, or holds NaN/inf.
    """
    flat = _flat_abs(a)  # (N, n) float64
    n = flat.shape[1]
    v = torch.sort(flat, dim=1).values
    i = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    total = v.sum(dim=1)
    num = (v * (2 * i - n - 1)).sum(dim=1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, num / (n * safe), torch.zeros_like(total))


def block_sums(a: ArrayLike, block: int) -> torch.Tensor:
    """Sums of |a| over all channels and non-overlapping ``block`` x ``block`` squares.

    Args:
        a: attributions (N, C, H, W), signed (|a| is taken), floating point.
        block: side b of the squares, in pixels (>= 1); it must divide H and W.

    Returns:
        float64 tensor (N, H // b, W // b) on ``a``'s device, each >= 0.

    Raises:
        ValueError: ``a`` not 4-D, not floating point or not finite; ``block`` not an
            integer >= 1 or not a divisor of both H and W (the message lists the divisors).
    """
    t = _as_maps(a, "a")
    if t.ndim != 4:
        raise ValueError(f"a must be 4-D (N, C, H, W) for block sums; got shape {tuple(t.shape)}")
    if isinstance(block, bool) or not isinstance(block, Integral) or block < 1:
        raise ValueError(f"block must be an integer >= 1 (pixels); got {block!r}")
    n, _, h, w = t.shape
    b = int(block)
    if h % b or w % b:
        divisors = [d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0]
        raise ValueError(
            f"block {b} does not divide the image size {h} x {w}: the blocks must tile the "
            f"image exactly; choose one of {divisors}"
        )
    s = _to_float64(t).abs().sum(dim=1)  # (N, H, W)
    return s.reshape(n, h // b, b, w // b, b).sum(dim=(2, 4))


def regional_gini(a: ArrayLike, block: int) -> torch.Tensor:
    """Regional Gini: the Gini of |a| summed over non-overlapping ``block`` x ``block`` squares.

    Each square's sum runs over all channels too, so an image gives (H / b) * (W / b)
    region totals (:func:`block_sums`) whose :func:`gini` is returned. docs/methods.md section 3
    (Duan et al., ICLR 2023: b = 4 on CIFAR-10, 16 on ImageNet). Duan et al.'s code sums
    the signed map (or its positive part) per region, over all channels; gradviz follows
    docs/methods.md and sums |a|.

    Args:
        a: attributions (N, C, H, W), signed, floating point.
        block: side b of the squares in pixels, a divisor of both H and W (28 x 28 MNIST:
            1, 2, 4, 7, 14 or 28). ``block=1`` gives the Gini of the channel-summed |a|.

    Returns:
        float64 tensor (N,), each in [0, (m - 1) / m] with m = (H / b) * (W / b); 0 for an
        all-zero map.

    Raises:
        ValueError: as :func:`block_sums` (not 4-D, NaN/inf, ``block`` not dividing H and W).
    """
    return gini(block_sums(a, block))


def lorenz_curve(a: ArrayLike, points: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lorenz curve of each map's |a|: the share of the total held by the smallest entries.

    With the n entries of |a| ascending, point j (j = 0..n) is (j / n, L_j) where
    L_j = (a_(1) + ... + a_(j)) / sum |a|: L_0 = 0, L_n = 1, non-decreasing and convex;
    the diagonal L_j = j / n is perfect equality. The trapezoid area under the curve gives
    the Gini exactly: ``gini(a) == 1 - 2 * trapezoid(L, fractions)`` (docs/methods.md section
    3). An all-zero map gets the diagonal (Gini 0, as in :func:`gini`).

    Args:
        a: attributions (N, ...) (typically (N, C, H, W)), signed, floating point.
        points: return only this many points (>= 2), at j = round(linspace(0, n, points));
            each is still an exact point of the curve, at fraction j / n. ``None``
            (default) returns all n + 1 points.

    Returns:
        ``(fractions, shares)``: float64 tensors (P,) and (N, P) on ``a``'s device, with
        P = n + 1 (or ``points``): the cumulative share of features and of |a|, both in
        [0, 1].

    Raises:
        ValueError: ``a`` has fewer than 2 dimensions, no entries, NaN/inf, is not
            floating point; ``points`` < 2.
    """
    flat = _flat_abs(a)
    n_img, n = flat.shape
    v = torch.sort(flat, dim=1).values
    total = v.sum(dim=1, keepdim=True)
    cum = torch.cat([torch.zeros_like(total), torch.cumsum(v, dim=1)], dim=1)  # (N, n + 1)
    fractions = torch.arange(n + 1, dtype=v.dtype, device=v.device) / n
    safe = torch.where(total > 0, total, torch.ones_like(total))
    shares = torch.where(total > 0, cum / safe, fractions.expand(n_img, -1))
    shares = shares.clamp(0.0, 1.0)
    if points is not None:
        if isinstance(points, bool) or not isinstance(points, Integral) or points < 2:
            raise ValueError(f"points must be an integer >= 2; got {points!r}")
        j = torch.unique(torch.round(torch.linspace(0, n, int(points), dtype=torch.float64)).long())
        j = j.to(v.device)
        fractions, shares = fractions[j], shares[:, j]
    return fractions, shares


def dataset_gini(
    model: nn.Module,
    x: torch.Tensor,
    target: ArrayLike,
    *,
    method: str = "integrated_gradients",
    n_steps: int = 50,
    block: Optional[int] = None,
    batch_size: int = 100,
    internal_batch_size: int = 1000,
    progress: Optional[Progress] = None,
) -> dict[str, torch.Tensor]:
    """Attribution and Gini of every image of a set, in chunks of ``batch_size`` images.

    The attribution is :func:`gradviz.attribution.attribute` of the target logit, signed;
    Duan et al. use integrated gradients with 50 steps and a zero baseline (the
    defaults); the IGD paper uses the plain gradient (``method="gradient"``) of the true
    class. docs/methods.md section 3.

    Args:
        model: classifier on ``x``'s device, (N, C, H, W) in [0, 1] -> logits (N, K); not
            modified.
        x: images (N, C, H, W) in [0, 1].
        target: (N,) class per image (usually the true labels).
        method: an id of :data:`gradviz.attribution.METHODS`.
        n_steps: integration steps for integrated gradients (default 50).
        block: also return the :func:`regional_gini` over ``block`` x ``block`` squares.
        batch_size: images per attribution call (default 100).
        internal_batch_size: largest number of scaled images per forward pass inside
            captum (default 1000).
        progress: ``progress(fraction, message)`` after each chunk.

    Returns:
        ``{"global": (N,)}`` (float64, :func:`gini`), plus ``"regional": (N,)`` when
        ``block`` is given.

    Raises:
        ValueError: bad images or targets (see ``attribute``); ``block`` not dividing the
            image; ``batch_size`` < 1.
    """
    from gradviz.attribution import attribute

    check_images(x)
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if block is not None:
        block_sums(torch.zeros((1,) + tuple(x.shape[1:])), block)  # fail before any work
    target_t = torch.as_tensor(target, device=x.device)
    if target_t.ndim != 1 or target_t.shape[0] != x.shape[0]:
        raise ValueError(f"target must have shape ({x.shape[0]},); got {tuple(target_t.shape)}")
    out: dict[str, list[torch.Tensor]] = {"global": []}
    if block is not None:
        out["regional"] = []
    n = x.shape[0]
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        a = attribute(model, x[start:stop], target_t[start:stop], method, n_steps=n_steps,
                      batch_size=max(int(internal_batch_size), 1))
        out["global"].append(gini(a))
        if block is not None:
            out["regional"].append(regional_gini(a, block))
        report(progress, stop / n, f"Gini: {stop}/{n} images")
    empty = torch.zeros(0, dtype=torch.float64, device=x.device)
    return {k: (torch.cat(v) if v else empty) for k, v in out.items()}


# --------------------------------------------------------------------------------------
# Inductive noise
# --------------------------------------------------------------------------------------


def resolve_k(k: Union[int, float], n_features: int) -> int:
    """The number of features an inductive attack touches.

    Args:
        k: an ``int`` is a count, 1 <= k <= ``n_features``; a ``float`` is a fraction of
            the features in (0, 1] (docs/methods.md: 0.2 % to 2 % of C*H*W, i.e. 0.002-0.02),
            turned into ``max(1, floor(k * n_features))`` (floor as the IGD authors' code,
            ``int(C * H * W * thres)``; 1e-9 of slack absorbs float error such as
            0.29 * 100 = 28.999...). So ``1`` is one feature and ``1.0`` is all of them.
        n_features: C * H * W.

    Returns:
        The count, an int in [1, n_features].

    Raises:
        ValueError: a count < 1 or larger than ``n_features``; a fraction outside (0, 1]
            or NaN; a bool or another type.
    """
    if isinstance(k, bool):
        raise ValueError(f"k must be an int count or a float fraction; got {k!r}")
    if isinstance(k, Integral):
        if k < 1:
            raise ValueError(f"k = {k} features: the count must be at least 1")
        if k > n_features:
            raise ValueError(
                f"k = {k} is larger than the number of features C*H*W = {n_features}; "
                f"use a count <= {n_features} or a fraction in (0, 1]"
            )
        return int(k)
    if isinstance(k, Real):
        if not (0.0 < float(k) <= 1.0):  # also refuses NaN
            raise ValueError(
                f"k = {k!r} as a fraction of the features must lie in (0, 1]; pass an int for "
                f"a count (the image has C*H*W = {n_features} features)"
            )
        return max(1, math.floor(float(k) * n_features + 1e-9))
    raise ValueError(f"k must be an int count or a float fraction; got {type(k).__name__}")


def top_k_mask(attribution: ArrayLike, k: Union[int, float]) -> torch.Tensor:
    """The k features of each map with the largest *signed* attribution.

    Features are the C*H*W entries (channels separately). Ties are broken by
    ``torch.topk`` (arbitrary but deterministic on one device).

    Args:
        attribution: (N, ...) signed maps, e.g. (N, C, H, W).
        k: count or fraction, see :func:`resolve_k`.

    Returns:
        bool tensor of ``attribution``'s shape, exactly k True entries per image.

    Raises:
        ValueError: bad ``k`` (see :func:`resolve_k`); NaN/inf in ``attribution``.
    """
    t = _as_maps(attribution, "attribution")
    flat = t.flatten(1)
    kk = resolve_k(k, flat.shape[1])
    idx = torch.topk(flat, kk, dim=1).indices
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=t.device)
    mask.scatter_(1, idx, True)
    return mask.reshape(t.shape)


def random_k_mask(shape: Sequence[int], k: Union[int, float], *, seed: SeedLike = None,
                  device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """k features per image chosen uniformly at random without replacement.

    The random-noise baseline of the inductive attacks (docs/methods.md section 3).

    Args:
        shape: (N, ...) e.g. (N, C, H, W).
        k: count or fraction, see :func:`resolve_k`.
        seed: an int, a ``torch.Generator`` (on ``device``) or ``None`` (torch's global RNG).
        device: where the mask lives (default CPU, or the generator's device).

    Returns:
        bool tensor of ``shape``, exactly k True entries per image.

    Raises:
        ValueError: bad ``k``; ``shape`` without a feature dimension.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"shape must be (N, ...) with features per image; got {shape}")
    n_img, n_feat = shape[0], math.prod(shape[1:])
    kk = resolve_k(k, n_feat)
    gen = _generator(seed, device)
    dev = gen.device if gen is not None else torch.device(device or "cpu")
    scores = torch.rand((n_img, n_feat), generator=gen, device=dev)
    idx = torch.topk(scores, kk, dim=1).indices
    mask = torch.zeros((n_img, n_feat), dtype=torch.bool, device=dev)
    mask.scatter_(1, idx, True)
    return mask.reshape(shape)


def inductive_noise(
    x: torch.Tensor,
    attribution: ArrayLike,
    k: Union[int, float],
    *,
    mode: str = "add",
    noise: str = "normal",
    random: bool = False,
    seed: SeedLike = None,
    return_mask: bool = False,
):
    """Inductive noise: put noise on each image's top-k features by signed attribution.

    docs/methods.md section 3: take the k features (entries of C x H x W) with the largest
    signed attribution; ``mode="add"`` adds noise to them, ``mode="replace"`` replaces them
    by noise; the result is clamped to [0, 1]. Noise is ``"normal"`` N(0, 1) (IGD paper) or
    ``"uniform"`` U[min x, max x] with each image's own min and max (Duan et al.). With
    ``random=True`` the same noise goes on k features drawn at random (the baseline). To
    rank by magnitude instead (the IGD paper's |Saliency|), pass ``attribution.abs()``.

    The noise is drawn for every entry (N, C, H, W) first, then (baseline only) the
    random features, so with one seed the noise values are the same whichever features
    are chosen: two models, or the top-k and random variants, see the same noise.

    Args:
        x: images (N, C, H, W) in [0, 1].
        attribution: signed attribution of the same shape (not needed, but still checked,
            when ``random``).
        k: int count in [1, C*H*W] or float fraction in (0, 1] (:func:`resolve_k`).
        mode: ``"add"`` (default) or ``"replace"``.
        noise: ``"normal"`` (default) or ``"uniform"``.
        random: choose the features at random instead of by attribution.
        seed: int, ``torch.Generator`` on ``x``'s device, or ``None`` (global RNG).
        return_mask: also return the (N, C, H, W) bool mask of the chosen features.

    Returns:
        The perturbed images (N, C, H, W) in [0, 1] (a new tensor; ``x`` is unchanged),
        or ``(x_noisy, mask)`` with ``return_mask``.

    Raises:
        ValueError: ``x`` not an image batch in [0, 1] or with NaN; ``attribution`` of
            another shape or with NaN/inf; bad ``k``; unknown ``mode`` or ``noise``.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {mode!r}; choose one of {list(NOISE_MODES)}")
    if noise not in NOISE_DISTRIBUTIONS:
        raise ValueError(f"unknown noise {noise!r}; choose one of {list(NOISE_DISTRIBUTIONS)}")
    check_images(x)
    attr = _check_attribution(attribution, x)
    resolve_k(k, math.prod(x.shape[1:]))
    x = x.detach()
    gen = _generator(seed, x.device)
    if noise == "normal":
        values = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    else:
        flat = x.flatten(1)
        view = (x.shape[0],) + (1,) * (x.ndim - 1)
        lo, hi = flat.amin(dim=1).reshape(view), flat.amax(dim=1).reshape(view)
        values = lo + (hi - lo) * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    if random:
        mask = random_k_mask(x.shape, k, seed=gen, device=x.device)
    else:
        mask = top_k_mask(attr, k)
    new = x + values if mode == "add" else values
    out = torch.where(mask, new, x).clamp(0.0, 1.0)
    return (out, mask) if return_mask else out


def noise_error_rate(
    model: nn.Module,
    x: torch.Tensor,
    y: ArrayLike,
    attribution: ArrayLike,
    ks: Iterable[Union[int, float]],
    *,
    among: Optional[ArrayLike] = None,
    **noise,
) -> torch.Tensor:
    """Error rate of ``model`` under :func:`inductive_noise`, for each k of ``ks``: the mean
    over the ``among`` images of :func:`noise_flips`.

    Args:
        model, x, y, attribution, ks: as :func:`noise_flips`.
        among: (N,) bool, the images to count; default: those ``model`` classifies
            correctly. To compare models as docs/methods.md says, pass
            :func:`common_correct_mask` of all of them.
        **noise: the keyword arguments of :func:`noise_flips` (mode, noise, random, seed
            (default 0), batch_size, progress).

    Returns:
        float64 tensor (len(ks),): the fraction of ``among`` images whose prediction is
        no longer ``y``, in [0, 1]; NaN where ``among`` is empty.

    Raises:
        ValueError: as :func:`noise_flips`; ``among`` of the wrong length. TypeError: an
            unknown keyword.
    """
    ks, attr = _check_noise(x, attribution, ks)
    y_t = as_labels(y, len(x), device=x.device)
    among_t = _resolve_among(model, x, y_t, among, noise.get("batch_size", 500))
    flips = noise_flips(model, x[among_t], y_t[among_t], attr[among_t], ks, **noise)
    if not len(flips):
        return torch.full((len(ks),), float("nan"), dtype=torch.float64)
    return flips.double().mean(dim=0).cpu()


def noise_flips(
    model: nn.Module,
    x: torch.Tensor,
    y: ArrayLike,
    attribution: ArrayLike,
    ks: Iterable[Union[int, float]],
    *,
    mode: str = "add",
    noise: str = "normal",
    random: bool = False,
    seed: SeedLike = 0,
    batch_size: int = 500,
    progress: Optional[Progress] = None,
) -> torch.Tensor:
    """Per image and k: does :func:`inductive_noise` on the top-k (or random-k) features
    change the prediction away from ``y``? What :func:`noise_error_rate` averages.

    The same seed is used for every k (an int seed restarts the generator per k), so the
    noise field is the same and only the number of touched features grows.

    Args:
        model: classifier on ``x``'s device; not modified.
        x: images (N, C, H, W) in [0, 1]; every image is perturbed.
        y: (N,) true labels.
        attribution: signed attribution (N, C, H, W) of ``model`` (for ``y``).
        ks: counts or fractions (:func:`resolve_k`), e.g. ``[0.002, 0.005, 0.01, 0.02]``;
            every k is checked before any work.
        mode, noise, random: as :func:`inductive_noise`.
        seed: int (default 0), or ``None`` for fresh noise each k.
        batch_size: images per forward pass.
        progress: ``progress(fraction, message)`` after each k.

    Returns:
        bool tensor (N, len(ks)) on ``x``'s device: True where the noisy image's prediction
        is not ``y``.

    Raises:
        ValueError: as :func:`inductive_noise`; ``y`` of the wrong length; empty ``ks``.
    """
    ks, attr = _check_noise(x, attribution, ks)
    y_t = as_labels(y, len(x), device=x.device)
    out = torch.zeros(len(x), len(ks), dtype=torch.bool, device=x.device)
    if not len(x):
        return out
    for j, k in enumerate(ks):
        x_noisy = inductive_noise(x, attr, k, mode=mode, noise=noise, random=random, seed=seed)
        with torch.no_grad():
            out[:, j] = _predict(model, x_noisy, batch_size) != y_t
        report(progress, (j + 1) / len(ks), f"inductive noise: k {k} ({j + 1}/{len(ks)})")
    return out


def _check_noise(x: torch.Tensor, attribution: ArrayLike, ks) -> tuple[list, torch.Tensor]:
    """``(ks as a list, the checked attribution)``; raises ValueError for bad images, an
    attribution of another shape (or NaN/inf), no k or a k that does not fit the images."""
    ks = list(ks)
    if not ks:
        raise ValueError("ks is empty: give at least one k (count or fraction)")
    check_images(x)
    attr = _check_attribution(attribution, x)
    n_feat = math.prod(x.shape[1:])
    for k in ks:
        resolve_k(k, n_feat)
    return ks, attr


# --------------------------------------------------------------------------------------
# Inductive occlusion
# --------------------------------------------------------------------------------------


@dataclass
class OcclusionResult:
    """Outcome of :func:`inductive_occlusion`, one entry per image.

    Attributes:
        broken: (N,) bool, some setting flipped the prediction (False outside ``among``).
        n_pixels: (N,) int64, the number of occluded top pixels at the first breaking
            setting; 0 where not broken.
        radius: (N,) int64, the radius r of that setting; 0 where not broken.
        step: (N,) int64, the index of that setting in ``settings``; -1 where not broken.
        among: (N,) bool, the images counted.
        error_rate: fraction of ``among`` images broken, in [0, 1] (NaN if none counted).
        settings: the (radius, n_pixels) pairs in the order they were tried.
        colour: the occlusion value.
    """

    broken: torch.Tensor
    n_pixels: torch.Tensor
    radius: torch.Tensor
    step: torch.Tensor
    among: torch.Tensor
    error_rate: float
    settings: list[tuple[int, int]] = field(default_factory=list)
    colour: float = 0.0

    def first_setting(self, i: int) -> Optional[tuple[int, int]]:
        """``(n_pixels, radius)`` that first broke image ``i``, or ``None``."""
        return (int(self.n_pixels[i]), int(self.radius[i])) if bool(self.broken[i]) else None


def occlusion_mask(centres: torch.Tensor, radius: int, size: tuple[int, int]) -> torch.Tensor:
    """Union of the squares [p - r, p + r) x [q - r, q + r) around each centre (p, q).

    The half-open square of side 2r around (p, q), clipped to the image, as docs/methods.md and
    Duan et al.'s code (``mask[x - r : x + r, y - r : y + r]``).

    Args:
        centres: (N, n, 2) int64 (row, column) per image.
        radius: r >= 1 in pixels.
        size: (H, W).

    Returns:
        bool (N, H, W).
    """
    return _square_masks(centres, radius, size).any(dim=1)


def occlusion_centres(attribution: ArrayLike, n: int) -> torch.Tensor:
    """The centres :func:`inductive_occlusion` occludes: each image's ``n`` pixels with the
    largest channel-mean signed attribution, in decreasing order (the top ``m`` <= ``n`` of
    them are the first ``m`` rows).

    Args:
        attribution: (N, C, H, W) signed attribution.
        n: how many pixels, in [1, H*W].

    Returns:
        (N, n, 2) int64 (row, column), on the attribution's device.
    """
    a = torch.as_tensor(attribution)
    w = a.shape[-1]
    heat = a.mean(dim=1).flatten(1)  # (N, H*W), channel mean, signed
    top = (torch.topk(heat, n, dim=1).indices if len(a)
           else torch.zeros(0, n, dtype=torch.long, device=a.device))
    return torch.stack([top // w, top % w], dim=-1)


def _square_masks(centres: torch.Tensor, radius, size: tuple[int, int]) -> torch.Tensor:
    """(N, n, H, W) bool: the square [p - r, p + r) x [q - r, q + r) of each centre (``radius``
    an int, or an (N, 1, 1) tensor: one radius per image)."""
    h, w = size
    rows = torch.arange(h, device=centres.device)
    cols = torch.arange(w, device=centres.device)
    p = centres[..., 0:1]  # (N, n, 1)
    q = centres[..., 1:2]
    r_in = (rows >= p - radius) & (rows < p + radius)  # (N, n, H)
    c_in = (cols >= q - radius) & (cols < q + radius)  # (N, n, W)
    return r_in[:, :, :, None] & c_in[:, :, None, :]


def inductive_occlusion(
    model: nn.Module,
    x: torch.Tensor,
    y: ArrayLike,
    attribution: ArrayLike,
    *,
    n_pixels: Iterable[int] = range(1, 11),
    radii: Iterable[int] = range(1, 21),
    colour: float = 0.0,
    among: Optional[ArrayLike] = None,
    batch_size: int = 500,
    progress: Optional[Progress] = None,
) -> OcclusionResult:
    """Inductive occlusion (Duan et al., ICLR 2023; docs/methods.md section 3).

    The attribution is averaged over channels into an (H, W) map per image; its top
    pixels (largest signed mean) are the centres. For each setting (r, n), with the
    radius in the outer loop and the number of pixels in the inner one (the order of Duan
    et al.'s code), the squares [p - r, p + r) around the top-n centres are set to
    ``colour`` in every channel; an image counts as broken at the first setting whose
    prediction differs from ``y``, and later radii skip it. Batched over images and over
    the n of one radius (one forward pass holds up to ``batch_size`` occluded images);
    the Python loop runs over radii only.

    The default grid is the papers' for 224-pixel ImageNet images; on 28 x 28 MNIST a
    radius of 14 already covers the whole image, so smaller radii say more there.

    Args:
        model: classifier on ``x``'s device; not modified.
        x: images (N, C, H, W) in [0, 1].
        y: (N,) true labels.
        attribution: signed attribution (N, C, H, W) of ``model``.
        n_pixels: the numbers of top pixels n to try, each in [1, H*W] (default 1..10).
        radii: the radii r to try, each >= 1 (default 1..20).
        colour: occlusion value in [0, 1] (docs/methods.md: 0, 0.5 or 1; default 0, black).
        among: (N,) bool, the images to attack and count; default: those ``model``
            classifies correctly (pass :func:`common_correct_mask` to compare models).
        batch_size: images per forward pass.
        progress: ``progress(fraction, message)`` after each radius.

    Returns:
        :class:`OcclusionResult` (first breaking setting per image, error rate).

    Raises:
        ValueError: bad ``x``, ``y``, ``attribution`` or ``among``; an n outside
            [1, H*W], a radius < 1, empty grids; ``colour`` outside [0, 1].
    """
    check_images(x)
    attr = _check_attribution(attribution, x)
    _, _, h, w = x.shape
    ns = _int_grid("n_pixels", n_pixels, 1, h * w, f"the number of pixels H*W = {h * w}")
    rs = _int_grid("radii", radii, 1, None, "")
    if isinstance(colour, bool) or not isinstance(colour, Real) or not 0.0 <= float(colour) <= 1.0:
        raise ValueError(f"colour must be a number in [0, 1] (0 black, 1 white); got {colour!r}")
    y_t = as_labels(y, len(x), device=x.device)
    among_t = _resolve_among(model, x, y_t, among, batch_size)
    n_img = x.shape[0]
    dev = x.device
    centres = occlusion_centres(attr.to(dev), max(ns))  # (N, n_max, 2)
    settings = [(r, n) for r in rs for n in ns]
    broken = torch.zeros(n_img, dtype=torch.bool, device=dev)
    step = torch.full((n_img,), -1, dtype=torch.int64, device=dev)
    x = x.detach()
    ns_idx = torch.tensor([n - 1 for n in ns], device=dev)
    per_chunk = max(1, batch_size // len(ns))  # images per forward, times len(ns) settings
    for ri, r in enumerate(rs):
        # every n of this radius in one forward per chunk of images: (c, len(ns), C, H, W)
        active = (among_t & ~broken).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        for start in range(0, active.numel(), per_chunk):
            idx = active[start : start + per_chunk]
            squares = _square_masks(centres[idx], r, (h, w))  # (c, n_max, H, W), one per centre
            union = torch.cummax(squares.to(torch.uint8), dim=1).values.bool()[:, ns_idx]  # top-n unions
            xc = x[idx][:, None]  # (c, 1, C, H, W)
            xo = torch.where(union[:, :, None], torch.full_like(xc, float(colour)), xc)
            preds = _predict(model, xo.flatten(0, 1), batch_size).view(len(idx), len(ns))
            flipped = preds != y_t[idx][:, None]
            hit = flipped.any(dim=1)
            first = flipped.to(torch.uint8).argmax(dim=1)  # first n (in the given order) that flips
            broken[idx[hit]] = True
            step[idx[hit]] = ri * len(ns) + first[hit]
        report(progress, (ri + 1) / len(rs), f"occlusion r {r}: {int(broken.sum())} broken")
    table = torch.tensor(settings if settings else [(0, 0)], dtype=torch.int64, device=dev)
    found = step >= 0
    radius = torch.where(found, table[step.clamp_min(0), 0], torch.zeros_like(step))
    npix = torch.where(found, table[step.clamp_min(0), 1], torch.zeros_like(step))
    counted = int(among_t.sum())
    rate = float(broken.sum()) / counted if counted else float("nan")
    return OcclusionResult(broken, npix, radius, step, among_t, rate, settings, float(colour))


#: The perturbed versions of an image that :func:`perturbed_examples` makes, in order.
EXAMPLE_VARIANTS: tuple[str, ...] = ("inductive noise", "random noise", "occlusion")


@dataclass
class PerturbedExamples:
    """Outcome of :func:`perturbed_examples`, N images of one model.

    Attributes:
        k: the number of features the noise touched (:func:`resolve_k`).
        images: variant (:data:`EXAMPLE_VARIANTS`) -> (N, C, H, W) perturbed images in [0, 1].
        predictions: ``"clean"`` and each variant -> (N,) int64, the model's predicted class.
        probabilities: the same keys -> (N,) float, that class's softmax probability.
        occlusion_pixels, occlusion_radius: (N,) int64, the occlusion setting (n, r) shown:
            the first of :func:`inductive_occlusion`'s grid that flips the prediction away
            from y, or the grid's largest (``max n``, ``max r``) where none does.
        occlusion_flipped: (N,) bool, some setting of the grid flipped the prediction.
    """

    k: int
    images: dict[str, torch.Tensor]
    predictions: dict[str, torch.Tensor]
    probabilities: dict[str, torch.Tensor]
    occlusion_pixels: torch.Tensor
    occlusion_radius: torch.Tensor
    occlusion_flipped: torch.Tensor


def perturbed_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: ArrayLike,
    attribution: ArrayLike,
    k: Union[int, float],
    *,
    mode: str = "add",
    noise: str = "normal",
    by_magnitude: bool = False,
    seed: SeedLike = 0,
    radii: Iterable[int] = range(1, 7),
    n_pixels: int = 10,
    colour: float = 0.0,
    batch_size: int = 500,
) -> PerturbedExamples:
    """Each image as the inductive attacks leave it (docs/methods.md section 3; Duan et al.,
    the IGD paper), with the model's predictions: what the per-image view of the
    Inequality page shows.

    Three variants per image (:data:`EXAMPLE_VARIANTS`): :func:`inductive_noise` on the
    top-k features, the same noise on k random features (``random=True``, the same seed), and
    :func:`inductive_occlusion` over the grid ``radii`` x ``1..n_pixels`` on every image
    (correctly classified or not), drawn at the first setting that flips the prediction, or at
    the grid's largest setting where none does. The occluded image is built from the same
    centres (:func:`occlusion_centres`) as the attack tested.

    Args:
        model: classifier on ``x``'s device; not modified.
        x: images (N, C, H, W) in [0, 1].
        y: (N,) true labels (the occlusion's flip is measured against them).
        attribution: signed attribution (N, C, H, W) of ``model``.
        k: the noise's features, a count or a fraction (:func:`resolve_k`).
        mode, noise: as :func:`inductive_noise` (default ``"add"``, ``"normal"``).
        by_magnitude: rank features by |attribution| (the IGD paper) instead of the signed
            value (default).
        seed: the noise's seed (default 0).
        radii: the occlusion radii r >= 1 (default 1..6).
        n_pixels: the occlusion tries the top 1..``n_pixels`` pixels (default 10).
        colour: the occlusion value in [0, 1] (default 0, black).
        batch_size: images per forward pass of the occlusion.

    Returns:
        :class:`PerturbedExamples` (tensors on ``x``'s device).

    Raises:
        ValueError: as :func:`inductive_noise` and :func:`inductive_occlusion` (bad images,
            labels, attribution, k, mode, noise, grid or colour).
    """
    check_images(x)
    attr = _check_attribution(attribution, x)
    ranked = attr.abs() if by_magnitude else attr
    y_t = as_labels(y, len(x), device=x.device)
    count = resolve_k(k, math.prod(x.shape[1:]))
    noisy = inductive_noise(x, ranked, count, mode=mode, noise=noise, seed=seed)
    rand = inductive_noise(x, ranked, count, mode=mode, noise=noise, seed=seed, random=True)
    rs = _int_grid("radii", radii, 1, None, "")
    occ = inductive_occlusion(model, x, y_t, ranked, n_pixels=range(1, int(n_pixels) + 1), radii=rs,
                              colour=colour, among=torch.ones(len(x), dtype=torch.bool, device=x.device),
                              batch_size=batch_size)
    npx = torch.where(occ.broken, occ.n_pixels, torch.full_like(occ.n_pixels, int(n_pixels)))
    radius = torch.where(occ.broken, occ.radius, torch.full_like(occ.radius, max(rs)))
    centres = occlusion_centres(ranked, int(n_pixels))  # (N, n_max, 2), as inductive_occlusion ranks them
    squares = _square_masks(centres, radius.view(-1, 1, 1), tuple(x.shape[-2:]))  # (N, n_max, H, W)
    first_n = torch.arange(centres.shape[1], device=x.device)[None] < npx[:, None]  # (N, n_max)
    mask = (squares & first_n[:, :, None, None]).any(dim=1)[:, None]  # (N, 1, H, W)
    occluded = torch.where(mask, torch.full_like(x, float(colour)), x.detach())
    images = dict(zip(EXAMPLE_VARIANTS, (noisy, rand, occluded)))
    predictions, probabilities = {}, {}
    with torch.no_grad():
        for name, xv in {"clean": x.detach(), **images}.items():
            p, c = torch.softmax(model(xv).float(), dim=1).max(dim=1)
            predictions[name], probabilities[name] = c, p
    return PerturbedExamples(k=count, images=images, predictions=predictions, probabilities=probabilities,
                             occlusion_pixels=npx, occlusion_radius=radius, occlusion_flipped=occ.broken)


# --------------------------------------------------------------------------------------
# Error rates
# --------------------------------------------------------------------------------------


def common_correct_mask(
    models: Union[Mapping[str, nn.Module], Sequence[nn.Module], nn.Module],
    x: torch.Tensor,
    y: ArrayLike,
    *,
    batch_size: int = 500,
) -> torch.Tensor:
    """The images that every model classifies correctly (docs/methods.md section 3).

    Args:
        models: one model, a sequence, or a name -> model mapping; each on ``x``'s device.
        x: images (N, C, H, W) in [0, 1].
        y: (N,) true labels.
        batch_size: images per forward pass.

    Returns:
        bool tensor (N,) on ``x``'s device.

    Raises:
        ValueError: no models; bad ``x`` or ``y``.
    """
    check_images(x)
    y_t = as_labels(y, len(x), device=x.device)
    if isinstance(models, nn.Module):
        models = [models]
    elif isinstance(models, Mapping):
        models = list(models.values())
    models = list(models)
    if not models:
        raise ValueError("models is empty: give at least one model")
    mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for m in models:
        mask &= _predict(m, x, batch_size) == y_t
    return mask


def error_rate(
    model: nn.Module,
    x: torch.Tensor,
    y: ArrayLike,
    among: Optional[ArrayLike] = None,
    *,
    batch_size: int = 500,
) -> float:
    """Fraction of the ``among`` images of ``x`` that ``model`` does not classify as ``y``.

    For perturbed images ``x`` and ``among`` = the images every compared model classifies
    correctly when clean (:func:`common_correct_mask`), this is docs/methods.md's error rate:
    the fraction of flipped predictions.

    Args:
        model: classifier on ``x``'s device.
        x: images (N, C, H, W) in [0, 1] (usually perturbed).
        y: (N,) true labels.
        among: (N,) bool, the images to count (default: all).
        batch_size: images per forward pass.

    Returns:
        A float in [0, 1]; NaN when no image is counted.

    Raises:
        ValueError: bad ``x``, ``y`` or ``among`` (wrong length or dtype).
    """
    check_images(x)
    y_t = as_labels(y, len(x), device=x.device)
    among_t = torch.ones(x.shape[0], dtype=torch.bool, device=x.device) if among is None \
        else _as_mask(among, x)
    return _flip_rate(model, x[among_t], y_t[among_t], batch_size)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _as_maps(a: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(a)
    if t.ndim < 2:
        raise ValueError(
            f"{name} must be (N, ...) with one map per image (e.g. (N, C, H, W); add a batch "
            f"dimension with a[None] for one map); got shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise ValueError(f"{name} must be floating point; got dtype {t.dtype}")
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def _to_float64(t: torch.Tensor) -> torch.Tensor:
    if t.device.type == "mps":  # no float64 on Apple GPUs
        t = t.cpu()
    return t.to(torch.float64)


def _flat_abs(a: ArrayLike) -> torch.Tensor:
    t = _as_maps(a, "a")
    if math.prod(t.shape[1:]) == 0:
        raise ValueError(f"a has no entries per image; got shape {tuple(t.shape)}")
    return _to_float64(t).flatten(1).abs()


def _check_attribution(attribution: ArrayLike, x: torch.Tensor) -> torch.Tensor:
    t = _as_maps(attribution, "attribution")
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(
            f"attribution must have the images' shape {tuple(x.shape)}; got {tuple(t.shape)}"
        )
    return t.to(x.device)


def _as_mask(among: ArrayLike, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(among)
    if t.dtype != torch.bool or t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"among must be a bool mask of shape ({x.shape[0]},); got dtype {t.dtype}, "
            f"shape {tuple(t.shape)}"
        )
    return t.to(x.device)


def _resolve_among(model, x, y_t, among, batch_size) -> torch.Tensor:
    if among is None:
        return _predict(model, x, batch_size) == y_t
    return _as_mask(among, x)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=x.device)
    return torch.cat([model(x[i : i + batch_size]).argmax(dim=1)
                      for i in range(0, x.shape[0], batch_size)])


def _flip_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    if x.shape[0] == 0:
        return float("nan")
    return (_predict(model, x, batch_size) != y).double().mean().item()


def _generator(seed: SeedLike, device) -> Optional[torch.Generator]:
    if seed is None:
        return None
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"seed must be an int, a torch.Generator or None; got {seed!r}")
    return torch.Generator(device=device or "cpu").manual_seed(int(seed))


def _int_grid(name: str, values: Iterable[int], lo: int, hi: Optional[int], what: str) -> list[int]:
    vals = list(values)
    if not vals:
        raise ValueError(f"{name} is empty: give at least one value")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, Integral) or v < lo:
            raise ValueError(f"{name} must hold integers >= {lo}; got {v!r}")
        if hi is not None and v > hi:
            raise ValueError(f"{name} holds {v}, larger than {what}")
    return [int(v) for v in vals]
