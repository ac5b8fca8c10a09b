"""Every exported network behind one signature: ``(input_ids, attention_mask[, token_type_ids]) -> logits``, what
the PyTorch backend (``served``) and the ONNX exporter (``onnx``) both take."""

from __future__ import annotations

import torch
from torch import nn

from encoderlab.models.heads import FeatureModel


class LogitsModule(nn.Module):
    """Any exported network (HF head model or FeatureModel) as ``(input_ids, attention_mask[, token_type_ids])
    -> logits``; a QA model's start and end logits are stacked on the last axis."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        if isinstance(self.model, FeatureModel):
            batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(batch)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        if hasattr(out, "start_logits"):
            return torch.stack([out.start_logits, out.end_logits], dim=-1)
        return out.logits
