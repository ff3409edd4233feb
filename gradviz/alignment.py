"""Gradient alignment: the closest inaccurate class, alpha_dx, alpha_x, and the cosine with a
PGD perturbation.

Source: Bigolin Lanfredi, Schroeder, Tasdizen, "Quantifying the Preferential Direction of the
Model Gradient in Adversarial Training With Projected Gradient Descent" (docs/methods.md section
1): Eq. 5 (closest class), Eq. 8 (alpha_dx), and the baseline alpha_x of Etmann et al. ("On
the Connection Between Adversarial Robustness and Saliency Map Interpretability", ICML 2019,
their Eq. 18 as the paper quotes it).

Conventions: x (N, C, H, W) in [0, 1]; logits d = f(x) (N, K); cosines are taken between the
flattened per-image vectors, ``cos(a, b) = <a, b> / (|a| |b|)``, and **a cosine with a zero
vector is 0** (e.g. a zero residual, or a model whose gradient vanishes). Every function is
batched (K backward passes for the Jacobian, one for a gradient), runs on x's device, leaves
the model as it was (mode, parameters and their ``.grad``), and evaluates it in eval mode.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.tensors import as_labels, check_classes, eval_mode
from gradviz.tensors import per_image_cosine as cosine  # the per-image cosine, kept as alignment.cosine
from gradviz.utils import check_images

GRADIENTS = ("loss", "closest")


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    d = model(x)
    if d.ndim != 2:
        raise ValueError(f"the model must return logits (N, K), got shape {tuple(d.shape)}")
    return d


def jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and their full input Jacobian.

    Args:
        model: classifier on (N, C, H, W) in [0, 1] returning logits (N, K); must treat
            images independently (eval mode: no batch statistics).
        x: (N, C, H, W) images in [0, 1].

    Returns:
        ``(d, J)``: logits (N, K) and J (N, K, C, H, W) with ``J[i, k] = grad_x d_k(x_i)``,
        both detached; K backward passes over the whole batch.

    Raises:
        ValueError: x not an image batch in [0, 1] (or NaN); a model not returning (N, K).
    """
    check_images(x)
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        d = _logits(model, xg)
        k = d.shape[1]
        rows = [torch.autograd.grad(d[:, j].sum(), xg, retain_graph=j < k - 1)[0] for j in range(k)]
    return d.detach(), torch.stack(rows, dim=1)


