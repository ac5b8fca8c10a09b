"""Typed schema of a run's config.

Hydra composes ``conf/`` + ``experiments/`` + CLI overrides into a plain DictConfig; :func:`validate`
merges it into these dataclasses, so an unknown key or a wrong type fails before any data is read,
and each section's ``check()`` tests the allowed values and combinations. Field names follow the Hugging Face
example scripts (``max_seq_length``, ``doc_stride``, ``label_all_tokens``, ``mlm_probability``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from encoderlab.config.claims import parse_claims

# each section lives in its own module with its checks; importable from here, as every caller does
from encoderlab.config.finetuning import DistillConfig, FinetuneConfig  # noqa: F401
from encoderlab.config.model import ModelConfig, TfidfConfig  # noqa: F401
from encoderlab.config.optimization import OptimizerConfig, SchedulerConfig  # noqa: F401
from encoderlab.config.task import TASK_SECTIONS, MLMConfig, NerConfig, QAConfig, TaskConfig  # noqa: F401
from encoderlab.config.trainer import (  # noqa: F401
    CallbacksConfig,
    CVConfig,
    LoggerConfig,
    PathsConfig,
    SpeedConfig,
    TrainerConfig,
    WandbConfig,
)
from encoderlab.errors import ConfigError, check_choice

# the names the checks allow live in encoderlab.names (the builders read the same lists); importable from here too
from encoderlab.names import (  # noqa: F401
    ARCHITECTURES,
    ATTENTION,
    CHUNK_POOLINGS,
    FEATURE_LAYERS,
    FILE_FORMATS,
    HEADS,
    LAYER_DECAY_TOPS,
    LONG_TEXT,
    LOWER_IS_BETTER,
    METRICS,
    MODEL_FAMILIES,
    MULTITASK_KINDS,
    OBJECTIVES,
    OPTIMIZERS,
    PACKINGS,
    PADDINGS,
    POOLINGS,
    PRECISIONS,
    RESUME_MODES,
    SAMPLINGS,
    SCHEDULE_CLOCKS,
    SCHEDULERS,
    SOURCES,
    STRATEGIES,
    STUDENT_LAYERS,
    TASK_KINDS,
)
from encoderlab.strategies.setfit.config import check_setfit_run


@dataclass
class PublishedResult:
    """A number from a paper that an experiment mirrors (see experiments/)."""

    metric: Optional[str] = None
    value: Optional[float] = None  # in the metric's own scale (accuracy in [0, 1])
    tolerance: Optional[float] = None
    source: str = ""


@dataclass
class StageConfig:
    """A run this run depends on (e.g. the pre-training whose export it fine-tunes), made first when missing.

    ``overrides`` compose the stage's own config (as on the command line); ``dir`` is its run dir. A stage that
    finished there with the same config is reused; otherwise it runs before the job (once, under a lock, when the
    jobs of a sweep share it). Refer to its outputs with interpolation: ``model.path: ${stages.pretrain.dir}/hf``.
    """

    dir: str = "???"
    overrides: list[str] = field(default_factory=list)
    # independent replicates: the stage seeds an experiment sweeps (stages.<name>.seed), each stage in its own dir
    seeds: list[int] = field(default_factory=list)
    seed: Optional[int] = None  # this job's stage: run with seed=<seed>, in a dir that contains seed<seed>
    # values an experiment sweeps for its stage (e.g. a budget curve's minutes), used in overrides and dir by
    # interpolation: +trainer.extra.max_time=00:00:${stages.pretrain.params.minutes}:00; the dir holds each as <k><v>
    params: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str) -> None:
        if self.seeds and self.seed is None:
            raise ConfigError(f"stages.{name}.seed", f"pick this job's stage, one of stages.{name}.seeds {self.seeds}")
        if self.seeds and self.seed not in self.seeds:
            raise ConfigError(f"stages.{name}.seed", f"{self.seed} is not one of stages.{name}.seeds {self.seeds}")
        if self.seed is not None and f"seed{self.seed}" not in self.dir:
            raise ConfigError(
                f"stages.{name}.dir",
                f"each stage seed needs its own dir: put seed${{stages.{name}.seed}} in it (got {self.dir})",
            )
        for key, value in self.params.items():
            if f"{key}{value}" not in self.dir:
                put = f"{key}${{stages.{name}.params.{key}}}"
                raise ConfigError(
                    f"stages.{name}.dir", f"each value of stages.{name}.params.{key} needs its own dir: put {put} in it"
                )


@dataclass
class RunConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    published: PublishedResult = field(default_factory=PublishedResult)
    stages: dict[str, StageConfig] = field(default_factory=dict)
    claims: list[Any] = field(default_factory=list)
    notes: str = ""
    cv: CVConfig = field(default_factory=CVConfig)
    seed: int = 42
    batch_size: int = 32
    eval_batch_size: int = 128
    precision: str = "32-true"
    experiment_name: str = "default"
    tags: list[str] = field(default_factory=list)
    save_model: bool = True
    skip_finished: bool = True  # multirun: a job whose summary.json says finished with this config is skipped
    # auto: a rerun in a run dir whose run did not finish continues from its checkpoints/last.ckpt;
    # never: always start from scratch; or the path of a checkpoint (.ckpt) to continue from
    resume: str = "auto"

    def check(self) -> None:
        for section in (
            self.task,
            self.model,
            self.finetune,
            self.optimizer,
            self.scheduler,
            self.speed,
            self.callbacks,
            self.trainer,
            self.cv,
        ):
            section.check()
        parse_claims(self.claims)
        for name, stage in self.stages.items():
            stage.check(name)
        if self.resume not in RESUME_MODES and not os.path.isfile(os.path.expanduser(self.resume)):
            raise ConfigError("resume", f"'{self.resume}' is neither auto, never nor a checkpoint file")
        if self.cv.folds is not None and self.task.kind == "pretraining":
            raise ConfigError(
                "cv.folds", "cross-validation needs labelled data; pre-training has no folds (cv.folds=null)"
            )
        check_choice("precision", self.precision, PRECISIONS)
        if self.scheduler.clock == "time" and self.trainer.extra.get("max_time") is None:
            raise ConfigError(
                "scheduler.clock",
                "'time' runs the schedule over the run's time budget: add +trainer.extra.max_time=DD:HH:MM:SS "
                "(or use scheduler.clock=steps)",
            )
        self._check_flop_budget()
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {self.batch_size}")
        if self.eval_batch_size < 1:
            raise ConfigError("eval_batch_size", f"must be at least 1, got {self.eval_batch_size}")
        if self.task.long_text == "chunks" and self.finetune.frozen_encoder:
            raise ConfigError(
                "task.long_text",
                f"'chunks' scores every window with the encoder, which finetune={self.finetune.strategy} encodes "
                "once per example; use head, tail or head_tail",
            )
        self._check_distill()
        if self.finetune.strategy == "setfit":
            check_setfit_run(self)
        if self.task.kind == "multitask":
            self._check_multitask()
        if self.finetune.head == "bilstm" and self.task.kind != "token_classification":
            raise ConfigError("finetune.head", "'bilstm' is a head for token_classification tasks")
        if self.model.family == "tfidf_logreg":
            self._check_tfidf()

    def unhashed(self) -> list[tuple[str, str]]:
        """(section, key) of settings added after runs were first hashed that this run does not use: left out of its
        config_hash, so a run dir made before they existed is still recognised as finished (skip_finished)."""
        out = []
        if self.task.shots_per_class is None:
            out.append(("task", "shots_per_class"))
        if self.finetune.strategy != "setfit":
            out.append(("finetune", "setfit"))
        return out

    def _check_flop_budget(self) -> None:
        budget = self.trainer.extra.get("max_flops")
        if self.scheduler.clock == "flops" and budget is None:
            raise ConfigError(
                "scheduler.clock",
                "'flops' runs the schedule over the run's FLOP budget: add +trainer.extra.max_flops=<FLOPs, e.g. 5e13> "
                "(or use scheduler.clock=steps)",
            )
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
            raise ConfigError("trainer.extra.max_flops", f"must be a number of FLOPs > 0 (e.g. 5e13), got {budget!r}")

    def _check_distill(self) -> None:
        if self.finetune.strategy != "distill":
            if self.distill.teacher is not None:
                raise ConfigError("distill.teacher", "a teacher is set: add finetune=distill")
            return
        self.distill.check(self.task.kind)
        if self.model.family != "encoder":
            raise ConfigError("model", "the student of finetune=distill is an encoder (e.g. model=minilm_l6)")
        if self.task.long_text == "chunks":
            raise ConfigError("task.long_text", "distill takes one window per text: use head, tail or head_tail")

    def _check_multitask(self) -> None:
        if self.finetune.strategy == "feature_based":
            raise ConfigError(
                "finetune.strategy",
                "feature_based heads are single-task; with task=multitask use full, frozen, top_k, gradual_unfreeze "
                "or lora",
            )
        if self.trainer.strategy in ("ddp", "ddp_spawn", "ddp_fork"):
            raise ConfigError(
                "trainer.strategy",
                f"a multitask step trains one task's head and leaves the others without gradients, which plain "
                f"{self.trainer.strategy} refuses; use "
                f"trainer.strategy={self.trainer.strategy}_find_unused_parameters_true",
            )

    def _check_tfidf(self) -> None:
        if self.task.kind != "sequence_classification":
            raise ConfigError(
                "model",
                f"tfidf_logreg is a baseline for sequence_classification tasks; task '{self.task.name}' is "
                f"{self.task.kind}: pick an encoder (e.g. model=minilm_l6)",
            )
        if self.finetune.strategy != "full":
            raise ConfigError(
                "finetune.strategy",
                f"model=tfidf_logreg has no encoder to freeze; use finetune=full (got '{self.finetune.strategy}')",
            )
