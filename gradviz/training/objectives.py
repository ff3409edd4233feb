"""Training objectives. Each maps a batch to a scalar loss to minimise plus a few numbers
to log; the loop in :mod:`gradviz.training.loop` is shared by all of them.

The interface: ``objective(model, x, y, *, epoch=0, index=None) -> (loss, stats)``, with
``index`` the (N,) positions of the batch's images in the training set (only PAG's
nearest-neighbour targets use it). An objective that must shape the parameter gradient
itself (AGR) also has ``step(model, optimizer, x, y, *, epoch, index) -> stats``, which
the loop then calls instead of ``loss.backward(); optimizer.step()``.

* :class:`StandardObjective`: cross-entropy;
* :class:`PGDObjective`: Madry et al. adversarial training;
* :class:`IGDObjective`: input gradient distillation (docs/methods.md section 3);
* :class:`TRADESObjective`: Zhang et al. (ICML 2019), TRADES;
* :class:`PAGObjective`: perceptually aligned gradients (Ganz, Kawar, Elad; docs/methods.md
  section 2), with :class:`PAGTargets` (class mean, nearest neighbour);
* :class:`LAlphaObjective`: the alignment penalty L_alpha of Bigolin Lanfredi et al.
  (docs/methods.md section 1), with :class:`LAlphaResiduals` (GAN residuals);
* :class:`AGRObjective`: adaptive gradient reconstruction around PGD or TRADES (docs/methods.md
  section 5), with :func:`agr_combine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.attacks import default_step_size, pgd
from gradviz.generative import FAST_STEPS


def _check_weight(label: str, value, note: str = "") -> None:
    """Raise ValueError unless ``value`` is a finite real number >= 0 (not a bool): a loss
    weight (lambda, beta). ``note`` (e.g. "paper: 1 to 4") goes into the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{label} must be a finite number >= 0{f' ({note})' if note else ''}; got {value!r}")


@dataclass
class StandardObjective:
    """Empirical risk: mean cross-entropy CE(f(x), y) on clean images."""

    name = "standard"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0, index=None):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "accuracy": (logits.argmax(1) == y).float().mean().item()}


@dataclass
class PGDObjective:
    """Madry et al. (ICLR 2018) adversarial training: minimise CE(f(x_adv), y) where x_adv is
    a PGD attack on the current model (random start, ``steps`` steps of ``step_size``).

    Attributes:
        eps: ball radius in [0, 1] pixel units (0.3 for MNIST l_inf).
        norm: "linf" or "l2".
        steps, step_size: the training attack (step size default 2.5 * eps / steps).
        warmup_epochs: eps grows linearly from eps / warmup_epochs to eps over the first
            epochs (0: full eps from the start); helps small data sets escape the
            trivial constant classifier at large eps.
    """

    eps: float = 0.3
    norm: str = "linf"
    steps: int = 20
    step_size: Optional[float] = None
    warmup_epochs: int = 0
    name = "pgd"

    def eps_at(self, epoch: int) -> float:
        if self.warmup_epochs <= 0 or epoch >= self.warmup_epochs:
            return self.eps
        return self.eps * (epoch + 1) / self.warmup_epochs

    def step_at(self, epoch: int) -> float:
        """The attack's step size at ``epoch``: ``step_size`` (default 2.5 * eps / steps),
        scaled down with eps during the warm-up."""
        eps = self.eps_at(epoch)
        step = self.step_size if self.step_size is not None else default_step_size(self.eps, self.steps)
        return step * eps / self.eps if self.eps > 0 else step

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0, index=None):
        eps, step = self.eps_at(epoch), self.step_at(epoch)
        x_adv = pgd(model, x, y, eps=eps, norm=self.norm, steps=self.steps, step_size=step or None,
                    random_start=True) if eps > 0 else x
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        return loss, {
            "loss": loss.item(),
            "adv_accuracy": (logits.argmax(1) == y).float().mean().item(),
            "eps": eps,
        }


