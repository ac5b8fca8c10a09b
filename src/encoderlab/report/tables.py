"""Render a :class:`Report` as a terminal table (rich) and as Markdown.

Display rule for scores
    Metrics named like a rate (``accuracy``, ``f1``, ``precision``, ``recall``, ``exact_match``, with any
    prefix or suffix such as ``f1_macro`` or ``entity_f1``) are shown x100 with a ``%`` header when every
    value lies in [0, 1]; correlations (``matthews_correlation``, ``pearson``, ``spearman``) are shown x100
    when in [-1, 1], as the GLUE leaderboard does. Everything else (losses, perplexity, mse, SQuAD scores
    already in 0-100) is shown as stored. The CSV always holds the raw, unrounded values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.table import Table

from encoderlab.report.aggregate import Report, format_group_value
from encoderlab.report.runs import is_missing

DASH = "\u2013"
_RATE = re.compile(r"(^|_)(accuracy|acc|f1|precision|recall|exact_match)(_|$)")
_CORRELATION = re.compile(r"(^|_)(matthews_correlation|mcc|pearson|spearman)(_|$)")
_HIDDEN_METRICS = ("loss",)  # in the CSV, too noisy for the terminal table
RANGE_HEADER = "min \u2026 max"
CI_HEADER = "95% interval"


@dataclass(frozen=True)
class Scale:
    """How a metric is displayed: multiplied by ``factor``, with ``unit`` in the header."""

    factor: float = 1.0
    unit: str = ""

    def header(self, name: str) -> str:
        return f"{name} ({self.unit})" if self.unit else name


def metric_scale(name: str, values: Iterable[Any] = ()) -> Scale:
    """The display scale of metric ``name`` given the values it takes (see the module docstring)."""
    leaf = name.rsplit("/", 1)[-1].lower()
    finite = [float(v) for v in values if v is not None and not _nan(v)]
    if _RATE.search(leaf) and all(0.0 <= v <= 1.0 for v in finite):
        return Scale(100.0, "%")
    if _CORRELATION.search(leaf) and all(-1.0 <= v <= 1.0 for v in finite):
        return Scale(100.0, "\u00d7100")
    return Scale()


def _nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _decimals(scale: Scale, value: float) -> int:
    if scale.factor != 1.0:
        return 2
    magnitude = abs(value)
    return 1 if magnitude >= 100 else 3 if magnitude >= 1 else 4


def fmt(value: Any, scale: Scale = Scale(), signed: bool = False) -> str:
    if _nan(value):
        return DASH
    v = float(value) * scale.factor
    return f"{v:{'+' if signed else ''}.{_decimals(scale, v)}f}"


def fmt_mean_std(mean: Any, std: Any, scale: Scale = Scale()) -> str:
    """``92.70 ± 0.35``; the spread of a single run is shown as ``–``."""
    if _nan(mean):
        return DASH
    digits = _decimals(scale, float(mean) * scale.factor)
    spread = DASH if _nan(std) else f"{float(std) * scale.factor:.{digits}f}"
    return f"{float(mean) * scale.factor:.{digits}f} \u00b1 {spread}"


def fmt_interval(low: Any, high: Any, scale: Scale = Scale(), signed: bool = False) -> str:
    """``[91.20, 94.10]``; ``–`` when undefined (a single run)."""
    if _nan(low) or _nan(high):
        return DASH
    return f"[{fmt(low, scale, signed)}, {fmt(high, scale, signed)}]"


def _reference_cell(values: Any, scale: Scale) -> str:
    n = values.get("ref_n")
    if n is None or _nan(n):
        return "ref" if values.get("ref_diff") == 0.0 else DASH
    interval = fmt_interval(values["ref_ci_low"], values["ref_ci_high"], scale, signed=True)
    test = "" if values.get("ref_paired") else ", Welch"
    return f"{fmt(values['ref_diff'], scale, signed=True)} {interval} (n={int(n)}{test})"


def _seconds(value: Any) -> str:
    if _nan(value):
        return DASH
    v = float(value)
    return f"{v:.1f}" if v < 600 else f"{v / 60:.1f} min"


def _metric_values(report: Report, metric: str) -> np.ndarray:
    column = f"{report.metric.split}/{metric}"
    values = report.runs[column].astype(float).to_numpy()
    if metric == report.metric.name:
        values = np.concatenate([values, report.table["published"].astype(float).to_numpy()])
    return values


def display_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells shared by the terminal and Markdown tables."""
    m = report.metric
    scale = metric_scale(m.name, _metric_values(report, m.name))
    others = [o for o in report.other_metrics if o not in _HIDDEN_METRICS]
    other_scales = {o: metric_scale(o, _metric_values(report, o)) for o in others}
    has_published = report.table["published"].notna().any()
    # model size and inference speed, when the groups differ in size (a distillation study, say)
    sizes = report.table["total_params"].dropna() if "total_params" in report.table else []
    has_sizes = len(set(sizes)) > 1
    speed = report.table.get("predict_samples_per_second_mean")
    has_sizes = has_sizes and speed is not None

    headers = ["#", *report.group_names, f"{m.split} {scale.header(m.name)}", RANGE_HEADER, "n", CI_HEADER]
    if report.reference:
        headers.append(f"\u0394 vs {report.reference} (paired, 95%)")
    headers += [f"{m.split} {other_scales[o].header(o)}" for o in others]
    headers += ["train s"]
    if has_sizes:
        headers += ["params", "predict/s"]
    if has_published:
        headers += ["published", "\u0394", "pass"]

    rows = []
    for rank, (_, values) in enumerate(report.table.iterrows(), start=1):
        cells = [str(rank)]
        names = zip(report.group_names, report.group_columns, strict=True)
        cells += [format_group_value(values[name], col) for name, col in names]
        cells += [
            fmt_mean_std(values["mean"], values["std"], scale),
            f"{fmt(values['min'], scale)} \u2026 {fmt(values['max'], scale)}",
            str(int(values["n"])),
            fmt_interval(values.get("ci_low"), values.get("ci_high"), scale),
        ]
        if report.reference:
            cells.append(_reference_cell(values, scale))
        cells += [
            fmt_mean_std(values[f"{m.split}/{o}_mean"], values[f"{m.split}/{o}_std"], other_scales[o]) for o in others
        ]
        cells.append(_seconds(values["train_seconds_mean"]))
        if has_sizes:
            params, speed = values["total_params"], values["predict_samples_per_second_mean"]
            cells += [DASH if _nan(params) else f"{float(params) / 1e6:.3g}M", DASH if _nan(speed) else f"{speed:.0f}"]
        if has_published:
            passed = values["pass"]
            verdict = DASH if passed is None or _nan(float(passed)) else ("\u2713" if passed else "\u2717")
            cells += [fmt(values["published"], scale), fmt(values["delta"], scale, signed=True), verdict]
        rows.append(cells)
    return headers, rows


