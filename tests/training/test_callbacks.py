"""The Lightning callbacks and loggers that only pass config values on are `_target_` configs: they build
Lightning's own classes with the run's values, and a value Lightning refuses names the config key in one line."""

from __future__ import annotations

import pytest
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from encoderlab.config.schema import RunConfig
from encoderlab.errors import ConfigError
from encoderlab.training.callbacks import build_callbacks, build_lightning, build_loggers, early_stopping_config


def test_callbacks_and_loggers_carry_the_configured_values(tmp_path):
    run = RunConfig()
    run.task.primary_metric, run.task.metrics = "f1_macro", ["accuracy", "f1_macro"]
    run.callbacks.patience, run.callbacks.min_delta = 7, 0.01
    run.trainer.enable_progress_bar = False
    callbacks, ckpt, _ = build_callbacks(run, tmp_path)
    stop = next(c for c in callbacks if isinstance(c, EarlyStopping))
    assert (stop.monitor, stop.mode, stop.patience, stop.min_delta) == ("val/f1_macro", "max", 7, 0.01)
    assert isinstance(ckpt, ModelCheckpoint) and ckpt.monitor == "val/f1_macro" and ckpt in callbacks
    assert any(isinstance(c, LearningRateMonitor) for c in callbacks)

    run.callbacks.early_stopping = run.callbacks.checkpoint = False
    callbacks, ckpt, _ = build_callbacks(run, tmp_path)
    assert ckpt is None and not any(type(c) in (EarlyStopping, ModelCheckpoint) for c in callbacks)

    (csv,) = build_loggers(run, tmp_path, {})
    assert isinstance(csv, CSVLogger) and csv.log_dir.rstrip("/") == str(tmp_path)


def test_a_value_lightning_refuses_names_the_config_key():
    config = early_stopping_config(RunConfig()) | {"mode": "maximum"}
    with pytest.raises(ConfigError, match=r"^config key 'callbacks.patience': `mode` can be min, max, got maximum$"):
        build_lightning(config, "callbacks.patience")


def test_with_validation_by_time_every_rank_validates_when_rank_0_does():
    """Lightning decides a validation by time on each process's own clock (``now - trainer._last_val_time >=
    interval``): two ranks whose clocks disagree would split on it and wait for each other. Rank 0's reading decides
    for all, and a rank's own clock runs on where no validation came."""
    import time
    from types import SimpleNamespace

    from encoderlab.training.callbacks import SharedValidationClock

    interval, shared = 60.0, {}

    def trainer(rank: int, last: float) -> SimpleNamespace:
        def broadcast(value, src=0):  # rank 0 sends, every rank gets rank 0's value
            if rank == src:
                shared["value"] = value
            return shared["value"]

        strategy = SimpleNamespace(broadcast=broadcast)
        return SimpleNamespace(
            _val_check_time_interval=interval, _last_val_time=last, world_size=2, global_rank=rank, strategy=strategy
        )

    def lightning_validates(t) -> bool:  # pytorch_lightning's _TrainingEpochLoop._should_check_val_fx, by time
        return time.monotonic() - t._last_val_time >= t._val_check_time_interval

    now = time.monotonic()
    for rank0_due in (True, False):
        last0, last1 = (now - 61, now - 59) if rank0_due else (now - 59, now - 61)
        t0, t1 = trainer(0, last0), trainer(1, last1)
        assert lightning_validates(t0) != lightning_validates(t1)  # each rank's own clock
        c0, c1 = SharedValidationClock(), SharedValidationClock()
        c0.on_train_batch_end(t0)
        c1.on_train_batch_end(t1)
        assert lightning_validates(t0) == lightning_validates(t1) == rank0_due
        if not rank0_due:  # the next step: each clock as it was
            c0.on_train_batch_start(t0)
            c1.on_train_batch_start(t1)
            assert (t0._last_val_time, t1._last_val_time) == (last0, last1)

    one = trainer(0, now - 61)
    one.world_size = 1
    SharedValidationClock().on_train_batch_end(one)
    assert one._last_val_time == now - 61  # one process: Lightning's own clock, untouched
