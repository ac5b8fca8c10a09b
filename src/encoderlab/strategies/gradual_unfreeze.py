"""``finetune=gradual_unfreeze``: ULMFiT's gradual unfreezing (Howard & Ruder 2018). Every weight stays trainable
(DDP fixes that set when it wraps); before each optimizer step the module applies the
:class:`~encoderlab.training.freezing.GradualUnfreezer`, which gives the layers not yet thawed LR 0."""

from __future__ import annotations

import logging

from encoderlab.strategies.base import Strategy
from encoderlab.training.freezing import GradualUnfreezer

log = logging.getLogger(__name__)


class GradualUnfreeze(Strategy):
    name = "gradual_unfreeze"
    per_layer = True

    def step_hook(self, cfg, n_layers, total_steps, steps_per_epoch):
        unfreezer = GradualUnfreezer.from_config(cfg, n_layers, total_steps, steps_per_epoch)
        log.info("gradual unfreezing: thaws at optimizer steps %s of %d", list(unfreezer.thaw_steps), total_steps)
        return unfreezer


STRATEGY = GradualUnfreeze()
