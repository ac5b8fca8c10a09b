"""Optimizers, selected by name from a registry.

``torch.optim.AdamW`` always applies Adam's bias correction. The original BERT recipe
(``AdamWeightDecay`` in google-research/bert, eps 1e-6) did not, which makes the first updates
larger by about ``(1 - beta1) / sqrt(1 - beta2)`` (~3.2x with betas 0.9/0.999) and is one cause of
unstable fine-tuning on small sets (Mosbach et al. 2021; Zhang et al. 2021). :class:`BertAdamW` has
the switch so that recipe can be reproduced and compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer

from encoderlab import names
from encoderlab.config.schema import OptimizerConfig
from encoderlab.errors import check_choice


class BertAdamW(Optimizer):
    """Adam with decoupled weight decay and an optional bias correction.

    With ``bias_correction=True`` it follows ``torch.optim.AdamW`` step for step; with ``False`` it is the
    original BERT ``AdamWeightDecay``: ``p -= lr * (m / (sqrt(v) + eps) + weight_decay * p)``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, bias_correction=bias_correction)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("BertAdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(p.grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                # decoupled weight decay, applied before the Adam update as torch.optim.AdamW does
                p.mul_(1 - lr * group["weight_decay"])
                if group["bias_correction"]:
                    t = state["step"]
                    step_size = lr / (1 - beta1**t)
                    denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
                else:
                    step_size = lr
                    denom = exp_avg_sq.sqrt().add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss


# what a bare ``optimizer.name=...`` means; explicit ``optimizer.eps`` / ``optimizer.bias_correction`` win, so a study
# can change one of them at a time
DEFAULTS: dict[str, dict] = {
    "adamw": {"eps": 1e-8, "bias_correction": True},  # torch.optim.AdamW
    "adamw_bert": {"eps": 1e-6, "bias_correction": False},  # google-research/bert AdamWeightDecay
}


def resolved(cfg: OptimizerConfig) -> tuple[float, bool]:
    """(eps, bias_correction) of ``cfg``: the configured values, or the named optimizer's own where null."""
    check_choice("optimizer.name", cfg.name, names.OPTIMIZERS)
    own = DEFAULTS[cfg.name]
    eps = own["eps"] if cfg.eps is None else cfg.eps
    bias_correction = own["bias_correction"] if cfg.bias_correction is None else cfg.bias_correction
    return eps, bias_correction


def _adamw(groups: list[dict], cfg: OptimizerConfig) -> Optimizer:
    """``torch.optim.AdamW`` when bias-corrected, else :class:`BertAdamW` without the correction."""
    eps, bias_correction = resolved(cfg)
    common = dict(lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=eps, weight_decay=cfg.weight_decay)
    if bias_correction:
        return torch.optim.AdamW(groups, **common)
    return BertAdamW(groups, bias_correction=False, **common)


# one entry per encoderlab.names.OPTIMIZERS (DEFAULTS too)
OPTIMIZERS: dict[str, Callable[[list[dict], OptimizerConfig], Optimizer]] = {
    "adamw": _adamw,
    "adamw_bert": _adamw,  # the same update; only the defaults above differ
}


def build_optimizer(groups: list[dict], cfg: OptimizerConfig) -> Optimizer:
    """The optimizer named by ``cfg.name`` over ``groups`` (from :func:`build_param_groups`).

    Per-group keys (``lr``, ``weight_decay``, ``layer_id``, ``base_lr``, ...) override the config's defaults
    and stay in ``optimizer.param_groups``.
    """
    check_choice("optimizer.name", cfg.name, names.OPTIMIZERS)
    return OPTIMIZERS[cfg.name](groups, cfg)
