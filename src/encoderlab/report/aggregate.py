"""Group runs by what was varied and aggregate their metric over seeds.

Which keys form a group
    A group is a set of finished runs whose *meaningful* resolved config is identical; only the seed differs.
    Keys that cannot change what a run means are ignored: ``seed``, ``paths.*``, ``hydra.*``, ``logger.*``,
    the ``speed.*`` knobs, ``eval_batch_size``, progress bars, logging frequency and bookkeeping flags
    (see :data:`NOISE_KEYS`). ``precision`` is a speed knob too, but it stays a group key when it varies:
    bf16 can move a metric a little, and a study that sweeps it wants to see that.

How a group is labelled
    The resolved config often differs in many keys at once (``finetune=frozen`` changes several
    ``finetune.*`` values), so the columns shown are the fewest that tell the groups apart, picked in this
    order: the keys the user overrode on the command line (``.hydra/overrides.yaml``), then the summary's
    ``experiment``/``task``/``model``/``strategy``, then the config keys in config order. A column is only used
    if it never splits one group in two (an override missing from one launch but equal in config does not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from encoderlab.config.schema import LOWER_IS_BETTER
from encoderlab.errors import EncoderlabError
from encoderlab.report.keys import NOISE_KEYS, is_noise  # noqa: F401 (importable from here too)
from encoderlab.report.reference import add_reference
from encoderlab.report.runs import CFG, FINISHED, OVR, SPLITS, is_missing
from encoderlab.report.stats import mean_ci

IDENTITY_FIELDS = ("experiment", "task", "model", "strategy", "kind")
MISSING = "\u2205"  # key of a value a run does not have
_SHOW_LIMIT = 5


@dataclass(frozen=True)
class MetricChoice:
    """The metric the table ranks by: its name, the split it comes from, and its direction."""

    name: str
    split: str
    greater_is_better: bool
    note: str = ""  # why this split was chosen, when it was not the obvious one

    @property
    def column(self) -> str:
        return f"{self.split}/{self.name}"


@dataclass
class Report:
    """Everything the tables and plots need: the runs used, the runs left out and one row per group."""

    runs: pd.DataFrame  # finished runs, with a 'group' label column
    excluded: pd.DataFrame  # failed / running runs (not in any mean)
    metric: MetricChoice
    group_columns: list[str]  # frame columns that label the groups (cfg.*, override.*, identity fields)
    table: pd.DataFrame  # one row per group, best first
    reference: Optional[str] = None  # "key=a": the arm the ref_* columns compare each group with (paired)

    @property
    def group_names(self) -> list[str]:
        return [display_key(c) for c in self.group_columns]

    @property
    def other_metrics(self) -> list[str]:
        """Metric names of the chosen split, besides the ranked one, that the table aggregates."""
        prefix = f"{self.metric.split}/"
        columns = [c for c in self.table.columns if c.startswith(prefix) and c.endswith("_mean")]
        return [c[len(prefix) : -len("_mean")] for c in columns]


def display_key(column: str) -> str:
    for prefix in (CFG, OVR):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


def lower_is_better(metric: str) -> bool:
    name = metric.rsplit("/", 1)[-1]
    return name in LOWER_IS_BETTER or name.endswith("loss") or name in ("mae", "rmse")


def _value_key(value: Any) -> str:
    if is_missing(value):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1 and 1.0 from two YAML files mean the same
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def _keys(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].map(_value_key)


def _partition(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    if not columns:
        return pd.Series(0, index=frame.index)
    joined = pd.concat([_keys(frame, c) for c in columns], axis=1).agg("\x1f".join, axis=1)
    codes, _ = pd.factorize(joined)
    return pd.Series(codes, index=frame.index)


def _varies(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and _keys(frame, column).nunique() > 1


def group_columns(frame: pd.DataFrame) -> list[str]:
    """The fewest columns of ``frame`` that tell its groups apart (see the module docstring)."""
    cfg_cols = [c for c in frame.columns if c.startswith(CFG) and not is_noise(c[len(CFG) :])]
    meaningful = [c for c in cfg_cols + list(IDENTITY_FIELDS) if _varies(frame, c)]
    override_cols = []
    for col in (c for c in frame.columns if c.startswith(OVR)):
        key = col[len(OVR) :]
        if is_noise(key):
            continue
        # an override of a leaf key is read from the config, which fills in runs that did not override it;
        # experiment=NAME from experiment_name, which a run made without one (a stage, say) has too
        leaf = "experiment_name" if key == "experiment" else key
        target = f"{CFG}{leaf}" if f"{CFG}{leaf}" in frame.columns else col
        if _varies(frame, target) and target not in override_cols:
            override_cols.append(target)
    if not any(c.startswith(CFG) for c in frame.columns):
        meaningful += [c for c in override_cols if c not in meaningful]  # no config saved: trust the overrides
    target = _partition(frame, meaningful)

    chosen: list[str] = []
    for col in override_cols + [c for c in IDENTITY_FIELDS if c in meaningful] + meaningful:
        current = _partition(frame, chosen)
        if current.nunique() == target.nunique():
            break
        if col in chosen:
            continue
        keys = _keys(frame, col)
        if keys.groupby(target).nunique().max() > 1:
            continue  # would split one group in two
        if keys.groupby(current).nunique().max() > 1:
            chosen.append(col)
    return chosen


def _label(row: pd.Series, columns: list[str]) -> str:
    if not columns:
        return "all runs"
    return ", ".join(f"{display_key(c)}={format_group_value(row[c], c)}" for c in columns)


def format_group_value(value: Any, column: str = "") -> str:
    if is_missing(value):
        return "default" if column.startswith(OVR) else "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _names(frame: pd.DataFrame) -> str:
    names = [str(p) for p in frame["run_dir"].head(_SHOW_LIMIT)]
    more = f" and {len(frame) - _SHOW_LIMIT} more" if len(frame) > _SHOW_LIMIT else ""
    return ", ".join(names) + more


def select_metric(runs: pd.DataFrame, metric: Optional[str] = None, split: Optional[str] = None) -> MetricChoice:
    """The metric and split to rank by: the runs' primary metric on test (val when test is missing)."""
    if split is not None and split not in SPLITS:
        raise EncoderlabError(f"--split {split!r}: allowed values are {', '.join(SPLITS)}")
    primaries = runs["primary_metric"].dropna().astype(str)
    if metric is None:
        counts = primaries.value_counts()
        if len(counts) > 1:
            found = ", ".join(f"{m} ({n} runs)" for m, n in counts.items())
            raise EncoderlabError(
                f"the runs have different primary metrics: {found}; report them separately (one call per task) "
                "or pass --metric NAME to compare one metric that all runs have"
            )
        if len(counts) == 0:
            raise EncoderlabError("summary.json has no 'primary_metric' in any run: pass --metric NAME")
        metric = str(counts.index[0])
    prefix, _, rest = metric.partition("/")
    if rest and prefix in SPLITS:  # --metric val/accuracy names the split too
        metric, split = rest, split or prefix

    if metric in set(primaries) and set(primaries) == {metric}:
        directions = runs["greater_is_better"].dropna()
        greater = bool(directions.mode().iloc[0]) if len(directions) else not lower_is_better(metric)
    else:
        greater = not lower_is_better(metric)

    def lacking(s: str) -> pd.DataFrame:
        column = f"{s}/{metric}"
        return runs[runs[column].isna()] if column in runs.columns else runs

    tried = [split] if split else list(SPLITS)
    for s in tried:
        if lacking(s).empty:
            note = ""
            if s != tried[0]:
                n = len(lacking(tried[0]))
                note = f"{tried[0]}/{metric} is missing in {n} of {len(runs)} runs: comparing on {s}"
            return MetricChoice(metric, s, greater, note)
    missing = lacking(tried[0])
    have = sorted(c for c in runs.columns if c.split("/", 1)[0] in SPLITS and runs[c].notna().any())
    raise EncoderlabError(
        f"metric '{tried[0]}/{metric}' is missing in {len(missing)} of {len(runs)} runs ({_names(missing)}); "
        f"metrics found: {', '.join(have) or 'none'}; pick one with --metric NAME and --split test|val"
    )


