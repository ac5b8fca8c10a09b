"""The tokenized-data cache: a rerun reuses it; anything that changes the data makes a new entry."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict
from support import reviews_task

from encoderlab.config.schema import RunConfig
from encoderlab.data import cache as data_cache
from encoderlab.kinds.sequence import data as sequence  # prepare, and the tokenize it calls

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "tokenized").iterdir() if not p.name.startswith("."))


def test_a_rerun_reuses_the_cache_and_a_new_max_seq_length_makes_a_new_entry(tokenizer, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    first = sequence.prepare(RunConfig(task=reviews_task()), tokenizer, root)
    (entry,) = entries(root)
    assert entry == f"sequence_classification-reviews-{first.meta['data_key']}"
    assert (root / "tokenized" / entry / "meta.json").exists()

    def no_build(*a, **k):
        raise AssertionError("tokenized again although the cache holds this data")

    with monkeypatch.context() as m:
        m.setattr(sequence, "tokenize", no_build)
        m.setattr(sequence, "prepare_labels", no_build)
        again = sequence.prepare(RunConfig(task=reviews_task(), seed=7), tokenizer, root)  # the seed changes nothing
    assert again.meta == first.meta
    assert again.datasets["train"]["input_ids"] == first.datasets["train"]["input_ids"]

    calls = []
    real = sequence.tokenize
    monkeypatch.setattr(sequence, "tokenize", lambda *a, **k: calls.append(1) or real(*a, **k))
    shorter = sequence.prepare(RunConfig(task=reviews_task(max_seq_length=8)), tokenizer, root)
    assert calls == [1] and len(entries(root)) == 2
    assert max(len(ids) for ids in shorter.datasets["train"]["input_ids"]) == 8


def test_no_cache_root_builds_every_time():
    calls = []

    def build():
        calls.append(1)
        return DatasetDict({"train": Dataset.from_dict({"x": [1]})}), {"n": 1}

    data_cache.cached(None, "t", "k", build)
    data_cache.cached(None, "t", "k", build)
    assert len(calls) == 2


def test_a_damaged_entry_is_rebuilt(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return DatasetDict({"train": Dataset.from_dict({"x": [1, 2]})}), {"n": 2}

    data_cache.cached(tmp_path, "t", "k", build)
    shutil.rmtree(tmp_path / "tokenized" / "t-k" / "data")
    ds, meta = data_cache.cached(tmp_path, "t", "k", build)
    assert len(calls) == 2 and ds["train"]["x"] == [1, 2] and meta == {"n": 2}
    data_cache.cached(tmp_path, "t", "k", build)
    assert len(calls) == 2


def test_fingerprint_follows_what_changes_the_data(tokenizer):
    key = data_cache.fingerprint(reviews_task(), tokenizer)
    assert data_cache.fingerprint(reviews_task(), tokenizer) == key
    # training-only keys keep the entry
    same = reviews_task(metrics=["accuracy", "f1_macro"], primary_metric="f1_macro", description="x")
    assert data_cache.fingerprint(same, tokenizer) == key
    # anything that changes the tokenized data makes a new one
    for changed in (
        reviews_task(max_seq_length=32),
        reviews_task(text_fields=["id"]),
        reviews_task(label_names=["pos", "neg"]),
        reviews_task(split_seed=1),
        reviews_task(max_train_samples=10),
    ):
        assert data_cache.fingerprint(changed, tokenizer) != key
    other = copy.deepcopy(tokenizer)
    other.model_max_length = 64
    assert data_cache.fingerprint(reviews_task(), other) != key


def test_fingerprint_follows_the_data_file(tokenizer, tmp_path):
    f = tmp_path / "reviews.csv"
    shutil.copy(FIXTURES / "reviews.csv", f)
    key = data_cache.fingerprint(reviews_task(f), tokenizer)
    with f.open("a") as fh:
        fh.write("60,one more review (60),pos\n")
    st = f.stat()
    os.utime(f, (st.st_atime, st.st_mtime + 5))
    assert data_cache.fingerprint(reviews_task(f), tokenizer) != key


@pytest.mark.parametrize("configured", ["~/somewhere", "/abs/dir"])
def test_encoderlab_cache_env_is_the_default_and_an_explicit_path_wins(monkeypatch, tmp_path, configured):
    from encoderlab.config.schema import PathsConfig

    monkeypatch.setenv("ENCODERLAB_CACHE", str(tmp_path))
    assert data_cache.cache_root(PathsConfig().cache_dir) == tmp_path
    assert data_cache.cache_root(configured) == Path(os.path.expanduser(configured))
