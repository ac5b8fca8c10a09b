"""Compare runs: discover run dirs (or W&B runs), group them by what was varied, aggregate over seeds,
and write a Markdown/CSV table and plots.

    frame = load_runs(["multirun/2026-11-22/10-00-00"])
    report = build_report(frame)              # or build_report(frame, metric="f1_macro", split="val")
    write_report(report, "report/")           # report.md, report.csv, runs.csv, *.png
"""

from encoderlab.report.aggregate import MetricChoice, Report, build_report, group_columns, select_metric
from encoderlab.report.outputs import Written, default_out_dir, write_report
from encoderlab.report.runs import RunRecord, discover_run_dirs, load_run, load_runs, records_to_frame
from encoderlab.report.wandb_source import load_wandb_runs, wandb_run_to_record

__all__ = [
    "MetricChoice",
    "Report",
    "RunRecord",
    "Written",
    "build_report",
    "default_out_dir",
    "discover_run_dirs",
    "group_columns",
    "load_run",
    "load_runs",
    "load_wandb_runs",
    "records_to_frame",
    "select_metric",
    "wandb_run_to_record",
    "write_report",
]
