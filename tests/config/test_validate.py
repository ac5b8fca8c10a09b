"""A wrong key, type or value fails before any data is read, with a message that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import encoderlab.cli.train  # noqa: F401  (registers the schema `encoderlab_schema`)
from encoderlab.cli.hydra_setup import compose_error_message
from encoderlab.config.schema import RunConfig
from encoderlab.config.validate import validate
from encoderlab.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"
BASE = ["task=csv_example", "model=bert_tiny"]


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        yield


def compose_run(overrides: list[str]) -> RunConfig:
    return validate(compose("config", overrides=BASE + overrides))


def test_valid_config_becomes_typed_dataclasses(hydra_conf):
    run = compose_run(["optimizer.lr=3e-4", "finetune=frozen"])
    assert isinstance(run, RunConfig)
    assert run.optimizer.lr == pytest.approx(3e-4) and isinstance(run.optimizer.lr, float)
    assert run.finetune.frozen_encoder and not run.finetune.pooling


def test_a_config_with_its_hydra_node_validates(hydra_conf):
    """The hydra node interpolates job-only values; validation ignores it instead of failing on them."""
    cfg = compose("config", overrides=BASE, return_hydra_config=True)
    assert "hydra" in cfg
    assert validate(cfg).task.name == "csv_example"


def test_unknown_key_names_it_and_lists_the_allowed_keys():
    with pytest.raises(ConfigError) as e:
        validate({"task": {"name": "t", "max_seq_len": 64}})
    assert e.value.key == "task.max_seq_len"
    assert "unknown key 'max_seq_len'" in str(e.value) and "'max_seq_length'" in str(e.value)


def test_a_kind_setting_outside_its_section_says_where_it_lives(hydra_conf):
    """task.ner / task.qa / task.mlm hold each kind's own settings; the flat name points at its section."""
    with pytest.raises(ConfigError) as e:
        validate({"task": {"name": "t", "mlm": {"mlm_probabilty": 0.3}}})
    assert e.value.key == "task.mlm.mlm_probabilty" and "'mlm_probability'" in str(e.value)
    with pytest.raises(ConfigCompositionException) as e:
        compose("config", overrides=[*BASE, "task.doc_stride=64"])
    assert "use task.qa.doc_stride" in compose_error_message(e.value)


def test_a_run_saved_before_the_sections_still_validates():
    """A run dir's config.yaml from before task.ner/qa/mlm (a teacher, a stage, a predict source) loads."""
    old = {
        "task": {
            "name": "c",
            "kind": "pretraining",
            "source": "package",
            "dataset": "bbc_news_text",
            "metrics": ["mlm_loss"],
            "primary_metric": "mlm_loss",
            "objective": "sop",
            "mlm_probability": 0.3,
            "keep_prob": 0.1,
            "tokens_field": "words",
        },
        "model": {"from_scratch": True, "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2},
    }
    run = validate(old)
    assert run.task.mlm.objective == "sop" and run.task.mlm.mlm_probability == pytest.approx(0.3)
    assert run.task.ner.tokens_field == "words"


def test_unknown_top_level_key():
    with pytest.raises(ConfigError) as e:
        validate({"learning_rate": 1e-3})
    assert e.value.key == "learning_rate" and "'optimizer'" in str(e.value)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError) as e:
        validate({"optimizer": {"lr": "fast"}})
    assert e.value.key == "optimizer.lr" and "wrong type" in str(e.value)


def test_missing_mandatory_value_names_the_key(hydra_conf):
    with pytest.raises(ConfigError) as e:
        validate(compose("config", overrides=["model=from_checkpoint"]))
    assert e.value.key == "model.path"


def test_unresolvable_interpolation_is_a_config_error(hydra_conf):
    with pytest.raises(ConfigError) as e:
        compose_run(["paths.cache_dir=${oc.env:ENCODERLAB_TEST_SURELY_UNSET_VAR}"])
    assert "ENCODERLAB_TEST_SURELY_UNSET_VAR" in str(e.value)


