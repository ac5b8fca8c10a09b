"""What a fine-tuning strategy is: :class:`Strategy`, an object with a hook for each point of a run where the
strategy decides something. The runner, the kinds' ``build``, the module, the heads and the freezing call these
hooks and never ask which strategy runs; each strategy's module (``strategies/<name>.py``) overrides the hooks it
needs. The defaults are plain full fine-tuning: every weight trains, nothing is added or wrapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from encoderlab.config.schema import FinetuneConfig, RunConfig
    from encoderlab.kinds.base import Prepared


class Strategy:
    """A fine-tuning strategy (``finetune.strategy``): which weights learn, what data and network it adds, what it
    changes during training and in the export. Hooks in the order a run calls them."""

    name: str = ""
    # the network is a frozen encoder with a head on its hidden states (models/heads.FeatureModel): its features
    # can be cached (speed.cache_features), and it exports as encoder/ + feature_head.pt
    frozen_encoder: bool = False
    # the encoder's own weights never change (a frozen encoder, or adapters beside it): pre-training refuses it
    keeps_encoder_fixed: bool = False
    # its freezing addresses single encoder layers: a model whose layers share weights (ALBERT) is refused
    per_layer: bool = False
    # RunConfig sections only this strategy reads: left out of the config hash of runs with any other strategy
    sections: tuple[str, ...] = ()
    # "module:function" of a training loop of its own that replaces the Lightning stages, see :meth:`own_loop`
    loop: str | None = None

    # ---- the run --------------------------------------------------------------------------------------------
    def own_loop(self):
        """``fn(run, run_dir, overrides) -> dict``: trains outside Lightning, writes hf/ and the predictions files,
        returns a finished run's summary fields; None: the Lightning stages train it."""
        if self.loop is None:
            return None
        import importlib

        module, _, name = self.loop.partition(":")
        return getattr(importlib.import_module(module), name)

    def configure(self, run: RunConfig, summary: dict) -> tuple[RunConfig, Any]:
        """Before any data is read: the run to train (it may differ from the config, e.g. a student built from its
        teacher) and a state handed to :meth:`extra_data`; may record fields in ``summary``."""
        return run, None

    def extra_data(self, run: RunConfig, prepared: Prepared, state: Any, summary: dict) -> tuple[Prepared, float]:
        """After the kind has built the module: what the strategy adds to the data (e.g. teacher logits) and the
        seconds it took, which count as training time."""
        return prepared, 0.0

    # ---- the network ----------------------------------------------------------------------------------------
    def feature_layers(self, cfg: FinetuneConfig) -> tuple[str, str]:
        """(hidden layers, head) of a frozen encoder's head (``frozen_encoder``): see models/heads.LAYER_CHOICES."""
        return cfg.layers, cfg.head

    def adapt(self, network: nn.Module, run: RunConfig) -> nn.Module:
        """The freshly built Hugging Face network before freezing (e.g. a student keeps some layers only)."""
        return network

    def freeze(self, model: nn.Module, cfg: FinetuneConfig, n_layers: int) -> None:
        """Set ``requires_grad`` (every parameter starts trainable); called before the network is wrapped."""

    def wrap(self, model: nn.Module, cfg: FinetuneConfig, n_layers: int) -> nn.Module:
        """The network that trains, after :meth:`freeze` (e.g. with adapters added)."""
        return model

    def module_class(self, cls: type, run: RunConfig) -> type:
        """The LightningModule class to train the kind's ``cls`` with (e.g. one with a distillation loss)."""
        return cls

    # ---- training -------------------------------------------------------------------------------------------
    def step_hook(self, cfg: FinetuneConfig, n_layers: int, total_steps: int, steps_per_epoch: int):
        """An object whose ``apply(optimizer, step, scheduler)`` the module calls before every optimizer step (e.g.
        gradual unfreezing's LR scales), or None."""
        return None

    # ---- the export ------------------------------------------------------------------------------------------
    def export_network(self, network: nn.Module) -> nn.Module:
        """The network as ``hf/`` holds it (e.g. LoRA's adapters merged into the weights, a copy)."""
        return network

    def card_rows(self, cfg: dict) -> list[tuple[str, object]]:
        """Rows the model card's "Training" table adds for this strategy (``cfg``: the saved ``finetune`` section)."""
        return []


def freeze_encoder(model: nn.Module) -> None:
    """The whole base model, pooler included, is frozen; only what sits on top of it learns."""
    from encoderlab.training.param_groups import encoder_of

    for p in encoder_of(model).parameters():
        p.requires_grad_(False)
