"""MLM corruption: the configured ratios hold on a large batch; special tokens and padding are never touched."""

from __future__ import annotations

import pytest
import torch
from support import task_config

from encoderlab.errors import ConfigError
from encoderlab.kinds.pretraining.masking import MLMCollator


def _examples(tokenizer, n: int = 256, seed: int = 0) -> list[dict]:
    """Sequences of ordinary tokens of varied length, framed by [CLS] ... [SEP] like real examples."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(20, 126, (1,), generator=g))
        body = torch.randint(2000, 29000, (length,), generator=g).tolist()
        out.append({"input_ids": [tokenizer.cls_token_id, *body, tokenizer.sep_token_id]})
    return out


def _collate(tokenizer, examples, **kw):
    args = {"mlm_probability": 0.15, "mask_replace_prob": 0.8, "random_replace_prob": 0.1, "whole_word_mask": False}
    args.update(kw)
    return MLMCollator(tokenizer, generator=torch.Generator().manual_seed(1), **args)(examples)


@pytest.mark.parametrize("split", [(0.8, 0.1), (0.5, 0.3), (1.0, 0.0), (0.0, 0.0)])
def test_masking_statistics_match_the_configured_ratios(tokenizer, split):
    examples = _examples(tokenizer)
    original = torch.full((len(examples), 127), tokenizer.pad_token_id)
    for i, e in enumerate(examples):
        original[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
    batch = _collate(tokenizer, examples, mask_replace_prob=split[0], random_replace_prob=split[1])
    assert batch["input_ids"].shape == original.shape  # padded to the longest example only
    candidates = (original >= 2000) & (original < 29000)
    selected = batch["labels"] != -100
    assert torch.equal(batch["labels"][selected], original[selected])  # labels hold the original tokens
    share = selected.sum().item() / candidates.sum().item()
    assert share == pytest.approx(0.15, abs=0.01)
    sel_in, sel_orig = batch["input_ids"][selected], original[selected]
    n = selected.sum().item()
    masked = (sel_in == tokenizer.mask_token_id).sum().item() / n
    unchanged = (sel_in == sel_orig).sum().item() / n
    random_ = 1.0 - masked - unchanged
    assert masked == pytest.approx(split[0], abs=0.03)
    assert random_ == pytest.approx(split[1], abs=0.03)
    assert unchanged == pytest.approx(1.0 - split[0] - split[1], abs=0.03)
    # tokens not selected are never changed
    assert torch.equal(batch["input_ids"][~selected], original[~selected])


def test_special_tokens_and_padding_are_never_selected(tokenizer):
    examples = _examples(tokenizer, n=128)
    # a pair example with [SEP] in the middle and an [UNK]
    examples.append({"input_ids": [101, 2000, tokenizer.unk_token_id, 102, 2001, 2002, 102]})
    batch = _collate(tokenizer, examples, mlm_probability=0.9)
    special = torch.isin(_padded(examples, tokenizer), torch.tensor(tokenizer.all_special_ids))
    assert (batch["labels"][special] == -100).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()
    # random replacements are real tokens, never a special token or an [unused] placeholder
    replaced = (batch["labels"] != -100) & (batch["input_ids"] != tokenizer.mask_token_id)
    vocab = tokenizer.convert_ids_to_tokens(batch["input_ids"][replaced].tolist())
    assert not any(t.startswith("[") and t.endswith("]") for t in vocab)


def _padded(examples, tokenizer) -> torch.Tensor:
    n = max(len(e["input_ids"]) for e in examples)
    out = torch.full((len(examples), n), tokenizer.pad_token_id)
    for i, e in enumerate(examples):
        out[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
    return out


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tokenizer):
    words = "tokenization hyperparameters pretraining embeddings unbelievably the a cat".split()
    g = torch.Generator().manual_seed(3)
    examples = []
    for _ in range(200):
        text = " ".join(words[int(i)] for i in torch.randint(len(words), (40,), generator=g))
        enc = tokenizer(text)
        ids = enc["input_ids"]
        word_ids = enc.word_ids()
        starts = [int(w is not None and (j == 0 or word_ids[j - 1] != w)) for j, w in enumerate(word_ids)]
        examples.append({"input_ids": ids, "word_start": starts, "_words": word_ids})
    batch = _collate(tokenizer, [{k: v for k, v in e.items() if k != "_words"} for e in examples], whole_word_mask=True)
    assert "word_start" not in batch
    selected = batch["labels"] != -100
    multi_piece_words_chosen = 0
    for i, e in enumerate(examples):
        groups: dict[int, list[bool]] = {}
        for j, w in enumerate(e["_words"]):
            if w is not None:
                groups.setdefault(w, []).append(bool(selected[i, j]))
        for flags in groups.values():
            assert all(flags) or not any(flags), "a word was only partly selected"
            multi_piece_words_chosen += len(flags) > 1 and all(flags)
    assert multi_piece_words_chosen > 50
    candidates = batch["attention_mask"].bool() & ~torch.isin(
        _padded(examples, tokenizer), torch.tensor(tokenizer.all_special_ids)
    )
    assert selected.sum().item() / candidates.sum().item() == pytest.approx(0.15, abs=0.02)
    # the [MASK]/random/unchanged split still applies to whole words
    masked = (batch["input_ids"][selected] == tokenizer.mask_token_id).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.04)


def test_static_masked_examples_pass_through_and_sentence_labels_are_kept(tokenizer):
    examples = [
        {
            "input_ids": [101, 103, 2003, 102, 2004, 102],
            "labels": [-100, 2002, -100, -100, -100, -100],
            "token_type_ids": [0, 0, 0, 0, 1, 1],
            "next_sentence_label": 1,
        },
        {
            "input_ids": [101, 2005, 102, 2006, 102],
            "labels": [-100] * 5,
            "token_type_ids": [0, 0, 0, 1, 1],
            "next_sentence_label": 0,
        },
    ]
    batch = MLMCollator(tokenizer, pad_to_multiple_of=8)(examples)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0, :6].tolist() == examples[0]["input_ids"]
    assert batch["labels"][0, :6].tolist() == examples[0]["labels"]
    assert (batch["labels"][:, 6:] == -100).all()
    assert batch["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert batch["next_sentence_label"].tolist() == [1, 0]
    assert batch["attention_mask"].sum(1).tolist() == [6, 5]


@pytest.mark.parametrize(
    "kw,key",
    [
        ({"mlm_probability": 0.0}, "task.mlm.mlm_probability"),
        ({"mlm_probability": 1.0}, "task.mlm.mlm_probability"),
        ({"mlm_probability": 1.5}, "task.mlm.mlm_probability"),
        ({"mask_replace_prob": 0.8, "random_replace_prob": 0.1, "keep_prob": 0.2}, "task.mlm.mask_replace_prob"),
        ({"mask_replace_prob": 1.1, "random_replace_prob": -0.1, "keep_prob": 0.0}, "task.mlm.mask_replace_prob"),
    ],
)
def test_bad_probabilities_name_the_key(kw, key):
    task = task_config(
        kind="pretraining",
        source="package",
        dataset="bbc_news_text",
        metrics=["mlm_loss"],
        primary_metric="mlm_loss",
        **kw,
    )
    with pytest.raises(ConfigError) as e:
        task.check()
    assert e.value.key == key


def test_collator_rejects_bad_ratios(tokenizer):
    with pytest.raises(ConfigError, match="task.mlm.mlm_probability"):
        MLMCollator(tokenizer, mlm_probability=0.0)
    with pytest.raises(ConfigError, match="task.mlm.mask_replace_prob"):
        MLMCollator(tokenizer, mask_replace_prob=0.9, random_replace_prob=0.2)


def test_keep_prob_is_the_unchanged_share(tokenizer):
    """task.mlm.keep_prob reaches the collator: a consistent value masks as the derived rest, any other fails."""
    examples = _examples(tokenizer, n=64)
    derived = _collate(tokenizer, examples, mask_replace_prob=0.5, random_replace_prob=0.2)
    given = _collate(tokenizer, examples, mask_replace_prob=0.5, random_replace_prob=0.2, keep_prob=0.3)
    assert torch.equal(derived["input_ids"], given["input_ids"]) and torch.equal(derived["labels"], given["labels"])
    with pytest.raises(ConfigError, match="task.mlm.keep_prob must sum to 1"):
        MLMCollator(tokenizer, mask_replace_prob=0.5, random_replace_prob=0.2, keep_prob=0.1)
