from __future__ import annotations

import math

import pytest
import torch

from encoderlab.config.schema import SCHEDULERS, SchedulerConfig
from encoderlab.errors import ConfigError
from encoderlab.training.schedules import SCHEDULES, build_scheduler, lr_curve

torch.set_num_threads(1)

TOTAL = 100


def _is_non_increasing(xs: list[float]) -> bool:
    return all(b <= a + 1e-12 for a, b in zip(xs[:-1], xs[1:], strict=True))


def test_registry_covers_every_scheduler_name_the_schema_allows():
    assert set(SCHEDULES) == set(SCHEDULERS)


@pytest.mark.parametrize("name", ["linear", "cosine", "constant", "polynomial", "inverse_sqrt"])
def test_warmup_rises_linearly_from_zero_to_the_peak(name):
    curve = lr_curve(SchedulerConfig(name=name, warmup_ratio=0.1), TOTAL)
    assert curve[:11] == pytest.approx([i / 10 for i in range(11)])
    assert max(curve) == pytest.approx(1.0)
    assert _is_non_increasing(curve[10:])


@pytest.mark.parametrize("name", ["linear", "cosine", "constant", "polynomial", "inverse_sqrt"])
def test_without_warmup_the_first_step_is_at_the_peak(name):
    assert lr_curve(SchedulerConfig(name=name, warmup_ratio=0.0), TOTAL)[0] == pytest.approx(1.0)


def test_linear_decays_to_zero():
    curve = lr_curve(SchedulerConfig(name="linear", warmup_ratio=0.1), TOTAL)
    assert curve[55] == pytest.approx(0.5)
    assert curve[-1] == 0.0


def test_cosine_midpoint_is_half_and_floor_is_lr_end_ratio():
    curve = lr_curve(SchedulerConfig(name="cosine", warmup_ratio=0.0), TOTAL)
    assert curve[50] == pytest.approx(0.5)
    assert curve[-1] == pytest.approx(0.0)
    floored = lr_curve(SchedulerConfig(name="cosine", warmup_ratio=0.0, lr_end_ratio=0.1), TOTAL)
    assert min(floored) == pytest.approx(0.1)
    assert floored[50] == pytest.approx(0.55)


def test_cosine_with_a_full_cycle_comes_back_up():
    curve = lr_curve(SchedulerConfig(name="cosine", warmup_ratio=0.0, num_cycles=1.0), TOTAL)
    assert curve[50] == pytest.approx(0.0)
    assert curve[-1] == pytest.approx(1.0)


def test_constant_is_flat_after_warmup():
    curve = lr_curve(SchedulerConfig(name="constant", warmup_ratio=0.2), TOTAL)
    assert set(curve[20:]) == {1.0}


def test_slanted_triangular_peaks_at_the_cut_and_bottoms_at_one_over_ratio():
    cfg = SchedulerConfig(name="slanted_triangular", warmup_ratio=0.2, ratio=32.0)
    curve = lr_curve(cfg, TOTAL)
    assert curve.index(max(curve)) == 20
    assert curve[20] == pytest.approx(1.0)
    assert curve[0] == pytest.approx(1 / 32) and curve[-1] == pytest.approx(1 / 32)
    assert _is_non_increasing(curve[20:]) and curve[:21] == sorted(curve[:21])


def test_slanted_triangular_without_warmup_ratio_uses_the_papers_cut_frac():
    curve = lr_curve(SchedulerConfig(name="slanted_triangular", warmup_ratio=0.0), TOTAL)
    assert curve.index(max(curve)) == 10


def test_polynomial_power_two_stays_below_linear_and_ends_at_lr_end_ratio():
    square = lr_curve(SchedulerConfig(name="polynomial", warmup_ratio=0.1, power=2.0, lr_end_ratio=0.05), TOTAL)
    line = lr_curve(SchedulerConfig(name="polynomial", warmup_ratio=0.1, power=1.0, lr_end_ratio=0.05), TOTAL)
    assert all(s < lin for s, lin in zip(square[11:-1], line[11:-1], strict=True))
    assert square[-1] == pytest.approx(0.05) and line[-1] == pytest.approx(0.05)
    assert line == pytest.approx(lr_curve(SchedulerConfig(name="linear", warmup_ratio=0.1), TOTAL), abs=0.05 + 1e-12)