def per_image_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_i) = <a_i, b_i> / (|a_i| |b_i|) per image over the flattened C*H*W entries.

    docs/methods.md convention: the cosine with a zero vector is defined as 0, and its gradient
    there is 0 (no NaN, no 1/eps blow-up as with ``F.cosine_similarity``).

    Args:
        a, b: (N, ...) tensors of the same shape.

    Returns:
        (N,) in [-1, 1], differentiable (double backprop works through it).
    """
    a, b = a.flatten(1), b.flatten(1)
    denom = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    ok = denom > 0
    safe = torch.where(ok, denom, torch.ones_like(denom))
    return torch.where(ok, (a * b).sum(dim=1) / safe, torch.zeros_like(denom))


def true_class_input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                              create_graph: bool = False) -> torch.Tensor:
    """grad_x f(x)_y, the input gradient of the true-class logit, (N, C, H, W).

    Each image's logit depends on its own input only, so one backward pass of the summed
    logits gives every image's gradient. With ``create_graph`` the result stays on the
    graph (double backpropagation, for a loss on the gradient); otherwise it is detached.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        logit = model(xr).gather(1, y[:, None]).sum()
        (grad,) = torch.autograd.grad(logit, xr, create_graph=create_graph)
    return grad if create_graph else grad.detach()


@dataclass
class IGDObjective(PGDObjective):
    """Input Gradient Distillation (Chen, Dong and Xie; docs/methods.md section 3): PGD adversarial
    training plus an alignment of the student's input gradient with a standard teacher's::

        L = CE(f_S(x_adv), y) + lambda * mean_i (1 - cos(grad_x f_S(x_i)_y, g_T(x_i)))

    with g_T = grad_x f_T(x)_y, the teacher's true-class-logit gradient at the clean image
    (fixed, no graph), the student's gradient at the clean image taken with
    ``create_graph=True`` (double backpropagation), cos per image over C*H*W
    (:func:`per_image_cosine`, 0 with a zero vector). x_adv is the PGD attack of
    :class:`PGDObjective`, with its settings and eps warm-up.

    Attributes:
        eps, norm, steps, step_size, warmup_epochs: the training attack (see
            :class:`PGDObjective`).
        teacher: the frozen standard model (eval mode, on the training device); never
            modified.
        igd_lambda: lambda, the weight of the distillation term (paper: 1 to 4).

    Logged per batch (the loop averages them per epoch): ``loss`` (the total), ``ce``
    (adversarial cross-entropy), ``cos`` (mean student-teacher gradient cosine),
    ``adv_accuracy``, ``eps``.
    """

    teacher: Optional[nn.Module] = field(default=None, repr=False)
    igd_lambda: float = 1.0
    name = "igd"

    def __post_init__(self):
        _check_weight("igd_lambda", self.igd_lambda, "paper: 1 to 4")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0, index=None):
        if self.teacher is None:
            raise ValueError("IGDObjective needs a teacher model (a standard model of the same dataset)")
        ce, stats = super().__call__(model, x, y, epoch=epoch)
        g_teacher = true_class_input_gradient(self.teacher, x, y)
        g_student = true_class_input_gradient(model, x, y, create_graph=True)
        cos = per_image_cosine(g_student, g_teacher)
        loss = ce + self.igd_lambda * (1.0 - cos).mean()
        stats = {**stats, "loss": loss.item(), "ce": ce.item(), "cos": cos.mean().item()}
        return loss, stats


# ----------------------------------------------------------------------------- TRADES


def trades_loss(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, beta: float):
    """The TRADES loss (Zhang et al., ICML 2019, Eq. 5 as in the authors' ``trades.py``)::

        L = CE(f(x), y) + beta * (1/N) sum_i KL(softmax f(x_i) || softmax f(x_adv_i))

    the KL divergence summed over the K classes, averaged over the N images; the gradient
    flows through both f(x) and f(x_adv), as in the authors' code.

    Args:
        model: classifier (N, C, H, W) in [0, 1] -> logits (N, K).
        x, x_adv: (N, C, H, W) clean and adversarial images; y: (N,) labels.
        beta: weight of the robust (KL) term (the authors: 6 on CIFAR-10, 1 on MNIST).

    Returns:
        ``(loss, ce, kl, logits, logits_adv)``: scalar tensors on the graph and the two
        (N, K) logits.
    """
    logits, logits_adv = model(x), model(x_adv)
    ce = F.cross_entropy(logits, y)
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(logits, 1), reduction="batchmean", log_target=True)
    return ce + beta * kl, ce, kl, logits, logits_adv


