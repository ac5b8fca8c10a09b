"""Loggers and callbacks from config: CSV always, W&B / TensorBoard by choice; checkpoint and early stop
on the task's primary metric; a timer whose numbers go into summary.json.

The Lightning callbacks and loggers that only pass config values on are written as ``_target_`` configs (the
``*_config`` functions: Lightning's class and its arguments, from the validated schema) and built by
``hydra.utils.instantiate``; an argument Lightning refuses ends in a one-line :class:`ConfigError` naming the key.
encoderlab's own callbacks (timer, checkpoints of the training state, RNG state) are built directly.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from pytorch_lightning.callbacks import ModelCheckpoint

from encoderlab.config.schema import RunConfig
from encoderlab.errors import ConfigError
from encoderlab.redact import redact
from encoderlab.training.checkpoints import (
    CheckpointFolder,
    KillAtStep,
    KillDuringValidation,
    LastCheckpoint,
    RngState,
    WaitAtStep,
    on_slurm,
)

log = logging.getLogger(__name__)


class RunTimer(pl.Callback):
    """Fit wall time, and the validation metrics of the best epoch by the primary metric.

    The best epoch's metrics are part of every checkpoint (a resumed run reports the best of all its epochs).
    ``heartbeat(seconds)``, when given, is called every ``heartbeat_every`` seconds of training and at every epoch
    end with this attempt's fit seconds so far: the run records them, so time spent before a kill still counts.
    """

    def __init__(
        self,
        monitor: str,
        greater_is_better: bool,
        heartbeat: Callable[[float], None] | None = None,
        heartbeat_every: float = 30.0,
    ):
        self.monitor = monitor
        self.greater = greater_is_better
        self.fit_seconds = 0.0
        self.best_val: dict[str, float] = {}
        self.best_epoch: int | None = None
        self.heartbeat = heartbeat
        self.heartbeat_every = heartbeat_every
        self._start = 0.0
        self._last_beat = 0.0

    def state_dict(self) -> dict:
        return {"best_val": dict(self.best_val), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_val = dict(state.get("best_val") or {})
        self.best_epoch = state.get("best_epoch")

    def on_fit_start(self, trainer, pl_module):
        self._start = self._last_beat = time.perf_counter()

    def on_fit_end(self, trainer, pl_module):
        self.fit_seconds = time.perf_counter() - self._start

    def _beat(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.heartbeat is not None and (force or now - self._last_beat >= self.heartbeat_every):
            self._last_beat = now
            self.heartbeat(now - self._start)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._beat()

    def on_train_epoch_end(self, trainer, pl_module):
        self._beat(force=True)

    def on_validation_end(self, trainer, pl_module):
        # not on_validation_epoch_end: callbacks run before the module logs that epoch's metrics, so they
        # would see the previous epoch's values (and none at all after the first validation)
        if trainer.sanity_checking:
            return
        metrics = {k[4:]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        value = metrics.get(self.monitor)
        if value is None:
            return
        best = self.best_val.get(self.monitor)
        if best is None or (value > best if self.greater else value < best):
            self.best_val = metrics
            self.best_epoch = trainer.current_epoch


def build_lightning(spec: dict, key: str, **kwargs):
    """``hydra.utils.instantiate(spec)``, a ``_target_`` config; ``kwargs`` (values OmegaConf must not touch, such as
    a whole run's config) go to the constructor as they are. A value Lightning refuses ends as a ConfigError naming
    ``key``."""
    try:
        if kwargs:
            return instantiate(spec | {"_partial_": True}, _convert_="all")(**kwargs)
        return instantiate(spec, _convert_="all")  # lists and dicts as plain Python ones
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(key, str(cause).strip().splitlines()[0]) from err


def checkpoint_config(run: RunConfig, run_dir: Path) -> dict:
    """The best weights by the primary metric, for test and export (``callbacks.checkpoint``)."""
    return {
        "_target_": "pytorch_lightning.callbacks.ModelCheckpoint",
        "dirpath": str(checkpoint_dir(run_dir)),
        "filename": "best",
        "monitor": f"val/{run.task.primary_metric}",
        "mode": "max" if run.task.greater_is_better else "min",
        "save_top_k": 1,
        "save_weights_only": True,
        "auto_insert_metric_name": False,
    }


def early_stopping_config(run: RunConfig) -> dict:
    """Stop when the primary validation metric stalls (``callbacks.early_stopping``, ``patience``, ``min_delta``)."""
    return {
        "_target_": "pytorch_lightning.callbacks.EarlyStopping",
        "monitor": f"val/{run.task.primary_metric}",
        "mode": "max" if run.task.greater_is_better else "min",
        "patience": run.callbacks.patience,
        "min_delta": run.callbacks.min_delta,
    }


RICH_PROGRESS = {"_target_": "pytorch_lightning.callbacks.RichProgressBar", "leave": True}
LR_MONITOR = {"_target_": "pytorch_lightning.callbacks.LearningRateMonitor", "logging_interval": "step"}


def build_callbacks(
    run: RunConfig, run_dir: Path, heartbeat: Callable[[float], None] | None = None
) -> tuple[list, ModelCheckpoint | None, RunTimer]:
    """The run's callbacks; the ModelCheckpoint of the best weights (None when off) and the timer apart."""
    timer = RunTimer(run.task.primary_metric, run.task.greater_is_better, heartbeat)
    callbacks: list = [
        timer,
        SharedValidationClock(),
        RngState(),
        CheckpointFolder(checkpoint_dir(run_dir), timer.state_key),
    ]
    ckpt = None
    if run.callbacks.checkpoint:
        ckpt = build_lightning(checkpoint_config(run, run_dir), "callbacks.checkpoint")
        callbacks.append(ckpt)
    if run.callbacks.early_stopping:
        callbacks.append(build_lightning(early_stopping_config(run), "callbacks.patience"))
    if run.callbacks.rich_progress and run.trainer.enable_progress_bar:
        callbacks.append(build_lightning(RICH_PROGRESS, "callbacks.rich_progress"))
    callbacks.append(build_lightning(LR_MONITOR, "callbacks"))
    # after the best-weights checkpoint: Lightning runs checkpoint callbacks last, in this order
    every = run.callbacks
    requeue_signal = signal.SIGUSR1 if on_slurm() else None
    callbacks.append(
        LastCheckpoint(
            checkpoint_dir(run_dir), every.checkpoint_every_n_steps, every.checkpoint_every_minutes, requeue_signal
        )
    )
    for fault in (KillAtStep.from_env(), KillDuringValidation.from_env(), WaitAtStep.from_env()):
        if fault is not None:
            callbacks.append(fault)
    return callbacks, ckpt, timer


class SharedValidationClock(pl.Callback):
    """Validation by time (``val_check_interval`` as ``DD:HH:MM:SS``) under several processes: Lightning reads each
    process's own clock after every step, so one rank could start a validation that another skips, and both would
    wait for each other. Here rank 0's reading decides for all, once per step: every rank's clock is set so that
    Lightning's own check that follows agrees with it (and is put back at the next step where no validation ran)."""

    def __init__(self) -> None:
        self._kept: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if self._kept is not None:
            if trainer._last_val_time == float("inf"):  # no validation since: the clock runs on
                trainer._last_val_time = self._kept
            self._kept = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        interval = getattr(trainer, "_val_check_time_interval", None)
        if interval is None or trainer.world_size < 2:
            return
        now = time.monotonic()
        due = bool(trainer.strategy.broadcast(now - trainer._last_val_time >= interval, src=0))
        if due:  # Lightning sets the clock anew once the validation has run
            trainer._last_val_time = -float("inf")
        else:
            self._kept, trainer._last_val_time = trainer._last_val_time, float("inf")


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def wandb_mode(configured: str | None) -> str:
    """Offline unless the user has a key (or asks for online explicitly); WANDB_MODE wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if configured:
        return configured
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
    return "online" if has_key else "offline"


def wandb_config(run: RunConfig, run_dir: Path, hydra_meta: dict, wandb_id: str | None = None) -> dict:
    """The W&B logger of ``logger.wandb``: runs of a sweep grouped as <experiment>/<sweep>, job type the strategy,
    tags the swept values; ``wandb_id`` names the W&B run, so a resumed run continues the same one."""
    wb = run.logger.wandb
    sweep = hydra_meta.get("sweep_id")
    # a sweep's folder is named after its experiment unless the user chose another (hydra.sweep.dir=...)
    tail = f"/{sweep}" if sweep and sweep != run.experiment_name else ""
    # W&B keeps what it is given: no credential (a resolved ${oc.env:...}, a typed value) goes to it
    tags = redact(list(wb.tags) + list(run.tags) + list(hydra_meta.get("swept", [])))
    return {
        "_target_": "pytorch_lightning.loggers.WandbLogger",
        "project": wb.project,
        "entity": wb.entity,
        "group": redact(wb.group or f"{run.experiment_name}{tail}"),
        "job_type": wb.job_type or run.finetune.strategy,
        "tags": tags[:64],
        "name": redact(hydra_meta.get("job_name")),
        "save_dir": str(run_dir),
        "mode": wandb_mode(wb.mode),
        "id": wandb_id,
        "resume": "allow" if wandb_id else None,
    }


def build_loggers(run: RunConfig, run_dir: Path, hydra_meta: dict, wandb_id: str | None = None) -> list:
    """CSV / TensorBoard / W&B loggers; ``wandb_id`` names the W&B run, so a resumed run continues the same one."""
    loggers: list = []
    if run.logger.csv:
        csv = {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": str(run_dir), "name": "", "version": ""}
        loggers.append(build_lightning(csv, "logger.csv"))
    if run.logger.tensorboard:
        tb = {"_target_": "pytorch_lightning.loggers.TensorBoardLogger", "save_dir": str(run_dir)}
        loggers.append(build_lightning(tb | {"name": "tensorboard", "version": ""}, "logger.tensorboard"))
    if run.logger.wandb.enabled:
        spec = wandb_config(run, run_dir, hydra_meta, wandb_id)
        log.info("W&B: project %s, group %s, mode %s", spec["project"], spec["group"], spec["mode"])
        # the run's config goes to W&B as a plain dict, past OmegaConf (which would read "${...}" in a value)
        loggers.append(build_lightning(spec, "logger.wandb", config=redact(asdict(run))))
    return loggers