def _first(values: pd.Series) -> Any:
    values = values.dropna()
    return values.iloc[0] if len(values) else np.nan


def _published(group: pd.DataFrame, metric: MetricChoice) -> tuple[float, float, Any]:
    pub = group[group["published_value"].notna()]
    if "published_metric" in pub.columns:
        same = pub["published_metric"].isna() | (pub["published_metric"].astype(str) == metric.name)
        pub = pub[same]
    if pub.empty:
        return np.nan, np.nan, None
    value, tolerance = float(pub["published_value"].iloc[0]), float(_first(pub["published_tolerance"]))
    return value, tolerance, _first(pub["published_source"])


def _aggregate_group(group: pd.DataFrame, metric: MetricChoice, others: list[str]) -> dict[str, Any]:
    values = group[metric.column].astype(float)
    row: dict[str, Any] = {
        "n": int(values.size),
        "seeds": json.dumps([None if is_missing(s) else s for s in group["seed"].tolist()], default=str),
        "metric": metric.name,
        "split": metric.split,
        "greater_is_better": metric.greater_is_better,
        "mean": values.mean(),
        "std": values.std(ddof=1),  # NaN for a single run: shown as '–'
        "min": values.min(),
        "max": values.max(),
    }
    row["ci_low"], row["ci_high"] = mean_ci(values.tolist())  # 95% Student-t interval of the mean; NaN for n=1
    for other in others:
        col = group[f"{metric.split}/{other}"].astype(float)
        row[f"{metric.split}/{other}_mean"] = col.mean()
        row[f"{metric.split}/{other}_std"] = col.std(ddof=1)
    for cost in ("train_seconds", "train_samples_per_second", "predict_samples_per_second", "peak_memory_mb"):
        row[f"{cost}_mean"] = group[cost].astype(float).mean() if cost in group else np.nan
    for size in ("trainable_params", "total_params"):
        row[size] = _first(group[size])
    row["resumed"] = int(group["resumed"].sum()) if "resumed" in group else 0  # runs continued after a kill
    published, tolerance, source = _published(group, metric)
    delta = row["mean"] - published
    checked = not (np.isnan(delta) or np.isnan(tolerance))
    row["published"] = published
    row["delta"] = delta
    row["tolerance"] = tolerance
    # a tiny slack so that a delta of exactly the tolerance passes despite float rounding
    row["pass"] = bool(abs(delta) <= tolerance + 1e-12) if checked else None
    row["published_source"] = source
    row["run_dirs"] = json.dumps(group["run_dir"].astype(str).tolist())
    return row


