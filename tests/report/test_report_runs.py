"""Discovery and loading of run dirs into a DataFrame."""

from __future__ import annotations

import json

import pytest

from encoderlab.errors import EncoderlabError
from encoderlab.report.runs import discover_run_dirs, load_runs, parse_overrides

from .factory import write_run


def test_multirun_dir_finds_every_job_in_numeric_order(tmp_path):
    root = tmp_path / "multirun" / "2026-11-22" / "10-00-00"
    for job in range(12):
        write_run(root / str(job), seed=job)
    (root / "multirun.yaml").write_text("hydra: {}\n")

    found = discover_run_dirs([root])

    assert [p.name for p in found] == [str(j) for j in range(12)]


def test_mixed_paths_globs_and_parents_are_deduplicated(tmp_path, multirun):
    single = write_run(tmp_path / "outputs" / "2026-11-22" / "09-00-00", strategy="top_k")

    found = discover_run_dirs([tmp_path, multirun / "0", str(tmp_path / "multirun" / "*" / "*"), single])

    assert len(found) == 5
    assert single.resolve() in found


def test_a_run_dirs_subfolders_are_not_searched(tmp_path):
    run = write_run(tmp_path / "run")
    write_run(run / "hf" / "stray")  # e.g. a copied summary.json inside the exported model

    assert discover_run_dirs([tmp_path]) == [run.resolve()]


def test_path_without_runs_names_the_path_and_the_layout(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")

    with pytest.raises(EncoderlabError) as err:
        discover_run_dirs([empty])

    assert str(empty) in str(err.value)
    assert "summary.json" in str(err.value)


@pytest.mark.parametrize("name", ["does_not_exist", "no_match_*"])
def test_missing_path_or_empty_glob_is_an_error(tmp_path, name):
    with pytest.raises(EncoderlabError, match="no runs found under"):
        discover_run_dirs([tmp_path / name])


def test_frame_has_flat_config_overrides_and_metrics(multirun):
    frame = load_runs([multirun])

    assert len(frame) == 4
    first = frame.iloc[0]
    assert first["status"] == "finished"
    assert first["test/accuracy"] == pytest.approx(0.90)
    assert first["val/accuracy"] == pytest.approx(0.89)
    assert first["cfg.finetune.strategy"] == "full"
    assert first["cfg.optimizer.lr"] == 2e-5
    assert json.loads(first["cfg.optimizer.betas"]) == [0.9, 0.999]
    assert first["override.finetune"] == "full"
    assert first["metrics_csv"].endswith("metrics.csv")
    # config values keep their Python type (an int stays an int)
    assert first["cfg.trainer.max_epochs"] == 2 and isinstance(first["cfg.trainer.max_epochs"], int)


def test_broken_summary_names_the_file_and_line(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "summary.json").write_text('{"status": "finished",\n  "val": }')

    with pytest.raises(EncoderlabError, match=r"summary.json line 2"):
        load_runs([run])


def test_parse_overrides_strips_prefixes_and_group_paths():
    parsed = parse_overrides(["+trainer.extra.x=1", "++seed=3", "~callbacks", "hydra/launcher=joblib", "lr=1e-3"])

    assert parsed == {"trainer.extra.x": "1", "seed": "3", "hydra.launcher": "joblib", "lr": "1e-3"}


def test_metrics_csv_is_found_in_the_run_dir_or_under_csv(tmp_path):
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", seed=2)
    (b / "csv" / "metrics.csv").rename(b / "metrics.csv")  # CSVLogger(save_dir=run_dir, name="", version="")
    c = write_run(tmp_path / "c", seed=3, curve=False)

    found = load_runs([tmp_path]).set_index("run_dir")["metrics_csv"]

    assert found[str(a.resolve())] == str(a.resolve() / "csv" / "metrics.csv")
    assert found[str(b.resolve())] == str(b.resolve() / "metrics.csv")
    assert found.isna()[str(c.resolve())]
