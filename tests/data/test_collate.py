"""Batching: dynamic padding per batch, length buckets, and the DataModule's loaders."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest
import torch
from support import reviews_task

from encoderlab.config.schema import RunConfig, SpeedConfig
from encoderlab.data.collate import BucketBatchSampler, PadCollator, eval_shard, sorted_batches
from encoderlab.data.datamodule import EncoderDataModule
from encoderlab.errors import DataError
from encoderlab.kinds.sequence import kind as kind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def rows(*lengths: int, labels: bool = True) -> list[dict]:
    out = []
    for i, n in enumerate(lengths):
        r = {"input_ids": list(range(101, 101 + n)), "attention_mask": [1] * n, "token_type_ids": [0] * n}
        if labels:
            r["labels"] = i % 2
        out.append(r)
    return out


def test_pads_to_the_longest_example_of_the_batch():
    batch = PadCollator(pad_token_id=0)(rows(3, 7, 5))
    assert batch["input_ids"].shape == (3, 7)
    assert batch["attention_mask"].sum(1).tolist() == [3, 7, 5]
    assert batch["input_ids"][0, 3:].eq(0).all() and batch["token_type_ids"][0, 3:].eq(0).all()
    assert batch["labels"].tolist() == [0, 1, 0] and batch["labels"].dtype == torch.long


def test_max_length_and_multiple_of():
    assert PadCollator(0, max_length=32)(rows(3, 7))["input_ids"].shape == (2, 32)
    assert PadCollator(0, pad_to_multiple_of=8)(rows(3, 9))["input_ids"].shape == (2, 16)


def test_per_token_labels_pad_with_minus_100():
    r = rows(2, 4, labels=False)
    r[0]["labels"], r[1]["labels"] = [1, 2], [3, 4, 5, 6]
    batch = PadCollator(0)(r)
    assert batch["labels"].tolist() == [[1, 2, -100, -100], [3, 4, 5, 6]]


def test_float_targets_stay_floats():
    r = rows(2, 3, labels=False)
    r[0]["labels"], r[1]["labels"] = 0.5, 4.0
    assert PadCollator(0)(r)["labels"].dtype == torch.float32


@pytest.fixture()
def lengths() -> list[int]:
    rng = random.Random(0)
    return [rng.randint(3, 120) for _ in range(1003)]


def test_bucket_sampler_yields_each_index_once_per_epoch(lengths):
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=1, bucket_size=10)
    for _ in range(2):
        batches = list(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        assert len(batches) == len(sampler) == 63
        assert all(len(b) == 16 for b in batches if len(b) != 1003 % 16)


def test_bucket_sampler_batches_similar_lengths(lengths):
    def spread(batches):
        return statistics.mean(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)

    bucketed = list(BucketBatchSampler(lengths, batch_size=16, seed=1, bucket_size=10))
    order = list(range(len(lengths)))
    random.Random(1).shuffle(order)
    shuffled = [order[i : i + 16] for i in range(0, len(order), 16)]
    assert spread(bucketed) < spread(shuffled) / 5


def test_bucket_sampler_order_changes_per_epoch_and_is_seeded(lengths):
    a = BucketBatchSampler(lengths, batch_size=16, seed=1)
    e0, e1 = list(a), list(a)
    assert e0 != e1
    b = BucketBatchSampler(lengths, batch_size=16, seed=1)
    assert list(b) == e0 and list(b) == e1
    c = BucketBatchSampler(lengths, batch_size=16, seed=1)
    c.set_epoch(1)
    assert list(c) == e1


def test_bucket_sampler_gives_every_rank_the_same_number_of_batches(lengths):
    ranks = [BucketBatchSampler(lengths, batch_size=16, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == len(ranks[0]) == len(ranks[1]) == 31
    seen = [{i for b in bs for i in b} for bs in batches]
    assert not seen[0] & seen[1]  # the ranks share one permutation and split it
    assert len(seen[0] | seen[1]) >= len(lengths) - 16  # at most the odd batch is left out


def test_bucket_sampler_drop_last(lengths):
    batches = list(BucketBatchSampler(lengths, batch_size=16, drop_last=True))
    assert all(len(b) == 16 for b in batches) and len(batches) == 1003 // 16


def test_sorted_batches_go_longest_first_and_cover_everything():
    batches = sorted_batches([5, 9, 1, 7, 3], 2)
    assert batches == [[1, 3], [0, 4], [2]]


def _prepared(tokenizer, max_len: int, speed: SpeedConfig):
    task = reviews_task(max_seq_length=max_len)
    run = RunConfig(task=task, speed=speed)
    return kind.prepare(run, tokenizer, None)


@pytest.mark.parametrize(("n", "batch_size", "world"), [(11, 4, 2), (9, 4, 2), (5, 128, 2), (5, 2, 4), (7, 3, 3)])
def test_ranks_evaluate_every_row_exactly_once_each_with_a_batch(n, batch_size, world):
    lengths = [random.Random(n + i).randint(1, 40) for i in range(n)]

    shards = [eval_shard(lengths, batch_size, world, rank) for rank in range(world)]

    seen = sorted(i for shard in shards for batch in shard for i in batch)
    assert seen == list(range(n))  # no repeated row, none left out (DistributedSampler would pad)
    assert all(len(shard) >= 1 for shard in shards)  # no rank waits in a collective alone
    assert all(0 < len(b) <= batch_size for shard in shards for b in shard)


def test_the_ranks_share_the_batches_of_one_process_when_there_are_enough():
    lengths = [random.Random(i).randint(1, 40) for i in range(30)]
    one = sorted_batches(lengths, 4)

    two = eval_shard(lengths, 4, 2, 0) + eval_shard(lengths, 4, 2, 1)

    assert sorted(two) == sorted(one)  # the same batches: the same padding, the same logits


def test_a_split_smaller_than_the_number_of_processes_names_what_to_change():
    with pytest.raises(DataError, match=r"validation split has 1 row.*trainer.devices"):
        eval_shard([5], 8, 2, 0, "validation")


@pytest.mark.parametrize("bucket", [True, False])
def test_train_batches_pad_to_their_longest_example_not_max_seq_length(tokenizer, bucket):
    speed = SpeedConfig(bucket_by_length=bucket)
    p = _prepared(tokenizer, 64, speed)
    dm = EncoderDataModule(p.datasets, p.collator, 8, 16, speed, seed=0)
    seen = 0
    for batch in dm.train_dataloader():
        longest = int(batch["attention_mask"].sum(1).max())
        assert batch["input_ids"].shape[1] == longest < 64
        seen += len(batch["labels"])
    assert seen == len(p.datasets["train"])


def test_padding_max_length_pads_every_batch_to_max_seq_length(tokenizer):
    speed = SpeedConfig(padding="max_length")
    p = _prepared(tokenizer, 48, speed)
    dm = EncoderDataModule(p.datasets, p.collator, 8, 16, speed, seed=0)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        assert {b["input_ids"].shape[1] for b in loader} == {48}


def test_eval_batches_are_larger_and_sorted_by_length(tokenizer):
    p = _prepared(tokenizer, 64, SpeedConfig())
    dm = EncoderDataModule(p.datasets, p.collator, 4, 8, SpeedConfig(), seed=0)
    widths = [b["input_ids"].shape[1] for b in dm.test_dataloader()]
    assert widths == sorted(widths, reverse=True)
    assert max(len(b["labels"]) for b in dm.test_dataloader()) == 8
