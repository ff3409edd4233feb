"""Robust accuracy under AutoAttack (Croce & Hein, ICML 2020), the field's yardstick.

AutoAttack runs four parameter-free attacks in sequence, each only on the images that
every earlier one left correctly classified: APGD on the cross-entropy (``apgd-ce``),
targeted APGD on the DLR loss over the 9 most likely wrong classes (``apgd-t``), targeted
FAB (``fab-t``) and the query-based Square attack (``square``, 5,000 queries). An image is
robust when it survives all four. We run the ``pyautoattack`` package's attacks (PyPI's
AutoAttack; the authors' code) one at a time with its ``standard`` configuration, so that
every image records *which* attack broke it; the sequence and what each attack sees are the
package's own ``run_standard_evaluation``. docs/methods.md, "AutoAttack".

Beside it, on the same images, the per-image PGD-40 of the model cards (step 0.01, one
random start; :data:`gradviz.training.EVAL_ATTACKS`), so the gap between the two is measured
image by image: an image PGD-40 leaves correct and AutoAttack breaks is where the card's
number overstated robustness.

>>> from gradviz.studies import autoattack
>>> res = autoattack.run(["mnist-5k/pgd-linf"], n=100)
>>> res.table()[["model", "pgd40", "autoattack", "gap"]]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from gradviz.attacks import robust_at_eps
from gradviz.studies.base import ModelLike, Study, StudyResult, card_writer, run_study
from gradviz.studies.store import ChunkStore
from gradviz.utils import Progress

#: The attacks of AutoAttack's standard version, in the order they run.
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")

#: ``broken_by`` codes besides an index into the attacks: misclassified before any attack,
#: and robust to every attack.
CLEAN_MISTAKE, SURVIVED = -2, -1

_NORMS = {"linf": "Linf", "l2": "L2"}


@dataclass(frozen=True)
class Settings:
    """The attack.

    Attributes:
        norm: ``"linf"`` or ``"l2"``.
        eps: the radius in [0, 1] pixel units (default 0.3, MNIST's l_inf standard).
        attacks: the attacks to run, in order, a subsequence of :data:`STANDARD_ATTACKS`
            (default: all four, AutoAttack's standard version; each keeps its standard
            settings). A subset is a weaker attack: say so wherever its number is shown.
        pgd_steps, pgd_step_size: the PGD attack measured beside it on the same images
            (default: the cards' PGD-40, step 0.01).
        seed: the attacks' seed; the chunk of images starting at split position s uses
            ``seed + s`` (results do not depend on how a run was split or resumed).
    """

    norm: str = "linf"
    eps: float = 0.3
    attacks: tuple[str, ...] = STANDARD_ATTACKS
    pgd_steps: int = 40
    pgd_step_size: float = 0.01
    seed: int = 0

    def check(self) -> None:
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)}, got {self.norm!r}")
        if not (np.isfinite(self.eps) and self.eps > 0) or (self.norm == "linf" and self.eps > 1):
            raise ValueError(f"eps must be > 0 (and at most 1 for linf), got {self.eps}")
        attacks = tuple(self.attacks)
        unknown = [a for a in attacks if a not in STANDARD_ATTACKS]
        if unknown or not attacks or len(set(attacks)) != len(attacks):
            raise ValueError(f"attacks must be distinct names from {list(STANDARD_ATTACKS)}, got {list(attacks)}")
        if list(attacks) != [a for a in STANDARD_ATTACKS if a in attacks]:
            raise ValueError(f"attacks run in AutoAttack's order {list(STANDARD_ATTACKS)}, got {list(attacks)}")

    @property
    def version(self) -> str:
        """``"standard"`` when all four attacks run, else ``"subset"``."""
        return "standard" if tuple(self.attacks) == STANDARD_ATTACKS else "subset"


def _autoattack(model: torch.nn.Module, settings: Settings, seed: int, device: torch.device):
    """pyautoattack's AutoAttack in its standard configuration (quiet)."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as err:  # pragma: no cover - it is in requirements.txt
        raise RuntimeError("AutoAttack needs the pyautoattack package: pip install pyautoattack") from err
    aa = AutoAttack(model, norm=_NORMS[settings.norm], eps=float(settings.eps), version="standard", seed=seed,
                    device=device)
    aa.verbose = False
    return aa


def compute(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, settings: Settings,
            context: Optional[dict] = None) -> dict:
    """Per image: ``broken_by`` (B,) int8 (the index in ``settings.attacks`` of the attack
    that broke it, :data:`SURVIVED` or :data:`CLEAN_MISTAKE`), ``robust`` (B,) bool
    (survived AutoAttack), ``robust_pgd`` (B,) bool (correct clean and after PGD),
    ``linf`` / ``l2`` (B,) the size of the adversarial perturbation found (0 where none)."""
    settings.check()
    was_training = model.training
    model.eval()
    seed = int(settings.seed) + int(start)
    try:
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        broken_by = torch.full((len(y),), SURVIVED, dtype=torch.int8)
        broken_by[~correct.cpu()] = CLEAN_MISTAKE
        delta = torch.zeros_like(x)
        aa = _autoattack(model, settings, seed, x.device)
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        remaining = torch.nonzero(correct).flatten()
        for i, attack in enumerate(settings.attacks):
            if not len(remaining):
                break
            aa.attacks_to_run = [attack]
            x_adv, _ = aa.run_standard_evaluation(x[remaining], y[remaining], batch_size=len(remaining))
            with torch.no_grad():
                fooled = model(x_adv).argmax(1) != y[remaining]
            hit = remaining[fooled]
            broken_by[hit.cpu()] = i
            delta[hit] = x_adv[fooled] - x[hit]
            remaining = remaining[~fooled]
        robust_pgd = robust_at_eps(model, x, y, [float(settings.eps)], norm=settings.norm,
                                   steps=int(settings.pgd_steps), step_size=float(settings.pgd_step_size),
                                   seed=seed, nested=True, batch_size=len(x))[:, 0]
    finally:
        model.train(was_training)
    flat = delta.flatten(1).cpu()
    linf, l2 = flat.abs().amax(1), flat.norm(dim=1)
    bound = linf if settings.norm == "linf" else l2
    if bool((bound > settings.eps * (1 + 1e-4) + 1e-6).any()):  # the package's own promise, checked
        raise RuntimeError(f"AutoAttack returned a perturbation of {settings.norm} size {float(bound.max()):.4g} "
                           f"> eps {settings.eps}")
    return {"broken_by": broken_by.numpy(), "robust": (broken_by == SURVIVED).numpy(),
            "robust_pgd": robust_pgd.numpy(), "linf": linf.numpy().astype(np.float32),
            "l2": l2.numpy().astype(np.float32)}


STUDY = Study(name="autoattack", version=1, settings=Settings, compute=compute, chunk=100,
              summary="robust accuracy under AutoAttack (standard version) beside PGD-40, per image")


@dataclass
class AutoAttackResult(StudyResult):
    """Per image: ``per_image[model]`` with ``broken_by``, ``robust``, ``robust_pgd``, ``linf``, ``l2``."""

    @property
    def attacks(self) -> list[str]:
        return list(self.settings["attacks"])

    def after_each(self, name: str) -> dict[str, float]:
        """{``clean`` and each attack -> accuracy after it and every earlier one} for model ``name``."""
        broken = self.per_image[name]["broken_by"]
        out = {"clean": float(np.mean(broken != CLEAN_MISTAKE))}
        for i, attack in enumerate(self.attacks):
            out[attack] = float(np.mean((broken == SURVIVED) | (broken > i)))
        return out

    def table(self) -> pd.DataFrame:
        """One row per model: clean accuracy, robust accuracy under PGD and AutoAttack, the
        gap (PGD minus AutoAttack, fractions), the images PGD left correct and AutoAttack
        broke (``pgd_missed``), those AutoAttack left and PGD broke (``aa_missed``), and the
        accuracy after each attack (``after_<attack>``)."""
        rows = []
        for name in self.model_names:
            p = self.per_image[name]
            robust, robust_pgd = p["robust"].astype(bool), p["robust_pgd"].astype(bool)
            steps = self.after_each(name)
            rows.append({"model": name, "n_images": self.n_images, "clean_accuracy": steps["clean"],
                         "pgd40": float(robust_pgd.mean()), "autoattack": float(robust.mean()),
                         "gap": float(robust_pgd.mean() - robust.mean()),
                         "pgd_missed": int((robust_pgd & ~robust).sum()), "aa_missed": int((robust & ~robust_pgd).sum()),
                         **{f"after_{a}": steps[a] for a in self.attacks}})
        return pd.DataFrame(rows)

    def card_metrics(self, name: str) -> dict:
        """The card's ``metrics["autoattack"]``: robust accuracy, the attack, the images, the
        accuracy after each attack and the PGD robust accuracy on the same images."""
        row = self.table().set_index("model").loc[name]
        s = self.settings
        return {"robust_accuracy": round(float(row["autoattack"]), 4),
                "attack": {"name": "AutoAttack", "version": Settings(attacks=tuple(s["attacks"])).version,
                           "attacks": list(s["attacks"]), "norm": s["norm"], "eps": s["eps"], "seed": s["seed"],
                           "package": _package_version()},
                "split": s["split"], "n_images": int(s["n_images"]),
                "after_each": {k: round(v, 4) for k, v in self.after_each(name).items()},
                "pgd_same_images": {"robust_accuracy": round(float(row["pgd40"]), 4),
                                    "steps": s["pgd_steps"], "step_size": s["pgd_step_size"],
                                    "images_pgd_left_and_autoattack_broke": int(row["pgd_missed"]),
                                    "images_autoattack_left_and_pgd_broke": int(row["aa_missed"])}}


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return f"pyautoattack {version('pyautoattack')}"
    except Exception:  # noqa: BLE001 - metadata missing: say so rather than fail
        return "pyautoattack (version unknown)"


write_card_metrics = card_writer("autoattack")


def run(models: Sequence[ModelLike], *, dataset: str = "mnist-5k", split: str = "test", n: Optional[int] = None,
        norm: str = "linf", eps: float = 0.3, attacks: Sequence[str] = STANDARD_ATTACKS, pgd_steps: int = 40,
        pgd_step_size: float = 0.01, seed: int = 0, device="auto", progress: Optional[Progress] = None,
        store: Optional[ChunkStore] = None, recompute: bool = False, chunk: Optional[int] = None,
        compute_missing: bool = True) -> AutoAttackResult:
    """AutoAttack and PGD robust accuracy of each model on the first ``n`` images of a split.

    Args:
        models: zoo names, checkpoint paths or modules ((N, C, H, W) in [0, 1] -> logits).
        dataset, split, n: the images (n None: the whole split).
        norm, eps, attacks, pgd_steps, pgd_step_size, seed: see :class:`Settings`.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: ``progress(fraction, message)``.
        store, recompute, chunk, compute_missing: see :func:`gradviz.studies.base.run_study`
            (100 images per stored chunk by default: a killed run loses at most one chunk).

    Returns:
        :class:`AutoAttackResult`.

    Raises:
        ValueError: an unknown norm or attack, eps out of range, n out of range.
        RuntimeError: pyautoattack missing, or a perturbation outside the eps-ball.
    """
    settings = Settings(norm=norm, eps=float(eps), attacks=tuple(attacks), pgd_steps=int(pgd_steps),
                        pgd_step_size=float(pgd_step_size), seed=int(seed))
    settings.check()
    return run_study(STUDY, models, settings, dataset=dataset, split=split, n=n, device=device, progress=progress,
                     store=store, recompute=recompute, chunk=chunk, compute_missing=compute_missing,
                     result=AutoAttackResult)
