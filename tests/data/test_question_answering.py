"""Extractive QA data: SQuAD files, doc-stride windows with span labels, post-processing back to text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from omegaconf import OmegaConf

from encoderlab.config.schema import QAConfig, TaskConfig
from encoderlab.data.sources import load_raw, read_file
from encoderlab.errors import ConfigError, DataError
from encoderlab.kinds.question_answering import data as qa

ROOT = Path(__file__).resolve().parents[2]
SQUAD = ROOT / "tests" / "fixtures" / "squad_small.json"
SQUAD_V2 = ROOT / "tests" / "fixtures" / "squad_v2_small.json"


def squad_task(name: str = "squad_v1", **overrides) -> TaskConfig:
    """The shipped task file pointed at local files, with a small window so the long context overflows."""
    over = {"source": "files", "data_files": {"train": str(SQUAD)}, "max_seq_length": 64, "qa": {"doc_stride": 16}}
    for k, v in overrides.items():  # task.qa.* keys by their own name
        if k in QAConfig.__dataclass_fields__:
            over["qa"][k] = v
        else:
            over[k] = v
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(ROOT / "conf" / "task" / f"{name}.yaml"))
    task = OmegaConf.to_object(OmegaConf.merge(cfg, over))
    task.check()
    return task


def features_for(tokenizer, task, split="validation", path=SQUAD):
    examples = read_file(path, task)
    return examples, qa.preprocess_question_answering(DatasetDict({split: examples}), tokenizer, task)[split]


def test_reads_nested_squad_json():
    ds = read_file(SQUAD, squad_task())
    assert len(ds) == 6
    row = ds.filter(lambda r: r["id"] == "rhine-1")[0]
    assert row["answers"]["text"] == ["the Waal", "Waal"]
    assert row["context"][row["answers"]["answer_start"][0] :].startswith("the Waal")
    assert row["title"] == "Rhine"


def test_v2_unanswerable_questions_have_no_answers():
    ds = read_file(SQUAD_V2, squad_task("squad_v2", data_files={"train": str(SQUAD_V2)}))
    by_id = {r["id"]: r for r in ds}
    assert by_id["curie-x"]["answers"] == {"text": [], "answer_start": []}  # plausible_answers are not answers
    assert by_id["curie-1"]["answers"]["text"] == ["1903"]


def test_reads_flattened_rows_as_json_lines(tmp_path):
    ctx = "Marie Curie won the Nobel Prize in 1903."
    rows = [
        {
            "id": "a",
            "title": "t",
            "context": ctx,
            "question": "When?",
            "answers": {"text": ["1903"], "answer_start": [35]},
        },
        {"id": "b", "context": ctx, "question": "Who?", "answers": [{"text": "Marie Curie", "answer_start": 0}]},
        {"id": "c", "context": ctx, "question": "Why?", "answers": {"text": [], "answer_start": []}},
    ]
    f = tmp_path / "dev.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = read_file(f, squad_task(data_files={"train": str(f)}))
    assert ds["id"] == ["a", "b", "c"]
    assert ds[1]["answers"] == {"text": ["Marie Curie"], "answer_start": [0]}
    assert ds[2]["answers"]["text"] == []


def test_answer_not_at_its_start_names_file_and_id(tmp_path):
    doc = json.loads(SQUAD.read_text())
    doc["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 3
    f = tmp_path / "shifted.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(DataError) as e:
        read_file(f, squad_task(data_files={"train": str(f)}))
    assert str(f) in str(e.value) and "'curie-1'" in str(e.value) and "answer_start" in str(e.value)


def test_question_longer_than_the_window_names_id_and_key(tokenizer, tmp_path):
    doc = json.loads(SQUAD.read_text())
    doc["data"][2]["paragraphs"][0]["qas"][0]["question"] = "Which continent " * 40 + "?"
    f = tmp_path / "long_q.json"
    f.write_text(json.dumps(doc))
    task = squad_task(data_files={"train": str(f)}, max_query_length=200)
    with pytest.raises(DataError) as e:
        features_for(tokenizer, task, path=f)
    assert "'amazon-1'" in str(e.value) and "task.max_seq_length=64" in str(e.value)


def test_long_question_cut_to_max_query_length_or_named_when_no_stride_fits(tokenizer, tmp_path):
    doc = json.loads(SQUAD.read_text())
    doc["data"][2]["paragraphs"][0]["qas"][0]["question"] = "On which of the seven continents " * 3 + "is it?"
    f = tmp_path / "q.json"
    f.write_text(json.dumps(doc))
    # cut to 8 tokens, the window keeps room for the stride: fine
    _, feats = features_for(tokenizer, squad_task(data_files={"train": str(f)}, max_query_length=8), path=f)
    assert len(feats) > 6
    # not cut (40 allowed) and only 64 - 3 - 22 = 39 context tokens, fewer than a stride of 40 needs
    with pytest.raises(DataError) as e:
        features_for(tokenizer, squad_task(data_files={"train": str(f)}, doc_stride=40, max_query_length=40), path=f)
    assert (
        "'amazon-1'" in str(e.value)
        and "task.qa.doc_stride" in str(e.value)
        and "task.qa.max_query_length" in str(e.value)
    )


def test_doc_stride_not_below_max_seq_length_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        squad_task(doc_stride=64)
    assert e.value.key == "task.qa.doc_stride" and "task.max_seq_length" in str(e.value)


def test_long_context_gives_several_windows_with_labels_in_the_right_one(tokenizer):
    task = squad_task()
    examples = read_file(SQUAD, task)
    feats = qa.preprocess_question_answering(DatasetDict({"train": examples}), tokenizer, task)["train"]
    rhine = [f for f in feats if tokenizer.decode(f["input_ids"]).startswith("[CLS] what is the largest branch")]
    assert len(rhine) > 3  # 263 context tokens in windows of ~47 with overlap
    assert all(len(f["input_ids"]) <= 64 for f in feats)
    with_answer = [f for f in rhine if f["start_positions"] != 0]
    assert rhine[0]["start_positions"] == rhine[0]["end_positions"] == 0  # answer is near the end: [CLS]
    assert with_answer and all(
        tokenizer.decode(f["input_ids"][f["start_positions"] : f["end_positions"] + 1]) == "the waal"
        for f in with_answer
    )


def _logits_for(feats, pick):
    """Low logits everywhere, a decoy span in every feature, the gold span (much higher) where ``pick`` says."""
    starts, ends = [], []
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        s, e = np.full(n + 5, -5.0), np.full(n + 5, -5.0)  # longer than the feature: padding is ignored
        ctx = [k for k, o in enumerate(f["offset_mapping"]) if o is not None]
        s[ctx[0]] = e[ctx[1]] = 1.0  # decoy
        if pick(i, f):
            s[f["start_positions"]] = e[f["end_positions"]] = 8.0
        starts.append(s)
        ends.append(e)
    return starts, ends


def test_postprocessing_recovers_the_answer_from_the_right_window(tokenizer):
    task = squad_task()
    examples, feats = features_for(tokenizer, task)
    rows = feats.to_list()
    assert sum(r["example_id"] == "rhine-1" for r in rows) > 3
    starts, ends = _logits_for(rows, lambda i, f: f["start_positions"] != 0)
    preds = qa.postprocess_predictions(examples, feats, starts, ends, task)
    assert preds["rhine-1"] == "the Waal"  # sliced from the original context: case kept
    assert preds["rhine-2"] == "Swiss canton of Graubunden"
    assert preds["curie-1"] == "1903" and preds["amazon-1"] == "South America"
    gold = qa.gold_answers(examples, task)
    assert all(preds[q] in gold[q] for q in gold)


def test_postprocessing_respects_max_answer_length(tokenizer):
    task = squad_task(max_answer_length=1)
    examples, feats = features_for(tokenizer, task)
    rows = feats.to_list()
    starts, ends = _logits_for(rows, lambda i, f: f["start_positions"] != 0)
    preds = qa.postprocess_predictions(examples, feats, starts, ends, task)
    assert preds["curie-1"] == "1903"  # one token: allowed
    assert preds["amazon-1"] != "South America"  # two tokens: over the limit


def test_v2_null_answer_when_cls_beats_the_best_span(tokenizer):
    task = squad_task("squad_v2", data_files={"train": str(SQUAD_V2)})
    examples, feats = features_for(tokenizer, task, path=SQUAD_V2)
    rows = feats.to_list()
    answerable = {"curie-1", "rhine-1"}
    starts, ends = _logits_for(rows, lambda i, f: f["example_id"] in answerable and f["start_positions"] != 0)
    for s, e in zip(starts, ends, strict=True):
        s[0] = e[0] = 2.0  # [CLS] beats the decoy (1 + 1) by 2: "no answer" unless a real span scores higher
    preds = qa.postprocess_predictions(examples, feats, starts, ends, task)
    assert preds == {"curie-1": "1903", "curie-x": "", "rhine-1": "the Waal", "rhine-x": ""}
    # a higher threshold makes the model answer the unanswerable ones with its best span
    task.qa.null_score_diff_threshold = 10.0
    assert qa.postprocess_predictions(examples, feats, starts, ends, task)["curie-x"] != ""


def test_hub_rows_are_checked_too():
    ds = Dataset.from_dict({"id": ["1"], "context": ["abc"], "question": ["q"], "answer": [{"text": ["b"]}]})
    with pytest.raises(DataError, match="task.qa.answers_field"):
        qa.validate_examples(ds, squad_task(), "hub dataset 'x'")


def test_load_raw_carves_validation_and_test_from_one_file():
    raw = load_raw(squad_task(validation_size=0.2, test_size=0.2))
    assert sum(len(raw[s]) for s in ("train", "validation", "test")) == 6
