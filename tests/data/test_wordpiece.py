"""A WordPiece vocabulary learned from a corpus reloads as a BERT tokenizer with token type ids."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from encoderlab.data.wordpiece import train_wordpiece
from encoderlab.errors import ConfigError

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Pre-training an encoder on unlabelled text teaches it the language.",
    "Fine-tuning then adapts the encoder to a labelled task, quickly.",
] * 20


def test_train_save_and_reload(tmp_path):
    tok = train_wordpiece(TEXTS, vocab_size=150, lowercase=True, out_dir=tmp_path / "tok")
    assert len(tok) <= 150
    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    enc = loaded("The quick fox", "jumps over")
    assert enc["input_ids"][0] == loaded.cls_token_id and enc["input_ids"][-1] == loaded.sep_token_id
    n_a, n_b = len(loaded.tokenize("The quick fox")), len(loaded.tokenize("jumps over"))
    assert enc["token_type_ids"] == [0] * (n_a + 2) + [1] * (n_b + 1)
    assert loaded.convert_ids_to_tokens(loaded("THE")["input_ids"])[1] == "the"
    assert loaded.unk_token_id not in loaded("the quick brown fox")["input_ids"]
    assert loaded.mask_token == "[MASK]" and loaded.pad_token_id == 0
    assert loaded("Pre-training")["input_ids"] == tok("Pre-training")["input_ids"]


def test_cased_vocabulary_keeps_case():
    tok = train_wordpiece(TEXTS, vocab_size=200, lowercase=False)
    assert "The" in tok.convert_ids_to_tokens(tok("The")["input_ids"])


def test_vocab_size_below_alphabet_names_the_key_and_minimum():
    with pytest.raises(ConfigError) as e:
        train_wordpiece(TEXTS, vocab_size=20, lowercase=True)
    assert e.value.key == "model.vocab_size"
    assert "at least" in str(e.value)
    minimum = int(str(e.value).rsplit(">= ", 1)[1])
    assert len(train_wordpiece(TEXTS, vocab_size=minimum, lowercase=True)) == minimum
