"""The ``finetune`` and ``distill`` sections: which weights learn and how (the freezing strategies, LoRA,
SetFit, distillation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from encoderlab.errors import ConfigError, check_choice
from encoderlab.names import (
    FEATURE_LAYERS,
    HEADS,
    POOLINGS,
    STUDENT_LAYERS,
)
from encoderlab.strategies import strategy_names
from encoderlab.strategies.setfit.config import SetFitConfig


@dataclass
class FinetuneConfig:
    """Which weights learn: the freezing strategy."""

    strategy: str = "full"
    # the sentence vector: frozen / feature_based read it (null: model.pooling); with a strategy that trains the
    # encoder (full, top_k, gradual_unfreeze), cls | mean put a linear head on that vector of the last layer instead
    # of the model's own *ForSequenceClassification head (null), exported as a feature-based model
    pooling: Optional[str] = None
    layers: str = "last"  # feature_based: which hidden states (BERT Table 7)
    head: str = "linear"  # feature_based: linear | mlp | bilstm (bilstm: token tasks)
    head_hidden_size: int = 256
    head_dropout: float = 0.1
    # the new head's LR under this strategy when optimizer.head_lr is null (null: optimizer.lr). A head on a
    # frozen encoder needs ~1e-3..1e-2 to converge in one epoch; 1e-4 (the encoder's LR) barely moves it.
    head_lr: Optional[float] = None
    k: int = 2  # top_k: number of top encoder layers that train
    train_embeddings: bool = False  # top_k / gradual_unfreeze: embeddings learn too (gradual: they thaw last)
    # gradual_unfreeze: every layer (and the embeddings with train_embeddings) has thawed by this fraction of
    # the optimizer steps, one layer at a time at even spacing from the top; the rest of the run trains all
    unfreeze_by: float = 0.5
    # gradual_unfreeze: epochs (may be fractional) per newly thawed layer instead (ULMFiT: 1); null: unfreeze_by.
    # A value whose last thaw comes after the end of training is an error, as the lowest layers would never learn.
    unfreeze_interval: Optional[float] = None
    # lora: rank, scale (alpha / r), dropout on the adapter input, and the linear layers that get adapters
    # (last name parts such as query/value/key/dense, or ["all-linear"])
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    setfit: SetFitConfig = field(default_factory=SetFitConfig)  # setfit: strategies/setfit/config.py

    def check(self) -> None:
        check_choice("finetune.strategy", self.strategy, strategy_names())
        if self.pooling is not None:
            check_choice("finetune.pooling", self.pooling, POOLINGS)
            if self.strategy in ("lora", "distill") and self.pooling != "pooler":
                raise ConfigError(
                    "finetune.pooling",
                    f"finetune={self.strategy} trains the model's own classification head: leave "
                    "finetune.pooling=null (a pooled head trains with finetune=full, top_k or gradual_unfreeze)",
                )
        check_choice("finetune.layers", self.layers, FEATURE_LAYERS)
        check_choice("finetune.head", self.head, HEADS)
        if self.k < 1:
            raise ConfigError("finetune.k", f"must be at least 1, got {self.k}")
        if self.unfreeze_interval is not None and self.unfreeze_interval <= 0:
            raise ConfigError("finetune.unfreeze_interval", "must be > 0 (epochs per thawed layer), or null")
        if not 0.0 < self.unfreeze_by < 1.0:
            msg = f"must be in (0, 1): the fraction of training by which every layer has thawed, got {self.unfreeze_by}"
            raise ConfigError("finetune.unfreeze_by", msg)
        if self.head_lr is not None and self.head_lr <= 0:
            raise ConfigError("finetune.head_lr", f"must be > 0 (or null for optimizer.lr), got {self.head_lr}")
        if self.strategy == "lora":
            if self.lora_r < 1:
                raise ConfigError("finetune.lora_r", f"must be at least 1, got {self.lora_r}")
            if self.lora_alpha <= 0:
                raise ConfigError("finetune.lora_alpha", f"must be > 0, got {self.lora_alpha}")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ConfigError("finetune.lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
            if not self.lora_target_modules or any(not str(m).strip() for m in self.lora_target_modules):
                raise ConfigError("finetune.lora_target_modules", "name at least one layer, e.g. [query,value]")

    @property
    def frozen_encoder(self) -> bool:
        """The strategy trains a head on a frozen encoder's hidden states (models/heads.FeatureModel)."""
        from encoderlab.strategies import get_strategy

        return get_strategy(self.strategy).frozen_encoder


@dataclass
class DistillConfig:
    """``finetune=distill``: a student learns from a finished run's soft targets (Hinton et al. 2015).

    Training loss (``encoderlab.models.distill.distillation_loss``), with T = ``temperature``, z the logits::

        alpha * T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T)) + (1 - alpha) * CE(z_student, label)

    T^2 keeps the soft term's gradients on the scale of the hard term's as T grows; alpha=0 is plain fine-tuning
    on the hard labels (the student without its teacher). Validation and test losses are plain CE.
    """

    teacher: Optional[str] = None  # a finished encoderlab run dir (hf/ + summary.json) of the same task
    # null outside finetune=distill (a report then shows no temperature or alpha for the teacher's own run);
    # conf/finetune/distill.yaml sets T=2, alpha=0.5
    temperature: Optional[float] = None
    alpha: Optional[float] = None
    # null: the student is `model` (a from-scratch size or another pre-trained encoder, its own tokenizer);
    # every_other or a list of teacher layer indices ([0,2,4]): the teacher's network with those layers only,
    # embeddings, layers, pooler and head copied from the teacher (DistilBERT); `model` is then not read
    student_layers: Any = None

    def check(self, kind: str) -> None:
        if self.teacher is None or not str(self.teacher).strip():
            raise ConfigError("distill.teacher", "finetune=distill needs a teacher run dir: distill.teacher=RUN_DIR")
        if kind != "sequence_classification":
            raise ConfigError(
                "finetune.strategy",
                f"distill learns from a teacher's class probabilities: sequence_classification only, not {kind}",
            )
        for key in ("temperature", "alpha"):
            if getattr(self, key) is None:
                raise ConfigError(f"distill.{key}", "set it for finetune=distill (finetune/distill.yaml: 2.0, 0.5)")
        if not self.temperature > 0:
            raise ConfigError("distill.temperature", f"must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("distill.alpha", f"must be in [0, 1] (the soft targets' weight), got {self.alpha}")
        layers = self.student_layers
        if layers is None or isinstance(layers, str):
            if layers is not None:
                check_choice("distill.student_layers", layers, STUDENT_LAYERS)
            return
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ConfigError("distill.student_layers", f"give every_other or a list of layer indices, got {layers!r}")
        if any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in layers):
            raise ConfigError("distill.student_layers", f"layer indices are integers >= 0, got {list(layers)}")
        if len(set(layers)) != len(layers):
            raise ConfigError("distill.student_layers", f"each teacher layer may appear once, got {list(layers)}")
