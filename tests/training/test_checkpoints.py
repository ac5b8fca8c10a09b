"""The pieces of resuming, one at a time: atomic checkpoint writes, the sampler's position, seeded collation, the
RNG states, and the config keys that say nothing about what a run computes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from encoderlab.config.schema import RunConfig
from encoderlab.data.collate import BucketBatchSampler, SeededCollate
from encoderlab.errors import ConfigError
from encoderlab.training.checkpoints import AtomicCheckpointIO, RngState


def test_a_checkpoint_write_that_dies_halfway_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 6, "w": torch.arange(4)}, path)

    def dies_halfway(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError):
        io.save_checkpoint({"global_step": 9, "w": torch.zeros(4)}, path)
    monkeypatch.undo()

    state = io.load_checkpoint(path)
    assert state["global_step"] == 6 and torch.equal(state["w"], torch.arange(4))


def test_a_resumed_sampler_gives_the_rest_of_its_epoch_then_the_next_epochs_as_without_the_interruption():
    lengths = [random.Random(i).randint(3, 60) for i in range(103)]
    uninterrupted = BucketBatchSampler(lengths, batch_size=8, seed=5, bucket_size=3)
    passes = [list(uninterrupted) for _ in range(3)]  # epochs 0, 1, 2

    resumed = BucketBatchSampler(lengths, batch_size=8, seed=5, bucket_size=3)
    resumed.resume(epoch=1, batches_done=5)

    assert list(resumed) == passes[1][5:]
    assert resumed.pass_epoch == 1 and len(resumed) == len(passes[1])  # the Trainer counts the 5 done ones
    assert list(resumed) == passes[2]
    assert passes[1] != passes[2]


def test_seeded_collation_depends_on_the_batch_and_epoch_not_on_the_global_rng():
    collate = SeededCollate(lambda rows: torch.rand(len(rows)), seed=3)
    rows = [{"input_ids": [101, 7, 8, 102]}, {"input_ids": [101, 9, 102]}]

    torch.manual_seed(0)
    first = collate(rows)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after)  # collating drew nothing from the global RNG
    torch.manual_seed(123)
    assert torch.equal(collate(rows), first)  # whatever the global state was
    collate.epoch = 1
    assert not torch.equal(collate(rows), first)  # new masks every epoch
    collate.epoch = 0
    assert not torch.equal(collate(rows[:1]), first[:1])  # another batch, other draws


def test_rng_states_come_back_from_a_checkpoint():
    cb = RngState()
    state = cb.state_dict()
    expected = (torch.rand(3), random.random(), np.random.rand())

    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    cb.load_state_dict(state)

    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_resume_and_checkpoint_frequency_do_not_change_the_config_hash():
    from encoderlab.runner import config_hash

    a, b = RunConfig(), RunConfig(resume="never")
    b.callbacks.checkpoint_every_n_steps, b.callbacks.checkpoint_every_minutes = 100, 5.0

    assert config_hash(a) == config_hash(b)
    b.seed += 1
    assert config_hash(a) != config_hash(b)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("resume", "no/such.ckpt", "resume"),
        ("checkpoint_every_n_steps", 0, "callbacks.checkpoint_every_n_steps"),
        ("checkpoint_every_minutes", -1.0, "callbacks.checkpoint_every_minutes"),
    ],
)
def test_bad_resume_settings_name_their_key(key, value, named):
    from encoderlab.config.validate import validate

    cfg = {"model": {"from_scratch": True}, "task": {"source": "package", "dataset": "rotten_tomatoes"}}
    if key == "resume":
        cfg["resume"] = value
    else:
        cfg["callbacks"] = {key: value}

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate(cfg)
