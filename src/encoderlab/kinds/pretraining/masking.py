"""Masked-LM corruption (BERT section 3.1, Table 8) and the pre-training collator.

Hugging Face's ``DataCollatorForLanguageModeling`` does not fit: with ``whole_word_mask`` it forces every selected
token to ``[MASK]`` (no random / unchanged share) and finds words from offset mappings, which packed blocks do not
keep. Here words come from a stored ``word_start`` column (1 where a token starts a word; WordPiece continuations
``##..`` are 0), and the [MASK] / random / unchanged split is honoured in every mode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from encoderlab.errors import ConfigError

_PLACEHOLDER = re.compile(r"^\[[^\]]+\]$")
SENTENCE_LABELS = ("next_sentence_label", "sentence_order_label")


def check_mlm_ratios(
    mlm_probability: float, mask_replace_prob: float, random_replace_prob: float, keep_prob: float | None = None
) -> float:
    """Validate the BERT masking knobs (names as in ``task.mlm.*``); returns the unchanged share: ``keep_prob``, or when
    it is None the rest of the two others."""
    if not 0.0 < mlm_probability < 1.0:
        raise ConfigError("task.mlm.mlm_probability", f"must be in (0, 1), got {mlm_probability}")
    if keep_prob is not None:
        ratios = (mask_replace_prob, random_replace_prob, keep_prob)
        if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
            raise ConfigError(
                "task.mlm.mask_replace_prob",
                "task.mlm.mask_replace_prob + task.mlm.random_replace_prob + task.mlm.keep_prob must sum to 1, "
                f"got {ratios[0]} + {ratios[1]} + {ratios[2]} = {sum(ratios):g}",
            )
        return keep_prob
    keep = 1.0 - mask_replace_prob - random_replace_prob
    if mask_replace_prob < 0 or random_replace_prob < 0 or keep < -1e-6:
        raise ConfigError(
            "task.mlm.mask_replace_prob",
            "task.mlm.mask_replace_prob and task.mlm.random_replace_prob must be >= 0 and sum to at most 1 "
            f"(the rest stays unchanged), got {mask_replace_prob} + {random_replace_prob}",
        )
    return max(keep, 0.0)


def mask_tokens(
    input_ids: torch.Tensor,
    candidates: torch.Tensor,
    mask_token_id: int,
    random_ids: torch.Tensor,
    mlm_probability: float,
    mask_replace_prob: float,
    random_replace_prob: float,
    word_start: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keep_prob: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Select ~``mlm_probability`` of the ``candidates`` and corrupt them; returns ``(inputs, labels)``.

    ``candidates`` is False at special tokens and padding, which are never selected. With ``word_start`` (whole-word
    masking) words are selected with probability ``mlm_probability`` and all their pieces go together, so the
    expected share of masked tokens stays ``mlm_probability``. Each selected token is then, independently,
    replaced by ``[MASK]`` / a random id from ``random_ids`` / left as is, with the configured probabilities
    (``keep_prob`` None: the rest of the other two).
    """
    inputs = input_ids.clone()
    labels = input_ids.clone()
    draw = torch.rand(inputs.shape, generator=generator)
    if word_start is None:
        selected = (draw < mlm_probability) & candidates
    else:
        # a word starts at a flagged token or right after a non-candidate (e.g. a block that opens mid-word)
        prev = torch.ones_like(candidates)
        prev[:, 1:] = candidates[:, :-1]
        starts = candidates & ((word_start > 0) | ~prev)
        word_id = torch.cumsum(starts.long(), dim=1) - 1
        chosen_word = torch.gather(draw, 1, word_id.clamp(min=0)) < mlm_probability
        selected = chosen_word & candidates
    labels[~selected] = -100
    how = torch.rand(inputs.shape, generator=generator)
    to_mask = selected & (how < mask_replace_prob)
    kept_from = mask_replace_prob + random_replace_prob if keep_prob is None else 1.0 - keep_prob
    to_random = selected & (how >= mask_replace_prob) & (how < kept_from)
    inputs[to_mask] = mask_token_id
    n_random = int(to_random.sum())
    if n_random:
        pick = torch.randint(len(random_ids), (n_random,), generator=generator)
        inputs[to_random] = random_ids[pick].to(inputs.dtype)
    return inputs, labels


