"""The three report plots, drawn with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` and never through pyplot, so no GUI backend is
touched and no global state leaks between plots (safe on a headless cluster node and inside tests).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from encoderlab.report.aggregate import Report
from encoderlab.report.curves import GroupCurves, group_curves
from encoderlab.report.sizes import SizeCurves, size_curves
from encoderlab.report.tables import Scale, metric_scale

PRIMARY_PNG = "primary_metric.png"
CURVES_PNG = "learning_curves.png"
COST_PNG = "cost_vs_quality.png"
SIZE_PNG = "sample_efficiency.png"
SIZE_COST_PNG = "sample_efficiency_cost.png"
_DPI = 120


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _wrap(label: str, width: int = 38) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def _scale(report: Report) -> Scale:
    values = np.concatenate([report.runs[report.metric.column].astype(float), report.table["published"].astype(float)])
    return metric_scale(report.metric.name, values)


def _axis_label(report: Report, scale: Scale) -> str:
    return f"{report.metric.split} {scale.header(report.metric.name)}"


def plot_primary(report: Report, path: Path) -> Path:
    """One bar per group (best on top): mean, error bar = std, each seed as a dot, published value as a tick."""
    table, scale = report.table, _scale(report)
    n = len(table)
    fig = Figure(figsize=(7.5, 1.2 + 0.55 * n))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    colors = _colors(n)
    means = table["mean"].to_numpy(float) * scale.factor
    stds = np.nan_to_num(table["std"].to_numpy(float) * scale.factor)
    points = [
        report.runs.loc[report.runs["group"] == g, report.metric.column].to_numpy(float) * scale.factor
        for g in table["group"]
    ]
    published = table["published"].to_numpy(float) * scale.factor
    everything = np.concatenate([means - stds, means + stds, *points, published[~np.isnan(published)]])
    lo, hi = np.nanmin(everything), np.nanmax(everything)
    pad = max((hi - lo) * 0.15, abs(hi) * 0.01, 1e-6)
    # bars start at the left edge of a zoomed axis: seed-to-seed differences are often < 1 point
    left = lo - pad
    ax.barh(y, means - left, left=left, xerr=stds, color=colors, alpha=0.55, capsize=4, height=0.6)
    rng = np.random.default_rng(0)
    for yi, pts in zip(y, points, strict=True):
        ax.scatter(pts, yi + rng.uniform(-0.15, 0.15, size=pts.size), color="black", s=14, zorder=3)
    if not np.all(np.isnan(published)):
        ax.scatter(published, y, marker="|", s=400, color="crimson", zorder=4, label="published")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_xlim(left, hi + pad)
    ax.set_yticks(y, [_wrap(g) for g in table["group"]], fontsize="small")
    ax.set_xlabel(_axis_label(report, scale) + " (mean \u00b1 std, dots = seeds)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_learning_curves(report: Report, path: Path, curves: GroupCurves | None = None) -> Path | None:
    """Val metric and train loss against step, mean per group; None when no run has a metrics.csv."""
    curves = curves or group_curves(report)
    if curves.empty:
        return None
    val_scale = metric_scale(report.metric.name, [v for s in curves.val.values() for v in s.to_numpy()])
    fig = Figure(figsize=(12, 4.5))
    ax_val, ax_loss = fig.subplots(1, 2)
    for color, label in zip(_colors(len(report.table)), report.table["group"], strict=True):
        val, loss = curves.val.get(label), curves.train_loss.get(label)
        if val is not None and not val.empty:
            ax_val.plot(val.index, val.to_numpy() * val_scale.factor, marker="o", ms=3, color=color, label=_wrap(label))
        if loss is not None and not loss.empty:
            ax_loss.plot(loss.index, loss.to_numpy(), color=color, label=_wrap(label))
    for ax, what in ((ax_val, curves.val_column), (ax_loss, "train/loss")):
        if not ax.lines:
            ax.text(0.5, 0.5, f"no {what} in metrics.csv", ha="center", va="center", transform=ax.transAxes)
    ax_val.set_title(f"val {val_scale.header(report.metric.name)}")
    ax_loss.set_title("train loss")
    for ax in (ax_val, ax_loss):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles, labels = ax_val.get_legend_handles_labels()
    if not handles:
        handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(3, max(1, len(labels))),
        fontsize="small",
        bbox_to_anchor=(0.5, -0.02 - 0.05 * ((len(labels) - 1) // 3)),
    )
    fig.subplots_adjust(bottom=0.22)
    return _save(fig, path)


def plot_cost_vs_quality(report: Report, path: Path) -> Path | None:
    """Train seconds against the metric, one dot per run, one color per group; None without timings."""
    runs, scale = report.runs, _scale(report)
    if runs["train_seconds"].notna().sum() == 0:
        return None
    fig = Figure(figsize=(7.5, 5))
    ax = fig.add_subplot()
    for color, label in zip(_colors(len(report.table)), report.table["group"], strict=True):
        group = runs[runs["group"] == label]
        ax.scatter(
            group["train_seconds"].astype(float),
            group[report.metric.column].astype(float) * scale.factor,
            color=color,
            s=36,
            label=_wrap(label),
            alpha=0.85,
            edgecolor="black",
            linewidth=0.4,
        )
    seconds = runs["train_seconds"].dropna().astype(float)
    if len(seconds) and seconds.min() > 0 and seconds.max() / seconds.min() > 30:
        ax.set_xscale("log")
    ax.set_xlabel("train seconds")
    ax.set_ylabel(_axis_label(report, scale))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return _save(fig, path)


def _size_axes(curves: SizeCurves, height: float = 4.2) -> tuple[Figure, list]:
    panels = curves.panels()
    fig = Figure(figsize=(6.2 * len(panels), height))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    return fig, list(zip(panels, axes, strict=True))


def plot_sample_efficiency(report: Report, path: Path, curves: SizeCurves, by: str = "size") -> Path:
    """The metric against training examples (``by="size"``) or train seconds (``by="seconds"``), log x, one line
    per series (arm) and one panel per task; points are means over seeds, error bars their std."""
    scale = _scale(report)
    points = curves.points
    colors = dict(zip(curves.series(), _colors(len(curves.series())), strict=True))
    fig, panels = _size_axes(curves)
    for panel, ax in panels:
        for series in curves.series():
            p = points[(points["panel"] == panel) & (points["series"] == series)]
            if p.empty:
                continue
            x = p["train_size"] if by == "size" else p["seconds"]
            xerr = None if by == "size" else np.nan_to_num(p["seconds_std"].to_numpy(float))
            ax.errorbar(
                x.to_numpy(float),
                p["mean"].to_numpy(float) * scale.factor,
                yerr=np.nan_to_num(p["std"].to_numpy(float)) * scale.factor,
                xerr=xerr,
                marker="o",
                ms=4,
                capsize=3,
                color=colors[series],
                label=series,
            )
            if by == "seconds":  # which size each point is
                for xi, yi, n in zip(x, p["mean"] * scale.factor, p["train_size"], strict=True):
                    ax.annotate(f"{n:,}", (xi, yi), textcoords="offset points", xytext=(4, -9), fontsize="x-small")
        ax.set_xscale("log")
        ax.set_xlabel("training examples" if by == "size" else "train seconds (mean over seeds)")
        ax.set_ylabel(_axis_label(report, scale))
        if panel:
            ax.set_title(panel)
        ax.grid(alpha=0.3, which="both")
    panels[0][1].legend(fontsize="small", loc="best", title=curves.series_title or None, title_fontsize="small")
    return _save(fig, path)


def write_plots(report: Report, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Draw the three plots into ``out_dir``; returns the files written and notes on plots skipped."""
    written, notes = [plot_primary(report, out_dir / PRIMARY_PNG)], []
    curves = plot_learning_curves(report, out_dir / CURVES_PNG)
    if curves is None:
        notes.append(f"{CURVES_PNG} skipped: no run has a readable metrics.csv")
    else:
        written.append(curves)
    cost = plot_cost_vs_quality(report, out_dir / COST_PNG)
    if cost is None:
        notes.append(f"{COST_PNG} skipped: no run has train_seconds in summary.json")
    else:
        written.append(cost)
    sizes = size_curves(report)  # only when the runs vary task.max_train_samples
    if sizes is not None:
        written.append(plot_sample_efficiency(report, out_dir / SIZE_PNG, sizes, by="size"))
        if sizes.points["seconds"].notna().all():
            written.append(plot_sample_efficiency(report, out_dir / SIZE_COST_PNG, sizes, by="seconds"))
    return written, notes