def _project_ball(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = delta.flatten(1).norm(dim=1).view(-1, *[1] * (delta.ndim - 1))
    return delta * torch.clamp(eps / torch.where(n > 0, n, torch.ones_like(n)), max=1.0)


def trades_attack(model: nn.Module, x: torch.Tensor, *, eps: float, norm: str = "linf", steps: int = 10,
                  step_size: Optional[float] = None) -> torch.Tensor:
    """TRADES' inner maximisation (Zhang et al. 2019, the authors' ``trades.py``): PGD on
    KL(softmax f(x) || softmax f(x')) over x' in the eps-ball around x.

    Start ``x + 0.001 * N(0, I)`` (global torch RNG, as the authors; the training loop seeds
    it); l_inf step ``x' <- x' + step_size * sign(grad)``, l_2 step ``x' <- x' + step_size *
    grad / |grad|_2``; after each step the projection onto the eps-ball and a clamp to
    [0, 1]. The model runs in eval mode (its mode is restored) and is left unchanged.

    Args:
        eps: ball radius in [0, 1] pixel units (0: returns x).
        steps: gradient steps (the authors: 40 on MNIST, 10 on CIFAR-10).
        step_size: default :func:`gradviz.attacks.default_step_size` (2.5 * eps / steps;
            the authors use 0.01 with 40 steps on MNIST).

    Returns:
        x_adv (N, C, H, W) in [0, 1], detached.
    """
    if eps <= 0 or steps < 1:
        return x.detach().clone()
    step = default_step_size(eps, steps) if step_size is None else float(step_size)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach()
            with torch.no_grad():
                log_p = F.log_softmax(model(x), 1)
            x_adv = x + 0.001 * torch.randn_like(x)
            for _ in range(steps):
                x_adv.requires_grad_(True)
                kl = F.kl_div(F.log_softmax(model(x_adv), 1), log_p, reduction="sum", log_target=True)
                (grad,) = torch.autograd.grad(kl, x_adv)
                with torch.no_grad():
                    if norm == "linf":
                        x_adv = x_adv + step * grad.sign()
                    else:
                        g = grad.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
                        x_adv = x_adv + step * grad / torch.where(g > 0, g, torch.ones_like(g))
                    x_adv = (x + _project_ball(x_adv - x, eps, norm)).clamp(0, 1)
    finally:
        model.train(was_training)
    return x_adv.detach()


@dataclass
class TRADESObjective(PGDObjective):
    """TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and
    Accuracy", ICML 2019, Eq. 5): :func:`trades_loss` at the x_adv of :func:`trades_attack`.

    Attributes:
        eps, norm, steps, step_size, warmup_epochs: the KL attack, with the eps warm-up of
            :class:`PGDObjective` (step size scaled with eps during it).
        beta: weight of the KL term (default 6, the authors' CIFAR-10 value; they use 1
            on MNIST).

    Logged per batch: ``loss``, ``ce`` (clean cross-entropy), ``kl``, ``accuracy`` (clean),
    ``adv_accuracy`` (at x_adv), ``eps``.
    """

    beta: float = 6.0
    name = "trades"

    def __post_init__(self):
        _check_weight("TRADES beta", self.beta, "default 6")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0, index=None):
        eps = self.eps_at(epoch)
        x_adv = trades_attack(model, x, eps=eps, norm=self.norm, steps=self.steps, step_size=self.step_at(epoch))
        loss, ce, kl, logits, logits_adv = trades_loss(model, x, x_adv, y, self.beta)
        return loss, {
            "loss": loss.item(), "ce": ce.item(), "kl": kl.item(),
            "accuracy": (logits.argmax(1) == y).float().mean().item(),
            "adv_accuracy": (logits_adv.argmax(1) == y).float().mean().item(),
            "eps": eps,
        }


# ----------------------------------------------------------------------------- PAG

#: Ground-truth target gradients PAG can train toward (docs/methods.md section 2).
PAG_TARGETS = ("cm", "nn")
#: Default weight lambda of the PAG term (see :class:`PAGObjective` for the choice).
PAG_LAMBDA = 1.5


