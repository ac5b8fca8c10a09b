"""Pre-training instances: packing, NSP/SOP pairs, single-sentence documents, static masks, length limits."""

from __future__ import annotations

import random

import pytest
from datasets import Dataset, DatasetDict
from support import task_config

from encoderlab.config.schema import TaskConfig
from encoderlab.errors import ConfigError, DataError
from encoderlab.kinds.pretraining.data import pair_instances, preprocess_pretraining, split_sentences

SENTENCES = [
    "The market rose sharply on Monday.",
    "Investors welcomed the unexpected news from the central bank.",
    "Analysts said the rally could continue.",
    "Some warned that inflation remains a risk!",
    "Shares in technology firms led the gains.",
    "Oil prices were little changed?",
    "The currency weakened against the dollar.",
]


def _task(**kw) -> TaskConfig:
    base = dict(
        kind="pretraining",
        source="package",
        dataset="bbc_news_text",
        metrics=["mlm_loss"],
        primary_metric="mlm_loss",
        max_seq_length=32,
    )
    base.update(kw)
    task = task_config(**base)
    task.check()
    return task


def _corpus(n_docs: int = 30, single: int = 0) -> DatasetDict:
    rng = random.Random(0)
    docs = [" ".join(rng.sample(SENTENCES, k=rng.randint(3, 7))) for _ in range(n_docs)]
    docs += ["Just one sentence here." for _ in range(single)]
    val = [" ".join(SENTENCES[:4]), " ".join(SENTENCES[3:])]
    return DatasetDict({"train": Dataset.from_dict({"text": docs}), "validation": Dataset.from_dict({"text": val})})


def _synthetic_docs(n_docs: int, seed: int = 0) -> list[list[list[int]]]:
    """Documents whose tokens are consecutive integers, unique across the corpus: 'next' is checkable."""
    rng = random.Random(seed)
    docs, t = [], 0
    for _ in range(n_docs):
        doc = []
        for _ in range(rng.randint(2, 12)):
            n = rng.randint(3, 30)
            doc.append(list(range(t, t + n)))
            t += n
        docs.append(doc)
    return docs


def _doc_of(docs) -> dict[int, int]:
    return {tok: d for d, doc in enumerate(docs) for s in doc for tok in s}


def test_split_sentences():
    text = (
        "Ad sales boost Time Warner profit\n\nQuarterly profits at U.S. giant TimeWarner jumped 76%. It said so! Yes."
    )
    assert split_sentences(text) == [
        "Ad sales boost Time Warner profit",
        "Quarterly profits at U.S. giant TimeWarner jumped 76%.",
        "It said so!",
        "Yes.",
    ]
    assert split_sentences("a fine film. too long, though.") == ["a fine film.", "too long, though."]


def test_nsp_labels_are_balanced_and_is_next_pairs_are_consecutive():
    docs = _synthetic_docs(400)
    where = _doc_of(docs)
    pairs = pair_instances(docs, max_seq_length=64, short_seq_prob=0.1, rng=random.Random(1), objective="nsp")
    assert len(pairs) > 500
    labels = [label for _, _, label in pairs]
    assert sum(labels) / len(labels) == pytest.approx(0.5, abs=0.04)
    for a, b, label in pairs:
        assert len(a) + len(b) <= 64 - 3 and a and b
        assert a == list(range(a[0], a[0] + len(a)))  # A is contiguous text of one document
        if label == 0:  # is next: B starts right where A ends, in the same document
            assert b[0] == a[-1] + 1 and where[b[0]] == where[a[-1]]
        else:  # random: B comes from another document
            assert where[b[0]] != where[a[0]]


def test_sop_swapped_pairs_are_really_swapped():
    docs = _synthetic_docs(300, seed=2)
    pairs = pair_instances(docs, max_seq_length=64, short_seq_prob=0.1, rng=random.Random(3), objective="sop")
    labels = [label for _, _, label in pairs]
    assert sum(labels) / len(labels) == pytest.approx(0.5, abs=0.05)
    for a, b, label in pairs:
        if label == 1:
            assert a[0] == b[-1] + 1  # B is the text right before A
        else:
            assert b[0] == a[-1] + 1


def test_packing_gives_full_blocks_without_padding(tokenizer):
    task = _task(objective="none", packing="blocks")
    ds, stats = preprocess_pretraining(_corpus(), tokenizer, task, max_positions=512)
    train = ds["train"]
    assert len(train) > 5
    for ids in train["input_ids"]:
        assert len(ids) == 32
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert tokenizer.pad_token_id not in ids
    # contiguous text: block contents, joined, are the corpus stream with a [SEP] between documents
    assert stats["train"]["tokens"] == 32 * len(train)
    assert "labels" not in train.column_names  # dynamic masking: the collator masks train
    assert "labels" in ds["validation"].column_names  # evaluation masks are drawn once


def test_without_packing_each_example_is_one_document_chunk(tokenizer):
    task = _task(objective="none", packing="documents", max_seq_length=64)
    ds, stats = preprocess_pretraining(_corpus(n_docs=10), tokenizer, task)
    assert stats["train"]["examples"] >= 10
    assert max(len(x) for x in ds["train"]["input_ids"]) <= 64
    assert len({len(x) for x in ds["train"]["input_ids"]}) > 1  # not padded: the collator pads per batch


