"""Sequence classification / regression data: columns, labels, empty rows and tokenization."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from support import ratings_task

from encoderlab.config.schema import TaskConfig
from encoderlab.data.sources import load_raw
from encoderlab.errors import ConfigError, DataError
from encoderlab.kinds.sequence.data import label_names_of, prepare_labels, tokenize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def dd(**columns) -> DatasetDict:
    return DatasetDict({"train": Dataset.from_dict(columns)})


def task(**kw) -> TaskConfig:
    return TaskConfig(**({"name": "t", "label_names": ["neg", "pos"]} | kw))


def test_label_names_map_to_ids_in_the_declared_order():
    raw = dd(text=["a", "b", "c"], label=["pos", "neg", "pos"])
    out, names = prepare_labels(raw, task(label_names=["pos", "neg"]))
    assert names == ["pos", "neg"] and out["train"]["labels"] == [0, 1, 0]
    assert "label" not in out["train"].column_names


def test_integer_labels_are_indices_when_names_are_words():
    out, _ = prepare_labels(dd(text=["a", "b"], label=[1, 0]), task())
    assert out["train"]["labels"] == [1, 0]


def test_numeric_label_names_are_names_not_indices():
    stars = ["1", "2", "3", "4", "5"]
    out, _ = prepare_labels(dd(text=["a", "b", "c"], label=[5, 1, 3]), task(label_names=stars))
    assert out["train"]["labels"] == [4, 0, 2]
    with pytest.raises(DataError) as e:  # 0 stars is not a rating, not "the first label"
        prepare_labels(dd(text=["a", "b"], label=[5, 0]), task(label_names=stars))
    assert "row 1" in str(e.value) and "task.label_names" in str(e.value)


def test_integer_labels_read_as_floats_still_map():
    """An int column with a blank cell reads as floats (1.0); those values are still their labels."""
    out, _ = prepare_labels(dd(text=["a", "b"], label=[1.0, 0.0]), task())
    assert out["train"]["labels"] == [1, 0]


def test_a_classlabel_column_is_translated_by_name():
    feats = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    raw = DatasetDict({"train": Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}, features=feats)})
    out, _ = prepare_labels(raw, task(label_names=["pos", "neg"]))
    assert out["train"]["labels"] == [1, 0]
    assert label_names_of(raw, task(label_names=None)) == ["neg", "pos"]


def test_no_label_names_anywhere_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        prepare_labels(dd(text=["a"], label=["x"]), task(label_names=None))
    assert e.value.key == "task.label_names"


def test_unknown_label_names_the_row_the_value_and_the_key():
    raw = dd(text=["good film", "bad film", "so-so film"], label=["pos", "neg", "meh"])
    with pytest.raises(DataError) as e:
        prepare_labels(raw, task())
    msg = str(e.value)
    assert "train row 2" in msg and "'meh'" in msg and "task.label_names" in msg and "'sentiment'" not in msg
    assert "so-so film" in msg and "column 'label'" in msg


def test_a_missing_label_says_so():
    with pytest.raises(DataError) as e:
        prepare_labels(dd(text=["a", "b"], label=["pos", None]), task())
    assert "row 1" in str(e.value) and "no label" in str(e.value)


def test_rows_with_empty_text_are_dropped():
    out, _ = prepare_labels(dd(text=["a", "", "   ", None, "b"], label=["pos", "neg", "neg", "neg", "neg"]), task())
    assert out["train"]["text"] == ["a", "b"] and out["train"]["labels"] == [1, 0]


def test_all_empty_text_is_an_error_naming_the_split_and_field():
    with pytest.raises(DataError) as e:
        prepare_labels(dd(text=["", " "], label=["pos", "neg"]), task())
    assert "train split is empty" in str(e.value) and "'text'" in str(e.value)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"text_fields": ["body"]}, ["'body'", "task.text_fields[0]", "'text'", "'label'"]),
        ({"text_fields": ["text", "hypothesis"]}, ["'hypothesis'", "task.text_fields[1]"]),
        ({"label_field": "stars"}, ["'stars'", "task.label_field", "'text'"]),
    ],
)
def test_missing_columns_name_the_key_and_the_columns_found(kw, words):
    with pytest.raises(DataError) as e:
        prepare_labels(dd(text=["a"], label=["pos"]), task(**kw))
    for w in words:
        assert w in str(e.value)


def test_regression_targets_are_floats_and_must_be_numbers():
    reg = dict(kind="sequence_regression", label_names=None, metrics=["pearson"], primary_metric="pearson")
    out, names = prepare_labels(dd(text=["a", "b"], label=["1.5", "3"]), task(**reg))
    assert names is None and out["train"]["labels"] == [1.5, 3.0]
    for labels in (["1.0", "high"], [1.0, None], [1.0, float("nan")]):
        with pytest.raises(DataError) as e:
            prepare_labels(dd(text=["a", "b"], label=labels), task(**reg))
        assert "row 1" in str(e.value) and "not a number" in str(e.value)


def test_jsonl_regression_file_end_to_end():
    t = ratings_task()
    out, _ = prepare_labels(load_raw(t), t)
    assert all(0.0 < y < 6.0 for split in out.values() for y in split["labels"])


def test_tokenize_truncates_without_padding(tokenizer):
    long = " ".join(["word"] * 100)
    raw = DatasetDict({"train": Dataset.from_dict({"text": ["short", long], "labels": [0, 1]})})
    out = tokenize(raw, tokenizer, TaskConfig(max_seq_length=16))["train"]
    assert [len(ids) for ids in out["input_ids"]] == [3, 16]  # [CLS] short [SEP]; the long one cut at 16
    assert out["labels"] == [0, 1] and "text" not in out.column_names


def test_tokenize_pairs_marks_the_second_segment(tokenizer):
    t = TaskConfig(
        name="pairs",
        data_files={"train": str(FIXTURES / "pairs.tsv")},
        validation_split=None,
        test_split=None,
        text_fields=["premise", "hypothesis"],
        label_names=["entailment", "contradiction"],
    )
    labeled, _ = prepare_labels(load_raw(t), t)
    row = tokenize(labeled, tokenizer, t)["train"][0]
    assert set(row["token_type_ids"]) == {0, 1}
    assert row["input_ids"].count(tokenizer.sep_token_id) == 2