def test_inverse_sqrt_follows_the_square_root_of_warmup_over_step():
    curve = lr_curve(SchedulerConfig(name="inverse_sqrt", warmup_ratio=0.1), TOTAL)
    assert curve[40] == pytest.approx(0.5)
    assert curve[90] == pytest.approx(math.sqrt(10 / 90))


def _optimizer(lrs: list[float]) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups, lr=1.0)


def test_build_scheduler_scales_every_group_by_the_same_curve():
    cfg = SchedulerConfig(name="linear", warmup_ratio=0.1)
    opt = _optimizer([1e-3, 1e-4])
    sched = build_scheduler(opt, cfg, total_steps=20)
    expected = lr_curve(cfg, 20)
    for step in range(20):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3 * expected[step], 1e-4 * expected[step]])
        opt.step()
        sched.step()


def test_lr_scale_on_a_group_survives_scheduler_steps_and_a_resume():
    cfg = SchedulerConfig(name="constant", warmup_ratio=0.0)
    opt = _optimizer([1e-3, 1e-3])
    sched = build_scheduler(opt, cfg, total_steps=10)
    opt.param_groups[0]["lr_scale"] = 0.0
    for _ in range(3):
        opt.step()
        sched.step()
        assert [g["lr"] for g in opt.param_groups] == [0.0, 1e-3]
    # a resumed run: new group dicts are loaded into the optimizer; the schedule must read them
    state = opt.state_dict()
    state["param_groups"][0]["lr_scale"] = 1.0
    opt.load_state_dict(state)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3]


def test_unknown_scheduler_name_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match="slanted_triangular") as err:
        build_scheduler(_optimizer([1e-3]), SchedulerConfig(name="step"), total_steps=10)
    assert err.value.key == "scheduler.name"


def test_linear_is_hugging_faces_curve():
    """``linear`` matches transformers' get_linear_schedule_with_warmup step for step, warmup rounded up."""
    from transformers import get_linear_schedule_with_warmup

    total, ratio = 37, 0.1
    warmup = math.ceil(ratio * total)  # 4, as HF's get_scheduler(..., num_warmup_steps=ceil(ratio * total))
    param = torch.nn.Parameter(torch.ones(1))
    hf = get_linear_schedule_with_warmup(torch.optim.SGD([param], lr=1.0), warmup, total)
    expected = [hf.lr_lambdas[0](step) for step in range(total + 1)]
    assert lr_curve(SchedulerConfig(name="linear", warmup_ratio=ratio), total) == pytest.approx(expected)


def test_bert_linear_decays_over_the_whole_run_as_the_original_bert():
    """google-research/bert optimization.py: lr = init * (1 - step / T), the warmup replacing it for the first steps."""
    curve = lr_curve(SchedulerConfig(name="bert_linear", warmup_ratio=0.1), TOTAL)
    assert curve[:10] == pytest.approx([i / 10 for i in range(10)])
    assert curve[10] == pytest.approx(0.9)  # after warmup the polynomial decay is already 10% down, not at the peak
    assert curve[55] == pytest.approx(0.45)  # HF's linear is at 0.5 here
    assert curve[-1] == 0.0
    assert lr_curve(SchedulerConfig(name="bert_linear", warmup_ratio=0.0), 4) == pytest.approx([1, 0.75, 0.5, 0.25, 0])


@pytest.mark.parametrize(("ratio", "total", "expected"), [(0.1, 37, 4), (0.1, 30, 3), (0.06, 10, 1), (0.0, 10, 0)])
def test_warmup_steps_round_up(ratio, total, expected):
    from encoderlab.training.schedules import warmup_steps

    assert warmup_steps(SchedulerConfig(warmup_ratio=ratio), total) == expected


