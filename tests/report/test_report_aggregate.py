"""Grouping by the varied keys and aggregation over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from encoderlab.errors import EncoderlabError
from encoderlab.report import build_report, load_runs

from .factory import SWEEP, write_run


def _accs(strategy):
    return [acc for (s, _), acc in SWEEP.items() if s == strategy]


def test_two_by_two_sweep_gives_two_groups_of_two_with_sample_std(multirun):
    report = build_report(load_runs([multirun]))
    table = report.table

    assert report.group_names == ["finetune"]  # the overridden key, not speed/paths/seed that also differ
    assert list(table["finetune"]) == ["full", "frozen"]  # best first
    assert list(table["n"]) == [2, 2]
    for strategy, row in zip(["full", "frozen"], table.itertuples(), strict=True):
        assert row.mean == pytest.approx(np.mean(_accs(strategy)))
        assert row.std == pytest.approx(np.std(_accs(strategy), ddof=1))
        assert row.min == pytest.approx(min(_accs(strategy)))
        assert row.max == pytest.approx(max(_accs(strategy)))
    assert table.loc[0, "test/f1_macro_mean"] == pytest.approx(np.mean(_accs("full")) - 0.05)
    assert list(table["train_seconds_mean"]) == [100.0, 20.0]
    assert report.metric.column == "test/accuracy"


def test_failed_and_running_runs_are_excluded_and_counted(multirun):
    write_run(multirun / "4", strategy="full", seed=3, status="failed", error="CUDA out of memory", test={})
    write_run(multirun / "5", strategy="frozen", seed=3, status="running", test={"accuracy": 0.0})

    report = build_report(load_runs([multirun]))

    assert sorted(report.excluded["status"]) == ["failed", "running"]
    assert list(report.table["n"]) == [2, 2]
    assert report.table.loc[1, "mean"] == pytest.approx(np.mean(_accs("frozen")))  # the 0.0 is not in it


def test_all_runs_failed_is_an_error(tmp_path):
    write_run(tmp_path / "a", status="failed", error="boom")

    with pytest.raises(EncoderlabError, match="none of the 1 runs finished.*boom"):
        build_report(load_runs([tmp_path]))


def test_lower_is_better_sorts_ascending(tmp_path):
    for i, (strategy, mse) in enumerate([("full", 0.9), ("frozen", 0.3), ("top_k", 0.5)]):
        write_run(tmp_path / str(i), strategy=strategy, primary="mse", greater_is_better=False, test={"mse": mse})

    report = build_report(load_runs([tmp_path]))

    assert list(report.table["finetune"]) == ["frozen", "top_k", "full"]
    assert not report.metric.greater_is_better


def test_mixed_primary_metrics_error_names_them_and_metric_flag_forces_one(tmp_path):
    write_run(tmp_path / "a", primary="accuracy", test={"accuracy": 0.9, "f1_macro": 0.8})
    write_run(tmp_path / "b", strategy="frozen", primary="f1_macro", test={"accuracy": 0.7, "f1_macro": 0.6})

    with pytest.raises(EncoderlabError) as err:
        build_report(load_runs([tmp_path]))
    assert "accuracy" in str(err.value) and "f1_macro" in str(err.value) and "--metric" in str(err.value)

    report = build_report(load_runs([tmp_path]), metric="f1_macro")
    assert report.metric.column == "test/f1_macro"
    assert list(report.table["mean"]) == pytest.approx([0.8, 0.6])


def test_forced_metric_missing_in_a_run_names_the_run(tmp_path):
    write_run(tmp_path / "a", test={"accuracy": 0.9, "f1_macro": 0.8})
    write_run(tmp_path / "b", strategy="frozen", test={"accuracy": 0.7})

    with pytest.raises(EncoderlabError, match=r"test/f1_macro.*missing in 1 of 2 runs.*[/\\]b"):
        build_report(load_runs([tmp_path]), metric="f1_macro")


def test_val_is_used_when_a_run_has_no_test_metrics(tmp_path):
    write_run(tmp_path / "a", test={"accuracy": 0.9}, val={"accuracy": 0.85})
    write_run(tmp_path / "b", strategy="frozen", test={}, val={"accuracy": 0.6})

    report = build_report(load_runs([tmp_path]))

    assert report.metric.column == "val/accuracy"
    assert "test/accuracy is missing" in report.metric.note
    assert build_report(load_runs([tmp_path / "a"]), split="val").table.loc[0, "mean"] == pytest.approx(0.85)


def test_without_overrides_the_config_keys_that_vary_label_the_groups(tmp_path):
    for i, (strategy, precision) in enumerate([("full", "32-true"), ("full", "bf16-mixed"), ("frozen", "32-true")]):
        for seed in (1, 2):
            write_run(
                tmp_path / f"{i}-{seed}",
                strategy=strategy,
                seed=seed,
                overrides=[],
                config={"precision": precision, "eval_batch_size": 64 * seed, "speed.padding": f"p{seed}"},
            )

    report = build_report(load_runs([tmp_path]))

    # seed, paths.output_dir, speed.*, eval_batch_size and the progress bar differ too, but are not group keys
    assert report.group_names == ["strategy", "precision"]
    assert list(report.table["n"]) == [2, 2, 2]


def test_an_override_missing_from_one_launch_does_not_split_a_group(tmp_path):
    write_run(tmp_path / "a1", strategy="full", seed=1, overrides=["finetune=full", "seed=1"])
    write_run(tmp_path / "a2", strategy="full", seed=2, overrides=["seed=2"])  # same config, default strategy
    write_run(tmp_path / "b1", strategy="frozen", seed=1, overrides=["finetune=frozen", "seed=1"])

    report = build_report(load_runs([tmp_path]))

    assert sorted(report.table["n"]) == [1, 2]


def test_leaf_override_values_come_from_the_config(tmp_path):
    write_run(tmp_path / "a", overrides=["optimizer.lr=1e-3"], config={"optimizer.lr": 1e-3}, test={"accuracy": 0.9})
    write_run(tmp_path / "b", overrides=[], test={"accuracy": 0.8})  # default lr 2e-5

    report = build_report(load_runs([tmp_path]))

    assert report.group_names == ["optimizer.lr"]
    assert list(report.runs.sort_values("run_dir")["group"]) == ["optimizer.lr=0.001", "optimizer.lr=2e-05"]


def test_single_seed_group_has_nan_std(tmp_path):
    write_run(tmp_path / "a", test={"accuracy": 0.9})

    report = build_report(load_runs([tmp_path]))

    assert report.group_names == []
    assert report.table.loc[0, "group"] == "all runs"
    assert np.isnan(report.table.loc[0, "std"])


def test_published_numbers_give_delta_and_pass(tmp_path):
    published = {"metric": "accuracy", "value": 0.927, "tolerance": 0.01, "source": "Devlin et al. 2019, Table 1"}
    for seed, acc in ((1, 0.92), (2, 0.93)):
        write_run(tmp_path / f"full{seed}", seed=seed, test={"accuracy": acc}, published=published)
    for seed, acc in ((1, 0.80), (2, 0.82)):
        frozen_pub = dict(published, value=0.90)
        write_run(
            tmp_path / f"frozen{seed}", strategy="frozen", seed=seed, test={"accuracy": acc}, published=frozen_pub
        )
    write_run(tmp_path / "topk", strategy="top_k", test={"accuracy": 0.5})

    table = build_report(load_runs([tmp_path])).table.set_index("finetune")

    assert table.loc["full", "published"] == pytest.approx(0.927)
    assert table.loc["full", "delta"] == pytest.approx(0.925 - 0.927)
    assert table.loc["full", "pass"] is True
    assert table.loc["frozen", "delta"] == pytest.approx(0.81 - 0.90)
    assert table.loc["frozen", "pass"] is False
    assert np.isnan(table.loc["top_k", "published"]) and table.loc["top_k", "pass"] is None


def test_metric_with_a_split_prefix_selects_that_split(multirun):
    report = build_report(load_runs([multirun]), metric="val/f1_macro")

    assert report.metric.column == "val/f1_macro"
    assert report.table.loc[0, "mean"] == pytest.approx(np.mean(_accs("full")) - 0.06)
