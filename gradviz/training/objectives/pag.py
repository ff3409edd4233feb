"""Training for perceptually aligned gradients (PAG; Ganz, Kawar, Elad, "Do Perceptually
Aligned Gradients Imply Robustness?", ICML 2023; docs/methods.md section 2): the batched class
gradients, the ground-truth target gradients and the objective."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.data import dataset_info
from gradviz.tensors import per_image_cosine
from gradviz.training.objectives.base import ObjectiveBase, Option, check_weight, training_images

__all__ = ["PAG_LAMBDA", "PAG_TARGET", "PAG_TARGETS", "PAGObjective", "PAGTargets", "class_log_prob_gradients"]

#: Ground-truth target gradients PAG can train toward (docs/methods.md section 2): class mean,
#: nearest neighbour.
PAG_TARGETS = ("cm", "nn")
#: The default target gradients.
PAG_TARGET = "cm"
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
    cosine is 0 by convention (:func:`gradviz.tensors.per_image_cosine`): it adds a constant to the loss.

    Args:
        x_train: (M, C, H, W) training images in [0, 1]; y_train: (M,) labels.
        source: ``"cm"`` (default) or ``"nn"``.
        num_classes: K (default: ``y_train.max() + 1``).

    Raises:
        ValueError: an unknown source.
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
class PAGObjective(ObjectiveBase):
    """Training for perceptually aligned gradients (Ganz, Kawar, Elad, "Do Perceptually
    Aligned Gradients Imply Robustness?", ICML 2023; docs/methods.md section 2)::

        L = CE(f(x), y) + lambda * mean_i (1/K) sum_c (1 - cos(grad_x log softmax(f(x_i))_c, g_c(x_i)))

    over all K classes, the input gradients from :func:`class_log_prob_gradients` with
    ``create_graph=True`` (double backpropagation), cos per image over C*H*W
    (:func:`gradviz.tensors.per_image_cosine`, 0 with a zero vector), g_c from :class:`PAGTargets`. No
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

    Logged per batch: ``loss``, ``ce``, ``pag_cos`` (mean cosine over images and classes, in
    [-1, 1]), ``pag_cos_true`` (over images, their own class only), ``accuracy``.

    Raises:
        ValueError: pag_lambda negative or not a finite number; a call without targets.
    """

    targets: Optional[PAGTargets] = field(default=None, repr=False)
    pag_lambda: float = PAG_LAMBDA
    name = "pag"
    label = "PAG: perceptually aligned gradients"
    options = (
        Option("pag_target", PAG_TARGET, "target gradients, cm (class mean - x) or nn (nearest training image of "
               "the class - x)", type=str, choices=PAG_TARGETS, label="Target gradients", what="PAG target",
               choice_labels={"cm": "class mean − x", "nn": "nearest neighbour − x"}),
        Option("pag_lambda", PAG_LAMBDA, "weight lambda of the gradient-alignment term", label="lambda",
               low=0.0, high=100.0),
    )

    def __post_init__(self):
        check_weight("pag_lambda", self.pag_lambda)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epoch: int = 0,
                 index: Optional[torch.Tensor] = None):
        """``(loss, stats)``: L above (scalar, on the graph) and the logged numbers; ``index``:
        the images' training-set positions (the "nn" targets leave each image itself out)."""
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

    @classmethod
    def default_model_name(cls, config) -> str:
        """``pag-<target>``, e.g. ``pag-cm``."""
        return f"pag-{config.pag_target}"

    @classmethod
    def from_config(cls, config, *, device="cpu", train_set=None, progress=None) -> "PAGObjective":
        """The objective of a resolved ``method="pag"`` configuration, its targets made from
        ``train_set`` (default: the images the configuration trains on) on ``device``."""
        images = training_images(config, train_set)
        targets = PAGTargets(images.x, images.y, config.pag_target,
                             num_classes=len(dataset_info(config.dataset).classes)).to(device)
        return cls(targets, config.pag_lambda)
