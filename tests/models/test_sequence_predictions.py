"""Every classification run writes its test predictions (text, gold, prediction, probabilities) for error analysis."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from support import FIXTURES, reviews_task

from encoderlab.config.schema import CallbacksConfig, ModelConfig, OptimizerConfig, RunConfig, TrainerConfig
from encoderlab.kinds.sequence.predictions import prediction_rows

torch.set_num_threads(1)


def test_a_run_writes_test_predictions_that_agree_with_its_test_accuracy(tmp_path, cache_dir):
    from encoderlab.runner import execute

    run = RunConfig(
        task=reviews_task(max_seq_length=32),
        model=ModelConfig(
            name="tiny",
            from_scratch=True,
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        optimizer=OptimizerConfig(lr=1e-3),
        trainer=TrainerConfig(max_epochs=1, accelerator="cpu", devices=1, enable_progress_bar=False),
        callbacks=CallbacksConfig(early_stopping=False, checkpoint=False, rich_progress=False),
        batch_size=8,
        save_model=False,
    )
    run.check()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    assert len(rows) == summary["data"]["sizes"]["test"] == 12
    accuracy = sum(r["correct"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    with open(FIXTURES / "reviews.csv") as f:
        reviews = {r["review"]: r["sentiment"] for r in csv.DictReader(f)}
    for r in rows:
        assert reviews[r["text"]] == r["gold"]  # the row's own text and label
        assert set(r["probabilities"]) == {"neg", "pos"} and sum(r["probabilities"].values()) == pytest.approx(1)
        assert r["pred"] == max(r["probabilities"], key=r["probabilities"].get)


def test_regression_rows_carry_the_error():
    rows = prediction_rows(torch.tensor([[1.5], [0.0]]), torch.tensor([1.0, 0.5]), None, [{"text": "a"}, {"text": "b"}])
    assert rows[0] == {"index": 0, "text": "a", "gold": 1.0, "pred": 1.5, "error": 0.5}
    assert rows[1]["error"] == -0.5
