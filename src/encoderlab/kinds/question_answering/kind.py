"""Kind: extractive question answering (SQuAD v1.1 / v2.0), scored by EM and F1 over whole questions.

The network predicts a start and an end logit per token: a HF ``*ForQuestionAnswering`` (``num_labels=2``), or
a frozen encoder with a 2-output per-token head. Training features are windows with span labels; at epoch
end the logits of every window of a question are post-processed together (n-best spans, max answer length,
v2's null threshold) into one answer string, sliced from the original context.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import DatasetDict
from torch import nn
from transformers import AutoModelForQuestionAnswering

from encoderlab.config.schema import RunConfig, TaskConfig
from encoderlab.data import cache as data_cache
from encoderlab.data.collate import pad_collator
from encoderlab.data.sources import cv_fingerprint, load_raw
from encoderlab.kinds.base import KindFunctions, Prepared
from encoderlab.kinds.question_answering.data import (
    EXAMPLE_ID,
    FEATURE_INDEX,
    OFFSETS,
    best_answers,
    gold_answers,
    postprocess_predictions,
    prepare_eval_features,
    preprocess_question_answering,
    settings_task,
)
from encoderlab.kinds.question_answering.metrics import squad_scores
from encoderlab.kinds.question_answering.serving import SERVING, SETTINGS_FILE
from encoderlab.metrics.rows import RowOutputs
from encoderlab.models.encoder import build_config
from encoderlab.models.module import STAGES, EncoderModule
from encoderlab.models.token_level import (
    EVAL_SPLITS,
    SPLITS,
    build_token_network,
    export_token_model,
    token_logits,
)

_EXAMPLES = "_examples"  # suffix of the cached splits that keep the raw questions for post-processing

# ---------------------------------------------------------------- data


def prepare(run: RunConfig, tokenizer, cache_root: Path | None) -> Prepared:
    task = run.task

    def build():
        raw = load_raw(task, run.cv)
        feats = preprocess_question_answering(raw, tokenizer, task)
        splits = dict(feats)
        for split in EVAL_SPLITS.values():
            splits[split + _EXAMPLES] = raw[split].select_columns(
                [task.qa.id_field, task.qa.context_field, task.qa.answers_field]
            )
        sizes = {k: len(v) for k, v in feats.items()} | {f"{k}_questions": len(v) for k, v in raw.items()}
        return DatasetDict(splits), {"sizes": sizes}

    key = data_cache.fingerprint(task, tokenizer, kind="question_answering", **cv_fingerprint(run.cv))
    ds, meta = data_cache.cached(cache_root, f"{task.kind}-{task.name}", key, build)
    meta["data_key"] = key
    rows, examples, features = {}, {}, {}
    for split in SPLITS:
        d = ds[split]
        if split in EVAL_SPLITS.values():
            features[split] = d.select_columns([EXAMPLE_ID, OFFSETS]).to_list()
            examples[split] = ds[split + _EXAMPLES].to_list()
        # offsets and ids are for post-processing only; the model sees ids, masks and span labels
        rows[split] = d.remove_columns([c for c in (EXAMPLE_ID, OFFSETS) if c in d.column_names])
    extras = {"examples": examples, "features": features}
    return Prepared(datasets=rows, collator=pad_collator(run, tokenizer), meta=meta, extras=extras)


# ---------------------------------------------------------------- module


class QuestionAnsweringModule(EncoderModule):
    """Mean of start and end cross-entropy; EM/F1 from post-processed answers at epoch end."""

    def __init__(self, network: nn.Module, run: RunConfig, extras: dict, n_layers: int | None = None):
        super().__init__(network, run, n_layers)
        self.examples = extras["examples"]  # split -> rows with id, context, answers
        self.features = extras["features"]  # split -> rows with example_id, offset_mapping
        self.span_logits = nn.ModuleDict(
            {s: SpanLogits(self.examples[EVAL_SPLITS[s]], self.features[EVAL_SPLITS[s]], run.task) for s in STAGES}
        )
        self.predictions: dict[str, dict[str, str]] = {}
        self.details: dict[str, dict[str, float]] = {}

    def step(self, batch):
        logits = token_logits(self.network, batch).float()
        start, end = logits[..., 0], logits[..., 1]
        mask = batch.get("attention_mask")
        if mask is not None:  # padding never holds an answer
            start = start.masked_fill(mask[:, : start.shape[1]] == 0, -1e4)
            end = end.masked_fill(mask[:, : end.shape[1]] == 0, -1e4)
        loss = (
            nn.functional.cross_entropy(start, batch["start_positions"])
            + nn.functional.cross_entropy(end, batch["end_positions"])
        ) / 2
        return loss, {"start": start, "end": end}

    def update_metrics(self, stage, batch, outputs):
        lengths = batch["attention_mask"].sum(-1)
        self.span_logits[stage].update(batch[FEATURE_INDEX], lengths, start=outputs["start"], end=outputs["end"])

    def compute_metrics(self, stage):
        result = self.span_logits[stage].compute()
        self.span_logits[stage].reset()
        if result is None:
            return {}
        self.predictions[stage], self.details[stage] = result
        return {m: self.details[stage][m] for m in self.run.task.metrics}


class SpanLogits(RowOutputs):
    """The start and end logits of every evaluated window (its real tokens); ``compute``: every question's answer,
    post-processed from all its windows together, and the SQuAD scores (``has_ans_*`` / ``no_ans_*`` for v2)."""

    def __init__(self, examples: list[dict], features: list[dict], task: TaskConfig):
        super().__init__(("start", "end"))
        self.examples = examples  # rows with id, context, answers
        self.features = features  # rows with example_id, offset_mapping
        self.task = task

    def compute(self) -> tuple[dict[str, str], dict[str, float]] | None:
        logits = self.rows()
        if not logits:
            return None
        task = self.task
        features = [self.features[i] for i in logits]
        seen = {f[EXAMPLE_ID] for f in features}
        examples = [e for e in self.examples if str(e[task.qa.id_field]) in seen]
        starts = [s.float().numpy() for s, _ in logits.values()]
        ends = [e.float().numpy() for _, e in logits.values()]
        preds = postprocess_predictions(examples, features, starts, ends, task)
        scores = squad_scores(preds, gold_answers(examples, task), version_2=task.qa.version_2_with_negative)
        return preds, scores


def build(run: RunConfig, prepared: Prepared, tokenizer) -> QuestionAnsweringModule:
    # the QA head reads num_labels
    config = build_config(run.model, vocab_size=len(tokenizer), precision=run.precision, num_labels=2)
    network = build_token_network(run, AutoModelForQuestionAnswering, config, 2)
    return QuestionAnsweringModule(network, run, prepared.extras, n_layers=config.num_hidden_layers)


# ---------------------------------------------------------------- outputs


def predict(module: QuestionAnsweringModule, trainer, datamodule, prepared: Prepared, run_dir: Path) -> dict:
    """``predictions_test.json``: {question id: answer text} ("" = no answer), the official scripts' input."""
    if not trainer.is_global_zero or "test" not in module.predictions:
        return {}
    (run_dir / "predictions_test.json").write_text(json.dumps(module.predictions["test"], indent=1, ensure_ascii=False))
    details = module.details.get("test", {})
    return {k: float(v) for k, v in details.items() if k.startswith(("has_ans_", "no_ans_")) and "total" not in k}


