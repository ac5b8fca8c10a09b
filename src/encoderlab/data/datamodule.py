"""The DataModule: prepared splits in, DataLoaders out (bucketed train batches, length-sorted eval batches).

It shards every loader itself under DDP (the Trainer runs with ``use_distributed_sampler=False``): train batches
are dealt out per rank, and evaluation batches are split between ranks *without* the duplicate rows that
``DistributedSampler`` pads the last shard with, so validation and test metrics under DDP count each row once
and equal those of one process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from encoderlab.config.schema import SpeedConfig
from encoderlab.data.collate import BucketBatchSampler, eval_shard, sorted_batches


class RowDataset(Dataset):
    """Plain Python rows: indexing a list is much cheaper than indexing an Arrow table row by row."""

    def __init__(self, rows: Sequence[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def to_rows(ds) -> list[dict]:
    if isinstance(ds, (list, RowDataset)):
        return list(ds)
    return ds.to_list()


class EncoderDataModule(pl.LightningDataModule):
    def __init__(
        self,
        splits: dict,
        collator: Callable,
        batch_size: int,
        eval_batch_size: int,
        speed: SpeedConfig,
        seed: int = 0,
        lengths: dict[str, list[int]] | None = None,
    ):
        super().__init__()
        self.rows = {k: RowDataset(to_rows(v)) for k, v in splits.items()}
        self.collator = collator
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.speed = speed
        self.seed = seed
        self.lengths = lengths or {k: _lengths(v.rows) for k, v in self.rows.items()}

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        data = self.rows["train"]
        lengths = self.lengths.get("train")
        world, rank = self._world()
        if self.speed.bucket_by_length and lengths is not None:
            sampler = BucketBatchSampler(lengths, self.batch_size, seed=self.seed, num_replicas=world, rank=rank)
            return DataLoader(data, batch_sampler=sampler, collate_fn=self.collator, num_workers=self.speed.num_workers)
        if world > 1:  # Lightning calls set_epoch on it: a new order every epoch
            shard = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            return DataLoader(
                data,
                batch_size=self.batch_size,
                sampler=shard,
                collate_fn=self.collator,
                num_workers=self.speed.num_workers,
            )
        return DataLoader(
            data, batch_size=self.batch_size, shuffle=True, collate_fn=self.collator, num_workers=self.speed.num_workers
        )

    def _eval_loader(self, split: str) -> DataLoader:
        data = self.rows[split]
        lengths = self.lengths.get(split) or [1] * len(data)  # no lengths: batches in row order
        world, rank = self._world()
        if world > 1:  # every rank evaluates its own batches; torchmetrics gathers the states, each row once
            batches = eval_shard(lengths, self.eval_batch_size, world, rank, split)
        else:
            batches = sorted_batches(lengths, self.eval_batch_size)
        return DataLoader(
            data,
            batch_sampler=batches,
            collate_fn=self.collator,
            num_workers=self.speed.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


def _lengths(rows: Sequence[dict]) -> list[int] | None:
    if not rows or "input_ids" not in rows[0]:
        return None
    return [len(r["input_ids"]) for r in rows]