def class_log_prob_gradients(model: nn.Module, x: torch.Tensor, *, create_graph: bool = False):
    """grad_x log softmax(f(x))_c for every class c, batched.

    Every image is repeated K times (replica c of image i carries class c), the model runs
    once on the N * K copies, and one backward pass of sum_{i, c} log softmax(f(x_i^c))_c
    gives all N * K input gradients: each copy's output depends on that copy only. (On a
    2-core CPU this was faster than K separate ``autograd.grad`` calls and than
    ``is_grads_batched``: bench/bench_pag.py.) Models whose layers mix the images of a batch
    (batch norm in train mode) would need K separate passes instead; gradviz's have none.

    Args:
        model: classifier (N, C, H, W) -> logits (N, K).
        x: (N, C, H, W) images in [0, 1].
        create_graph: keep the gradients on the graph (double backpropagation, for a loss
            on them); otherwise they are detached.

    Returns:
        ``(logits, grads)``: the (N, K) logits of ``x`` (on the graph, from the first copy)
        and the (N, K, C, H, W) gradients, ``grads[i, c]`` of image i's class c.
    """
    n = x.shape[0]
    with torch.enable_grad():
        k = model(x[:1]).shape[1] if n else 0
        xr = x.detach().unsqueeze(1).expand(n, k, *x.shape[1:]).reshape(n * k, *x.shape[1:]).requires_grad_(True)
        logits = model(xr)
        log_p = F.log_softmax(logits, 1).view(n, k, k)
        (grad,) = torch.autograd.grad(log_p.diagonal(dim1=1, dim2=2).sum(), xr, create_graph=create_graph)
    grad = grad.view(n, k, *x.shape[1:])
    logits = logits.view(n, k, k)[:, 0]
    return (logits, grad) if create_graph else (logits.detach(), grad.detach())


