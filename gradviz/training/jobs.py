"""Training in the background, for the app: a thread per job with live progress, the
per-batch loss and per-epoch log as they come, cooperative cancellation, and the result
written with its card into the user's model folder (:func:`gradviz.zoo.user_model_dir`,
never ``assets/``).

No streamlit here: the Models page polls :meth:`TrainingJob.snapshot`.

>>> job = start_job(TrainConfig(method="pgd", epochs=1, limit=64, steps=2), name="tiny")
>>> job.wait(); job.snapshot().status
'done'

One job runs at a time in a process (:func:`start_job` refuses a second): the CPU is shared.
The loop seeds torch's global random generator, as the command line does; a job running
next to other computations in the same process (an app serving several sessions) can
therefore differ from the command line's model in its augmentation draws.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gradviz import zoo
from gradviz.training.loop import (
    TrainConfig,
    TrainingCancelled,
    cli_command,
    evaluate,
    model_card,
    train,
)
from gradviz.training.snapshots import snapshot_path

__all__ = ["JobSnapshot", "TrainingJob", "active_job", "get_job", "start_job"]

_log = logging.getLogger(__name__)

#: Most per-batch loss points a job keeps (older ones are thinned out beyond it).
MAX_LOSS_POINTS = 4000
#: Share of the progress bar given to training when an evaluation follows.
TRAIN_SHARE = 0.9


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state.

    Attributes:
        id, name: the job's id and the model's zoo name (``<dataset>/<name>``).
        status: ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``.
        fraction, message: progress in [0, 1] and what is happening.
        losses: (fraction of the training, batch loss) pairs, in order.
        epochs: the per-epoch log entries so far.
        error: the failure's message (status ``"failed"``).
        card: the saved model card (status ``"done"``).
        started, finished: ``time.time()`` stamps (finished None while running).
    """

    id: str
    name: str
    status: str
    fraction: float
    message: str
    losses: tuple = ()
    epochs: tuple = ()
    error: Optional[str] = None
    card: Optional[zoo.ModelCard] = None
    started: float = 0.0
    finished: Optional[float] = None

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class TrainingJob:
    """One training run in a background thread (made by :func:`start_job`).

    Attributes:
        config: the run (resolved: only the method's own settings).
        name: the model name after ``<dataset>/``.
        device: where to train.
        evaluate, eval_limit: measure clean and robust accuracy for the card afterwards
            (:func:`gradviz.training.evaluate`, the dataset's standard attack) on the first
            ``eval_limit`` test images (0: all).
        overwrite: replace an existing user model of that name.
    """

    config: TrainConfig
    name: str
    device: str = "auto"
    evaluate: bool = True
    eval_limit: int = 0
    overwrite: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self):
        self.config = self.config.resolved()
        self.full_name = zoo.check_model_name(self.config.dataset, self.name, self.overwrite)
        self.out_dir = zoo.user_model_dir()
        if _inside(self.out_dir, zoo.ASSETS_DIR):
            raise ValueError(f"the user model folder {self.out_dir} lies inside the shipped models' folder "
                             f"{zoo.ASSETS_DIR}: set GRADVIZ_HOME elsewhere")
        self.path = self.out_dir / self.config.dataset / f"{self.name}.pt"
        #: The run's input-gradient snapshots, rewritten after each epoch (read it for a live view).
        self.snapshot_path = snapshot_path(self.path)
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._state = dict(status="running", fraction=0.0, message="starting…", error=None, card=None,
                           started=time.time(), finished=None)
        self._losses: list[tuple[float, float]] = []
        self._epochs: list[dict] = []

    # ------------------------------------------------------------------ control
    def start(self) -> "TrainingJob":
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"gradviz-train-{self.id}", daemon=True)
            self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the run to stop; it stops at its next batch (or evaluation chunk) and writes
        nothing."""
        self._cancel.set()
        with self._lock:
            if self._state["status"] == "running":
                self._state["message"] = "cancelling…"

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is not None and not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(id=self.id, name=self.full_name, losses=tuple(self._losses),
                               epochs=tuple(dict(e) for e in self._epochs), **self._state)

    # ------------------------------------------------------------------ the run
    def _set(self, **changes) -> None:
        with self._lock:
            self._state.update(changes)

    def _check(self) -> None:
        if self._cancel.is_set():
            raise TrainingCancelled(f"training of {self.full_name} cancelled")

    def _train_progress(self, fraction: float, message: str) -> None:
        self._check()
        self._set(fraction=fraction * (TRAIN_SHARE if self.evaluate else 1.0), message=message)

    def _eval_progress(self, fraction: float, message: str) -> None:
        self._check()
        self._set(fraction=TRAIN_SHARE + (1 - TRAIN_SHARE) * fraction, message=f"evaluating: {message}")

    def _on_batch(self, fraction: float, stats: dict) -> None:
        self._check()
        with self._lock:
            self._losses.append((float(fraction), float(stats["loss"])))
            if len(self._losses) > MAX_LOSS_POINTS:
                self._losses = self._losses[::2]

    def _on_epoch(self, entry: dict) -> None:
        with self._lock:
            self._epochs.append(entry)
        self._check()

    def _run(self) -> None:
        c = self.config
        try:
            self._set(message="loading the data…")
            model, log = train(c, device=self.device, progress=self._train_progress,
                               on_batch=self._on_batch, on_epoch=self._on_epoch,
                               snapshot_path=self.snapshot_path)
            metrics = {}
            if self.evaluate:
                self._set(fraction=TRAIN_SHARE, message="evaluating…")
                metrics = evaluate(model, c.dataset, limit=self.eval_limit, progress=self._eval_progress)
            self._check()
            command = cli_command(c, name=self.name, evaluate=self.evaluate, eval_limit=self.eval_limit)
            card = model_card(c, name=self.full_name, log=log, metrics=metrics, command=command,
                              snapshot_path=self.snapshot_path)
            card.training["started_from"] = "the gradviz app (Models page)"
            zoo.check_model_name(c.dataset, self.name, self.overwrite)  # taken meanwhile?
            zoo.save_model(model.cpu(), card, self.path)
            self._set(status="done", fraction=1.0, message=f"done: saved {self.full_name}", card=card,
                      finished=time.time())
        except TrainingCancelled:
            kept = " but the snapshots of the epochs done" if self.snapshot_path.is_file() else ""
            self._set(status="cancelled", message=f"cancelled: nothing was saved{kept}", finished=time.time())
        except Exception as err:  # reported to the user, not raised in a thread nobody joins
            _log.exception("training job %s (%s) failed", self.id, self.full_name)
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            self._set(status="failed", message="failed", error=f"{type(err).__name__}: {first}",
                      finished=time.time())


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


_JOBS: dict[str, TrainingJob] = {}
_REGISTRY_LOCK = threading.Lock()


def start_job(config: TrainConfig, *, name: str, device: str = "auto", evaluate: bool = True,
              eval_limit: int = 0, overwrite: bool = False) -> TrainingJob:
    """Start training ``config`` in the background; the model will be saved as
    ``<dataset>/<name>`` in the user's model folder.

    Raises:
        RuntimeError: another job is running in this process.
        ValueError: a bad configuration (unknown method, ...) or name (bad, shipped, taken
            without ``overwrite``), or a user folder inside ``assets/``.
    """
    with _REGISTRY_LOCK:
        busy = active_job()
        if busy is not None:
            snap = busy.snapshot()
            raise RuntimeError(f"another training is running ({snap.name}, {100 * snap.fraction:.0f} %): "
                               "wait for it to finish or cancel it")
        job = TrainingJob(config, name=name, device=device, evaluate=evaluate, eval_limit=eval_limit,
                          overwrite=overwrite)
        _JOBS[job.id] = job
        return job.start()


def get_job(job_id: Optional[str]) -> Optional[TrainingJob]:
    """The job with this id (None if unknown)."""
    return _JOBS.get(job_id) if job_id else None


def active_job() -> Optional[TrainingJob]:
    """The running job, if any."""
    return next((j for j in _JOBS.values() if j.running), None)
