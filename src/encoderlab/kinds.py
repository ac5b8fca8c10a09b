"""The task kinds, each a bundle of data preparation, model building and export.

A kind lives in its own module and is imported only when a run needs it, so a kind's heavy imports
(seqeval, tokenizer training) cost nothing elsewhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from encoderlab.errors import check_choice
from encoderlab.names import TASK_KINDS

# one entry per encoderlab.names.TASK_KINDS
_KINDS = {
    "sequence_classification": "encoderlab.models.sequence:KIND",
    "sequence_regression": "encoderlab.models.sequence:KIND",
    "token_classification": "encoderlab.models.token_classification:KIND",
    "question_answering": "encoderlab.models.question_answering:KIND",
    "pretraining": "encoderlab.models.pretraining:KIND",
    "multitask": "encoderlab.models.multitask:KIND",
}


@dataclass
class Prepared:
    """Tokenized splits ready for batching, plus what the model and the outputs need to know."""

    datasets: DatasetDict  # train / validation / test, tokenized, unpadded
    collator: Callable  # list of rows -> batch of tensors
    meta: dict = field(default_factory=dict)  # JSON-able: label_names, data stats, ... (goes into summary.json)
    extras: dict[str, Any] = field(default_factory=dict)  # anything else (raw examples for QA post-processing)
    # per-row lengths for length-bucketed batches; None: sample uniformly
    lengths: dict[str, list[int]] | None = None
    # multitask: which rows may share a batch and which task trains next (data.multitask.TaskBatching)
    batching: Any = None


@dataclass
class Kind:
    # (run, tokenizer, cache root or None) -> Prepared
    prepare: Callable[..., Prepared]
    # (run, prepared, tokenizer) -> EncoderModule with freezing applied
    build: Callable[..., Any]
    # (module, tokenizer, out_dir, prepared) -> None: a Hugging Face folder that transformers.pipeline loads
    export: Callable[..., None]
    # (module, trainer, datamodule, prepared, run_dir) -> extra metrics dict; writes predictions files
    predict: Callable[..., dict] | None = None
    # the tokenizer to use: (run) -> tokenizer; None: the model's own (encoder.load_tokenizer)
    tokenizer: Callable[..., Any] | None = None


def get_kind(name: str) -> Kind:
    check_choice("task.kind", name, TASK_KINDS)
    module, _, attr = _KINDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def write_json(path: Path, obj) -> None:
    import json

    path.write_text(json.dumps(obj, indent=2, default=str))
