"""The model families (``model.family``): an encoder, which the Lightning stages train, or a baseline that brings
its own training loop. The runner asks :func:`family_loop` and names no family; a family with a loop trains
outside Lightning and returns the summary fields of a finished run, as a strategy with its own loop does
(:meth:`encoderlab.strategies.base.Strategy.own_loop`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from encoderlab.errors import check_choice
from encoderlab.names import MODEL_FAMILIES

# "module:function" of each family's loop, ``fn(run, run_dir, overrides) -> dict``; None: the Lightning stages
FAMILY_LOOPS: dict[str, str | None] = {
    "encoder": None,
    "tfidf_logreg": "encoderlab.models.tfidf:fit_tfidf_logreg",  # scikit-learn: no tokenizer, no Lightning
}


def family_loop(family: str) -> Callable[..., dict] | None:
    """The training function of ``model.family`` when it is not an encoder trained by the Lightning stages."""
    check_choice("model.family", family, MODEL_FAMILIES)
    target = FAMILY_LOOPS[family]
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
