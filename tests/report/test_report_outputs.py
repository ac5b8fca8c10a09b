"""Files written by the report, learning-curve parsing and the display rule for scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from encoderlab.report import build_report, load_runs, write_report
from encoderlab.report.curves import TRAIN_LOSS, group_curves, mean_curve, metric_series, read_metrics_csv, val_names
from encoderlab.report.tables import DASH, display_rows, fmt_mean_std, markdown, metric_scale

from .factory import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_markdown_csv_and_plots_are_written_and_csv_reloads_with_the_same_numbers(multirun, tmp_path):
    report = build_report(load_runs([multirun]))

    written = write_report(report, tmp_path / "out")

    names = sorted(p.name for p in written.files)
    assert names == sorted(
        ["report.md", "report.csv", "runs.csv", "primary_metric.png", "learning_curves.png", "cost_vs_quality.png"]
    )
    for png in (p for p in written.files if p.suffix == ".png"):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
    reloaded = pd.read_csv(tmp_path / "out" / "report.csv")
    for col in ("mean", "std", "min", "max", "n", "test/f1_macro_mean", "train_seconds_mean"):
        np.testing.assert_array_equal(reloaded[col].to_numpy(float), report.table[col].to_numpy(float))
    assert list(reloaded["finetune"]) == ["full", "frozen"]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 4 and set(runs["group"]) == {"finetune=full", "finetune=frozen"}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| 1 | full | 88.00 \u00b1 2.83 |" in md
    assert "![primary_metric.png](primary_metric.png)" in md


def test_no_plots_writes_tables_only(multirun, tmp_path):
    written = write_report(build_report(load_runs([multirun])), tmp_path / "out", plots=False)

    assert sorted(p.name for p in written.files) == ["report.csv", "report.md", "runs.csv"]
    assert not list((tmp_path / "out").glob("*.png"))


def test_runs_without_metrics_csv_or_timings_skip_those_plots_with_a_note(tmp_path):
    write_run(tmp_path / "a", curve=False, train_seconds=None)

    written = write_report(build_report(load_runs([tmp_path])), tmp_path / "out")

    assert [p.name for p in written.files if p.suffix == ".png"] == ["primary_metric.png"]
    assert any("learning_curves.png skipped" in n for n in written.notes)
    assert any("cost_vs_quality.png skipped" in n for n in written.notes)


def test_sparse_metrics_csv_parses_into_per_metric_series(tmp_path):
    run = write_run(tmp_path / "a", test={"accuracy": 0.9})
    metrics = read_metrics_csv(run / "csv" / "metrics.csv")

    val = metric_series(metrics, val_names("accuracy"))
    loss = metric_series(metrics, TRAIN_LOSS)

    assert list(val.index) == [19, 39] and list(val) == pytest.approx([0.8, 0.9])
    assert list(loss.index) == [9, 19, 29, 39] and list(loss) == pytest.approx([0.69, 0.61, 0.52, 0.47])


def test_mean_curve_interpolates_runs_logged_at_different_steps():
    a = pd.Series([0.0, 1.0], index=[0, 10])
    b = pd.Series([1.0, 2.0, 3.0], index=[0, 5, 20])

    mean = mean_curve([a, b])

    assert list(mean.index) == [0, 5, 10, 20]
    # step 5: a interpolated to 0.5; step 20: only b reaches it (a is not extrapolated)
    assert list(mean) == pytest.approx([0.5, (0.5 + 2.0) / 2, (1.0 + 7 / 3) / 2, 3.0])


def test_group_curves_average_the_seeds_of_each_group(multirun):
    curves = group_curves(build_report(load_runs([multirun])))

    assert curves.val["finetune=full"].iloc[-1] == pytest.approx((0.90 + 0.86) / 2)
    assert curves.val["finetune=frozen"].iloc[0] == pytest.approx((0.60 + 0.65) / 2)


@pytest.mark.parametrize(
    ("name", "values", "factor", "unit"),
    [
        ("accuracy", [0.9], 100.0, "%"),
        ("f1_macro", [0.5], 100.0, "%"),
        ("entity_f1", [0.5], 100.0, "%"),
        ("exact_match", [81.2], 1.0, ""),  # SQuAD scores already in 0-100
        ("matthews_correlation", [-0.1, 0.6], 100.0, "\u00d7100"),
        ("mse", [0.4], 1.0, ""),
        ("perplexity", [12.0], 1.0, ""),
        ("loss", [0.4], 1.0, ""),
    ],
)
def test_display_scale_rule(name, values, factor, unit):
    scale = metric_scale(name, values)

    assert (scale.factor, scale.unit) == (factor, unit)


def test_single_run_spread_is_a_dash(tmp_path):
    write_run(tmp_path / "a", test={"accuracy": 0.9})
    headers, rows = display_rows(build_report(load_runs([tmp_path])))

    assert fmt_mean_std(0.9, float("nan"), metric_scale("accuracy")) == f"90.00 \u00b1 {DASH}"
    assert rows[0][headers.index("test accuracy (%)")] == f"90.00 \u00b1 {DASH}"


def test_markdown_lists_excluded_runs_with_their_error(multirun):
    write_run(multirun / "4", strategy="top_k", status="failed", error="CUDA out of memory\nTraceback ...", test={})

    md = markdown(build_report(load_runs([multirun])))

    assert "## Excluded runs" in md
    assert "failed: " in md and "4: CUDA out of memory" in md and "Traceback" not in md


def test_a_run_resumed_after_a_kill_is_marked_in_the_runs_the_summary_and_the_markdown(tmp_path):
    write_run(tmp_path / "runs" / "seed=1", seed=1)
    write_run(tmp_path / "runs" / "seed=2", seed=2, resumed_from="/x/seed=2/checkpoints/last.ckpt")

    report = build_report(load_runs([tmp_path / "runs"]))
    write_report(report, tmp_path / "out", plots=False)

    from encoderlab.report.tables import summary_lines

    assert report.table["resumed"].tolist() == [1]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("seed")
    assert runs.loc[2, "resumed"] and not runs.loc[1, "resumed"] and runs.loc[2, "attempts"] == 2
    lines = summary_lines(report)
    assert "1 run(s) resumed from a checkpoint after an interruption:" in lines
    assert any("seed=2: attempt 2, from /x/seed=2/checkpoints/last.ckpt" in line for line in lines)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Resumed runs" in md and "seed=2` (resumed)" in md and "seed=1` (resumed)" not in md


def _sample_efficiency_runs(root):
    """2 arms x sizes (100, all = 900 examples) x 2 seeds: fine-tuning gains more from labels than tf-idf."""
    acc = {
        ("ft", 100): (0.70, 0.74),
        ("ft", None): (0.86, 0.88),
        ("tfidf", 100): (0.60, 0.60),
        ("tfidf", None): (0.80, 0.80),
    }
    for (arm, size), values in acc.items():
        for seed, value in enumerate(values, start=1):
            write_run(
                root / f"arm={arm},seed={seed},task.max_train_samples={size}",
                seed=seed,
                test={"accuracy": value},
                overrides=[f"arm={arm}", f"task.max_train_samples={'null' if size is None else size}", f"seed={seed}"],
                config={
                    "task.max_train_samples": size,
                    "task.train_sample_seed": seed,  # each seed draws its own subset: still one group
                    "model.name": "tfidf_logreg" if arm == "tfidf" else "minilm_l6",
                },
                train_seconds=(50.0 if arm == "ft" else 1.0) * (1 if size else 9),
                train_size=size or 900,
            )


def test_a_training_size_sweep_gets_a_size_table_and_accuracy_vs_size_and_seconds_plots(tmp_path):
    from encoderlab.report.sizes import size_curves

    _sample_efficiency_runs(tmp_path / "runs")
    report = build_report(load_runs([tmp_path / "runs"]))

    points = size_curves(report).points.set_index(["series", "train_size"])
    assert points.loc[("ft", 900), "mean"] == pytest.approx(0.87)  # null (all) is placed at its real size
    assert points.loc[("tfidf", 100), "n"] == 2 and points.loc[("ft", 100), "seconds"] == 50.0
    written = write_report(report, tmp_path / "out")
    names = {p.name for p in written.files}
    assert {"sample_efficiency.png", "sample_efficiency_cost.png"} <= names
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Sample efficiency" in md
    assert "| ft | 72.00 \u00b1 2.83 (2) | 87.00 \u00b1 1.41 (2) |" in md
    assert "| tfidf | 60.00 \u00b1 0.00 (2) | 80.00 \u00b1 0.00 (2) |" in md


def test_runs_of_one_size_get_no_sample_efficiency_plot(multirun, tmp_path):
    written = write_report(build_report(load_runs([multirun])), tmp_path / "out")

    assert not {"sample_efficiency.png", "sample_efficiency_cost.png"} & {p.name for p in written.files}
    assert "Sample efficiency" not in (tmp_path / "out" / "report.md").read_text()
