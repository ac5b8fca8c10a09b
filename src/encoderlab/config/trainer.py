"""The ``speed``, ``trainer``, ``logger``, ``callbacks``, ``paths`` and ``cv`` sections: how a run is executed,
logged, checkpointed and split into folds; none of them changes what a model is."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from encoderlab.errors import ConfigError, check_choice
from encoderlab.names import (
    PADDINGS,
)


@dataclass
class SpeedConfig:
    """Knobs that change how fast a run gets there, never what it means."""

    padding: str = "dynamic"  # dynamic: pad per batch; max_length: pad to task.max_seq_length
    bucket_by_length: bool = True  # train batches of similar length (shuffled buckets)
    cache_tokenized: bool = True  # reuse tokenized data across runs with the same fingerprint
    cache_features: bool = True  # frozen encoders: encode once, train the head on cached features
    num_workers: int = 0
    pad_to_multiple_of: Optional[int] = None

    def check(self) -> None:
        check_choice("speed.padding", self.padding, PADDINGS)


@dataclass
class TrainerConfig:
    """Only the Lightning Trainer keys we change; extra ones go in `extra`."""

    max_epochs: int = 1
    max_steps: int = -1
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: Any = "auto"
    gradient_clip_val: Optional[float] = 1.0
    accumulate_grad_batches: int = 1
    val_check_interval: Optional[float] = None
    check_val_every_n_epoch: Optional[int] = 1
    log_every_n_steps: int = 10
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    limit_test_batches: Optional[float] = None
    deterministic: bool = False
    enable_progress_bar: bool = True
    num_sanity_val_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Lightning rejects most of these only once the run has started, with a traceback."""
        if self.max_epochs < 1 and self.max_epochs != -1:
            raise ConfigError(
                "trainer.max_epochs", f"must be at least 1 (or -1: stop at trainer.max_steps), got {self.max_epochs}"
            )
        if self.max_steps < 1 and self.max_steps != -1:
            raise ConfigError("trainer.max_steps", f"must be at least 1 (or -1: no step limit), got {self.max_steps}")
        if self.max_epochs == -1 and self.max_steps == -1:
            raise ConfigError("trainer.max_epochs", "-1 runs forever unless trainer.max_steps is set (at least 1)")
        for key in ("accumulate_grad_batches", "log_every_n_steps", "num_nodes"):
            _at_least(f"trainer.{key}", getattr(self, key), 1)
        _at_least("trainer.check_val_every_n_epoch", self.check_val_every_n_epoch, 1)
        _at_least("trainer.num_sanity_val_steps", self.num_sanity_val_steps, -1)
        if self.gradient_clip_val is not None and self.gradient_clip_val < 0:
            raise ConfigError(
                "trainer.gradient_clip_val", f"must be >= 0 (or null: no clipping), got {self.gradient_clip_val}"
            )
        if self.val_check_interval is not None and self.val_check_interval <= 0:
            raise ConfigError(
                "trainer.val_check_interval",
                f"must be > 0 (a fraction of an epoch, or a number of steps), got {self.val_check_interval}",
            )
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            v = getattr(self, key)
            if v is not None and v < 0:
                raise ConfigError(f"trainer.{key}", f"must be >= 0 (a fraction, or a number of batches), got {v}")
        if isinstance(self.devices, int) and not isinstance(self.devices, bool) and self.devices < 1:
            if self.devices != -1:
                raise ConfigError(
                    "trainer.devices", f"must be at least 1, -1 (all), 'auto' or a list of ids, got {self.devices}"
                )


def _at_least(key: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise ConfigError(key, f"must be at least {low}, got {value}")


@dataclass
class WandbConfig:
    enabled: bool = False
    project: str = "encoderlab"
    entity: Optional[str] = None
    group: Optional[str] = None  # null: experiment + sweep id
    job_type: Optional[str] = None  # null: the finetune strategy
    tags: list[str] = field(default_factory=list)
    mode: Optional[str] = None  # online | offline | disabled; null: offline without an API key


@dataclass
class LoggerConfig:
    csv: bool = True
    tensorboard: bool = False
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class CallbacksConfig:
    early_stopping: bool = True
    patience: int = 3
    min_delta: float = 0.0
    checkpoint: bool = True  # keep the best weights (by the primary metric) for test and export
    rich_progress: bool = True
    # checkpoints/last.ckpt (the whole training state, for `resume`) is written at every epoch end, and also
    # every N optimizer steps and/or every M minutes when set; it is removed once the run finishes
    checkpoint_every_n_steps: Optional[int] = None
    checkpoint_every_minutes: Optional[float] = None

    def check(self) -> None:
        if self.patience < 0:
            raise ConfigError("callbacks.patience", f"must be >= 0 (validations to wait), got {self.patience}")
        if self.min_delta < 0:
            raise ConfigError("callbacks.min_delta", f"must be >= 0 (the least gain that counts), got {self.min_delta}")
        n, m = self.checkpoint_every_n_steps, self.checkpoint_every_minutes
        if n is not None and n < 1:
            raise ConfigError("callbacks.checkpoint_every_n_steps", f"must be at least 1 (or null), got {n}")
        if m is not None and m <= 0:
            raise ConfigError("callbacks.checkpoint_every_minutes", f"must be > 0 (or null), got {m}")


@dataclass
class PathsConfig:
    root_dir: str = "."
    # conf/paths/default.yaml sets the same default for composed configs
    cache_dir: str = field(default_factory=lambda: os.environ.get("ENCODERLAB_CACHE", "~/.cache/encoderlab"))


@dataclass
class CVConfig:
    """k-fold cross-validation: train + validation pooled and cut into ``folds`` seeded folds (stratified by class
    for classification); fold ``fold`` takes the validation split's place, the test split stays held out."""

    folds: Optional[int] = None  # null: no cross-validation
    fold: int = 0  # 0 .. folds - 1; sweep it: -m cv.folds=5 cv.fold=0,1,2,3,4

    def check(self) -> None:
        if self.folds is None:
            return
        if self.folds < 2:
            raise ConfigError("cv.folds", f"k-fold cross-validation needs at least 2 folds, got {self.folds}")
        if not 0 <= self.fold < self.folds:
            raise ConfigError("cv.fold", f"must be in 0..{self.folds - 1} with cv.folds={self.folds}, got {self.fold}")
