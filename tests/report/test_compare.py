"""Paired comparisons with computed verdicts: encoderlab-report DIR --compare KEY=A,B [--json]."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy import stats

from encoderlab.cli.report import main
from encoderlab.report.compare import compare_records, gap_to_resolve, verdict

from .factory import write_run

BASE = [0.70, 0.74, 0.68, 0.72, 0.71]  # arm A per seed: the seed spread is large, the paired gaps are not


def sweep(root, gaps, seeds_b=None, extra=None):
    """frozen (A) and full (B) per seed, B = A + gap: known paired differences."""
    seeds_b = seeds_b or list(range(1, len(gaps) + 1))
    for seed, base in zip(range(1, len(gaps) + 1), BASE, strict=False):
        write_run(root / f"frozen-{seed}", strategy="frozen", seed=seed, test={"accuracy": base}, config=extra)
    for seed, base, gap in zip(seeds_b, BASE, gaps, strict=False):
        write_run(root / f"full-{seed}", strategy="full", seed=seed, test={"accuracy": base + gap}, config=extra)
    return root


def compare_json(capsys, root, *flags):
    code = main([str(root), "--compare", "finetune=frozen,full", "--json", *flags])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_clear_effect_holds_with_the_hand_computed_interval(tmp_path, capsys):
    gaps = [0.05, 0.06, 0.04, 0.05]
    result = compare_json(capsys, sweep(tmp_path, gaps))

    assert {"n", "mean_diff", "ci95", "p", "paired", "verdict", "combination"} <= set(result)
    half = stats.t.ppf(0.975, 3) * statistics.stdev(gaps) / math.sqrt(4)
    assert result["n"] == 4 and result["paired"] is True and result["combination"] == {}
    assert result["mean_diff"] == pytest.approx(0.05)
    assert result["ci95"] == pytest.approx([0.05 - half, 0.05 + half])
    assert result["p"] == pytest.approx(
        stats.ttest_rel([b + g for b, g in zip(BASE[:4], gaps, strict=True)], BASE[:4]).pvalue
    )
    assert result["verdict"] == "holds" and result["seeds_needed"] is None


def test_reversed_effect_is_reversed(tmp_path, capsys):
    result = compare_json(capsys, sweep(tmp_path, [-0.05, -0.06, -0.04]))

    assert result["verdict"] == "reversed" and result["ci95"][1] < 0


def test_effect_inside_the_noise_is_not_resolved_with_the_seeds_it_would_need(tmp_path, capsys):
    gaps = [0.012, -0.004, 0.010, -0.002]
    result = compare_json(capsys, sweep(tmp_path, gaps))

    assert result["verdict"] == "not_resolved"
    needed = result["seeds_needed"]
    mean, sd = statistics.mean(gaps), statistics.stdev(gaps)
    # the smallest n at which the observed mean and spread would give an interval above 0
    assert stats.t.ppf(0.975, needed - 1) * sd / math.sqrt(needed) < mean
    assert stats.t.ppf(0.975, needed - 2) * sd / math.sqrt(needed - 1) >= mean
    assert needed > 4


def test_a_margin_the_interval_does_not_clear_is_not_resolved(tmp_path, capsys):
    result = compare_json(capsys, sweep(tmp_path, [0.05, 0.06, 0.04, 0.05]), "--margin", "0.2")

    assert result["verdict"] == "not_resolved" and result["margin"] == 0.2
    assert result["seeds_needed"] is None  # the mean lies below the margin: no number of seeds clears it


def test_unpaired_seeds_fall_back_to_welch_and_say_so(tmp_path, capsys):
    result = compare_json(capsys, sweep(tmp_path, [0.05, 0.06, 0.04], seeds_b=[7, 8, 9]))

    a, b = BASE[:3], [x + g for x, g in zip(BASE[:3], [0.05, 0.06, 0.04], strict=True)]
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert result["paired"] is False and "Welch" in result["reason"]
    assert result["p"] == pytest.approx(welch.pvalue)
    low, high = welch.confidence_interval(0.95)
    assert result["ci95"] == pytest.approx([low, high])


def test_one_pair_has_no_interval_and_is_not_resolved(tmp_path, capsys):
    write_run(tmp_path / "a", strategy="frozen", seed=1, test={"accuracy": 0.70})
    write_run(tmp_path / "b", strategy="full", seed=1, test={"accuracy": 0.90})

    result = compare_json(capsys, tmp_path)

    assert result["verdict"] == "not_resolved" and result["ci95"] == [None, None]
    assert "single run" in result["reason"] and result["seeds_needed"] is None


def test_one_comparison_per_combination_of_the_other_varied_keys(tmp_path, capsys):
    for task, gap in (("rte", 0.05), ("sst2", -0.05)):
        for seed, base in zip((1, 2, 3), BASE, strict=False):
            for strategy, value in (("frozen", base), ("full", base + gap + 0.001 * seed)):
                overrides = [f"finetune={strategy}", f"task={task}", f"seed={seed}"]
                run = tmp_path / f"{task}-{strategy}-{seed}"
                write_run(run, strategy=strategy, seed=seed, overrides=overrides, test={"accuracy": value})

    result = compare_json(capsys, tmp_path)

    assert [r["combination"] for r in result] == [{"task": "rte"}, {"task": "sst2"}]
    assert [r["verdict"] for r in result] == ["holds", "reversed"]


def test_the_full_config_key_maps_onto_the_override(tmp_path, capsys):
    sweep(tmp_path, [0.05, 0.06, 0.04])

    assert main([str(tmp_path), "--compare", "finetune.strategy=frozen,full", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["key"] == "finetune" and result["n"] == 3 and result["verdict"] == "holds"


def test_text_output_names_the_test_and_verdict(tmp_path, capsys):
    sweep(tmp_path, [0.012, -0.004, 0.010, -0.002])

    assert main([str(tmp_path), "--compare", "finetune=frozen,full", "--metric", "accuracy", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "paired" in out and "not resolved" in out and "+0.40" in out  # B - A in points


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--compare", "lr=1,2"], ["--compare lr=1,2", "neither an override nor a config key"]),
        (["--compare", "finetune=frozen,lora"], ["--compare finetune=frozen,lora", "no run has finetune=lora"]),
        (["--compare", "finetune=frozen"], ["--compare finetune=frozen", "KEY=A,B"]),
        (["--compare", "finetune=frozen,full", "--metric", "f1"], ["--metric"]),
    ],
)
def test_bad_compare_input_is_one_line_naming_the_flag(tmp_path, capsys, flags, names):
    sweep(tmp_path, [0.05, 0.06])

    assert main([str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert all(n in err for n in names)


def _records(gaps_by_bucketing):
    """Parity-shaped records: the HF side has no bucketing ('-') and pairs with both encoderlab arms."""
    records = []
    for seed in range(1, 6):
        records.append({"overrides": {"side": "hf", "bucketing": "-"}, "seed": seed, "metrics": {"m": 0.75}})
        for bucketing, gaps in gaps_by_bucketing.items():
            value = 0.75 + gaps[seed - 1]
            records.append(
                {"overrides": {"side": "ours", "bucketing": bucketing}, "seed": seed, "metrics": {"m": value}}
            )
    return records


def test_equivalence_claims_hold_reverse_or_stay_open():
    records = _records(
        {
            "off": [0.001, -0.002, 0.002, 0.0, -0.001],  # well within ±1 point
            "on": [0.05, 0.06, 0.04, 0.05, 0.055],  # entirely beyond +1 point
            "wide": [0.03, -0.03, 0.02, -0.025, 0.01],  # the interval straddles the margin
        }
    )

    result = {c.combination["bucketing"]: c for c in compare_records(records, "side", "hf", "ours", "m", 0.01, "equal")}

    assert set(result) == {"off", "on", "wide"} and all(c.paired and c.n == 5 for c in result.values())
    assert (result["off"].verdict, result["on"].verdict, result["wide"].verdict) == (
        "holds",
        "reversed",
        "not_resolved",
    )
    assert result["wide"].seeds_needed is not None


def test_verdict_rules_mirror_for_lower_is_better():
    assert verdict((0.01, 0.02), 0.0, "higher") == "holds"
    assert verdict((0.01, 0.02), 0.0, "lower") == "reversed"
    assert verdict((-0.02, -0.01), 0.005, "lower") == "holds"
    assert verdict((-0.02, 0.01), 0.0, "lower") == "not_resolved"
    assert verdict((-0.005, 0.009), 0.01, "equal") == "holds"
    assert verdict((-0.03, -0.02), 0.01, "equal") == "reversed"


def test_a_negative_margin_claims_non_inferiority():
    # B at most 1 point worse than A: a point 0.5 worse holds, one entirely 1-2 points worse is reversed
    assert verdict((-0.005, -0.005), -0.01, "higher") == "holds"
    assert verdict((-0.008, 0.02), -0.01, "higher") == "holds"
    assert verdict((-0.02, -0.005), -0.01, "higher") == "not_resolved"
    assert verdict((-0.02, -0.012), -0.01, "higher") == "reversed"
    assert verdict((0.005, 0.008), -0.01, "lower") == "holds"
    assert gap_to_resolve(-0.015, -0.01, "higher") == pytest.approx(0.005)
    assert gap_to_resolve(-0.005, -0.01, "higher") == pytest.approx(0.005)


def test_a_multitask_run_is_compared_on_the_single_task_runs_metric():
    records = []
    for seed in range(1, 4):
        records.append({"overrides": {"task": "rt"}, "seed": seed, "metrics": {"test/accuracy": 0.70 + 0.01 * seed}})
        metrics = {"test/rt/accuracy": 0.75 + 0.01 * seed, "test/bbc/accuracy": 0.1}
        records.append({"overrides": {"task": "multitask"}, "seed": seed, "metrics": metrics})

    (c,) = compare_records(records, "task", "rt", "multitask", "test/accuracy")

    assert c.paired and c.n == 3 and c.mean_diff == pytest.approx(0.05)


def test_a_single_pair_reports_that_pairs_difference_not_the_arms_means():
    records = [
        {"overrides": {"side": "hf"}, "seed": 1, "metrics": {"m": 0.75}},
        {"overrides": {"side": "hf"}, "seed": 2, "metrics": {"m": 0.77}},  # no partner yet
        {"overrides": {"side": "ours"}, "seed": 1, "metrics": {"m": 0.76}},
    ]

    (c,) = compare_records(records, "side", "hf", "ours", "m")

    assert c.n == 1 and c.paired and c.n_a == 2 and c.mean_diff == pytest.approx(0.01) and c.mean_a == 0.75
    assert c.verdict == "not_resolved" and "single run" in c.reason


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.925, 0.928, 0.926, 0.929], "holds"),  # within ±1 point of 0.927, and the interval shows it
        ([0.880, 0.884, 0.879, 0.883], "reversed"),  # clearly more than a point below
        ([0.90, 0.95, 0.91, 0.94], "not_resolved"),  # the seed spread is wider than the margin
    ],
)
def test_runs_against_a_published_value_get_a_one_sample_interval(scores, expected):
    from encoderlab.report.compare import compare_to_value

    records = [
        {"overrides": {"optimizer.lr": "2e-5"}, "seed": s, "metrics": {"test/accuracy": v}}
        for s, v in enumerate(scores, 1)
    ]
    (c,) = compare_to_value(records, 0.927, "test/accuracy", margin=0.01, direction="equal")

    diffs = [v - 0.927 for v in scores]
    half = stats.t.ppf(0.975, 3) * statistics.stdev(diffs) / math.sqrt(4)
    assert c.n == 4 and c.mean_a == 0.927 and c.mean_diff == pytest.approx(statistics.mean(diffs))
    assert c.ci95 == pytest.approx((statistics.mean(diffs) - half, statistics.mean(diffs) + half))
    assert c.verdict == expected


def test_one_run_per_row_against_a_published_value_is_not_resolved():
    from encoderlab.report.compare import compare_to_value

    records = [
        {"overrides": {"optimizer.lr": lr}, "seed": 1, "metrics": {"test/accuracy": 0.927}} for lr in ("2e-5", "3e-5")
    ]
    out = compare_to_value(records, 0.927, "test/accuracy", margin=0.01, direction="equal")

    assert [c.combination for c in out] == [{"optimizer.lr": "2e-5"}, {"optimizer.lr": "3e-5"}]
    assert all(c.verdict == "not_resolved" and c.n == 1 and "add seeds" in c.reason for c in out)


def test_boolean_arms_match_however_hydra_capitalised_them():
    from encoderlab.report.compare import compare_records

    records = [
        {
            "overrides": {"model.from_scratch": arm},
            "seed": s,
            "metrics": {"test/accuracy": v + (0.05 if arm == "False" else 0)},
        }
        for s, v in enumerate(BASE[:3], 1)
        for arm in ("True", "False")
    ]
    (c,) = compare_records(records, "model.from_scratch", "true", "false", "test/accuracy")

    assert c.n == 3 and c.mean_diff == pytest.approx(0.05) and c.verdict == "holds"


def test_independent_stages_pool_into_one_comparison_and_pair_within_their_stage():
    """3 stages x 2 seeds: one comparison over the 6 pairs, each job paired with its twin of the same stage seed."""
    records = []
    for stage in (1, 2, 3):
        for seed in (1, 2):
            twin = 0.60 + 0.05 * stage + 0.001 * seed  # the stages differ far more than the gap
            for arm, value in (("true", twin), ("false", twin + 0.01)):
                over = {
                    "model.from_scratch": arm,
                    "stages.pretrain.seed": str(stage),
                    "stages.pretrain.seeds": f"[{stage}]",
                }
                records.append({"overrides": over, "seed": seed, "metrics": {"m": value}})

    (c,) = compare_records(records, "model.from_scratch", "true", "false", "m")

    assert c.combination == {} and c.paired and c.n == 6
    assert c.mean_diff == pytest.approx(0.01) and c.verdict == "holds"  # paired across stages, the gap would drown
