"""Batching: dynamic padding per batch and length-bucketed sampling.

Padding every example to ``max_seq_length`` wastes most of the compute on short texts (Rotten Tomatoes
snippets average ~25 tokens); padding per batch, and batching examples of similar length together, removes
most of it without changing what is learned.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from encoderlab.errors import DataError


class PadCollator:
    """Pads the tokenizer's fields to the longest in the batch; other fields are stacked as tensors."""

    def __init__(
        self,
        pad_token_id: int,
        pad_to_multiple_of: int | None = None,
        max_length: int | None = None,
        label_pad: int = -100,
    ):
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of
        self.max_length = max_length  # set: always pad to this length (speed.padding=max_length)
        self.label_pad = label_pad

    def _target_len(self, longest: int) -> int:
        n = self.max_length or longest
        if self.multiple:
            n = int(math.ceil(n / self.multiple) * self.multiple)
        return n

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        n = self._target_len(max(len(e["input_ids"]) for e in examples))
        batch: dict[str, torch.Tensor] = {}
        for key in examples[0]:
            values = [e[key] for e in examples]
            if key in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "word_start"):
                fill = self.pad_token_id if key == "input_ids" else 0
                batch[key] = _pad(values, n, fill)
            elif isinstance(values[0], (list, tuple)):  # per-token labels
                batch[key] = _pad(values, n, self.label_pad)
            elif isinstance(values[0], (int, float, bool)) or torch.is_tensor(values[0]):
                batch[key] = torch.as_tensor(values)
        return batch


def _pad(seqs: Sequence[Sequence[int]], n: int, fill: int) -> torch.Tensor:
    out = torch.full((len(seqs), n), fill, dtype=torch.long)
    for i, s in enumerate(seqs):
        s = list(s)[:n]
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length examples.

    Examples are shuffled, cut into chunks of ``bucket_size`` batches, sorted by length inside each chunk,
    batched, and the batches shuffled again: every epoch sees a new order, while padding stays small.
    Seeded per epoch (``set_epoch``) so runs are reproducible.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        bucket_size: int = 50,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.lengths = list(lengths)
        self.num_replicas = num_replicas  # under DDP each rank takes every num_replicas-th batch
        self.rank = rank
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = bucket_size * batch_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        batches = []
        for start in range(0, len(order), self.bucket):
            chunk = sorted(order[start : start + self.bucket], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        perm = torch.randperm(len(batches), generator=g).tolist()
        self.epoch += 1  # Lightning does not call set_epoch on custom batch samplers
        batches = [batches[i] for i in perm]
        per_rank = len(self)
        return iter(batches[self.rank :: self.num_replicas][:per_rank])

    def _num_batches(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full if self.drop_last else full + (rest > 0)

    def __len__(self) -> int:
        # equal counts on every rank, so no rank waits in a collective for a batch that never comes
        return self._num_batches() // self.num_replicas


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches in length order (longest first): least padding, and OOM shows up at once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def eval_shard(
    lengths: Sequence[int], batch_size: int, world: int, rank: int, split: str = "evaluation"
) -> list[list[int]]:
    """This rank's evaluation batches under DDP: the batches of :func:`sorted_batches` dealt out in turn.

    No row is repeated and none left out (``DistributedSampler`` pads the last shard with repeated rows, which the
    metrics would count), so metrics gathered over the ranks equal those of one process. Every rank gets at least
    one batch, because the first forward pass after training is a collective under DDP: a split with fewer batches
    than ranks is cut into ``world`` smaller ones.
    """
    n = len(lengths)
    if n < world:
        raise DataError(
            f"the {split} split has {n} row(s), fewer than the {world} processes of this run; give it more rows "
            "(task.validation_size / task.test_size / task.max_eval_samples) or run on fewer devices (trainer.devices)"
        )
    batches = sorted_batches(lengths, batch_size)
    if len(batches) < world:
        order = [i for b in batches for i in b]
        bounds = [j * n // world for j in range(world + 1)]
        batches = [order[bounds[j] : bounds[j + 1]] for j in range(world)]
    return batches[rank::world]
