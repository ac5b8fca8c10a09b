"""Rows of text in, predictions out: reading input files, batching, post-processing per kind, writing.

Batches are length-sorted (least padding) and the results go back to input order. Post-processing reuses the
training code: word-level tags and entities as NER is scored, answer spans as QA is evaluated.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoderlab.data.collate import PadCollator, sorted_batches
from encoderlab.deploy.served import Served, ServeError
from encoderlab.errors import DataError

INPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".txt": "txt"}
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
PROGRESS_MIN_ROWS = 1000  # a progress bar for inputs at least this long
_WORD = re.compile(r"\S+")


# ---------------------------------------------------------------- input


def _decode(raw: bytes, name: str, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"input '{name}' is not valid {encoding} (byte {e.start}, line {line}); pass its encoding, "
            "e.g. --encoding latin-1"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (--encoding)") from None
    return text.lstrip("\ufeff")


def input_format(path: str, text: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":  # stdin: JSON lines when it starts like an object, else one text per line
        return "jsonl" if text.lstrip().startswith("{") else "txt"
    found = INPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise DataError(
            f"cannot tell the format of '{path}' from its extension; pass --format "
            f"({', '.join(sorted(set(INPUT_FORMATS.values())))})"
        )
    return found


def read_input(path: str, fmt: str | None = None, encoding: str = "utf-8") -> list[dict]:
    """Rows (dicts) of a csv / tsv / jsonl / json / txt file, or of stdin (``-``)."""
    name = "stdin" if path == "-" else path
    if path == "-":
        raw = sys.stdin.buffer.read()
    else:
        p = Path(os.path.expanduser(path))
        if not p.is_file():
            raise DataError(
                f"input file '{p}' does not exist (--input)"
                if not p.exists()
                else f"input '{p}' is a folder, not a file (--input)"
            )
        raw = p.read_bytes()
    text = _decode(raw, name, encoding)
    if not text.strip():
        raise DataError(f"input '{name}' is empty: there is nothing to predict (--input)")
    fmt = input_format(path, text, fmt)
    if fmt in ("csv", "tsv"):
        import pandas as pd

        try:
            df = pd.read_csv(io.StringIO(text), sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False)
        except pd.errors.ParserError as e:
            raise DataError(f"cannot parse '{name}' as {fmt}: {str(e).strip()} (--format)") from None
        df.columns = [str(c).strip() for c in df.columns]
        rows = df.to_dict("records")
    elif fmt == "jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"'{name}' line {i} is not valid JSON: {e.msg} (--format)") from None
            rows.append(obj if isinstance(obj, dict) else {"text": obj})
    elif fmt == "json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"'{name}' is not valid JSON (line {e.lineno}): {e.msg} (--format)") from None
        if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
            raise DataError(f"'{name}' must hold a JSON list of objects, one per row (or use --format jsonl)")
        rows = obj
    elif fmt == "txt":
        rows = [{"text": line} for line in text.splitlines() if line.strip()]
    else:
        raise DataError(f"unknown input format {fmt!r} (--format); allowed: csv, tsv, jsonl, json, txt")
    if not rows:
        raise DataError(f"input '{name}' has no rows: there is nothing to predict (--input)")
    return rows


# ---------------------------------------------------------------- columns


@dataclass
class Columns:
    text: str | None = None
    text_pair: str | None = None
    question: str | None = None
    context: str | None = None


def _columns_of(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows[:100]:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _pick(rows: list[dict], given: str | None, candidates: Sequence[str | None], option: str) -> str:
    cols = _columns_of(rows)
    if given is not None:
        if given not in cols:
            raise DataError(f"column '{given}' ({option}) is not in the input; columns found: {', '.join(cols)}")
        return given
    for c in candidates:
        if c and c in cols:
            return c
    wanted = " or ".join(repr(c) for c in dict.fromkeys(c for c in candidates if c))
    raise DataError(
        f"the input has no column {wanted}; name the column to read with {option} (columns found: {', '.join(cols)})"
    )


def _task_field(task: dict, section: str, key: str):
    """``task.<section>.<key>`` of a saved run config (runs saved before the per-kind sections: ``task.<key>``)."""
    return (task.get(section) or {}).get(key, task.get(key))


def resolve_columns(served: Served, rows: list[dict], given: Columns) -> Columns:
    """The columns to read: as given, else the run's own field names, else the usual names."""
    task = served.task_config
    if served.kind == "question_answering":
        for opt, val in (("--text-column", given.text), ("--text-pair-column", given.text_pair)):
            if val is not None:
                raise ServeError(
                    f"{opt} does not apply: this is a question answering model; "
                    "use --question-column and --context-column"
                )
        return Columns(
            question=_pick(
                rows, given.question, [_task_field(task, "qa", "question_field"), "question"], "--question-column"
            ),
            context=_pick(
                rows, given.context, [_task_field(task, "qa", "context_field"), "context"], "--context-column"
            ),
        )
    for opt, val in (("--question-column", given.question), ("--context-column", given.context)):
        if val is not None:
            raise ServeError(
                f"{opt} does not apply: this model is {served.kind.replace('_', ' ')}, not question answering; "
                "use --text-column"
            )
    if served.kind == "token_classification":
        if given.text_pair is not None:
            raise ServeError("--text-pair-column does not apply to a token classification (NER) model")
        return Columns(
            text=_pick(rows, given.text, [_task_field(task, "ner", "tokens_field"), "text", "tokens"], "--text-column")
        )
    fields = list(task.get("text_fields") or [])
    text = _pick(rows, given.text, [fields[0] if fields else None, "text", "sentence"], "--text-column")
    pair = None
    if given.text_pair is not None or len(fields) > 1:
        pair = _pick(rows, given.text_pair, [fields[1] if len(fields) > 1 else None], "--text-pair-column")
    return Columns(text=text, text_pair=pair)


