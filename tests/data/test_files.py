"""Readers for user files: every tabular format, encodings, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from encoderlab.config.schema import TaskConfig
from encoderlab.data.sources import read_file
from encoderlab.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_csv_reads_columns_and_rows():
    ds = read_file(FIXTURES / "reviews.csv", TaskConfig())
    assert ds.column_names == ["id", "review", "sentiment"] and len(ds) == 60
    assert ds[2]["review"] == "a dull, lifeless mess (2)"  # quoted commas stay in the field


def test_tsv_reads_sentence_pairs():
    ds = read_file(FIXTURES / "pairs.tsv", TaskConfig())
    assert ds.column_names == ["premise", "hypothesis", "label"] and len(ds) == 30
    assert set(ds["label"]) == {"entailment", "contradiction"}


def test_jsonl_reads_one_object_per_line():
    ds = read_file(FIXTURES / "ratings.jsonl", TaskConfig())
    assert set(ds.column_names) == {"text", "label", "score"} and len(ds) == 36
    assert isinstance(ds[0]["score"], float)


@pytest.mark.parametrize("wrapped", [False, True])
def test_json_reads_a_list_or_a_data_list(tmp_path, wrapped):
    rows = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
    f = tmp_path / "rows.json"
    f.write_text(json.dumps({"version": 1, "data": rows} if wrapped else rows))
    assert read_file(f, TaskConfig()).to_list() == rows


def test_parquet_reads_a_frame(tmp_path):
    f = tmp_path / "rows.parquet"
    pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}).to_parquet(f)
    ds = read_file(f, TaskConfig())
    assert ds["text"] == ["good", "bad"] and ds["label"] == [1, 0]


def test_text_that_looks_like_missing_stays_text_and_blank_cells_are_empty(tmp_path):
    f = tmp_path / "na.csv"
    f.write_text("text,label\nNA,pos\nnull,neg\n,pos\n")
    assert read_file(f, TaskConfig())["text"] == ["NA", "null", None]


def test_delimiter_override_and_stripped_headers(tmp_path):
    f = tmp_path / "semi.csv"
    f.write_text(" text ; label \ngood;pos\nbad;neg\n")
    ds = read_file(f, TaskConfig(delimiter=";"))
    assert ds.column_names == ["text", "label"] and ds["label"] == ["pos", "neg"]


def test_non_utf8_file_needs_task_encoding():
    f = FIXTURES / "reviews_latin1.csv"
    with pytest.raises(DataError) as e:
        read_file(f, TaskConfig())
    msg = str(e.value)
    assert str(f) in msg and "task.encoding" in msg and "line 2" in msg
    ds = read_file(f, TaskConfig(encoding="latin-1"))
    assert len(ds) == 40 and "raté" in ds[0]["review"]


def test_unknown_encoding_names_task_encoding():
    with pytest.raises(DataError) as e:
        read_file(FIXTURES / "reviews.csv", TaskConfig(encoding="klingon-8"))
    assert "task.encoding" in str(e.value) and "klingon-8" in str(e.value)


def test_bad_jsonl_line_is_named(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "a", "label": 1}\n\n{"text": "b", label: 0}\n')
    with pytest.raises(DataError) as e:
        read_file(f, TaskConfig())
    assert str(f) in str(e.value) and "line 3" in str(e.value)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.csv", "", "is empty"),
        ("empty.jsonl", "\n\n", "no rows"),
        ("empty.json", "[]", "no rows"),
        ("scalar.json", '{"text": "a"}', "list of objects"),
        ("broken.json", '[{"text": "a"', "not valid JSON"),
        ("broken.parquet", "not parquet at all", "cannot read parquet"),
        ("ragged.csv", 'text,label\n"a,pos\n', "cannot parse"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, content, words):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError) as e:
        read_file(f, TaskConfig())
    assert str(f) in str(e.value) and words in str(e.value)