def _pad(seqs: Sequence[Sequence[int]], n: int, fill: int) -> torch.Tensor:
    out = torch.full((len(seqs), n), fill, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class MLMCollator:
    """Pads a batch to its longest example and draws a fresh MLM mask (dynamic masking, RoBERTa section 4.1).

    Examples that already carry ``labels`` (static masking, fixed evaluation masks) pass through unmasked.
    ``token_type_ids`` and the NSP/SOP labels are passed on; ``word_start`` is used for whole-word masking and
    dropped. ``labels`` is -100 everywhere except at selected tokens.
    """

    def __init__(
        self,
        tokenizer,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        whole_word_mask: bool = False,
        pad_to_multiple_of: int | None = None,
        generator: torch.Generator | None = None,
        max_length: int | None = None,
        keep_prob: float | None = None,
    ):
        check_mlm_ratios(mlm_probability, mask_replace_prob, random_replace_prob, keep_prob)
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ConfigError("model.tokenizer_path", "masked-LM pre-training needs a tokenizer with [MASK] and [PAD]")
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.keep_prob = keep_prob  # None: the rest of the other two
        self.whole_word_mask = whole_word_mask
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_length = max_length  # set: always pad to it (speed.padding=max_length, the run_mlm baseline)
        self.generator = generator
        self.pad_token_id = tokenizer.pad_token_id
        self.mask_token_id = tokenizer.mask_token_id
        special = sorted(set(tokenizer.all_special_ids))
        self.special_ids = torch.tensor(special, dtype=torch.long)
        # random replacements are real tokens: never special, never a placeholder such as BERT's '[unused12]'
        keep = torch.ones(len(tokenizer), dtype=torch.bool)
        keep[self.special_ids[self.special_ids < len(tokenizer)]] = False
        for token, i in tokenizer.get_vocab().items():
            if i < len(keep) and _PLACEHOLDER.match(token):
                keep[i] = False
        self.random_ids = torch.nonzero(keep).flatten()

    def _length(self, longest: int) -> int:
        if self.max_length:
            longest = max(longest, self.max_length)
        if self.pad_to_multiple_of:
            return int(math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        return longest

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        n = self._length(max(len(e["input_ids"]) for e in examples))
        input_ids = _pad([e["input_ids"] for e in examples], n, self.pad_token_id)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        attention_mask = (torch.arange(n)[None, :] < lengths[:, None]).long()
        batch: dict[str, torch.Tensor] = {"attention_mask": attention_mask}
        first = examples[0]
        if "token_type_ids" in first:
            batch["token_type_ids"] = _pad([e["token_type_ids"] for e in examples], n, 0)
        for key in SENTENCE_LABELS:
            if key in first:
                batch[key] = torch.tensor([int(e[key]) for e in examples], dtype=torch.long)
        if "labels" in first:  # masked once at preprocessing time
            batch["input_ids"] = input_ids
            batch["labels"] = _pad([e["labels"] for e in examples], n, -100)
            return batch
        candidates = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids)
        word_start = None
        if self.whole_word_mask:
            if "word_start" not in first:
                raise ConfigError("task.mlm.whole_word_mask", "the preprocessed data has no 'word_start' column")
            word_start = _pad([e["word_start"] for e in examples], n, 0)
        batch["input_ids"], batch["labels"] = mask_tokens(
            input_ids,
            candidates,
            self.mask_token_id,
            self.random_ids,
            self.mlm_probability,
            self.mask_replace_prob,
            self.random_replace_prob,
            word_start=word_start,
            generator=self.generator,
            keep_prob=self.keep_prob,
        )
        return batch


__all__ = ["MLMCollator", "SENTENCE_LABELS", "check_mlm_ratios", "mask_tokens"]
