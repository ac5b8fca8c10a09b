"""Optimizers, selected by name from a registry.

``torch.optim.AdamW`` always applies Adam's bias correction. The original BERT recipe
(``AdamWeightDecay`` in google-research/bert, eps 1e-6) did not, which makes the first updates
larger by about ``(1 - beta1) / sqrt(1 - beta2)`` (~3.2x with betas 0.9/0.999) and is one cause of
unstable fine-tuning on small sets (Mosbach et al. 2021; Zhang et al. 2021). :class:`BertAdamW` has
the switch so that recipe can be reproduced and compared.

Both update every parameter with a few whole-tensor kernels per step (``fused``/``foreach``) rather than a
Python loop of elementwise ops per tensor: on a CPU, the per-tensor loop over a BERT's ~20M parameters (the
word embedding is updated densely every step) costs more than the forward pass of a small batch.
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
            params, grads, avgs, sqs = [], [], [], []
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
                params.append(p)
                grads.append(p.grad)
                avgs.append(state["exp_avg"])
                sqs.append(state["exp_avg_sq"])
            if not params:
                continue
            # the same update as one loop per tensor (lerp, mul+addcmul, decay, addcdiv), as whole-list kernels
            torch._foreach_lerp_(avgs, grads, 1 - beta1)
            torch._foreach_mul_(sqs, beta2)
            torch._foreach_addcmul_(sqs, grads, grads, value=1 - beta2)
            # decoupled weight decay, applied before the Adam update as torch.optim.AdamW does
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            denom = torch._foreach_sqrt(sqs)
            if group["bias_correction"]:
                for t, idx in _by_step(params, self.state).items():
                    step_size = lr / (1 - beta1**t)
                    d = [denom[i] for i in idx]
                    torch._foreach_div_(d, math.sqrt(1 - beta2**t))
                    torch._foreach_add_(d, eps)
                    torch._foreach_addcdiv_([params[i] for i in idx], [avgs[i] for i in idx], d, value=-step_size)
            else:
                torch._foreach_add_(denom, eps)
                torch._foreach_addcdiv_(params, avgs, denom, value=-lr)
        return loss


def _by_step(params: list, state) -> dict[int, list[int]]:
    """Indices of ``params`` by their step count (all equal unless parameters joined the group late)."""
    out: dict[int, list[int]] = {}
    for i, p in enumerate(params):
        out.setdefault(state[p]["step"], []).append(i)
    return out


def _fused_ok(groups: list[dict]) -> bool:
    """Whether torch's fused AdamW kernel takes every parameter (floating point, on a CPU or GPU, one device)."""
    params = [p for g in groups for p in g["params"]]
    devices = {p.device.type for p in params}
    one_device = len(devices) == 1 and devices <= {"cpu", "cuda"}
    return one_device and all(p.is_floating_point() for p in params)


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


def _adamw(groups: list[dict], cfg: OptimizerConfig, fused: bool = True) -> Optimizer:
    """``torch.optim.AdamW`` when bias-corrected (fused when ``fused`` and the parameters allow it, else foreach),
    else :class:`BertAdamW` without the correction."""
    eps, bias_correction = resolved(cfg)
    common = dict(lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=eps, weight_decay=cfg.weight_decay)
    if bias_correction:
        # fused: one kernel per parameter for the whole update, the same math up to float rounding
        fused = fused and _fused_ok(groups)
        return torch.optim.AdamW(groups, fused=fused, foreach=None if fused else True, **common)
    return BertAdamW(groups, bias_correction=False, **common)


# one entry per encoderlab.names.OPTIMIZERS (DEFAULTS too)
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adamw": _adamw,
    "adamw_bert": _adamw,  # the same update; only the defaults above differ
}


def build_optimizer(groups: list[dict], cfg: OptimizerConfig, fused: bool = True) -> Optimizer:
    """The optimizer named by ``cfg.name`` over ``groups`` (from :func:`build_param_groups`).

    Per-group keys (``lr``, ``weight_decay``, ``layer_id``, ``base_lr``, ...) override the config's defaults
    and stay in ``optimizer.param_groups``. ``fused=False`` keeps torch's fused kernel out (a loss scaler must unscale
    the gradients before they are clipped, which the fused kernel would do itself, after).
    """
    check_choice("optimizer.name", cfg.name, names.OPTIMIZERS)
    return OPTIMIZERS[cfg.name](groups, cfg, fused=fused)