BAD_VALUES = [
    # (overrides, key named in the error, a word the message must contain)
    (["finetune.strategy=thaw_all"], "finetune.strategy", "'gradual_unfreeze'"),
    (["finetune.layers=middle"], "finetune.layers", "'concat_last4'"),
    (["finetune.pooling=max"], "finetune.pooling", "'mean'"),
    (["finetune.k=0"], "finetune.k", "at least 1"),
    (["finetune.unfreeze_interval=0"], "finetune.unfreeze_interval", "> 0"),
    (["finetune.head=bilstm"], "finetune.head", "token_classification"),
    (["task.metrics=[pearson]", "task.primary_metric=pearson"], "task.metrics", "'accuracy'"),
    (["task.primary_metric=matthews_correlation"], "task.primary_metric", "'f1_macro'"),
    (["task.kind=summarization"], "task.kind", "'sequence_regression'"),
    (["task.source=web"], "task.source", "'files'"),
    (["task.format=xlsx"], "task.format", "'jsonl'"),
    (["task.max_seq_length=4"], "task.max_seq_length", "at least 8"),
    (["task.validation_size=1.5"], "task.validation_size", "[0, 1)"),
    (["task.max_train_samples=0"], "task.max_train_samples", "null for all"),
    (["task.data_files.train=null"], "task.data_files", "task.data_files.train=PATH"),
    (["task.label_names=[only]"], "task.label_names", "two labels"),
    (["task.label_names=[neg,pos,neg]"], "task.label_names", "repeated: neg"),
    (["task.text_fields=[a,b,c]"], "task.text_fields", "pair"),
    (["task.source=hub", "task.dataset=null"], "task.dataset", "dataset"),
    (["model.from_scratch=false"], "model.path", "from_scratch"),
    (["model.hidden_size=30", "model.num_attention_heads=4"], "model.hidden_size", "multiple"),
    (["model.pooling=max"], "model.pooling", "'pooler'"),
    (["optimizer.name=sgd"], "optimizer.name", "'adamw_bert'"),
    (["optimizer.lr=0"], "optimizer.lr", "> 0"),
    (["optimizer.layer_decay=1.5"], "optimizer.layer_decay", "(0, 1]"),
    (["optimizer.betas=[0.9]"], "optimizer.betas", "two values"),
    (["scheduler.name=exponential"], "scheduler.name", "'slanted_triangular'"),
    (["scheduler.warmup_ratio=1.0"], "scheduler.warmup_ratio", "[0, 1)"),
    (["speed.padding=longest"], "speed.padding", "'max_length'"),
    (["precision=fp8"], "precision", "'bf16-mixed'"),
    (["batch_size=0"], "batch_size", "at least 1"),
    (["eval_batch_size=0"], "eval_batch_size", "at least 1"),
]


@pytest.mark.parametrize(("overrides", "key", "word"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_bad_value_fails_naming_the_key_and_allowed_values(hydra_conf, overrides, key, word):
    with pytest.raises(ConfigError) as e:
        compose_run(overrides)
    assert e.value.key == key
    assert f"'{key}'" in str(e.value) and word in str(e.value)


def test_unknown_key_in_a_yaml_file_fails_while_composing(hydra_conf, tmp_path):
    """The schema is Hydra's base config: a typo in a task file fails at compose time and names the key."""
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "typo.yaml").write_text("name: typo\ndata_files: {train: x.csv}\nmax_seq_len: 64\n")
    with pytest.raises(ConfigCompositionException) as e:
        compose("config", overrides=["task=typo", f"hydra.searchpath=[file://{tmp_path}]"])
    assert "max_seq_len" in str(e.value) + str(e.value.__cause__)


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_epochs=0",
        "trainer.max_steps=0",
        "trainer.check_val_every_n_epoch=0",
        "trainer.val_check_interval=0",
        "trainer.limit_val_batches=-1",
        "trainer.num_sanity_val_steps=-2",
        "trainer.devices=0",
    ],
)
def test_a_trainer_value_lightning_would_reject_mid_run_fails_first(hydra_conf, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as e:
        compose_run([override])
    assert e.value.key == key


def test_no_epoch_limit_needs_a_step_limit(hydra_conf):
    with pytest.raises(ConfigError, match="max_steps"):
        compose_run(["trainer.max_epochs=-1"])
    assert compose_run(["trainer.max_epochs=-1", "trainer.max_steps=100"]).trainer.max_steps == 100
    assert compose_run(["trainer.devices=-1", "trainer.gradient_clip_val=null"]).trainer.devices == -1


def test_a_stage_param_sets_the_stage_overrides_and_needs_its_own_dir(hydra_conf):
    """A budget curve sweeps a stage's params: each value reaches the stage's overrides, and stages with different
    values never share a run dir."""
    curve = ["experiment=pretrain_budget_curve", "stages.pretrain.params.minutes=5"]
    run = validate(compose("config", overrides=[*curve, "stages.pretrain.params.precision=32-true"]))
    stage = run.stages["pretrain"]
    assert "+trainer.extra.max_time=00:00:5:00" in stage.overrides
    assert "trainer.max_steps=1250" in stage.overrides and "precision=32-true" in stage.overrides
    assert stage.dir.endswith("minutes5_precision32-true")
    shared = "stages.pretrain.dir=outputs/curve_precision${stages.pretrain.params.precision}"  # no minutes in it
    with pytest.raises(ConfigError, match=r"stages\.pretrain\.dir.*minutes\$\{stages\.pretrain\.params\.minutes\}"):
        validate(compose("config", overrides=[*curve, shared]))
