"""The pieces of resuming, one at a time: atomic checkpoint writes, the sampler's position, seeded collation, the
RNG states, and the config keys that say nothing about what a run computes."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from encoderlab.config.schema import RunConfig
from encoderlab.data.collate import BucketBatchSampler, SeededCollate
from encoderlab.errors import ConfigError
from encoderlab.training.checkpoints import LAST, AtomicCheckpointIO, LastCheckpoint, RngState, cluster_plugins


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


# ---- LastCheckpoint's triggers, in a tiny Lightning run -------------------------------------------------------------


class _Linear(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(40, 4)), batch_size=4)  # 10 steps an epoch


class _AtStep(pl.Callback):
    """Calls ``fn(trainer)`` when optimizer step ``step`` ends, before the checkpoint callbacks of that step."""

    def __init__(self, step: int, fn):
        self.step, self.fn = step, fn

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            self.fn(trainer)


def _fit(tmp_path, last: LastCheckpoint, *callbacks, steps: int = 4) -> None:
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        callbacks=[last, *callbacks],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
    )
    trainer.fit(_Linear())


def _step_on_disk(path) -> int | None:
    return torch.load(path, weights_only=True)["global_step"] if path.is_file() else None


@pytest.mark.parametrize(("minutes", "seen_at_step_3"), [(None, None), (1e-9, 2)])
def test_last_ckpt_every_m_minutes_is_written_mid_epoch(tmp_path, minutes, seen_at_step_3):
    last, seen = tmp_path / "ckpt" / LAST, []
    _fit(
        tmp_path,
        LastCheckpoint(tmp_path / "ckpt", every_minutes=minutes),
        _AtStep(3, lambda t: seen.append(_step_on_disk(last))),
    )

    assert seen == [seen_at_step_3]  # without a trigger, the first last.ckpt comes at the epoch end


def test_the_requeue_signal_saves_last_ckpt_at_the_step_end_and_requeues_once(tmp_path, monkeypatch):
    import encoderlab.training.checkpoints as C

    requeued = []
    monkeypatch.setattr(C, "requeue_slurm_job", lambda: requeued.append(True) or True)
    before = signal.getsignal(signal.SIGUSR1)
    last, seen = tmp_path / "ckpt" / LAST, []
    send = _AtStep(2, lambda t: os.kill(os.getpid(), signal.SIGUSR1))
    look = _AtStep(3, lambda t: seen.append(_step_on_disk(last)))

    _fit(tmp_path, LastCheckpoint(tmp_path / "ckpt", requeue_signal=signal.SIGUSR1), send, look)

    assert seen == [2] and requeued == [True]  # saved at the step the signal came in, then training went on
    assert signal.getsignal(signal.SIGUSR1) == before  # the handler is the fit's only


def test_on_slurm_lightning_does_not_requeue_by_itself(monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment

    assert cluster_plugins() == []
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "encoderlab")
    (env,) = cluster_plugins()
    assert isinstance(env, SLURMEnvironment) and not env.auto_requeue  # no hpc_ckpt_N.ckpt behind resume's back


def test_minute_triggered_saves_never_fall_inside_a_gradient_accumulation_window(tmp_path, monkeypatch):
    """The partial gradients of a window are in no checkpoint: a save there would lose them on resume."""
    from types import SimpleNamespace

    import pytorch_lightning.callbacks.model_checkpoint as mc

    clock = iter(range(0, 100_000, 60))  # a minute passes at every look at the clock: a save every other batch
    monkeypatch.setattr(mc, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    inside = []

    class Recorded(LastCheckpoint):
        def _save_checkpoint(self, trainer, filepath):
            inside.append(trainer.fit_loop.epoch_loop._should_accumulate())
            super()._save_checkpoint(trainer, filepath)

    trainer = pl.Trainer(
        max_steps=6,
        accumulate_grad_batches=3,
        logger=False,
        callbacks=[Recorded(tmp_path / "ckpt", every_minutes=1.5)],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
    )
    trainer.fit(_Linear())

    assert len(inside) >= 3 and not any(inside)


def _resume_rng_on_rank(rank: int, port: int, path, results) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(100 + rank)  # each process's own dropout stream
        state = RngState().state_dict()  # every process takes part in the save ...
        expected = torch.rand(3)
        torch.rand(50)
        if rank == 0:
            torch.save(state, path)
        torch.distributed.barrier()  # ... and all load the file rank 0 wrote
        RngState().load_state_dict(torch.load(path, weights_only=True))
        results.put((rank, torch.equal(torch.rand(3), expected)))
    finally:
        torch.distributed.destroy_process_group()


def _resume_cuda_rng_on_rank(rank: int, port: int, path, results) -> None:
    """Two CUDA devices seen by each process, their generator states mocked: each process's are its own."""
    from unittest import mock

    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        own = [torch.full((16,), 10 * rank + device, dtype=torch.uint8) for device in (0, 1)]
        restored: list = []
        cuda = {"is_available": lambda: True, "device_count": lambda: 2, "get_rng_state_all": lambda: own}
        with mock.patch.multiple(torch.cuda, set_rng_state_all=restored.append, **cuda):
            state = RngState().state_dict()
            if rank == 0:
                torch.save(state, path)
        torch.distributed.barrier()
        with mock.patch.multiple(torch.cuda, set_rng_state_all=restored.append, **cuda):
            RngState().load_state_dict(torch.load(path, weights_only=True))
        results.put((rank, len(restored) == 1 and [t.tolist() for t in restored[0]] == [t.tolist() for t in own]))
    finally:
        torch.distributed.destroy_process_group()