def _value(row: dict, col: str, i: int, option: str) -> Any:
    v = row.get(col)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        raise DataError(f"row {i + 1}: no value in column '{col}' ({option}); fill it or drop the row")
    return v


# ---------------------------------------------------------------- running the model


def run_features(
    served: Served, features: list[dict], batch_size: int, token_level: bool, progress: bool
) -> list[np.ndarray]:
    """Logits per feature, in input order: ``[labels]`` per sequence, ``[its tokens, labels]`` per token."""
    lengths = [len(f["input_ids"]) for f in features]
    collate = PadCollator(served.tokenizer.pad_token_id or 0)
    batches = sorted_batches(lengths, batch_size)
    out: list[np.ndarray] = [np.empty(0)] * len(features)
    bar = None
    if progress and len(features) >= PROGRESS_MIN_ROWS:
        from tqdm import tqdm

        bar = tqdm(total=len(features), unit="rows", desc="predicting", file=sys.stderr)
    for idx in batches:
        batch = collate([{k: features[i][k] for k in served.input_names} for i in idx])
        logits = served.backend({k: v.numpy() for k, v in batch.items()})
        for j, i in enumerate(idx):
            out[i] = logits[j, : lengths[i]] if token_level else logits[j]
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _encode(served: Served, *texts: list, **kw) -> tuple[list[dict], Any]:
    enc = served.tokenizer(*texts, truncation=True, max_length=served.max_length, **kw)
    return [{k: enc[k][i] for k in served.input_names} for i in range(len(enc["input_ids"]))], enc


