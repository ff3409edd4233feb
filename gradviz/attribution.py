"""Input attributions of image classifiers, computed with captum, and their display steps.

Attributions
------------
:func:`attribute` returns a *signed* attribution with the input's shape (N, C, H, W) for one
of the methods in :data:`METHODS`, taken with respect to either the target logit
``f(x)_t`` or the per-sample cross-entropy loss ``CE(f(x), t)`` (:data:`OBJECTIVES`).
:func:`resolve_target` picks the target class per image (true label, predicted class or a
fixed class).

Display steps
-------------
Nothing here reduces, rectifies, clips or rescales an attribution silently. The display
steps are separate, named functions, applied in this order by a caller that wants them:

1. :func:`reduce_channels` -- (N, C, H, W) -> (N, 1, H, W) (:data:`CHANNEL_REDUCTIONS`);
2. :func:`clip_percentile` -- clamp each image's map to its own percentiles;
3. :func:`scale_maps` -- per-panel, shared or raw scaling of one or more maps per image
   (:data:`SCALINGS`).

Kim, Seo and Jeon (docs/methods.md section 4) show the loss gradient for the predicted class,
summed over channels and clipped to its 0.5-99.5 percentiles::

    target = resolve_target(model, x, "predicted")
    a = attribute(model, x, target, "gradient", objective="loss")
    m = clip_percentile(reduce_channels(a, "sum"), 0.5, 99.5)

The models are never modified: their train/eval mode, parameters and hooks are left as
they are, so a model shared between app sessions can be passed directly.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from numbers import Integral, Real
from typing import TypeAlias, overload

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import (
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from gradviz.tensors import as_labels

__all__ = [
    "CHANNEL_REDUCTIONS",
    "METHODS",
    "OBJECTIVES",
    "SCALINGS",
    "TARGET_CHOICES",
    "attribute",
    "clip_percentile",
    "reduce_channels",
    "resolve_target",
    "scale_maps",
]

#: Attribution method id -> human-readable label, in display order.
METHODS: dict[str, str] = {
    "gradient": "Gradient (vanilla, signed)",
    "input_x_gradient": "Input × Gradient",
    "integrated_gradients": "Integrated Gradients",
    "smoothgrad": "SmoothGrad",
    "guided_backprop": "Guided Backpropagation",
}

#: Objective id -> human-readable label: the scalar per image that is differentiated.
OBJECTIVES: dict[str, str] = {
    "logit": "Target logit f(x)_t",
    "loss": "Cross-entropy loss CE(f(x), t)",
}

#: Ways of choosing the target class, for :func:`resolve_target`.
TARGET_CHOICES: tuple[str, ...] = ("label", "predicted", "class")

#: Channel reductions accepted by :func:`reduce_channels`.
CHANNEL_REDUCTIONS: tuple[str, ...] = ("sum", "abs_sum", "l2", "none")

#: Scalings accepted by :func:`scale_maps`.
SCALINGS: tuple[str, ...] = ("per_panel", "shared", "raw")

TargetLike: TypeAlias = int | Sequence[int] | np.ndarray | torch.Tensor
ArrayLike: TypeAlias = torch.Tensor | np.ndarray


# --------------------------------------------------------------------------------------
# Attribution
# --------------------------------------------------------------------------------------


class _Objective(nn.Module):
    """Wraps a classifier so that its forward returns one scalar per image.

    The target class travels as a forward argument (captum's ``additional_forward_args``)
    rather than captum's ``target``, so that IntegratedGradients and NoiseTunnel expand it
    together with the inputs, and so that an out-of-range class is reported as a clear
    ``ValueError`` the moment the number of classes K is known (at the first forward).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"the model must return logits of shape (N, K) = ({x.shape[0]}, K); "
                f"got {tuple(logits.shape)}"
            )
        num_classes = logits.shape[1]
        if target.numel() > 0 and int(target.max()) >= num_classes:
            raise ValueError(
                f"target class {int(target.max())} is out of range: the model has "
                f"{num_classes} classes, so targets must lie in [0, {num_classes})"
            )
        return self.reduce(logits, target)

    def reduce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _TargetLogit(_Objective):
    """forward(x, t) = f(x)_t, shape (N,)."""

    def reduce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.gather(1, target[:, None]).squeeze(1)


