"""Paired comparisons of two arms, with a verdict computed from the interval.

    compare_records(records, key="finetune", a="frozen", b="full", metric="test/accuracy")

``records`` are stored runs (``results/<experiment>/runs.jsonl``, see :mod:`encoderlab.report.store`) or run dirs
turned into the same dicts. A run belongs to arm A when its override ``key`` is ``a``. The other override keys
that vary (seed, folds and other repeat keys aside) cut the runs into combinations — one comparison per
combination, e.g. per pre-training stage or per dataset × K. A run that lacks one of those keys, or stores ``-``
for it (the Hugging Face side of the parity benchmark has no bucketing), belongs to every combination.

Within a combination the two arms pair by (seed, fold): the interval is Student's t over the paired differences
B − A. When fewer than two runs pair, Welch's t over the two arms (``paired=False``). The verdict reads the
interval: for ``direction=higher``, lower bound above ``margin`` -> ``holds``, upper bound below 0 -> ``reversed``
(a margin below 0 is a non-inferiority claim, B at most ``-margin`` worse: upper bound below ``margin`` ->
``reversed``); ``lower`` mirrors that on −(B − A); ``equal`` (equivalence within ±margin) -> ``holds`` when the
whole interval lies within ±margin, ``reversed`` when it lies entirely outside. Anything else is ``not_resolved``,
with the number of pairs the observed spread would need to resolve it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from encoderlab.errors import EncoderlabError
from encoderlab.report.keys import is_noise
from encoderlab.report.stats import TTest, mean_std, paired_t, seeds_needed, welch_t

HOLDS, REVERSED, NOT_RESOLVED = "holds", "reversed", "not_resolved"
VERDICTS = (HOLDS, REVERSED, NOT_RESOLVED)
VERDICT_TEXT = {HOLDS: "holds", REVERSED: "reversed", NOT_RESOLVED: "not resolved"}  # as documents print them
DIRECTIONS = ("higher", "lower", "equal")
ANY = "-"  # an override value that fits every combination (the key does not apply to that run)
REPEAT_KEYS = ("seed", "cv.fold", "task.train_sample_seed")  # repeats of one setting, never a combination
# independent stages (stages.<name>.seed, and the seeds list a launch narrowed): repeats too, a pair is made within one
STAGE_SEEDS = "stages.*.seed"
STAGE_REPEATS = (STAGE_SEEDS, "stages.*.seeds")


def is_repeat(key: str) -> bool:
    """Keys whose values are repeats of one setting (seeds, folds, stage seeds): pooled, never a combination."""
    return key in REPEAT_KEYS or any(fnmatch.fnmatchcase(key, pattern) for pattern in STAGE_REPEATS)


@dataclass(frozen=True)
class Comparison:
    key: str
    a: str
    b: str
    metric: str
    combination: dict[str, str]  # the other varying keys' values this comparison belongs to ({} if none)
    n: int  # pairs (paired) or min(n_a, n_b) (Welch)
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    mean_diff: float  # mean of b - a
    ci95: tuple[float, float]
    p: float
    paired: bool
    verdict: str  # "holds" | "reversed" | "not_resolved"
    seeds_needed: Optional[int]  # for not_resolved: pairs the observed spread would need to resolve it
    margin: float
    direction: str
    reason: str = ""  # why there is no interval, or which test was used when nothing paired
    seeds: list[str] = field(default_factory=list)  # the (seed, fold) cells that paired

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict: NaN (no interval) becomes null."""
        out = dataclasses.asdict(self)
        out["ci95"] = [_finite(x) for x in self.ci95]
        for k in ("mean_a", "mean_b", "mean_diff", "p"):
            out[k] = _finite(out[k])
        return out

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.combination.items()) or "all runs"


def _finite(x: float) -> Optional[float]:
    return None if x is None or math.isnan(x) else float(x)


def same_value(x: Any, y: Any) -> bool:
    """``2e-5`` and ``2.0e-05`` are one value, and so are ``true`` and ``True`` (Hydra writes a job's booleans
    capitalised); everything else compares as text."""
    sx, sy = str(x), str(y)
    if sx == sy:
        return True
    if {sx.lower(), sy.lower()} <= {"true", "false"}:
        return sx.lower() == sy.lower()
    try:
        return float(sx) == float(sy)
    except ValueError:
        return False


def _overrides(record: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (record.get("overrides") or {}).items()}


def _arm(records: Sequence[Mapping[str, Any]], key: str, value: str) -> list[Mapping[str, Any]]:
    return [r for r in records if key in _overrides(r) and same_value(_overrides(r)[key], value)]