def test_a_time_clock_ends_warmup_and_decay_with_the_time_budget_whatever_the_step_count():
    """scheduler.clock=time: a machine that manages only a third of the planned steps in the budget still gets the
    whole curve, warmup included, and reaches the end of the decay when the budget runs out."""
    cfg = SchedulerConfig(name="linear", warmup_ratio=0.1)
    opt = _optimizer([1e-3])
    spent = {"fraction": 0.0}
    sched = build_scheduler(opt, cfg, total_steps=300, clock=lambda: spent["fraction"])
    curve = lr_curve(cfg, 300)
    for step in range(1, 101):  # 100 steps, each one 1% of the budget: the time is 3x further along than the steps
        spent["fraction"] = step / 100
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * curve[3 * step])
    assert opt.param_groups[0]["lr"] == 0.0  # decayed to the end with the budget, at step 100 of 300

    ticking = iter(range(1, 10_000))  # a clock that moves between reads: the groups of one step still agree
    pair = _optimizer([1e-3, 1e-4])
    sched = build_scheduler(pair, cfg, total_steps=300, clock=lambda: next(ticking) / 100)
    for _ in range(5):
        pair.step()
        sched.step()
        assert pair.param_groups[1]["lr"] == pytest.approx(pair.param_groups[0]["lr"] / 10)

    fast = _optimizer([1e-3])  # a machine faster than planned: the steps lead, the clock never holds them back
    sched = build_scheduler(fast, cfg, total_steps=300, clock=lambda: 0.0)
    for _ in range(150):
        fast.step()
        sched.step()
    assert fast.param_groups[0]["lr"] == pytest.approx(1e-3 * curve[150])


def test_a_time_clock_without_a_time_budget_names_both_keys():
    from support import reviews_task

    from encoderlab.config.schema import ModelConfig, RunConfig

    run = RunConfig(task=reviews_task(), model=ModelConfig(name="tiny", from_scratch=True))
    run.scheduler.clock = "time"
    with pytest.raises(ConfigError, match=r"\+trainer\.extra\.max_time") as err:
        run.check()
    assert err.value.key == "scheduler.clock"
    run.trainer.extra["max_time"] = "00:00:20:00"
    run.check()


def test_a_run_on_the_time_clock_stops_at_its_budget_with_the_schedule_decayed(tokenizer):
    """Through Lightning: max_time stops the run (Timer), and the LR has followed the time budget down to ~0 though
    the step budget is nowhere near spent."""
    import pytorch_lightning as pl
    from support import quiet_trainer, reviews_task

    from encoderlab.config.schema import ModelConfig, OptimizerConfig, RunConfig
    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.kinds.sequence import kind

    model = ModelConfig(
        name="tiny", from_scratch=True, num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32
    )
    run = RunConfig(task=reviews_task(max_seq_length=16), model=model, optimizer=OptimizerConfig(lr=1e-3))
    run.scheduler = SchedulerConfig(name="linear", warmup_ratio=0.1, clock="time")
    run.trainer.extra["max_time"] = {"seconds": 3}
    run.check()
    prepared = kind.prepare(run, tokenizer, None)
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    lrs: list[float] = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = quiet_trainer(
        max_steps=1_000_000,
        max_time={"seconds": 3},
        limit_val_batches=0,
        callbacks=[Watch()],
    )
    trainer.fit(module, datamodule=EncoderDataModule(prepared.datasets, prepared.collator, 8, 16, run.speed, seed=0))
    assert 10 < trainer.global_step < 1_000_000  # stopped by the time budget
    assert max(lrs) == pytest.approx(1e-3, rel=0.25)  # warmed up to the peak on the way
    assert lrs[-1] < 0.05 * 1e-3  # and decayed with the budget


def test_under_ddp_every_process_follows_rank_0s_clock(tokenizer):
    """scheduler.clock=time: each process's own clock differs a little; the LR of every process comes from rank 0's
    reading (broadcast once per step), so the replicas stay identical."""
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import Timer
    from support import reviews_task, tiny_model

    from encoderlab.config.schema import RunConfig
    from encoderlab.kinds.sequence import kind

    run = RunConfig(task=reviews_task(max_seq_length=16), model=tiny_model())
    run.scheduler = SchedulerConfig(name="linear", clock="time")
    run.trainer.extra["max_time"] = {"seconds": 100}
    run.check()
    module = kind.build(run, kind.prepare(run, tokenizer, None), tokenizer)
    timer = Timer(duration={"seconds": 100})
    timer.time_elapsed = lambda stage: 90.0  # this process (rank 1) has spent 90% of the budget by its own clock
    timer.time_remaining = lambda stage: 10.0
    sent = []

    def broadcast(value, src=0):  # rank 0 read 20%
        sent.append((value, src))
        return 0.2

    module._trainer = SimpleNamespace(callbacks=[timer], strategy=SimpleNamespace(broadcast=broadcast))
    clock = module._budget_clock()

    assert clock() == 0.2 and sent == [(0.9, 0)]
