"""Extractive QA data: SQuAD-format files, window features with doc stride, and span post-processing.

Follows the HF ``run_qa.py``: a context longer than the window becomes several features that overlap by
``doc_stride`` tokens; training labels point at the answer's tokens, or at [CLS] (index 0) when the answer is
outside the window or the question has none (SQuAD v2). Evaluation features keep character offsets of the
context tokens only, so the predicted text is sliced from the original context, never decoded from pieces.

Questions longer than ``task.qa.max_query_length`` tokens are cut to it, as in the original BERT ``run_squad.py``,
so a long question cannot crowd the context out of the window.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import Dataset, DatasetDict

from encoderlab.config.schema import QAConfig, TaskConfig
from encoderlab.data.sources import register_format
from encoderlab.errors import ConfigError, DataError, choices

EXAMPLE_ID = "example_id"
FEATURE_INDEX = "feature_index"
OFFSETS = "offset_mapping"

# ---------------------------------------------------------------- reading


def _features(task: TaskConfig) -> datasets.Features:
    return datasets.Features(
        {
            task.qa.id_field: datasets.Value("string"),
            "title": datasets.Value("string"),
            task.qa.context_field: datasets.Value("string"),
            task.qa.question_field: datasets.Value("string"),
            task.qa.answers_field: {
                "text": datasets.List(datasets.Value("string")),
                "answer_start": datasets.List(datasets.Value("int32")),
            },
        }
    )


def _answers(raw: Any, impossible: bool, where: str) -> dict[str, list]:
    """Answers as the flattened HF schema ({text: [...], answer_start: [...]}) from either SQuAD layout."""
    if impossible or raw is None:
        return {"text": [], "answer_start": []}
    if isinstance(raw, Mapping):
        texts, starts = list(raw.get("text", [])), list(raw.get("answer_start", []))
    else:
        texts = [a["text"] for a in raw]
        starts = [a["answer_start"] for a in raw]
    if len(texts) != len(starts):
        raise DataError(f"{where}: {len(texts)} answer texts but {len(starts)} answer_start values")
    return {"text": [str(t) for t in texts], "answer_start": [int(s) for s in starts]}


def _flatten_nested(doc: Mapping[str, Any], path: Path, task: TaskConfig) -> list[dict[str, Any]]:
    rows = []
    for article in doc["data"]:
        title = str(article.get("title", ""))
        for para in article.get("paragraphs", []):
            context = para["context"]
            for qa in para.get("qas", []):
                qid = str(qa.get("id", ""))
                rows.append(
                    {
                        task.qa.id_field: qid,
                        "title": title,
                        task.qa.context_field: context,
                        task.qa.question_field: qa["question"],
                        task.qa.answers_field: _answers(
                            qa.get("answers"), bool(qa.get("is_impossible")), f"{path}: question id {qid!r}"
                        ),
                    }
                )
    return rows


def _flat_row(obj: Mapping[str, Any], path: Path, task: TaskConfig, where: str) -> dict[str, Any]:
    missing = [
        f"{key}={col!r}"
        for key, col in (
            ("task.qa.id_field", task.qa.id_field),
            ("task.qa.context_field", task.qa.context_field),
            ("task.qa.question_field", task.qa.question_field),
        )
        if col not in obj
    ]
    if missing:
        raise DataError(f"{where}: no field(s) {', '.join(missing)}; the row has {choices(obj)}")
    qid = str(obj[task.qa.id_field])
    return {
        task.qa.id_field: qid,
        "title": str(obj.get("title", "")),
        task.qa.context_field: obj[task.qa.context_field],
        task.qa.question_field: obj[task.qa.question_field],
        task.qa.answers_field: _answers(
            obj.get(task.qa.answers_field), bool(obj.get("is_impossible")), f"{path}: question id {qid!r}"
        ),
    }


def _read_rows(path: Path, task: TaskConfig) -> list[dict[str, Any]]:
    encoding = task.encoding or "utf-8"
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"'{path}' is not valid {encoding} (byte {e.start}); set task.encoding") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None  # one JSON object per line (jsonl)
    if isinstance(doc, Mapping) and "data" in doc:
        return _flatten_nested(doc, path, task)
    if isinstance(doc, list):
        return [_flat_row(o, path, task, f"{path}: item {i}") for i, o in enumerate(doc)]
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{lineno}: not SQuAD JSON ({{'data': [{{'paragraphs': ...}}]}}) nor a JSON row per line: "
                f"{e.msg}"
            ) from None
        if not isinstance(obj, Mapping):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line")
        rows.append(_flat_row(obj, path, task, f"{path}:{lineno}"))
    return rows


def check_answers(rows: Sequence[Mapping[str, Any]], task: TaskConfig, source_name: str) -> None:
    """Each answer's text must sit at its answer_start; ids must be unique (predictions are keyed by id)."""
    seen: set[str] = set()
    for row in rows:
        qid = row[task.qa.id_field]
        if qid in seen:
            raise DataError(f"{source_name}: question id {qid!r} appears twice; ids must be unique")
        seen.add(qid)
        context = row[task.qa.context_field]
        answers = row[task.qa.answers_field]
        for text, start in zip(answers["text"], answers["answer_start"], strict=True):
            found = context[start : start + len(text)]
            if found != text:
                raise DataError(
                    f"{source_name}: question id {qid!r}: answer {text!r} does not occur at answer_start {start} "
                    f"(the context there reads {found!r}); fix answer_start"
                )


