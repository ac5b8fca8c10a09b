"""Each name a config check allows has its builder, and each builder's names are allowed: the schema and the
builders read the lists of encoderlab.names, so a name added to one place only fails here."""

from __future__ import annotations

import pytest

from encoderlab import names
from encoderlab.config.schema import OptimizerConfig, SchedulerConfig
from encoderlab.errors import ConfigError


def test_every_kind_strategy_layer_choice_optimizer_and_schedule_has_its_builder():
    from encoderlab.kinds import get_kind
    from encoderlab.models.heads import LAYER_CHOICES
    from encoderlab.training.optim import DEFAULTS, OPTIMIZERS
    from encoderlab.training.schedules import SCHEDULES

    for name in names.TASK_KINDS:  # get_kind imports a module for each name; a name it lacks fails here
        kind = get_kind(name)
        assert callable(kind.prepare) and callable(kind.build) and callable(kind.export), name
    from encoderlab.strategies import get_strategy

    for name in names.STRATEGIES:  # strategies/<name>: its module's STRATEGY, under its own name
        strategy = get_strategy(name)
        assert strategy.name == name
        assert strategy.loop is None or callable(strategy.own_loop()), name
    assert tuple(LAYER_CHOICES) == names.FEATURE_LAYERS
    assert tuple(OPTIMIZERS) == tuple(DEFAULTS) == names.OPTIMIZERS
    assert tuple(SCHEDULES) == names.SCHEDULERS


def test_every_metric_a_task_may_name_is_computed():
    from encoderlab.kinds.token_classification.metrics import ner_scores
    from encoderlab.metrics.classification import classification_metrics, regression_metrics

    assert set(classification_metrics(list(names.METRICS["sequence_classification"]), 2)) == set(
        names.METRICS["sequence_classification"]
    )
    assert set(regression_metrics(list(names.METRICS["sequence_regression"]))) == set(
        names.METRICS["sequence_regression"]
    )
    scores = ner_scores([["B-PER", "O"]], [["B-PER", "O"]]).as_dict()
    assert set(scores) == set(names.METRICS["token_classification"])
    assert set(names.LOWER_IS_BETTER) <= {m for ms in names.METRICS.values() for m in ms}


def test_a_builder_rejects_an_unknown_name_with_the_same_list_as_the_schema():
    from encoderlab.kinds import get_kind
    from encoderlab.training.optim import build_optimizer
    from encoderlab.training.schedules import lr_curve

    with pytest.raises(ConfigError) as schema:
        SchedulerConfig(name="warm").check()
    with pytest.raises(ConfigError) as builder:
        lr_curve(SchedulerConfig(name="warm"), 10)
    assert str(schema.value) == str(builder.value) and "'inverse_sqrt'" in str(builder.value)

    with pytest.raises(ConfigError) as schema:
        OptimizerConfig(name="sgd").check()
    with pytest.raises(ConfigError) as builder:
        build_optimizer([], OptimizerConfig(name="sgd"))
    assert str(schema.value) == str(builder.value) and "'adamw_bert'" in str(builder.value)

    with pytest.raises(ConfigError, match="task.kind.*'pretraining'"):
        get_kind("ranking")