def export(module: QuestionAnsweringModule, tokenizer, out: Path, prepared: Prepared) -> None:
    export_token_model(module, tokenizer, out, AutoModelForQuestionAnswering, "qa_outputs", {"outputs": 2})
    task = module.run.task
    settings = {"max_seq_length": task.max_seq_length} | {k: getattr(task.qa, k) for k in _ANSWER_SETTINGS[1:]}
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))


# what question_answering.json holds: task.max_seq_length, then task.qa.*
_ANSWER_SETTINGS = (
    "max_seq_length",
    "doc_stride",
    "max_query_length",
    "n_best_size",
    "max_answer_length",
    "version_2_with_negative",
    "null_score_diff_threshold",
)


class QuestionAnswerer:
    """Answers questions with an exported folder, as ``pipeline("question-answering")`` did before
    transformers 5 removed that pipeline: the same windows and post-processing as evaluation, the run's own
    settings (``question_answering.json`` in the folder; keyword arguments override them).

    >>> qa = QuestionAnswerer("outputs/.../hf")
    >>> qa(question="Who won?", context="Marie Curie won the Nobel Prize in 1903.")
    {'answer': 'Marie Curie', 'score': 0.93, 'start': 0, 'end': 11}
    """

    def __init__(self, model_dir: str | Path, device: str | None = None, **settings):
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        saved = json.loads((model_dir / SETTINGS_FILE).read_text()) if (model_dir / SETTINGS_FILE).exists() else {}
        unknown = set(settings) - set(_ANSWER_SETTINGS)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; allowed: {list(_ANSWER_SETTINGS)}")
        self.task = settings_task(saved | settings)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)

    @torch.no_grad()
    def __call__(self, question: str | list[str], context: str | list[str]) -> dict | list[dict]:
        single = isinstance(question, str)
        questions = [question] if single else list(question)
        contexts = [context] * len(questions) if isinstance(context, str) else list(context)
        n = len(questions)
        examples = {
            "id": [str(i) for i in range(n)],
            "question": questions,
            "context": contexts,
            "answers": [{"text": [], "answer_start": []}] * n,
        }
        feats = prepare_eval_features(examples, self.tokenizer, self.task)
        inputs = [
            {k: feats[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats}
            for i in range(len(feats["input_ids"]))
        ]
        batch = self.tokenizer.pad(inputs, return_tensors="pt").to(self.device)
        out = self.model(**batch)
        rows = [{EXAMPLE_ID: e, OFFSETS: o} for e, o in zip(feats[EXAMPLE_ID], feats[OFFSETS], strict=True)]
        rows_ex = [{"id": examples["id"][i], "context": contexts[i]} for i in range(n)]
        found = best_answers(
            rows_ex, rows, out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy(), self.task
        )
        result = [
            {"answer": a.text, "score": a.score, "start": a.start, "end": a.end}
            for a in (found[str(i)] for i in range(n))
        ]
        return result[0] if single else result


KIND = KindFunctions(prepare=prepare, build=build, export=export, predict=predict, serving=SERVING)

__all__ = ["KIND", "QuestionAnswerer", "QuestionAnsweringModule"]