@register_format("squad")
def read_squad(path: Path, task: TaskConfig) -> Dataset:
    """SQuAD JSON ({"data": [{"paragraphs": [{"context", "qas"}]}]}), or rows of HF's flattened ``squad`` schema
    (a JSON list or one object per line)."""
    rows = _read_rows(path, task)
    if not rows:
        raise DataError(f"'{path}' holds no questions")
    check_answers(rows, task, f"'{path}'")
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    return Dataset.from_dict(columns, features=_features(task))


def settings_task(settings: dict) -> TaskConfig:
    """A question-answering TaskConfig from an export's ``question_answering.json`` (``max_seq_length`` and the
    ``task.qa`` keys, flat)."""
    values = dict(settings)
    return TaskConfig(
        kind="question_answering", max_seq_length=values.pop("max_seq_length", 384), qa=QAConfig(**values)
    )


def validate_examples(ds: Dataset, task: TaskConfig, source_name: str) -> None:
    """Columns present and answers where they say they are (hub sets and generic json/jsonl files)."""
    for key in ("id_field", "context_field", "question_field", "answers_field"):
        col = getattr(task.qa, key)
        if col not in ds.column_names:
            raise DataError(f"{source_name}: no column {col!r}; set task.qa.{key} to one of {choices(ds.column_names)}")
    cols = (task.qa.id_field, task.qa.context_field, task.qa.answers_field)
    check_answers(ds.select_columns(list(cols)).to_list(), task, source_name)


# ---------------------------------------------------------------- features


def _check_lengths(task: TaskConfig, tokenizer: Any) -> None:
    task.qa.check(task.max_seq_length)  # also in TaskConfig.check; repeated for direct callers
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("model.tokenizer_path", "question answering needs a fast tokenizer (for offsets)")


def _questions(examples: Mapping[str, list], tokenizer: Any, task: TaskConfig) -> list[str]:
    """Left-stripped questions, cut to ``max_query_length`` tokens; a question that leaves no room for a
    context window is an error naming its id."""
    questions = [q.lstrip() for q in examples[task.qa.question_field]]
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    out = []
    for qid, q, ids, offsets in zip(
        examples[task.qa.id_field], questions, enc["input_ids"], enc["offset_mapping"], strict=True
    ):
        n = len(ids)
        if n + specials >= task.max_seq_length:
            raise DataError(
                f"question id {qid!r} is {n} tokens long: with {specials} special tokens no context fits in "
                f"task.max_seq_length={task.max_seq_length}; raise task.max_seq_length or shorten the question"
            )
        if n > task.qa.max_query_length:
            q = q[: offsets[task.qa.max_query_length - 1][1]]
            n = len(tokenizer(q, add_special_tokens=False)["input_ids"])
        if n + specials + task.qa.doc_stride >= task.max_seq_length:
            raise DataError(
                f"question id {qid!r} takes {n} tokens (after cutting to task.qa.max_query_length="
                f"{task.qa.max_query_length}): a window of task.max_seq_length={task.max_seq_length} then holds "
                f"{task.max_seq_length - n - specials} context tokens, not more than task.qa.doc_stride="
                f"{task.qa.doc_stride}; lower task.qa.doc_stride or task.qa.max_query_length, "
                "or raise task.max_seq_length"
            )
        out.append(q)
    return out


