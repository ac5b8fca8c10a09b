"""Write a :class:`Report` to a folder: report.md, report.csv, runs.csv and the plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from encoderlab.errors import EncoderlabError
from encoderlab.report.aggregate import Report
from encoderlab.report.tables import markdown

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
RUNS_CSV = "runs.csv"


@dataclass
class Written:
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # plots skipped, and why


def default_out_dir(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """``<path>/report`` when one folder is given (it sits beside the runs it describes), else ``./report``."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]) / "report"
    return Path("report")


def write_report(
    report: Report, out_dir: str | os.PathLike[str], plots: bool = True, mistakes: int = 10, explain: bool = False
) -> Written:
    """Write the group table (``report.csv``, unrounded), every run (``runs.csv``), ``report.md`` and the PNGs,
    and the error analysis of the runs' test predictions (``errors.md``, ``per_class.csv``, confusion matrices)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EncoderlabError(f"--out {out}: cannot create the folder ({e.strerror}); pick another --out DIR") from None
    written = Written()
    if plots:
        from encoderlab.report.plots import write_plots  # matplotlib loads only when plots are wanted

        written.files, written.notes = write_plots(report, out)
    report.table.to_csv(out / REPORT_CSV, index=False)
    runs = report.runs.drop(columns=["metrics_csv"], errors="ignore")
    excluded = report.excluded.drop(columns=["metrics_csv"], errors="ignore")
    pd.concat([runs, excluded], ignore_index=True).to_csv(out / RUNS_CSV, index=False)
    (out / REPORT_MD).write_text(markdown(report, images=[p.name for p in written.files]) + "\n", encoding="utf-8")
    written.files = [out / REPORT_MD, out / REPORT_CSV, out / RUNS_CSV, *written.files]
    if mistakes > 0:
        from encoderlab.report.errors import write_error_analysis

        written.files += write_error_analysis(report, out, top=mistakes, plots=plots, explain=explain)
    return written
