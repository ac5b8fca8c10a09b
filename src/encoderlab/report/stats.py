"""The statistics behind a verdict: Student-t intervals of a mean, of paired differences, and Welch's t.

Everything is two-sided at 95%. A sample of one has no spread, so its interval is undefined (NaN), never zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95
_MAX_SEEDS = 1_000_000  # seeds_needed gives up past this many (a gap that small is practically zero)


def t_quantile(df: float, level: float = LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def t_two_sided_p(stat: float, df: float) -> float:
    from scipy.stats import t

    return float(2 * t.sf(abs(stat), df))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; NaN for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """95% Student-t interval of the mean; (NaN, NaN) for fewer than two values."""
    if len(values) < 2:
        return math.nan, math.nan
    mean, std = mean_std(values)
    half = t_quantile(len(values) - 1) * std / math.sqrt(len(values))
    return mean - half, mean + half


@dataclass(frozen=True)
class TTest:
    mean_diff: float
    ci95: tuple[float, float]
    p: float
    std: float  # spread of one difference (paired) or sqrt(var_a + var_b) (Welch): what seeds_needed scales


def _test(diff: float, se: float, df: float, std: float) -> TTest:
    if se == 0:  # no spread at all: the interval is the point, and only a zero difference is unsurprising
        return TTest(diff, (diff, diff), 1.0 if diff == 0 else 0.0, std)
    half = t_quantile(df) * se
    return TTest(diff, (diff - half, diff + half), t_two_sided_p(diff / se, df), std)


def paired_t(diffs: Sequence[float]) -> TTest:
    """Student's t over paired differences (at least two)."""
    mean, std = mean_std(diffs)
    return _test(mean, std / math.sqrt(len(diffs)), len(diffs) - 1, std)


def welch_t(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Welch's t for mean(b) - mean(a) (at least two values each), Welch–Satterthwaite degrees of freedom."""
    mean_a, std_a = mean_std(a)
    mean_b, std_b = mean_std(b)
    va, vb = std_a**2 / len(a), std_b**2 / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1.0
    return _test(mean_b - mean_a, se, df, math.sqrt(std_a**2 + std_b**2))


def seeds_needed(gap: float, std: float, start: int = 2) -> int | None:
    """The smallest n at which ``t(n-1) * std / sqrt(n) < gap``: the number of pairs that an observed mean ``gap``
    away from the nearest boundary it could clear, with this spread, would need for the interval to clear it."""
    if not (gap > 0 and std > 0) or math.isnan(gap) or math.isnan(std):
        return None

    def clear(n: int) -> bool:
        return t_quantile(n - 1) * std / math.sqrt(n) < gap

    hi = max(start, 2)
    while not clear(hi):
        if hi > _MAX_SEEDS:
            return None
        hi *= 2
    lo = max(start, 2) - 1  # clear(lo) is False or lo < 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid >= 2 and clear(mid):
            hi = mid
        else:
            lo = mid
    return hi