def build_report(frame: pd.DataFrame, metric: Optional[str] = None, split: Optional[str] = None) -> Report:
    """Aggregate finished runs over seeds, one row per group, best first; other runs go to ``excluded``."""
    finished = frame["status"] == FINISHED
    runs, excluded = frame[finished].copy(), frame[~finished].copy()
    if runs.empty:
        counts = ", ".join(f"{n} {s}" for s, n in excluded["status"].value_counts().items())
        errors = "; ".join(f"{r.run_dir}: {str(r.error).splitlines()[0]}" for r in excluded.head(3).itertuples())
        raise EncoderlabError(f"none of the {len(frame)} runs finished ({counts}): nothing to compare; {errors}")
    choice = select_metric(runs, metric, split)
    columns = group_columns(runs)
    runs["group"] = runs.apply(_label, axis=1, columns=columns)

    prefix = f"{choice.split}/"
    others = [
        c[len(prefix) :] for c in runs.columns if c.startswith(prefix) and c != choice.column and runs[c].notna().any()
    ]
    rows = []
    for label, group in runs.groupby("group", sort=False):
        row = {display_key(c): group[c].iloc[0] for c in columns}
        row["group"] = label
        row.update(_aggregate_group(group, choice, others))
        rows.append(row)
    table = pd.DataFrame(rows)
    table["pass"] = pd.Series([r["pass"] for r in rows], dtype=object)  # True / False / None, never np.bool_
    table = table.sort_values(
        ["mean", "group"], ascending=[not choice.greater_is_better, True], kind="mergesort", na_position="last"
    ).reset_index(drop=True)
    reference = add_reference(runs, table, choice.column)
    return Report(runs=runs, excluded=excluded, metric=choice, group_columns=columns, table=table, reference=reference)