def _combination_keys(records: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    values: dict[str, set[str]] = {}
    for r in records:
        for k, v in _overrides(r).items():
            if k != key and not is_repeat(k) and not is_noise(k) and v != ANY:
                values.setdefault(k, set()).add(v)
    return sorted(k for k, vs in values.items() if len(vs) > 1)


def _combinations(records: Sequence[Mapping[str, Any]], keys: list[str]) -> list[dict[str, str]]:
    if not keys:
        return [{}]
    full = {tuple(_overrides(r)[k] for k in keys) for r in records if all(_concrete(r, k) for k in keys)}
    if not full:  # every run leaves some key open: every mix of the values seen
        seen = [sorted({_overrides(r)[k] for r in records if _concrete(r, k)}) for k in keys]
        full = set(itertools.product(*seen))
    return [dict(zip(keys, values, strict=True)) for values in sorted(full)]


def _concrete(record: Mapping[str, Any], key: str) -> bool:
    return _overrides(record).get(key, ANY) != ANY


def _fits(record: Mapping[str, Any], combination: Mapping[str, str]) -> bool:
    o = _overrides(record)
    return all(o.get(k, ANY) == ANY or same_value(o[k], v) for k, v in combination.items())


def _cell(record: Mapping[str, Any]) -> str:
    """What pairs two runs: the seed, the fold, and the stage seeds (a job pairs with its twin of the same stage)."""
    fold = record.get("fold")
    stages = sorted((k, v) for k, v in _overrides(record).items() if fnmatch.fnmatchcase(k, STAGE_SEEDS))
    return f"{record.get('seed')}" + "".join(f"/{k}={v}" for k, v in stages) + ("" if fold is None else f"/fold {fold}")


def task_metric(record: Mapping[str, Any], metric: str, tasks: Sequence[str] = ()) -> Optional[float]:
    """``metric`` of a run; a multitask run reports each task's as ``split/<task>/name``, read for ``tasks``."""
    metrics = record.get("metrics") or {}
    if metric in metrics:
        return float(metrics[metric])
    split, _, name = metric.partition("/")
    found = [metrics[f"{split}/{t}/{name}"] for t in tasks if f"{split}/{t}/{name}" in metrics]
    return float(found[0]) if found else None


def _values(records: Sequence[Mapping[str, Any]], metric: str, tasks: Sequence[str] = ()) -> dict[str, float]:
    """One value per (seed, fold): repeats of one cell are averaged."""
    cells: dict[str, list[float]] = {}
    for r in records:
        cells.setdefault(_cell(r), []).append(task_metric(r, metric, tasks))
    return {c: math.fsum(v) / len(v) for c, v in sorted(cells.items())}


def verdict(ci: tuple[float, float], margin: float, direction: str) -> str:
    lo, hi = ci
    if math.isnan(lo) or math.isnan(hi):
        return NOT_RESOLVED
    if direction == "lower":
        lo, hi = -hi, -lo
    if direction == "equal":
        if -margin <= lo and hi <= margin:
            return HOLDS
        return REVERSED if lo > margin or hi < -margin else NOT_RESOLVED
    if lo > margin:
        return HOLDS
    return REVERSED if hi < min(0.0, margin) else NOT_RESOLVED


def gap_to_resolve(mean_diff: float, margin: float, direction: str) -> float:
    """How far the observed mean lies from the boundary its interval would have to clear (0: none it can)."""
    m = -mean_diff if direction == "lower" else mean_diff
    if direction == "equal":
        return abs(abs(m) - margin)
    if m > margin:
        return m - margin
    floor = min(0.0, margin)
    return floor - m if m < floor else 0.0


def _test(va: dict[str, float], vb: dict[str, float]) -> tuple[TTest | None, bool, int, str, list[str]]:
    """The test, paired or not, its n, why (when not paired), and the cells that paired."""
    common = [c for c in va if c in vb]
    if len(common) >= 2:
        alone = len(va) + len(vb) - 2 * len(common)
        why = f"{alone} run(s) without a partner of the same seed left out" if alone else ""
        return paired_t([vb[c] - va[c] for c in common]), True, len(common), why, common
    if len(va) >= 2 and len(vb) >= 2:
        why = "no run pairs by seed" if not common else "one run pairs by seed"
        return welch_t(list(va.values()), list(vb.values())), False, min(len(va), len(vb)), f"{why}: Welch's t", []
    n = len(common) if common else min(len(va), len(vb))
    what = "one pair" if common else f"{len(va)} run(s) of A and {len(vb)} of B"
    return None, bool(common), n, f"{what}: no interval from a single run; add seeds", common


def compare_records(
    records: list[dict],
    key: str,
    a: str,
    b: str,
    metric: str,
    margin: float = 0.0,
    direction: str = "higher",
) -> list[Comparison]:
    """One :class:`Comparison` of arm ``b`` against arm ``a`` per combination of the other varying keys."""
    if direction not in DIRECTIONS:
        raise EncoderlabError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    records = [r for r in records if r.get("status", "finished") == "finished"]
    varied = sorted({k for r in records for k in _overrides(r)} - set(REPEAT_KEYS))
    if not any(key in _overrides(r) for r in records):
        raise EncoderlabError(f"no run sets '{key}' (keys the runs set: {', '.join(varied) or 'none'})")
    arms = {}
    for name, value in (("A", a), ("B", b)):
        arms[name] = _arm(records, key, value)
        if not arms[name]:
            seen = sorted({_overrides(r)[key] for r in records if key in _overrides(r)})
            raise EncoderlabError(f"no run has {key}={value} (values of {key}: {', '.join(seen)})")
    both = arms["A"] + arms["B"]
    tasks = (a, b) if key == "task" else ()  # task=T vs task=multitask: the multitask run's metric of T
    lacking = [r for r in both if task_metric(r, metric, tasks) is None]
    if lacking:
        have = sorted({m for r in both for m in r.get("metrics") or {}})
        raise EncoderlabError(
            f"metric '{metric}' is missing in {len(lacking)} of {len(both)} runs; metrics found: {', '.join(have)}"
        )
    out = []
    for combination in _combinations(both, _combination_keys(both, key)):
        arm_a = [r for r in arms["A"] if _fits(r, combination)]
        arm_b = [r for r in arms["B"] if _fits(r, combination)]
        if arm_a and arm_b:
            out.append(_comparison(arm_a, arm_b, key, a, b, metric, margin, direction, combination, tasks))
    return out


def _comparison(arm_a, arm_b, key, a, b, metric, margin, direction, combination, tasks) -> Comparison:
    va, vb = _values(arm_a, metric, tasks), _values(arm_b, metric, tasks)
    test, paired, n, reason, cells = _test(va, vb)
    used_a = [va[c] for c in cells] if paired else list(va.values())  # the paired runs, or every run
    used_b = [vb[c] for c in cells] if paired else list(vb.values())
    mean_a, mean_b = mean_std(used_a)[0], mean_std(used_b)[0]
    return Comparison(
        key=key,
        a=a,
        b=b,
        metric=metric,
        combination=dict(combination),
        n=n,
        n_a=len(va),
        n_b=len(vb),
        mean_a=mean_a,
        mean_b=mean_b,
        paired=paired,
        reason=reason,
        seeds=cells if paired else [],
        **_reading(test, mean_b - mean_a, margin, direction),
    )


def _reading(test: TTest | None, diff: float, margin: float, direction: str) -> dict[str, Any]:
    """What a test says, read against the claim: mean difference (``diff`` when there is no test), interval, p,
    verdict and, when not resolved, the pairs the observed spread would need."""
    if test is None:
        ci, p = (math.nan, math.nan), math.nan
    else:
        ci, p, diff = test.ci95, test.p, test.mean_diff
    result = verdict(ci, margin, direction)
    needed = None
    if test is not None and result == NOT_RESOLVED and diff != 0:
        needed = seeds_needed(gap_to_resolve(diff, margin, direction), test.std)
    return {
        "mean_diff": diff,
        "ci95": (float(ci[0]), float(ci[1])),
        "p": p,
        "verdict": result,
        "seeds_needed": needed,
        "margin": float(margin),
        "direction": direction,
    }


PUBLISHED = "published"  # arm A of a claim against a published value


def compare_to_value(
    records: list[dict],
    value: float,
    metric: str,
    margin: float = 0.0,
    direction: str = "equal",
) -> list[Comparison]:
    """The runs against a fixed (published) value: one comparison per combination of the keys that vary, each a
    one-sample Student t over the runs' differences to ``value`` (arm A is the value, arm B the runs)."""
    if direction not in DIRECTIONS:
        raise EncoderlabError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    records = [r for r in records if r.get("status", "finished") == "finished"]
    lacking = [r for r in records if task_metric(r, metric) is None]
    if lacking:
        have = sorted({m for r in records for m in r.get("metrics") or {}})
        raise EncoderlabError(
            f"metric '{metric}' is missing in {len(lacking)} of {len(records)} runs; metrics found: {', '.join(have)}"
        )
    out = []
    for combination in _combinations(records, _combination_keys(records, "")):
        runs = _values([r for r in records if _fits(r, combination)], metric)
        if not runs:
            continue
        diffs = [v - value for v in runs.values()]
        test = paired_t(diffs) if len(diffs) >= 2 else None
        reading = _reading(test, diffs[0], margin, direction)
        out.append(
            Comparison(
                key="",
                a=PUBLISHED,
                b="ours",
                metric=metric,
                combination=dict(combination),
                n=len(diffs),
                n_a=1,
                n_b=len(diffs),
                mean_a=value,
                mean_b=value + reading["mean_diff"],
                paired=False,
                reason="one run: no interval; add seeds"
                if test is None
                else "one-sample t against the published value",
                seeds=list(runs),
                **reading,
            )
        )
    return out
