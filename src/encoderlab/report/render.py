"""docs/RESULTS.md, rendered from stored runs and the experiments' claims: never typed by hand.

Deterministic: no render date, sections in name order, groups and comparisons in a fixed order, fixed float
formats, so the same records give the same bytes (``--check`` compares them byte for byte).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from encoderlab.errors import EncoderlabError
from encoderlab.report.compare import ANY, VERDICT_TEXT, Comparison, compare_records, compare_to_value, is_repeat
from encoderlab.report.experiments import Section
from encoderlab.report.keys import is_noise
from encoderlab.report.published import load_published, published_line
from encoderlab.report.stats import mean_ci, mean_std
from encoderlab.report.tables import DASH, Scale, fmt, fmt_interval, fmt_mean_std, metric_scale

CLAIMED = {"higher": "B \u2212 A > {m}", "lower": "B \u2212 A < \u2212{m}", "equal": "|B \u2212 A| \u2264 {m}"}
HEADER = """# Results

Rendered by `encoderlab-report --results-doc results/ --out docs/RESULTS.md` from the stored runs in `results/`
(`encoderlab-report MULTIRUN_DIR --store results/`) and the `claims:` and `notes:` of each experiment file; do not edit
it by hand: `encoderlab-report --results-doc results/ --out docs/RESULTS.md --check` (run by the test suite) fails
when it differs from a fresh render.

