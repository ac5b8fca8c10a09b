"""Learning curves from Lightning's ``metrics.csv``, averaged per group.

CSVLogger writes one row per logging call, so a row holds either the train columns or the val columns and
the rest is empty; each metric is read on its own, keyed by ``step``. Seeds of one group may log at
different steps (early stopping, uneven last batch), so each run is interpolated onto the union of steps,
inside its own range only, before the mean is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from encoderlab.report.aggregate import Report

TRAIN_LOSS = ("train/loss", "train/loss_step", "train_loss", "train_loss_step", "train/loss_epoch", "train_loss_epoch")


def val_names(metric: str) -> tuple[str, ...]:
    return (f"val/{metric}", f"val_{metric}", f"val/{metric}_epoch", f"val_{metric}_epoch")


def read_metrics_csv(path: str | Path) -> pd.DataFrame:
    """The CSVLogger table; an unreadable file gives an empty table (a plot is skipped, not the report)."""
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return pd.DataFrame()


def metric_series(metrics: pd.DataFrame, names: Sequence[str]) -> pd.Series:
    """The first of ``names`` present in ``metrics``, indexed by step; empty cells dropped, last value per step."""
    column = next((n for n in names if n in metrics.columns and metrics[n].notna().any()), None)
    if column is None:
        return pd.Series(dtype=float)
    steps = metrics["step"] if "step" in metrics.columns else pd.Series(range(len(metrics)), index=metrics.index)
    values = pd.to_numeric(metrics[column], errors="coerce")
    keep = values.notna() & steps.notna()
    series = pd.Series(values[keep].to_numpy(), index=steps[keep].astype(int).to_numpy(), name=column)
    return series.groupby(level=0).last().sort_index()


def mean_curve(curves: Sequence[pd.Series]) -> pd.Series:
    """Mean over runs on the union of their steps; each run counts only inside its own step range."""
    curves = [c for c in curves if not c.empty]
    if not curves:
        return pd.Series(dtype=float)
    table = pd.concat(curves, axis=1, keys=range(len(curves))).sort_index()
    table = table.interpolate(method="index", limit_area="inside")
    return table.mean(axis=1, skipna=True).dropna()


@dataclass
class GroupCurves:
    """Per group label: the mean val-metric curve and the mean train-loss curve."""

    val: dict[str, pd.Series] = field(default_factory=dict)
    train_loss: dict[str, pd.Series] = field(default_factory=dict)
    val_column: str = ""

    @property
    def empty(self) -> bool:
        return not any(not s.empty for s in [*self.val.values(), *self.train_loss.values()])


def group_curves(report: Report) -> GroupCurves:
    """Read every finished run's metrics.csv and average per group, in the table's (best-first) order."""
    out = GroupCurves(val_column=f"val/{report.metric.name}")
    names = val_names(report.metric.name)
    for label in report.table["group"]:
        group = report.runs[report.runs["group"] == label]
        val, loss = [], []
        for path in group["metrics_csv"].dropna():
            metrics = read_metrics_csv(path)
            if metrics.empty:
                continue
            val.append(metric_series(metrics, names))
            loss.append(metric_series(metrics, TRAIN_LOSS))
        out.val[label] = mean_curve(val)
        out.train_loss[label] = mean_curve(loss)
    return out
