"""One training loop for every objective: seeded, batched, with progress, a per-epoch log
with learning curves on a held-out monitor set, evaluation on the test split with the
dataset's standard attack, and the model card.

Methods (:data:`METHODS`, the keys of :data:`gradviz.training.objectives.OBJECTIVES`):
``standard``, ``pgd`` (Madry et al. 2018), ``igd`` (docs/methods.md section 3), ``trades``
(Zhang et al. 2019), ``pag`` (docs/methods.md section 2), ``agr`` (docs/methods.md section
5, around ``pgd`` or ``trades``), ``lalpha`` (docs/methods.md section 1). Each method's
options, defaults and construction live in its objective's module; :class:`TrainConfig`
reads them from the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gradviz.attacks import accuracy_vs_eps, clean_accuracy, default_step_size, eps50, robust_accuracy
from gradviz.data import ImageDataset, dataset_info, load_dataset
from gradviz.nets import build_model
from gradviz.tensors import eval_mode, model_device
from gradviz.training.objectives import AGR_BASES, OBJECTIVES, all_options, objective_class, option_defaults
from gradviz.training.snapshots import SNAPSHOT_IMAGES, SnapshotRecorder, load_snapshots
from gradviz.utils import Progress, report, resolve_device

__all__ = ["AGR_BASES", "ATTACK_METHODS", "EVAL_ATTACKS", "METHODS", "MONITOR_STEPS", "TrainConfig",
           "TrainingCancelled", "cli_command", "default_eps_grid", "evaluate", "model_card", "monitor_attack",
           "monitor_settings", "robustness_curve", "train"]

#: The attack every model card reports robust accuracy under, per dataset
#: (docs/methods.md, "Standard attack settings").
EVAL_ATTACKS: dict[str, dict] = {
    "mnist-5k": dict(norm="linf", eps=0.3, steps=40, step_size=0.01, random_start=True),
    "mnist": dict(norm="linf", eps=0.3, steps=40, step_size=0.01, random_start=True),
    "fashion-mnist": dict(norm="linf", eps=0.1, steps=40, step_size=0.01, random_start=True),
    "cifar10": dict(norm="linf", eps=8 / 255, steps=20, step_size=2 / 255, random_start=True),
    "squares": dict(norm="linf", eps=0.1, steps=40, step_size=0.01, random_start=True),  # authors: 0.2 on [-1, 1]
}

#: Every training method, in the registry's order.
METHODS = tuple(OBJECTIVES)
#: Methods that train on adversarial examples (their attack: eps, norm, steps, step_size,
#: warmup_epochs): the objectives whose ``adversarial`` is True.
ATTACK_METHODS = tuple(name for name, cls in OBJECTIVES.items() if cls.adversarial)
#: The objectives' option defaults (the single definitions live in their modules).
_DEFAULTS = option_defaults()
#: PGD steps of the monitor's robust accuracy (a cheap attack: learning curves only).
MONITOR_STEPS = 10


class TrainingCancelled(Exception):
    """Raised from a ``progress``, ``on_batch`` or ``on_epoch`` callback to stop :func:`train`
    (cooperative cancellation, e.g. by :mod:`gradviz.training.jobs`); ``train`` lets it
    propagate and returns nothing."""


@dataclass
class TrainConfig:
    """Every option of a training run (all stored in the model card).

    The method-specific fields are the options of the objectives in
    :data:`gradviz.training.objectives.OBJECTIVES` (``OBJECTIVES[method].options``); their
    defaults, help and meaning are defined there, once, by each objective's module. None
    means "the method's default" (filled in by :meth:`resolved`).

    Attributes:
        dataset, method, arch: what to train (methods: see :data:`METHODS`).
        epochs, batch_size, lr, weight_decay, seed: optimisation (Adam, one-cycle schedule).
        augment: random translations of up to ``shift`` pixels (torchvision RandomCrop
            with zero padding), applied per image (never for "lalpha": its residuals belong
            to the unshifted images; :meth:`resolved` sets ``augment=False``).
        eps, norm, steps, step_size, warmup_epochs: the training attack of the methods in
            :data:`ATTACK_METHODS` (:data:`gradviz.training.objectives.ATTACK_OPTIONS`:
            l_inf eps 0.3, 20 steps of 2.5 * eps / steps, no warm-up).
        teacher, igd_lambda: method "igd" (:mod:`gradviz.training.objectives.igd`).
        trades_beta: method "trades", and "agr" around it
            (:mod:`gradviz.training.objectives.trades`).
        pag_target, pag_lambda: method "pag" (:mod:`gradviz.training.objectives.pag`).
        agr_base, agr_start_epoch, agr_clip: method "agr" (:mod:`gradviz.training.objectives.agr`).
        lalpha_lambda, lalpha_reference: method "lalpha"
            (:mod:`gradviz.training.objectives.lalpha`).
        limit: train on the first ``limit`` images only (0: all), for quick runs and tests.
        monitor: learning curves: after each epoch, the clean accuracy on the first
            ``monitor`` images of the *test* split and, for every method but standard, the
            robust accuracy under a cheap PGD (:func:`monitor_attack`). Used only to draw the
            curves, never for model selection or early stopping; the training data are
            untouched (0: no monitor).
        snapshots: K, the held-out test images whose input gradients are kept before
            training and after each epoch (:mod:`gradviz.training.snapshots`; the same K
            images, drawn with seed 0, for every run on a dataset, so runs compare; 0: none).
    """

    dataset: str = "mnist-5k"
    method: str = "standard"
    arch: str = "small-cnn"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    augment: bool = True
    shift: int = 2
    eps: float = _DEFAULTS["eps"]
    norm: str = _DEFAULTS["norm"]
    steps: int = _DEFAULTS["steps"]
    step_size: Optional[float] = _DEFAULTS["step_size"]
    warmup_epochs: int = _DEFAULTS["warmup_epochs"]
    limit: int = 0
    teacher: Optional[str] = _DEFAULTS["teacher"]
    igd_lambda: Optional[float] = _DEFAULTS["igd_lambda"]
    trades_beta: Optional[float] = _DEFAULTS["trades_beta"]
    pag_lambda: Optional[float] = _DEFAULTS["pag_lambda"]
    pag_target: Optional[str] = _DEFAULTS["pag_target"]
    agr_base: Optional[str] = _DEFAULTS["agr_base"]
    agr_start_epoch: Optional[int] = _DEFAULTS["agr_start_epoch"]
    agr_clip: Optional[float] = _DEFAULTS["agr_clip"]
    lalpha_lambda: Optional[float] = _DEFAULTS["lalpha_lambda"]
    lalpha_reference: Optional[str] = _DEFAULTS["lalpha_reference"]
    monitor: int = 200
    snapshots: int = SNAPSHOT_IMAGES
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        """A copy that holds only what the method uses, defaults filled in: the options of
        ``OBJECTIVES[method].options_for(...)`` checked against their choices, None or empty
        ones set to their default (computed ones too: the IGD teacher's and L_alpha
        reference's ``<dataset>/standard``, AGR's start epoch); every other objective's
        options set to their ``unused`` value (None; eps 0, norm None, steps 0 for the
        attack); then the objective's own ``resolve`` (L_alpha: ``augment=False``). What a
        model card records.

        Raises:
            ValueError: an unknown method, PAG target, AGR base or norm.
        """
        c = dataclasses.replace(self, extra=dict(self.extra))
        cls = objective_class(c.method)
        used = {o.name for o in cls.options_for(vars(c))}
        for name, (option, _) in all_options().items():
            setattr(c, name, option.resolve(c, getattr(c, name)) if name in used else option.unused)
        return cls.resolve(c)

    def objective(self, device="cpu", train_set: Optional[ImageDataset] = None, progress: Optional[Progress] = None):
        """The training objective of ``method``: ``OBJECTIVES[method].from_config`` of the
        :meth:`resolved` configuration (see :mod:`gradviz.training.objectives`).

        Args:
            device: where the objective's tensors and models go (IGD's teacher, PAG's
                targets, L_alpha's residuals).
            train_set: the images trained on (PAG's targets and L_alpha's residuals come
                from them; default: the dataset's training split, its first ``limit``
                images; for lalpha it must be that split or a prefix of it: its residuals
                are stored by position).
            progress: reports L_alpha's residual computation (the only slow set-up).

        Raises:
            ValueError: as :meth:`resolved`; a missing or foreign IGD teacher or L_alpha
                reference, no generator for L_alpha.
        """
        c = self.resolved()
        return objective_class(c.method).from_config(c, device=device, train_set=train_set, progress=progress)


class _Augmented(Dataset):
    def __init__(self, data: ImageDataset, shift: int):
        from torchvision.transforms import v2

        self.data = data
        self.transform = v2.RandomCrop(data.x.shape[-1], padding=shift) if shift > 0 else None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        x = self.data.x[i]
        return (self.transform(x) if self.transform else x), self.data.y[i], i


def monitor_attack(config: TrainConfig) -> Optional[dict]:
    """The cheap attack of the learning curves' robust accuracy (None: none measured).

    PGD-:data:`MONITOR_STEPS` (10 steps of 2.5 * eps / 10, random start, seed 0) at the
    training eps and norm for the methods that train on adversarial examples
    (:data:`ATTACK_METHODS`), at the dataset's evaluation eps and norm (:data:`EVAL_ATTACKS`)
    for pag, whose claim is robustness without adversarial training; none for standard or
    when ``config.monitor`` is 0. The full training eps is used in every epoch, also during
    an eps warm-up, so the epochs compare.
    """
    if not config.monitor or config.method == "standard":
        return None
    if config.method in ATTACK_METHODS:
        eps, norm = float(config.eps or 0.0), config.norm or "linf"
    else:
        eps, norm = float(EVAL_ATTACKS[config.dataset]["eps"]), EVAL_ATTACKS[config.dataset]["norm"]
    if eps <= 0:
        return None
    return dict(norm=norm, eps=eps, steps=MONITOR_STEPS, step_size=default_step_size(eps, MONITOR_STEPS),
                random_start=True, seed=0)


def monitor_settings(config: TrainConfig) -> Optional[dict]:
    """What the learning curves were measured on (stored in the card's ``training`` dict as
    ``monitor_settings``); None without a monitor."""
    if not config.monitor:
        return None
    return {
        "split": "test",
        "images": f"the first {config.monitor} test images",
        "n_images": int(config.monitor),
        "attack": monitor_attack(config),
        "use": "learning curves only (monitor_clean_accuracy, monitor_robust_accuracy in the log); never "
               "used for model selection or early stopping",
    }


def train(
    config: TrainConfig,
    *,
    device="auto",
    progress: Optional[Progress] = None,
    on_batch: Optional[Callable[[float, dict], None]] = None,
    on_epoch: Optional[Callable[[dict], None]] = None,
    snapshot_path: Optional[Union[str, Path]] = None,
    train_set: Optional[ImageDataset] = None,
    distributed: bool = False,
) -> tuple[nn.Module, list[dict]]:
    """Train a fresh model as ``config`` says (Adam, one-cycle schedule, seeded).

    Each batch: ``objective(model, x, y, epoch=, index=)`` then backward and an optimizer
    step, or the objective's own ``step`` (AGR). After each epoch, with ``config.monitor``,
    the learning curves' numbers on the first ``monitor`` test images (see
    :func:`monitor_attack`): for the curves only, never for model selection or early
    stopping, and they draw no random numbers from the training's generators (the same
    weights come out with and without the monitor).

    Args:
        config: the run (see :class:`TrainConfig`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: ``progress(fraction, message)`` after each batch.
        on_batch: ``on_batch(fraction, stats)`` after each batch (``stats["loss"]`` is the
            batch's loss).
        on_epoch: ``on_epoch(entry)`` after each epoch with its log entry.
        snapshot_path: where the input-gradient snapshots go (with ``config.snapshots`` > 0;
            :func:`gradviz.training.snapshots.snapshot_path` of the checkpoint), written
            atomically before the first epoch and after each one, so a cancelled run keeps
            them. None: none are taken.
        train_set: the images to train on (default: ``config.dataset``'s training split),
            e.g. a modified copy of it (:mod:`gradviz.studies.roar_kar`); images of that
            dataset's shape and classes. ``config.limit`` applies to it too.
        distributed: train as one rank of a torchrun launch with DistributedDataParallel
            (:mod:`gradviz.training.distributed`: joins the process group; each rank takes
            ``batch_size / world size`` images of every step; only rank 0 calls the
            callbacks, measures the monitor and takes the snapshots; the log's numbers are
            averaged over all ranks). With one rank, or outside torchrun, a plain run.
        Any callback may raise :class:`TrainingCancelled` to stop the run (not under
        ``distributed``: the other ranks would wait for rank 0 until the timeout).

    Returns:
        ``(model, log)``: the model in eval mode on ``device``; the log, one dict per epoch:
        epoch, the objective's numbers averaged over the epoch's images (``loss``, and e.g.
        ``accuracy``, ``adv_accuracy``, ``agr_cos``, ``agr_gop_rate``), ``seconds`` (the
        epoch's training time) and, with a monitor, ``monitor_clean_accuracy``,
        ``monitor_robust_accuracy`` (fractions in [0, 1]) and ``monitor_seconds``; with
        snapshots, ``snapshot_seconds`` (the time the epoch's snapshot took).

    Raises:
        ValueError: unknown method, dataset, architecture, PAG target or AGR base; epochs < 1;
            under ``distributed``, an objective that cannot be split (AGR) or a batch size
            that the world size does not divide.
        TrainingCancelled: raised by a callback.
        gradviz.training.distributed.DistributedTrainingError: under ``distributed``, another
            rank failed, died or did not answer within the timeout.
    """
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    config = config.resolved()
    if distributed:
        from gradviz.training import distributed as ddp

        ctx = ddp.join(config, device)
        if ctx is not None:
            return _train_ddp(config, ctx, device=device, progress=progress, on_batch=on_batch, on_epoch=on_epoch,
                              snapshot_path=snapshot_path, train_set=train_set)
    dev = resolve_device(device)
    info = dataset_info(config.dataset)
    if train_set is None:
        train_set = load_dataset(config.dataset, "train")
    if config.limit:
        train_set = train_set.subset(slice(0, config.limit))
    objective = config.objective(dev, train_set=train_set, progress=progress)
    watch = _monitor_data(config, dev)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        _Augmented(train_set, config.shift if config.augment else 0),
        batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=False,
    )
    model = build_model(config.arch, channels=info.channels, num_classes=len(info.classes), size=info.size).to(dev)
    # An objective that shapes the parameter gradient itself (AGR) brings its own step.
    step = getattr(objective, "step", None) or functools.partial(_backward_step, objective)
    recorder = None
    if config.snapshots and snapshot_path is not None:
        recorder = SnapshotRecorder.for_dataset(config.dataset, k=config.snapshots, path=snapshot_path)
        recorder.record(model, 0)
    log = _optimise(config, model, model, loader, step, dev, watch=watch, recorder=recorder, progress=progress,
                    on_batch=on_batch, on_epoch=on_epoch)
    model.eval()
    return model, log


def _optimise(config: TrainConfig, model: nn.Module, net: nn.Module, loader: DataLoader, step, dev, *, watch,
              recorder, progress, on_batch, on_epoch, ctx=None, sampler=None) -> list[dict]:
    """The epochs of :func:`train`: Adam with the one-cycle schedule over ``model``'s
    parameters, ``step(net, ...)`` per batch (``net``: ``model`` or its DDP wrapper); after
    each epoch the monitor and snapshot on ``model``. With ``ctx`` (torchrun): the sampler's
    epoch set, a failed collective turned into a clear error, the epoch's sums added over
    the ranks, and only rank 0 reporting, monitoring and logging. Returns the log (empty on
    the other ranks)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=0.15)
    main = ctx is None or ctx.is_main
    where = "" if ctx is None else f" [rank 0 of {ctx.world_size}]"
    log: list[dict] = []
    done = 0
    for epoch in range(config.epochs):
        net.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        start, sums, count = time.perf_counter(), {}, 0
        with _guard(ctx, f"in epoch {epoch + 1}/{config.epochs}"):
            for xb, yb, ib in loader:
                xb, yb, ib = xb.to(dev), yb.to(dev), ib.to(dev)
                stats = step(net, optimizer, xb, yb, epoch=epoch, index=ib)
                scheduler.step()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v * len(yb)
                count += len(yb)
                done += 1
                if main:
                    report(progress, done / total, f"epoch {epoch + 1}/{config.epochs} loss {stats['loss']:.3f}{where}")
                    if on_batch is not None:
                        on_batch(done / total, stats)
            seconds = round(time.perf_counter() - start, 2)
            if ctx is not None:
                from gradviz.training.distributed import reduce_sums

                sums, count = reduce_sums(ctx, sums, count)
        if not main:
            continue
        entry = {"epoch": epoch + 1, **{k: v / count for k, v in sums.items()}, "seconds": seconds}
        if watch is not None:  # under torchrun rank 0 alone: the others wait at the next all-reduce
            entry.update(_monitor(model, *watch))
        if recorder is not None:
            entry["snapshot_seconds"] = recorder.record(model, epoch + 1)
        log.append(entry)
        if on_epoch is not None:
            on_epoch(dict(entry))
    return log


def _guard(ctx, where: str):
    if ctx is None:
        return contextlib.nullcontext()
    from gradviz.training.distributed import guard

    return guard(ctx, where)


def _train_ddp(config: TrainConfig, ctx, *, device, progress, on_batch, on_epoch, snapshot_path,
               train_set) -> tuple[nn.Module, list[dict]]:
    """:func:`train` as one rank of ``ctx`` with DistributedDataParallel (``config``
    resolved and checked; see :mod:`gradviz.training.distributed`)."""
    from torch.utils.data.distributed import DistributedSampler

    from gradviz.training import distributed as ddp

    main = ctx.is_main
    options = dict(hint=ddp.RESTART, error_class=ddp.DistributedTrainingError)
    per_rank = ddp.per_rank_batch(int(config.batch_size), ctx.world_size)
    dev = ctx.device_for(device)
    info = dataset_info(config.dataset)
    objective = watch = None
    # Rank 0 sets up first (it may write caches, e.g. L_alpha's residual store), then the others.
    for turn in ("rank 0", "the other ranks"):
        with ctx.step(f"setting up the training ({turn})", **options):
            if main == (turn == "rank 0"):
                if train_set is None:
                    train_set = load_dataset(config.dataset, "train")
                if config.limit:
                    train_set = train_set.subset(slice(0, config.limit))
                objective = config.objective(dev, train_set=train_set, progress=progress if main else None)
                watch = _monitor_data(config, dev) if main else None
    torch.manual_seed(config.seed)
    data = _Augmented(train_set, config.shift if config.augment else 0)
    sampler = DistributedSampler(data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed,
                                 drop_last=False)
    loader = DataLoader(data, batch_size=per_rank, sampler=sampler, drop_last=False)
    model = build_model(config.arch, channels=info.channels, num_classes=len(info.classes), size=info.size).to(dev)
    with ddp.guard(ctx, "while wrapping the model in DistributedDataParallel"):
        net = ddp.wrap(model, ctx)  # broadcasts rank 0's initial weights
    torch.manual_seed(ddp.rank_seed(config.seed, ctx.rank))
    recorder = None
    if main and config.snapshots and snapshot_path is not None:
        recorder = SnapshotRecorder.for_dataset(config.dataset, k=config.snapshots, path=snapshot_path)
        recorder.record(model, 0)
    step = functools.partial(_backward_step, objective)  # AGR's own step is refused (ddp.check)
    log = _optimise(config, model, net, loader, step, dev, watch=watch, recorder=recorder, progress=progress,
                    on_batch=on_batch, on_epoch=on_epoch, ctx=ctx, sampler=sampler)
    model.eval()
    return model, log


def _backward_step(objective, model, optimizer, x, y, *, epoch, index) -> dict:
    loss, stats = objective(model, x, y, epoch=epoch, index=index)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return stats


def _monitor_data(config: TrainConfig, dev) -> Optional[tuple]:
    if not config.monitor:
        return None
    test = load_dataset(config.dataset, "test").subset(slice(0, int(config.monitor)))
    return test.x.to(dev), test.y.to(dev), monitor_attack(config)


def _monitor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Optional[dict]) -> dict:
    start = time.perf_counter()
    with eval_mode(model):
        out = {"monitor_clean_accuracy": clean_accuracy(model, x, y)}
        if attack is not None:
            out["monitor_robust_accuracy"] = robust_accuracy(model, x, y, **attack)
    out["monitor_seconds"] = round(time.perf_counter() - start, 2)
    return out


def model_card(config: TrainConfig, *, name: str, log: list, metrics: dict, command: str,
               snapshot_path: Optional[Union[str, Path]] = None, distributed: Optional[dict] = None):
    """The :class:`gradviz.zoo.ModelCard` of a run: what made it (``config``, best passed
    through :meth:`TrainConfig.resolved`; the monitor's settings in
    ``training["monitor_settings"]``), what it measured (``metrics``, from :func:`evaluate`),
    its per-epoch ``log`` and, when ``snapshot_path`` holds the run's snapshots,
    ``training["snapshots"]`` (:meth:`gradviz.training.snapshots.Snapshots.summary`); for a
    torchrun run, ``training["distributed"]`` (world size, per-rank and effective batch:
    :func:`gradviz.training.distributed.card_info`; absent: one process)."""
    from gradviz import zoo

    attacked = config.method in ATTACK_METHODS
    training = {**dataclasses.asdict(config), "monitor_settings": monitor_settings(config)}
    if snapshot_path is not None and Path(snapshot_path).is_file():
        training["snapshots"] = load_snapshots(snapshot_path).summary(snapshot_path)
    if distributed:
        training["distributed"] = dict(distributed)
    return zoo.ModelCard(
        name=name, dataset=config.dataset, arch=config.arch, method=config.method,
        eps=float(config.eps) if attacked else 0.0, norm=config.norm if attacked else None,
        metrics=metrics, training=training, log=log, command=command,
    )


#: TrainConfig fields that are not command-line options of ``python -m gradviz train``.
_NOT_OPTIONS = ("augment", "extra")


def cli_command(config: TrainConfig, *, name: Optional[str] = None, out: Optional[str] = None,
                evaluate: bool = True, eval_limit: int = 0) -> str:
    """The ``python -m gradviz train ...`` command that makes the same model as ``config``
    (the options that differ from the command line's defaults, after
    :meth:`TrainConfig.resolved`): what a card made outside the command line (the app)
    records as its ``command``."""
    c = config.resolved()
    base = TrainConfig(method=c.method).resolved()
    argv = ["train", "--dataset", c.dataset, "--method", c.method]
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("dataset", "method") + _NOT_OPTIONS:
            continue
        value = getattr(c, f.name)
        if value is None or value == getattr(base, f.name):
            continue
        argv += ["--" + f.name.replace("_", "-"), str(value)]
    if not c.augment:
        argv.append("--no-augment")
    if name:
        argv += ["--name", name]
    if out:
        argv += ["--out", str(out)]
    if not evaluate:
        argv.append("--no-eval")
    elif eval_limit:
        argv += ["--eval-limit", str(eval_limit)]
    return "python -m gradviz " + " ".join(shlex.quote(a) for a in argv)


def evaluate(model: nn.Module, dataset: str, *, attack: Optional[dict] = None, split: str = "test",
             seed: int = 0, limit: int = 0, progress: Optional[Progress] = None) -> dict:
    """Clean and robust accuracy of ``model`` on a split (its first ``limit`` images when
    ``limit`` > 0), under ``attack`` (default: the dataset's :data:`EVAL_ATTACKS` entry).

    Returns:
        The dict stored as a card's ``metrics``: clean_accuracy, robust_accuracy (fractions
        in [0, 1]), attack (its settings), split, n_images.
    """
    attack = dict(EVAL_ATTACKS[dataset] if attack is None else attack)
    data = load_dataset(dataset, split)
    if limit:
        data = data.subset(slice(0, limit))
    dev = model_device(model)
    x, y = data.x.to(dev), data.y.to(dev)
    clean = clean_accuracy(model, x, y)
    robust = robust_accuracy(model, x, y, seed=seed, progress=progress, **attack)
    return {
        "clean_accuracy": round(clean, 4),
        "robust_accuracy": round(robust, 4),
        "attack": {"name": "PGD", **attack, "restarts": 1, "seed": seed},
        "split": split,
        "n_images": len(data),
    }


def default_eps_grid(dataset: str) -> list[float]:
    """The radii of :func:`robustness_curve`: the dataset's evaluation eps (:data:`EVAL_ATTACKS`)
    times 0, 1/12, 1/6, 1/4, 1/3, 1/2, 2/3, 5/6, 1, 7/6, 4/3, 5/3 (for MNIST l_inf eps 0.3:
    0, 0.025, 0.05, 0.075, 0.1, 0.15, ..., 0.3, 0.35, 0.4, 0.5)."""
    e = float(EVAL_ATTACKS[dataset]["eps"])
    return [round(e * f, 6) for f in (0, 1 / 12, 1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1, 7 / 6, 4 / 3, 5 / 3)]


def robustness_curve(model: nn.Module, dataset: str, *, eps_grid=None, limit: int = 0, steps: int = 40,
                     seed: int = 0, batch_size: int = 500, progress: Optional[Progress] = None) -> dict:
    """Accuracy vs eps and its median eps50 (docs/methods.md section 1) on the test split (its
    first ``limit`` images when > 0), under the dataset's attack norm.

    :func:`gradviz.attacks.accuracy_vs_eps` with nested attacks (an image counts as robust at
    eps only if it survived every smaller eps of the grid) and step sizes 2.5 * eps / steps
    (so at eps 0.3 with 40 steps the step is 0.01875, not the card's 0.01: a curve's point
    may differ a little from the card's robust accuracy), then
    :func:`gradviz.attacks.eps50`.

    Returns:
        dict: ``eps_grid`` (list), ``accuracy`` (list of fractions), ``eps50`` (float, NaN
        when the curve does not cross 50 % inside the grid), ``attack`` (its settings),
        ``split``, ``n_images``.
    """
    grid = list(default_eps_grid(dataset) if eps_grid is None else eps_grid)
    norm = EVAL_ATTACKS[dataset]["norm"]
    data = load_dataset(dataset, "test")
    if limit:
        data = data.subset(slice(0, limit))
    dev = model_device(model)
    acc = accuracy_vs_eps(model, data.x.to(dev), data.y.to(dev), grid, norm=norm, steps=steps, seed=seed,
                          batch_size=batch_size, nested=True, progress=progress)
    return {
        "eps_grid": [float(e) for e in grid],
        "accuracy": [round(float(a), 4) for a in acc],
        "eps50": eps50(grid, acc),
        "attack": {"name": "PGD", "norm": norm, "steps": steps, "step_size": "2.5 * eps / steps",
                   "random_start": True, "nested": True, "seed": seed},
        "split": "test",
        "n_images": len(data),
    }
