"""The kinds that train one task: :func:`get_single_kind` imports the package of the kind a run needs and no other.
Multi-task builds on these; :func:`encoderlab.kinds.get_kind` adds it."""

from __future__ import annotations

from collections.abc import Callable

from encoderlab.errors import check_choice
from encoderlab.kinds.base import Kind


def _sequence() -> Kind:
    from encoderlab.kinds.sequence.kind import KIND

    return KIND


def _sequence_regression() -> Kind:
    from encoderlab.kinds.sequence.kind import REGRESSION_KIND

    return REGRESSION_KIND


def _token_classification() -> Kind:
    from encoderlab.kinds.token_classification.kind import KIND

    return KIND


def _question_answering() -> Kind:
    from encoderlab.kinds.question_answering.kind import KIND

    return KIND


def _pretraining() -> Kind:
    from encoderlab.kinds.pretraining.kind import KIND

    return KIND


# names.TASK_KINDS and the loaders here and in encoderlab.kinds list the same kinds (tests/config/test_names.py)
SINGLE_KINDS: dict[str, Callable[[], Kind]] = {
    "sequence_classification": _sequence,
    "sequence_regression": _sequence_regression,
    "token_classification": _token_classification,
    "question_answering": _question_answering,
    "pretraining": _pretraining,
}


def get_single_kind(name: str) -> Kind:
    """The single-task kind named by ``task.kind``; imports its module (only that one) on first use."""
    check_choice("task.kind", name, SINGLE_KINDS)
    return SINGLE_KINDS[name]()
