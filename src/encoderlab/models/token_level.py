"""What the token-level kinds share (token classification, question answering): one output vector per token.

The network is a Hugging Face ``*For{Token Classification,Question Answering}`` with the strategy's freezing, or
a frozen encoder with a per-token head (:class:`~encoderlab.models.heads.FeatureModel`); both give
``[batch, tokens, outputs]`` logits through :func:`token_logits`, and both export to a folder
``transformers.pipeline`` loads when they can (:func:`export_token_model`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from encoderlab.config.schema import RunConfig
from encoderlab.models.encoder import build_model, check_length, save_pretrained
from encoderlab.models.heads import FeatureModel, export_feature_model, feature_model
from encoderlab.models.module import EncoderModule
from encoderlab.training.freezing import apply_strategy, exported

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# the module's stage -> the split it evaluates
EVAL_SPLITS = {"val": "validation", "test": "test"}


def token_logits(network: nn.Module, batch: dict) -> torch.Tensor:
    """``[batch, tokens, outputs]`` from a HF token head or a FeatureModel (whose batch may hold cached features)."""
    if isinstance(network, FeatureModel):
        return network(batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    out = network(**inputs)
    if hasattr(out, "start_logits"):  # *ForQuestionAnswering: one start and one end logit per token
        return torch.stack([out.start_logits, out.end_logits], dim=-1)
    return out.logits


def build_token_network(run: RunConfig, auto_cls, config, num_outputs: int) -> nn.Module:
    """A HF head model with the strategy's freezing applied, or a frozen encoder + per-token head."""
    check_length(run.task.max_seq_length, config)
    if run.finetune.frozen_encoder:
        return feature_model(run, config, num_outputs, token_level=True)
    network = build_model(run.model, auto_cls, config)
    return apply_strategy(network, run.finetune, config.num_hidden_layers)


def fold_linear_probe(net: FeatureModel, auto_cls, head_attr: str):
    """A linear head on the last layer *is* the HF head model: rebuild it, so pipelines load the export."""
    config = net.encoder.config
    last = [config.num_hidden_layers]
    if net.head.lstm is not None or net.head.combine != "single" or net.layers != last:
        return None
    head = net.head.classifier
    model = auto_cls.from_config(config)
    target = getattr(model, head_attr, None)
    if not (isinstance(head, nn.Linear) and isinstance(target, nn.Linear)):
        return None
    missing, _ = model.base_model.load_state_dict(net.encoder.state_dict(), strict=False)
    if missing:
        return None
    target.load_state_dict(head.state_dict())
    return model


def export_token_model(module: EncoderModule, tokenizer, out: Path, auto_cls, head_attr: str, meta: dict) -> None:
    net = module.network
    if not isinstance(net, FeatureModel):
        save_pretrained(exported(net, module.run), tokenizer, out)  # e.g. LoRA adapters folded into the weights
        return
    folded = fold_linear_probe(net, auto_cls, head_attr)
    if folded is not None:
        save_pretrained(folded, tokenizer, out)
        return
    log.info(
        "finetune.layers=%s with a %s head has no Hugging Face equivalent: hf/ holds encoder/ plus "
        "feature_head.pt (load both with encoderlab.models.heads.load_feature_model)",
        module.run.finetune.layers,
        module.run.finetune.head,
    )
    export_feature_model(net, tokenizer, out, meta)


__all__ = ["EVAL_SPLITS", "SPLITS", "build_token_network", "export_token_model", "fold_linear_probe", "token_logits"]
