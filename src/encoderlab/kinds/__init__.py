"""The task kinds, each a bundle of data preparation, model building, predictions and export.

Each kind is a package here (``sequence``, ``token_classification``, ``question_answering``, ``pretraining``,
``multitask``) whose ``kind`` module defines ``KIND``, a :class:`KindFunctions` of its functions; anything with
the members of the :class:`Kind` protocol serves. :func:`get_kind` imports the package of the kind a run needs
and no other, so a kind's heavy imports (seqeval, tokenizer training) cost nothing elsewhere; its imports are
written out, so go-to-definition and type checkers follow them.
"""

from __future__ import annotations

from encoderlab.errors import check_choice
from encoderlab.kinds.base import (  # noqa: F401  (the kinds' shared types, importable from the package)
    AssessFn,
    BuildFn,
    ExportFn,
    Kind,
    KindFunctions,
    PredictFn,
    Prepared,
    PrepareFn,
    Serving,
    TokenizerFn,
    write_json,
)
from encoderlab.kinds.single import SINGLE_KINDS
from encoderlab.names import TASK_KINDS


def _multitask() -> Kind:
    from encoderlab.kinds.multitask.kind import KIND

    return KIND


def get_kind(name: str) -> Kind:
    """The kind named by ``task.kind``; imports its module (only that one) on first use."""
    check_choice("task.kind", name, TASK_KINDS)
    return {**SINGLE_KINDS, "multitask": _multitask}[name]()
