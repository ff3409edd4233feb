"""Class-conditional GAN, its training, and residuals by projection onto its classes.

Source: Bigolin Lanfredi, Schroeder, Tasdizen, "Quantifying the Preferential Direction of the
Model Gradient in Adversarial Training With Projected Gradient Descent" (docs/methods.md section
1; code ricbl/gradient-direction-of-robust-models). The residual dx_c of an image x toward
class c is the smallest change that moves x into class c's support; the paper's indirect
method (Eqs. 15-16) finds it by projecting x onto the range of a class-conditional generator
G(z, c) and taking ``dx_c = G(z*, c) - x``.

* :class:`Generator`, :class:`Discriminator`: a small DCGAN-style class-conditional pair
  (the authors used a class-conditional BigGAN with a multi-hinge loss; docs/methods.md: any
  well-trained class-conditional GAN serves). G: (z, c) -> (N, C, S, S) in [0, 1].
* :func:`train_gan`: hinge loss, projection discriminator with spectral norm, an auxiliary
  classifier term (class fidelity), a mode-seeking term (diversity within a class), an
  exponential moving average of G's weights; ``python -m gradviz train-gan`` writes a
  checkpoint + card with the measured class accuracy of the samples.
* :func:`load_generator`, :func:`save_generator`, :func:`list_generators`: shipped
  generators live in ``assets/generators/<dataset>.pt`` (+ ``.json`` card), a user's in
  ``$GRADVIZ_HOME/generators``; checkpoints load with ``torch.load(weights_only=True)``
  through :mod:`gradviz.checkpoints` (as the zoo's models do).
* :func:`project`, :func:`residual`: Eqs. 15-16, batched over images and target classes.
* :class:`ResidualCache`, :func:`residual_cache`: every image's projection onto every class,
  computed once per (generator, dataset, split) and stored, for the Alignment page and for
  L_alpha training (the authors precompute them the same way); :func:`exact_residual_cache`
  holds the exact ones of ``squares`` in the same form.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    ModelCard,
    gradviz_home,
    load_weights_only,
    read_card,
    read_checkpoint,
    save_atomic,
    write_card,
)
from gradviz.data import ImageDataset, load_dataset
from gradviz.tensors import as_labels, check_classes, model_device
from gradviz.utils import Progress, check_images, report, resolve_device

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "generators"
GENERATOR_ARCH = "cgan-dcgan"
GENERATOR_KIND = "generator"
CACHE_FORMAT = "gradviz-residuals-v1"
#: Format tag of the per-pair residual store of :func:`residuals_for`.
PAIRS_FORMAT = "gradviz-residual-pairs-v1"

#: Adam steps of the two projection stages (Eq. 15 without, then with, the z penalty).
DEFAULT_STEPS = (600, 150)
#: Half the paper's steps: measured on 1,000 mnist-5k test images (bench/bench_residual.py),
#: mean cos 0.995 with the (600, 150) residual, same reconstruction error. The default of
#: :func:`residuals_for` (the Alignment page, bench/alignment_checks.py).
FAST_STEPS = (300, 75)
#: Datasets whose z penalty is the authors' MNIST value (1.5) rather than 0.03.
MNIST_LIKE = ("mnist", "mnist-5k")


class NoGeneratorError(KeyError, ValueError):
    """No generator for a dataset (or no such generator file). Both a KeyError and a
    ValueError, so either ``except`` catches it."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- architecture


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias depend on the class (as in SNGAN / BigGAN generators):
    ``BN(h) * (1 + gamma[c]) + beta[c]``, gamma and beta initialised to 0."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.zeros_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.bn(h) * (1 + self.gamma(c))[:, :, None, None] + self.beta(c)[:, :, None, None]


class Generator(nn.Module):
    """DCGAN-style class-conditional generator G(z, c).

    ``[z, embed(c)]`` -> linear -> (2w, S/4, S/4) CBN ReLU -> transposed conv 4x4 /2 -> (w,
    S/2, S/2) CBN ReLU -> transposed conv 4x4 /2 -> (C, S, S) -> sigmoid; CBN is a
    class-conditional batch norm (:class:`ConditionalBatchNorm2d`).

    Args:
        z_dim: latent size (default 64); z ~ N(0, I) during training.
        num_classes, channels, size: the dataset's K, C and S (S divisible by 4).
        width: w, channels of the middle layer (default 32).
        embed_dim: size of the class embedding concatenated to z (default 32).

    Input ``z`` (N, z_dim) float, ``c`` (N,) int64 class indices; output (N, C, S, S) in
    [0, 1]. Use in eval mode for projections (batch norm then acts per image).
    """

    def __init__(self, z_dim: int = 64, num_classes: int = 10, channels: int = 1, size: int = 28,
                 width: int = 32, embed_dim: int = 32):
        super().__init__()
        if size % 4:
            raise ValueError(f"the generator needs a size divisible by 4, got {size}")
        self.config = dict(z_dim=z_dim, num_classes=num_classes, channels=channels, size=size,
                           width=width, embed_dim=embed_dim)
        self.z_dim, self.num_classes, self.channels, self.size = z_dim, num_classes, channels, size
        s0 = size // 4
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.fc = nn.Linear(z_dim + embed_dim, 2 * width * s0 * s0)
        self.bn1 = ConditionalBatchNorm2d(2 * width, num_classes)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1)
        self.bn2 = ConditionalBatchNorm2d(width, num_classes)
        self.up2 = nn.ConvTranspose2d(width, channels, 4, 2, 1)
        self._s0, self._w = s0, width
        #: Filled by :func:`load_generator` / :func:`train_gan`: dataset, path, name.
        self.gradviz_info: dict = {}

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(c)], dim=1)).view(-1, 2 * self._w, self._s0, self._s0)
        h = self.up1(F.relu(self.bn1(h, c)))
        return torch.sigmoid(self.up2(F.relu(self.bn2(h, c))))