def test_nsp_examples_and_single_sentence_documents(tokenizer):
    task = _task(objective="nsp", max_seq_length=48)
    ds, stats = preprocess_pretraining(_corpus(n_docs=40, single=7), tokenizer, task)
    assert stats["train"]["skipped_single_sentence_documents"] == 7
    assert stats["train"]["documents"] == 47
    row = ds["train"][0]
    ids, types = row["input_ids"], row["token_type_ids"]
    sep = [i for i, t in enumerate(ids) if t == tokenizer.sep_token_id]
    assert ids[0] == tokenizer.cls_token_id and len(sep) == 2 and sep[-1] == len(ids) - 1
    assert types == [0] * (sep[0] + 1) + [1] * (len(ids) - sep[0] - 1)
    assert set(ds["train"]["next_sentence_label"]) == {0, 1}
    assert all(len(x) <= 48 for x in ds["train"]["input_ids"])


def test_sop_and_whole_word_columns(tokenizer):
    task = _task(objective="sop", whole_word_mask=True)
    ds, _ = preprocess_pretraining(_corpus(), tokenizer, task)
    assert {"input_ids", "token_type_ids", "sentence_order_label", "word_start"} <= set(ds["train"].column_names)
    row = ds["train"][0]
    pieces = tokenizer.convert_ids_to_tokens(row["input_ids"])
    for piece, start in zip(pieces, row["word_start"], strict=True):
        if piece.startswith("##"):
            assert start == 0


def test_static_masking_is_stored_and_reproducible(tokenizer):
    task = _task(objective="none", dynamic_masking=False)
    a, _ = preprocess_pretraining(_corpus(), tokenizer, task)
    b, _ = preprocess_pretraining(_corpus(), tokenizer, task)
    assert a["train"]["labels"] == b["train"]["labels"]
    assert a["train"]["input_ids"] == b["train"]["input_ids"]
    labels = [t for row in a["train"]["labels"] for t in row]
    assert sum(t != -100 for t in labels) / len(labels) == pytest.approx(0.15 * 30 / 32, abs=0.04)
    assert tokenizer.mask_token_id in a["train"]["input_ids"][0] + a["train"]["input_ids"][1]


def test_documents_of_one_sentence_only_is_an_error_for_nsp(tokenizer):
    raw = DatasetDict({"train": Dataset.from_dict({"text": ["One sentence.", "Another one."]})})
    with pytest.raises(DataError, match="two sentences"):
        preprocess_pretraining(raw, tokenizer, _task(objective="nsp"))


def test_max_seq_length_above_position_limit(tokenizer):
    with pytest.raises(ConfigError) as e:
        preprocess_pretraining(_corpus(), tokenizer, _task(max_seq_length=1024), max_positions=512)
    assert e.value.key == "task.max_seq_length" and "512" in str(e.value)


def test_full_sentences_packs_whole_sentences_across_documents():
    from encoderlab.kinds.pretraining.data import pack_sentences

    docs = _synthetic_docs(12)
    sep = 999_999
    blocks = pack_sentences(docs, max_seq_length=32, sep=sep)
    sentences = {tuple(s) for d in docs for s in d}
    stream = []
    for b in blocks:
        assert 0 < len(b) <= 30  # room for [CLS] and [SEP]
        assert b[0] != sep * 2  # a block never opens with a document separator
        stream.extend(b)
    # nothing dropped or reordered: the blocks are the corpus with a separator between documents
    expected = []
    for d, doc in enumerate(docs):
        expected += ([sep * 2] if d else []) + [t for s in doc for t in s]
    assert [t for t in stream if t != sep * 2] == [t for t in expected if t != sep * 2]
    # whole sentences (each fits a block here): a block starts with a sentence's first token, ends with a last one
    firsts, lasts = {s[0] for s in sentences}, {s[-1] for s in sentences}
    assert all(b[0] in firsts and b[-1] in lasts for b in blocks)
    assert len(blocks) > 1 and any(sep * 2 in b for b in blocks)  # crosses documents


def test_full_sentences_examples_through_the_preprocessor(tokenizer):
    task = _task(objective="none", packing="full_sentences", max_seq_length=48)
    ds, stats = preprocess_pretraining(_corpus(), tokenizer, task, max_positions=512)
    lengths = [len(x) for x in ds["train"]["input_ids"]]
    assert max(lengths) <= 48 and len(set(lengths)) > 1  # whole sentences: blocks are not cut to one length
    assert stats["train"]["dropped_tokens"] == 0
    blocks = _task(objective="none", packing="blocks", max_seq_length=48)
    ds_b, stats_b = preprocess_pretraining(_corpus(), tokenizer, blocks, max_positions=512)
    # the same text either way (blocks keep every document separator and drop the last partial block)
    sep = tokenizer.sep_token_id

    def text(ds):
        return [t for ids in ds["train"]["input_ids"] for t in ids[1:-1] if t != sep]

    assert text(ds_b) == text(ds)[: len(text(ds_b))]


def test_packing_names_the_allowed_values():
    with pytest.raises(ConfigError) as e:
        _task(objective="none", packing="true")
    assert e.value.key == "task.mlm.packing" and "full_sentences" in str(e.value)
