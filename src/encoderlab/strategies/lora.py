"""``finetune=lora`` (Hu et al. 2021, through peft): the encoder stays frozen, low-rank adapters on
``finetune.lora_target_modules`` learn with the head; merged into the base weights at export
(:mod:`encoderlab.training.lora`)."""

from __future__ import annotations

from encoderlab.strategies.base import Strategy


class Lora(Strategy):
    name = "lora"
    keeps_encoder_fixed = True

    def wrap(self, model, cfg, n_layers):
        from encoderlab.training.lora import apply_lora

        return apply_lora(model, cfg)

    def export_network(self, network):
        from encoderlab.training.lora import merged

        return merged(network)  # a plain Hugging Face model: transformers.pipeline loads it without peft


STRATEGY = Lora()