def _tokenize(examples: Mapping[str, list], tokenizer: Any, task: TaskConfig):
    pad_on_right = tokenizer.padding_side == "right"
    questions = _questions(examples, tokenizer, task)
    contexts = examples[task.qa.context_field]
    return tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=task.max_seq_length,
        stride=task.qa.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def _span_labels(enc, i: int, answers: Mapping[str, list], context_index: int, cls_index: int) -> tuple[int, int]:
    """Token start/end of the first answer inside feature ``i``; [CLS] when absent (run_qa)."""
    if len(answers["answer_start"]) == 0:
        return cls_index, cls_index
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    offsets = enc["offset_mapping"][i]
    seq_ids = enc.sequence_ids(i)
    first = seq_ids.index(context_index)
    last = len(seq_ids) - 1 - seq_ids[::-1].index(context_index)
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def _cls_index(input_ids: list[int], tokenizer: Any) -> int:
    cls_id = tokenizer.cls_token_id
    return input_ids.index(cls_id) if cls_id is not None and cls_id in input_ids else 0


def prepare_train_features(examples: Mapping[str, list], tokenizer: Any, task: TaskConfig) -> dict[str, list]:
    """Windows with ``start_positions`` / ``end_positions`` (run_qa's ``prepare_train_features``)."""
    enc = _tokenize(examples, tokenizer, task)
    context_index = 1 if tokenizer.padding_side == "right" else 0
    starts, ends = [], []
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        cls_index = _cls_index(enc["input_ids"][i], tokenizer)
        s, e = _span_labels(enc, i, examples[task.qa.answers_field][sample], context_index, cls_index)
        starts.append(s)
        ends.append(e)
    out = {k: v for k, v in enc.items() if k not in (OFFSETS, "overflow_to_sample_mapping")}
    out["start_positions"] = starts
    out["end_positions"] = ends
    return out


def prepare_eval_features(examples: Mapping[str, list], tokenizer: Any, task: TaskConfig) -> dict[str, list]:
    """Windows with ``example_id`` and context-only offsets (None elsewhere), as run_qa's
    ``prepare_validation_features``; span labels are kept too, so a validation loss can be logged."""
    enc = _tokenize(examples, tokenizer, task)
    context_index = 1 if tokenizer.padding_side == "right" else 0
    ids, offsets_out, starts, ends = [], [], [], []
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        cls_index = _cls_index(enc["input_ids"][i], tokenizer)
        s, e = _span_labels(enc, i, examples[task.qa.answers_field][sample], context_index, cls_index)
        starts.append(s)
        ends.append(e)
        ids.append(str(examples[task.qa.id_field][sample]))
        seq_ids = enc.sequence_ids(i)
        offsets_out.append([o if seq_ids[k] == context_index else None for k, o in enumerate(enc[OFFSETS][i])])
    out = {k: v for k, v in enc.items() if k not in (OFFSETS, "overflow_to_sample_mapping")}
    out.update({"start_positions": starts, "end_positions": ends, EXAMPLE_ID: ids, OFFSETS: offsets_out})
    return out


def preprocess_question_answering(raw: DatasetDict, tokenizer: Any, task: TaskConfig) -> DatasetDict:
    """Train split -> training features; other splits -> evaluation features with a ``feature_index`` column
    (the row number, so logits gathered in any order can be put back in place)."""
    _check_lengths(task, tokenizer)
    out = {}
    for split, ds in raw.items():
        validate_examples(ds, task, _describe_source(task, split))
        fn = prepare_train_features if split == "train" else prepare_eval_features
        feats = ds.map(
            fn,
            batched=True,
            remove_columns=ds.column_names,
            fn_kwargs={"tokenizer": tokenizer, "task": task},
            desc=f"tokenizing {split}",
        )
        if split != "train":
            feats = feats.add_column(FEATURE_INDEX, list(range(len(feats))))
        out[split] = feats
    return DatasetDict(out)


def _describe_source(task: TaskConfig, split: str) -> str:
    if task.source == "files" and split in task.files:
        return f"file '{task.files[split]}'"
    return f"{task.source} dataset '{task.dataset or task.files}' ({split} split)"


# ---------------------------------------------------------------- predictions


