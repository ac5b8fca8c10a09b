"""Training FLOPs, and budgets in them: ``+trainer.extra.max_flops=<FLOPs>`` stops a run when its model has done that
much training compute, on any machine.

The count is the usual estimate for a transformer (Kaplan et al. 2020): ``6 x N x tokens``, with ``N`` the network's
parameters outside its embeddings (word, position and token-type embeddings are lookups, not matmuls) and ``tokens``
the non-padding tokens trained on (forward 2 FLOPs per parameter and token, backward 4). Attention's own
``seq_len x hidden`` term and a sparse MLM head's savings are left out: both are small at these lengths. The count
goes into ``summary.json`` (``train_flops``) for every run and into each checkpoint, so a resumed run continues
from the FLOPs its earlier attempts spent.

With ``scheduler.clock=flops`` the LR schedule follows the FLOP budget as ``scheduler.clock=time`` follows the time
budget: it is evaluated at ``max(step, flops / max_flops x total_steps)``, so warmup and decay end with the budget.

What a budget means: 20 minutes of fp32 BERT-mini pre-training (``model=bert_mini_preln``, 3.23M non-embedding
parameters with its MLM head) on a 2-core AVX2 CPU that trains ~2,160 tokens/s is ~2.6M tokens, i.e.
``6 x 3.23e6 x 2.6e6 = 5.0e13`` FLOPs: ``+trainer.extra.max_flops=5e13``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

EMBEDDING_NAMES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def non_embedding_params(network: nn.Module) -> int:
    """Parameters outside the embedding tables (each shared tensor once: a tied MLM decoder is the embedding)."""
    return sum(p.numel() for name, p in network.named_parameters() if not any(e in name for e in EMBEDDING_NAMES))


def train_flops(params: int, tokens: int) -> float:
    """``6 x params x tokens``."""
    return 6.0 * params * tokens


class FlopCounter(pl.Callback):
    """Counts the training FLOPs; with ``max_flops`` it stops the run at the first step that reaches them.

    Without a budget the token counts are read lazily (no device sync per step); with one, every step (all ranks add
    theirs, so every rank stops at the same step).
    """

    def __init__(self, max_flops: float | None = None):
        self.max_flops = max_flops
        self.params = 0
        self.flops_before = 0.0  # earlier attempts (from the checkpoint)
        self.tokens = 0
        self.ranks = 1  # without a budget each rank counts its own tokens: the total is ~ranks x rank 0's count
        self._pending: list[torch.Tensor] = []

    @property
    def flops(self) -> float:
        if self._pending:
            self.tokens += int(torch.stack(self._pending).sum())
            self._pending = []
        ranks = self.ranks if self.max_flops is None else 1  # with a budget the ranks' tokens are summed every step
        return self.flops_before + train_flops(self.params, self.tokens * ranks)

    def fraction(self) -> float:
        """The share of the budget spent (``scheduler.clock=flops``)."""
        return self.flops / self.max_flops if self.max_flops else 0.0

    def on_fit_start(self, trainer, pl_module):
        network = getattr(pl_module, "network", pl_module)
        self.params = non_embedding_params(network)
        self.ranks = trainer.world_size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        """Counted before the step: the LR scheduler steps before ``on_train_batch_end``, and must see this step's
        FLOPs (the last step of a budget ends the schedule)."""
        if not isinstance(batch, dict) or "attention_mask" not in batch:
            return
        tokens = batch["attention_mask"].sum()
        if self.max_flops is None:
            self._pending.append(tokens.detach())
            if len(self._pending) >= 256:
                self._pending = [torch.stack(self._pending).sum()]
            return
        if trainer.world_size > 1:
            tokens = trainer.strategy.reduce(tokens.float(), reduce_op="sum")
        self.tokens += int(tokens)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.max_flops is not None and self.flops >= self.max_flops:
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"flops": self.flops}

    def load_state_dict(self, state: dict) -> None:
        self.flops_before = float(state.get("flops", 0.0))
        self.tokens = 0
        self._pending = []
