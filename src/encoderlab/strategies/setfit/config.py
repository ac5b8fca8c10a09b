"""``finetune.setfit.*``: the settings of ``finetune=setfit`` and their checks (no torch: the schema imports this).

Defaults are SetFit's published ones (setfit ``TrainingArguments``, https://huggingface.co/docs/setfit/reference/
trainer: ``batch_size=(16, 2)``, ``num_epochs=(1, 16)``, ``body_learning_rate=(2e-5, 1e-5)``,
``head_learning_rate=1e-2``, ``loss=CosineSimilarityLoss``, ``warmup_proportion=0.1``, ``l2_weight=0.01``,
``end_to_end=False``; ``num_iterations=20`` as in the paper and the library before 1.0). A pair of values there is
(contrastive stage, head stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from encoderlab.errors import ConfigError, check_choice

if TYPE_CHECKING:
    from encoderlab.config.schema import RunConfig

SETFIT_LOSSES = ("cosine_similarity",)
SETFIT_HEADS = ("logistic_regression", "linear")


@dataclass
class SetFitConfig:
    # contrastive stage: each training example anchors this many positive (same class) and as many negative (other
    # class) pairs, as SetFit's num_iterations; 0 skips the stage (a probe on the encoder's own sentence vectors)
    pairs_per_example: int = 20
    # cosine_similarity: MSE between the cosine of the two sentence vectors and the pair's label (1 or 0), as
    # sentence-transformers' CosineSimilarityLoss
    loss: str = "cosine_similarity"
    epochs: int = 1
    batch_size: int = 16  # pairs per step
    lr: float = 2e-5
    warmup_proportion: float = 0.1  # linear warm-up over this fraction of the steps, then linear decay to 0
    weight_decay: float = 0.01  # AdamW, not on biases and LayerNorm weights (sentence-transformers' fit)
    max_grad_norm: float = 1.0
    # unit-length sentence vectors for the head (all-MiniLM-L6-v2's sentence-transformers pipeline ends in Normalize)
    normalize: bool = True
    # logistic_regression: scikit-learn's, fitted to convergence on the sentence vectors (SetFit's default head);
    # linear: a linear layer trained by cross-entropy (SetFit's differentiable head)
    head: str = "logistic_regression"
    head_c: float = 1.0  # logistic_regression: inverse regularisation strength (scikit-learn's default)
    head_max_iter: int = 1000  # logistic_regression: iterations allowed to converge
    head_epochs: int = 16  # linear
    head_batch_size: int = 2  # linear
    head_lr: float = 1e-2  # linear
    # linear: the encoder trains with the head (at end_to_end_lr), instead of staying fixed
    end_to_end: bool = False
    end_to_end_lr: float = 1e-5

    def check(self) -> None:
        check_choice("finetune.setfit.loss", self.loss, SETFIT_LOSSES)
        check_choice("finetune.setfit.head", self.head, SETFIT_HEADS)
        if self.pairs_per_example < 0:
            raise ConfigError(
                "finetune.setfit.pairs_per_example",
                f"must be >= 0 (0: no contrastive stage), got {self.pairs_per_example}",
            )
        for key in ("epochs", "batch_size", "head_max_iter", "head_epochs", "head_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"finetune.setfit.{key}", f"must be at least 1, got {getattr(self, key)}")
        for key in ("lr", "head_c", "head_lr", "end_to_end_lr"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"finetune.setfit.{key}", f"must be > 0, got {getattr(self, key)}")
        if not 0.0 <= self.warmup_proportion < 1.0:
            raise ConfigError("finetune.setfit.warmup_proportion", f"must be in [0, 1), got {self.warmup_proportion}")
        if self.end_to_end and self.head != "linear":
            raise ConfigError(
                "finetune.setfit.end_to_end",
                "trains the encoder through a linear head: add finetune.setfit.head=linear",
            )


def check_setfit_run(run: RunConfig) -> None:
    """What ``finetune=setfit`` needs from the rest of the run: a classifier, an encoder, one window per text."""
    run.finetune.setfit.check()
    if not run.task.classifies_sequences:
        raise ConfigError(
            "finetune.strategy", f"setfit pairs examples by class: sequence_classification only, not {run.task.kind}"
        )
    if run.model.family != "encoder":
        raise ConfigError("model", "finetune=setfit fine-tunes an encoder (e.g. model=minilm_l6)")
    if (run.finetune.pooling or run.model.pooling) == "pooler":
        raise ConfigError("finetune.pooling", "setfit compares sentence vectors: use mean (its default) or cls")
    if run.task.long_text == "chunks":
        raise ConfigError("task.long_text", "setfit takes one window per text: use head, tail or head_tail")
