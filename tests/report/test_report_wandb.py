"""Reading W&B runs: only the conversion of a run object is tested (no network here)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from encoderlab.errors import EncoderlabError
from encoderlab.report import build_report, load_wandb_runs, records_to_frame, wandb_run_to_record


def fake_run(strategy: str, seed: int, acc: float, state: str = "finished", run_id: str = "abc") -> SimpleNamespace:
    return SimpleNamespace(
        config={
            "_wandb": {"cli_version": "0.31.0"},
            "task": {"name": "sst2", "kind": "sequence_classification", "primary_metric": "accuracy"},
            "model/name": "bert_base_uncased",  # slash keys nest like dotted ones
            "finetune": {"value": {"strategy": strategy}, "desc": None},  # raw W&B value wrapper
            "seed": seed,
            "published": {"metric": "accuracy", "value": 0.927, "tolerance": 0.01, "source": "BERT"},
        },
        summary_metrics={"test/accuracy": acc, "val/accuracy": acc - 0.01, "train/loss": 0.3, "_runtime": 42.0},
        state=state,
        url=f"https://wandb.ai/team/proj/runs/{run_id}",
        path=["team", "proj", run_id],
    )


def test_run_object_converts_to_the_run_dir_record_shape():
    record = wandb_run_to_record(fake_run("frozen", 3, 0.91))

    s = record.summary
    assert record.run_dir == "https://wandb.ai/team/proj/runs/abc"
    assert s["status"] == "finished" and s["seed"] == 3 and s["strategy"] == "frozen"
    assert s["primary_metric"] == "accuracy" and s["greater_is_better"] is True
    assert s["test"] == {"accuracy": 0.91} and s["val"] == {"accuracy": pytest.approx(0.90)}
    assert s["train_seconds"] == 42.0 and s["published"]["value"] == 0.927
    assert record.config["model"] == {"name": "bert_base_uncased"}
    assert "_wandb" not in record.config


def test_wandb_runs_aggregate_like_run_dirs():
    runs = [
        fake_run("full", 1, 0.92, run_id="a"),
        fake_run("full", 2, 0.93, run_id="b"),
        fake_run("frozen", 1, 0.80, run_id="c"),
        fake_run("frozen", 2, 0.5, state="crashed", run_id="d"),
    ]

    report = build_report(records_to_frame([wandb_run_to_record(r) for r in runs]))

    assert list(report.table["n"]) == [2, 1]
    assert report.table.loc[0, "mean"] == pytest.approx(0.925)
    assert report.table.loc[0, "pass"] is True
    assert list(report.excluded["status"]) == ["failed"]


def test_api_is_asked_for_the_group_and_failures_become_encoderlab_errors():
    calls = []

    class Api:
        def runs(self, path, filters):
            calls.append((path, filters))
            return [fake_run("full", 1, 0.9)]

    assert len(load_wandb_runs("team/proj", "freezing_study", api=Api())) == 1
    assert calls == [("team/proj", {"group": "freezing_study"})]

    class Offline:
        def runs(self, path, filters):
            raise ConnectionError("Max retries exceeded with url: /graphql")

    with pytest.raises(EncoderlabError, match="cannot read runs from W&B project 'team/proj'.*wandb login"):
        load_wandb_runs("team/proj", "g", api=Offline())


def test_bad_project_path_is_an_error():
    with pytest.raises(EncoderlabError, match="ENTITY/PROJECT"):
        load_wandb_runs("just-a-project", api=object())
