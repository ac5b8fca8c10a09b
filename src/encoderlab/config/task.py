"""The ``task`` section: what data a run reads and how (the shared keys, and each kind's own ``task.ner``,
``task.qa`` and ``task.mlm``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from encoderlab.errors import ConfigError, check_choice
from encoderlab.names import (
    CHUNK_POOLINGS,
    FILE_FORMATS,
    LONG_TEXT,
    LOWER_IS_BETTER,
    METRICS,
    MULTITASK_KINDS,
    OBJECTIVES,
    PACKINGS,
    SAMPLINGS,
    SOURCES,
    TASK_KINDS,
)


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
    def pretrains(self) -> bool:
        """The task pre-trains an encoder (masked-LM and its objectives) rather than fine-tuning one."""
        return self.kind == "pretraining"

    @property
    def classifies_sequences(self) -> bool:
        """Each example has one class label (whose splits can be stratified and folds drawn by class)."""
        return kind_classifies_sequences(self.kind)

    @property
    def tags_tokens(self) -> bool:
        """Each word has a tag (NER): its data may come as CoNLL columns."""
        return self.kind == "token_classification"

    @property
    def greater_is_better(self) -> bool:
        return self.primary_metric not in LOWER_IS_BETTER


def kind_classifies_sequences(kind: Any) -> bool:
    """A run of this ``task.kind`` (e.g. a stored summary's ``kind``) gives each example one class label."""
    return kind == "sequence_classification"


def kind_has_task_models(kind: Any) -> bool:
    """A run of this ``task.kind`` trains one model per task (``tasks/<task>/`` in its run dir)."""
    return kind == "multitask"
