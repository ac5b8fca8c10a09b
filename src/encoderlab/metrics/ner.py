"""Entity-level NER scores as papers report them: strict IOB2 with seqeval, plus word accuracy.

Strict mode counts an entity only when its type and both boundaries match, and a span that starts with
I- is not an entity at all (the CoNLL ``conlleval`` script would accept it; seqeval's default mode too).
Scores are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from seqeval.metrics.v1 import precision_recall_fscore_support
from seqeval.scheme import IOB2, Entities
from torchmetrics import Metric

from encoderlab.errors import ConfigError

IGNORE_INDEX = -100
OUTSIDE = "O"


@dataclass
class TypeScores:
    precision: float
    recall: float
    f1: float
    support: int  # gold entities of this type


@dataclass
class NerScores:
    entity_precision: float
    entity_recall: float
    entity_f1: float
    token_accuracy: float
    per_type: dict[str, TypeScores] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The overall scores under the metric names of ``task.metrics``."""
        return {
            "entity_precision": self.entity_precision,
            "entity_recall": self.entity_recall,
            "entity_f1": self.entity_f1,
            "token_accuracy": self.token_accuracy,
        }


def check_iob2(label_names: Sequence[str], key: str = "task.label_names") -> None:
    """Entity scoring reads IOB2 tags; a tag set in another scheme would be scored as garbage."""
    bad = [t for t in label_names if t != OUTSIDE and not (t.startswith(("B-", "I-")) and len(t) > 2)]
    if bad:
        raise ConfigError(key, f"entity-level scoring needs IOB2 tags ('O', 'B-TYPE', 'I-TYPE'); got {bad[:5]}")


def ner_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> NerScores:
    """Micro-averaged entity precision/recall/F1 (strict IOB2), per entity type, and word accuracy."""
    if len(y_true) != len(y_pred) or any(len(t) != len(p) for t, p in zip(y_true, y_pred, strict=False)):
        raise ValueError("y_true and y_pred must hold the same number of sentences and tags")
    true, pred = [list(s) for s in y_true], [list(s) for s in y_pred]
    words = sum(len(s) for s in true)
    correct = sum(t == p for ts, ps in zip(true, pred, strict=True) for t, p in zip(ts, ps, strict=True))
    accuracy = correct / words if words else 0.0
    p, r, f, _ = precision_recall_fscore_support(true, pred, average="micro", scheme=IOB2, zero_division=0)
    types = sorted(
        {e.tag for sent in Entities(true, IOB2).entities for e in sent}
        | {e.tag for sent in Entities(pred, IOB2).entities for e in sent}
    )
    per_type: dict[str, TypeScores] = {}
    if types:
        ps, rs, fs, ss = precision_recall_fscore_support(true, pred, average=None, scheme=IOB2, zero_division=0)
        per_type = {
            t: TypeScores(float(a), float(b), float(c), int(d))
            for t, a, b, c, d in zip(types, ps, rs, fs, ss, strict=True)
        }
    return NerScores(float(p), float(r), float(f), float(accuracy), per_type)


class NerMetric(Metric):
    """Accumulates word-level tag ids over an epoch and scores them with :func:`ner_scores` at the end.

    States are tensors, so the metric syncs across processes. ``update(preds, target)`` takes ``[batch, words]``
    ids; target positions of -100 are padding, a prediction of -1 is a word that truncation cut off (scored as
    'O', i.e. a missed entity if it was in one).
    """

    full_state_update = False

    def __init__(self, label_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        check_iob2(label_names)
        self.label_names = list(label_names)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("lengths", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        mask = target != IGNORE_INDEX
        self.preds.append(preds[mask].long())
        self.target.append(target[mask].long())
        self.lengths.append(mask.sum(dim=1).long())

    def _sequences(self) -> tuple[list[list[str]], list[list[str]]]:
        def cat(x):
            return torch.cat(x) if isinstance(x, list) else x

        if isinstance(self.lengths, list) and not self.lengths:
            return [], []
        preds, target, lengths = cat(self.preds).tolist(), cat(self.target).tolist(), cat(self.lengths).tolist()
        names = self.label_names
        y_true, y_pred, pos = [], [], 0
        for n in lengths:
            y_true.append([names[i] for i in target[pos : pos + n]])
            y_pred.append([OUTSIDE if i < 0 else names[i] for i in preds[pos : pos + n]])
            pos += n
        return y_true, y_pred

    def scores(self) -> NerScores:
        y_true, y_pred = self._sequences()
        return ner_scores(y_true, y_pred)

    def compute(self) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v) for k, v in self.scores().as_dict().items()}


__all__ = ["NerMetric", "NerScores", "TypeScores", "check_iob2", "ner_scores"]
