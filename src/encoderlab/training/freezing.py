"""Freezing strategies: which weights learn.

Each strategy (``encoderlab.strategies``) sets ``requires_grad`` once, in its ``freeze`` hook, before the model
is wrapped by DDP or Lightning, because DDP fixes the set of trainable parameters when it wraps. Gradual
unfreezing (Howard & Ruder 2018) changes that set during training, so it keeps every parameter
trainable and instead scales each layer's LR to 0 until the layer thaws (:class:`GradualUnfreezer`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from encoderlab.config.schema import FinetuneConfig
from encoderlab.errors import ConfigError
from encoderlab.strategies import get_strategy
from encoderlab.training.param_groups import check_per_layer_weights, num_layers


def apply_freezing(model: nn.Module, cfg: FinetuneConfig, n_layers: int | None = None) -> None:
    """Set ``requires_grad`` on every parameter of ``model`` for ``cfg.strategy``; call before wrapping."""
    strategy = get_strategy(cfg.strategy)
    n = num_layers(model) if n_layers is None else n_layers
    if strategy.per_layer:
        check_per_layer_weights(model, "finetune.strategy", f"finetune={cfg.strategy}", n)
    for p in model.parameters():
        p.requires_grad_(True)
    strategy.freeze(model, cfg, n)


def apply_strategy(model: nn.Module, cfg: FinetuneConfig, n_layers: int | None = None) -> nn.Module:
    """The network that trains: ``model`` with the strategy's freezing applied, then wrapped as it asks (LoRA's
    adapters); call before Lightning or DDP wraps it."""
    n = num_layers(model) if n_layers is None else n_layers
    apply_freezing(model, cfg, n)
    return get_strategy(cfg.strategy).wrap(model, cfg, n)


def exported(network: nn.Module, run) -> nn.Module:
    """``network`` as the run's strategy exports it (``Strategy.export_network``: LoRA merges its adapters)."""
    return get_strategy(run.finetune.strategy).export_network(network)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights (MLM decoder = word embeddings) count once."""
    params = [p for _, p in model.named_parameters()]
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@dataclass
class GradualUnfreezer:
    """ULMFiT gradual unfreezing through per-group LR scales (0 = frozen, 1 = thawed).

    Stage 0 trains only the head (layer id ``n_layers + 1``: classifier, pooler, task heads); at each step of
    ``thaw_steps`` one more encoder layer thaws, from the top down, and last the embeddings (id 0) when
    ``train_embeddings`` is set. ULMFiT thaws everything and then trains on: :meth:`from_config` spaces the thaws
    so that the last one comes at ``finetune.unfreeze_by`` of the run, or every ``finetune.unfreeze_interval``
    epochs, and refuses an interval whose last thaw would come after the end of training.

    A frozen layer still gets gradients and Adam moments (no ``requires_grad`` toggling, so DDP is safe),
    but with LR 0 neither the Adam update nor decoupled weight decay moves it. Their gradients do count
    in a global gradient-norm clip, as they would in any run that trains those layers later.
    """

    n_layers: int
    thaw_steps: tuple[int, ...]  # optimizer step at which depth 1 (top layer), 2, ... thaws
    train_embeddings: bool = False

    def __post_init__(self) -> None:
        self.thaw_steps = tuple(self.thaw_steps)
        if len(self.thaw_steps) != self.n_stages:
            raise ValueError(f"need {self.n_stages} thaw steps (layers + embeddings if trained), got {self.thaw_steps}")
        if list(self.thaw_steps) != sorted(self.thaw_steps) or (self.thaw_steps and self.thaw_steps[0] < 0):
            raise ValueError(f"thaw steps must be >= 0 and in order, got {self.thaw_steps}")

    @property
    def n_stages(self) -> int:
        """Thaws after the head-only stage: one per encoder layer, plus the embeddings when they train."""
        return self.n_layers + (1 if self.train_embeddings else 0)

    @classmethod
    def every(cls, n_layers: int, interval_steps: int, train_embeddings: bool = False) -> GradualUnfreezer:
        """One thaw every ``interval_steps`` optimizer steps (ULMFiT: one per epoch)."""
        if interval_steps < 1:
            raise ValueError(f"interval_steps must be at least 1, got {interval_steps}")
        n = n_layers + (1 if train_embeddings else 0)
        return cls(n_layers, tuple(interval_steps * s for s in range(1, n + 1)), train_embeddings)

    @classmethod
    def by_fraction(cls, n_layers: int, total_steps: int, fraction: float, train_embeddings: bool = False):
        """Thaws at even spacing so that the last comes at ``fraction`` of ``total_steps`` (several per step
        in a run shorter than the number of layers)."""
        if not 0.0 < fraction < 1.0:
            raise ConfigError("finetune.unfreeze_by", f"must be in (0, 1), got {fraction}")
        n = n_layers + (1 if train_embeddings else 0)
        last = fraction * total_steps
        return cls(n_layers, tuple(math.floor(last * s / n) for s in range(1, n + 1)), train_embeddings)

    @classmethod
    def from_config(
        cls, cfg: FinetuneConfig, n_layers: int, total_steps: int, steps_per_epoch: int
    ) -> GradualUnfreezer:
        """The run's schedule: ``cfg.unfreeze_interval`` epochs per thaw if set, else all thawed by ``unfreeze_by``."""
        if cfg.unfreeze_interval is None:
            return cls.by_fraction(n_layers, total_steps, cfg.unfreeze_by, cfg.train_embeddings)
        if cfg.unfreeze_interval <= 0:
            raise ConfigError("finetune.unfreeze_interval", "must be > 0 (epochs per thawed layer)")
        interval = max(1, round(cfg.unfreeze_interval * max(1, steps_per_epoch)))
        unfreezer = cls.every(n_layers, interval, cfg.train_embeddings)
        last = unfreezer.thaw_steps[-1] if unfreezer.thaw_steps else 0
        if last >= total_steps:
            what = f"{n_layers} layers" + (" and the embeddings" if cfg.train_embeddings else "")
            most = (total_steps - 1) / max(1, unfreezer.n_stages) / max(1, steps_per_epoch)
            raise ConfigError(
                "finetune.unfreeze_interval",
                f"{cfg.unfreeze_interval} epochs per thaw would thaw the last of the {what} at step {last}, after "
                f"the run's {total_steps} steps, so the lowest layers never train; use at most {most:.3g}, more "
                "epochs, or finetune.unfreeze_interval=null (everything thawed by finetune.unfreeze_by)",
            )
        return unfreezer

    def stage(self, step: int) -> int:
        """How many thaws have happened by optimizer step ``step``."""
        return bisect.bisect_right(self.thaw_steps, step)

    def scale_for(self, layer_id: int, step: int) -> float:
        """1.0 if the layer with this id trains at optimizer step ``step``, else 0.0."""
        depth = self.n_layers + 1 - layer_id  # 0 for the head, 1 for the top layer, n + 1 for embeddings
        if layer_id == 0 and not self.train_embeddings:
            return 0.0
        return 1.0 if self.stage(step) >= depth else 0.0

    def apply(self, optimizer: Optimizer, step: int, scheduler: LambdaLR | None = None) -> None:
        """Set each group's ``lr_scale`` for optimizer step ``step``; call before that step.

        With the scheduler from ``build_scheduler`` the groups' ``lr`` is refreshed now, so the change holds
        for this very step; without one (no LR schedule) ``lr`` becomes ``base_lr * lr_scale``.
        """
        for i, group in enumerate(optimizer.param_groups):
            if "layer_id" not in group:
                raise ValueError("gradual unfreezing needs param groups with 'layer_id'; use build_param_groups")
            group["lr_scale"] = self.scale_for(group["layer_id"], step)
            if scheduler is not None:
                group["lr"] = scheduler.base_lrs[i] * scheduler.lr_lambdas[i](scheduler.last_epoch)
            else:
                group["lr"] = group["base_lr"] * group["lr_scale"]
