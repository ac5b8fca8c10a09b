"""The DataModule: prepared splits in, DataLoaders out (bucketed train batches, length-sorted eval batches).

It shards every loader itself under DDP (the Trainer runs with ``use_distributed_sampler=False``): train batches
are dealt out per rank, and evaluation batches are split between ranks *without* the duplicate rows that
``DistributedSampler`` pads the last shard with, so validation and test metrics under DDP count each row once
and equal those of one process.
Its ``state_dict`` (saved in every training checkpoint) says which epoch the train batches are in and how many
of them were trained on, so a resumed run sees exactly the remaining batches of that epoch, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from encoderlab.config.schema import SpeedConfig
from encoderlab.data.collate import BucketBatchSampler, SeededCollate, eval_shard, sorted_batches


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
        batching=None,
    ):
        super().__init__()
        self.rows = {k: RowDataset(to_rows(v)) for k, v in splits.items()}
        self.collator = collator
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.speed = speed
        self.seed = seed
        self.lengths = lengths or {k: _lengths(v.rows) for k, v in self.rows.items()}
        # multitask: a data.multitask.TaskBatching, so that every batch holds the rows of one task
        self.batching = batching
        self._train_sampler: BucketBatchSampler | None = None
        self._resume: dict | None = None  # from a checkpoint: applied to the next train loader

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        data = self.rows["train"]
        lengths = self.lengths.get("train") or [0] * len(data)
        world, rank = self._world()
        make = self.batching.train_sampler if self.batching is not None else BucketBatchSampler
        sampler = make(
            lengths,
            self.batch_size,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            sort=self.speed.bucket_by_length and self.lengths.get("train") is not None,
        )
        if self._resume is not None:
            sampler.resume(self._resume["train_epoch"], self._resume["train_batches_done"])
            self._resume = None
        self._train_sampler = sampler
        return _EpochLoader(data, sampler, SeededCollate(self.collator, self.seed), self.speed.num_workers, self.seed)

    def state_dict(self) -> dict:
        """Where the train batches stand: the epoch under way and how many of its batches were trained on."""
        trainer = getattr(self, "trainer", None)
        sampler = self._train_sampler
        if trainer is None or sampler is None or sampler.pass_epoch is None:
            return {}
        epoch, done = sampler.pass_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # the epoch is over: the next one starts from its first batch
            epoch, done = epoch + 1, 0
        return {"train_epoch": epoch, "train_batches_done": done}

    def load_state_dict(self, state: dict) -> None:
        if "train_epoch" in state:
            self._resume = dict(state)

    def _eval_loader(self, split: str) -> DataLoader:
        data = self.rows[split]
        lengths = self.lengths.get(split) or [1] * len(data)  # no lengths: batches in row order
        world, rank = self._world()
        if self.batching is not None:
            batches = self.batching.eval_batches(split, lengths, self.eval_batch_size, world, rank)
        elif world > 1:  # every rank evaluates its own batches; torchmetrics gathers the states, each row once
            batches = eval_shard(lengths, self.eval_batch_size, world, rank, split)
        else:
            batches = sorted_batches(lengths, self.eval_batch_size)
        return DataLoader(
            data,
            batch_sampler=batches,
            collate_fn=SeededCollate(self.collator, self.seed),
            num_workers=self.speed.num_workers,
            generator=_generator(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class _EpochLoader(DataLoader):
    """The train loader: tells the collator which epoch each pass is (its masks change every epoch), and is
    resumable for Lightning."""

    def __init__(self, data, sampler: BucketBatchSampler, collate: SeededCollate, num_workers: int, seed: int):
        # its own generator: starting a pass (worker seeds) draws nothing from the global RNG, which dropout uses
        super().__init__(
            data, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers, generator=_generator(seed)
        )

    def __iter__(self):
        self.collate_fn.epoch = self.batch_sampler.epoch
        return super().__iter__()

    # Lightning asks a loader for these to resume mid-epoch; the position lives in the data module's state
    # instead (always restored, while Lightning hands a loader its state only when it restarts mid-epoch)
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _lengths(rows: Sequence[dict]) -> list[int] | None:
    if not rows or "input_ids" not in rows[0]:
        return None
    return [len(r["input_ids"]) for r in rows]
