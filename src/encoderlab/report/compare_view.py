"""``encoderlab-report DIR --compare KEY=A,B``: run dirs as compare records, the key as the runs vary it, and the
comparisons as text or JSON.

KEY is an override key as on the command line (``finetune``) or a config key (``finetune.strategy``): a config key
is mapped onto the override the runs actually vary (the one whose values tell the same runs apart), so
``--compare finetune.strategy=full,frozen`` compares the runs launched with ``finetune=full`` and ``finetune=frozen``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Optional

from encoderlab.errors import EncoderlabError
from encoderlab.report.compare import REPEAT_KEYS, VERDICT_TEXT, Comparison, same_value
from encoderlab.report.runs import SPLITS, RunRecord, flatten, parse_overrides
from encoderlab.report.tables import DASH, Scale, fmt, fmt_interval


def parse_spec(spec: str) -> tuple[str, str, str]:
    """``finetune=full,frozen`` -> ("finetune", "full", "frozen"): arm A first (the reference), then arm B."""
    key, eq, values = spec.partition("=")
    arms = [v.strip() for v in values.split(",")]
    if not eq or not key.strip() or len(arms) != 2 or not all(arms):
        raise EncoderlabError(f"--compare {spec}: give KEY=A,B (e.g. finetune=frozen,full: B is compared with A)")
    return key.strip(), arms[0], arms[1]


def compare_dicts(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Run dirs in the stored shape that :func:`~encoderlab.report.compare.compare_records` reads."""
    out = []
    for r in records:
        s = r.summary
        cv = r.config.get("cv") if isinstance(r.config.get("cv"), dict) else {}
        metrics = {}
        for split in SPLITS:
            values = s.get(split) if isinstance(s.get(split), dict) else {}
            metrics.update({f"{split}/{k}": float(v) for k, v in values.items() if isinstance(v, (int, float))})
        out.append(
            {
                "overrides": parse_overrides(r.overrides),
                "seed": s.get("seed", r.config.get("seed")),
                "fold": cv.get("fold") if cv.get("folds") is not None else None,
                "metrics": metrics,
                "status": str(s.get("status") or "unknown"),
                "config": flatten(r.config),
            }
        )
    return out


def _tells_apart(dicts: list[dict[str, Any]], override: str, key: str, a: str, b: str) -> Optional[tuple[str, str]]:
    """The values of ``override`` that select exactly the runs whose config ``key`` is ``a`` and ``b``."""
    found: dict[str, set[str]] = {"a": set(), "b": set()}
    for d in dicts:
        value = d["config"].get(key)
        arm = "a" if same_value(value, a) else "b" if same_value(value, b) else None
        if arm is None:
            continue
        if override not in d["overrides"]:
            return None
        found[arm].add(d["overrides"][override])
    if len(found["a"]) != 1 or len(found["b"]) != 1 or found["a"] == found["b"]:
        return None
    va, vb = found["a"].pop(), found["b"].pop()
    for d in dicts:  # no run of another config value wears the same override value
        o = d["overrides"].get(override)
        if o in (va, vb) and not same_value(d["config"].get(key), a if o == va else b):
            return None
    return va, vb


def resolve_key(dicts: list[dict[str, Any]], key: str, a: str, b: str) -> tuple[str, str, str]:
    """The override key (and its two values) that the runs vary for ``key``, which may be a config key."""
    if any(key in d["overrides"] for d in dicts):
        return key, a, b
    if not any(key in d["config"] for d in dicts):
        varied = sorted({k for d in dicts for k in d["overrides"]} - set(REPEAT_KEYS))
        raise EncoderlabError(
            f"'{key}' is neither an override nor a config key of these runs (overrides: {', '.join(varied) or 'none'})"
        )
    candidates = sorted({k for d in dicts for k in d["overrides"]}, key=lambda k: (not key.startswith(f"{k}."), k))
    for override in candidates:
        values = _tells_apart(dicts, override, key, a, b)
        if values is not None:
            return override, *values
    for d in dicts:  # no override tells them apart (runs of several launches): compare by the config value itself
        if key in d["config"]:
            d["overrides"][key] = str(d["config"][key])
    return key, a, b


def _row(c: Comparison, scale: Scale) -> list[str]:
    return [
        c.label,
        str(c.n),
        fmt(c.mean_a, scale),
        fmt(c.mean_b, scale),
        fmt(c.mean_diff, scale, signed=True),
        fmt_interval(*c.ci95, scale, signed=True),
        DASH if c.p != c.p else ("<0.001" if c.p < 0.001 else f"{c.p:.3f}"),
        "paired" if c.paired else "Welch",
        VERDICT_TEXT[c.verdict],
        DASH if c.seeds_needed is None else str(c.seeds_needed),
    ]


def text_lines(spec: str, comparisons: list[Comparison], scale: Scale) -> list[str]:
    """A heading and one aligned row per comparison, then the reasons where there is no paired interval."""
    c0 = comparisons[0]
    unit = ", \u00d7100" if scale.factor != 1 else ""
    claimed = {"higher": "higher", "lower": "lower", "equal": "equal within \u00b1margin"}[c0.direction]
    head = (
        f"{spec}: B={c0.key}={c0.b} vs A={c0.key}={c0.a} on {c0.metric} (B \u2212 A{unit}; "
        f"claim: B {claimed}, margin {fmt(c0.margin, scale)})"
    )
    headers = ["combination", "n", "A", "B", "B \u2212 A", "95% interval", "p", "test", "verdict", "seeds needed"]
    rows = [headers] + [_row(c, scale) for c in comparisons]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    lines = [head]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    lines += [f"  {c.label}: {c.reason}" for c in comparisons if c.reason]
    return lines


def json_text(comparisons: list[Comparison]) -> str:
    """One object for one comparison, a list for several."""
    items = [c.to_json() for c in comparisons]
    return json.dumps(items[0] if len(items) == 1 else items, indent=2)  # [] when no combination has both arms
