"""Kind: token classification (NER), scored per word with strict IOB2 entity F1.

The network is a Hugging Face ``*ForTokenClassification`` (full / top_k / gradual_unfreeze / LLRD), or for
``frozen`` / ``feature_based`` a frozen encoder whose per-token features (BERT Table 7: one layer, a weighted
sum or the concatenation of the last four) feed a linear, MLP or 2-layer BiLSTM head. Predictions go back to
words through each feature's ``word_ids``; a word cut off by ``max_seq_length`` counts as tagged 'O'.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from datasets import DatasetDict
from torch import nn
from transformers import AutoModelForTokenClassification

from encoderlab.config.schema import RunConfig
from encoderlab.data import cache as data_cache
from encoderlab.data.collate import pad_collator
from encoderlab.data.sources import cv_fingerprint, load_raw
from encoderlab.kinds.base import KindFunctions, Prepared, write_json
from encoderlab.kinds.token_classification.data import (
    EXAMPLE_INDEX,
    IGNORE_INDEX,
    entities,
    preprocess_token_classification,
    resolve_label_names,
    to_tag_strings,
    to_tags,
    word_level,
)
from encoderlab.kinds.token_classification.metrics import NerScores, ner_scores
from encoderlab.kinds.token_classification.serving import SERVING
from encoderlab.metrics.rows import RowOutputs
from encoderlab.models.encoder import build_config
from encoderlab.models.module import STAGES, EncoderModule
from encoderlab.models.token_level import EVAL_SPLITS, SPLITS, build_token_network, export_token_model, token_logits

log = logging.getLogger(__name__)

_SENTENCES = "_sentences"  # suffix of the cached splits that keep words and gold tags for scoring and files
_NOT_MODEL_INPUT = ("word_labels",)

# ---------------------------------------------------------------- data


def prepare(run: RunConfig, tokenizer, cache_root: Path | None) -> Prepared:
    task = run.task

    def build():
        raw = load_raw(task, run.cv)
        names = resolve_label_names(raw, task)
        feats = preprocess_token_classification(raw, tokenizer, task)
        splits = dict(feats)
        for split in EVAL_SPLITS.values():  # words and gold tags, for scoring and predictions files
            sentences = to_tag_strings(raw[split], task).select_columns([task.ner.tokens_field, task.ner.tags_field])
            splits[split + _SENTENCES] = sentences
        sizes = {k: len(v) for k, v in feats.items()}
        return DatasetDict(splits), {"label_names": names, "sizes": sizes}

    key = data_cache.fingerprint(task, tokenizer, kind="token_classification", **cv_fingerprint(run.cv))
    ds, meta = data_cache.cached(cache_root, f"{task.kind}-{task.name}", key, build)
    meta["data_key"] = key
    rows = {s: ds[s].remove_columns([c for c in _NOT_MODEL_INPUT if c in ds[s].column_names]) for s in SPLITS}
    sentences = {}
    for split in EVAL_SPLITS.values():
        sent = ds[split + _SENTENCES]
        sentences[split] = {"tokens": list(sent[task.ner.tokens_field]), "tags": list(sent[task.ner.tags_field])}
    return Prepared(datasets=rows, collator=pad_collator(run, tokenizer), meta=meta, extras={"sentences": sentences})


# ---------------------------------------------------------------- module


class TokenClassificationModule(EncoderModule):
    """Cross-entropy over labelled pieces; at epoch end, word-level tags scored against the gold sentences."""

    def __init__(
        self,
        network: nn.Module,
        run: RunConfig,
        label_names: list[str],
        sentences: dict[str, dict[str, list]],
        n_layers: int | None = None,
    ):
        super().__init__(network, run, n_layers)
        self.label_names = list(label_names)
        self.sentences = sentences  # split -> {"tokens": [...], "tags": [...]}
        self.word_tags = nn.ModuleDict(
            {s: WordTags(sentences[EVAL_SPLITS[s]]["tags"], self.label_names) for s in STAGES}
        )
        self.predictions: dict[str, dict[int, list[str]]] = {}
        self.scores: dict[str, NerScores] = {}

    def step(self, batch):
        logits = token_logits(self.network, batch).float()
        labels = batch["labels"][:, : logits.shape[1]]
        if (labels != IGNORE_INDEX).any():
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        else:  # a batch of sentences whose words all fell off the window
            loss = logits.sum() * 0.0
        return loss, {"preds": logits.argmax(-1)}

    def update_metrics(self, stage, batch, outputs):
        gold = self.sentences[EVAL_SPLITS[stage]]["tags"]
        index = batch[EXAMPLE_INDEX]
        n_words = torch.tensor([len(gold[i]) for i in index.tolist()], dtype=torch.long)
        word_ids = batch["word_ids"][:, : outputs["preds"].shape[1]]
        words = word_level(outputs["preds"], word_ids, int(n_words.max()) if len(n_words) else 0)
        self.word_tags[stage].update(index, n_words, tags=words)

    def compute_metrics(self, stage):
        result = self.word_tags[stage].compute()
        self.word_tags[stage].reset()
        if result is None:
            return {}
        self.predictions[stage], self.scores[stage] = result
        values = self.scores[stage].as_dict()
        return {m: values[m] for m in self.run.task.metrics}


class WordTags(RowOutputs):
    """The predicted tag id of each word of every evaluated sentence (-1: a word cut off by ``max_seq_length``,
    tagged 'O'); ``compute``: the tags by sentence index and their strict IOB2 scores against ``gold``."""

    def __init__(self, gold: list[list[str]], label_names: list[str]):
        super().__init__(("tags",))
        self.gold = gold
        self.label_names = list(label_names)

    def compute(self) -> tuple[dict[int, list[str]], NerScores] | None:
        preds = self.rows()
        if not preds:
            return None
        tags = {
            i: to_tags([None if p < 0 else p for p in v.long().tolist()], self.label_names) for i, (v,) in preds.items()
        }
        return tags, ner_scores([self.gold[i] for i in tags], list(tags.values()))


def build(run: RunConfig, prepared: Prepared, tokenizer) -> TokenClassificationModule:
    names = prepared.meta["label_names"]
    config = build_config(
        run.model,
        vocab_size=len(tokenizer),
        precision=run.precision,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    network = build_token_network(run, AutoModelForTokenClassification, config, len(names))
    return TokenClassificationModule(
        network, run, names, prepared.extras["sentences"], n_layers=config.num_hidden_layers
    )


# ---------------------------------------------------------------- outputs


def predict(module: TokenClassificationModule, trainer, datamodule, prepared: Prepared, run_dir: Path) -> dict:
    """``predictions_test.jsonl`` (tokens, predicted tags and entities, gold entities per sentence) and
    ``entity_scores_test.json`` (per entity type), next to summary.json."""
    if not trainer.is_global_zero or "test" not in module.predictions:
        return {}
    sentences = prepared.extras["sentences"]["test"]
    with (run_dir / "predictions_test.jsonl").open("w") as f:
        for i, tags in sorted(module.predictions["test"].items()):
            tokens = sentences["tokens"][i]
            row = {
                "index": i,
                "tokens": tokens,
                "tags": tags,
                "entities": entities(tokens, tags),
                "gold_entities": entities(tokens, sentences["tags"][i]),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    scores = module.scores["test"]
    write_json(
        run_dir / "entity_scores_test.json",
        {
            "scheme": "IOB2 strict (seqeval)",
            **scores.as_dict(),
            "per_type": {t: vars(s) for t, s in scores.per_type.items()},
        },
    )
    return {}


def export(module: TokenClassificationModule, tokenizer, out: Path, prepared: Prepared) -> None:
    export_token_model(
        module, tokenizer, out, AutoModelForTokenClassification, "classifier", {"label_names": module.label_names}
    )


KIND = KindFunctions(prepare=prepare, build=build, export=export, predict=predict, serving=SERVING)