class _CrossEntropyLoss(_Objective):
    """forward(x, t) = CE(f(x), t) per sample (reduction "none"), shape (N,)."""

    def reduce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, reduction="none")


_OBJECTIVE_MODULES: dict[str, type[_Objective]] = {
    "logit": _TargetLogit,
    "loss": _CrossEntropyLoss,
}


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetLike,
    method: str = "gradient",
    *,
    objective: str = "logit",
    baselines: float | torch.Tensor | None = None,
    n_steps: int = 50,
    nt_samples: int = 25,
    stdevs: float = 0.15,
    seed: int | torch.Generator | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Signed input attribution of ``model`` at ``x`` for the class ``target``, via captum.

    The scalar differentiated per image is chosen by ``objective``:

    - ``"logit"`` (default): the target logit ``f(x)_t``;
    - ``"loss"``: the per-sample cross-entropy ``CE(f(x), t) = -log softmax(f(x))_t``.
      Its gradient is ``sum_c (p_c - [c = t]) grad_x f(x)_c`` with ``p = softmax(f(x))``:
      ``-(1 - p_t)`` times the target-logit gradient plus the other classes' gradients
      weighted by their probabilities. It points toward making ``t`` *less* likely.

    Methods (ids of :data:`METHODS`):

    - ``"gradient"``: ``d objective / d x``, signed (captum ``Saliency(abs=False)``).
      Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks", ICLR 2014
      workshop, section 3.1 (they then take ``max_c |.|``; here that is a display step).
    - ``"input_x_gradient"``: ``x * d objective / d x`` (captum ``InputXGradient``).
      Shrikumar et al., "Not Just a Black Box: Learning Important Features Through
      Propagating Activation Differences", arXiv:1605.01713, 2016.
    - ``"integrated_gradients"``: ``(x - x') * int_0^1 d objective(x' + a (x - x')) / d x da``
      with baseline ``x'`` (captum ``IntegratedGradients``, ``n_steps`` Gauss-Legendre
      nodes). Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks",
      ICML 2017, Eq. 1; completeness: the attributions sum to
      ``objective(x) - objective(x')`` (Proposition 1).
    - ``"smoothgrad"``: the mean gradient over ``nt_samples`` noisy copies
      ``x + N(0, stdevs^2)`` (captum ``NoiseTunnel`` over ``Saliency(abs=False)``,
      ``nt_type="smoothgrad"``). Smilkov et al., "SmoothGrad: removing noise by adding
      noise", arXiv:1706.03825, 2017, section 3. The noisy copies are not clamped to
      [0, 1].
    - ``"guided_backprop"``: the gradient with the backward pass of every ``nn.ReLU``
      module rectified (captum ``GuidedBackprop``). Springenberg et al., "Striving for
      Simplicity: The All Convolutional Net", ICLR 2015 workshop, Figure 1. captum
      hooks the ReLU modules during the call, so it runs on a ``copy.deepcopy`` of the
      model: the caller's model (for instance one shared across app sessions) is never
      hooked, not even transiently. Only ``nn.ReLU`` *modules* are modified; a
      functional ``F.relu`` / ``torch.relu`` in ``forward`` back-propagates as usual.

    The model is used as it is: its train/eval mode, parameters (and their
    ``requires_grad`` and ``.grad``) and hooks are left unchanged; nothing is moved to
    another device. In train mode, layers such as batch norm behave (and update their
    statistics) as they do in any forward pass. ``x`` is neither modified nor required to
    track gradients.

    Args:
        model: classifier taking (N, C, H, W) images in [0, 1] and returning logits (N, K).
        x: images, float tensor of shape (N, C, H, W), in [0, 1] by convention (not
            checked; values outside are allowed, NaN/inf are not).
        target: class index per image, integer, shape (N,) (tensor, array or list); a
            Python int or a 0-d tensor is broadcast to all N images. Each in [0, K).
            See :func:`resolve_target`.
        method: one of :data:`METHODS`. Default ``"gradient"``.
        objective: ``"logit"`` (default) or ``"loss"``, see above.
        baselines: integrated gradients only: the baseline ``x'``, a number or a tensor
            broadcastable to ``x`` (e.g. (C, H, W) or (N, C, H, W)). ``None`` (default)
            means the all-zero (black) image.
        n_steps: integrated gradients only: number of integration nodes (>= 1).
            Default 50, as Duan et al. (ICLR 2023).
        nt_samples: smoothgrad only: number of noisy samples per image (>= 1). Default 25.
        stdevs: smoothgrad only: standard deviation of the Gaussian noise in [0, 1] pixel
            units (>= 0), i.e. the noise level sigma / (x_max - x_min) of Smilkov et al.
            Default 0.15.
        seed: smoothgrad only: an int, or a ``torch.Generator`` from which one int seed is
            drawn. With a seed the noise is reproducible (for the same inputs, device and
            ``batch_size``) and the global RNG state is left untouched (the draw runs
            under ``torch.random.fork_rng``). ``None`` (default) draws from the global RNG.
            captum draws the noise from torch's global RNG, so gradviz runs one SmoothGrad
            call at a time (a lock shared by all threads).
        batch_size: largest number of images per captum call (>= 1); also bounds the
            number of scaled or noisy images per forward pass (captum
            ``internal_batch_size`` / ``nt_samples_batch_size``). Default 256.

    Returns:
        Detached tensor of shape (N, C, H, W) on ``x``'s device with ``x``'s dtype
        (float32 under the gradviz conventions): the signed attribution, in units of
        objective per unit pixel value for the gradient methods and of objective for
        input x gradient and integrated gradients.

    Raises:
        ValueError: ``x`` is not a 4-D floating tensor or contains NaN/inf; ``target`` is
            not integer, has the wrong length or a class outside [0, K); ``method`` or
            ``objective`` is unknown; ``n_steps`` < 1, ``nt_samples`` < 1, ``stdevs`` < 0,
            ``batch_size`` < 1; ``baselines`` is not broadcastable to ``x`` or not finite;
            the model does not return (N, K) logits.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; valid methods: {list(METHODS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives: {list(OBJECTIVES)}")
    x = _check_images(x)
    n_steps = _check_int("n_steps", n_steps, minimum=1)
    nt_samples = _check_int("nt_samples", nt_samples, minimum=1)
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    if (
        isinstance(stdevs, bool)
        or not isinstance(stdevs, Real)
        or not math.isfinite(stdevs)
        or stdevs < 0
    ):
        raise ValueError(f"stdevs must be a finite number >= 0 (pixel units); got {stdevs!r}")
    stdevs = float(stdevs)
    target_t = _as_target(target, x.shape[0], x.device)
    baseline_t = _as_baselines(baselines, x) if method == "integrated_gradients" else None
    seed_int = _as_seed(seed) if method == "smoothgrad" else None

    forward: nn.Module = _OBJECTIVE_MODULES[objective](model)
    if method == "guided_backprop":
        # captum registers hooks on every nn.ReLU while it runs: keep them off the caller's model.
        forward = copy.deepcopy(forward)

    # A private copy that tracks gradients (captum would otherwise set the flag itself, and warn).
    x = x.detach().clone().requires_grad_(True)
    chunks: list[torch.Tensor] = []
    with _noise_rng(seed_int, x.device) if method == "smoothgrad" else nullcontext():
        for start in range(0, x.shape[0], batch_size):
            stop = min(start + batch_size, x.shape[0])
            chunks.append(
                _attribute_chunk(
                    forward,
                    x[start:stop],
                    target_t[start:stop],
                    method,
                    baselines=None if baseline_t is None else baseline_t[start:stop],
                    n_steps=n_steps,
                    nt_samples=nt_samples,
                    stdevs=stdevs,
                    batch_size=batch_size,
                )
            )
    if not chunks:  # N == 0
        return torch.zeros_like(x, requires_grad=False)
    return torch.cat(chunks).detach()


def _attribute_chunk(
    forward: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    method: str,
    *,
    baselines: torch.Tensor | None,
    n_steps: int,
    nt_samples: int,
    stdevs: float,
    batch_size: int,
) -> torch.Tensor:
    """One captum call on a chunk of at most ``batch_size`` images."""
    args = (target,)
    if method == "gradient":
        return Saliency(forward).attribute(x, abs=False, additional_forward_args=args)
    if method == "input_x_gradient":
        return InputXGradient(forward).attribute(x, additional_forward_args=args)
    if method == "integrated_gradients":
        return IntegratedGradients(forward).attribute(
            x,
            baselines=baselines,
            additional_forward_args=args,
            n_steps=n_steps,
            internal_batch_size=batch_size,
        )
    if method == "smoothgrad":
        return NoiseTunnel(Saliency(forward)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=nt_samples,
            nt_samples_batch_size=max(1, batch_size // x.shape[0]),
            stdevs=stdevs,
            abs=False,
            additional_forward_args=args,
        )
    if method == "guided_backprop":
        return GuidedBackprop(forward).attribute(x, additional_forward_args=args)
    raise AssertionError(f"unhandled method {method!r}")  # pragma: no cover


def resolve_target(
    model: nn.Module,
    x: torch.Tensor,
    which: str,
    labels: TargetLike | None = None,
    class_index: int | None = None,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """The target class per image, for :func:`attribute`.

    Args:
        model: classifier taking (N, C, H, W) images in [0, 1] and returning logits (N, K).
        x: images (N, C, H, W), float.
        which: ``"label"`` (the given true ``labels``), ``"predicted"`` (argmax of the
            model's logits) or ``"class"`` (``class_index`` for every image); see
            :data:`TARGET_CHOICES`.
        labels: for ``"label"``: integer class indices, shape (N,). Ignored otherwise.
        class_index: for ``"class"``: one class index in [0, K). Ignored otherwise.
        batch_size: ``"predicted"`` runs the model on chunks of this many images (>= 1),
            without gradients. Default 256.

    Returns:
        int64 tensor of shape (N,) on ``x``'s device.

    Raises:
        ValueError: unknown ``which``; ``labels`` missing, of the wrong length, not
            integer or negative (labels >= K are caught by :func:`attribute`);
            ``class_index`` missing, not an int or outside [0, K) (K is read from one
            forward pass on the first image); ``x`` not a 4-D floating tensor or
            non-finite.
    """
    if which not in TARGET_CHOICES:
        raise ValueError(f"unknown target choice {which!r}; valid choices: {list(TARGET_CHOICES)}")
    x = _check_images(x)
    n = x.shape[0]
    if which == "label":
        if labels is None:
            raise ValueError("which='label' needs the true labels: pass labels=(N,) class indices")
        return _as_target(labels, n, x.device, name="labels", broadcast=False)
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    if which == "predicted":
        if n == 0:
            return torch.zeros(0, dtype=torch.int64, device=x.device)
        with torch.no_grad():
            preds = [model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, n, batch_size)]
        return torch.cat(preds).to(torch.int64)
    # which == "class"
    if class_index is None:
        raise ValueError("which='class' needs class_index, the class to explain for every image")
    if isinstance(class_index, bool) or not isinstance(class_index, Integral):
        raise ValueError(f"class_index must be an int; got {class_index!r}")
    if n > 0:
        with torch.no_grad():
            num_classes = model(x[:1]).shape[1]
        if not 0 <= class_index < num_classes:
            raise ValueError(
                f"class_index {class_index} is out of range: the model has {num_classes} "
                f"classes, so it must lie in [0, {num_classes})"
            )
    elif class_index < 0:
        raise ValueError(f"class_index must be >= 0; got {class_index}")
    return torch.full((n,), int(class_index), dtype=torch.int64, device=x.device)


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _check_images(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor with values in [0, 1]; got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    return x


def _check_int(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _as_target(
    target: TargetLike,
    n: int,
    device: torch.device,
    *,
    name: str = "target",
    broadcast: bool = True,
) -> torch.Tensor:
    """(N,) int64 class indices on ``device`` (:func:`gradviz.tensors.as_labels`), >= 0; the
    upper bound K is checked at the forward."""
    t = as_labels(target, n, name=name, device=device, broadcast=broadcast)
    if t.numel() > 0 and int(t.min()) < 0:
        raise ValueError(f"{name} must hold class indices >= 0; got {int(t.min())}")
    return t.contiguous()


def _as_baselines(baselines: float | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The integrated-gradients baseline, broadcast to ``x``'s shape (a view, not a copy)."""
    if baselines is None:
        return torch.zeros_like(x)
    if isinstance(baselines, bool):
        raise ValueError("baselines must be a number or a tensor broadcastable to x")
    b = torch.as_tensor(baselines, dtype=x.dtype, device=x.device).detach()
    try:
        b = b.expand_as(x)
    except RuntimeError:
        raise ValueError(
            f"baselines of shape {tuple(b.shape)} cannot be broadcast to x's shape {tuple(x.shape)}"
        ) from None
    if not bool(torch.isfinite(b).all()):
        raise ValueError("baselines contains NaN or inf values")
    return b


def _as_seed(seed: int | torch.Generator | None) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (), generator=seed, device=seed.device))
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"seed must be an int, a torch.Generator or None; got {seed!r}")
    return int(seed)


#: captum draws SmoothGrad's noise from torch's global RNG. Holding this lock around every
#: SmoothGrad call keeps concurrent calls (e.g. two app sessions in threads) from drawing
#: from, or restoring over, one another's seeded stream. Code outside gradviz that draws
#: from the global RNG in another thread at the same time is not covered.
_NOISE_RNG_LOCK = threading.Lock()


@contextmanager
def _noise_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Serialise SmoothGrad's use of the global RNG; with a seed, seed it inside a fork.

    The fork saves the CPU RNG state and that of ``device`` (where captum draws the noise)
    and restores them on exit, so the caller's global RNG state is left untouched.
    """
    with _NOISE_RNG_LOCK:
        if seed is None:
            yield
        elif device.type == "cpu":
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(seed)
                yield
        elif device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            with torch.random.fork_rng(devices=[index]):
                torch.random.default_generator.manual_seed(seed)
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)  # only this device, not manual_seed_all
                yield
        else:  # other accelerators: fork that device type's RNG, seed with torch.manual_seed
            index = device.index if device.index is not None else 0
            with torch.random.fork_rng(devices=[index], device_type=device.type):
                torch.manual_seed(seed)
                yield


# --------------------------------------------------------------------------------------
# Display steps
# --------------------------------------------------------------------------------------


def reduce_channels(a: ArrayLike, mode: str = "sum") -> torch.Tensor:
    """Reduce an attribution over its channels for display: (N, C, H, W) -> (N, 1, H, W).

    Modes (:data:`CHANNEL_REDUCTIONS`):

    - ``"sum"`` (default): ``sum_c a_c``, signed. Kim, Seo and Jeon (docs/methods.md section 4)
      sum the gradient over channels.
    - ``"abs_sum"``: ``|sum_c a_c|``, non-negative.
    - ``"l2"``: ``sqrt(sum_c a_c^2)``, non-negative.
    - ``"none"``: ``a`` unchanged, still (N, C, H, W).

    Args:
        a: attribution (N, C, H, W), torch tensor or numpy array.
        mode: one of :data:`CHANNEL_REDUCTIONS`.

    Returns:
        torch tensor (N, 1, H, W) (or ``a`` as a tensor for ``"none"``), same dtype/device.

    Raises:
        ValueError: ``a`` is not 4-D; unknown ``mode``.
    """
    if mode not in CHANNEL_REDUCTIONS:
        raise ValueError(
            f"unknown channel reduction {mode!r}; valid modes: {list(CHANNEL_REDUCTIONS)}"
        )
    t = torch.as_tensor(a)
    if t.ndim != 4:
        raise ValueError(f"attribution must be 4-D (N, C, H, W); got shape {tuple(t.shape)}")
    if mode == "none":
        return t
    if mode == "sum":
        return t.sum(dim=1, keepdim=True)
    if mode == "abs_sum":
        return t.sum(dim=1, keepdim=True).abs()
    return torch.linalg.vector_norm(t, ord=2, dim=1, keepdim=True)  # "l2"


def clip_percentile(a: ArrayLike, lower: float = 0.5, upper: float = 99.5) -> torch.Tensor:
    """Clamp each image's map to its own [lower, upper] percentiles, to tame outliers.

    The percentiles are taken over all of one image's values (every channel and pixel),
    with linear interpolation (as ``numpy.percentile``'s default), batched over images.
    Kim, Seo and Jeon (docs/methods.md section 4) clip channel-summed gradients to 0.5-99.5.

    Args:
        a: maps (N, ...) with N images, e.g. (N, 1, H, W); torch tensor or numpy array,
            floating point.
        lower: lower percentile in [0, 100]. Default 0.5.
        upper: upper percentile in [0, 100], > ``lower``. Default 99.5.

    Returns:
        torch tensor of ``a``'s shape, dtype and device.

    Raises:
        ValueError: percentiles outside [0, 100] or ``lower >= upper``; ``a`` has fewer than
            2 dimensions or is not floating point.
    """
    for name, p in (("lower", lower), ("upper", upper)):
        if isinstance(p, bool) or not isinstance(p, Real) or not 0 <= p <= 100:
            raise ValueError(f"{name} percentile must be a number in [0, 100]; got {p!r}")
    if not lower < upper:
        raise ValueError(f"lower percentile must be < upper; got lower={lower}, upper={upper}")
    t = torch.as_tensor(a)
    if t.ndim < 2:
        raise ValueError(
            f"maps must be (N, ...) with one map per image; got shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise ValueError(f"maps must be floating point; got dtype {t.dtype}")
    if t.shape[0] == 0 or t[0].numel() == 0:
        return t.clone()
    q = torch.tensor([lower / 100.0, upper / 100.0], dtype=t.dtype, device=t.device)
    lo, hi = torch.quantile(t.reshape(t.shape[0], -1), q, dim=1)  # each (N,)
    view = (t.shape[0],) + (1,) * (t.ndim - 1)
    return torch.clamp(t, min=lo.reshape(view), max=hi.reshape(view))


@overload
def scale_maps(maps: ArrayLike, mode: str = "per_panel") -> torch.Tensor: ...
@overload
def scale_maps(maps: Sequence[ArrayLike], mode: str = "per_panel") -> list[torch.Tensor]: ...


def scale_maps(
    maps: ArrayLike | Sequence[ArrayLike], mode: str = "per_panel"
) -> torch.Tensor | list[torch.Tensor]:
    """Scale the maps shown side by side (one panel per model or method) for display.

    ``maps`` holds one tensor per panel, each (N, ...) with one map per image (typically
    (N, 1, H, W)); row i of the figure is image i across all panels. Modes
    (:data:`SCALINGS`):

    - ``"per_panel"`` (default): each map of each image divided by its own max |value|,
      into [-1, 1] (as in Bigolin Lanfredi et al., docs/methods.md section 1). Compares shapes.
    - ``"shared"``: each image's maps divided by one common max |value| over all panels of
      that image's row, into [-1, 1]; ratios between panels are kept. Compares magnitudes.
    - ``"raw"``: unchanged.

    An all-zero map (or row, for ``"shared"``) stays zero. Signs are kept.

    Args:
        maps: one tensor/array (N, ...), or a sequence of them with the same N.
        mode: one of :data:`SCALINGS`.

    Returns:
        The same structure: one tensor for one input, a list of tensors for a sequence.

    Raises:
        ValueError: unknown ``mode``; a map with no batch dimension; panels with different
            numbers of images.
    """
    if mode not in SCALINGS:
        raise ValueError(f"unknown scaling {mode!r}; valid scalings: {list(SCALINGS)}")
    single = isinstance(maps, (torch.Tensor, np.ndarray))
    panels = [torch.as_tensor(m) for m in ([maps] if single else maps)]  # type: ignore[union-attr]
    for i, p in enumerate(panels):
        if p.ndim < 2:
            raise ValueError(
                f"map {i} must be (N, ...) with one map per image; got shape {tuple(p.shape)}"
            )
    if len({p.shape[0] for p in panels}) > 1:
        raise ValueError(
            f"all panels must hold the same number of images; got {[p.shape[0] for p in panels]}"
        )

    if mode == "raw":
        scaled = panels
    else:
        peaks = [_per_image_max_abs(p) for p in panels]  # each (N,)
        if mode == "shared" and peaks:
            common = torch.stack(peaks).amax(dim=0)
            peaks = [common] * len(panels)
        scaled = [_divide_per_image(p, peak) for p, peak in zip(panels, peaks)]
    return scaled[0] if single else scaled


def _per_image_max_abs(t: torch.Tensor) -> torch.Tensor:
    if t[0:1].numel() == 0:
        return torch.zeros(t.shape[0], dtype=t.dtype, device=t.device)
    return t.reshape(t.shape[0], -1).abs().amax(dim=1)


def _divide_per_image(t: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return t / safe.reshape((t.shape[0],) + (1,) * (t.ndim - 1))
