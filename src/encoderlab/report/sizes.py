"""Sample efficiency: the metric against the training-set size, for studies that sweep ``task.max_train_samples``.

A group column for ``task.max_train_samples`` marks such a study. The other group columns split into panels (the
task: scores of two data sets never share an axis) and series (the arms: fine-tuning, a probe, tf-idf, ...). A run's
x value is the number of training examples it really had (``summary.json`` ``data.sizes.train``), so ``null``
(all of them) and a size above the split's size land where they belong, and runs with the same real size are
aggregated together.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from encoderlab.report.aggregate import Report, display_key, format_group_value

SIZE_KEY = "task.max_train_samples"
PANEL_KEYS = ("task", "task.name", "task.dataset")


@dataclass
class SizeCurves:
    """One row per (panel, series, train size): the metric's mean, std and n, and the mean train seconds."""

    points: pd.DataFrame
    series_title: str  # the group keys that name a series, for the legend

    def panels(self) -> list[str]:
        return list(dict.fromkeys(self.points["panel"]))

    def series(self) -> list[str]:
        return list(dict.fromkeys(self.points["series"]))


def _label(row: pd.Series, columns: list[str]) -> str:
    if len(columns) == 1:
        return format_group_value(row[columns[0]], columns[0])
    return ", ".join(f"{display_key(c)}={format_group_value(row[c], c)}" for c in columns)


def size_curves(report: Report) -> SizeCurves | None:
    """The points of the sample-efficiency plots; None when the runs do not vary the training size."""
    size_column = next((c for c in report.group_columns if display_key(c) == SIZE_KEY), None)
    if size_column is None or "train_size" not in report.runs.columns:
        return None
    runs = report.runs[report.runs["train_size"].notna()].copy()
    if runs.empty:
        return None
    others = [c for c in report.group_columns if c != size_column]
    panel_columns = [c for c in others if display_key(c) in PANEL_KEYS]
    series_columns = [c for c in others if c not in panel_columns]
    runs["panel"] = runs.apply(_label, axis=1, columns=panel_columns) if panel_columns else ""
    runs["series"] = runs.apply(_label, axis=1, columns=series_columns) if series_columns else "all runs"
    runs["train_size"] = runs["train_size"].astype(int)
    runs["value"] = runs[report.metric.column].astype(float)
    points = (
        runs.groupby(["panel", "series", "train_size"], sort=False)
        .agg(
            mean=("value", "mean"),
            std=("value", "std"),
            n=("value", "size"),
            seconds=("train_seconds", "mean"),
            seconds_std=("train_seconds", "std"),
        )
        .reset_index()
        .sort_values(["panel", "series", "train_size"], kind="mergesort")
        .reset_index(drop=True)
    )
    title = ", ".join(display_key(c) for c in series_columns)
    return SizeCurves(points, title)


def size_table(curves: SizeCurves, fmt) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of a (panel, series) x train-size table; ``fmt(mean, std)`` formats a cell."""
    sizes = sorted(curves.points["train_size"].unique())
    with_panel = curves.panels() != [""]
    headers = (["task"] if with_panel else []) + [curves.series_title or "series"] + [f"n={s:,}" for s in sizes]
    rows = []
    for (panel, series), group in curves.points.groupby(["panel", "series"], sort=False):
        by_size = {int(r.train_size): r for r in group.itertuples()}
        cells = ([panel] if with_panel else []) + [series]
        for s in sizes:
            r = by_size.get(int(s))
            cells.append(fmt(r.mean, r.std) + f" ({r.n})" if r is not None else "\u2013")
        rows.append(cells)
    return headers, rows
