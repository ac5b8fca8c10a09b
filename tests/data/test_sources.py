"""Where examples come from: the user's files, offline packages, the hub; seeded stratified splits; subsets."""

from __future__ import annotations

import collections
from pathlib import Path

import datasets
import pytest
from datasets import Dataset, DatasetDict
from support import reviews_task

from encoderlab.config.schema import TaskConfig
from encoderlab.data import sources
from encoderlab.data.sources import infer_format, load_raw, read_file, register_format, register_package
from encoderlab.errors import ConfigError, DataError, OfflineError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REVIEWS = str(FIXTURES / "reviews.csv")  # 60 rows, 30 neg / 30 pos


def test_one_file_is_carved_into_disjoint_stratified_splits():
    ds = load_raw(reviews_task())
    sizes = {k: len(v) for k, v in ds.items()}
    assert sizes == {"train": 38, "validation": 10, "test": 12}
    ids = [set(ds[k]["id"]) for k in ds]
    assert set.union(*ids) == set(range(60)) and sum(map(len, ids)) == 60
    for split in ("validation", "test"):  # string labels are stratified too: exactly half of each
        counts = collections.Counter(ds[split]["sentiment"])
        assert counts["neg"] == counts["pos"] == sizes[split] // 2


def test_splits_are_seeded():
    a, b = load_raw(reviews_task()), load_raw(reviews_task())
    assert a["test"]["id"] == b["test"]["id"]
    c = load_raw(reviews_task(split_seed=7))
    assert set(c["test"]["id"]) != set(a["test"]["id"])


def test_default_split_names_carve_what_the_files_lack():
    """validation_split/test_split default to 'validation'/'test'; files without them are carved."""
    ds = load_raw(reviews_task(validation_split="validation", test_split="test"))
    assert {k: len(v) for k, v in ds.items()} == {"train": 38, "validation": 10, "test": 12}


def test_given_split_files_are_used_as_they_are(tmp_path):
    for name, rows in (("train", range(0, 40)), ("dev", range(40, 50)), ("test", range(50, 60))):
        lines = ["id,review,sentiment"] + [f"{i},text {i},{'pos' if i % 2 else 'neg'}" for i in rows]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    files = {k: str(tmp_path / f"{k}.csv") for k in ("train", "dev", "test")}
    ds = load_raw(reviews_task(data_files=files, validation_split="dev", test_split="test"))
    assert ds["validation"]["id"] == list(range(40, 50)) and ds["test"]["id"] == list(range(50, 60))
    assert len(ds["train"]) == 40


def test_max_samples_take_seeded_subsets():
    ds = load_raw(reviews_task(max_train_samples=16, max_eval_samples=4))
    assert [len(ds[k]) for k in ("train", "validation", "test")] == [16, 4, 4]
    assert load_raw(reviews_task(max_train_samples=16))["train"]["id"] == ds["train"]["id"]


def test_no_split_to_carve_names_the_size_key():
    with pytest.raises(ConfigError) as e:
        load_raw(reviews_task(validation_size=0.0))
    assert e.value.key == "task.validation_size"


def test_unknown_train_split_lists_the_splits_found():
    with pytest.raises(ConfigError) as e:
        load_raw(reviews_task(train_split="training"))
    assert e.value.key == "task.train_split" and "'train'" in str(e.value)


def test_missing_file_names_the_file_and_the_key(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError) as e:
        load_raw(reviews_task(data_files={"train": REVIEWS, "validation": str(missing)}, validation_split="validation"))
    assert str(missing) in str(e.value) and "task.data_files.validation" in str(e.value)


def test_a_folder_is_not_a_data_file(tmp_path):
    with pytest.raises(DataError) as e:
        load_raw(reviews_task(data_files={"train": str(tmp_path)}))
    assert "is a folder" in str(e.value) and "task.data_files.train" in str(e.value)


def test_format_comes_from_the_extension_or_task_format(tmp_path):
    assert infer_format(Path("a.tsv"), TaskConfig()) == "tsv"
    assert infer_format(Path("a.ndjson"), TaskConfig()) == "jsonl"
    assert infer_format(Path("a.data"), TaskConfig(format="csv")) == "csv"
    with pytest.raises(ConfigError) as e:
        infer_format(Path("reviews.xlsx"), TaskConfig())
    assert e.value.key == "task.format" and "'csv'" in str(e.value)