Every claim compares arm B with arm A (B \u2212 A), paired by seed within each combination of the other keys that
vary (Welch's t when nothing pairs). The verdict is read from the 95% interval of B \u2212 A: `holds` when it clears
the claimed margin, `reversed` when it lies entirely on the other side of zero (of a negative margin, for a
non-inferiority claim; for an equivalence claim: entirely outside \u00b1margin), `not resolved` otherwise, with
the number of paired seeds the observed spread would need to resolve it. Scores in [0, 1] are shown \u00d7100
(percentage points).
"""


def _natural(text: str) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def finished(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("status", "finished") == "finished"]


def group_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    values: dict[str, set[str]] = {}
    for r in records:
        for k, v in (r.get("overrides") or {}).items():
            if not is_repeat(k) and not is_noise(k) and str(v) != ANY:
                values.setdefault(k, set()).add(str(v))
    return sorted(k for k, vs in values.items() if len(vs) > 1)


def groups(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    keys = group_keys(records)
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        o = r.get("overrides") or {}
        label = ", ".join(f"{k}={o.get(k, ANY)}" for k in keys) or "all runs"
        out.setdefault(label, []).append(r)
    return sorted(out.items(), key=lambda item: _natural(item[0]))


def table_metrics(section: Section, records: Sequence[Mapping[str, Any]]) -> list[str]:
    metrics = list(dict.fromkeys([*section.metrics, *(c.metric for c in section.claims)]))
    if not metrics:
        primaries = Counter(str(r["primary_metric"]) for r in records if r.get("primary_metric"))
        metrics = [sorted(primaries.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]] if primaries else []
    return [m for m in metrics if any(m in (r.get("metrics") or {}) for r in records)]


def scale_of(metric: str, records: Sequence[Mapping[str, Any]]) -> Scale:
    return metric_scale(metric, [r["metrics"][metric] for r in records if metric in (r.get("metrics") or {})])


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _p(p: float) -> str:
    if p is None or p != p:
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def group_table(section: Section, records: Sequence[Mapping[str, Any]]) -> list[str]:
    metrics = table_metrics(section, records)
    if not metrics:
        return ["The stored runs have none of the claimed metrics.", ""]
    scales = {m: scale_of(m, records) for m in metrics}
    headers = ["group", "n"]
    for m in metrics:
        headers += [f"{scales[m].header(m)} mean \u00b1 std", "95% interval"]
    published = _published_value(section, metrics[0])
    if published is not None:
        headers.append("mean \u2212 published (95%)")
    lines = [_row(headers), "| :--- | ---: |" + " ---: |" * (len(headers) - 2)]
    for label, runs in groups(records):
        cells: list[str] = [label, str(len(runs))]
        for m in metrics:
            values = [float(r["metrics"][m]) for r in runs if m in (r.get("metrics") or {})]
            if not values:
                cells += [DASH, DASH]
                continue
            mean, std = mean_std(values)
            shown = fmt_mean_std(mean, std, scales[m])
            shown += f" (n={len(values)})" if len(values) != len(runs) else ""  # runs that lack this metric
            cells += [shown, fmt_interval(*mean_ci(values), scales[m])]
        if published is not None:
            values = [float(r["metrics"][metrics[0]]) for r in runs if metrics[0] in (r.get("metrics") or {})]
            low, high = mean_ci(values) if values else (float("nan"), float("nan"))
            scale = scales[metrics[0]]
            delta = fmt(mean_std(values)[0] - published, scale, signed=True) if values else DASH
            cells.append(f"{delta} {fmt_interval(low - published, high - published, scale, signed=True)}")
        lines.append(_row(cells))
    return [*lines, ""]


def _published_value(section: Section, metric: str) -> float | None:
    """The `published:` block's value, when it is about the table's first metric (``accuracy`` of test/accuracy)."""
    p = section.published_block
    if not p or p.get("value") is None or str(p.get("metric")) != metric.partition("/")[2]:
        return None
    return float(p["value"])


def claim_comparisons(section: Section, claim) -> tuple[list[Comparison], str]:
    """The claim's comparisons over the section's finished runs, or why there are none."""
    records = finished(section.records)
    if not records:
        return [], "no stored runs"
    try:
        if claim.against_published:
            value = float(load_published()[claim.published]["value"]) * claim.scale
            return compare_to_value(records, value, claim.metric, claim.margin, claim.direction), ""
        return compare_records(records, claim.key, claim.a, claim.b, claim.metric, claim.margin, claim.direction), ""
    except EncoderlabError as e:
        return [], f"not compared: {e}"


def _claim_lines(section: Section, claim, published: Mapping[str, Mapping[str, Any]]) -> list[str]:
    scale = scale_of(claim.metric, finished(section.records))
    claimed = CLAIMED[claim.direction].format(m=fmt(claim.margin, scale))
    unit = " (percentage points)" if scale.unit == "%" else ""
    arms = (
        f"the runs (B) vs the published value (A: {claim.published} x {claim.scale:g})"
        if claim.against_published
        else f"`{claim.key}={claim.b}` (B) vs `{claim.key}={claim.a}` (A)"
    )
    lines = [f"**{claim.id}**: {arms} on {claim.metric}; claimed: {claimed}{unit}.", ""]
    if claim.published:
        lines += [f"Published ({claim.published}): {published_line(dict(published[claim.published]))}", ""]
    comparisons, why = claim_comparisons(section, claim)
    if not comparisons:
        return [*lines, f"Result: {why}.", ""]
    lines.append(
        _row(["combination", "n", "A", "B", "B \u2212 A", "95% interval", "p", "test", "verdict", "seeds needed"])
    )
    lines.append("| :--- | ---: | ---: | ---: | ---: | :--- | ---: | :--- | :--- | ---: |")
    reasons = []
    for c in comparisons:
        lines.append(
            _row(
                [
                    c.label,
                    c.n,
                    fmt(c.mean_a, scale),
                    fmt(c.mean_b, scale),
                    fmt(c.mean_diff, scale, signed=True),
                    fmt_interval(*c.ci95, scale, signed=True),
                    _p(c.p),
                    "paired" if c.paired else "Welch",
                    f"**{VERDICT_TEXT[c.verdict]}**",
                    DASH if c.seeds_needed is None else c.seeds_needed,
                ]
            )
        )
        if c.reason:
            reasons.append(f"- {c.label}: {c.reason}")
    return [*lines, "", *reasons, *([""] if reasons else [])]


def _runs_line(records: Sequence[Mapping[str, Any]]) -> list[str]:
    dates = sorted({str(r.get("date")) for r in records if r.get("date")})
    commits = sorted({str(r.get("commit")) for r in records if r.get("commit")})
    precisions = sorted({str(r.get("precision")) for r in records if r.get("precision")})
    when = DASH if not dates else dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    out = [
        f"Stored runs: {len(records)}, {when}; commit {', '.join(commits) or DASH}; precision "
        f"{', '.join(precisions) or DASH}."
    ]
    machines: Counter[str] = Counter()
    for r in records:
        m = r.get("machine") or {}
        gpu = m.get("gpu") or "no GPU"
        flags = f" ({m['flags']})" if m.get("flags") else ""
        machines[f"{m.get('cpu') or 'unknown CPU'}{flags}, torch threads {m.get('threads', DASH)}, {gpu}"] += 1
    out.append("Machine: " + "; ".join(f"{name} ({n} runs)" for name, n in sorted(machines.items())) + ".")
    commands = sorted({str(r.get("command")) for r in records if r.get("command")})
    if commands:
        out += ["", "Commands of the stored runs:", "", *[f"    {c}" for c in commands]]
    return out


def render_section(section: Section, published: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [f"## {section.name}", "", f"From `{section.source}`.", ""]
    if section.commands:
        lines += [*[f"    {c}" for c in section.commands], ""]
    if section.notes:
        lines += [f"Notes: {section.notes}", ""]
    p = section.published_block
    if p:
        named = sorted(set(re.findall(r"[a-z][a-z0-9_]*", str(p.get("source") or ""))) & set(published))
        lines += [f"Published ({pid}): {published_line(dict(published[pid]))}" for pid in named]
        lines += [""] if named else []
        tolerance = f" \u00b1 {p['tolerance']:g}" if p.get("tolerance") is not None else ""
        lines += [
            f"Published (`published:`): {p.get('metric')} {p['value']:g}{tolerance}; {p.get('source', '')}".rstrip(
                "; "
            ),
            "",
        ]
    records = finished(section.records)
    if not records:
        lines += ["No stored runs.", ""]
    else:
        lines += [*_runs_line(records), "", *group_table(section, records)]
    for claim in section.claims:
        lines += _claim_lines(section, claim, published)
    return lines


def render_document(sections: Sequence[Section], published: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [HEADER, "## Contents", ""]
    for s in sections:
        n = len(finished(s.records))
        anchor = re.sub(r"[^a-z0-9_ -]", "", s.name.lower()).replace(" ", "-")
        lines.append(f"- [{s.name}](#{anchor}): " + (f"{n} stored runs" if n else "no stored runs"))
    lines.append("")
    for s in sections:
        lines += render_section(s, published)
    return "\n".join(lines).rstrip("\n") + "\n"