def summary_lines(report: Report) -> list[str]:
    """What the table is ranked by, and which runs it leaves out (and why)."""
    m = report.metric
    direction = "higher" if m.greater_is_better else "lower"
    lines = [
        f"{len(report.runs)} finished runs in {len(report.table)} groups, ranked by {m.column} "
        f"({direction} is better); mean \u00b1 sample std over seeds"
    ]
    if m.note:
        lines.append(m.note)
    if not report.excluded.empty:
        counts = ", ".join(f"{n} {s}" for s, n in report.excluded["status"].value_counts().items())
        lines.append(f"excluded from the means: {counts}")
        lines += [f"  {line}" for line in excluded_lines(report)]
    resumed = resumed_lines(report)
    if resumed:
        lines.append(f"{len(resumed)} run(s) resumed from a checkpoint after an interruption:")
        lines += [f"  {line}" for line in resumed]
    return lines


def resumed_lines(report: Report) -> list[str]:
    """One line per finished run that was continued from a checkpoint: folder, attempts and checkpoint."""
    if "resumed" not in report.runs:
        return []
    lines = []
    for r in report.runs[report.runs["resumed"].fillna(False).astype(bool)].itertuples():
        attempts = f"attempt {int(r.attempts)}" if not is_missing(r.attempts) else "resumed"
        lines.append(f"{r.run_dir}: {attempts}, from {r.resumed_from}")
    return lines


def excluded_lines(report: Report) -> list[str]:
    """One line per failed or running run: status, folder and the first line of its error."""
    lines = []
    for r in report.excluded.itertuples():
        error = r.error if isinstance(r.error, str) and r.error.strip() else ""
        lines.append(f"{r.status}: {r.run_dir}" + (f": {error.strip().splitlines()[0]}" if error else ""))
    return lines