class Discriminator(nn.Module):
    """Projection discriminator (Miyato and Koyama 2018) with spectral norm on every layer,
    a minibatch-standard-deviation channel (Karras et al. 2018) against mode collapse, and
    an auxiliary classifier head (AC-GAN, Odena et al. 2017; trained on real images only).

    conv 4x4 /2 (w) LReLU -> [+ batch std channel] -> conv 4x4 /2 (2w) LReLU -> flatten h
    -> ``linear(h) + <embed(c), h>``. Input (N, C, S, S) in [0, 1] and (N,) classes; output
    (N,) scores (they depend on the whole batch through the std channel), and with
    ``return_logits=True`` also the auxiliary class logits (N, K).
    """

    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__()
        sn = nn.utils.spectral_norm
        s0 = size // 4
        self.block1 = nn.Sequential(sn(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(sn(nn.Conv2d(width + 1, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2), nn.Flatten())
        feat = 2 * width * s0 * s0
        self.linear = sn(nn.Linear(feat, 1))
        self.embed = sn(nn.Embedding(num_classes, feat))
        self.classify = sn(nn.Linear(feat, num_classes))

    def forward(self, x: torch.Tensor, c: torch.Tensor, return_logits: bool = False):
        h = self.block1(2 * x - 1)
        std = h.std(dim=0, unbiased=False).mean() if len(h) > 1 else h.new_zeros(())
        h = self.block2(torch.cat([h, std.expand(len(h), 1, *h.shape[2:])], dim=1))
        score = self.linear(h).squeeze(1) + (self.embed(c) * h).sum(1)
        return (score, self.classify(h)) if return_logits else score


def _dataset_of(generator: nn.Module) -> Optional[str]:
    return getattr(generator, "gradviz_info", {}).get("dataset")


def _projection_settings(generator: nn.Module, lr: Optional[float], lambda_z: Optional[float],
                         dataset: Optional[str] = None) -> tuple[float, float]:
    """``(lr, lambda_z)`` of a projection: the given values, else the defaults
    (:func:`default_projection_lr`, :func:`default_lambda_z`) of the generator's dataset, or
    of ``dataset`` for a generator that does not say."""
    of = _dataset_of(generator) or dataset
    return (default_projection_lr(of) if lr is None else float(lr),
            default_lambda_z(of) if lambda_z is None else float(lambda_z))


# --------------------------------------------------------------------------- training


def train_gan(
    dataset,
    *,
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 2e-4,
    lr_d: float = 4e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    mode_seeking: float = 0.2,
    aux_weight: float = 1.0,
    seed: int = 0,
    z_dim: int = 64,
    width: int = 32,
    ema: float = 0.999,
    limit: int = 0,
    device="auto",
    classifier: Optional[nn.Module] = None,
    progress: Optional[Progress] = None,
) -> tuple[Generator, Discriminator, list[dict]]:
    """Train a class-conditional GAN on a dataset's train split: hinge loss with a
    projection discriminator, one D step per G step, an auxiliary classifier term (AC-GAN)
    for class fidelity and a mode-seeking term for diversity within a class.

    Args:
        dataset: a dataset name (its train split is used) or a :class:`gradviz.data.ImageDataset`.
        epochs: passes over the train set (>= 1).
        batch_size, seed: ``seed`` fixes initialisation, shuffling and z.
        lr, lr_d, betas: Adam for G (DCGAN's 2e-4, betas (0.5, 0.999)) and for D (twice as
            fast: the two time-scale rule; measured better class fidelity than equal rates).
        mode_seeking: weight of the mode-seeking term of Mao et al. (CVPR 2019),
            ``1 / (|G(z1, c) - G(z2, c)|_1 / |z1 - z2|_1 + 1e-5)`` added to G's loss, against
            the per-class mode collapse conditional GANs fall into (0: off).
        aux_weight: weight of the auxiliary classifier's cross-entropy, on real images in
            D's loss and on G(z, c) with target c in G's loss (0: off).
        z_dim, width: :class:`Generator` latent size and width (D has the same width).
        ema: decay of the moving average of G's weights that is returned (0: no average;
            warmed up as min(ema, (1 + t) / (10 + t)) at step t).
        limit: train on the first ``limit`` images only (0: all), for tests.
        device: "auto", "cpu" or "cuda".
        classifier: optional model (eval mode) of the same dataset; each epoch's log then
            holds ``class_accuracy``, the fraction of 500 samples G(z, c) it classifies as c.
        progress: ``progress(fraction, message)`` callback.

    Returns:
        ``(generator, discriminator, log)``: the (averaged) generator in eval mode on
        ``device`` with batch-norm statistics re-estimated on 2,048 samples; the
        discriminator; one dict per epoch (epoch, d_loss, g_loss, d_real, d_fake, seconds,
        and class_accuracy with a classifier).

    Raises:
        ValueError: epochs < 1, an unknown dataset, a size not divisible by 4.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    data = dataset if isinstance(dataset, ImageDataset) else load_dataset(dataset, "train")
    if limit:
        data = data.subset(slice(0, limit))
    dev = resolve_device(device)
    n, (channels, size) = len(data), (data.x.shape[1], data.x.shape[-1])
    k = len(data.classes)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    G = Generator(z_dim, k, channels, size, width).to(dev)
    D = Discriminator(k, channels, size, width).to(dev)
    G_avg = copy.deepcopy(G).requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=tuple(betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=tuple(betas))
    x_all, y_all = data.x.to(dev), data.y.to(dev)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = epochs * steps_per_epoch
    log: list[dict] = []
    done = 0
    for epoch in range(epochs):
        G.train()
        D.train()
        start = time.perf_counter()
        sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
        order = torch.randperm(n, generator=gen).to(dev)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xr, yr = x_all[idx], y_all[idx]
            b = len(idx)
            z = torch.randn(b, z_dim, generator=gen).to(dev)
            yf = torch.randint(0, k, (b,), generator=gen).to(dev)
            # discriminator step, hinge loss
            with torch.no_grad():
                xf = G(z, yf)
            (d_real, logits_real), d_fake = D(xr, yr, return_logits=True), D(xf, yf)
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            if aux_weight > 0:
                d_loss = d_loss + aux_weight * F.cross_entropy(logits_real, yr)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            # generator step: two z per class, the hinge loss and the mode-seeking term
            z = torch.randn(2 * b, z_dim, generator=gen).to(dev)
            yf2 = torch.cat([yf, yf])
            xf = G(z, yf2)
            score, logits_fake = D(xf, yf2, return_logits=True)
            g_loss = -score.mean()
            if aux_weight > 0:
                g_loss = g_loss + aux_weight * F.cross_entropy(logits_fake, yf2)
            if mode_seeking > 0:
                ratio = (xf[:b] - xf[b:]).abs().flatten(1).mean(1) / (z[:b] - z[b:]).abs().mean(1)
                g_loss = g_loss + mode_seeking / (ratio.mean() + 1e-5)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            with torch.no_grad():  # averaged weights, decay warmed up: min(ema, (1 + t) / (10 + t))
                decay = min(ema, (1 + done) / (10 + done))
                for pa, p in zip(G_avg.parameters(), G.parameters()):
                    pa.lerp_(p, 1 - decay)
            for key, v in (("d_loss", d_loss), ("g_loss", g_loss), ("d_real", d_real.mean()),
                           ("d_fake", d_fake.mean())):
                sums[key] += v.item()
            done += 1
            report(progress, done / total, f"GAN epoch {epoch + 1}/{epochs} d {d_loss.item():.3f} "
                                           f"g {g_loss.item():.3f}")
        entry = {"epoch": epoch + 1, **{k_: round(v / steps_per_epoch, 4) for k_, v in sums.items()},
                 "seconds": round(time.perf_counter() - start, 2)}
        if classifier is not None:
            _recalibrate_bn(G_avg, seed=seed)
            entry["class_accuracy"] = round(class_accuracy(G_avg, classifier, n_per_class=50, seed=seed), 4)
        log.append(entry)
        report(progress, done / total, f"GAN epoch {epoch + 1}/{epochs} done: "
               + ", ".join(f"{k_} {v}" for k_, v in entry.items() if k_ != "epoch"))
    _recalibrate_bn(G_avg, seed=seed)
    G_avg.eval()
    G.eval()
    D.eval()
    return G_avg, D, log


@torch.no_grad()
def _recalibrate_bn(G_avg: Generator, *, seed: int, n: int = 2048, batch_size: int = 256) -> None:
    """Re-estimate the batch-norm statistics of the averaged generator (its running
    statistics would be the raw generator's): a cumulative average over ``n`` samples."""
    for ma in G_avg.modules():
        if isinstance(ma, nn.BatchNorm2d):
            ma.reset_running_stats()
            ma.momentum = None
    gen = torch.Generator().manual_seed(seed + 1)
    dev = model_device(G_avg)
    G_avg.train()
    for _ in range(n // batch_size):
        z = torch.randn(batch_size, G_avg.z_dim, generator=gen).to(dev)
        c = torch.randint(0, G_avg.num_classes, (batch_size,), generator=gen).to(dev)
        G_avg(z, c)
    for ma in G_avg.modules():
        if isinstance(ma, nn.BatchNorm2d):
            ma.momentum = 0.1
    G_avg.eval()


@torch.no_grad()
def sample(generator: Generator, c: torch.Tensor, *, seed: Optional[int] = 0) -> torch.Tensor:
    """Samples G(z, c), z ~ N(0, I) drawn with ``seed``, for classes ``c`` (N,). Returns
    (N, C, S, S) in [0, 1] on the generator's device. The generator must be in eval mode."""
    dev = model_device(generator)
    c = torch.as_tensor(c, dtype=torch.long).reshape(-1).to(dev)
    gen = torch.Generator()
    if seed is not None:
        gen.manual_seed(int(seed))
    else:
        gen.seed()
    z = torch.randn(len(c), generator.z_dim, generator=gen).to(dev)
    return generator(z, c)


@torch.no_grad()
def class_accuracy(generator: Generator, classifier: nn.Module, *, n_per_class: int = 100,
                   seed: int = 0, batch_size: int = 500) -> float:
    """Fraction in [0, 1] of samples G(z, c) that ``classifier`` puts in class c, over
    ``n_per_class`` samples of every class (z drawn with ``seed``): the quality figure of a
    generator's card (issue target: >= 0.9 with ``mnist-5k/standard``)."""
    c = torch.arange(generator.num_classes).repeat_interleave(n_per_class)
    x = sample(generator, c, seed=seed)
    cdev = model_device(classifier)
    pred = torch.cat([classifier(x[i : i + batch_size].to(cdev)).argmax(1).cpu()
                      for i in range(0, len(x), batch_size)])
    return (pred == c).float().mean().item()


# --------------------------------------------------------------------------- checkpoints


def user_generator_dir() -> Path:
    """A user's generators: ``$GRADVIZ_HOME/generators`` or ``~/.cache/gradviz/generators``."""
    return gradviz_home() / "generators"


def save_generator(generator: Generator, card: ModelCard, path: Union[str, Path]) -> Path:
    """Write ``generator``'s weights to ``path`` (``.pt``) and ``card`` (a
    :class:`gradviz.checkpoints.ModelCard`, also ``gradviz.zoo.ModelCard``; arch
    ``cgan-dcgan``, method ``cgan``) beside it (``.json``), both atomically.

    The checkpoint is a dict of plain values and tensors (``torch.load(weights_only=True)``
    reads it): format, kind ``"generator"``, arch, dataset, config (the constructor's
    arguments), state_dict. Returns the checkpoint path.
    """
    path = Path(path).with_suffix(".pt")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": GENERATOR_KIND,
        "arch": GENERATOR_ARCH,
        "dataset": card.dataset,
        "config": dict(generator.config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()},
    }
    save_atomic(payload, path, tmp=path.with_suffix(".pt.tmp"))
    write_card(card, path)
    return path


def list_generators() -> dict[str, Path]:
    """Dataset name -> checkpoint path of every available generator: shipped ones
    (``assets/generators``) first, then the user's (:func:`user_generator_dir`), a shipped
    one winning over a user one of the same dataset."""
    found: dict[str, Path] = {}
    for root in (ASSETS_DIR, user_generator_dir()):
        if root.is_dir():
            for p in sorted(root.glob("*.pt")):
                found.setdefault(p.stem, p)
    return found


def generator_card(dataset_or_path: Union[str, Path]) -> ModelCard:
    """The :class:`gradviz.checkpoints.ModelCard` of a generator (by dataset or checkpoint path).

    Raises:
        NoGeneratorError: no such generator, or no card beside it.
    """
    path = _generator_path(dataset_or_path)
    try:
        card = read_card(path.with_suffix(".json"), shipped=path.parent == ASSETS_DIR)
    except CheckpointError as err:
        raise NoGeneratorError(f"no readable card beside {path}: {err}") from err
    card.path = str(path)
    return card


def _generator_path(dataset_or_path: Union[str, Path]) -> Path:
    p = Path(dataset_or_path)
    if p.suffix == ".pt" and p.is_file():
        return p
    found = list_generators()
    if str(dataset_or_path) in found:
        return found[str(dataset_or_path)]
    raise NoGeneratorError(
        f"no generator for dataset {str(dataset_or_path)!r}; available: {sorted(found) or 'none'} "
        f"(train one with: python -m gradviz train-gan --dataset {dataset_or_path})"
    )


def load_generator(dataset_or_path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Generator:
    """Load the generator of a dataset (shipped first, then the user's) or a checkpoint file.

    Args:
        dataset_or_path: a dataset name (``"mnist-5k"``, ``"squares"``) or a ``.pt`` path.
        device: "cpu" (default), "cuda" or "auto".

    Returns:
        The :class:`Generator` in eval mode with ``requires_grad=False`` on its parameters
        (read-only, shareable), ``gradviz_info`` = {dataset, path, name}.

    Raises:
        NoGeneratorError (a KeyError and a ValueError): no generator for that dataset; the
            message lists the available ones.
        gradviz.checkpoints.CheckpointError (also ``gradviz.zoo.CheckpointError``): an
            unsafe, corrupt, or non-generator checkpoint.
    """
    path = _generator_path(dataset_or_path)
    payload = read_checkpoint(path)
    if payload.get("kind") != GENERATOR_KIND or "config" not in payload:
        raise CheckpointError(f"{path.name} is not a gradviz generator checkpoint (no kind 'generator')")
    G = Generator(**payload["config"])
    try:
        G.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path.name} does not fit the generator architecture: "
                                  f"{str(err).splitlines()[0]}") from err
    G.eval().requires_grad_(False)
    G.gradviz_info = {"dataset": payload.get("dataset"), "path": str(path), "name": f"{payload.get('dataset')}/generator"}
    return G.to(resolve_device(device))


# --------------------------------------------------------------------------- projection


@dataclass
class Projection:
    """Result of :func:`project`; leading dims ``(N,)`` for targets (N,), ``(N, T)`` for (N, T).

    Attributes:
        x_hat: G(z*, c), the closest generated image of the target class, in [0, 1].
        z: z*, the optimised latent codes (..., z_dim).
        mse: final mean squared error |G(z*, c) - x|^2 / (C H W) on the [0, 1] scale.
        settings: steps, lr, lambda_z used.
    """

    x_hat: torch.Tensor
    z: torch.Tensor
    mse: torch.Tensor
    settings: dict


def default_lambda_z(dataset: Optional[str]) -> float:
    """The z penalty of Eq. 15: 1.5 for MNIST (``mnist``, ``mnist-5k``), 0.03 otherwise
    (the authors' values; unknown dataset: 0.03).

    Measured on ``squares`` with a 40-epoch gradviz generator (100 train images, 300 + 75
    steps): mean cos(dx_hat, dx_true) is 0.61 at 0.03, 0.71 at 0.1, 0.77 at 0.3, 0.78 at
    1.0 (0.61 / 0.77 on 100 test images at 0.03 / 0.3): with this smaller generator a
    stronger penalty than the authors' keeps the projection on the target class. Pass
    ``lambda_z`` to :func:`project` / :func:`residual` to use another value."""
    return 1.5 if dataset in MNIST_LIKE else 0.03


def default_projection_lr(dataset: Optional[str]) -> float:
    """Adam learning rate of the projection: 0.1 for CIFAR-10, 0.2 otherwise (the authors')."""
    return 0.1 if dataset == "cifar10" else 0.2


def _parse_steps(steps) -> tuple[int, int]:
    if isinstance(steps, (int,)) and not isinstance(steps, bool):
        first = int(round(steps * DEFAULT_STEPS[0] / sum(DEFAULT_STEPS)))
        steps = (first, int(steps) - first)
    try:
        s1, s2 = (int(s) for s in steps)
    except (TypeError, ValueError):
        raise ValueError(f"steps must be an int or a pair (free steps, penalised steps), got {steps!r}") from None
    if s1 < 0 or s2 < 0 or s1 + s2 < 1:
        raise ValueError(f"steps must be >= 0 with at least one step in all, got {steps!r}")
    return s1, s2


def _prepare(generator: nn.Module, x: torch.Tensor, target, y) -> tuple[nn.Module, torch.Tensor, bool]:
    check_images(x)
    cfg = getattr(generator, "config", None) or {}
    k = getattr(generator, "num_classes", cfg.get("num_classes"))
    c_g, s_g = getattr(generator, "channels", None), getattr(generator, "size", None)
    if c_g is not None and s_g is not None and tuple(x.shape[1:]) != (c_g, s_g, s_g):
        raise ValueError(f"x has images of shape {tuple(x.shape[1:])} but the generator makes "
                         f"({c_g}, {s_g}, {s_g}) (a generator of another dataset?)")
    t = torch.as_tensor(target, device=x.device)
    if t.is_floating_point():
        raise ValueError("target must hold integer class indices")
    t = t.long()
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    single = t.ndim == 1
    if single:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] != x.shape[0]:
        raise ValueError(f"target must be an int, (N,) or (N, T) with N = {x.shape[0]} images; "
                         f"got shape {tuple(torch.as_tensor(target).shape)}")
    if k is not None:
        check_classes(t, k, "target classes")
    if y is not None:
        yy = as_labels(y, len(x), device=x.device)
        same = (t == yy[:, None]).any(1)
        if same.any():
            i = int(same.nonzero()[0])
            raise ValueError(f"target equals the label for {int(same.sum())} image(s) (first: index {i}, "
                             f"class {int(yy[i])}); a residual moves an image into another class")
    # read-only use: never change the caller's module (a shared, cached generator)
    if generator.training or model_device(generator) != x.device:
        generator = copy.deepcopy(generator).eval().to(x.device)
    return generator, t, single


def project(
    generator: nn.Module,
    x: torch.Tensor,
    target,
    *,
    steps=DEFAULT_STEPS,
    lr: Optional[float] = None,
    lambda_z: Optional[float] = None,
    y: Optional[torch.Tensor] = None,
    batch_size: int = 1024,
    z_init: Optional[torch.Tensor] = None,
    progress: Optional[Progress] = None,
) -> Projection:
    """Project images onto the range of a class-conditional generator (Eqs. 15-16).

    For every image x_i and target class c, one latent z (all optimised together, each by
    its own loss: the per-pair losses are summed, and Adam is element-wise, so the result
    equals one optimisation per pair):

    1. z = 0; ``steps[0]`` Adam steps (lr ``lr``) on MSE(G(z, c), x);
    2. a fresh Adam, ``steps[1]`` steps on MSE(G(z, c), x) + lambda_z * mean(z^2).

    The MSE is taken on the authors' [-1, 1] image scale (4x the [0, 1] MSE) so that
    lambda_z keeps the paper's meaning (lambda_z / 4 on the [0, 1] scale).

    Args:
        generator: G(z, c) -> (N, C, H, W) in [0, 1] with attributes ``z_dim`` and
            ``num_classes`` (a :class:`Generator`). Used read-only: never modified (a copy in
            eval mode is used if it is in training mode or on another device than x); only
            gradients with respect to z are taken.
        x: (N, C, H, W) images in [0, 1]; the computation runs on x's device.
        target: target classes, an int (all images), (N,) or (N, T) int64.
        steps: ``(free, penalised)`` Adam steps, default (600, 150), the paper's; an int n
            splits as 600:150 (e.g. 375 -> (300, 75)). Measured on 1,000 mnist-5k test
            images (bench/bench_residual.py): (300, 75) costs half and keeps the residual
            (mean cos 0.995 with the (600, 150) one, same reconstruction error); (150, 40)
            gives mean cos 0.978.
        lr: Adam learning rate (default :func:`default_projection_lr`: 0.2, 0.1 for CIFAR-10).
        lambda_z: z penalty (default :func:`default_lambda_z` of the generator's dataset:
            1.5 for MNIST, 0.03 otherwise).
        y: true labels (N,); when given, a target equal to the label raises ValueError.
        batch_size: (image, class) pairs optimised at once (memory: about 0.1 MB per pair
            for 28 x 28 on the default generator).
        z_init: optional start (N, z_dim) or (N, T, z_dim) instead of z = 0 (e.g. from an
            encoder); the paper starts at 0.
        progress: ``progress(fraction, message)`` callback.

    Returns:
        :class:`Projection` (x_hat, z, mse), leading dims (N,) or (N, T) like ``target``.

    Raises:
        ValueError: x not images in [0, 1] or with NaN; shape not the generator's; target
            out of range, of the wrong shape, or equal to ``y``; bad steps.
    """
    generator, t, single = _prepare(generator, x, target, y)
    s1, s2 = _parse_steps(steps)
    lr, lambda_z = _projection_settings(generator, lr, lambda_z)
    n, tt = t.shape
    pairs_x = torch.arange(n, device=x.device).repeat_interleave(tt)
    pairs_c = t.reshape(-1)
    z_dim = generator.z_dim
    if z_init is not None:
        z_init = torch.as_tensor(z_init, dtype=x.dtype, device=x.device).reshape(-1, z_dim)
        if z_init.shape[0] != n * tt:
            raise ValueError(f"z_init must hold one z per (image, target) pair: {n * tt}, got {z_init.shape[0]}")
    total = len(pairs_c)
    x_hat = torch.empty(total, *x.shape[1:], dtype=x.dtype, device=x.device)
    z_out = torch.empty(total, z_dim, dtype=x.dtype, device=x.device)
    mse = torch.empty(total, dtype=x.dtype, device=x.device)
    n_chunks = max(1, math.ceil(total / batch_size))
    x = x.detach()
    with torch.enable_grad():
        for ci in range(n_chunks):
            sl = slice(ci * batch_size, (ci + 1) * batch_size)
            xb, cb = x[pairs_x[sl]], pairs_c[sl]
            z = (z_init[sl].clone() if z_init is not None else torch.zeros(len(cb), z_dim, dtype=x.dtype, device=x.device))
            z.requires_grad_(True)

            def on_step(step, _ci=ci):
                if progress is not None and (step % 25 == 0 or step == s1 + s2):
                    report(progress, (_ci * (s1 + s2) + step) / (n_chunks * (s1 + s2)),
                           f"projection: batch {_ci + 1}/{n_chunks}, step {step}/{s1 + s2}")

            z = _optimise_z(generator, z, cb, xb, s1, s2, lr, lambda_z, on_step)
            with torch.no_grad():
                out = generator(z, cb)
                x_hat[sl], z_out[sl] = out, z
                mse[sl] = (out - xb).flatten(1).pow(2).mean(1)
    lead = (n,) if single else (n, tt)
    settings = dict(steps=[s1, s2], lr=lr, lambda_z=lambda_z)
    return Projection(x_hat.view(*lead, *x.shape[1:]), z_out.view(*lead, z_dim), mse.view(*lead), settings)


def _optimise_z(generator, z, c, x, s1, s2, lr, lambda_z, on_step) -> torch.Tensor:
    step = 0
    for stage, n_steps in ((0, s1), (1, s2)):
        if n_steps == 0:
            continue
        opt = torch.optim.Adam([z], lr=lr)  # a fresh optimiser per stage, as the authors'
        for _ in range(n_steps):
            out = generator(z, c)
            loss = 4 * (out - x).flatten(1).pow(2).mean(1)  # MSE on the [-1, 1] scale
            if stage == 1:
                loss = loss + lambda_z * z.pow(2).mean(1)
            (grad,) = torch.autograd.grad(loss.sum(), z)
            z.grad = grad
            opt.step()
            step += 1
            on_step(step)
    return z.detach()


def residual(
    generator: nn.Module,
    x: torch.Tensor,
    target,
    *,
    steps=DEFAULT_STEPS,
    seed: Optional[int] = None,
    lr: Optional[float] = None,
    lambda_z: Optional[float] = None,
    y: Optional[torch.Tensor] = None,
    batch_size: int = 1024,
    progress: Optional[Progress] = None,
) -> torch.Tensor:
    """The GAN residual dx_c = G(z*, c) - x toward class c (Eqs. 15-16), batched over
    images and target classes; see :func:`project` for the procedure and every argument.

    Args:
        seed: accepted for the API's uniformity; the paper's procedure is deterministic
            (z starts at 0), so it changes nothing.

    Returns:
        dx, (N, C, H, W) for an int or (N,) target, (N, T, C, H, W) for (N, T); on the
        [0, 1] scale, so x + dx = G(z*, c) lies in [0, 1]. Detached.

    Raises:
        ValueError: see :func:`project` (including a target equal to ``y`` when given).
    """
    del seed
    proj = project(generator, x, target, steps=steps, lr=lr, lambda_z=lambda_z, y=y,
                   batch_size=batch_size, progress=progress)
    xx = x.detach() if proj.x_hat.ndim == x.ndim else x.detach().unsqueeze(1)
    return proj.x_hat - xx


# --------------------------------------------------------------------------- cache


def _fingerprint(generator: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class ResidualCache:
    """Every image's projection onto every class of a dataset split.

    Attributes:
        x_hat: (N, K, C, H, W) float16, G(z*_c, c) for each image and class c (for the
            image's own class: its reconstruction).
        dataset, split: the images, in :func:`gradviz.data.load_dataset` order.
        meta: generator fingerprint and path, steps, lr, lambda_z, seconds.
    """

    x_hat: torch.Tensor
    dataset: str
    split: str
    meta: dict

    def residual(self, index, x: torch.Tensor, target) -> torch.Tensor:
        """dx = x_hat[index, target] - x: (B, C, H, W) for dataset indices ``index`` (B,),
        images ``x`` (B, C, H, W) (the images at those indices, possibly translated: apply
        the same translation to x_hat, which :meth:`x_hat_of` returns) and ``target`` (B,)."""
        return self.x_hat_of(index, target).to(x.device, x.dtype) - x

    def x_hat_of(self, index, target) -> torch.Tensor:
        """(B, C, H, W) float32 projections of images ``index`` onto classes ``target``."""
        index = torch.as_tensor(index, dtype=torch.long).cpu()
        target = torch.as_tensor(target, dtype=torch.long).cpu()
        return self.x_hat[index, target].float()


def exact_residual_cache(split: str = "train", dataset: str = "squares") -> ResidualCache:
    """The exact residuals of a two-class dataset that carries them (``squares``:
    ``extras["residual"]``, see :mod:`gradviz.squares`) in the form of a
    :class:`ResidualCache` (what L_alpha training and the Alignment page read):
    ``x_hat[i, c] = x_i + dx_i`` for the other class, ``x_i`` for its own class (float16, not
    clamped: see :mod:`gradviz.squares` on clamping). The authors trained L_alpha on squares
    with these exact residuals.

    Raises:
        ValueError: a dataset without exact residuals or with other than two classes.
    """
    ds = load_dataset(dataset, split)
    if "residual" not in ds.extras or len(ds.classes) != 2:
        raise ValueError(f"{dataset} has no exact residuals (only a two-class dataset with "
                         f"extras['residual'], such as squares, has)")
    x_hat = torch.stack([ds.x, ds.x], dim=1)  # (N, 2, C, H, W)
    other = 1 - ds.y
    x_hat[torch.arange(len(ds)), other] = ds.x + ds.extras["residual"]
    return ResidualCache(x_hat.to(torch.float16), dataset, split, {"generator": "exact", "n": len(ds)})


def residual_cache_dir() -> Path:
    """Where computed residual caches go: ``$GRADVIZ_HOME/residuals`` (or ~/.cache/gradviz)."""
    return user_generator_dir().parent / "residuals"


def residual_cache(
    generator: nn.Module,
    dataset: str,
    split: str = "test",
    *,
    steps=DEFAULT_STEPS,
    batch_size: int = 1024,
    limit: int = 0,
    folder: Union[str, Path, None] = None,
    recompute: bool = False,
    device="auto",
    progress: Optional[Progress] = None,
) -> ResidualCache:
    """Projections of a split's images onto every other class, loaded from disk when
    computed before with the same generator weights and settings, else computed and stored.

    ``x_hat[i, c]`` is G(z*, c) for c != y_i and x_i itself for c = y_i (not projected: a
    residual toward the own class is never asked for). The file
    ``<folder>/<dataset>-<split>-<fingerprint>-<steps>[-<limit>].pt`` holds plain tensors and
    values (weights_only-loadable). Cost: N x (K - 1) projections of sum(steps) steps (see
    bench/bench_residual.py for the time per image).

    Args:
        generator: the dataset's generator (read-only).
        dataset, split: which images (:func:`gradviz.data.load_dataset`).
        steps: as in :func:`project`.
        limit: only the first ``limit`` images (0: all).
        folder: default :func:`residual_cache_dir`.
        recompute: ignore a stored file.
        device: where to compute.

    Returns:
        :class:`ResidualCache`.

    Raises:
        ValueError: see :func:`project`.
    """
    s1, s2 = _parse_steps(steps)
    fp = _fingerprint(generator)
    folder = Path(folder) if folder is not None else residual_cache_dir()
    path = folder / f"{dataset}-{split}-{fp}-{s1}+{s2}{f'-{limit}' if limit else ''}.pt"
    if path.is_file() and not recompute:
        try:
            payload = load_weights_only(path)
        except CheckpointError:  # a truncated or foreign file: compute again
            payload = {}
        if isinstance(payload, dict) and payload.get("format") == CACHE_FORMAT:
            return ResidualCache(payload["x_hat"], dataset, split, payload["meta"])
    data = load_dataset(dataset, split)
    if limit:
        data = data.subset(slice(0, limit))
    dev = resolve_device(device)
    k = len(data.classes)
    start = time.perf_counter()
    x, y = data.x.to(dev), data.y.to(dev)
    t = residual_targets(k, y)
    proj = project(generator, x, t, steps=(s1, s2), batch_size=batch_size, progress=progress)
    meta = dict(generator=fp, generator_path=getattr(generator, "gradviz_info", {}).get("path"),
                **proj.settings, seconds=round(time.perf_counter() - start, 1), n=len(x),
                own_class="x itself (not projected)")
    x_hat = x.unsqueeze(1).repeat(1, k, *[1] * (x.ndim - 1))
    x_hat[torch.arange(len(x), device=dev)[:, None], t] = proj.x_hat
    x_hat = x_hat.to(torch.float16).cpu()
    save_atomic({"format": CACHE_FORMAT, "dataset": dataset, "split": split, "meta": meta, "x_hat": x_hat}, path,
                tmp=path.with_suffix(".pt.tmp"))
    return ResidualCache(x_hat, dataset, split, meta)


def residual_targets(k: int, y: torch.Tensor) -> torch.Tensor:
    """All classes but the label, (N, K - 1) int64, for :func:`residual` toward every other
    class of images with labels ``y`` (N,)."""
    y = torch.as_tensor(y, dtype=torch.long).reshape(-1)
    allc = torch.arange(k, device=y.device).expand(len(y), k)
    return allc[allc != y[:, None]].view(len(y), k - 1)


# --------------------------------------------------------------------------- per-pair store


def generator_fingerprint(generator: nn.Module) -> str:
    """16 hex digits of a SHA-256 over the generator's state dict (names and values): the
    key of the stored residuals (:func:`residual_cache`, :func:`residuals_for`); a retrained
    generator gets another one."""
    return _fingerprint(generator)


def residual_store_path(generator: nn.Module, dataset: str, split: str = "test", *, steps=FAST_STEPS,
                        lr: Optional[float] = None, lambda_z: Optional[float] = None,
                        folder: Union[str, Path, None] = None) -> Path:
    """The file of :func:`residuals_for`'s store for these settings:
    ``<folder>/<dataset>-<split>-<fingerprint>-<s1>+<s2>-lz<lambda_z>-lr<lr>.pairs.pt``
    (folder default :func:`residual_cache_dir`; lr and lambda_z default as in :func:`project`)."""
    s1, s2 = _parse_steps(steps)
    lr, lambda_z = _projection_settings(generator, lr, lambda_z, dataset)
    folder = Path(folder) if folder is not None else residual_cache_dir()
    fp = _fingerprint(generator)
    return folder / f"{dataset}-{split}-{fp}-{s1}+{s2}-lz{lambda_z:g}-lr{lr:g}.pairs.pt"


def _read_pairs(path: Path, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(keys (P,) int64 as index * K + class, x_hat (P, C, H, W) float32, mse (P,)) of a
    store file; empty when the file is missing, unreadable, foreign or of another shape."""
    empty = (torch.empty(0, dtype=torch.long), torch.empty(0, *shape), torch.empty(0))
    if not path.is_file():
        return empty
    try:
        payload = load_weights_only(path)
        if not isinstance(payload, dict) or payload.get("format") != PAIRS_FORMAT:
            return empty
        keys, x_hat, mse = payload["keys"].long(), payload["x_hat"].float(), payload["mse"].float()
        if (keys.ndim != 1 or tuple(x_hat.shape) != (len(keys), *shape) or mse.shape != keys.shape
                or not torch.isfinite(x_hat).all()):
            return empty
        return keys, x_hat, mse
    except Exception:  # a truncated, corrupt or foreign file: recompute what is asked for
        return empty


def _lookup(keys: torch.Tensor, wanted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row in ``keys`` of each of ``wanted`` (the last one, for a key that occurs more than
    once) and whether it is there (both (B,))."""
    if len(keys) == 0:
        return torch.zeros_like(wanted), torch.zeros_like(wanted, dtype=torch.bool)
    order = torch.argsort(keys, stable=True)
    sk = keys[order]
    pos = (torch.searchsorted(sk, wanted, right=True) - 1).clamp_min(0)
    return order[pos], sk[pos] == wanted


class _FileLock:
    """An advisory lock on ``<path>.lock`` (POSIX flock; a no-op where fcntl is missing), so
    that two processes adding pairs to one store merge instead of losing each other's."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")
        self.fh = None

    def __enter__(self):
        try:
            import fcntl

            self.fh = open(self.path, "a+")
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except (ImportError, OSError):
            self.fh = None
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()  # closing releases the lock


def residuals_for(
    generator: nn.Module,
    dataset: str,
    split: str,
    index,
    target,
    *,
    steps=FAST_STEPS,
    lr: Optional[float] = None,
    lambda_z: Optional[float] = None,
    folder: Union[str, Path, None] = None,
    batch_size: int = 1024,
    device="auto",
    recompute: bool = False,
    images=None,
    progress: Optional[Progress] = None,
) -> torch.Tensor:
    """GAN residuals dx = G(z*, c) - x of chosen (image, class) pairs of a dataset split,
    computed only where not stored before (Bigolin Lanfredi et al., Eqs. 15-16; see
    :func:`project` for the procedure).

    A store on disk keeps G(z*, c) of every pair ever computed for one generator (its
    weights' :func:`generator_fingerprint`), dataset split and projection settings (steps,
    lr, lambda_z): :func:`residual_store_path`. A call looks up the pairs asked for,
    projects all the missing ones in one batched :func:`project` call, adds them to the
    store (atomic write: a temporary file then ``os.replace``, under an advisory lock, merged
    with what another process may have added meanwhile) and returns the residuals. Unlike
    :func:`residual_cache` (every image onto every other class: N x (K - 1) projections), it
    projects only what a caller needs, e.g. each image toward the closest class c~ (Eq. 5)
    of a few models (:func:`gradviz.alignment.closest_class`).

    The file holds plain tensors (``torch.load(weights_only=True)`` reads it): format,
    dataset, split, settings, ``keys`` (P,) int64 = index * K + class, ``x_hat`` (P, C, H, W)
    float32 in [0, 1], ``mse`` (P,). A corrupt, truncated or foreign file is ignored (its
    pairs are computed again and the file rewritten).

    Args:
        generator: the dataset's class-conditional generator (read-only; see :func:`project`).
        dataset, split: the images, in :func:`gradviz.data.load_dataset` order.
        index: (B,) dataset indices (an int: one image; repeats allowed).
        target: (B,) destination classes, one per index (an int: the same for all);
            never the image's label.
        steps: ``(free, penalised)`` Adam steps (default :data:`FAST_STEPS` = (300, 75),
            measured cos 0.995 with the paper's :data:`DEFAULT_STEPS` = (600, 150) residual
            at half the cost); an int n splits as 600:150.
        lr, lambda_z: as in :func:`project` (defaults of the generator's dataset, else of
            ``dataset``).
        folder: the store's folder (default :func:`residual_cache_dir`, where
            :func:`residual_cache` keeps its files).
        batch_size: pairs optimised at once (see :func:`project`).
        device: where to project ("auto": CUDA when available).
        recompute: ignore (and replace) the stored pairs asked for.
        images: the split's images (N, C, H, W) if the caller has them loaded, else they are
            loaded with :func:`gradviz.data.load_dataset`; labels always come from there.
        progress: ``progress(fraction, message)`` callback of the projection (not called
            when every pair is stored).

    Returns:
        dx (B, C, H, W) float32 on the CPU, in the order asked for, on the [0, 1] image
        scale (x + dx = G(z*, c) lies in [0, 1]).

    Raises:
        ValueError: an index outside the split; a target out of range or equal to the
            image's label ("target equals the label ..."); index and target of different
            lengths; images of another shape than the generator's; bad steps.
    """
    ds = load_dataset(dataset, split)
    x_all = ds.x if images is None else images
    if x_all.shape != ds.x.shape:
        raise ValueError(f"images must be the {dataset} {split} split, shape {tuple(ds.x.shape)}; "
                         f"got {tuple(x_all.shape)}")
    n_total, k = len(ds), len(ds.classes)
    idx = torch.as_tensor(index, dtype=torch.long).reshape(-1).cpu()
    tgt = torch.as_tensor(target).cpu()
    if tgt.is_floating_point() and tgt.numel():
        raise ValueError("target must hold integer class indices")
    tgt = tgt.long().expand(len(idx)) if tgt.ndim == 0 else tgt.long().reshape(-1)
    if len(tgt) != len(idx):
        raise ValueError(f"index has {len(idx)} entries but target {len(tgt)}")
    shape = tuple(x_all.shape[1:])
    if len(idx) == 0:
        return torch.empty(0, *shape)
    if int(idx.min()) < 0 or int(idx.max()) >= n_total:
        raise ValueError(f"index must lie in [0, {n_total}) for the {dataset} {split} split, "
                         f"got {int(idx.min())}..{int(idx.max())}")
    if int(tgt.min()) < 0 or int(tgt.max()) >= k:
        raise ValueError(f"target classes must lie in [0, {k}), got {int(tgt.min())}..{int(tgt.max())}")
    labels = ds.y[idx]
    same = tgt == labels
    if same.any():
        i = int(same.nonzero()[0])
        raise ValueError(f"target equals the label for {int(same.sum())} image(s) (first: {split} #{int(idx[i])}, "
                         f"class {ds.classes[int(labels[i])]!r}); a residual moves an image into another class")
    s1, s2 = _parse_steps(steps)
    lr, lambda_z = _projection_settings(generator, lr, lambda_z, dataset)
    path = residual_store_path(generator, dataset, split, steps=(s1, s2), lr=lr, lambda_z=lambda_z, folder=folder)
    wanted = idx * k + tgt
    keys, x_hat, mse = _read_pairs(path, shape)
    if recompute:
        keep = ~torch.isin(keys, wanted)
        keys, x_hat, mse = keys[keep], x_hat[keep], mse[keep]
    rows, found = _lookup(keys, wanted)
    if not found.all():
        missing = torch.unique(wanted[~found])  # sorted, each pair once
        mi, mc = missing // k, missing % k
        dev = resolve_device(device)
        proj = project(generator, x_all[mi].to(dev), mc.to(dev), steps=(s1, s2), lr=lr, lambda_z=lambda_z,
                       batch_size=batch_size, progress=progress)
        new_hat, new_mse = proj.x_hat.detach().float().cpu(), proj.mse.detach().float().cpu()
        path.parent.mkdir(parents=True, exist_ok=True)
        with _FileLock(path):
            # merge with the file as it is now (another process may have added pairs)
            keys, x_hat, mse = _read_pairs(path, shape)
            if recompute:
                keep = ~torch.isin(keys, missing)
                keys, x_hat, mse = keys[keep], x_hat[keep], mse[keep]
            fresh = ~torch.isin(missing, keys)
            keys = torch.cat([keys, missing[fresh]])
            x_hat = torch.cat([x_hat, new_hat[fresh]])
            mse = torch.cat([mse, new_mse[fresh]])
            payload = {"format": PAIRS_FORMAT, "dataset": dataset, "split": split, "num_classes": k,
                       "settings": dict(steps=[s1, s2], lr=lr, lambda_z=lambda_z, generator=_fingerprint(generator),
                                        generator_path=getattr(generator, "gradviz_info", {}).get("path")),
                       "keys": keys, "x_hat": x_hat.contiguous(), "mse": mse}
            save_atomic(payload, path, tmp=path.with_name(f"{path.name}.{os.getpid()}.tmp"))
        # the pairs just computed win over any stored copy (recompute)
        keys = torch.cat([keys, missing])
        x_hat = torch.cat([x_hat, new_hat])
        rows, found = _lookup(keys, wanted)
    return x_hat[rows] - x_all[idx].float()


__all__: Sequence[str] = (
    "Generator", "Discriminator", "NoGeneratorError", "Projection", "ResidualCache", "class_accuracy",
    "default_lambda_z", "default_projection_lr", "exact_residual_cache", "generator_card", "list_generators",
    "load_generator",
    "project", "residual", "residual_cache", "residual_targets", "residuals_for", "residual_store_path",
    "generator_fingerprint", "DEFAULT_STEPS", "FAST_STEPS", "sample", "save_generator", "train_gan",
)
