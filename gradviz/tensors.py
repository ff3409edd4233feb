"""Tensor helpers shared by the library, one copy each: the per-image cosine, per-image l_p
norms and the projection onto an eps-ball, the attacks' steepest-ascent direction, an
eval-mode context, a module's device, and class-label checks.

Conventions (docs/methods.md): images are (N, C, H, W); a per-image quantity
is taken over the flattened C*H*W entries of each image; a cosine with a zero vector is 0.
Nothing here imports another gradviz module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional, Union

import torch
from torch import nn

__all__ = [
    "NORMS",
    "ascent_direction",
    "as_labels",
    "check_classes",
    "eval_mode",
    "model_device",
    "per_image_cosine",
    "per_image_norm",
    "project_ball",
]

#: The perturbation norms gradviz's attacks and training objectives know.
NORMS = ("linf", "l2")


def per_image_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_i) = <a_i, b_i> / (|a_i|_2 |b_i|_2) per row over the flattened entries.

    docs/methods.md convention: the cosine with a zero vector is defined as 0, and its
    gradient there is 0: no NaN, and no 1/eps blow-up as with ``F.cosine_similarity``. It is
    differentiable everywhere else (double backpropagation works through it: IGD, PAG and
    L_alpha train on it). For the cosine of two whole tensors, pass them as one row each
    (``a.reshape(1, -1)``).

    Args:
        a, b: (N, ...) tensors of the same shape (N >= 0), any float dtype.

    Returns:
        (N,) in [-1, 1], on a's device and dtype.

    Raises:
        ValueError: a and b have different shapes or no batch dimension.
    """
    if a.shape != b.shape:
        raise ValueError(f"cosine of tensors of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim < 1:
        raise ValueError("cosine needs tensors with a batch dimension (N, ...), got 0-d tensors")
    a, b = a.flatten(1) if a.ndim > 1 else a[:, None], b.flatten(1) if b.ndim > 1 else b[:, None]
    denom = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    ok = denom > 0
    safe = torch.where(ok, denom, torch.ones_like(denom))
    return torch.where(ok, (a * b).sum(dim=1) / safe, torch.zeros_like(denom))


def per_image_norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    """|d_i| per image: the largest |entry| for ``"linf"``, the Euclidean norm for ``"l2"``.

    Args:
        d: (N, ...) perturbations (in [0, 1] pixel units for images).
        norm: ``"linf"`` or ``"l2"`` (anything else is taken as l2; callers check first).

    Returns:
        (N,) >= 0.
    """
    flat = d.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def project_ball(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project each perturbation delta_i onto the eps-ball of ``norm`` around 0: clamp each
    entry to [-eps, eps] for l_inf; rescale by min(1, eps / |delta_i|_2) for l_2 (a
    perturbation inside the ball, and a zero one, is unchanged). Madry et al. (ICLR 2018),
    the projection step of PGD.

    Args:
        delta: (N, ...) perturbations; eps: radius >= 0; norm: ``"linf"`` or ``"l2"``.

    Returns:
        (N, ...) like delta.
    """
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = per_image_norm(delta, "l2")
    factor = torch.clamp(eps / n, max=1.0).nan_to_num(1.0).view(-1, *[1] * (delta.ndim - 1))
    return delta * factor


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of a step in ``norm`` for the gradient ``grad``
    (N, ...): ``sign(grad)`` for l_inf, ``grad / |grad|_2`` per image for l_2, where a zero
    gradient gives a zero direction (no step; no division by 0, no added epsilon)."""
    if norm == "linf":
        return grad.sign()
    g = grad.flatten(1).norm(dim=1).view(-1, *[1] * (grad.ndim - 1))
    return grad / torch.where(g > 0, g, torch.ones_like(g))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block and restore its previous mode (train or
    eval, per the module's ``training`` flag, recursively) afterwards, also on an error.
    Changes nothing else (gradients are enabled or not as outside)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module, default: Union[str, torch.device, None] = None) -> torch.device:
    """The device of ``model``'s first parameter, else of its first buffer, else ``default``
    (None: the CPU), for a module that holds no tensor at all."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu" if default is None else default)


def as_labels(y, n: int, *, name: str = "y", device: Optional[Union[str, torch.device]] = None,
              broadcast: bool = False) -> torch.Tensor:
    """Class labels as an (N,) int64 tensor, checked.

    Args:
        y: a tensor, array or sequence of N integer class indices; with ``broadcast``, also
            one int (or a one-element sequence), the same class for all N images.
        n: N, the number of images.
        name: the argument's name in error messages.
        device: where the result goes (None: where ``y`` is).
        broadcast: accept one int for all images.

    Returns:
        (N,) int64 on ``device``. Values are not range-checked (see :func:`check_classes`).

    Raises:
        ValueError: a bool, float or complex dtype ("must hold integer class indices"; an
            empty ``y`` of any dtype passes, e.g. ``[]``), or a shape other than (N,).
    """
    t = torch.as_tensor(y)
    if t.numel() and (t.dtype == torch.bool or t.is_floating_point() or t.is_complex()):
        raise ValueError(f"{name} must hold integer class indices; got dtype {t.dtype}")
    if broadcast and t.numel() == 1 and t.ndim <= 1:
        t = t.reshape(()).expand(n)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},): {n} labels for {n} images; got shape {tuple(t.shape)}")
    return t.to(device=t.device if device is None else device, dtype=torch.int64)


def check_classes(t: torch.Tensor, k: int, name: str = "labels") -> None:
    """Raise ValueError unless every class index in ``t`` lies in [0, k) (k: the model's
    number of classes, K of its (N, K) logits)."""
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
        raise ValueError(f"{name} must lie in [0, {k}), got {int(t.min())}..{int(t.max())}")
