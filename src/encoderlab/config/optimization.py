"""The ``optimizer`` and ``scheduler`` sections: AdamW variants, learning rates, layer-wise decay and the LR
schedules with their clocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from encoderlab.errors import ConfigError, check_choice
from encoderlab.names import (
    LAYER_DECAY_TOPS,
    OPTIMIZERS,
    SCHEDULE_CLOCKS,
    SCHEDULERS,
)


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 2e-5
    head_lr: Optional[float] = None  # null: finetune.head_lr, else lr (x 1, no layer decay)
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: Optional[float] = None  # null: the optimizer's own (adamw 1e-8, adamw_bert 1e-6)
    bias_correction: Optional[bool] = None  # null: the optimizer's own (adamw true, adamw_bert false)
    layer_decay: float = 1.0  # LLRD: lr x layer_decay^(depth below the top layer)
    # base: the top layer gets lr, each layer below x layer_decay, embeddings lowest (Sun et al. 2019);
    # decayed: the top layer already gets lr x layer_decay (the head counts as the top)
    layer_decay_top: str = "base"
    no_decay: list[str] = field(default_factory=lambda: ["bias", "LayerNorm.weight", "layer_norm.weight"])

    def check(self) -> None:
        check_choice("optimizer.name", self.name, OPTIMIZERS)
        check_choice("optimizer.layer_decay_top", self.layer_decay_top, LAYER_DECAY_TOPS)
        if self.lr <= 0:
            raise ConfigError("optimizer.lr", f"must be > 0, got {self.lr}")
        if self.head_lr is not None and self.head_lr <= 0:
            raise ConfigError("optimizer.head_lr", f"must be > 0 (or null), got {self.head_lr}")
        if self.eps is not None and self.eps < 0:
            raise ConfigError("optimizer.eps", f"must be >= 0 (or null), got {self.eps}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError("optimizer.layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        if len(self.betas) != 2:
            raise ConfigError("optimizer.betas", "give two values, e.g. [0.9, 0.999]")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError("optimizer.betas", f"each must be in [0, 1), got {list(self.betas)}")
        if self.weight_decay < 0:
            raise ConfigError("optimizer.weight_decay", f"must be >= 0 (0: none), got {self.weight_decay}")


@dataclass
class SchedulerConfig:
    name: str = "linear"
    warmup_ratio: float = 0.1  # fraction of the total optimizer steps
    num_cycles: float = 0.5  # cosine: half a cosine wave by default
    power: float = 1.0  # polynomial
    lr_end_ratio: float = 0.0  # polynomial / cosine floor, as a fraction of the peak lr
    ratio: float = 32.0  # slanted_triangular: peak lr / lowest lr (Howard & Ruder)
    # steps: the schedule runs over the run's optimizer steps; time: over its time budget (+trainer.extra.max_time)
    # as well, whichever is further along (Cramming's budgeted schedule: warmup and decay end within the budget);
    # flops: over its FLOP budget (+trainer.extra.max_flops) as well
    clock: str = "steps"

    def check(self) -> None:
        check_choice("scheduler.name", self.name, SCHEDULERS)
        check_choice("scheduler.clock", self.clock, SCHEDULE_CLOCKS)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("scheduler.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
