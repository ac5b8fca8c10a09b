"""What a token classification (NER) export serves: a text (split on whitespace) or a list of words per row in, its
word-level tags and entities out, decoded as the run's NER scoring decodes them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from encoderlab.deploy.base import Columns, ServeError, encode, pick, refuse, run_features, softmax, task_field, value
from encoderlab.kinds.base import Serving

_WORD = re.compile(r"\S+")


class TokenServing(Serving):
    name = "token_classification"
    pipeline_tag = "token-classification"
    auto_model = "AutoModelForTokenClassification"
    token_level = True

    def recognizes(self, architecture: str, config: dict) -> bool:
        return architecture.endswith("ForTokenClassification")

    def recognizes_feature(self, desc: dict, folder: Path) -> bool:
        from encoderlab.kinds.question_answering.serving import SETTINGS_FILE

        return desc.get("pooling") is None and not (folder / SETTINGS_FILE).is_file()

    def columns(self, served, rows: list[dict], given: Columns) -> Columns:
        why = "this model is token classification, not question answering; use --text-column"
        refuse(given, {"question": "--question-column", "context": "--context-column"}, why)
        if given.text_pair is not None:
            raise ServeError("--text-pair-column does not apply to a token classification (NER) model")
        fields = [task_field(served.task_config, "ner", "tokens_field"), "text", "tokens"]
        return Columns(text=pick(rows, given.text, fields, "--text-column"))

    def predict(self, served, rows, cols, batch_size, progress):
        return predict_entities(served, rows, cols, batch_size, progress)


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


def predict_entities(served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[dict]:
    from encoderlab.kinds.token_classification.data import entities, to_tags, word_predictions

    parsed = [_words(value(r, cols.text, i, "--text-column")) for i, r in enumerate(rows)]
    todo = [i for i, (_, w, _) in enumerate(parsed) if w]
    names = served.label_names or []
    out = [{"entities": [], "tags": []} for _ in rows]
    if not todo:
        return out
    feats, enc = encode(served, [parsed[i][1] for i in todo], is_split_into_words=True)
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


SERVING = TokenServing()
