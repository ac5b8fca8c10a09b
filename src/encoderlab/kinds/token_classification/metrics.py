"""Entity-level NER scores as papers report them: strict IOB2 with seqeval, plus word accuracy.

Strict mode counts an entity only when its type and both boundaries match, and a span that starts with
I- is not an entity at all (the CoNLL ``conlleval`` script would accept it; seqeval's default mode too).
Scores are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from seqeval.metrics.v1 import precision_recall_fscore_support
from seqeval.scheme import IOB2, Entities

from encoderlab.errors import ConfigError

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


__all__ = ["NerScores", "TypeScores", "check_iob2", "ner_scores"]
