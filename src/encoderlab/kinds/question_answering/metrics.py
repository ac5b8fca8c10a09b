"""Exact match and F1 as the official SQuAD v1.1 and v2.0 evaluation scripts define them.

Written out rather than taken from torchmetrics because v2.0 needs the unanswerable case (an empty gold list
means "no answer", and only the empty prediction is right), which torchmetrics' ``SQuAD`` does not score.
Both scripts normalise the same way: lowercase, drop punctuation, drop the articles a/an/the, squeeze
whitespace. They differ only on empty strings: v2.0 scores an empty prediction against an empty gold as 1.
Scores are in [0, 1] (the scripts print them x 100).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lowercase, remove punctuation, articles and extra whitespace (the official ``normalize_answer``)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str, version_2: bool = True) -> float:
    """Token-overlap F1 of the normalised strings; with ``version_2`` two empty strings agree (score 1)."""
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if version_2 and (not pred_toks or not gold_toks):
        return float(pred_toks == gold_toks)
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_scores(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], version_2: bool = False
) -> dict[str, float]:
    """``exact_match`` and ``f1`` averaged over every reference id (a missing prediction scores 0).

    Each question scores its best match over its gold answers. v2.0: gold answers that normalise to nothing are
    dropped, and a question left without any is unanswerable (gold ""); the result adds ``has_ans_*`` and
    ``no_ans_*`` breakdowns as the official script does.
    """
    em_scores: dict[str, float] = {}
    f1_scores: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for qid, golds in references.items():
        golds = list(golds)
        if version_2:
            golds = [g for g in golds if normalize_answer(g)]
        has_answer[qid] = bool(golds)
        if not golds:
            golds = [""]
        if qid not in predictions:
            em_scores[qid] = f1_scores[qid] = 0.0
            continue
        pred = predictions[qid]
        # v1.1's script has no unanswerable questions; score them as v2.0 would rather than divide by zero
        v2 = version_2 or not has_answer[qid]
        em_scores[qid] = max(exact_match(pred, g) for g in golds)
        f1_scores[qid] = max(f1(pred, g, version_2=v2) for g in golds)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    out = {"exact_match": mean(list(em_scores.values())), "f1": mean(list(f1_scores.values()))}
    if version_2:
        for name, want in (("has_ans", True), ("no_ans", False)):
            ids = [q for q, h in has_answer.items() if h == want]
            out[f"{name}_exact_match"] = mean([em_scores[q] for q in ids])
            out[f"{name}_f1"] = mean([f1_scores[q] for q in ids])
            out[f"{name}_total"] = float(len(ids))
    return out


__all__ = ["exact_match", "f1", "normalize_answer", "squad_scores"]
