"""The encoderlab-report command line."""

from __future__ import annotations

import pandas as pd
import pytest

from encoderlab.cli.report import main

from .factory import write_run


def test_report_of_a_multirun_prints_the_table_and_the_files(multirun, capsys):
    code = main([str(multirun), "--no-plots"])

    out = capsys.readouterr().out
    assert code == 0
    assert "88.00 \u00b1 2.83" in out and "72.50 \u00b1 3.54" in out
    assert "4 finished runs in 2 groups" in out
    assert str(multirun / "report" / "report.md") in out  # default --out: <path>/report
    assert pd.read_csv(multirun / "report" / "report.csv")["n"].tolist() == [2, 2]


def test_out_metric_and_split_flags(multirun, tmp_path, capsys):
    code = main(
        [
            str(multirun / "0"),
            str(multirun / "2"),
            "--out",
            str(tmp_path / "o"),
            "--metric",
            "accuracy",
            "--split",
            "val",
            "--no-plots",
        ]
    )

    assert code == 0
    table = pd.read_csv(tmp_path / "o" / "report.csv")
    assert table["split"].tolist() == ["val", "val"]
    assert table["mean"].tolist() == pytest.approx([0.89, 0.69])


def test_errors_are_one_line_without_traceback_and_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()

    code = main([str(empty)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("encoderlab-report: error: no runs found under") and str(empty) in err


def test_mixed_primary_metrics_exit_2(tmp_path, capsys):
    write_run(tmp_path / "a", primary="accuracy")
    write_run(tmp_path / "b", primary="f1_macro", test={"f1_macro": 0.5})

    assert main([str(tmp_path), "--no-plots"]) == 2
    assert "different primary metrics" in capsys.readouterr().err


def test_no_path_and_no_wandb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])

    assert exit_.value.code == 2
    assert "give at least one PATH" in capsys.readouterr().err
