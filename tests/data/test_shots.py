"""task.shots_per_class: K labelled examples per class, drawn by the run's seed, the same for every strategy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from support import keyword_csv

from encoderlab.cli.train import CONF_DIR
from encoderlab.config.validate import validate
from encoderlab.data.sources import load_raw
from encoderlab.errors import ConfigError


def _task(csv: Path, *overrides: str):
    """The validated task of a run on ``csv`` (two classes, 60/20/20 split)."""
    base = [
        "task=csv_example",
        f"task.data_files.train={csv}",
        "task.label_names=[neg,pos]",
        "task.text_fields=[text]",
        "task.label_field=label",
        *overrides,
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return validate(compose("config", overrides=base)).task


def _rows(ds) -> list[tuple[str, str]]:
    return list(zip(ds["text"], ds["label"], strict=True))


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    return keyword_csv(tmp_path_factory.mktemp("shots") / "k.csv", n=200)


def test_exactly_k_per_class_in_train_and_validation_and_test_untouched(csv):
    full = load_raw(_task(csv))
    raw = load_raw(_task(csv, "task.shots_per_class=4"))
    assert Counter(raw["train"]["label"]) == {"neg": 4, "pos": 4}
    assert Counter(raw["validation"]["label"]) == {"neg": 4, "pos": 4}
    assert set(_rows(raw["train"])) <= set(_rows(full["train"]))
    assert set(_rows(raw["validation"])) <= set(_rows(full["validation"]))
    assert _rows(raw["test"]) == _rows(full["test"])  # the same rows in the same order


def test_the_draw_follows_the_seed_and_not_the_strategy(csv):
    setfit = load_raw(_task(csv, "task.shots_per_class=4", "seed=3", "finetune=setfit"))
    full = load_raw(_task(csv, "task.shots_per_class=4", "seed=3", "finetune=full"))
    other = load_raw(_task(csv, "task.shots_per_class=4", "seed=4", "finetune=setfit"))
    assert _rows(setfit["train"]) == _rows(full["train"])
    assert _rows(setfit["validation"]) == _rows(full["validation"])
    assert set(_rows(other["train"])) != set(_rows(setfit["train"]))
    # a baseline without a tokenizer (model=tfidf_logreg) reads the same draw
    tfidf = load_raw(_task(csv, "task.shots_per_class=4", "seed=3", "arm=tfidf_logreg"))
    assert _rows(tfidf["train"]) == _rows(setfit["train"])


def test_more_shots_than_a_class_has_is_a_one_line_error(csv):
    with pytest.raises(ConfigError) as e:
        load_raw(_task(csv, "task.shots_per_class=500"))
    assert "task.shots_per_class" in str(e.value) and "use at most" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="task.shots_per_class"):
        _task(csv, "task.shots_per_class=0")


def test_tfidf_logreg_trains_on_the_draw(csv, tmp_path):
    from hydra import compose, initialize_config_dir

    from encoderlab.runner import execute

    overrides = [
        "task=csv_example",
        f"task.data_files.train={csv}",
        "task.text_fields=[text]",
        "task.label_field=label",
        "task.shots_per_class=3",
        "arm=tfidf_logreg",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        run = validate(compose("config", overrides=overrides))
    s = execute(run, tmp_path, overrides)
    assert s["status"] == "finished" and s["data"]["sizes"] == {"train": 6, "validation": 6, "test": 40}
