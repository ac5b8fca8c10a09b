"""``finetune=frozen``: a linear probe; the encoder is frozen and a linear head on its last layer's sentence vector
learns (conf/finetune/frozen.yaml holds the head's LR)."""

from __future__ import annotations

from encoderlab.strategies.base import Strategy, freeze_encoder


class Frozen(Strategy):
    name = "frozen"
    frozen_encoder = True
    keeps_encoder_fixed = True

    def feature_layers(self, cfg):
        return "last", "linear"

    def freeze(self, model, cfg, n_layers):
        freeze_encoder(model)


STRATEGY = Frozen()
