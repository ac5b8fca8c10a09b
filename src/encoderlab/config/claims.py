"""What an experiment claims, as data: ``claims:`` and ``notes:`` at the top level of an experiment file, and the
published numbers (``encoderlab/report/published.yaml``) that claims refer to by id.

    claims:
      - id: fine_tuning_beats_features   # unique within the experiment (snake_case)
        key: finetune                    # the override key that tells the two arms apart
        a: frozen                        # the reference arm
        b: full                          # the arm claimed better (or, with direction equal, the same)
        metric: test/accuracy            # split/metric as in summary.json
        direction: higher                # higher | lower | equal (equivalence within ±margin)
        margin: 0.0                      # in the metric's own units (accuracy 0..1: 0.01 = 1 point); below 0
                                         # (higher/lower): non-inferiority, B at most -margin worse than A
        published: sun2019_feat_vs_fit   # optional: an id of published.yaml
      - id: matches_paper                # no arms: the runs against the published value itself
        metric: test/accuracy
        direction: equal
        margin: 0.01
        published: devlin2019_glue_dev_sst2
        scale: 0.01                      # the paper prints percent; the metric is a fraction
    notes: >-
      what was cut from the designed budget and why

The verdict of each claim is computed from stored runs (encoderlab.report.compare), never written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from encoderlab.errors import ConfigError, EncoderlabError

DIRECTIONS = ("higher", "lower", "equal")
CLAIM_REQUIRED = ("id", "metric", "direction")
ARMS = ("key", "a", "b")  # all three, or none: then the runs are compared with the published value
CLAIM_OPTIONAL = (*ARMS, "margin", "published", "scale")
PUBLISHED_REQUIRED = ("paper", "where", "value", "metric", "direction", "says")
PUBLISHED_OPTIONAL = ("baseline", "note")
# the package's published numbers (installed as package data of encoderlab.report)
PUBLISHED_FILE = Path(__file__).resolve().parents[1] / "report" / "published.yaml"
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_SPLITS = ("test", "val")


@dataclass(frozen=True)
class Claim:
    id: str
    key: Optional[str]  # None: a claim against the published value (no arms)
    a: Optional[str]
    b: Optional[str]
    metric: str
    direction: str
    margin: float = 0.0
    published: Optional[str] = None
    scale: float = 1.0  # published value x scale = the value in the metric's units

    @property
    def against_published(self) -> bool:
        return self.key is None


def _scalar(where: str, value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        raise ConfigError(where, f"give one value (a string or number), got {value!r}")
    return str(value)


def parse_claim(raw: Any, index: int, published_ids: Optional[set[str]] = None) -> Claim:
    where = f"claims[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"a claim is a mapping with keys {', '.join(CLAIM_REQUIRED)}; got {raw!r}")
    unknown = sorted(set(map(str, raw)) - set(CLAIM_REQUIRED) - set(CLAIM_OPTIONAL))
    if unknown:
        allowed = ", ".join(CLAIM_REQUIRED + CLAIM_OPTIONAL)
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown key '{unknown[0]}'; keys allowed: {allowed}")
    for name in CLAIM_REQUIRED:
        if name not in raw or raw[name] is None:
            raise ConfigError(f"{where}.{name}", "missing: every claim names id, metric and direction")
    arms = [name for name in ARMS if raw.get(name) is not None]
    if arms and len(arms) < len(ARMS):
        missing = next(name for name in ARMS if name not in arms)
        raise ConfigError(f"{where}.{missing}", "missing: a claim between two arms names key, a and b")
    if not arms and raw.get("published") is None:
        raise ConfigError(
            f"{where}.key", "missing: name the arms (key, a, b), or a published id to compare the runs with"
        )
    values = {name: _scalar(f"{where}.{name}", raw[name]) for name in (*CLAIM_REQUIRED, *arms)}
    values.update({name: None for name in ARMS if name not in arms})
    if not _ID.match(values["id"]):
        raise ConfigError(f"{where}.id", f"'{values['id']}' is not a snake_case id (a-z, 0-9, _)")
    split, _, name = values["metric"].partition("/")
    if split not in _SPLITS or not name:
        raise ConfigError(f"{where}.metric", f"'{values['metric']}' is not split/metric (test/accuracy, val/f1_macro)")
    if values["direction"] not in DIRECTIONS:
        raise ConfigError(f"{where}.direction", f"'{values['direction']}' is not one of {', '.join(DIRECTIONS)}")
    if arms and values["a"] == values["b"]:
        raise ConfigError(f"{where}.b", f"the two arms are the same value '{values['a']}'")
    margin = raw.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise ConfigError(f"{where}.margin", f"a number in the metric's own units, got {margin!r}")
    if values["direction"] == "equal" and margin <= 0:
        raise ConfigError(f"{where}.margin", "direction 'equal' claims equivalence within ±margin: give a margin > 0")
    published = raw.get("published")
    if published is not None:
        published = _scalar(f"{where}.published", published)
        ids = published_ids if published_ids is not None else set(load_published())
        if published not in ids:
            raise ConfigError(
                f"{where}.published", f"'{published}' is not an id of {PUBLISHED_FILE.name} ({len(ids)} ids there)"
            )
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(f"{where}.scale", f"a number > 0 (0.01 when the paper prints percent), got {scale!r}")
    return Claim(**values, margin=float(margin), published=published, scale=float(scale))


def parse_claims(raw: Any, published_ids: Optional[set[str]] = None) -> list[Claim]:
    """Validate an experiment's ``claims:`` list; the first error names the field (``claims[0].direction``)."""
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise ConfigError("claims", f"a list of claims (each a mapping), got {type(raw).__name__}")
    if published_ids is None and any(isinstance(c, Mapping) and c.get("published") is not None for c in raw):
        published_ids = set(load_published())
    claims = [parse_claim(c, i, published_ids) for i, c in enumerate(raw)]
    seen: set[str] = set()
    for i, c in enumerate(claims):
        if c.id in seen:
            raise ConfigError(f"claims[{i}].id", f"'{c.id}' is used twice; ids are unique within an experiment")
        seen.add(c.id)
    return claims