def _on_two_ranks(target, path) -> dict[int, bool]:
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(rank, port, path, results)) for rank in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return dict(results.get(timeout=5) for _ in procs)


def test_each_process_gets_its_own_rng_states_back_from_the_checkpoint_rank_0_wrote(tmp_path):
    assert _on_two_ranks(_resume_rng_on_rank, tmp_path / "rng.pt") == {0: True, 1: True}


def test_each_process_gets_its_own_cuda_rng_states_back_from_the_checkpoint_rank_0_wrote(tmp_path):
    assert _on_two_ranks(_resume_cuda_rng_on_rank, tmp_path / "rng.pt") == {0: True, 1: True}


class _Validated(_Linear):
    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.layer(batch[0]).pow(2).mean())

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)


@pytest.mark.parametrize("requeue", [False, True])
def test_with_validation_by_time_no_save_falls_between_a_step_and_its_validation(tmp_path, monkeypatch, requeue):
    """Lightning decides a timed validation by reading the clock after the checkpoint callbacks: a save taken when
    the callback saw no validation due could precede one of the same step (its best score, its best.ckpt)."""
    from types import SimpleNamespace

    import pytorch_lightning.loops.evaluation_loop as ev
    import pytorch_lightning.loops.fit_loop as fl
    import pytorch_lightning.loops.training_epoch_loop as te

    import encoderlab.training.checkpoints as C

    ticks = iter(range(1_000_000))  # a second passes at every look at the clock
    clock = SimpleNamespace(monotonic=lambda: float(next(ticks)))
    for module in (ev, fl, te, C):
        monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(C, "requeue_slurm_job", lambda: True)
    saves, validated = [], []

    class Recorded(LastCheckpoint):
        def _save_checkpoint(self, trainer, filepath):
            saves.append((trainer.global_step, list(validated)))
            super()._save_checkpoint(trainer, filepath)

    class Validations(pl.Callback):
        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                validated.append(trainer.global_step)

    last = Recorded(tmp_path / "ckpt", every_n_steps=1, requeue_signal=signal.SIGUSR1 if requeue else None)
    signals = [_AtStep(s, lambda t: os.kill(os.getpid(), signal.SIGUSR1)) for s in (4, 9, 14)] if requeue else []
    trainer = pl.Trainer(
        max_steps=20,
        val_check_interval="00:00:00:04",
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[last, Validations(), *signals],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
    )
    trainer.fit(_Validated())

    assert len(validated) >= 3 and len(saves) >= 3
    before_its_validation = [step for step, seen in saves if step in validated and step not in seen]
    assert before_its_validation == []
