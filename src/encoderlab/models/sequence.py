"""Kind: sequence classification and regression (single sentence or pair)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification

from encoderlab.config.schema import RunConfig
from encoderlab.data import cache as data_cache
from encoderlab.data.classification import prepare_labels, tokenize
from encoderlab.data.collate import PadCollator
from encoderlab.data.sources import cv_fingerprint, load_raw
from encoderlab.errors import ConfigError
from encoderlab.kinds import Kind, Prepared
from encoderlab.models.distill import DistillSequenceModule, keep_layers, student_layer_indices
from encoderlab.models.encoder import build_config, build_model, check_length, save_pretrained
from encoderlab.models.heads import FeatureHead, FeatureModel, PooledModel, layer_indices
from encoderlab.models.module import ChunkedSequenceModule, SequenceModule
from encoderlab.training.lora import apply_strategy, merged


def pad_collator(run: RunConfig, tokenizer) -> PadCollator:
    return PadCollator(
        tokenizer.pad_token_id,
        pad_to_multiple_of=run.speed.pad_to_multiple_of,
        max_length=run.task.max_seq_length if run.speed.padding == "max_length" else None,
    )


def prepare(run: RunConfig, tokenizer, cache_root: Path | None) -> Prepared:
    task = run.task

    def build():
        labeled, names = prepare_labels(load_raw(task, run.cv), task)
        tok = tokenize(labeled, tokenizer, task)
        return tok, {"label_names": names, "sizes": {k: len(v) for k, v in tok.items()}}

    key = data_cache.fingerprint(task, tokenizer, **cv_fingerprint(run.cv))
    ds, meta = data_cache.cached(cache_root, f"{task.kind}-{task.name}", key, build)
    meta["data_key"] = key
    collator = pad_collator(run, tokenizer)
    if task.long_text == "chunks":  # documents of several windows each
        from encoderlab.data.long_text import ChunkCollator

        collator = ChunkCollator(collator)
    return Prepared(datasets=ds, collator=collator, meta=meta)


def feature_model(run: RunConfig, config, num_outputs: int, token_level: bool = False) -> FeatureModel:
    """The frozen encoder + head of ``finetune=frozen`` (last layer, linear) or ``finetune=feature_based``."""
    ft = run.finetune
    encoder = build_model(run.model, AutoModel, config)
    n = config.num_hidden_layers
    if ft.strategy == "frozen":
        layers_name, head = "last", "linear"
    else:
        layers_name, head = ft.layers, ft.head
    pooling = None if token_level else (ft.pooling or run.model.pooling)
    if pooling == "pooler" and layers_name != "last":
        raise ConfigError(
            "finetune.pooling",
            f"'pooler' reads the last layer only; with finetune.layers={layers_name} use finetune.pooling=cls or mean",
        )
    if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
        raise ConfigError("finetune.pooling", "this model has no pooler; use finetune.pooling=cls or mean")
    idx, combine = layer_indices(layers_name, n)
    head_mod = FeatureHead(
        1 if pooling == "pooler" else len(idx),
        config.hidden_size,
        num_outputs,
        "single" if pooling == "pooler" else combine,
        head,
        ft.head_hidden_size,
        ft.head_dropout,
    )
    return FeatureModel(encoder, head_mod, idx, pooling)


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
    config = build_config(run.model, vocab_size=len(tokenizer), **task_kwargs)
    check_length(run.task.max_seq_length, config)
    if run.finetune.frozen_encoder:
        network: nn.Module = feature_model(run, config, num_labels)
    elif run.finetune.pooling in ("cls", "mean"):  # a trainable encoder with a pooled linear head
        network = apply_strategy(pooled_model(run, config, num_labels), run.finetune, config.num_hidden_layers)
    else:
        network = build_model(run.model, AutoModelForSequenceClassification, config)
        if run.finetune.strategy == "distill":  # the student; with student_layers, model.path is the teacher's hf/
            layers = student_layer_indices(run.distill.student_layers, config.num_hidden_layers)
            if layers is not None:
                network = keep_layers(network, layers)
        network = apply_strategy(network, run.finetune, network.config.num_hidden_layers)
    if run.finetune.strategy == "distill":
        return DistillSequenceModule(network, run, num_labels, n_layers=network.config.num_hidden_layers)
    cls = ChunkedSequenceModule if run.task.long_text == "chunks" else SequenceModule
    return cls(network, run, num_labels, n_layers=config.num_hidden_layers)


def export_feature_model(network: FeatureModel | PooledModel, tokenizer, out: Path, meta: dict) -> None:
    """The frozen encoder in ``out/encoder`` (Hugging Face format) and the trained head beside it.

    ``out`` itself holds no config.json on purpose: ``transformers.pipeline`` would otherwise load the encoder with
    a randomly initialised classifier and predict nonsense. :func:`load_feature_model` rebuilds the whole model.
    """
    save_pretrained(network.encoder, tokenizer, out / "encoder")
    head = network.head
    torch.save(head.state_dict(), out / "feature_head.pt")
    desc = {
        "layers": network.layers,
        "pooling": network.pooling,
        "combine": head.combine,
        "head": head.kind,
        "n_selected": head.n_selected,
        "hidden": head.hidden,
        "num_outputs": head.num_outputs,
        "head_hidden_size": head.head_hidden_size,
        **meta,
    }
    (out / "feature_head.json").write_text(json.dumps(desc, indent=2))
    (out / "README.md").write_text(
        "An encoder (encoder/) with a trained head on its pooled hidden states (feature_head.pt). Load both with\n\n"
        "    from encoderlab.models.sequence import load_feature_model\n"
        "    model, tokenizer, desc = load_feature_model(PATH)\n"
        "    logits = model(tokenizer(texts, return_tensors='pt', padding=True))\n"
    )


def load_feature_model(path: str | Path) -> tuple[FeatureModel, object, dict]:
    """(model, tokenizer, description) of a folder written by :func:`export_feature_model`."""
    from transformers import AutoTokenizer

    path = Path(path)
    desc = json.loads((path / "feature_head.json").read_text())
    head = FeatureHead(
        desc["n_selected"],
        desc["hidden"],
        desc["num_outputs"],
        desc["combine"],
        desc["head"],
        desc["head_hidden_size"],
    )
    head.load_state_dict(torch.load(path / "feature_head.pt", map_location="cpu", weights_only=True))
    encoder = AutoModel.from_pretrained(path / "encoder")
    model = FeatureModel(encoder, head, desc["layers"], desc["pooling"]).eval()
    return model, AutoTokenizer.from_pretrained(path / "encoder"), desc


def export(module: SequenceModule, tokenizer, out: Path, prepared: Prepared) -> None:
    net = module.network
    if isinstance(net, PooledModel):  # no Hugging Face class has this head: exported as a feature-based model
        export_feature_model(net, tokenizer, out, {"label_names": prepared.meta.get("label_names")})
        return
    if not isinstance(net, FeatureModel):
        save_pretrained(merged(net), tokenizer, out)  # LoRA adapters folded into the weights
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
    from encoderlab.models.sequence_predictions import predict as write_predictions

    return write_predictions(module, trainer, datamodule, prepared, run_dir)


KIND = Kind(prepare=prepare, build=build, export=export, predict=predict)
