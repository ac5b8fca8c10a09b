"""The paired difference of each group to the experiment's reference arm (the ``a`` arm of its first claim).

An experiment file that declares ``claims:`` saves them in every run's ``.hydra/config.yaml``; the group table
then shows, per group, the mean paired difference to the reference arm in the same combination of the other
varying keys, with its 95% interval and n (see :mod:`encoderlab.report.compare`).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import pandas as pd

from encoderlab.errors import EncoderlabError
from encoderlab.report.compare import Comparison, compare_records, same_value
from encoderlab.report.runs import CFG, OVR, is_missing, parse_overrides

REF_COLUMNS = ("ref_diff", "ref_ci_low", "ref_ci_high", "ref_n", "ref_p", "ref_paired")


def reference_claim(runs: pd.DataFrame) -> Optional[dict[str, Any]]:
    """The first claim saved with the runs (``cfg.claims``), when all runs that saved claims agree on it."""
    if f"{CFG}claims" not in runs.columns:
        return None
    found = {str(v) for v in runs[f"{CFG}claims"] if isinstance(v, str) and v not in ("[]", "")}
    if len(found) != 1:
        return None
    claims = json.loads(found.pop())
    first = claims[0] if claims and isinstance(claims[0], dict) else None
    return first if first and first.get("key") and first.get("a") is not None else None


def run_dicts(runs: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    """The finished runs of a report as compare records (overrides, seed, fold, the one metric)."""
    out = []
    for _, row in runs.iterrows():
        folds = row.get(f"{CFG}cv.folds")
        fold = row.get(f"{CFG}cv.fold") if not is_missing(folds) else None
        out.append(
            {
                "overrides": parse_overrides(json.loads(row["overrides"] or "[]")),
                "seed": None if is_missing(row.get("seed")) else row.get("seed"),
                "fold": None if is_missing(fold) else fold,
                "metrics": {column: float(row[column])},
                "status": "finished",
            }
        )
    return out


def _group_comparison(group: pd.DataFrame, key: str, a: str, records: list, column: str) -> Optional[Comparison]:
    column_key = f"{OVR}{key}"
    values = {str(v) for v in group[column_key] if not is_missing(v)} if column_key in group else set()
    if len(values) != 1:
        return None
    value = values.pop()
    if same_value(value, a):
        return None
    try:
        comparisons = compare_records(records, key, a, value, column)
    except EncoderlabError:
        return None
    mine = [parse_overrides(json.loads(o or "[]")) for o in group["overrides"]]
    fitting = [
        c
        for c in comparisons
        if all(all(k not in o or same_value(o[k], v) for k, v in c.combination.items()) for o in mine)
    ]
    return fitting[0] if len(fitting) == 1 else None


def add_reference(runs: pd.DataFrame, table: pd.DataFrame, column: str) -> Optional[str]:
    """Add the ``ref_*`` columns to ``table`` (one row per group) and return the reference (``key=a``), or None
    when the runs name no reference arm, or none of the groups can be compared with it."""
    claim = reference_claim(runs)
    if claim is None or f"{OVR}{claim['key']}" not in runs.columns:
        return None
    key, a = str(claim["key"]), str(claim["a"])
    records = run_dicts(runs, column)
    rows: list[dict[str, Any]] = []
    for label in table["group"]:
        group = runs[runs["group"] == label]
        c = _group_comparison(group, key, a, records, column)
        values = group[f"{OVR}{key}"].dropna().astype(str)
        is_ref = len(values) > 0 and all(same_value(v, a) for v in values)
        if c is None:
            rows.append({"ref_diff": 0.0 if is_ref else None, "ref_n": None, "ref_paired": None})
            continue
        rows.append(
            {
                "ref_diff": c.mean_diff,
                "ref_ci_low": c.ci95[0],
                "ref_ci_high": c.ci95[1],
                "ref_n": c.n,
                "ref_p": c.p,
                "ref_paired": c.paired,
            }
        )
    if all(r.get("ref_n") is None for r in rows):
        return None
    for name in REF_COLUMNS:
        table[name] = pd.Series([r.get(name) for r in rows], index=table.index, dtype=object)
    return f"{key}={a}"
