"""Learn a BERT WordPiece vocabulary from a corpus, so a from-scratch model needs no hub tokenizer.

The result is wrapped as :class:`~transformers.BertTokenizerFast` (not a generic ``PreTrainedTokenizerFast``):
only the BERT class reloads with the ``[CLS] A [SEP] B [SEP]`` post-processor and ``token_type_ids``, which NSP
and SOP need (see shared/reference/stack.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast

from encoderlab.errors import ConfigError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int,
    lowercase: bool,
    out_dir: str | os.PathLike | None = None,
    min_frequency: int = 2,
) -> BertTokenizerFast:
    """Train a WordPiece tokenizer on ``texts``; save it to ``out_dir`` (reloadable with AutoTokenizer) if given.

    Raises ``ConfigError('model.vocab_size')`` when ``vocab_size`` cannot hold the special tokens plus the corpus'
    alphabet (the trainer would silently return a larger vocabulary than the model's embedding table).
    """
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
    )
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)
    learned = tok.get_vocab_size()
    if learned == len(SPECIAL_TOKENS):
        raise ConfigError("model.train_tokenizer", "the corpus has no text to learn a WordPiece vocabulary from")
    if learned > vocab_size:
        raise ConfigError(
            "model.vocab_size",
            f"{vocab_size} is too small for this corpus: the {len(SPECIAL_TOKENS)} special tokens plus its alphabet "
            f"(each character, alone and as a '##' continuation) need at least {learned}; set model.vocab_size >= "
            f"{learned}",
        )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(out_dir))
    return fast


__all__ = ["SPECIAL_TOKENS", "train_wordpiece"]