def predict_sequences(served: Served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[dict]:
    texts = [str(_value(r, cols.text, i, "--text-column")) for i, r in enumerate(rows)]
    args = [texts]
    if cols.text_pair:
        args.append([str(_value(r, cols.text_pair, i, "--text-pair-column")) for i, r in enumerate(rows)])
    task = _long_text(served)
    if task is None:
        feats, _ = _encode(served, *args)
        logits = run_features(served, feats, batch_size, False, progress)
    else:  # the run's task.long_text: the tokens it was trained and tested on, windows pooled as it pooled them
        import torch

        from encoderlab.kinds.sequence.long_text import pool_chunks, serving_features

        feats, owner = serving_features(served.tokenizer, texts, {"max_seq_length": served.max_length} | task)
        feats = [{k: f[k] for k in served.input_names} for f in feats]
        logits = run_features(served, feats, batch_size, False, progress)
        if owner is not None:
            pooled = pool_chunks(torch.as_tensor(np.stack(logits)), torch.as_tensor(owner), len(texts), task["pool"])
            logits = list(pooled.numpy())
    if served.kind == "sequence_regression":
        return [{"value": float(x[0])} for x in logits]
    names = served.label_names or [str(i) for i in range(len(logits[0]))]
    out = []
    for x in logits:
        p = softmax(x.astype(np.float64))
        k = int(p.argmax())
        out.append(
            {"label": names[k], "score": float(p[k]), "probabilities": dict(zip(names, map(float, p), strict=True))}
        )
    return out


def _long_text(served: Served) -> dict | None:
    """The run's ``task.long_text`` settings, unless it is ``head`` (the tokenizer's own truncation): the export's
    own (``long_text.json`` in hf/, ``long_text`` in an ONNX folder's deploy.json), else the run's config."""
    from encoderlab.deploy.served import DEPLOY_FILE, read_run_config
    from encoderlab.kinds.sequence.long_text import read_serving_settings

    folder = served.model_dir
    task = read_serving_settings(folder) if folder is not None else None
    if task is None and folder is not None and (folder / DEPLOY_FILE).is_file():
        task = json.loads((folder / DEPLOY_FILE).read_text()).get("long_text")
    if task is None:
        task = read_run_config(served.run_dir).get("task", {}) if served.run_dir is not None else {}
    if task.get("long_text", "head") == "head":
        return None
    return task | {"pool": task.get("chunk_pooling") or "mean"}


def _words(value: Any) -> tuple[str, list[str], list[tuple[int, int]]]:
    """(text, words, character span of each word): a string splits on whitespace; a list is words already
    (joined by single spaces, which the offsets then refer to)."""
    if isinstance(value, (list, tuple)):
        words = [str(w) for w in value]
        spans, pos = [], 0
        for w in words:
            spans.append((pos, pos + len(w)))
            pos += len(w) + 1
        return " ".join(words), words, spans
    text = str(value)
    found = list(_WORD.finditer(text))
    return text, [m.group() for m in found], [m.span() for m in found]


def predict_entities(served: Served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[dict]:
    from encoderlab.kinds.token_classification.data import entities, to_tags, word_predictions

    parsed = [_words(_value(r, cols.text, i, "--text-column")) for i, r in enumerate(rows)]
    todo = [i for i, (_, w, _) in enumerate(parsed) if w]
    names = served.label_names or []
    out = [{"entities": [], "tags": []} for _ in rows]
    if not todo:
        return out
    feats, enc = _encode(served, [parsed[i][1] for i in todo], is_split_into_words=True)
    logits = run_features(served, feats, batch_size, True, progress)
    for j, i in enumerate(todo):
        text, words, spans = parsed[i]
        probs = softmax(logits[j].astype(np.float64))
        word_ids = [-1 if w is None else w for w in enc.word_ids(batch_index=j)]
        ids = word_predictions(probs.argmax(-1).tolist(), word_ids, len(words))
        word_scores = _word_scores(probs, word_ids, len(words))
        tags = to_tags(ids, names)
        ents = []
        for e in entities(words, tags):
            a, b = spans[e["start"]][0], spans[e["end"] - 1][1]
            score = float(np.mean(word_scores[e["start"] : e["end"]]))
            ents.append(
                {
                    "type": e["type"],
                    "text": text[a:b],
                    "start": a,
                    "end": b,
                    "score": score,
                    "words": [e["start"], e["end"]],
                }
            )
        out[i] = {"entities": ents, "tags": tags}
    return out


def _word_scores(probs: np.ndarray, word_ids: list[int], n: int) -> list[float]:
    """The probability of each word's predicted tag, read at its first piece (as the tag itself is)."""
    scores = [0.0] * n
    prev = -1
    for t, w in enumerate(word_ids):
        if 0 <= w < n and w != prev:
            scores[w] = float(probs[t].max())
        prev = w
    return scores


def predict_answers(served: Served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[dict]:
    from encoderlab.kinds.question_answering.data import (
        EXAMPLE_ID,
        OFFSETS,
        best_answers,
        prepare_eval_features,
        settings_task,
    )

    task = settings_task({"max_seq_length": served.max_length} | served.qa_settings)
    questions = [str(_value(r, cols.question, i, "--question-column")) for i, r in enumerate(rows)]
    contexts = [str(_value(r, cols.context, i, "--context-column")) for i, r in enumerate(rows)]
    n = len(rows)
    examples = {
        task.qa.id_field: [str(i) for i in range(n)],
        task.qa.question_field: questions,
        task.qa.context_field: contexts,
        task.qa.answers_field: [{"text": [], "answer_start": []}] * n,
    }
    enc = prepare_eval_features(examples, served.tokenizer, task)
    feats = [{k: enc[k][i] for k in served.input_names} for i in range(len(enc["input_ids"]))]
    logits = run_features(served, feats, batch_size, True, progress)
    meta = [{EXAMPLE_ID: e, OFFSETS: o} for e, o in zip(enc[EXAMPLE_ID], enc[OFFSETS], strict=True)]
    ex_rows = [{task.qa.id_field: str(i), task.qa.context_field: contexts[i]} for i in range(n)]
    found = best_answers(ex_rows, meta, [x[:, 0] for x in logits], [x[:, 1] for x in logits], task)
    return [
        {"answer": a.text, "score": a.score, "start": a.start, "end": a.end} for a in (found[str(i)] for i in range(n))
    ]


def predict_rows(
    served: Served, rows: list[dict], columns: Columns | None = None, batch_size: int = 32, progress: bool = True
) -> list[dict]:
    """One prediction per row, in input order."""
    cols = resolve_columns(served, rows, columns or Columns())
    fn = {
        "sequence_classification": predict_sequences,
        "sequence_regression": predict_sequences,
        "token_classification": predict_entities,
        "question_answering": predict_answers,
    }[served.kind]
    return fn(served, rows, cols, batch_size, progress)


# ---------------------------------------------------------------- output


def _flat(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k == "probabilities":
            out |= {f"p_{name}": p for name, p in v.items()}
        elif isinstance(v, (list, dict)):
            out[k] = json.dumps(v, ensure_ascii=False)
        else:
            out[k] = v
    return out


def render(results: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    flat = [_flat(r) for r in results]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]) if flat else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def output_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "jsonl"
    found = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise DataError(f"cannot tell the output format of '{path}'; name it .jsonl or .csv (or pass --output-format)")
    return found


def write_output(path: str, text: str) -> None:
    """stdout for ``-``; else a temporary file beside the target, renamed over it when complete."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(os.path.expanduser(path))
    if not target.parent.is_dir():
        raise DataError(f"output folder '{target.parent}' does not exist (--output)")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
