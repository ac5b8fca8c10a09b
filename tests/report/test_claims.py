"""The claims schema of experiment files, and the published numbers claims refer to."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import encoderlab.cli.train  # noqa: F401  (registers the schema `encoderlab_schema`)
from encoderlab.config.claims import parse_claims
from encoderlab.config.validate import validate
from encoderlab.errors import ConfigError, EncoderlabError
from encoderlab.report.published import load_published

CONF = Path(__file__).resolve().parents[2] / "conf"
GOOD = {"id": "c", "key": "finetune", "a": "frozen", "b": "full", "metric": "test/accuracy", "direction": "higher"}
AGAINST = {  # no arms: the runs against a published value
    "id": "matches_paper",
    "metric": "test/accuracy",
    "direction": "equal",
    "margin": 0.01,
    "published": "devlin2019_glue_dev_sst2",
    "scale": 0.01,
}


@pytest.fixture(scope="module")
def base() -> dict:
    """A composed, valid run config (offline task, tiny model) as a plain dict."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=["task=csv_example", "model=bert_tiny"]))


def test_a_negative_margin_is_a_non_inferiority_claim(base):
    run = validate(base | {"claims": [GOOD | {"margin": -0.01}]})

    assert parse_claims(run.claims)[0].margin == -0.01


def test_a_run_config_accepts_claims_and_notes(base):
    claim = GOOD | {"margin": 0.01, "published": "sun2019_feat_vs_fit"}
    run = validate(base | {"claims": [claim], "notes": "one epoch"})

    assert run.claims[0]["b"] == "full" and run.notes == "one epoch"
    assert parse_claims(run.claims)[0].margin == 0.01


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        (GOOD | {"direction": "up"}, "config key 'claims[0].direction': 'up' is not one of higher, lower, equal"),
        ({k: v for k, v in GOOD.items() if k != "metric"}, "config key 'claims[0].metric': missing"),
        (GOOD | {"colour": "red"}, "config key 'claims[0].colour': unknown key 'colour'"),
        (GOOD | {"published": "nobody2020"}, "config key 'claims[0].published': 'nobody2020' is not an id"),
        (GOOD | {"metric": "accuracy"}, "config key 'claims[0].metric': 'accuracy' is not split/metric"),
        (GOOD | {"margin": "a point"}, "config key 'claims[0].margin': a number"),
        (GOOD | {"direction": "equal", "margin": -0.01}, "config key 'claims[0].margin': direction 'equal'"),
        (GOOD | {"direction": "equal"}, "config key 'claims[0].margin': direction 'equal'"),
        (GOOD | {"b": "frozen"}, "config key 'claims[0].b': the two arms are the same"),
        ({k: v for k, v in GOOD.items() if k != "b"}, "config key 'claims[0].b': missing: a claim between two arms"),
        ({k: v for k, v in GOOD.items() if k not in ("key", "a", "b")}, "config key 'claims[0].key': missing"),
        (AGAINST | {"scale": 0}, "config key 'claims[0].scale': a number > 0"),
    ],
)
def test_a_wrong_claim_is_one_error_naming_the_field(base, claim, message):
    with pytest.raises(ConfigError) as e:
        validate(base | {"claims": [claim]})

    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_a_claim_without_arms_compares_the_runs_with_its_published_value():
    claim = parse_claims([AGAINST])[0]

    assert claim.against_published and claim.key is None and claim.scale == 0.01


def test_claim_ids_are_unique():
    with pytest.raises(ConfigError, match=r"'claims\[1\]\.id': 'c' is used twice"):
        parse_claims([GOOD, GOOD | {"a": "top_k"}])


def test_published_entries_need_every_required_key(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text("x:\n  paper: P\n  where: Table 1\n  value: 5.40\n  metric: error\n  direction: lower\n")

    with pytest.raises(EncoderlabError, match=r"published.yaml: x.says: missing"):
        load_published(path)

    path.write_text(path.read_text() + "  says: lower is better\n")
    assert load_published(path)["x"]["value"] == 5.4 and load_published(path)["x"]["value_text"] == "5.40"


def test_the_packaged_published_numbers_load():
    published = load_published()

    assert published and all(
        {"paper", "where", "value", "metric", "direction", "says"} <= set(e) for e in published.values()
    )


def test_claims_and_notes_do_not_change_the_config_hash(base):
    """A finished run stays finished (and a stage stays reused) when its experiment file gains claims or notes."""
    from encoderlab.runner import config_hash

    assert config_hash(validate(base)) == config_hash(validate(base | {"claims": [GOOD], "notes": "budget cut"}))
