"""Batching: dynamic padding per batch and length-bucketed sampling.

Padding every example to ``max_seq_length`` wastes most of the compute on short texts (Rotten Tomatoes
snippets average ~25 tokens); padding per batch, and batching examples of similar length together, removes
most of it without changing what is learned.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Sampler

from encoderlab.errors import DataError

if TYPE_CHECKING:
    from encoderlab.config.schema import RunConfig


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
    Seeded per epoch, so an epoch's batches depend only on (seed, epoch): runs are reproducible, and a run
    resumed in the middle of an epoch gets the rest of that very epoch (``resume``). With ``sort=False`` the
    batches are plainly shuffled (``speed.bucket_by_length=false``).
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
        sort: bool = True,
    ):
        self.lengths = list(lengths)
        self.num_replicas = num_replicas  # under DDP each rank takes every num_replicas-th batch
        self.rank = rank
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = bucket_size * batch_size
        self.drop_last = drop_last
        self.sort = sort
        self.epoch = 0  # the epoch of the next pass
        self.pass_epoch: int | None = None  # the epoch of the pass under way
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """The next pass is ``epoch`` without its first ``batches_done`` batches, which a run trained on
        before it was interrupted. ``len()`` stays the epoch's full length: the Trainer counts the done ones."""
        self.epoch, self._skip = epoch, batches_done

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``, in order."""
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        batches = []
        for start in range(0, len(order), self.bucket):
            chunk = order[start : start + self.bucket]
            if self.sort:
                chunk = sorted(chunk, key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        perm = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[i] for i in perm]
        return batches[self.rank :: self.num_replicas][: len(self)]

    def __iter__(self) -> Iterator[list[int]]:
        self.pass_epoch, skip = self.epoch, self._skip
        self.epoch, self._skip = self.epoch + 1, 0  # Lightning does not call set_epoch on custom batch samplers
        return iter(self.batches(self.pass_epoch)[skip:])

    def _num_batches(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full if self.drop_last else full + (rest > 0)

    def __len__(self) -> int:
        # equal counts on every rank, so no rank waits in a collective for a batch that never comes
        return self._num_batches() // self.num_replicas


class SeededCollate:
    """A collator whose randomness (dynamic masking) comes from (seed, epoch, the batch's tokens), not from the
    global RNG.

    Batches are collated ahead of the training step that uses them (Lightning prefetches one; workers more),
    so a collator that drew from the global RNG would interleave its draws with dropout's, and a run resumed
    from a checkpoint could not replay either stream. Seeded per batch, the same batch of the same epoch is
    masked the same way in any run, resumed or not, whatever the workers, and dropout keeps the global RNG to
    itself. Rows without ``input_ids`` (cached features) are collated as they are.
    """

    def __init__(self, collate, seed: int):
        self.collate = collate
        self.seed = seed
        self.epoch = 0  # set by the loader before each pass

    def __call__(self, examples: Sequence[dict]):
        if not examples or "input_ids" not in examples[0]:
            return self.collate(examples)
        key = self.seed & 0xFFFFFFFF
        for e in examples:
            ids = e["input_ids"]
            if len(ids) and isinstance(ids[0], (list, tuple)):  # a long text's chunks: their tokens in order
                ids = [t for chunk in ids for t in chunk]
            key = zlib.crc32(np.asarray(ids, dtype=np.int64).tobytes(), key)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((key << 20) + self.epoch)
            return self.collate(examples)


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


def pad_collator(run: RunConfig, tokenizer) -> PadCollator:
    """The run's padding (``speed.padding``, ``speed.pad_to_multiple_of``) for the tokenizer's pad id."""
    return PadCollator(
        tokenizer.pad_token_id,
        pad_to_multiple_of=run.speed.pad_to_multiple_of,
        max_length=run.task.max_seq_length if run.speed.padding == "max_length" else None,
    )