def rich_table(report: Report) -> Table:
    """The terminal table: the Markdown columns minus min … max; numbers never wrap, group labels may."""
    headers, rows = display_rows(report)
    drop = headers.index(RANGE_HEADER)
    headers = headers[:drop] + headers[drop + 1 :]
    rows = [cells[:drop] + cells[drop + 1 :] for cells in rows]
    table = Table(title=f"encoderlab report: {report.metric.column}")
    n_group = len(report.group_names)
    for i, header in enumerate(headers):
        if 0 < i <= n_group:
            table.add_column(header, justify="left")
        else:  # fixed width: the numbers never wrap or get cut, a long header wraps over two lines
            short = len(header) if len(header) <= 10 else 0
            width = max([len(c[i]) for c in rows] + [len(word) for word in header.split()] + [short])
            table.add_column(header, justify="right", width=width)
    for i, cells in enumerate(rows):
        styled = list(cells)
        if headers[-1] == "pass":
            styled[-1] = {"\u2713": "[green]\u2713[/]", "\u2717": "[red]\u2717[/]"}.get(cells[-1], cells[-1])
        table.add_row(*styled, style="bold" if i == 0 else None)
    return table


def size_rich_table(report: Report) -> Table | None:
    """The sample-efficiency table for the terminal; None when the runs do not vary the training size."""
    from encoderlab.report.sizes import size_curves, size_table

    curves = size_curves(report)
    if curves is None:
        return None
    scale = metric_scale(report.metric.name, _metric_values(report, report.metric.name))
    headers, rows = size_table(curves, lambda mean, std: fmt_mean_std(mean, std, scale))
    table = Table(title=f"{report.metric.column} by training examples (mean \u00b1 std, n runs)")
    for header in headers:
        table.add_column(header, justify="right" if header.startswith("n=") else "left")
    for cells in rows:
        table.add_row(*cells)
    return table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _size_section(report: Report) -> list[str]:
    """The metric per arm and training size (mean ± std (n)), when the runs vary task.max_train_samples."""
    from encoderlab.report.sizes import size_curves, size_table

    curves = size_curves(report)
    if curves is None:
        return []
    scale = metric_scale(report.metric.name, _metric_values(report, report.metric.name))
    headers, rows = size_table(curves, lambda mean, std: fmt_mean_std(mean, std, scale))
    lines = ["## Sample efficiency", "", f"{report.metric.column} by training examples: mean \u00b1 std (n runs)", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
    lines.append("| " + " | ".join(":---" if not h.startswith("n=") else "---:" for h in headers) + " |")
    lines += ["| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in rows]
    return [*lines, ""]


def markdown(report: Report, images: Iterable[str] = ()) -> str:
    """The report as Markdown: summary, table, excluded runs, runs per group, and the plots."""
    headers, rows = display_rows(report)
    n_group = len(report.group_names)
    align = ["---:" if i == 0 or i > n_group else ":---" for i in range(len(headers))]
    lines = [f"# encoderlab report: {report.metric.column}", ""]
    lines += [summary_lines(report)[0], ""]
    if report.metric.note:
        lines += [f"Note: {report.metric.note}", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
    lines.append("| " + " | ".join(align) + " |")
    lines += ["| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in rows]
    lines.append("")
    if not report.excluded.empty:
        lines += ["## Excluded runs", ""]
        lines += [f"- {_md_cell(line)}" for line in excluded_lines(report)]
        lines.append("")
    if resumed := resumed_lines(report):
        lines += ["## Resumed runs", "", "Killed or failed, then continued from their last checkpoint:", ""]
        lines += [f"- {_md_cell(line)}" for line in resumed]
        lines.append("")
    lines += _size_section(report)
    lines += ["## Runs per group", ""]
    for label in report.table["group"]:
        group = report.runs[report.runs["group"] == label]
        flags = group["resumed"].fillna(False).astype(bool) if "resumed" in group else [False] * len(group)
        dirs = [f"`{d}`" + (" (resumed)" if flag else "") for d, flag in zip(group["run_dir"], flags, strict=True)]
        lines.append(f"- **{_md_cell(label)}**: " + ", ".join(dirs))
    lines.append("")
    for image in images:
        lines += [f"![{image}]({image})", ""]
    return "\n".join(lines)
