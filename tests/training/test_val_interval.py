"""Validation every N steps: across epochs with check_val_every_n_epoch=null, a one-line error otherwise."""

from __future__ import annotations

import pytest

from encoderlab.config.schema import RunConfig, TrainerConfig
from encoderlab.errors import ConfigError
from encoderlab.runner import _check_val_interval, _trainer_kwargs


def _run(**trainer) -> RunConfig:
    return RunConfig(trainer=TrainerConfig(**trainer), batch_size=32)


def test_null_check_val_every_n_epoch_reaches_lightning():
    # dropped, Lightning would fall back to 1 and refuse a step interval longer than an epoch
    kwargs = _trainer_kwargs(_run(check_val_every_n_epoch=None, extra={"val_check_interval": 500}))
    assert kwargs["check_val_every_n_epoch"] is None and kwargs["val_check_interval"] == 500
    assert "limit_train_batches" not in _trainer_kwargs(_run())  # other nulls still mean Lightning's default


def test_a_step_interval_longer_than_an_epoch_names_the_fix():
    with pytest.raises(ConfigError) as e:
        _check_val_interval(_run(extra={"val_check_interval": 500}), train_rows=1000)  # 32 batches an epoch
    assert e.value.key == "trainer.val_check_interval"
    assert "check_val_every_n_epoch=null" in str(e.value) and "32 batches" in str(e.value)
    _check_val_interval(_run(check_val_every_n_epoch=None, extra={"val_check_interval": 500}), train_rows=1000)
    _check_val_interval(_run(extra={"val_check_interval": 500, "check_val_every_n_epoch": None}), train_rows=1000)
    _check_val_interval(_run(extra={"val_check_interval": 0.5}), train_rows=1000)  # a fraction of an epoch