@dataclass
class Answer:
    """The chosen span of one question: text sliced from the context, its character offsets, and the
    probability of its start and end within the window it came from ("" with start = end = 0: no answer)."""

    text: str
    start: int
    end: int
    score: float
    start_logit: float = 0.0
    end_logit: float = 0.0


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def best_answers(
    examples: Dataset | Sequence[Mapping[str, Any]],
    features: Dataset | Sequence[Mapping[str, Any]],
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    task: TaskConfig,
) -> dict[str, Answer]:
    """The best :class:`Answer` per question id from per-feature logits (run_qa's ``postprocess_qa_predictions``).

    For each example, the ``n_best_size`` best starts and ends of all its features form candidate spans (inside
    the context, end >= start, at most ``max_answer_length`` tokens); the best-scoring one wins. With
    ``version_2_with_negative`` the answer is "" when the lowest [CLS] score beats the best span by more than
    ``null_score_diff_threshold``. ``start_logits[i]`` belongs to ``features[i]``; padding beyond the
    feature's length is ignored.
    """
    by_example: dict[str, list[int]] = collections.defaultdict(list)
    feature_rows = features.to_list() if isinstance(features, Dataset) else list(features)
    for i, feat in enumerate(feature_rows):
        by_example[str(feat[EXAMPLE_ID])].append(i)
    example_rows = (
        examples.select_columns([task.qa.id_field, task.qa.context_field]).to_list()
        if isinstance(examples, Dataset)
        else examples
    )
    n_best = task.qa.n_best_size
    answers: dict[str, Answer] = {}
    for example in example_rows:
        qid = str(example[task.qa.id_field])
        context = example[task.qa.context_field]
        null: Answer | None = None
        best: Answer | None = None
        for fi in by_example.get(qid, []):
            offsets = feature_rows[fi][OFFSETS]
            s_logits = np.asarray(start_logits[fi], dtype=np.float64)[: len(offsets)]
            e_logits = np.asarray(end_logits[fi], dtype=np.float64)[: len(offsets)]
            s_logp, e_logp = _log_softmax(s_logits), _log_softmax(e_logits)
            null_score = float(s_logits[0] + e_logits[0])
            if null is None or null.start_logit + null.end_logit > null_score:
                null = Answer("", 0, 0, float(np.exp(s_logp[0] + e_logp[0])), float(s_logits[0]), float(e_logits[0]))
            starts = np.argsort(s_logits)[-1 : -n_best - 1 : -1]
            ends = np.argsort(e_logits)[-1 : -n_best - 1 : -1]
            for s in starts:
                if offsets[s] is None:
                    continue
                for e in ends:
                    if offsets[e] is None or e < s or e - s + 1 > task.qa.max_answer_length:
                        continue
                    if best is None or s_logits[s] + e_logits[e] > best.start_logit + best.end_logit:
                        a, b = offsets[s][0], offsets[e][1]
                        prob = float(np.exp(s_logp[s] + e_logp[e]))
                        best = Answer(context[a:b], a, b, prob, float(s_logits[s]), float(e_logits[e]))
        if task.qa.version_2_with_negative and null is not None:
            null_diff = null.start_logit + null.end_logit - (best.start_logit + best.end_logit if best else -np.inf)
            if best is None or null_diff > task.qa.null_score_diff_threshold:
                answers[qid] = null
                continue
        answers[qid] = best if best is not None else Answer("", 0, 0, 0.0)
    return answers


def postprocess_predictions(
    examples: Dataset | Sequence[Mapping[str, Any]],
    features: Dataset | Sequence[Mapping[str, Any]],
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    task: TaskConfig,
) -> dict[str, str]:
    """The answer text per question id (see :func:`best_answers`); "" means no answer."""
    return {q: a.text for q, a in best_answers(examples, features, start_logits, end_logits, task).items()}


def gold_answers(examples: Dataset | Sequence[Mapping[str, Any]], task: TaskConfig) -> dict[str, list[str]]:
    """Gold answer texts per id (an empty list: unanswerable), as the metric wants them."""
    rows = (
        examples.select_columns([task.qa.id_field, task.qa.answers_field]).to_list()
        if isinstance(examples, Dataset)
        else examples
    )
    return {str(r[task.qa.id_field]): list(r[task.qa.answers_field]["text"]) for r in rows}


__all__ = [
    "Answer",
    "best_answers",
    "check_answers",
    "gold_answers",
    "postprocess_predictions",
    "prepare_eval_features",
    "prepare_train_features",
    "preprocess_question_answering",
    "read_squad",
    "validate_examples",
]
