"""The fine-tuning strategies: one object per ``finetune.strategy``, each a :class:`~.base.Strategy`.

A built-in strategy is the module ``encoderlab.strategies.<name>`` (a package for the larger ones, such as
``setfit``) whose ``STRATEGY`` is that object, with its config file ``conf/finetune/<name>.yaml``; a strategy defined
anywhere else joins with :func:`register`. :func:`get_strategy` imports the module of the strategy a run names and
no other, so nothing heavy is imported before a run asks for it. The runner, the module, the heads and the freezing
call the object's hooks; none of them names a strategy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from encoderlab.errors import check_choice
from encoderlab.names import STRATEGIES

if TYPE_CHECKING:
    from encoderlab.strategies.base import Strategy

_REGISTERED: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add a strategy defined outside this package (its ``name`` is what ``finetune.strategy`` selects); a later
    registration of the same name replaces the earlier one. Returns ``strategy``."""
    if not strategy.name:
        raise ValueError("a strategy needs a name: set the class attribute `name`")
    _REGISTERED[strategy.name] = strategy
    return strategy


def _modules() -> list[str]:
    """The strategies' modules in this package (``base`` is what they share, not a strategy)."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def strategy_names() -> tuple[str, ...]:
    """Every name ``finetune.strategy`` accepts: the built-in ones (``names.STRATEGIES`` first, in its order, then
    any other module of this package), then the registered ones."""
    built_in = (*STRATEGIES, *(m for m in _modules() if m not in STRATEGIES))
    return (*built_in, *(n for n in _REGISTERED if n not in built_in))


def get_strategy(name: str) -> Strategy:
    """The strategy named by ``finetune.strategy``; imports its module (only that one) on first use."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    check_choice("finetune.strategy", name, strategy_names())
    return importlib.import_module(f"{__name__}.{name}").STRATEGY


def own_loop(strategy: str):
    """The training function of a strategy that trains outside Lightning's stages; None for the others."""
    return get_strategy(strategy).own_loop()


def unread_sections(strategy: str) -> list[str]:
    """The RunConfig sections that belong to other strategies than ``strategy`` (``Strategy.sections``): a run's
    config hash leaves them out, so it stays what it was before those strategies existed."""
    own = set(get_strategy(strategy).sections)
    return [s for name in strategy_names() for s in get_strategy(name).sections if s not in own]
