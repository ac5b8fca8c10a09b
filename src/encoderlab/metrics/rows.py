"""Per-row outputs kept whole until the epoch ends, for scores that need every row at once.

NER scores sentences (entity spans cross the sub-tokens of a word), QA scores questions (the windows of one
question are post-processed together): neither is a sum of per-batch numbers. :class:`RowOutputs` keeps each
evaluated row's output vector (a sentence's word tags, a window's start and end logits) under the row's index, as
``torchmetrics`` list states: torchmetrics gathers them from every process at ``compute`` (ranks evaluate different
rows) and empties them at ``reset``. Subclasses turn the rows into scores in ``compute``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class RowOutputs(Metric):
    """Variable-length vectors per row, one per name in ``fields``, keyed by row index.

    States are float64 (exact for indices, tag ids and float32 logits) so that every state of every rank has one
    dtype, also the empty state torchmetrics sends for a rank that evaluated no row.
    """

    full_state_update = False

    def __init__(self, fields: tuple[str, ...], **kwargs):
        super().__init__(**kwargs)
        self.fields = tuple(fields)
        self.add_state("row_index", default=[], dist_reduce_fx="cat")
        self.add_state("row_length", default=[], dist_reduce_fx="cat")
        for name in self.fields:
            self.add_state(f"row_{name}", default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)

    def update(self, index: Tensor, lengths: Tensor, **values: Tensor) -> None:
        """``index`` and ``lengths``: ``[batch]``; each of ``fields``: ``[batch, T]``, of which row j keeps its first
        ``lengths[j]`` entries."""
        lengths = lengths.to(self.device).long()
        self.row_index.append(index.to(self.device, self.dtype))
        self.row_length.append(lengths.to(self.dtype))
        for name in self.fields:
            v = values[name].detach().to(self.device)
            keep = torch.arange(v.shape[1], device=self.device)[None, :] < lengths[:, None]
            getattr(self, f"row_{name}").append(v[keep].to(self.dtype))  # row-major: row 0's entries, then row 1's

    def rows(self) -> dict[int, tuple[Tensor, ...]]:
        """Row index -> one float64 vector per field, in order of index; empty when no process evaluated a row.
        Call it in ``compute``, where the states hold every process's rows."""
        if isinstance(self.row_index, list) and not self.row_index:
            return {}
        index = dim_zero_cat(self.row_index).long().tolist()
        lengths = dim_zero_cat(self.row_length).long().tolist()
        if not index:
            return {}
        parts = [torch.split(dim_zero_cat(getattr(self, f"row_{n}")).cpu(), lengths) for n in self.fields]
        found = {i: tuple(p[j] for p in parts) for j, i in enumerate(index)}
        return {i: found[i] for i in sorted(found)}


__all__ = ["RowOutputs"]
