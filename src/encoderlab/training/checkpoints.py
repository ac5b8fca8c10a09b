"""Checkpoints a run can be resumed from: ``checkpoints/last.ckpt``, written atomically.

``last.ckpt`` holds the whole training state (weights, optimizer, LR schedule, precision scaler, loop progress,
callbacks: early stopping, best checkpoint, the run timer; the data module: which train batches are done; and the
RNG states). It is written at every epoch end and, when asked, every N optimizer steps and/or M minutes. Every
checkpoint goes to a temporary name first and is renamed over the old one, so a run killed while writing keeps
its previous checkpoint intact.

On SLURM, the requeue signal (SIGUSR1, as ``sbatch --signal=USR1@90`` sends it before a job's time limit) writes
``last.ckpt`` at the end of the current optimizer step and requeues the job (``scontrol requeue``); SLURM then stops
this attempt and starts the job again, which continues from ``last.ckpt`` (``resume=auto``). Lightning's own SLURM
auto-requeue is off (:func:`cluster_plugins`): it saves ``hpc_ckpt_N.ckpt`` mid-step, into the run dir, and a later
fit picks that file up by itself, past ``resume=never`` and the run's own bookkeeping.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

LAST = "last.ckpt"
log = logging.getLogger("encoderlab")


def on_slurm() -> bool:
    """A SLURM job (not an interactive ``srun bash``), as Lightning decides it."""
    return SLURMEnvironment.detect()


def cluster_plugins() -> list:
    """On SLURM: Lightning's SLURM environment without its auto-requeue (LastCheckpoint handles the signal)."""
    return [SLURMEnvironment(auto_requeue=False)] if on_slurm() else []


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.NAME.tmp`` in the same folder, flushed to disk, then ``os.replace`` onto ``NAME``.

    A fault for testing resume: with ENCODERLAB_KILL_AFTER_CHECKPOINT=N the process SIGKILLs itself as soon as the
    ``last.ckpt`` of optimizer step N is on disk (ENCODERLAB_KILL_RUN=TEXT: only in run dirs whose path contains
    TEXT), so a kill lands at an exact point: whatever the run does after that save is lost.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        kill_after = os.environ.get("ENCODERLAB_KILL_AFTER_CHECKPOINT")
        if kill_after and path.name == LAST and checkpoint.get("global_step") == int(kill_after):
            if os.environ.get("ENCODERLAB_KILL_RUN", "") in str(path):
                os.kill(os.getpid(), signal.SIGKILL)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` at every epoch end (after validation, early stopping and the best checkpoint have had their
    say), and every ``every_n_steps`` optimizer steps and/or ``every_minutes`` minutes of training.

    Lightning's ModelCheckpoint does the step and time triggers (it accepts both at once in its batch-end logic,
    only its constructor refuses the pair); the epoch-end save is unconditional here, because Lightning's own
    last-checkpoint rule only saves when a top-k checkpoint was saved at that step.

    A checkpoint is only taken where a resumed run continues exactly: never inside a gradient-accumulation window (its
    partial gradients are in no checkpoint), and on a step that validates only after that validation (Lightning would
    count a validation saved before as done, and skip it on resume); on an epoch's last step, the epoch-end save.
    With validation by time (``val_check_interval`` as ``DD:HH:MM:SS``), Lightning reads the clock again after this
    callback, so whether a step validates is not known here: a step's save waits for the end of the next validation
    (or the epoch end), and the requeue signal saves at once only on a step where no validation can follow any more.
    """

    def __init__(
        self,
        dirpath: Path,
        every_n_steps: int | None = None,
        every_minutes: float | None = None,
        requeue_signal: signal.Signals | None = None,
    ):
        super().__init__(
            dirpath=str(dirpath),
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_steps or 0,
            enable_version_counter=False,
        )
        self._train_time_interval = timedelta(minutes=every_minutes) if every_minutes else None
        self._every_n_epochs = 0
        self.requeue_signal = requeue_signal
        self._requeue_asked = False
        self._previous_handler = None
        self._validation_follows = False  # set during a batch end after which the epoch loop validates
        self._deferred = False  # a save asked for at that batch end, done once the validation has ended
        self._requeue_after_save = False

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"  # its state is its own, whatever its triggers (they may change between attempts)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The save that the step's batch end deferred (the epoch-end save below comes after validation anyway)."""
        if self._deferred and not trainer.sanity_checking:
            self._deferred = False
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            if self._requeue_after_save:
                self._requeue(trainer)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        if not self._validation_follows:
            super()._save_last_checkpoint(trainer, monitor_candidates)
        elif not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:  # else the epoch-end save is next
            self._deferred = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._deferred = False  # this save comes after every validation of the epoch
        if self._requeue_after_save:
            self._requeue(trainer)

    # --- the requeue signal ---------------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and self.requeue_signal is not None and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(self.requeue_signal, self._ask_requeue)

    def _ask_requeue(self, signum, frame) -> None:
        self._requeue_asked = True  # acted on at the end of the optimizer step (a consistent state to save)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(self.requeue_signal, self._previous_handler)
            self._previous_handler = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handler()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handler()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loop = trainer.fit_loop.epoch_loop
        if loop._should_accumulate():
            return  # inside an accumulation window: its partial gradients would be in no checkpoint
        self._validation_follows = _timed_validation(trainer) or loop._should_check_val_fx(
            trainer.fit_loop._data_fetcher
        )
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            self._requeue_save(trainer)
        finally:
            self._validation_follows = False

    def _requeue_save(self, trainer: pl.Trainer) -> None:
        if self.requeue_signal is None:
            return
        # every process decides at the same step (one asked is enough): the save below waits for all of them
        if not trainer.strategy.reduce_boolean_decision(self._requeue_asked, all=False):
            return
        self._requeue_asked = False
        if _timed_validation(trainer):
            # rank 0's reading decides for all; where no validation is due yet, the clock of the next one starts
            # now, so none follows this step's save
            due = trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)
            if not trainer.strategy.broadcast(due, src=0):
                trainer._last_val_time = time.monotonic()
                self._validation_follows = False
        if self._validation_follows:  # requeued once the save after this step's validation is on disk
            self._requeue_after_save = True
            self._save_last_checkpoint(trainer, {})  # deferred (or the epoch-end save)
            return
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._requeue(trainer)

    def _requeue(self, trainer: pl.Trainer) -> None:
        self._requeue_after_save = False
        log.info("%s: saved %s at step %d", signal.Signals(self.requeue_signal).name, LAST, trainer.global_step)
        if trainer.is_global_zero:
            requeue_slurm_job()


def _timed_validation(trainer: pl.Trainer) -> bool:
    """Validation by wall-clock time (Lightning's ``val_check_interval`` as a time), not by batches."""
    return getattr(trainer, "_val_check_time_interval", None) is not None


def requeue_slurm_job() -> bool:
    """``scontrol requeue`` this job (an array task by its array id); SLURM then stops it (SIGTERM) and starts it again.
    Where the requeue fails (a job submitted with ``--no-requeue``), the run goes on."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_id else os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        p = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not requeue SLURM job %s (%s); training goes on", job, e)
        return False
    if p.returncode != 0:
        log.warning("could not requeue SLURM job %s (%s); training goes on", job, p.stderr.strip())
        return False
    log.info("requeued SLURM job %s: it continues from %s when it starts again", job, LAST)
    return True


class RngState(pl.Callback):
    """The global RNG states (torch CPU and CUDA, Python, NumPy) go into every checkpoint and come back on resume.

    The data side draws nothing from them (seeded samplers and collators, loaders with their own generator), so
    after a resume dropout continues the very stream it would have drawn from without the interruption. With several
    processes, each one's states are gathered into the checkpoint (rank 0 writes it), and each gets its own back.
    """

    def state_dict(self) -> dict[str, Any]:
        own = _rng_states()
        if not _distributed():
            return own
        states: list = [None] * torch.distributed.get_world_size()
        # every process saves (rank 0 writes): all take part; tensors travel as NumPy arrays (torch's own pickling of
        # them does not survive this exchange), and are tensors again in the checkpoint (loaded without pickle)
        torch.distributed.all_gather_object(states, _convert(own, torch.Tensor, lambda t: t.numpy()))
        return {"per_rank": [_convert(st, np.ndarray, torch.from_numpy) for st in states]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if "per_rank" in state:
            per_rank = state["per_rank"]
            rank = torch.distributed.get_rank() if _distributed() else 0
            state = per_rank[rank] if len(per_rank) == _world_size() else per_rank[0]
        torch.set_rng_state(state["torch"])
        random.setstate(_as_tuple(state["python"]))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def _convert(x, kind: type, fn):
    if isinstance(x, kind):
        return fn(x)
    if isinstance(x, dict):
        return {k: _convert(v, kind, fn) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_convert(v, kind, fn) for v in x)
    return x


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and _world_size() > 1


def _world_size() -> int:
    ok = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if ok else 1


def _rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(np.array(keys)), pos, has_gauss, cached],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


class CheckpointFolder(pl.Callback):
    """Continuing a checkpoint made in another folder (a run dir moved or copied since, or ``resume=PATH`` from
    another run): the checkpoint callbacks' state is pointed at this run's ``folder`` before they load it, in memory on
    every process, so Lightning keeps the best score so far (it drops it when the folder changes). The best weights
    come along: the moved folder's own ``best.ckpt``, or a copy of the other run's (by rank 0). Where they are gone,
    the best so far is forgotten, with the run timer's best epoch: validation metrics and tested weights then both
    come from this run's validations."""

    def __init__(self, folder: Path, timer_key: str = "RunTimer"):
        self.folder = os.path.realpath(folder)
        self.timer_key = timer_key

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("callbacks") or {}
        here, moved, lost = self.folder, False, False
        for state in states.values():
            old = state.get("dirpath") if isinstance(state, dict) else None
            if not isinstance(old, str) or not old or os.path.realpath(old) == here:
                continue
            moved = True
            state["dirpath"] = here
            best = state.get("best_model_path")
            if best:
                kept = self._best_here(trainer, best, old)
                lost = lost or kept is None
                state["best_model_path"] = kept or ""
                if kept is None:
                    state |= {"best_model_score": None, "best_k_models": {}, "kth_best_model_path": ""}
                    state.pop("kth_value", None)
                else:
                    state["best_k_models"] = {kept: state.get("best_model_score")}
                    state["kth_best_model_path"] = kept
            state["last_model_path"] = os.path.join(here, LAST) if state.get("last_model_path") else ""
        if lost and self.timer_key in states:
            states[self.timer_key] = {}
        if moved and trainer.is_global_zero:
            log.info("the checkpoint was made in another folder: its checkpoints now name %s", here)
            if lost:
                log.warning("its best checkpoint is gone: the best is chosen among this run's validations")

    def _best_here(self, trainer: pl.Trainer, best: str, old: str) -> str | None:
        """The best weights' path in this folder: the file itself (a moved run dir), or a copy (another run's)."""
        rel = os.path.relpath(best, old)
        if rel.startswith(".."):
            rel = os.path.basename(best)
        target = os.path.join(self.folder, rel)
        if os.path.isfile(target):
            return target
        if not os.path.isfile(best):
            return None
        if trainer.is_global_zero:  # the others read it only in test, long after the processes next meet
            tmp = os.path.join(self.folder, f".{os.path.basename(target)}.tmp")
            os.makedirs(self.folder, exist_ok=True)
            shutil.copyfile(best, tmp)
            os.replace(tmp, target)
        return target


def _as_tuple(x):
    """random.setstate wants the tuples it gave out; a checkpoint may hand them back as lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


class KillAtStep(pl.Callback):
    """A fault for testing resume: SIGKILL this process when optimizer step ``step`` ends (before any checkpoint of
    that step), in runs whose dir contains ``run_filter``. Set by ENCODERLAB_KILL_AT_STEP / ENCODERLAB_KILL_RUN."""

    def __init__(self, step: int, run_filter: str = ""):
        self.step = step
        self.run_filter = run_filter

    @classmethod
    def from_env(cls) -> KillAtStep | None:
        step = os.environ.get("ENCODERLAB_KILL_AT_STEP")
        return cls(int(step), os.environ.get("ENCODERLAB_KILL_RUN", "")) if step else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step and self.run_filter in str(trainer.default_root_dir):
            os.kill(os.getpid(), signal.SIGKILL)


def kill_point(where: str) -> None:
    """A fault for testing resume: SIGKILL this process here when ENCODERLAB_KILL_DURING names this point
    (``export``, or ``validation:N``: in the first validation batch after optimizer step N)."""
    if os.environ.get("ENCODERLAB_KILL_DURING") == where:
        os.kill(os.getpid(), signal.SIGKILL)


class KillDuringValidation(pl.Callback):
    """Calls :func:`kill_point` in each validation batch (none of the sanity check)."""

    @classmethod
    def from_env(cls) -> KillDuringValidation | None:
        return cls() if os.environ.get("ENCODERLAB_KILL_DURING", "").startswith("validation:") else None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            kill_point(f"validation:{trainer.global_step}")


class WaitAtStep(pl.Callback):
    """A fault for testing preemption: when optimizer step ``step`` ends in a run that did not resume, wait (at most
    ``timeout`` seconds) for a SIGTERM or the requeue signal, as a job does until SLURM requeues or preempts it.
    Set by ENCODERLAB_WAIT_AT_STEP."""

    def __init__(self, step: int, timeout: float = 600.0):
        self.step = step
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> WaitAtStep | None:
        step = os.environ.get("ENCODERLAB_WAIT_AT_STEP")
        return cls(int(step)) if step else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.step or trainer.ckpt_path is not None:
            return
        last = next((c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)), None)
        deadline = time.monotonic() + self.timeout
        log.info("waiting at step %d for a signal", self.step)
        while time.monotonic() < deadline and not trainer.received_sigterm:
            if last is not None and last._requeue_asked:
                return
            time.sleep(0.1)