def test_a_conll_file_named_txt_is_read_as_conll_for_a_token_task(tmp_path):
    txt = tmp_path / "ner.txt"
    txt.write_text((FIXTURES / "ner_small.conll").read_text())
    task = TaskConfig(kind="token_classification", data_files={"train": str(txt)})

    ds = read_file(txt, task)

    assert ds.column_names == ["tokens", "tags"] and ds[0]["tokens"][0] == "EU" and ds[0]["tags"][0] == "B-ORG"
    assert infer_format(txt, TaskConfig(kind="pretraining")) == "txt"  # a corpus stays text


def test_a_small_file_keeps_a_stratified_class_split_only_when_each_side_can_hold_every_class(tmp_path):
    rows = [("a fine film", "pos"), ("a dull film", "neg")] * 2 + [("a fine one", "pos")]  # 5 rows, 3 pos / 2 neg
    path = tmp_path / "five.csv"
    path.write_text("review,sentiment\n" + "".join(f"{t},{y}\n" for t, y in rows))

    ds = load_raw(reviews_task(path))  # 1 test row cannot hold both classes: split at random instead of failing

    assert {k: len(v) for k, v in ds.items()} == {"train": 3, "validation": 1, "test": 1}


def test_a_registered_format_reads_files(tmp_path):
    """New file formats plug in by name, without touching sources.py."""
    f = tmp_path / "data.pipe"
    f.write_text("good|pos\nbad|neg\n")

    @register_format("pipe_test")
    def read_pipe(path: Path, task: TaskConfig) -> Dataset:
        rows = [line.split("|") for line in path.read_text().splitlines()]
        return Dataset.from_dict({"text": [r[0] for r in rows], "label": [r[1] for r in rows]})

    try:
        ds = read_file(f, TaskConfig(format="pipe_test"))
        assert ds["label"] == ["pos", "neg"]
    finally:
        sources._FORMATS.pop("pipe_test")


def test_a_registered_package_loads_by_name():
    @register_package("tiny_test_set")
    def tiny(task: TaskConfig) -> Dataset:
        return Dataset.from_dict({"text": [f"t{i}" for i in range(20)], "label": [i % 2 for i in range(20)]})

    try:
        task = TaskConfig(name="tiny", source="package", dataset="tiny_test_set", validation_size=0.1, test_size=0.1)
        ds = load_raw(task)
        assert sum(len(v) for v in ds.values()) == 20
    finally:
        sources._PACKAGES.pop("tiny_test_set")


def test_unknown_package_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        load_raw(TaskConfig(source="package", dataset="imdb"))
    assert e.value.key == "task.dataset" and "'rotten_tomatoes'" in str(e.value) and "'bbc_news'" in str(e.value)


def test_hub_dataset_offline_says_so_and_names_the_key(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = TaskConfig(name="sst2", source="hub", dataset="nyu-mll/glue", subset="sst2")
    with pytest.raises(OfflineError) as e:
        load_raw(task)
    msg = str(e.value)
    assert "offline" in msg and "'nyu-mll/glue'" in msg and "task.dataset" in msg and "sst2" in msg


def test_hub_split_that_does_not_exist_lists_the_splits(monkeypatch):
    def fake_load_dataset(name, subset=None):
        d = Dataset.from_dict({"sentence": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]})
        return DatasetDict({"train": d, "validation": d})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = TaskConfig(name="glue", source="hub", dataset="x/y", test_split="test_matched", text_fields=["sentence"])
    with pytest.raises(ConfigError) as e:
        load_raw(task)
    assert e.value.key == "task.test_split" and "'validation'" in str(e.value)


def test_rotten_tomatoes_package_has_its_documented_shape():
    task = TaskConfig(name="rt", source="package", dataset="rotten_tomatoes", validation_split=None, test_split=None)
    ds = load_raw(task)
    assert sum(len(v) for v in ds.values()) == 12808  # 7,403 fresh + 5,405 rotten; plot summaries left out
    assert ds["train"].features["label"].names == ["rotten", "fresh"]
    share = {k: sum(v["label"]) / len(v) for k, v in ds.items()}
    assert all(abs(s - 7403 / 12808) < 0.01 for s in share.values())  # stratified


def test_bbc_news_package_reads_all_latin1_articles_with_sorted_topics():
    task = TaskConfig(name="bbc", source="package", dataset="bbc_news", validation_split=None, test_split=None)
    ds = load_raw(task)
    assert sum(len(v) for v in ds.values()) == 2225
    assert ds["train"].features["label"].names == ["business", "entertainment", "politics", "sports", "tech"]
    assert not any("\ufffd" in t for t in ds["test"]["text"])  # read as latin-1, no replacement characters
