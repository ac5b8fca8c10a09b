"""LoRA (Hu et al. 2021) through ``peft``: low-rank adapters on chosen linear layers, the task head trains fully.

The base weights stay frozen; ``peft`` adds ``lora_A``/``lora_B`` beside each targeted layer. The head trains
fully: every parameter outside the base encoder (classifier, NER and QA outputs) and BERT's pooler, which is part
of its sequence-classification head (the pooler of a sentence-embedding checkpoint such as MiniLM was never trained
for the [CLS] vector it reads). At export the adapters are merged into the base weights (``merge_and_unload``), so
the ``hf/`` folder is a plain Hugging Face model that ``transformers.pipeline`` loads without peft.
"""

from __future__ import annotations

import copy

from torch import nn

from encoderlab.config.schema import FinetuneConfig
from encoderlab.errors import ConfigError
from encoderlab.training.freezing import apply_strategy  # noqa: F401  (the strategy's network, as before)
from encoderlab.training.param_groups import encoder_of


def _linear_names(model: nn.Module) -> list[str]:
    """Last name parts of the encoder's linear layers, what ``finetune.lora_target_modules`` can name."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in encoder_of(model).named_modules() if isinstance(m, nn.Linear)})


def apply_lora(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """``model`` wrapped with LoRA adapters; only the adapters and the head have ``requires_grad``."""
    from peft import LoraConfig, get_peft_model

    encoder = encoder_of(model)
    head = [p for p in model.parameters() if id(p) not in {id(q) for q in encoder.parameters()}]
    # BERT's classification head is pooler + classifier (RoBERTa's dense + out_proj sit in its `classifier`)
    pooler = getattr(encoder, "pooler", None)
    head += list(pooler.parameters()) if isinstance(pooler, nn.Module) and model is not encoder else []
    targets = list(cfg.lora_target_modules)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        bias="none",
    )
    try:
        wrapped = get_peft_model(model, lora)
    except ValueError as e:  # peft's NoMatchingPeftModuleError is a ValueError
        if "not found" not in str(e) and "target" not in str(e).lower():
            raise
        raise ConfigError(
            "finetune.lora_target_modules",
            f"{targets} match no layer of the model; linear layers of the encoder: {', '.join(_linear_names(model))}",
        ) from None
    for p in head:
        p.requires_grad_(True)
    return wrapped


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def merged(model: nn.Module) -> nn.Module:
    """A plain Hugging Face model with the adapters folded into the weights (a copy: ``model`` keeps its
    adapters), or ``model`` itself when it has none."""
    if not is_lora(model):
        return model
    return copy.deepcopy(model).merge_and_unload()