def closest_class(model: nn.Module, x: torch.Tensor, y, *, return_distances: bool = False,
                  batch_size: int = 500):
    """The closest inaccurate class c~ of each image, Eq. 5 (Bigolin Lanfredi et al.):

        c~ = argmin_{c != y} (d_y - d_c) / |grad_x d_y - grad_x d_c|_2,

    the linearised distance (in [0, 1] pixel units, l_2 over C x H x W) from x to the
    decision boundary between y and c. A class whose gradient difference is zero gets
    distance +inf (-inf if d_c > d_y already), as the linear model never reaches (has
    passed) that boundary. A misclassified image has negative distances for the classes
    above y; the most negative one is chosen, as Eq. 5 says.

    Args:
        model: classifier returning logits (N, K), evaluated in eval mode, left unchanged.
        x: (N, C, H, W) in [0, 1].
        y: (N,) int64 true labels.
        return_distances: also return the distances (N, K) (+inf at y).
        batch_size: images per Jacobian pass (memory: N x K x C x H x W floats).

    Returns:
        c~ (N,) int64 on x's device, never equal to y; or ``(c~, distances)``.

    Raises:
        ValueError: bad images (range, NaN, shape), labels of the wrong length or out of
            range, a model with fewer than 2 classes.
    """
    check_images(x)
    y = as_labels(y, len(x), device=x.device, broadcast=True)
    classes, dists = [], []
    for i in range(0, max(len(x), 1), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        if len(xb) == 0:
            break
        d, J = jacobian(model, xb)
        k = d.shape[1]
        if k < 2:
            raise ValueError("closest_class needs a model with at least 2 classes")
        check_classes(yb, k, "y")
        ar = torch.arange(len(xb), device=x.device)
        gap = d[ar, yb][:, None] - d  # (B, K), d_y - d_c
        gnorm = (J[ar, yb][:, None] - J).flatten(2).norm(dim=2)  # (B, K)
        dist = torch.where(gnorm > 0, gap / gnorm.clamp_min(torch.finfo(gnorm.dtype).tiny),
                           torch.where(gap >= 0, torch.full_like(gap, float("inf")), torch.full_like(gap, float("-inf"))))
        dist[ar, yb] = float("inf")
        c = dist.argmin(1)
        c = torch.where(c == yb, (yb + 1) % k, c)  # every distance +inf: the next class
        classes.append(c)
        dists.append(dist)
    c = torch.cat(classes) if classes else torch.empty(0, dtype=torch.long, device=x.device)
    if return_distances:
        return c, (torch.cat(dists) if dists else torch.empty(0, 0, device=x.device))
    return c


def margin_gradient(model: nn.Module, x: torch.Tensor, y, target) -> torch.Tensor:
    """grad_x (d_target - d_y) per image, the gradient of Eq. 8: (N, C, H, W), detached.

    Raises:
        ValueError: bad images or labels; a target equal to the label; out-of-range classes.
    """
    check_images(x)
    y = as_labels(y, len(x), device=x.device, broadcast=True)
    target = as_labels(target, len(x), name="target", device=x.device, broadcast=True)
    _check_target(target, y)
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        d = _logits(model, xg)
        check_classes(y, d.shape[1], "y")
        check_classes(target, d.shape[1], "target")
        ar = torch.arange(len(x), device=x.device)
        (g,) = torch.autograd.grad((d[ar, target] - d[ar, y]).sum(), xg)
    return g


def _check_target(target: torch.Tensor, y: torch.Tensor) -> None:
    same = target == y
    if same.any():
        i = int(same.nonzero()[0])
        raise ValueError(f"target equals the label for {int(same.sum())} image(s) (first: index {i}, class "
                         f"{int(y[i])}); alpha_dx needs another class (the closest class: closest_class)")


def alpha_dx(model: nn.Module, x: torch.Tensor, y, dx: torch.Tensor, target=None) -> torch.Tensor:
    """Alignment of the gradient with the residual, Eq. 8 (Bigolin Lanfredi et al.):

        alpha_dx = cos(grad_x (d_target - d_y), dx_target),

    per image; the paper reports the mean over a test set and its histogram, with target the
    closest class c~ (Eq. 5) and dx the GAN residual toward it
    (:func:`gradviz.generative.residual`) or, for ``squares``, the exact residual.
    The value does not depend on the image scale ([0, 1] here, [-1, 1] for the authors).

    Args:
        model: classifier returning logits (N, K), evaluated in eval mode, left unchanged.
        x: (N, C, H, W) in [0, 1].
        y: (N,) int64 true labels.
        dx: (N, C, H, W) residuals toward ``target`` (any scale; finite).
        target: (N,) int64 destination classes, != y; None: :func:`closest_class`.

    Returns:
        (N,) float in [-1, 1]; 0 where dx or the gradient is zero.

    Raises:
        ValueError: dx of another shape than x or with NaN/inf; a target equal to the label;
            bad images or labels.
    """
    check_images(x)
    if not isinstance(dx, torch.Tensor) or dx.shape != x.shape:
        raise ValueError(f"dx must have the shape of x {tuple(x.shape)}, got "
                         f"{tuple(dx.shape) if isinstance(dx, torch.Tensor) else type(dx).__name__}")
    if not torch.isfinite(dx).all():
        raise ValueError("dx contains NaN or inf values")
    if target is None:
        target = closest_class(model, x, y)
    g = margin_gradient(model, x, y, target)
    return cosine(g, dx.to(g.device, g.dtype))


def loss_gradient(model: nn.Module, x: torch.Tensor, y) -> torch.Tensor:
    """grad_x CE(f(x), y) per image (the loss of each image alone): (N, C, H, W), detached."""
    check_images(x)
    y = as_labels(y, len(x), device=x.device, broadcast=True)
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        d = _logits(model, xg)
        check_classes(y, d.shape[1], "y")
        (g,) = torch.autograd.grad(F.cross_entropy(d, y, reduction="sum"), xg)
    return g


def alpha_x(model: nn.Module, x: torch.Tensor, y, *, centered: bool = False) -> torch.Tensor:
    """Etmann et al.'s alignment of the gradient with the image (their Eq. 18; the baseline
    metric of Bigolin Lanfredi et al.):

        alpha_x = |cos(x, grad_x CE(f(x), y))|.

    Unlike alpha_dx, it depends on where the image's zero is: on the [0, 1] scale (default)
    an MNIST background is 0; ``centered=True`` uses ``2 x - 1``, the authors' [-1, 1] scale
    (the gradient's direction is the same on both scales), to compare with their numbers.
    The authors' code takes the gradient of the predicted class's logit instead of the loss;
    docs/methods.md's (and this function's) definition is the loss gradient.

    Args:
        model, x, y: as in :func:`alpha_dx`.
        centered: measure x on the [-1, 1] scale.

    Returns:
        (N,) float in [0, 1]; 0 where the gradient (or the image) is zero.

    Raises:
        ValueError: bad images or labels.
    """
    g = loss_gradient(model, x, y)
    xs = 2 * x - 1 if centered else x
    return cosine(xs.detach().to(g.dtype), g).abs()


def cos_with_pgd(model: nn.Module, x: torch.Tensor, y, *, gradient: str = "loss", seed: Optional[int] = 0,
                 **pgd_kwargs) -> torch.Tensor:
    """Cosine between the model's gradient at x and a PGD perturbation x_adv - x.

    The gradient is taken at the clean image: with ``gradient="loss"`` (default)
    grad_x CE(f(x), y), the direction an untargeted attack ascends first (so positive values
    mean aligned); with ``"closest"`` grad_x (d_c~ - d_y), c~ the closest class (Eq. 5).
    The perturbation comes from :func:`gradviz.attacks.pgd` (untargeted unless
    ``targeted`` is passed; its defaults otherwise: l_inf, 40 steps, random start).

    Args:
        model, x, y: as in :func:`alpha_dx`.
        gradient: ``"loss"`` or ``"closest"``.
        seed: seed of PGD's random start (default 0, reproducible; None: fresh).
        **pgd_kwargs: passed to :func:`gradviz.attacks.pgd`; ``eps`` is required.

    Returns:
        (N,) float in [-1, 1]; 0 where the perturbation (e.g. eps = 0) or gradient is zero.

    Raises:
        ValueError: unknown ``gradient``; no ``eps``; what :func:`gradviz.attacks.pgd` raises.
    """
    from gradviz.attacks import pgd

    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose one of {GRADIENTS}")
    if "eps" not in pgd_kwargs:
        raise ValueError("cos_with_pgd needs the attack's eps (e.g. eps=0.3 for MNIST l_inf)")
    y = as_labels(y, len(x), device=x.device, broadcast=True)
    x_adv = pgd(model, x, y, seed=seed, **pgd_kwargs)
    if gradient == "loss":
        g = loss_gradient(model, x, y)
    else:
        g = margin_gradient(model, x, y, closest_class(model, x, y))
    return cosine(g, (x_adv - x).to(g.dtype))


def background_share(a, x, *, level: float = 0.0) -> torch.Tensor:
    """The share of each map's squared magnitude that lies on the image's background: the
    pixels whose every channel is <= ``level`` (on MNIST, the black pixels around the digit).

    Why it matters (docs/methods.md section 1.10): a residual toward another digit draws new
    strokes on the background, so a gradient that is zero there (an l_inf-trained MNIST model
    that thresholds its input) can align only with the residual's part on the strokes.

    Args:
        a: (N, C, H, W) signed maps (e.g. gradients), a tensor or an array; finite.
        x: (N, C, H, W) images in [0, 1], the maps' images.
        level: brightness at or below which a pixel is background (default 0.0: exactly
            black), in [0, 1).

    Returns:
        (N,) float64 in [0, 1]; 0 for an all-zero map.

    Raises:
        ValueError: shapes that differ, NaN/inf in ``a``, x outside [0, 1], level outside
            [0, 1).
    """
    a = torch.as_tensor(a).detach().to(torch.float64)
    x = torch.as_tensor(x).detach()
    check_images(x)
    if a.shape != x.shape:
        raise ValueError(f"the maps {tuple(a.shape)} and the images {tuple(x.shape)} must have the same shape")
    if not torch.isfinite(a).all():
        raise ValueError("the maps contain NaN or inf values")
    if not (0.0 <= float(level) < 1.0):
        raise ValueError(f"level must lie in [0, 1), got {level}")
    bg = (x.to(a.device) <= float(level)).all(dim=1, keepdim=True).expand_as(a)
    e = a.pow(2)
    total = e.flatten(1).sum(1)
    on_bg = (e * bg).flatten(1).sum(1)
    return torch.where(total > 0, on_bg / torch.where(total > 0, total, torch.ones_like(total)),
                       torch.zeros_like(total))
