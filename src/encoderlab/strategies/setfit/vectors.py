"""Sentence vectors: the encoder's last layer pooled, as the exported :class:`FeatureModel` computes them."""

from __future__ import annotations

import torch
from torch import nn

from encoderlab.data.collate import sorted_batches
from encoderlab.models.heads import FeatureModel, pool


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on ``device`` (other entries dropped)."""
    return {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}


def sentence_vectors(encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
    """[B, H]: the last layer pooled as :class:`FeatureModel` pools it (so the export reproduces the run)."""
    mask = batch["attention_mask"]
    hidden = encoder(
        input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch.get("token_type_ids")
    ).last_hidden_state
    return pool(hidden[:, :, None, :], mask, pooling)[:, 0]


@torch.no_grad()
def encode(network: FeatureModel, rows: list[dict], collator, batch_size: int, device) -> torch.Tensor:
    """[N, 1, H] pooled features of ``rows`` in their order (batched by length, as evaluation is)."""
    out = torch.zeros(len(rows), 1, network.head.hidden)
    for idx in sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
        batch = to_device(collator([rows[i] for i in idx]), device)
        out[idx] = (
            network.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).float().cpu()
        )
    return out
