"""Error analysis in encoderlab-report: confusion matrix, per-class scores, confident mistakes, NER error sorts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from encoderlab.cli.report import main
from encoderlab.report.errors import sentence_errors

from .factory import write_run


def _write_predictions(run_dir: Path, rows: list[dict]) -> None:
    with (run_dir / "predictions_test.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _row(i: int, gold: str, pred: str, p_pred: float, text: str) -> dict:
    other = "neg" if pred == "pos" else "pos"
    probs = {pred: p_pred, other: 1 - p_pred}
    return {
        "index": i,
        "text": text,
        "gold": gold,
        "pred": pred,
        "correct": gold == pred,
        "confidence": p_pred,
        "probabilities": probs,
    }


@pytest.fixture()
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun"
    for job, (strategy, seed) in enumerate([("full", 1), ("full", 2), ("frozen", 1)]):
        d = write_run(root / str(job), strategy=strategy, seed=seed, test={"accuracy": 0.75})
        rows = [
            _row(0, "pos", "pos", 0.9, "a joy"),
            _row(1, "neg", "neg", 0.8, "a bore"),
            _row(2, "neg", "pos", 0.6 + 0.1 * seed, f"not bad at all (seed {seed})"),
            _row(3, "pos", "pos" if strategy == "full" else "neg", 0.99, "the best | of the year"),
        ]
        _write_predictions(d, rows)
    return root


def test_report_writes_confusion_matrices_per_class_scores_and_confident_mistakes(sweep, capsys):
    assert main([str(sweep)]) == 0
    out = sweep / "report"
    pngs = sorted(p.name for p in out.glob("confusion_*.png"))
    assert len(pngs) == 2 and any("full" in p for p in pngs) and any("frozen" in p for p in pngs)
    per_class = pd.read_csv(out / "per_class.csv")
    full = per_class[per_class["group"].str.contains("full")].set_index("label")
    # full, 2 seeds: gold pos 2+2 all right; gold neg 2+2, half called pos -> pos precision 4/6, neg recall 2/4
    assert full.loc["pos", "precision"] == pytest.approx(4 / 6) and full.loc["pos", "recall"] == 1.0
    assert full.loc["neg", "recall"] == pytest.approx(0.5) and full.loc["neg", "support"] == 4
    md = (out / "errors.md").read_text()
    sections = {part.split("\n", 1)[0]: part for part in md.split("## ")[1:]}
    full_section = sections["finetune=full"]
    # the seed-2 mistake (0.8) is more confident than the seed-1 one (0.7): listed first, with its text
    assert full_section.index("(seed 2)") < full_section.index("(seed 1)")
    frozen_section = sections["finetune=frozen"]
    assert "0.990" in frozen_section and "the best \\| of the year" in frozen_section
    assert "errors.md" in capsys.readouterr().out


def test_mistakes_zero_skips_the_analysis_and_runs_without_predictions_are_fine(sweep, tmp_path):
    assert main([str(sweep), "--mistakes", "0", "--no-plots"]) == 0
    assert not (sweep / "report" / "errors.md").exists()
    plain = tmp_path / "plain"
    write_run(plain / "0")
    assert main([str(plain), "--no-plots"]) == 0 and not (plain / "report" / "errors.md").exists()


def test_negative_mistakes_is_a_usage_error(sweep, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(sweep), "--mistakes", "-1"])
    assert e.value.code == 2 and "--mistakes" in capsys.readouterr().err


def _ent(t, s, e, text=""):
    return {"type": t, "start": s, "end": e, "text": text}


def test_ner_errors_are_sorted_into_missed_spurious_wrong_type_and_boundary():
    row = {
        "tokens": "Alice met Bob in New York City on Monday".split(),
        "gold_entities": [_ent("person", 0, 1), _ent("person", 2, 3), _ent("location", 4, 7), _ent("date", 8, 9)],
        "entities": [_ent("person", 0, 1), _ent("org", 2, 3), _ent("location", 4, 6), _ent("product", 7, 8)],
    }
    errs = {(e["sort"], e["type"]) for e in sentence_errors(row)}
    assert errs == {
        ("wrong_type", "person"),
        ("wrong_boundary", "location"),
        ("missed", "date"),
        ("spurious", "product"),
    }


def test_ner_report_lists_per_type_errors_and_sentences(tmp_path):
    d = write_run(tmp_path / "runs" / "0", primary="entity_f1", test={"entity_f1": 0.5})
    rows = [
        {
            "index": 0,
            "tokens": ["Paris", "is", "nice"],
            "tags": ["B-location", "O", "O"],
            "entities": [_ent("location", 0, 1, "Paris")],
            "gold_entities": [_ent("location", 0, 1, "Paris")],
        },
        {
            "index": 1,
            "tokens": ["Bob", "likes", "Rome"],
            "tags": ["O", "O", "B-person"],
            "entities": [_ent("person", 2, 3, "Rome")],
            "gold_entities": [_ent("person", 0, 1, "Bob"), _ent("location", 2, 3, "Rome")],
        },
    ]
    _write_predictions(d, rows)
    assert main([str(tmp_path / "runs"), "--no-plots"]) == 0
    per_type = pd.read_csv(tmp_path / "runs" / "report" / "per_class.csv").set_index("type")
    assert per_type.loc["location", "recall"] == pytest.approx(0.5) and per_type.loc["location", "wrong_type"] == 1
    assert per_type.loc["person", "missed"] == 1 and per_type.loc["person", "precision"] == 0.0
    md = (tmp_path / "runs" / "report" / "errors.md").read_text()
    assert "Bob likes Rome" in md and "Paris is nice" not in md


def _ner_row(i: int, tokens: list[str], gold: list[dict], pred: list[dict]) -> dict:
    return {"index": i, "tokens": tokens, "tags": [], "entities": pred, "gold_entities": gold}


@pytest.fixture()
def multitask_sweep(tmp_path) -> Path:
    """Two single-task reviews runs and two multitask runs (reviews + NER), as multitask_study leaves them."""
    root = tmp_path / "multirun"
    for job, seed in enumerate((1, 2)):
        d = write_run(root / str(job), seed=seed, overrides=["task=rotten_tomatoes", f"seed={seed}"])
        _write_predictions(d, [_row(0, "pos", "pos", 0.9, "a joy"), _row(1, "neg", "pos", 0.7, "single-task miss")])
    for job, seed in enumerate((1, 2), start=2):
        d = write_run(
            root / str(job),
            seed=seed,
            overrides=["task=multitask", f"seed={seed}"],
            config={"task.name": "multitask", "task.kind": "multitask", "task.tasks": ["wnut16", "rotten_tomatoes"]},
        )
        summary = json.loads((d / "summary.json").read_text())
        summary |= {
            "task": "multitask",
            "kind": "multitask",
            "primary_metric": "mean",
            "test": {"rotten_tomatoes/accuracy": 0.5, "wnut16/entity_f1": 0.5, "mean": 0.5},
            "data": {
                "tasks": {"rotten_tomatoes": {"primary_metric": "accuracy"}, "wnut16": {"primary_metric": "entity_f1"}}
            },
        }
        (d / "summary.json").write_text(json.dumps(summary))
        (d / "tasks" / "rotten_tomatoes").mkdir(parents=True)
        (d / "tasks" / "wnut16").mkdir()
        _write_predictions(
            d / "tasks" / "rotten_tomatoes",
            [_row(0, "pos", "neg", 0.95, f"multitask miss (seed {seed})"), _row(1, "neg", "neg", 0.8, "a bore")],
        )
        tokens = ["Bob", "likes", "Rome"]
        _write_predictions(
            d / "tasks" / "wnut16",
            [_ner_row(0, tokens, [_ent("person", 0, 1, "Bob")], [_ent("location", 2, 3, "Rome")])],
        )
    return root


def _sections(md: str) -> dict[str, str]:
    return {part.split("\n", 1)[0]: part for part in md.split("## ")[1:]}


def test_a_multitask_run_gets_an_error_analysis_per_task_from_its_task_folders(multitask_sweep, tmp_path):
    out = tmp_path / "report"
    assert main([str(multitask_sweep / "2"), str(multitask_sweep / "3"), "--out", str(out)]) == 0
    sections = _sections((out / "errors.md").read_text())
    # one section per task, in the runs' task.tasks order
    assert list(sections) == ["all runs · wnut16", "all runs · rotten_tomatoes"]
    rt = sections["all runs · rotten_tomatoes"]
    assert "2 run(s)" in rt and "multitask miss (seed 2)" in rt and "single-task miss" not in rt
    assert "missed" in sections["all runs · wnut16"] and "Bob likes Rome" in sections["all runs · wnut16"]
    pngs = [p.name for p in out.glob("confusion_*.png")]
    assert len(pngs) == 1 and "rotten_tomatoes" in pngs[0]  # none for NER
    per_class = pd.read_csv(out / "per_class.csv")
    ner = per_class[per_class["group"] == "all runs · wnut16"].set_index("type")
    assert ner.loc["person", "missed"] == 2 and ner.loc["location", "spurious"] == 2  # summed over both seeds
    rt_rows = per_class[per_class["group"] == "all runs · rotten_tomatoes"].set_index("label")
    assert rt_rows.loc["pos", "recall"] == 0.0 and rt_rows.loc["neg", "support"] == 2


def test_the_task_view_puts_that_task_of_a_multitask_run_beside_its_single_task_runs(multitask_sweep):
    assert main([str(multitask_sweep), "--task", "rotten_tomatoes"]) == 0
    out = multitask_sweep / "report"
    sections = _sections((out / "errors.md").read_text())
    assert set(sections) == {"task=rotten_tomatoes", "task=multitask"}
    assert "multitask miss" in sections["task=multitask"] and "Bob likes Rome" not in sections["task=multitask"]
    assert "single-task miss" in sections["task=rotten_tomatoes"]
    assert len(list(out.glob("confusion_*.png"))) == 2
