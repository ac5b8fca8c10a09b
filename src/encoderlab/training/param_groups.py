"""Optimizer parameter groups: no-decay sets and layer-wise learning-rate decay (LLRD).

Every parameter gets a *layer id*: 0 for the embeddings, ``i + 1`` for encoder layer ``i`` and
``n_layers + 1`` for everything above the encoder (pooler, classifier, QA/MLM/NSP heads). Groups are
keyed by (layer id, decay or not), so LLRD and gradual unfreezing can address one layer's groups by
its ``layer_id`` key. Names are matched by regex, which covers BERT, RoBERTa and ELECTRA
(``embeddings.*``, ``embeddings_project.*``, ``...layer.<i>.*``) and ALBERT (``embedding_hidden_mapping_in.*``
with the embeddings, ``albert_layer_groups.<g>.*``). An ALBERT whose layers share their weights
(``num_hidden_groups`` < ``num_hidden_layers``, as every released ALBERT) has no per-layer weights to freeze or
decay: :func:`check_per_layer_weights` stops such a run with a ConfigError.

Layer-wise LR decay follows Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification?", Sec. 5.3):
the top layer gets the base LR, each layer below it ``layer_decay`` times the one above, the embeddings the
least. ``optimizer.layer_decay_top=decayed`` counts the head as the top instead (the top layer gets ``lr x
layer_decay``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from torch import nn

from encoderlab.config.schema import OptimizerConfig
from encoderlab.errors import ConfigError

_EMBEDDINGS = re.compile(r"(?:^|\.)(?:embeddings|embeddings_project|embedding_hidden_mapping_in)\.")
_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
_ALBERT_GROUP = re.compile(r"(?:^|\.)albert_layer_groups\.(\d+)\.")


def encoder_of(model: nn.Module) -> nn.Module:
    """The base encoder: ``model.base_model`` for an HF head model, the model itself for a ``BertModel``.

    A wrapper that is not itself a Hugging Face model (e.g. a LightningModule holding one) is searched
    for the first Hugging Face model inside it, so callers may pass either.
    """
    base = getattr(model, "base_model", None)
    if isinstance(base, nn.Module):
        return base
    for module in model.modules():
        inner = getattr(module, "base_model", None)
        if module is not model and isinstance(inner, nn.Module):
            return inner
    return model


def num_layers(model: nn.Module) -> int:
    """Number of transformer blocks in the encoder (``len(encoder.layer)`` for BERT-family models)."""
    enc = encoder_of(model)
    stack = getattr(getattr(enc, "encoder", None), "layer", None)
    if isinstance(stack, nn.ModuleList):
        return len(stack)
    for name, module in enc.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers"):
            return len(module)
    config = getattr(enc, "config", None)
    if config is not None and getattr(config, "num_hidden_layers", None):
        return int(config.num_hidden_layers)
    raise ConfigError("model.path", f"cannot find the encoder layers of {type(enc).__name__}; use a BERT-family model")


def layer_groups(model: nn.Module) -> int | None:
    """ALBERT's ``num_hidden_groups`` (weight sets shared by the layers), None for models without groups."""
    groups = getattr(getattr(encoder_of(model), "config", None), "num_hidden_groups", None)
    return int(groups) if groups else None


def check_per_layer_weights(model: nn.Module, key: str, what: str, n_layers: int | None = None) -> None:
    """A ConfigError naming ``key`` when the layers share weights (ALBERT), so ``what`` cannot address one layer."""
    groups = layer_groups(model)
    n = num_layers(model) if n_layers is None else n_layers
    if groups is not None and groups < n:
        raise ConfigError(
            key,
            f"{what} needs weights of its own in each layer, but this model's {n} layers share {groups} weight "
            "set(s) (ALBERT num_hidden_groups); use finetune=full with optimizer.layer_decay=1.0, finetune=frozen "
            "or finetune=feature_based",
        )


