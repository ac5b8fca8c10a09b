"""``finetune=full``: every weight learns (Devlin et al. 2019). The defaults of :class:`Strategy` are this."""

from __future__ import annotations

from encoderlab.strategies.base import Strategy


class Full(Strategy):
    name = "full"


STRATEGY = Full()
