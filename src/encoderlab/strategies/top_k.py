"""``finetune=top_k``: the top ``finetune.k`` encoder layers, the pooler and the head learn; the lower layers and
the embeddings stay frozen (the embeddings learn too with ``finetune.train_embeddings``)."""

from __future__ import annotations

from encoderlab.errors import ConfigError
from encoderlab.strategies.base import Strategy
from encoderlab.training.param_groups import named_layer_ids


class TopK(Strategy):
    name = "top_k"
    per_layer = True

    def freeze(self, model, cfg, n_layers):
        if cfg.k > n_layers:
            msg = f"k={cfg.k} is larger than the {n_layers} layers of the model; use 1..{n_layers}"
            raise ConfigError("finetune.k", msg)
        lowest_trained = n_layers + 1 - cfg.k  # layer id of the lowest trained encoder layer
        for _, p, lid in named_layer_ids(model, n_layers):
            frozen = (lid == 0 and not cfg.train_embeddings) or 0 < lid < lowest_trained
            p.requires_grad_(not frozen)

    def card_rows(self, cfg):
        return [("top-k layers", cfg.get("k"))]


STRATEGY = TopK()
