"""Learning-rate schedules as multiplier functions, selected by name from :data:`SCHEDULES`.

A schedule is ``f(step, total_steps, warmup_steps, cfg) -> float``, the factor applied to each group's
base LR at optimizer step ``step``. Warmup is linear from 0 over ``ceil(cfg.warmup_ratio * total_steps)`` steps
(rounded up, as Hugging Face's ``get_scheduler``), peaking at 1.0 when it ends (slanted triangular has its own
rise, see :func:`slanted_triangular`).
Durations are fractions of the run, so a schedule means the same thing for a 100-step and a 100k-step run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from encoderlab.config.schema import SchedulerConfig
from encoderlab.errors import check_choice
from encoderlab.names import SCHEDULERS

Schedule = Callable[[int, int, int, SchedulerConfig], float]


def warmup_steps(cfg: SchedulerConfig, total_steps: int) -> int:
    """``ceil(warmup_ratio * total_steps)``: a ratio > 0 always gives at least one warmup step."""
    return math.ceil(cfg.warmup_ratio * total_steps - 1e-9)


def _progress(step: int, total_steps: int, warmup: int) -> float:
    """Fraction of the post-warmup phase done, in [0, 1]."""
    return min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))


def linear(step: int, total_steps: int, warmup: int, cfg: SchedulerConfig) -> float:
    """Linear warmup, then linear decay from the peak to 0 over the remaining ``total_steps - warmup`` steps.

    Hugging Face's ``get_linear_schedule_with_warmup`` (the ``Trainer`` default). BERT's own schedule decays
    over the whole run instead: :func:`bert_linear`.
    """
    if step < warmup:
        return step / warmup
    return 1.0 - _progress(step, total_steps, warmup)


def bert_linear(step: int, total_steps: int, warmup: int, cfg: SchedulerConfig) -> float:
    """The original BERT schedule (google-research/bert ``optimization.py``): ``1 - step / total_steps``, a
    polynomial (power 1) decay over *all* the steps, with the linear warmup replacing it for the first steps.

    After warmup the LR is already ``1 - warmup / total_steps`` of the peak (0.9 with 10% warmup), not the peak
    itself as in :func:`linear`.
    """
    if step < warmup:
        return step / warmup
    return max(0.0, 1.0 - step / total_steps)


def cosine(step: int, total_steps: int, warmup: int, cfg: SchedulerConfig) -> float:
    """Cosine decay over ``cfg.num_cycles`` cycles (0.5: from the peak to the floor once), floor ``lr_end_ratio``."""
    if step < warmup:
        return step / warmup
    wave = 0.5 * (1.0 + math.cos(2.0 * math.pi * cfg.num_cycles * _progress(step, total_steps, warmup)))
    return cfg.lr_end_ratio + (1.0 - cfg.lr_end_ratio) * wave


def constant(step: int, total_steps: int, warmup: int, cfg: SchedulerConfig) -> float:
    """Flat at the peak after warmup."""
    return step / warmup if step < warmup else 1.0


def slanted_triangular(step: int, total_steps: int, warmup: int, cfg: SchedulerConfig) -> float:
    """STLR (Howard & Ruder 2018, eq. 3): a short linear rise to the peak, then a long linear fall.

    ``cut_frac`` is ``cfg.warmup_ratio`` (0.1, the paper's value, when it is 0); ``cfg.ratio`` is how much
    smaller the lowest LR is than the peak, so the curve starts and ends at ``1 / ratio``, not at 0.
    """
    cut = warmup if cfg.warmup_ratio > 0 else round(0.1 * total_steps)
    cut = max(1, cut)
    if step < cut:
        p = step / cut
    else:
        p = 1.0 - min(1.0, (step - cut) / max(1, total_steps - cut))
    return (1.0 + p * (cfg.ratio - 1.0)) / cfg.ratio


def polynomial(step: int, total_steps: int, warmup: int, cfg: SchedulerConfig) -> float:
    """``end + (1 - end) * (1 - progress) ** power`` with ``end = cfg.lr_end_ratio`` (power 1: linear)."""
    if step < warmup:
        return step / warmup
    remaining = 1.0 - _progress(step, total_steps, warmup)
    return cfg.lr_end_ratio + (1.0 - cfg.lr_end_ratio) * remaining**cfg.power


def inverse_sqrt(step: int, total_steps: int, warmup: int, cfg: SchedulerConfig) -> float:
    """``sqrt(warmup / step)`` after warmup (Vaswani et al. 2017).

    Without warmup the time scale is 10% of the run, ``sqrt(scale / (step + scale))``, so the LR starts at
    its peak and has halved by 40% of the run whatever its length.
    """
    if warmup > 0:
        return step / warmup if step < warmup else math.sqrt(warmup / step)
    scale = max(1, round(0.1 * total_steps))
    return math.sqrt(scale / (step + scale))


# one entry per encoderlab.names.SCHEDULERS
SCHEDULES: dict[str, Schedule] = {
    "linear": linear,
    "bert_linear": bert_linear,
    "cosine": cosine,
    "constant": constant,
    "slanted_triangular": slanted_triangular,
    "polynomial": polynomial,
    "inverse_sqrt": inverse_sqrt,
}


def build_scheduler(
    optimizer: Optimizer, cfg: SchedulerConfig, total_steps: int, clock: Callable[[], float] | None = None
) -> LambdaLR:
    """A per-step ``LambdaLR``: each group's LR = its initial LR x schedule x ``group["lr_scale"]`` (default 1).

    ``lr_scale`` is read at every step, so a scale set on a group (gradual unfreezing sets 0 or 1)
    survives the scheduler rewriting ``lr``. Call ``scheduler.step()`` after every optimizer step.

    ``clock`` (``scheduler.clock=time``): the fraction of the run's time budget spent so far. The schedule is then
    evaluated at ``max(step, clock() * total_steps)``: warmup and decay are over when the budget is, however many
    steps the machine managed (Cramming's budgeted schedule), or at ``total_steps`` if those come first.
    """
    check_choice("scheduler.name", cfg.name, SCHEDULERS)
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    fn = SCHEDULES[cfg.name]
    warmup = warmup_steps(cfg, total_steps)

    read: dict[int, float] = {}  # the clock read once per step: every group's LR from the same instant

    def at(step: int) -> float:
        if clock is None:
            return step
        if step not in read:
            read.clear()
            read[step] = max(step, min(1.0, clock()) * total_steps)
        return read[step]

    def for_group(i: int) -> Callable[[int], float]:
        # index into the optimizer, not the group dict: load_state_dict replaces the dicts on resume
        return lambda step: fn(at(step), total_steps, warmup, cfg) * optimizer.param_groups[i].get("lr_scale", 1.0)

    return LambdaLR(optimizer, [for_group(i) for i in range(len(optimizer.param_groups))])


def lr_curve(cfg: SchedulerConfig, total_steps: int) -> list[float]:
    """The multiplier at steps ``0..total_steps`` (inclusive, so the end value shows), for tests and plots."""
    check_choice("scheduler.name", cfg.name, SCHEDULERS)
    fn, warmup = SCHEDULES[cfg.name], warmup_steps(cfg, total_steps)
    return [fn(step, total_steps, warmup, cfg) for step in range(total_steps + 1)]