def check_notes(notes: Any) -> None:
    if notes is not None and not isinstance(notes, str):
        raise ConfigError("notes", f"a short text (a string), got {type(notes).__name__}")


def yaml_error(path: Path, e: yaml.YAMLError) -> EncoderlabError:
    """A YAML file that does not parse, as one line: the file, the line and what the parser found."""
    mark = getattr(e, "problem_mark", None)
    line = f" line {mark.line + 1}" if mark is not None else ""
    return EncoderlabError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})")


def load_published(path: Optional[str | Path] = None) -> dict[str, dict[str, Any]]:
    """The published numbers: id -> entry, each with paper, where, value, metric, direction and says (and
    ``value_text`` / ``baseline_text``: the numbers as written in the file, for documents)."""
    path = Path(path) if path is not None else PUBLISHED_FILE
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        printed = yaml.load(text, Loader=yaml.BaseLoader) or {}  # every scalar as written: 5.40 stays "5.40"
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    if not isinstance(data, Mapping):
        raise EncoderlabError(f"{path}: expected a mapping id -> entry (paper, where, value, ...)")
    out = {}
    for key, entry in data.items():
        where = f"{path.name}: {key}"
        if not isinstance(entry, Mapping):
            raise EncoderlabError(f"{where}: an entry is a mapping with {', '.join(PUBLISHED_REQUIRED)}")
        missing = [k for k in PUBLISHED_REQUIRED if entry.get(k) is None]
        if missing:
            raise EncoderlabError(f"{where}.{missing[0]}: missing (required: {', '.join(PUBLISHED_REQUIRED)})")
        unknown = sorted(set(map(str, entry)) - set(PUBLISHED_REQUIRED) - set(PUBLISHED_OPTIONAL))
        if unknown:
            allowed = ", ".join(PUBLISHED_REQUIRED + PUBLISHED_OPTIONAL)
            raise EncoderlabError(f"{where}.{unknown[0]}: unknown key; keys allowed: {allowed}")
        for number in ("value", "baseline"):
            v = entry.get(number)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise EncoderlabError(f"{where}.{number}: a number as printed in the paper, got {v!r}")
        if entry["direction"] not in ("higher", "lower"):
            raise EncoderlabError(f"{where}.direction: '{entry['direction']}' is not one of higher, lower")
        out[str(key)] = dict(entry)
        for number in ("value", "baseline"):
            if entry.get(number) is not None:
                out[str(key)][f"{number}_text"] = str(printed[key][number])
    return out
