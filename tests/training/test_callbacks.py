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
