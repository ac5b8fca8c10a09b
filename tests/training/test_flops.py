"""FLOP budgets: +trainer.extra.max_flops stops a run at the first step whose training FLOPs (6 x non-embedding
parameters x non-padding tokens) reach it, scheduler.clock=flops ends the LR schedule with the budget, and the count
survives a checkpoint."""

from __future__ import annotations

import pytest
import torch

from encoderlab.config.schema import SchedulerConfig
from encoderlab.errors import ConfigError
from encoderlab.training.flops import FlopCounter, non_embedding_params, train_flops


def _run(**extra):
    from support import reviews_task

    from encoderlab.config.schema import ModelConfig, OptimizerConfig, RunConfig

    model = ModelConfig(
        name="tiny", from_scratch=True, num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32
    )
    run = RunConfig(task=reviews_task(max_seq_length=16), model=model, optimizer=OptimizerConfig(lr=1e-3))
    run.trainer.extra.update(extra)
    return run


def test_the_count_leaves_out_the_embedding_tables(tiny_bert_config):
    from transformers import BertForMaskedLM

    net = BertForMaskedLM(tiny_bert_config)
    embeddings = sum(p.numel() for n, p in net.named_parameters() if "embeddings." in n and "LayerNorm" not in n)
    assert non_embedding_params(net) == sum(p.numel() for p in net.parameters()) - embeddings
    assert train_flops(1000, 50) == 300_000


def test_a_flop_budget_stops_at_the_step_that_reaches_it_with_the_schedule_ended(tokenizer):
    import pytorch_lightning as pl
    from support import quiet_trainer

    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.kinds.sequence import kind

    run = _run()
    prepared = kind.prepare(run, tokenizer, None)
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    params = non_embedding_params(module.network)
    run.trainer.extra["max_flops"] = 6.0 * params * 8 * 16 * 12  # about 12 steps of 8 rows of up to 16 tokens
    run.scheduler = SchedulerConfig(name="linear", warmup_ratio=0.1, clock="flops")
    run.check()
    counter = FlopCounter(run.trainer.extra["max_flops"])
    seen: list[int] = []
    lrs: list[float] = []

    class Watch(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(int(batch["attention_mask"].sum()))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            lrs.append(trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0])

    trainer = quiet_trainer(max_steps=10_000, max_epochs=-1, limit_val_batches=0, callbacks=[counter, Watch()])
    trainer.fit(module, datamodule=EncoderDataModule(prepared.datasets, prepared.collator, 8, 16, run.speed, seed=0))
    cumulative = torch.tensor(seen).cumsum(0) * 6.0 * params
    expected = int((cumulative >= run.trainer.extra["max_flops"]).nonzero()[0]) + 1  # the first step that reaches it
    assert trainer.global_step == expected and 3 < expected < 10_000
    assert counter.flops == pytest.approx(float(cumulative[expected - 1]))
    assert lrs[-1] == 0.0  # the schedule ended with the budget, far before the 10,000 planned steps
    assert max(lrs) > 0.5 * 1e-3  # after warming up on the way


def test_a_resumed_count_continues_from_the_checkpoint():
    first = FlopCounter(1e9)
    first.params, first.tokens = 100, 50
    state = first.state_dict()
    resumed = FlopCounter(1e9)
    resumed.load_state_dict(state)
    resumed.params, resumed.tokens = 100, 10
    assert resumed.flops == pytest.approx(6 * 100 * 60)
    assert resumed.fraction() == pytest.approx(6 * 100 * 60 / 1e9)


def test_flop_budget_keys_are_checked_before_the_run():
    run = _run()
    run.scheduler.clock = "flops"
    with pytest.raises(ConfigError) as err:
        run.check()
    assert err.value.key == "scheduler.clock" and "max_flops" in str(err.value)
    for bad in (-1, 0, "lots", True):
        run.trainer.extra["max_flops"] = bad
        with pytest.raises(ConfigError) as err:
            run.check()
        assert err.value.key == "trainer.extra.max_flops"
    run.trainer.extra["max_flops"] = 5e13
    run.check()
