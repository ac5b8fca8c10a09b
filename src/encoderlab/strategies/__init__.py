"""Fine-tuning strategies that bring their own training loop instead of Lightning's.

A strategy that trains outside the Lightning ``fit -> test -> export`` stages registers here, by its
``finetune.strategy`` name, the function that runs it: ``fn(run, run_dir, overrides) -> dict``, which reads its data,
trains, writes ``hf/`` (and its model card) and the predictions files into ``run_dir``, and returns the summary
fields of a finished run (``val``, ``test``, ``steps``, ``train_seconds``, ``data``, ...). The runner looks the
strategy up with :func:`own_loop` and records the result in ``summary.json`` and the loggers as for any run; it names
no strategy. Entries are import paths, so nothing heavy is imported before a run asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

OWN_LOOPS: dict[str, str] = {
    "setfit": "encoderlab.strategies.setfit.run:fit_setfit",
}


def own_loop(strategy: str) -> Callable[..., dict] | None:
    """The training function registered for ``strategy``; None for the strategies the Lightning stages train."""
    target = OWN_LOOPS.get(strategy)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
