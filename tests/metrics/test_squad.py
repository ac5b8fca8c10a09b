"""SQuAD EM/F1 against the official v1.1 / v2.0 definitions, on hand-computed predictions."""

from __future__ import annotations

import pytest

from encoderlab.kinds.question_answering.metrics import exact_match, f1, normalize_answer, squad_scores

REFS = {
    "q1": ["Eiffel tower"],
    "q2": ["Paris"],
    "q3": ["Broncos", "Denver Broncos ."],
    "q4": ["1903"],
}
PREDS = {"q1": "The Eiffel Tower!", "q2": "in Paris, France", "q3": "Denver Broncos"}  # q4 unanswered


def test_normalization_is_the_official_one():
    assert normalize_answer("  The  Eiffel-Tower, an icon! ") == "eiffeltower icon"
    assert normalize_answer("A theater") == "theater"  # whole-word articles only


def test_v1_scores_equal_hand_computed_values():
    assert exact_match("The Eiffel Tower!", "Eiffel tower") == 1.0
    assert f1("in Paris, France", "Paris") == pytest.approx(0.5)  # P = 1/3, R = 1
    s = squad_scores(PREDS, REFS)
    # EM: 1, 0, 1 (best gold), 0 (missing) ; F1: 1, 0.5, 1, 0
    assert s == {"exact_match": pytest.approx(0.5), "f1": pytest.approx(0.625)}


def test_v1_agrees_with_torchmetrics_squad():
    from torchmetrics.functional.text.squad import squad

    preds = [{"id": q, "prediction_text": PREDS[q]} for q in PREDS]
    target = [{"id": q, "answers": {"text": REFS[q], "answer_start": [0] * len(REFS[q])}} for q in PREDS]
    tm = squad(preds, target)
    ours = squad_scores(PREDS, {q: REFS[q] for q in PREDS})
    assert ours["exact_match"] * 100 == pytest.approx(tm["exact_match"].item())
    assert ours["f1"] * 100 == pytest.approx(tm["f1"].item())


def test_v2_unanswerable_questions():
    refs = {"a": [], "b": ["1903"], "c": []}
    preds = {"a": "", "b": "in 1903", "c": "1903"}
    s = squad_scores(preds, refs, version_2=True)
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert s["has_ans_f1"] == pytest.approx(2 / 3) and s["has_ans_total"] == 1
    assert s["no_ans_exact_match"] == pytest.approx(0.5) and s["no_ans_total"] == 2


def test_v1_and_v2_differ_only_on_empty_strings():
    assert f1("", "the", version_2=False) == 0.0  # v1.1: no common token, no credit
    assert f1("", "the", version_2=True) == 1.0  # v2.0: both empty after normalising
    assert f1("a cat", "the cat", version_2=False) == f1("a cat", "the cat", version_2=True) == 1.0
