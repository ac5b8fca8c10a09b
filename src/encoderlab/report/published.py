"""The published numbers experiments mirror (``published.yaml`` beside this module, shipped as package data).

    load_published()["sun2019_feat_vs_fit"]["where"]   # "Table 6"

The loader and its checks live with the claims schema (encoderlab.config.claims), which checks the ids claims
refer to while a config is validated; this module is where the report reads them.
"""

from __future__ import annotations

from typing import Any

from encoderlab.config.claims import PUBLISHED_FILE, PUBLISHED_REQUIRED, load_published

__all__ = ["PUBLISHED_FILE", "PUBLISHED_REQUIRED", "load_published", "published_line"]


def published_line(entry: dict[str, Any]) -> str:
    """One line: paper, where, value (and the other arm's number), metric, and what the paper found."""
    value = entry.get("value_text") or f"{entry['value']:g}"
    if entry.get("baseline") is not None:
        value += f" (other arm {entry.get('baseline_text') or format(entry['baseline'], 'g')})"
    text = f"{entry['paper']}, {entry['where']}: {value} {entry['metric']}; {entry['says']}"
    return text + (f" ({entry['note']})" if entry.get("note") else "")
