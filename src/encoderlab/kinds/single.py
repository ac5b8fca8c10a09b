"""The kinds that train one task: :func:`get_single_kind` imports the package of the kind a run needs and no other.
Multi-task builds on these; :func:`encoderlab.kinds.get_kind` adds it."""

from __future__ import annotations

from encoderlab.kinds.base import Kind


def get_single_kind(name: str) -> Kind:
    """The single-task kind named by ``task.kind``; imports its module (only that one) on first use."""
    if name in ("sequence_classification", "sequence_regression"):
        from encoderlab.kinds.sequence.kind import KIND as sequence

        return sequence
    if name == "token_classification":
        from encoderlab.kinds.token_classification.kind import KIND as token_classification

        return token_classification
    if name == "question_answering":
        from encoderlab.kinds.question_answering.kind import KIND as question_answering

        return question_answering
    if name == "pretraining":
        from encoderlab.kinds.pretraining.kind import KIND as pretraining

        return pretraining
    # names.TASK_KINDS and the branches here and in get_kind list the same kinds (tests/config/test_names.py checks it)
    raise AssertionError(f"task.kind {name!r} has no module in get_kind")
