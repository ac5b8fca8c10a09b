"""``finetune=feature_based`` (BERT Table 7): a frozen encoder; ``finetune.layers`` of its hidden states feed a small
head (``finetune.head``: linear, mlp or bilstm)."""

from __future__ import annotations

from encoderlab.strategies.base import Strategy, freeze_encoder


class FeatureBased(Strategy):
    name = "feature_based"
    frozen_encoder = True
    keeps_encoder_fixed = True

    def freeze(self, model, cfg, n_layers):
        freeze_encoder(model)

    def card_rows(self, cfg):
        return [("features", f"layers={cfg.get('layers')}, head={cfg.get('head')}")]


STRATEGY = FeatureBased()
