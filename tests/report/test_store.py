"""Stored results: encoderlab-report DIR --store results/, and the parity benchmark's stored records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from encoderlab.cli.report import main
from encoderlab.report.store import read_records

from .factory import write_run

REPO = Path(__file__).resolve().parents[2]


def test_store_writes_one_sorted_line_per_finished_run_and_is_idempotent(multirun, tmp_path, capsys):
    write_run(multirun / "9", strategy="full", seed=3, status="failed", error="boom")
    results = tmp_path / "results"

    assert main([str(multirun), "--store", str(results)]) == 0
    path = results / "freezing_study" / "runs.jsonl"
    first = path.read_bytes()
    assert "4 added, 0 replaced" in capsys.readouterr().out

    assert main([str(multirun), "--store", str(results)]) == 0  # the same runs again: the same bytes
    assert path.read_bytes() == first
    assert "0 added, 4 replaced" in capsys.readouterr().out

    records = read_records(path)
    assert [r["run_id"] for r in records] == sorted(r["run_id"] for r in records)
    full_1 = next(r for r in records if r["overrides"] == {"finetune": "full", "seed": "1"})
    assert full_1["metrics"]["test/accuracy"] == 0.90 and full_1["seed"] == 1 and full_1["status"] == "finished"
    assert full_1["run_id"].startswith("freezing_study/") and len(full_1["run_id"].split("/")[1]) == 12
    for key in ("steps", "train_seconds", "date", "commit", "precision", "command"):
        assert key in full_1
    assert set(full_1["machine"]) == {"cpu", "flags", "threads", "gpu"}
    assert not (results / "freezing_study" / ".runs.jsonl.tmp").exists()


def test_each_run_keeps_the_command_that_launched_it_when_two_sweeps_share_a_folder(tmp_path):
    """Two sweeps into one folder (Hydra keeps the last one's multirun.yaml): a job of the first is stored with a
    command that runs it, not with the second sweep's."""
    root = tmp_path / "multirun" / "study"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: [finetune=frozen, 'seed=1,2']\n")
    write_run(root / "a", strategy="full", seed=1)  # from an earlier sweep: finetune=full
    write_run(root / "b", strategy="frozen", seed=2)  # from the sweep of multirun.yaml
    results = tmp_path / "results"

    assert main([str(root), "--store", str(results), "--no-plots"]) == 0

    commands = {
        r["overrides"]["finetune"]: r["command"] for r in read_records(results / "freezing_study" / "runs.jsonl")
    }
    assert commands == {
        "frozen": "encoderlab-train -m finetune=frozen seed=1,2",
        "full": "encoderlab-train finetune=full seed=1",
    }


def test_a_rerun_replaces_its_stored_line(multirun, tmp_path):
    results = tmp_path / "results"
    main([str(multirun), "--store", str(results)])
    write_run(multirun / "0", strategy="full", seed=1, test={"accuracy": 0.5})  # job 0 ran again

    main([str(multirun), "--store", str(results)])

    records = read_records(results / "freezing_study" / "runs.jsonl")
    assert len(records) == 4
    assert [r["metrics"]["test/accuracy"] for r in records if r["overrides"]["finetune"] == "full"].count(0.5) == 1


def test_group_table_gains_the_interval_and_the_paired_difference_to_the_reference_arm(tmp_path, capsys):
    claims = [
        {"id": "c", "key": "finetune", "a": "frozen", "b": "full", "metric": "test/accuracy", "direction": "higher"}
    ]
    for seed, (frozen, full) in enumerate([(0.70, 0.80), (0.74, 0.85), (0.72, 0.81)], start=1):
        write_run(
            tmp_path / f"a{seed}", strategy="frozen", seed=seed, test={"accuracy": frozen}, config={"claims": claims}
        )
        write_run(tmp_path / f"b{seed}", strategy="full", seed=seed, test={"accuracy": full}, config={"claims": claims})

    assert main([str(tmp_path), "--no-plots", "--mistakes", "0"]) == 0

    table = pd.read_csv(tmp_path / "report" / "report.csv")
    full = table[table["finetune"] == "full"].iloc[0]
    assert full["n"] == 3 and full["ci_low"] < full["mean"] < full["ci_high"]
    assert full["ref_diff"] == pytest.approx((0.10 + 0.11 + 0.09) / 3)
    assert full["ref_ci_low"] > 0 and full["ref_n"] == 3
    md = (tmp_path / "report" / "report.md").read_text()
    assert "95% interval" in md and "vs finetune=frozen (paired, 95%)" in md and "+10.00 [" in md


def _parity():
    spec = importlib.util.spec_from_file_location("parity_bench", REPO / "benchmarks" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def test_parity_raw_jsonl_converts_into_the_stored_shape(tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    base = {"train_seconds": 1.0, "max_train_samples": 2000, "epochs": 1, "steps": -1, "batch": 32, "lr": 1e-4}
    rows = [
        {"side": "hf_trainer", "bucketing": None, "seed": 1, "accuracy": 0.75, "threads": 2, "date": "2026-12-06"},
        {"side": "encoderlab", "bucketing": False, "seed": 1, "accuracy": 0.76, "threads": 2, "date": "2026-12-06"},
        {"side": "encoderlab", "bucketing": True, "seed": 1, "accuracy": 0.77, "threads": 2, "date": "2026-12-06"},
    ]
    raw.write_text("".join(json.dumps(base | r) + "\n" for r in rows))
    parity = _parity()

    assert parity.main(["--from-jsonl", str(raw), "--store", str(tmp_path / "results")]) == 0
    first = (tmp_path / "results" / "parity" / "runs.jsonl").read_bytes()
    assert parity.main(["--from-jsonl", str(raw), "--store", str(tmp_path / "results")]) == 0

    assert (tmp_path / "results" / "parity" / "runs.jsonl").read_bytes() == first
    records = read_records(tmp_path / "results" / "parity" / "runs.jsonl")
    shapes = sorted((r["overrides"]["side"], r["overrides"]["bucketing"]) for r in records)
    assert shapes == [("encoderlab", "off"), ("encoderlab", "on"), ("hf_trainer", "-")]
    assert all(r["date"] == "2026-12-06" and r["machine"]["threads"] == 2 for r in records)
    assert {r["metrics"]["test/accuracy"] for r in records} == {0.75, 0.76, 0.77}


def test_a_run_keeps_the_commit_it_recorded_and_older_runs_take_commit_flag(multirun, tmp_path):
    """A run's summary.json names the code that made it; runs from before that field take --commit."""
    summary_file = multirun / "0" / "summary.json"
    summary = json.loads(summary_file.read_text())
    summary["commit"] = "aaaaaaa"
    summary_file.write_text(json.dumps(summary))
    results = tmp_path / "results"

    assert main([str(multirun), "--store", str(results), "--commit", "bbbbbbb"]) == 0

    commits = {
        r["overrides"]["finetune"] + r["overrides"]["seed"]: r["commit"]
        for r in read_records(results / "freezing_study" / "runs.jsonl")
    }
    assert commits.pop("full1") == "aaaaaaa"
    assert set(commits.values()) == {"bbbbbbb"}
