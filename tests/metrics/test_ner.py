"""Entity-level NER scores: strict IOB2 seqeval on a hand-computed example."""

from __future__ import annotations

import pytest

from encoderlab.errors import ConfigError
from encoderlab.kinds.token_classification.metrics import check_iob2, ner_scores

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


def test_non_iob2_tags_are_refused():
    with pytest.raises(ConfigError, match="task.label_names"):
        check_iob2(["O", "S-PER", "E-PER"])