def layer_id(param_name: str, n_layers: int, n_groups: int | None = None) -> int:
    """0 for embeddings, ``i + 1`` for encoder layer ``i``, ``n_layers + 1`` for anything else.

    ALBERT's layer group ``g`` of ``n_groups`` gets the id of the topmost layer it serves: its own layer when
    every layer has its own group, the top layer (id ``n_layers``) when all layers share one.
    """
    if _EMBEDDINGS.search(param_name):
        return 0
    group = _ALBERT_GROUP.search(param_name)
    if group:
        g, n_groups = int(group.group(1)), n_groups or n_layers
        if g >= n_groups:
            raise ValueError(f"parameter {param_name!r} is in layer group {g} but the model has {n_groups} groups")
        return (g + 1) * n_layers // n_groups
    match = _LAYER.search(param_name)
    if match:
        i = int(match.group(1))
        if i >= n_layers:
            raise ValueError(f"parameter {param_name!r} is in layer {i} but the model has {n_layers} layers")
        return i + 1
    return n_layers + 1


def named_layer_ids(
    model: nn.Module, n_layers: int | None = None, extra_head: nn.Module | None = None
) -> Iterator[tuple[str, nn.Parameter, int]]:
    """(name, parameter, layer id) for every distinct parameter, trainable or not.

    Parameters outside the base encoder are head parameters whatever their name, so a head that happens
    to contain a ``layer.0`` is never mistaken for an encoder layer.
    """
    n = num_layers(model) if n_layers is None else n_layers
    encoder_ids = {id(p) for p in encoder_of(model).parameters()}
    groups = layer_groups(model)
    seen: set[int] = set()
    for name, p in model.named_parameters():
        seen.add(id(p))
        yield name, p, layer_id(name, n, groups) if id(p) in encoder_ids else n + 1
    if extra_head is not None:
        for name, p in extra_head.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p, n + 1


def group_name(lid: int, n_layers: int, decay: bool) -> str:
    """Readable names for LR monitors: ``embeddings``, ``layer_<1..n>``, ``head``, then ``.decay``/``.no_decay``."""
    level = "embeddings" if lid == 0 else "head" if lid == n_layers + 1 else f"layer_{lid}"
    return f"{level}.{'decay' if decay else 'no_decay'}"


def build_param_groups(
    model: nn.Module,
    cfg: OptimizerConfig,
    n_layers: int | None = None,
    extra_head: nn.Module | None = None,
) -> list[dict]:
    """Trainable parameters grouped by (layer id, decay), with LLRD learning rates.

    Layer id ``d`` of the encoder gets ``cfg.lr * cfg.layer_decay ** (n_layers - d)`` (the top layer ``cfg.lr``,
    the embeddings ``cfg.lr * cfg.layer_decay ** n_layers``; one more power with ``layer_decay_top=decayed``);
    the head gets ``cfg.head_lr`` (or ``cfg.lr``). Names containing any ``cfg.no_decay`` substring get no
    weight decay. Each group also carries ``layer_id``, ``name`` and ``base_lr`` (the LR before any schedule).
    """
    n = num_layers(model) if n_layers is None else n_layers
    if cfg.layer_decay < 1.0:
        check_per_layer_weights(model, "optimizer.layer_decay", "layer-wise LR decay", n)
    head_lr = cfg.lr if cfg.head_lr is None else cfg.head_lr
    top = n if cfg.layer_decay_top == "base" else n + 1  # the depth at which the decay is x 1
    groups: dict[tuple[int, bool], dict] = {}
    for name, p, lid in named_layer_ids(model, n, extra_head):
        if not p.requires_grad:
            continue
        decay = not any(nd in name for nd in cfg.no_decay)
        if (lid, decay) not in groups:
            lr = head_lr if lid == n + 1 else cfg.lr * cfg.layer_decay ** (top - lid)
            groups[(lid, decay)] = {
                "params": [],
                "lr": lr,
                "base_lr": lr,
                "weight_decay": cfg.weight_decay if decay else 0.0,
                "layer_id": lid,
                "name": group_name(lid, n, decay),
            }
        groups[(lid, decay)]["params"].append(p)
    # decay before no_decay within a layer, layers bottom-up: a stable order for checkpoints and logs
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]
