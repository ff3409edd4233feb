"""Projected gradient descent (Madry et al., ICLR 2018) with optional per-step traces, the
accuracies measured with it, accuracy-vs-eps curves with their median robustness eps50, and
the "perceptually aligned gradients" class sweep.

Source: docs/methods.md, "Standard attack settings", sections 1 (eps50) and 2 (PAG view).
gradviz's defaults, which libraries do not share:

* random start ON (uniform in the eps-ball);
* step size ``2.5 * eps / steps`` when none is given, for l_inf and l_2 alike (Madry et
  al.'s rule, so that a start at the ball's edge can still cross it; for MNIST l_inf eps 0.3
  and 40 steps that is 0.01875, where docs/methods.md's standard setting states 0.01 explicitly);
* every iterate clamped to the image range [0, 1];
* the cross-entropy summed over the batch (each image's gradient is its own; the l_inf
  sign and the l_2 normalisation make the step independent of the batch size).

torchattacks' ``PGD`` / ``PGDL2`` with ``random_start=False`` and the same eps, step and
steps give the same iterates (tests/test_attacks.py and tests/test_attacks_explorer.py check
this to float tolerance). One difference: ``PGDL2`` divides the gradient by ``|grad| +
1e-10`` (its ``eps_for_division``) of the batch-*mean* loss; for a confidently classified
image that gradient's norm can be ~1e-9, and the 1e-10 then bends the step by several per
cent. gradviz divides by ``|grad|`` exactly (a zero gradient makes no step); ``PGDL2(...,
eps_for_division=1e-30)`` reproduces gradviz.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradviz.tensors import (
    NORMS, as_labels, ascent_direction, check_classes, eval_mode, model_device, per_image_norm, project_ball,
)
from gradviz.utils import Progress, check_images, report

__all__ = [
    "NORMS",
    "PAG_EPS",
    "PAG_STEPS",
    "TARGET_EPS_GRID",
    "TARGET_EPS_STEPS",
    "AttackResult",
    "PGDTrace",
    "TargetEpsSearch",
    "accuracy_vs_eps",
    "clean_accuracy",
    "default_step_size",
    "eps50",
    "eps50_outside",
    "format_curve_eps50",
    "format_eps50",
    "pgd",
    "predict",
    "robust_accuracy",
    "run_attack",
    "smallest_target_eps",
    "target_probabilities",
    "targeted_class_sweep",
    "trades_attack",
]


@dataclass
class PGDTrace:
    """Per-step record of a PGD run, for plots. Step 0 is the starting point (``x`` itself
    without random start), step ``steps`` the returned ``x_adv``.

    Attributes:
        loss: (steps + 1, N) cross-entropy of each image w.r.t. ``y`` (the target class for a
            targeted attack) at each iterate.
        logits: (steps + 1, N, K) logits at each iterate.
        norm: (steps + 1, N) perturbation norm |x_t - x| in the attack's norm ([0, 1] pixel
            units).
        settings: eps, norm, steps, step_size, targeted, random_start of the run.
    """

    loss: torch.Tensor
    logits: torch.Tensor
    norm: torch.Tensor
    settings: dict = field(default_factory=dict)


def default_step_size(eps: float, steps: int) -> float:
    """gradviz's default PGD step size: ``2.5 * eps / steps`` (Madry et al. 2018), for l_inf
    (per pixel) and l_2 (Euclidean) alike."""
    return 2.5 * eps / steps


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (2 * u - 1) * eps
    # uniform in the l2 ball: a Gaussian direction, radius eps * U^(1/d)
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    d = x[0].numel()
    radius = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / d)
    return direction * (eps * radius).view(-1, 1, 1, 1)


def _check_settings(eps: float, norm: str, steps: int, step_size: Optional[float]) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be >= 0 and finite, a number; got {eps!r}") from None
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be >= 0 and finite (pixel units on the [0, 1] scale), got {eps}")
    if norm == "linf" and eps > 1:
        raise ValueError(f"an l_inf eps above 1 covers the whole [0, 1] image range, got {eps}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer, float)) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if step_size is not None and not (math.isfinite(float(step_size)) and float(step_size) > 0):
        raise ValueError(f"step_size must be > 0 and finite, got {step_size}")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 40,
    step_size: Optional[float] = None,
    random_start: bool = True,
    targeted: bool = False,
    seed: Optional[int] = None,
    trace: bool = False,
    labels: Optional[torch.Tensor] = None,
):
    """Projected gradient descent on the cross-entropy loss (Madry et al. 2018).

    l_inf: ``x <- Proj(x + step_size * sign(grad))``; l_2: ``x <- Proj(x + step_size *
    grad / |grad|_2)``; after every step the iterate is clamped to [0, 1]. Untargeted
    attacks ascend CE(f(x), y); targeted ones descend CE(f(x), target) with ``y`` the
    target classes. Batched: one forward and one backward pass of the whole batch per step.

    Args:
        model: classifier taking (N, C, H, W) in [0, 1], returning logits (N, K), on the
            device of ``x``. It is run in eval mode and left exactly as it was (mode,
            parameters, their grads).
        x: (N, C, H, W) float images in [0, 1].
        y: (N,) int64 true labels, or target classes when ``targeted``.
        eps: radius of the ball, in [0, 1] pixel units (l_inf: max per-pixel change, at most
            1; l_2: Euclidean norm over C x H x W). ``eps = 0`` returns (a copy of) ``x``.
        norm: ``"linf"`` (default) or ``"l2"``.
        steps: number of gradient steps (default 40, Madry's MNIST setting).
        step_size: step length (l_inf: per pixel; l_2: Euclidean); default
            :func:`default_step_size` = 2.5 * eps / steps (both norms).
        random_start: start at a uniform random point of the eps-ball (default True).
        targeted: move toward class ``y`` instead of away from it.
        seed: seed of the random start (None: a fresh random start).
        trace: also return a :class:`PGDTrace` (loss, logits, perturbation norm per step;
            costs one more forward pass).
        labels: targeted attacks only, optional: the (N,) true labels. When given, a target
            equal to its image's label is refused (ValueError), since "move toward the class
            it already is" is almost always a mistake in the caller.

    Returns:
        x_adv (N, C, H, W) in [0, 1] with |x_adv - x| <= eps in ``norm`` (up to float
        rounding, ~1e-7), detached; or ``(x_adv, trace)`` when ``trace`` is True.

    Raises:
        ValueError: x not an image batch in [0, 1] or with NaN; y (or labels) of the wrong
            length, not integers or out of range; eps < 0, not finite (or > 1 for l_inf);
            steps < 1; step_size <= 0; unknown norm; ``labels`` without ``targeted``; a
            target equal to its label.
    """
    check_images(x)
    _check_settings(eps, norm, steps, step_size)
    y = as_labels(y, len(x), name="y", device=x.device)
    if labels is not None:
        if not targeted:
            raise ValueError("labels is only used by targeted attacks (an untargeted attack's y are the labels)")
        labels = as_labels(labels, len(x), name="labels", device=x.device)
        same = (labels == y).nonzero().flatten()
        if len(same):
            raise ValueError(
                f"the target class equals the true label for image(s) {same.tolist()[:10]}: a targeted "
                "attack must aim at another class"
            )
    eps = float(eps)
    alpha = default_step_size(eps, steps) if step_size is None else float(step_size)
    x = x.detach()
    with eval_mode(model), torch.enable_grad():
        return _pgd_loop(model, x, y, eps, norm, int(steps), alpha, random_start, targeted, seed, trace)


def _check_logits(logits: torch.Tensor, y: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits (N, K), got shape {tuple(logits.shape)}")
    check_classes(y, logits.shape[1], "labels")


def _pgd_loop(model, x, y, eps, norm, steps, alpha, random_start, targeted, seed, trace):
    # The iterate x_adv is kept directly (as torchattacks does), so that it is exactly
    # clamp(x + delta, 0, 1) and never leaves [0, 1] by rounding.
    if eps == 0:
        steps = 0
        x_adv = x.clone()
    elif random_start:
        gen = torch.Generator(device=x.device)
        gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        x_adv = (x + project_ball(_random_start(x, eps, norm, gen), eps, norm)).clamp(0, 1)
    else:
        x_adv = x.clone()
    scaled_alpha = -alpha if targeted else alpha
    losses, logits_seq, norms = [], [], []
    for step in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        if step == 0:
            _check_logits(logits, y)
        loss = F.cross_entropy(logits, y, reduction="none" if trace else "sum")
        if trace:
            losses.append(loss.detach())
            logits_seq.append(logits.detach())
            norms.append(per_image_norm(x_adv.detach() - x, norm))
            loss = loss.sum()
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = _step(x, x_adv, grad, scaled_alpha, eps, norm)
    x_adv = x_adv.detach()
    if not trace:
        return x_adv
    with torch.no_grad():
        logits = model(x_adv)
        if steps == 0:
            _check_logits(logits, y)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
        logits_seq.append(logits)
        norms.append(per_image_norm(x_adv - x, norm))
    settings = dict(eps=eps, norm=norm, steps=steps, step_size=alpha, targeted=targeted,
                    random_start=bool(random_start and eps > 0))
    return x_adv, PGDTrace(torch.stack(losses), torch.stack(logits_seq), torch.stack(norms), settings)


@torch.no_grad()
def _step(x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float,
          norm: str) -> torch.Tensor:
    """One projected step: ``x_adv + alpha * direction(grad)`` (sign for l_inf, the unit l_2
    direction, no step for a zero gradient), projected onto the eps-ball around x and
    clamped to [0, 1]. A negative alpha descends (a targeted attack)."""
    x_adv = x_adv.detach() + alpha * ascent_direction(grad, norm)
    return torch.clamp(x + project_ball(x_adv - x, eps, norm), min=0, max=1)


def trades_attack(model: nn.Module, x: torch.Tensor, *, eps: float, norm: str = "linf", steps: int = 10,
                  step_size: Optional[float] = None) -> torch.Tensor:
    """TRADES' inner maximisation (Zhang et al., "Theoretically Principled Trade-off between
    Robustness and Accuracy", ICML 2019, Eq. 5 and the authors' ``trades.py``; docs/methods.md,
    TRADES): projected gradient ascent on KL(softmax f(x) || softmax f(x')), summed over the
    batch, over x' in the eps-ball around x. No labels: the attack moves away from the
    model's own prediction at x.

    Start ``x + 0.001 * N(0, I)`` (the global torch RNG, as the authors; the training loop
    seeds it); then the steps of :func:`pgd` (l_inf ``sign(grad)``, l_2 ``grad / |grad|_2``
    times ``step_size``, projection onto the eps-ball and a clamp to [0, 1]). The model runs
    in eval mode (its mode is restored) and is left unchanged.

    Args:
        model: classifier (N, C, H, W) in [0, 1] -> logits (N, K).
        x: (N, C, H, W) images in [0, 1].
        eps: ball radius in [0, 1] pixel units (0: returns a copy of x).
        norm: ``"linf"`` (default) or ``"l2"``.
        steps: gradient steps (default 10; the authors: 40 on MNIST, 10 on CIFAR-10; 0:
            returns a copy of x).
        step_size: default :func:`default_step_size` (2.5 * eps / steps; the authors use
            0.01 with 40 steps on MNIST).

    Returns:
        x_adv (N, C, H, W) in [0, 1], within eps of x in ``norm``, detached.

    Raises:
        ValueError: unknown norm, an l_inf eps above 1, a non-finite eps or step size.
    """
    if eps <= 0 or steps < 1:
        return x.detach().clone()
    _check_settings(eps, norm, steps, step_size)
    step = default_step_size(eps, steps) if step_size is None else float(step_size)
    x = x.detach()
    with eval_mode(model), torch.enable_grad():
        with torch.no_grad():
            log_p = F.log_softmax(model(x), 1)
        x_adv = x + 0.001 * torch.randn_like(x)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), 1), log_p, reduction="sum", log_target=True)
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = _step(x, x_adv, grad, step, eps, norm)
    return x_adv.detach()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits (N, K) of ``model`` on ``x`` (N, C, H, W), computed in chunks of ``batch_size``."""
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction in [0, 1] of images whose predicted class equals ``y``."""
    return (predict(model, x, batch_size).argmax(1) == y.to(x.device)).float().mean().item()


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 40,
    step_size: Optional[float] = None,
    random_start: bool = True,
    seed: Optional[int] = 0,
    batch_size: int = 500,
    progress: Optional[Progress] = None,
) -> float:
    """Fraction in [0, 1] of images still classified as ``y`` after an untargeted :func:`pgd`
    attack with these settings (one restart), computed in chunks of ``batch_size`` (the
    model is evaluated in eval mode and left in its mode)."""
    correct = 0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = pgd(model, xb, yb, eps=eps, norm=norm, steps=steps, step_size=step_size,
                        random_start=random_start, seed=None if seed is None else seed + i)
            correct += (predict(model, x_adv, batch_size).argmax(1) == yb.to(x.device)).sum().item()
            report(progress, (i + len(xb)) / len(x), f"PGD eps {eps:g}: {i + len(xb)}/{len(x)} images")
    return correct / max(len(x), 1)


# ------------------------------------------------------------------ accuracy vs eps, eps50


def _check_grid(eps_grid, what: str = "eps_grid") -> np.ndarray:
    try:
        grid = np.asarray(eps_grid.detach().cpu() if isinstance(eps_grid, torch.Tensor) else eps_grid,
                          dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a 1-D sequence of numbers") from None
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence, got shape {grid.shape}")
    if not np.isfinite(grid).all() or (grid < 0).any():
        raise ValueError(f"{what} must hold finite values >= 0, got {grid.tolist()}")
    if grid.size > 1 and not (np.diff(grid) > 0).all():
        raise ValueError(f"{what} must be sorted in strictly ascending order, got {grid.tolist()}")
    return grid


def accuracy_vs_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: Sequence[float],
                    **attack) -> np.ndarray:
    """Accuracy under untargeted :func:`pgd` at each eps of a grid: the robustness curve of
    docs/methods.md section 1 (Bigolin Lanfredi et al., accuracy-vs-eps; its median is
    :func:`eps50`).

    Args:
        model, x, y, eps_grid: as :func:`robust_at_eps`.
        **attack: the keyword arguments of :func:`robust_at_eps` (norm, steps, step_size,
            random_start, seed, batch_size, nested (default True), progress).

    Returns:
        np.ndarray float64 (len(eps_grid),) of accuracies in [0, 1]: the mean over the
        images of :func:`robust_at_eps`.

    Raises:
        ValueError: as :func:`robust_at_eps`; TypeError: an unknown keyword.
    """
    flags = robust_at_eps(model, x, y, eps_grid, **attack)
    return flags.double().mean(dim=0).numpy() if len(flags) else np.zeros(flags.shape[1], dtype=np.float64)


def robust_at_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_grid: Sequence[float],
    *,
    norm: str = "linf",
    steps: int = 40,
    step_size: Optional[float] = None,
    random_start: bool = True,
    seed: Optional[int] = 0,
    batch_size: int = 500,
    nested: bool = True,
    progress: Optional[Progress] = None,
) -> torch.Tensor:
    """Per image and eps of a grid: is the image still classified correctly after an
    untargeted :func:`pgd` attack? The per-image numbers that :func:`accuracy_vs_eps`
    averages into the robustness curve.

    Every eps is one batched PGD attack per chunk of ``batch_size`` images (the chunks run
    on the model's device; ``x`` may live on the CPU).

    ``nested=True`` (default): an image counts as robust at eps when it is classified
    correctly clean *and* after the attacks at every grid eps' <= eps. The eps'-ball lies
    inside the eps-ball, so this is a stronger attack than one PGD run per eps (the curve is
    non-increasing, a tighter upper bound on the true robust accuracy) and cheaper: images
    already broken are not attacked again. ``nested=False``: one independent attack per eps
    on every image (the accuracy at eps 0 is then the clean accuracy, the others the
    :func:`robust_accuracy`, which may count a clean mistake as robust).

    Args:
        model: classifier (N, C, H, W) in [0, 1] -> logits (N, K); left unchanged.
        x: (N, C, H, W) images in [0, 1]; y: (N,) int64 labels.
        eps_grid: radii in [0, 1] pixel units (l_inf: at most 1), strictly ascending, >= 0.
            eps 0 costs one forward pass (no attack).
        norm: ``"linf"`` (default) or ``"l2"``.
        steps: PGD steps per attack (default 40).
        step_size: ``None`` (default): :func:`default_step_size` of each eps (2.5 * eps /
            steps); a number: that step for every eps.
        random_start: random start in the eps-ball (default True).
        seed: seed of the random starts; the chunk starting at position i of the images
            attacked at an eps uses ``seed + i``, as :func:`robust_accuracy` does (so with
            ``nested=False`` each point equals ``robust_accuracy`` at that eps; the result
            depends on ``seed``, ``batch_size`` and, with ``nested``, the grid); None:
            fresh random starts.
        batch_size: images per PGD batch (default 500).
        nested: see above (default True).
        progress: ``progress(fraction, message)`` after each (eps, chunk).

    Returns:
        bool tensor (N, len(eps_grid)) on the CPU; with ``nested`` each row is
        non-increasing (True up to the first eps that breaks the image).

    Raises:
        ValueError: bad images/labels (see :func:`pgd`); an empty, unsorted, negative or
            non-finite grid; an l_inf eps above 1; steps < 1; step_size <= 0;
            batch_size < 1; unknown norm.
    """
    check_images(x)
    grid = _check_grid(eps_grid)
    for e in grid:
        _check_settings(float(e), norm, steps, step_size)
    y = as_labels(y, len(x), name="y", device=x.device)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    n = len(x)
    flags = torch.zeros(n, len(grid), dtype=torch.bool)
    if n == 0:
        return flags
    device = model_device(model, x.device)
    y_cpu = y.cpu()

    def correct_on(idx: torch.Tensor, eps: float, k: Optional[int]) -> torch.Tensor:
        """Boolean (len(idx),) on the CPU: still correct after the attack at eps (k: the
        grid index, for the progress; None: the clean pass before the grid, not reported)."""
        out = torch.zeros(len(idx), dtype=torch.bool)
        for start in range(0, len(idx), batch_size):
            sel = idx[start : start + batch_size]
            xb, yb = x[sel].to(device), y_cpu[sel].to(device)
            if eps > 0:
                xb = pgd(model, xb, yb, eps=eps, norm=norm, steps=steps, step_size=step_size,
                         random_start=random_start, seed=None if seed is None else seed + start)
            with torch.no_grad():
                out[start : start + len(sel)] = (model(xb).argmax(1) == yb).cpu()
            done = start + len(sel)
            if k is not None:
                report(progress, (k + done / len(idx)) / len(grid),
                       f"{norm} eps {eps:g} ({k + 1}/{len(grid)}): {done}/{len(idx)} images")
        return out

    everyone = torch.arange(n)
    with eval_mode(model):
        if nested:
            alive = correct_on(everyone, 0.0, None) if grid[0] > 0 else None
            for k, eps in enumerate(grid):
                idx = everyone if alive is None else alive.nonzero().flatten()
                if len(idx):
                    still = correct_on(idx, float(eps), k)
                    alive = torch.zeros(n, dtype=torch.bool)
                    alive[idx] = still
                else:
                    alive = torch.zeros(n, dtype=torch.bool)
                    report(progress, (k + 1) / len(grid), f"{norm} eps {eps:g}: no image left to attack")
                flags[:, k] = alive
        else:
            for k, eps in enumerate(grid):
                flags[:, k] = correct_on(everyone, float(eps), k)
    return flags


def _check_curve(eps_grid, accuracy) -> tuple[np.ndarray, np.ndarray]:
    grid = _check_grid(eps_grid)
    try:
        acc = np.asarray(accuracy.detach().cpu() if isinstance(accuracy, torch.Tensor) else accuracy,
                         dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("accuracy must be a 1-D sequence of numbers") from None
    if acc.shape != grid.shape:
        raise ValueError(f"eps_grid and accuracy must have the same length, got {grid.shape} and {acc.shape}")
    if not np.isfinite(acc).all() or (acc < 0).any() or (acc > 1).any():
        raise ValueError(f"accuracy must hold fractions in [0, 1], got {acc.tolist()}")
    return grid, acc


def eps50(eps_grid: Sequence[float], accuracy: Sequence[float]) -> float:
    """Median robustness eps50: where the accuracy-vs-eps curve first falls to 50 %, by
    linear interpolation between the two grid points around the crossing (docs/methods.md
    section 1, Bigolin Lanfredi et al.).

    With ``i`` the first grid index where ``accuracy[i] <= 0.5``:

    * ``i > 0``: ``eps[i-1] + (accuracy[i-1] - 0.5) / (accuracy[i-1] - accuracy[i]) *
      (eps[i] - eps[i-1])``;
    * ``i == 0`` and ``accuracy[0] == 0.5`` exactly: ``eps_grid[0]``;
    * otherwise the curve does not cross 50 % inside the grid and eps50 is not a number the
      grid can give: ``float("nan")``. Either the accuracy is already below 50 % at the
      grid's smallest eps (eps50 lies below it: a model below 50 % clean accuracy, or a grid
      that starts too high), or it stays above 50 % up to the largest (eps50 lies above it:
      extend the grid). :func:`eps50_outside` says which, :func:`format_eps50` says it in
      words.

    Older model cards hold ``inf`` for "above the grid" (and ``eps_grid[0]`` for "below");
    :func:`format_eps50` reads those with their stored curve.

    Args:
        eps_grid: (G,) radii, finite, >= 0, strictly ascending (any units; the result is in
            the same units).
        accuracy: (G,) accuracies in [0, 1] (fractions, not percent).

    Returns:
        eps50 as a float, NaN when the curve does not cross 50 % inside the grid.

    Raises:
        ValueError: empty, unsorted, negative or non-finite grid; lengths that differ;
            accuracies outside [0, 1] or NaN.
    """
    grid, acc = _check_curve(eps_grid, accuracy)
    below = np.flatnonzero(acc <= 0.5)
    if below.size == 0:
        return float("nan")  # above the grid's largest eps
    i = int(below[0])
    if i == 0:
        return float(grid[0]) if acc[0] == 0.5 else float("nan")  # below the grid's smallest eps
    a0, a1, e0, e1 = acc[i - 1], acc[i], grid[i - 1], grid[i]
    return float(e0 + (a0 - 0.5) / (a0 - a1) * (e1 - e0))


def eps50_outside(eps_grid: Sequence[float], accuracy: Sequence[float]) -> Optional[str]:
    """Where eps50 lies when the curve does not cross 50 % inside the grid: ``"below"``
    (the accuracy is under 50 % already at the grid's smallest eps), ``"above"`` (it stays
    over 50 % up to the largest), or None (it crosses inside: :func:`eps50` is a number).

    Raises:
        ValueError: as :func:`eps50`.
    """
    _, acc = _check_curve(eps_grid, accuracy)
    if acc[0] < 0.5:
        return "below"
    if (acc > 0.5).all():
        return "above"
    return None


def format_eps50(
    value: Optional[float] = None,
    eps_grid: Optional[Sequence[float]] = None,
    accuracy: Optional[Sequence[float]] = None,
    *,
    scale: float = 1.0,
    fmt: str = ".4g",
) -> str:
    """eps50 as a reader should see it: a number only when the curve crosses 50 % inside
    its grid, else where it lies.

    Args:
        value: eps50 in pixel units as :func:`eps50` returns it or a model card stores it
            (NaN: not inside the grid; ``inf``, from older cards: above the grid; None: not
            measured). Ignored when the curve is given: the curve decides (so an older
            card's ``eps_grid[0]`` for a curve already below 50 % reads as "below").
        eps_grid, accuracy: the curve (pixel units; fractions in [0, 1]), when known: it
            says on which side of the grid eps50 lies and the grid's ends.
        scale: display units per pixel unit (255 for an eps shown in /255).
        fmt: format spec of the number (default ``".4g"``); the grid's ends are written
            with 4 significant digits.

    Returns:
        ``"0.3251"``; ``"below the grid's smallest eps (0.1)"``; ``"above the grid's largest
        eps (0.5)"``; without a curve ``"above the grid"`` (inf), ``"outside the grid"``
        (NaN) or ``"not measured"`` (None).

    Raises:
        ValueError: a curve that :func:`eps50` refuses.
    """
    if eps_grid is not None and accuracy is not None:
        grid = _check_grid(eps_grid)
        side = eps50_outside(grid, accuracy)
        if side == "below":
            return f"below the grid's smallest eps ({grid[0] * scale:.4g})"
        if side == "above":
            return f"above the grid's largest eps ({grid[-1] * scale:.4g})"
        value = eps50(grid, accuracy)
    if value is None:
        return "not measured"
    value = float(value)
    if value == float("inf"):
        return "above the grid"
    if not math.isfinite(value):
        return "outside the grid"
    return f"{value * scale:{fmt}}"


def format_curve_eps50(curve: Optional[dict], *, scale: float = 1.0, fmt: str = ".4g") -> str:
    """:func:`format_eps50` of a stored curve: a dict with ``eps50`` and, where measured,
    ``eps_grid`` and ``accuracy`` (a model card's ``metrics["curve"]``, or the Models page's
    eps50 on request). Older cards' ``inf`` reads as "above the grid's largest eps (...)".
    Returns "–" for no curve; a curve in another shape falls back to its stored number."""
    curve = curve or {}
    if curve.get("eps50") is None and not curve.get("eps_grid"):
        return "–"
    try:
        return format_eps50(curve.get("eps50"), curve.get("eps_grid"), curve.get("accuracy"), scale=scale, fmt=fmt)
    except ValueError:
        return format_eps50(curve.get("eps50"), scale=scale, fmt=fmt)


# ---------------------------------------------------------------- one attack, many views


@dataclass
class AttackResult:
    """One PGD attack on a few images by one model, with what the Attack page shows.

    Attributes:
        x: (N, C, H, W) clean images in [0, 1]; x_adv: (N, C, H, W) attacked, in [0, 1].
        labels: (N,) int64 true labels (-1 where unknown).
        y: (N,) int64 classes the attack used: the labels (untargeted; the clean prediction
            where the label is unknown) or the targets (targeted).
        targeted: whether ``y`` are targets.
        probs_before, probs_after: (N, K) softmax probabilities on x and x_adv.
        trace: the :class:`PGDTrace` (loss, logits, norm per step).
        settings: the attack settings (eps, norm, steps, step_size, random_start, seed, ...).
    """

    x: torch.Tensor
    x_adv: torch.Tensor
    labels: torch.Tensor
    y: torch.Tensor
    targeted: bool
    probs_before: torch.Tensor
    probs_after: torch.Tensor
    trace: PGDTrace
    settings: dict = field(default_factory=dict)

    @property
    def delta(self) -> torch.Tensor:
        """(N, C, H, W) signed perturbation x_adv - x, pixel units."""
        return self.x_adv - self.x

    @property
    def pred_before(self) -> torch.Tensor:
        return self.probs_before.argmax(1)

    @property
    def pred_after(self) -> torch.Tensor:
        return self.probs_after.argmax(1)

    @property
    def success(self) -> torch.Tensor:
        """(N,) bool: targeted, the prediction is the target; untargeted, it left ``y``."""
        return self.pred_after == self.y if self.targeted else self.pred_after != self.y

    def prediction(self, i: int = 0, *, after: bool = False) -> tuple[int, float]:
        """Image ``i``'s (predicted class, its probability in [0, 1]) on x, or on x_adv with
        ``after``."""
        p = (self.probs_after if after else self.probs_before)[i]
        return int(p.argmax()), float(p.max())

    def table_row(self, class_names: Sequence[str], i: int = 0) -> dict:
        """Image ``i``'s row of the Attack page's table: ``before`` / ``after`` ("<class> (<confidence> %)"),
        ``attack succeeded``, and the perturbation's ``|δ|∞`` and ``|δ|2`` (pixel units)."""
        (b, pb), (a, pa) = self.prediction(i), self.prediction(i, after=True)
        d = self.delta[i].flatten()
        return {"before": f"{class_names[b]} ({100 * pb:.1f} %)", "after": f"{class_names[a]} ({100 * pa:.1f} %)",
                "attack succeeded": bool(self.success[i]), "|δ|∞": float(d.abs().max()), "|δ|2": float(d.norm())}


def run_attack(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 40,
    step_size: Optional[float] = None,
    random_start: bool = False,
    seed: Optional[int] = 0,
    target: Union[int, torch.Tensor, None] = None,
    names: Optional[Sequence[str]] = None,
) -> AttackResult:
    """Attack a few images and keep what a view needs: predictions and confidences before
    and after, the perturbation and the per-step trace (Attack page; docs/methods.md "Standard
    attack settings").

    Args:
        model: classifier; left unchanged. x: (N, C, H, W) in [0, 1], moved to the model's
            device for the attack (results come back on the CPU).
        labels: (N,) true labels; -1 marks an unknown label (an uploaded image): an
            untargeted attack then moves away from the model's clean prediction.
        eps, norm, steps, step_size, seed: as in :func:`pgd` (eps in [0, 1] pixel units).
        random_start: default False here, so that step 0 of the trace is the clean image.
        target: None (default): untargeted. An int (one class for all images) or (N,)
            classes: targeted toward them.
        names: one name per image for messages (e.g. ``"test #17"``: the dataset's image
            number); default: the images' positions in the batch.

    Returns:
        :class:`AttackResult` on the CPU.

    Raises:
        ValueError: everything :func:`pgd` refuses, and a target equal to a known label or
            outside [0, K).
    """
    check_images(x)
    labels = as_labels(labels, len(x), name="labels", device="cpu")
    device = model_device(model, x.device)
    xd = x.detach().to(device)
    with torch.no_grad(), eval_mode(model):
        probs_before = torch.softmax(model(xd), dim=1)
    k = probs_before.shape[1]
    if len(labels) and (int(labels.max()) >= k or int(labels.min()) < -1):
        raise ValueError(f"labels must lie in [0, {k}) or be -1 (unknown), got {labels.tolist()[:10]}")
    if target is None:
        y = torch.where(labels >= 0, labels, probs_before.argmax(1).cpu())
    else:
        y = as_labels(target, len(x), name="target", device="cpu", broadcast=True).clone()
        check_classes(y, k, "target classes")
        same = ((y == labels) & (labels >= 0)).nonzero().flatten()
        if len(same):
            if names is not None and len(names) == len(x):
                which = ", ".join(f"{names[i]} (class {int(labels[i])})" for i in same.tolist()[:10])
            else:
                which = "the image(s) at batch position(s) " + ", ".join(str(i) for i in same.tolist()[:10])
            raise ValueError(
                f"the target class equals the true label of {which}: choose another target class "
                "(or no target, for an untargeted attack)"
            )
    x_adv, tr = pgd(model, xd, y.to(device), eps=eps, norm=norm, steps=steps, step_size=step_size,
                    random_start=random_start, targeted=target is not None, seed=seed, trace=True)
    probs_after = torch.softmax(tr.logits[-1], dim=1)
    trace = PGDTrace(tr.loss.cpu(), tr.logits.cpu(), tr.norm.cpu(), dict(tr.settings, seed=seed))
    return AttackResult(x.detach().cpu(), x_adv.cpu(), labels, y, target is not None,
                        probs_before.cpu(), probs_after.cpu(), trace, dict(trace.settings))


# ------------------------------------------------------------- perceptually aligned gradients

#: Default l_2 radius ([0, 1] pixel units) of the PAG view on 28 x 28 digits.
PAG_EPS = 6.0
#: Default number of PGD steps of the PAG view.
PAG_STEPS = 80


def _target_classes(model: nn.Module, x: torch.Tensor, classes) -> tuple[torch.Tensor, torch.Tensor, torch.device]:
    """One image on the model's device, the target classes of a sweep (None: every class)
    and the device. Raises ValueError for no class or a class outside [0, K)."""
    device = model_device(model, x.device)
    xd = x.detach().to(device)
    with torch.no_grad(), eval_mode(model):
        k = model(xd).shape[1]
    if classes is None:
        return xd, torch.arange(k), device
    targets = torch.as_tensor(list(classes), dtype=torch.long).reshape(-1)
    if targets.numel() == 0:
        raise ValueError("classes must name at least one class")
    if (targets < 0).any() or (targets >= k).any():
        raise ValueError(f"classes must lie in [0, {k}), got {targets.tolist()}")
    return xd, targets, device


def targeted_class_sweep(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float = PAG_EPS,
    steps: int = PAG_STEPS,
    step_size: Optional[float] = None,
    classes: Optional[Sequence[int]] = None,
    norm: str = "l2",
) -> torch.Tensor:
    """The "perceptually aligned gradients" view (docs/methods.md section 2; Ganz, Kawar & Elad,
    and Santurkar et al. 2019 / Tsipras et al. 2019 before them): from ONE image, a
    large-eps targeted PGD (l_2 by default, no random start) toward each class. With
    gradients aligned to the data (a robust model), each result looks like a member of its
    target class; a standard model's show streaks and noise (its scattered changes already
    satisfy it). Caveat: an l_inf-trained MNIST model that thresholds its input has zero
    gradient on the black background; its results then stay the original with dimmed
    strokes (masked, not aligned, gradients).

    Runs as one batch: the image repeated K times, target k for copy k.

    Args:
        model: classifier; left unchanged.
        x: one image, (C, H, W) or (1, C, H, W), in [0, 1].
        eps: radius in [0, 1] pixel units (default :data:`PAG_EPS` = 6.0, l_2). On 28 x 28
            MNIST digits (own l_2 norm ~9), looked at on test images 0, 5, 7 and 17 with 80
            steps: ``mnist-5k/pgd-l2`` (l_2 PGD training, eps 2) draws every target digit
            cleanly at 6; ``mnist-5k/standard`` reaches every target as well, with streaks on
            test #0 but almost as cleanly as pgd-l2 on test #5; ``mnist-5k/pgd-linf`` only
            dims its strokes (masked gradient, above). So a fixed large eps does not separate
            the models: :func:`smallest_target_eps` (the eps each target *needs*) does.
        steps: PGD steps (default :data:`PAG_STEPS` = 80).
        step_size: default 2.5 * eps / steps.
        classes: the K target classes (default: every class of the model, in order).
        norm: ``"l2"`` (default, as in the papers) or ``"linf"``.

    Returns:
        (K, C, H, W) float tensor in [0, 1] on the device of ``x``: row k is the attack
        toward ``classes[k]``; |row - x| <= eps.

    Raises:
        ValueError: x not one image in [0, 1] (or NaN); classes empty or outside [0, K);
            bad attack settings (see :func:`pgd`).
    """
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        x = x.unsqueeze(0)
    check_images(x)
    if x.shape[0] != 1:
        raise ValueError(f"targeted_class_sweep takes one image, (C, H, W) or (1, C, H, W); got {tuple(x.shape)}")
    _check_settings(eps, norm, steps, step_size)
    xd, targets, device = _target_classes(model, x, classes)
    batch = xd.expand(len(targets), *xd.shape[1:]).contiguous()
    out = pgd(model, batch, targets.to(device), eps=eps, norm=norm, steps=steps, step_size=step_size,
              random_start=False, targeted=True)
    return out.to(x.device)


def target_probabilities(model: nn.Module, x: torch.Tensor, targets, batch_size: int = 500) -> torch.Tensor:
    """The model's softmax probability of each image's target class, e.g. of the rows of a
    :func:`targeted_class_sweep` (``targets``: its classes, by default ``arange(K)``): did the
    attack reach its class, and how surely?

    Args:
        model: classifier (N, C, H, W) in [0, 1] -> logits (N, K), evaluated in eval mode on
            its own device; left unchanged.
        x: (N, C, H, W) images in [0, 1] (any device).
        targets: (N,) int classes in [0, K), one per image.
        batch_size: images per forward pass.

    Returns:
        (N,) float32 in [0, 1] on the CPU.

    Raises:
        ValueError: bad images, targets of the wrong length or out of range.
    """
    check_images(x)
    t = as_labels(targets, len(x), name="targets", device="cpu")
    device = model_device(model, x.device)
    with torch.no_grad(), eval_mode(model):
        p = torch.cat([torch.softmax(model(x[i : i + batch_size].to(device)).float(), dim=1).cpu()
                       for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, 1)
    check_classes(t, p.shape[1], "targets")
    return p[torch.arange(len(x)), t]


#: Default l_2 grid ([0, 1] pixel units) of :func:`smallest_target_eps` on 28 x 28 digits
#: (a digit's own l_2 norm is ~9). Chosen from a measurement on the shipped mnist-5k models
#: (test images 0, 5, 7, 17, every other class, 80 steps, on a finer grid from 0.25): no
#: target was reached below eps 1 by any of standard, pgd-linf, pgd-l2, pag-cm; the median
#: smallest eps was 2.0, 3.0, 3.5 and 2.5, the largest 6 (one pgd-linf target none up to
#: 10); the same smallest eps with 40 or 200 steps (standard, pgd-l2; images 0 and 5).
TARGET_EPS_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0)
#: Default PGD steps of :func:`smallest_target_eps`: half of :data:`PAG_STEPS`, at half the cost,
#: since 40, 80 and 200 steps gave the same smallest eps (measurement above).
TARGET_EPS_STEPS = 40


@dataclass
class TargetEpsSearch:
    """The result of :func:`smallest_target_eps`: targeted attacks of one image toward each
    class at every eps of a grid.

    Attributes:
        eps_grid: (G,) float64 radii, ascending, [0, 1] pixel units (in ``settings["norm"]``).
        classes: (K,) int64 target classes.
        images: (K, G, C, H, W) attacked images in [0, 1] (CPU): row k, column g is the attack
            toward ``classes[k]`` with radius ``eps_grid[g]``.
        probs: (K, G) the model's probability of the target class on each attacked image.
        reached: (K, G) bool: the model's prediction on the attacked image is the target and
            its probability is at least ``settings["confidence"]``.
        settings: norm, steps, step_size ("2.5 * eps / steps" or a number), confidence.
    """

    eps_grid: np.ndarray
    classes: torch.Tensor
    images: torch.Tensor
    probs: torch.Tensor
    reached: torch.Tensor
    settings: dict = field(default_factory=dict)

    @property
    def first_index(self) -> torch.Tensor:
        """(K,) int64: the grid index of the smallest eps that reaches each target; -1 where
        no eps of the grid does."""
        hit = self.reached.any(1)
        first = self.reached.to(torch.int64).argmax(1)
        return torch.where(hit, first, torch.full_like(first, -1))

    @property
    def min_eps(self) -> np.ndarray:
        """(K,) float64: the smallest eps of the grid that reaches each target; NaN where
        none does (the target lies beyond the grid's largest eps, for this attack)."""
        idx = self.first_index.numpy()
        return np.where(idx >= 0, self.eps_grid[np.maximum(idx, 0)], np.nan)

    def at_min_eps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, probs)``: (K, C, H, W) each target's attacked image at its smallest
        reaching eps (at the grid's largest eps where none reaches it) and (K,) the target's
        probability there."""
        idx = self.first_index
        col = torch.where(idx >= 0, idx, torch.full_like(idx, len(self.eps_grid) - 1))
        rows = torch.arange(len(col))
        return self.images[rows, col], self.probs[rows, col]


def smallest_target_eps(
    model: nn.Module,
    x: torch.Tensor,
    eps_grid: Sequence[float] = TARGET_EPS_GRID,
    *,
    steps: int = TARGET_EPS_STEPS,
    classes: Optional[Sequence[int]] = None,
    norm: str = "l2",
    confidence: float = 0.0,
    batch_size: int = 1024,
) -> TargetEpsSearch:
    """For one image and each target class, the smallest eps of a grid at which a targeted
    PGD attack makes the model predict that class: what the "perceptually aligned gradients"
    view (docs/methods.md section 2.4) needs to be telling. A fixed large eps lets every model
    reach every target; the eps it *needs* separates a model that an invisible change convinces
    (standard) from one that needs a visible, class-like change (robust, aligned gradients).

    Every (target, eps) pair is one independent attack, exactly :func:`pgd` with
    ``targeted=True, random_start=False`` and step ``2.5 * eps / steps`` (or ``step_size``),
    and all of them run together, as one batch (chunks of ``batch_size`` rows) in which each
    row has its own radius and step.

    Args:
        model: classifier (N, C, H, W) in [0, 1] -> logits (N, K); left unchanged.
        x: one image, (C, H, W) or (1, C, H, W), in [0, 1].
        eps_grid: radii >= 0 in [0, 1] pixel units, in ``norm`` (default
            :data:`TARGET_EPS_GRID`, l_2 0 to 10), strictly ascending. eps 0 is the clean
            image: it "reaches" the class the model already predicts.
        steps: PGD steps per attack (default :data:`TARGET_EPS_STEPS` = 40).
        classes: the target classes (default: every class of the model, in order).
        norm: ``"l2"`` (default, the PAG view's) or ``"linf"``.
        confidence: a target counts as reached when it is the model's prediction *and* its
            probability is >= ``confidence`` (default 0: the prediction alone), in [0, 1).
        batch_size: rows (target x eps pairs) per PGD batch (default 1024).

    Returns:
        :class:`TargetEpsSearch` on the CPU; its ``min_eps`` is NaN for a target that no eps
        of the grid reaches.

    Raises:
        ValueError: x not one image in [0, 1] (or NaN); a grid that is empty, not strictly
            ascending, with a radius < 0, not finite, or above 1 for l_inf; classes empty or outside [0, K); steps < 1;
            step_size <= 0; confidence outside [0, 1); unknown norm.
    """
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        x = x.unsqueeze(0)
    check_images(x)
    if x.shape[0] != 1:
        raise ValueError(f"smallest_target_eps takes one image, (C, H, W) or (1, C, H, W); got {tuple(x.shape)}")
    grid = _check_grid(eps_grid)
    for e in grid:
        _check_settings(float(e), norm, steps, None)
    if not (0.0 <= float(confidence) < 1.0):
        raise ValueError(f"confidence must lie in [0, 1), got {confidence}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    xd, targets, device = _target_classes(model, x, classes)
    n_k, n_g = len(targets), len(grid)
    row_target = targets.repeat_interleave(n_g).to(device)                       # (K*G,)
    row_eps = torch.as_tensor(np.tile(grid, n_k), dtype=xd.dtype, device=device)  # (K*G,)
    out, probs = [], []
    with eval_mode(model):
        for i in range(0, n_k * n_g, int(batch_size)):
            t, e = row_target[i : i + batch_size], row_eps[i : i + batch_size]
            x0 = xd.expand(len(t), *xd.shape[1:]).contiguous()
            with torch.enable_grad():
                adv = _targeted_rows(model, x0, t, e, norm, int(steps))
            with torch.no_grad():
                p = torch.softmax(model(adv), 1)
            out.append(adv.cpu())
            probs.append(p.cpu())
    p_all = torch.cat(probs)                                                       # (K*G, K_model)
    rows = torch.arange(n_k * n_g)
    p_target = p_all[rows, row_target.cpu()]
    reached = (p_all.argmax(1) == row_target.cpu()) & (p_target >= float(confidence))
    return TargetEpsSearch(
        eps_grid=grid.astype(np.float64), classes=targets.cpu(),
        images=torch.cat(out).reshape(n_k, n_g, *xd.shape[1:]),
        probs=p_target.reshape(n_k, n_g), reached=reached.reshape(n_k, n_g),
        settings=dict(norm=norm, steps=int(steps), step_size="2.5 * eps / steps", confidence=float(confidence)),
    )


def _targeted_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, norm: str,
                   steps: int) -> torch.Tensor:
    """Targeted PGD without random start in which row i has its own radius eps[i] and step
    2.5 * eps[i] / steps: for each row the iterates of :func:`pgd` (``targeted=True``,
    ``random_start=False``) with that eps. x (N, C, H, W), y (N,), eps (N,)."""
    alpha = (2.5 * eps / steps).view(-1, *[1] * (x.ndim - 1))
    x_adv = x.clone()
    for step in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        if step == 0:
            _check_logits(logits, y)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x_adv)
        with torch.no_grad():
            x_adv = x_adv.detach() - alpha * ascent_direction(grad, norm)
            delta = x_adv - x
            if norm == "linf":
                r = eps.view_as(alpha)
                delta = torch.maximum(torch.minimum(delta, r), -r)
            else:
                delta = project_ball(delta, eps, "l2")  # per row: eps (N,) against |delta_i| (N,)
            x_adv = torch.clamp(x + delta, min=0, max=1)
    return x_adv.detach()
