"""Kind: sequence classification and regression (single sentence or pair)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification

from encoderlab.config.schema import RunConfig
from encoderlab.kinds.base import KindFunctions, Prepared
from encoderlab.kinds.sequence.data import prepare
from encoderlab.kinds.sequence.long_text import write_serving_settings
from encoderlab.kinds.sequence.serving import CLASSIFICATION, REGRESSION
from encoderlab.models.encoder import build_config, build_model, check_length, save_pretrained

# export_feature_model and load_feature_model are importable from here too (model cards name this module)
from encoderlab.models.heads import (  # noqa: F401
    FeatureHead,
    FeatureModel,
    PooledModel,
    export_feature_model,
    feature_model,
    load_feature_model,
)
from encoderlab.models.module import ChunkedSequenceModule, SequenceModule
from encoderlab.strategies import get_strategy
from encoderlab.training.freezing import apply_strategy, exported


def pooled_model(run: RunConfig, config, num_outputs: int) -> PooledModel:
    """``finetune.pooling=cls|mean`` with a strategy that trains the encoder: see :class:`PooledModel`."""
    ft = run.finetune
    encoder = build_model(run.model, AutoModel, config)
    head = FeatureHead(1, config.hidden_size, num_outputs, "single", "linear", dropout=config.hidden_dropout_prob)
    return PooledModel(encoder, head, ft.pooling)


def build(run: RunConfig, prepared: Prepared, tokenizer) -> SequenceModule:
    names = prepared.meta.get("label_names")
    num_labels = len(names) if names else 1
    task_kwargs = {"num_labels": num_labels}
    if names:
        task_kwargs |= {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    else:
        task_kwargs["problem_type"] = "regression"
    config = build_config(run.model, vocab_size=len(tokenizer), precision=run.precision, **task_kwargs)
    check_length(run.task.max_seq_length, config)
    strategy = get_strategy(run.finetune.strategy)
    if strategy.frozen_encoder:
        network: nn.Module = feature_model(run, config, num_labels)
    elif run.finetune.pooling in ("cls", "mean"):  # a trainable encoder with a pooled linear head
        network = apply_strategy(pooled_model(run, config, num_labels), run.finetune, config.num_hidden_layers)
    else:
        network = strategy.adapt(build_model(run.model, AutoModelForSequenceClassification, config), run)
        network = apply_strategy(network, run.finetune, network.config.num_hidden_layers)
    n_layers = getattr(getattr(network, "config", None), "num_hidden_layers", config.num_hidden_layers)
    cls = strategy.module_class(ChunkedSequenceModule if run.task.long_text == "chunks" else SequenceModule, run)
    regression = run.task.kind == "sequence_regression"
    return cls(network, run, num_labels, n_layers=n_layers, regression=regression)


def export(module: SequenceModule, tokenizer, out: Path, prepared: Prepared) -> None:
    _export_network(module, tokenizer, out, prepared)
    write_serving_settings(module.run.task, out)  # task.long_text: served on the tokens it was trained on


def _export_network(module: SequenceModule, tokenizer, out: Path, prepared: Prepared) -> None:
    net = module.network
    if isinstance(net, PooledModel):  # no Hugging Face class has this head: exported as a feature-based model
        export_feature_model(net, tokenizer, out, {"label_names": prepared.meta.get("label_names")})
        return
    if not isinstance(net, FeatureModel):
        save_pretrained(exported(net, module.run), tokenizer, out)  # e.g. LoRA adapters folded into the weights
        return
    folded = _fold_pooler_probe(net, module)
    if folded is not None:  # a linear probe on the pooler *is* a *ForSequenceClassification model
        save_pretrained(folded, tokenizer, out)
    else:
        export_feature_model(net, tokenizer, out, {"label_names": prepared.meta.get("label_names")})


def _fold_pooler_probe(net: FeatureModel, module: SequenceModule):
    if net.pooling != "pooler" or not isinstance(net.head.classifier, nn.Linear):
        return None
    config = net.encoder.config
    config.num_labels = module.num_labels
    model = AutoModelForSequenceClassification.from_config(config)
    if not isinstance(getattr(model, "classifier", None), nn.Linear):
        return None
    model.base_model.load_state_dict(net.encoder.state_dict())
    model.classifier.load_state_dict(net.head.classifier.state_dict())
    return model


def predict(module: SequenceModule, trainer, datamodule, prepared: Prepared, run_dir: Path) -> dict:
    from encoderlab.kinds.sequence.predictions import predict as write_predictions

    return write_predictions(module, trainer, datamodule, prepared, run_dir)


KIND = KindFunctions(prepare=prepare, build=build, export=export, predict=predict, serving=CLASSIFICATION)
# sequence_regression: the same kind (task.kind tells build), serving values instead of labels
REGRESSION_KIND = dataclasses.replace(KIND, serving=REGRESSION)