class PAGTargets:
    """The ground-truth target gradients g_c(x) of PAG (Ganz, Kawar, Elad; docs/methods.md section
    2) for every class c, from a training split:

    * ``"cm"`` (class mean): ``g_c(x) = mu_c - x``, mu_c the mean training image of class c;
    * ``"nn"`` (nearest neighbour): ``g_c(x) = NN_c(x) - x``, NN_c(x) the training image of
      class c nearest to x in l_2 (over C*H*W), found batched with ``torch.cdist``.

    A training image is its own nearest neighbour (distance 0, target 0), so when ``index``
    says which training image each x was made from (the loop passes it, also for
    augmented, shifted copies), that image is left out of the search: NN_y(x) is then the
    nearest *other* image of x's class. Without ``index`` (e.g. a test image) nothing is
    left out. A class with no training image (a tiny ``limit``) gets the target 0, whose
    cosine is 0 by convention (:func:`per_image_cosine`): it adds a constant to the loss.

    Args:
        x_train: (M, C, H, W) training images in [0, 1]; y_train: (M,) labels.
        source: ``"cm"`` or ``"nn"``.
        num_classes: K (default: ``y_train.max() + 1``).
    """

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor, source: str = "cm", *,
                 num_classes: Optional[int] = None):
        if source not in PAG_TARGETS:
            raise ValueError(f"unknown PAG target source {source!r}; choose one of {PAG_TARGETS}")
        self.source = source
        self.num_classes = int(num_classes if num_classes is not None else int(y_train.max()) + 1)
        y_train = y_train.long()
        counts = torch.bincount(y_train, minlength=self.num_classes)
        self.present = counts > 0
        sums = torch.zeros(self.num_classes, x_train[0].numel(), dtype=x_train.dtype, device=x_train.device)
        sums.index_add_(0, y_train, x_train.flatten(1))
        self.means = (sums / counts.clamp_min(1)[:, None].to(sums.dtype)).view(self.num_classes, *x_train.shape[1:])
        self.x_train, self.y_train = x_train, y_train
        self.class_index = [torch.nonzero(y_train == c).flatten() for c in range(self.num_classes)]

    def to(self, device) -> "PAGTargets":
        for name in ("means", "x_train", "y_train", "present"):
            setattr(self, name, getattr(self, name).to(device))
        self.class_index = [i.to(device) for i in self.class_index]
        return self

    def nearest(self, x: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, K) positions in the training set of each image's nearest neighbour per class
        (-1 where a class has no candidate)."""
        dist = torch.cdist(x.flatten(1), self.x_train.flatten(1))  # (N, M)
        if index is not None:
            dist[torch.arange(len(x), device=x.device), index.to(x.device)] = float("inf")
        out = torch.full((len(x), self.num_classes), -1, dtype=torch.long, device=x.device)
        for c, members in enumerate(self.class_index):
            if len(members):
                d, j = dist[:, members].min(1)
                out[:, c] = torch.where(torch.isfinite(d), members[j], torch.full_like(j, -1))
        return out

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """g_c(x) for all classes: (N, K, C, H, W); ``index``: (N,) training-set positions
        of the images x was made from ("nn" leaves them out), or None."""
        x = x.detach()
        if self.source == "cm":
            targets = self.means.unsqueeze(0) - x.unsqueeze(1)
            return targets * self.present.view(1, -1, *[1] * (x.ndim - 1)).to(x.dtype)
        nn_idx = self.nearest(x, index)
        found = (nn_idx >= 0).view(*nn_idx.shape, *[1] * (x.ndim - 1)).to(x.dtype)
        return (self.x_train[nn_idx.clamp_min(0)] - x.unsqueeze(1)) * found


@dataclass
class PAGObjective:
    """Training for perceptually aligned gradients (Ganz, Kawar, Elad, "Do Perceptually
    Aligned Gradients Imply Robustness?", ICML 2023; docs/methods.md section 2)::

        L = CE(f(x), y) + lambda * mean_i (1/K) sum_c (1 - cos(grad_x log softmax(f(x_i))_c, g_c(x_i)))

    over all K classes, the input gradients from :func:`class_log_prob_gradients` with
    ``create_graph=True`` (double backpropagation), cos per image over C*H*W
    (:func:`per_image_cosine`, 0 with a zero vector), g_c from :class:`PAGTargets`. No
    adversarial examples are used.

    lambda: default :data:`PAG_LAMBDA` = 1.5, the paper's value for this formula (docs/methods.md).
    The authors' code (royg27/PAG-ROB, ``TRAIN_CIFAR10.py``) multiplies the mean of (1 - cos)
    by 10 before ``pag_coeff`` = 1.5, i.e. it weights sum_c (1 - cos) rather than the mean
    over classes: its effective lambda in the formula above is 15 on CIFAR-10's 10 classes.
    On mnist-5k (small-cnn, 500 training images, 2 epochs of batch 50, no shifts) lambda 15
    left the clean accuracy at 16 % where lambda 1.5 and standard training reached 81 % and
    80 % (first 300 test images), so gradviz keeps the paper's 1.5.

    Attributes:
        targets: the :class:`PAGTargets` (class mean or nearest neighbour).
        pag_lambda: lambda (default :data:`PAG_LAMBDA`).

    Logged per batch: ``loss``, ``ce``, ``pag_cos`` (mean cosine over images and classes),
    ``pag_cos_true`` (over images, their own class only), ``accuracy``.
    """

    targets: Optional[PAGTargets] = field(default=None, repr=False)
    pag_lambda: float = PAG_LAMBDA
    name = "pag"

    def __post_init__(self):
        _check_weight("pag_lambda", self.pag_lambda)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0, index=None):
        if self.targets is None:
            raise ValueError("PAGObjective needs its target gradients (PAGTargets of the training split)")
        logits, grads = class_log_prob_gradients(model, x, create_graph=True)
        g = self.targets(x, index)
        n, k = grads.shape[:2]
        cos = per_image_cosine(grads.flatten(0, 1), g.flatten(0, 1)).view(n, k)
        ce = F.cross_entropy(logits, y)
        loss = ce + self.pag_lambda * (1.0 - cos).mean()
        return loss, {
            "loss": loss.item(), "ce": ce.item(),
            "pag_cos": cos.mean().item(),
            "pag_cos_true": cos.gather(1, y[:, None]).mean().item(),
            "accuracy": (logits.argmax(1) == y).float().mean().item(),
        }


# ----------------------------------------------------------------------------- L_alpha

#: Default weight lambda of the alignment term of L_alpha (docs/methods.md section 1: 0.1 to 0.3).
LALPHA_LAMBDA = 0.3
#: Projection steps (free, penalised) of L_alpha's training residuals: those of the
#: Alignment page, :data:`gradviz.generative.FAST_STEPS` (half the paper's; measured there).
LALPHA_PROJECTION_STEPS = FAST_STEPS


class LAlphaResiduals:
    """The residuals L_alpha aligns the gradient with, one per training image (Bigolin
    Lanfredi et al., docs/methods.md section 1, Eqs. 5 and 15-16):

        dx_i = G(z*, c~_i) - x_i,

    with c~_i the closest inaccurate class (Eq. 5) of a *reference* model (default the
    dataset's standard model) and G(z*, c~_i) the class-conditional generator's projection of
    x_i onto that class. They are computed once, before training (a projection per image and
    step would cost more than the training itself: 4,000 mnist-5k images x 375 Adam steps
    of G are ~8 CPU-minutes), so the class is the reference model's, not the current
    model's, and the images must not be translated (``augment=False``): a residual belongs
    to its unshifted image.

    Args:
        dx: (M, C, H, W) float residuals of the M training images, in training-set order.
        target: (M,) int64 the classes they point to.
        meta: how they were made (generator, reference model, steps, seconds).
    """

    def __init__(self, dx: torch.Tensor, target: torch.Tensor, meta: Optional[dict] = None):
        if dx.ndim != 4 or target.shape != dx.shape[:1]:
            raise ValueError(f"dx must be (M, C, H, W) and target (M,), got {tuple(dx.shape)} and {tuple(target.shape)}")
        self.dx, self.target, self.meta = dx, target.long(), dict(meta or {})

    @classmethod
    def compute(cls, generator: nn.Module, reference: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                dataset: Optional[str] = None, split: str = "train", steps=LALPHA_PROJECTION_STEPS,
                batch_size: int = 1024, progress=None) -> "LAlphaResiduals":
        """Project the training images ``x`` (M, C, H, W) in [0, 1] with labels ``y`` (M,)
        onto the closest class of ``reference`` (:func:`gradviz.alignment.closest_class`).

        With ``dataset``, ``x`` must be the first M images of that dataset's ``split`` (the
        whole split or a ``limit`` prefix): the residuals then come from, and go to, the
        on-disk store of :func:`gradviz.generative.residuals_for`, so a second run with the
        same generator and reference model projects nothing. Without it they are computed
        with :func:`gradviz.generative.residual` and kept in memory only.
        ``batch_size``: images per closest-class call and pairs per projection batch.
        ``progress(fraction, message)`` while projecting. Raises ValueError for bad images or
        labels (see those functions)."""
        import time

        from gradviz.alignment import closest_class
        from gradviz.generative import residual, residuals_for

        start = time.perf_counter()
        chunks = [closest_class(reference, x[i:i + batch_size], y[i:i + batch_size])
                  for i in range(0, len(x), batch_size)]
        target = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long, device=x.device)
        if dataset is not None:
            dx = residuals_for(generator, dataset, split, torch.arange(len(x)), target.cpu(), steps=steps,
                               batch_size=batch_size, device=x.device, progress=progress).to(x.device)
        else:
            dx = residual(generator, x, target, y=y, steps=steps, batch_size=batch_size, progress=progress)
        meta = dict(steps=list(steps), n=len(x), seconds=round(time.perf_counter() - start, 1),
                    reference=getattr(reference, "gradviz_info", {}).get("name"),
                    generator=getattr(generator, "gradviz_info", {}).get("path"))
        return cls(dx.detach(), target, meta)

    def to(self, device) -> "LAlphaResiduals":
        self.dx, self.target = self.dx.to(device), self.target.to(device)
        return self

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) residuals of the training images at positions ``index`` (B,)."""
        return self.dx[index.to(self.dx.device)]


def loss_gradient_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                            create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """grad_x CE(f(x_i), y_i) / (1 - p_y(x_i)): the loss gradient's direction, computed so
    that it does not vanish when the model is confident.

    Since grad_x CE = sum_c (p_c - [c = y]) grad_x d_c = (1 - p_y) sum_{c != y} q_c
    (grad_x d_c - grad_x d_y), with q the softmax over the other classes only, this returns
    ``sum_{c != y} q_c grad_x d_c - grad_x d_y`` (one vector-Jacobian product with the
    weights q - onehot(y)). Its cosine with any vector equals that of the loss gradient
    wherever p_y < 1, but its norm stays of the order of the logits' gradients: in float32
    the loss gradient of a confident image underflows to (nearly) 0, and the gradient of a
    cosine through a nearly-zero vector (a factor 1 / |g|) blew up L_alpha's training on
    mnist-5k (its loss climbed from -0.1 back to 2 in epoch 10 of 15).

    Returns ``(logits, direction)``, (N, K) and (N, C, H, W); with ``create_graph`` both stay
    on the graph (the weights q included), otherwise they are detached.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        logits = model(xr)
        onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        q = torch.softmax(logits.masked_fill(onehot.bool(), float("-inf")), 1)
        weights = q - onehot
        if not create_graph:
            weights = weights.detach()
        (direction,) = torch.autograd.grad(logits, xr, grad_outputs=weights, create_graph=create_graph)
    return (logits, direction) if create_graph else (logits.detach(), direction.detach())


@dataclass
class LAlphaObjective:
    """The alignment penalty L_alpha (Bigolin Lanfredi, Schroeder, Tasdizen, Eq. 9;
    docs/methods.md section 1)::

        L = CE(f(x), y) - lambda * mean_i cos(grad_x CE(f(x_i), y_i), dx_i)

    with dx_i the GAN residual of image i toward its closest inaccurate class
    (:class:`LAlphaResiduals`, detached), the input gradient taken with
    ``create_graph=True`` (double backpropagation), cos per image over C*H*W
    (:func:`per_image_cosine`: 0 with a zero vector). The cosine is computed with
    :func:`loss_gradient_direction`, the loss gradient divided by 1 - p_y: the same cosine,
    without the blow-up of a confident image's vanishing gradient. No adversarial examples. The authors' code aligns the
    gradient of the logit difference d_c~ - d_y, which alpha_dx (Eq. 8) measures, instead
    of the loss gradient; gradviz follows the paper's equation as docs/methods.md states it.

    Attributes:
        residuals: the training images' residuals (looked up by the batch's ``index``).
        alpha_lambda: lambda (default :data:`LALPHA_LAMBDA`; paper 0.1 to 0.3).

    Logged per batch: ``loss``, ``ce``, ``alpha`` (mean cosine, the training images'
    alignment), ``accuracy``.
    """

    residuals: Optional[LAlphaResiduals] = field(default=None, repr=False)
    alpha_lambda: float = LALPHA_LAMBDA
    name = "lalpha"

    def __post_init__(self):
        _check_weight("alpha_lambda", self.alpha_lambda, "paper: 0.1 to 0.3")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0, index=None):
        if self.residuals is None:
            raise ValueError("LAlphaObjective needs the training images' residuals (LAlphaResiduals)")
        if index is None:
            raise ValueError("LAlphaObjective needs each image's position in the training set (index)")
        logits, grad = loss_gradient_direction(model, x, y, create_graph=True)
        cos = per_image_cosine(grad, self.residuals(index).to(grad.dtype))
        ce = F.cross_entropy(logits, y)
        loss = ce - self.alpha_lambda * cos.mean()
        return loss, {
            "loss": loss.item(), "ce": ce.item(), "alpha": cos.mean().item(),
            "accuracy": (logits.argmax(1) == y).float().mean().item(),
        }


# ----------------------------------------------------------------------------- AGR


def _flat_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    denom = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    return torch.where(denom > 0, (a * b).sum() / torch.where(denom > 0, denom, torch.ones_like(denom)),
                       torch.zeros_like(denom))


@torch.no_grad()
def agr_combine(g_adv: Sequence[torch.Tensor], g_cl: Sequence[torch.Tensor], *, clip: Optional[float] = 0.1,
                apply: bool = True) -> tuple[list[torch.Tensor], dict]:
    """Adaptive Gradient Reconstruction (AGR; docs/methods.md section 5, the authors' ``train.py``
    of RUIYUN-ML/AGR), one parameter tensor at a time: with c = cos(g_adv, g_cl) over the
    tensor's entries (0 when either is 0),

    * c <= 0, Gradient Orthogonal Projection: ``g = g_adv - (<g_adv, g_cl> / |g_cl|^2) g_cl``
      (orthogonal to g_cl; ``g = g_adv`` when g_cl = 0);
    * c > 0, interpolation: ``g = c g_cl + (1 - c) g_adv``;

    then the clip ``g <- g * min(1, clip / |g|)`` (per tensor; |g| = 0 stays 0).

    Args:
        g_adv: per-tensor gradients of the adversarial training loss (PGD or TRADES).
        g_cl: per-tensor gradients of the clean cross-entropy, same shapes.
        clip: the norm bound (the authors: 0.1); None: no clip.
        apply: False returns ``g_adv`` unchanged (the epochs before AGR starts) but still
            measures the diagnostics, as the authors' code does.

    Returns:
        ``(g, stats)``: the gradients to use, and ``agr_cos`` (mean c over tensors),
        ``agr_gop_rate`` (fraction of tensors with c <= 0, "GOP rate"), ``agr_norm_adv``,
        ``agr_norm_clean``, ``agr_norm`` (mean per-tensor l_2 norms of g_adv, g_cl and g).
    """
    if len(g_adv) != len(g_cl) or not len(g_adv):
        raise ValueError("g_adv and g_cl must be non-empty lists of the same length")
    out, cosines, norms_adv, norms_cl, norms = [], [], [], [], []
    for ga, gc in zip(g_adv, g_cl):
        if ga.shape != gc.shape:
            raise ValueError(f"gradient shapes differ: {tuple(ga.shape)} and {tuple(gc.shape)}")
        c = _flat_cos(ga, gc)
        n_cl2 = (gc * gc).sum()
        if not apply:
            g = ga
        elif c <= 0:
            g = ga - ((ga * gc).sum() / n_cl2) * gc if n_cl2 > 0 else ga
        else:
            g = c * gc + (1 - c) * ga
        if apply and clip is not None:
            n = torch.linalg.vector_norm(g)
            if n > clip:
                g = g * (clip / n)
        out.append(g.clone())
        cosines.append(float(c))
        norms_adv.append(float(torch.linalg.vector_norm(ga)))
        norms_cl.append(float(torch.linalg.vector_norm(gc)))
        norms.append(float(torch.linalg.vector_norm(g)))
    r = len(out)
    return out, {
        "agr_cos": sum(cosines) / r,
        "agr_gop_rate": sum(c <= 0 for c in cosines) / r,
        "agr_norm_adv": sum(norms_adv) / r,
        "agr_norm_clean": sum(norms_cl) / r,
        "agr_norm": sum(norms) / r,
    }


@dataclass
class AGRObjective:
    """Adversarial training with Adaptive Gradient Reconstruction (docs/methods.md section 5;
    "Balancing Generalization and Robustness in Adversarial Training via Steering through
    Clean and Adversarial Gradient Directions", code RUIYUN-ML/AGR) around a base objective,
    :class:`PGDObjective` (Madry AT) or :class:`TRADESObjective`.

    Each batch takes two backward passes: g_adv of the base loss, g_cl of the clean
    cross-entropy CE(f(x), y); :func:`agr_combine` merges them per parameter tensor, the
    result becomes ``p.grad`` and the optimizer steps. From epoch ``start_epoch`` (1-based,
    as in the log) on; before it the update is the base method's (g = g_adv), but the
    diagnostics are measured from the first epoch, as in the authors' code.

    Differences from the authors' code: gradviz's loop uses Adam with a one-cycle schedule
    (they: SGD, lr 0.1, steps at epochs 100 and 150, AGR from epoch 156 of 200 when
    counting from 1); with a TRADES base, x_adv comes from TRADES' KL attack (they reuse the
    PGD cross-entropy attack for every method).

    Attributes:
        base: the adversarial objective whose gradient is reconstructed.
        start_epoch: first epoch (1-based) with AGR; default of the command line:
            ``int(0.775 * epochs) + 1`` (156 of 200, the authors' setting).
        clip: the per-tensor norm bound (0.1, the authors').

    Logged per batch: the base's numbers, ``clean_ce``, the diagnostics of
    :func:`agr_combine` and ``agr_active`` (1 when AGR changed the update).
    """

    base: Union[PGDObjective, "TRADESObjective"] = field(default_factory=PGDObjective)
    start_epoch: int = 1
    clip: Optional[float] = 0.1
    name = "agr"

    def __post_init__(self):
        if isinstance(self.start_epoch, bool) or int(self.start_epoch) != self.start_epoch or self.start_epoch < 1:
            raise ValueError(f"agr start epoch must be an integer >= 1 (1-based), got {self.start_epoch!r}")
        if self.clip is not None and not (self.clip > 0 and self.clip != float("inf")):
            raise ValueError(f"agr clip must be a finite number > 0 (the authors: 0.1), got {self.clip!r}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0, index=None):
        """The base objective's loss (what AGR reconstructs the gradient of)."""
        return self.base(model, x, y, epoch=epoch, index=index)

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
             epoch: int = 0, index=None) -> dict:
        """One optimisation step with the reconstructed gradient; returns the batch's numbers."""
        params = [p for p in model.parameters() if p.requires_grad]
        loss_adv, stats = self.base(model, x, y, epoch=epoch, index=index)
        g_adv = torch.autograd.grad(loss_adv, params)
        clean = F.cross_entropy(model(x), y)
        g_cl = torch.autograd.grad(clean, params)
        active = epoch + 1 >= self.start_epoch
        grads, diag = agr_combine(g_adv, g_cl, clip=self.clip, apply=active)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        return {**stats, "clean_ce": clean.item(), **diag, "agr_active": float(active)}
