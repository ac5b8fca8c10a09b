"""Entity-level NER scores: strict IOB2 seqeval on a hand-computed example, and the epoch metric."""

from __future__ import annotations

import pytest
import torch

from encoderlab.errors import ConfigError
from encoderlab.metrics.ner import NerMetric, check_iob2, ner_scores

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
# gold entities: PER(0:0-1) LOC(0:3) ORG(1:0-2) PER(1:4)
Y_TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"]]
# predicted: PER(0:0-1) right; ORG(0:3) wrong type; ORG(1:0-1) wrong boundary; a lone I-PER is no entity (strict)
Y_PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "O", "O", "I-PER"]]


def test_strict_entity_scores_equal_the_hand_computed_values():
    s = ner_scores(Y_TRUE, Y_PRED)
    # 3 predicted entities, 4 gold, 1 correct
    assert s.entity_precision == pytest.approx(1 / 3)
    assert s.entity_recall == pytest.approx(1 / 4)
    assert s.entity_f1 == pytest.approx(2 / 7)  # 2PR/(P+R) = (1/6)/(7/12); lenient conlleval would give 0.5
    assert s.token_accuracy == pytest.approx(6 / 9)
    assert set(s.per_type) == {"PER", "ORG", "LOC"}
    per = s.per_type["PER"]
    assert (per.precision, per.recall, per.support) == (1.0, 0.5, 2)
    assert per.f1 == pytest.approx(2 / 3)
    assert s.per_type["ORG"].f1 == 0.0 and s.per_type["ORG"].support == 1


def test_perfect_and_empty_predictions():
    assert ner_scores(Y_TRUE, Y_TRUE).entity_f1 == 1.0
    none = ner_scores(Y_TRUE, [["O"] * len(s) for s in Y_TRUE])
    assert none.entity_f1 == 0.0 and none.entity_precision == 0.0
    assert ner_scores([["O", "O"]], [["O", "O"]]).per_type == {}


def test_epoch_metric_matches_the_function_and_scores_cut_words_as_missed():
    ids = {t: i for i, t in enumerate(TAGS)}
    m = NerMetric(TAGS)
    # two batches; padding is -100 in the target; -1 is a word truncation cut off
    t1 = torch.tensor([[ids[t] for t in Y_TRUE[0]] + [-100]])
    p1 = torch.tensor([[ids[t] for t in Y_PRED[0]] + [0]])
    t2 = torch.tensor([[ids[t] for t in Y_TRUE[1]]])
    p2 = torch.tensor([[ids[t] for t in Y_PRED[1][:4]] + [-1]])
    m.update(p1, t1)
    m.update(p2, t2)
    out = m.compute()
    want = ner_scores(Y_TRUE, [Y_PRED[0], Y_PRED[1][:4] + ["O"]])
    assert out["entity_f1"].item() == pytest.approx(want.entity_f1)
    assert out["token_accuracy"].item() == pytest.approx(want.token_accuracy)
    assert set(out) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}
    m.reset()
    m.update(t2.clone(), t2)
    assert m.compute()["entity_f1"].item() == 1.0


def test_non_iob2_tags_are_refused():
    with pytest.raises(ConfigError, match="task.label_names"):
        check_iob2(["O", "S-PER", "E-PER"])
