"""Pre-training examples from a document corpus: sentences → tokens (once) → instances by objective.

* ``objective: none`` / ``electra``, by ``packing``:
  ``blocks`` (run_mlm's ``group_texts``): the corpus is one stream (a ``[SEP]`` between documents) cut into blocks
  of exactly ``max_seq_length``, ``[CLS] ... [SEP]``, even mid-sentence: no padding, so no compute is spent on it.
  ``full_sentences`` (RoBERTa section 4.2 FULL-SENTENCES): whole sentences packed up to ``max_seq_length``,
  crossing document boundaries with a ``[SEP]``; a block ends before the sentence that would not fit.
  ``documents`` (RoBERTa DOC-SENTENCES): whole sentences of one document per example.
* ``nsp`` (BERT ``create_instances_from_document``): segments are filled with whole sentences up to a target
  length (shorter with ``short_seq_prob``); B is the true continuation half of the time, else a segment of another
  document; ``next_sentence_label`` 0 = is next, 1 = random (``BertForPreTraining``'s convention).
* ``sop`` (ALBERT): A and B are consecutive; swapped half of the time (``sentence_order_label`` 1 = swapped).

Two departures from BERT's script, both to make the labels mean what they say: a pair is truncated at A's front
and B's back, so the A|B boundary (the thing NSP/SOP judge) is never cut; and chunks always hold at least two
sentences, so "is next" is never forced to "random" and the labels stay balanced.
Documents with a single sentence cannot make a pair: NSP/SOP skip and count them (``stats[split]``).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence

import torch
from datasets import Dataset, DatasetDict, Features, Value
from datasets import Sequence as SeqFeature

from encoderlab.config.schema import OBJECTIVES, TaskConfig
from encoderlab.errors import ConfigError, DataError, check_choice
from encoderlab.kinds.pretraining.masking import MLMCollator, check_mlm_ratios, mask_tokens

log = logging.getLogger(__name__)

Doc = list[list[int]]  # sentences of encoded tokens: token_id * 2 + (1 if it starts a word)

_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'”’)\]])\s+")


def split_sentences(text: str) -> list[str]:
    """Lines, then sentence ends (``.!?`` + space). In cased text a break needs a non-lowercase next character,
    so 'U.S. officials' stays whole; in all-lowercase text every ``.!?`` + space breaks."""
    cased = any(c.isupper() for c in text)
    out = []
    for line in text.splitlines():
        parts = _BREAK.split(line.strip())
        current = ""
        for p in parts:
            if current and (not cased or not p[:1].islower()):
                out.append(current)
                current = p
            else:
                current = f"{current} {p}" if current else p
        if current.strip():
            out.append(current.strip())
    return out


def check_max_positions(task: TaskConfig, max_positions: int | None) -> None:
    if max_positions is not None and task.max_seq_length > max_positions:
        raise ConfigError(
            "task.max_seq_length",
            f"{task.max_seq_length} is above the model's position limit ({max_positions} position embeddings); "
            f"set task.max_seq_length <= {max_positions}",
        )


def tokenize_documents(ds: Dataset, tokenizer, batch_size: int = 256) -> Dataset:
    """One row per document, column ``sentences``: encoded tokens per sentence (``id * 2 + word_start``)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("model.tokenizer_path", "pre-training needs a fast tokenizer (word ids for whole words)")

    def encode(batch: dict) -> dict:
        sentences = [split_sentences(t) for t in batch["text"]]
        flat = [s for doc in sentences for s in doc]
        enc = tokenizer(flat, add_special_tokens=False) if flat else None
        coded, k = [], 0
        for doc in sentences:
            out = []
            for _ in doc:
                words = enc.word_ids(k)
                starts = [1 if j == 0 or w is None or w != words[j - 1] else 0 for j, w in enumerate(words)]
                sent = [i * 2 + s for i, s in zip(enc["input_ids"][k], starts, strict=True)]
                k += 1
                if sent:
                    out.append(sent)
            coded.append(out)
        return {"sentences": coded}

    return ds.map(encode, batched=True, batch_size=batch_size, remove_columns=ds.column_names, desc="tokenizing")


def _decode(tokens: Sequence[int]) -> tuple[list[int], list[int]]:
    return [t >> 1 for t in tokens], [t & 1 for t in tokens]


# ---------------------------------------------------------------------------------------------- instance builders


def pack_blocks(docs: Sequence[Doc], max_seq_length: int, sep: int) -> tuple[list[list[int]], int]:
    """Contiguous text across documents (``sep`` between them) cut into ``max_seq_length - 2`` token blocks.

    Returns the blocks' contents and how many trailing tokens were dropped (the last partial block, unless there
    is no full block at all, when it is kept so a tiny split still has an example).
    """
    size = max_seq_length - 2
    stream: list[int] = []
    for doc in docs:
        if stream:
            stream.append(sep * 2)
        for sent in doc:
            stream.extend(sent)
    full = len(stream) // size
    if full == 0:
        return ([stream] if stream else []), 0
    return [stream[i * size : (i + 1) * size] for i in range(full)], len(stream) - full * size


def pack_sentences(docs: Sequence[Doc], max_seq_length: int, sep: int) -> list[list[int]]:
    """Whole sentences up to ``max_seq_length - 2`` tokens, crossing documents (``sep`` between them): RoBERTa's
    FULL-SENTENCES. A sentence longer than a block is cut; a block never starts with a document separator."""
    size = max_seq_length - 2
    blocks: list[list[int]] = []
    current: list[int] = []
    for d, doc in enumerate(docs):
        for s, sent in enumerate(doc):
            piece = ([sep * 2] if d and s == 0 and current else []) + list(sent)
            if current and len(current) + len(piece) > size:
                blocks.append(current)
                current, piece = [], list(sent)
            current.extend(piece)
            while len(current) > size:
                blocks.append(current[:size])
                current = current[size:]
    if current:
        blocks.append(current)
    return blocks


def chunk_documents(docs: Sequence[Doc], max_seq_length: int) -> list[list[int]]:
    """Whole sentences of one document per chunk, up to ``max_seq_length - 2`` tokens (a longer sentence is cut)."""
    size = max_seq_length - 2
    chunks = []
    for doc in docs:
        current: list[int] = []
        for sent in doc:
            if current and len(current) + len(sent) > size:
                chunks.append(current)
                current = []
            current.extend(sent)
            while len(current) > size:
                chunks.append(current[:size])
                current = current[size:]
        if current:
            chunks.append(current)
    return chunks


def _truncate_pair(a: list, b: list, max_tokens: int) -> tuple[list, list]:
    """Trim the longer side first, A from its front and B from its back, so the A|B boundary stays intact."""
    la, lb = len(a), len(b)
    while la + lb > max_tokens:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    return a[len(a) - la :], b[:lb]


def pair_instances(
    docs: Sequence[Doc],
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    objective: str,
    pool: Sequence[Doc] | None = None,
) -> list[tuple[list[int], list[int], int]]:
    """NSP or SOP ``(A, B, label)`` from every document with two or more sentences.

    ``pool`` supplies NSP's random segments (default: ``docs``); a separate pool is for splits too small to have
    another document.
    """
    max_tokens = max_seq_length - 3
    own_pool = pool is None
    pool = docs if pool is None else pool
    out = []
    for d, document in enumerate(docs):
        if len(document) < 2:
            continue
        last = len(document) - 1
        target = max_tokens if rng.random() >= short_seq_prob else rng.randint(2, max_tokens)
        chunk: list[list[int]] = []
        length, i = 0, 0
        while i <= last:
            chunk.append(document[i])
            length += len(document[i])
            # close at the end, or at the target once the chunk has two sentences and would not strand a last one
            if i == last or (length >= target and len(chunk) >= 2 and i != last - 1):
                a_end = rng.randint(1, len(chunk) - 1)
                a = [t for s in chunk[:a_end] for t in s]
                if objective == "nsp" and rng.random() < 0.5:
                    label = 1
                    b: list[int] = []
                    other = document
                    for _ in range(10):
                        r = rng.randrange(len(pool))
                        other = pool[r]
                        if (not own_pool or r != d) and other:
                            break
                    start = rng.randrange(len(other))
                    for s in other[start:]:
                        b.extend(s)
                        if len(b) >= target - len(a):
                            break
                    unused = len(chunk) - a_end
                    if i - unused + 1 < last:  # put the unused sentences back, unless only one would be left
                        i -= unused
                else:
                    b = [t for s in chunk[a_end:] for t in s]
                    label = 0
                a, b = _truncate_pair(a, b, max_tokens)  # in text order, so the boundary survives a swap
                if objective == "sop" and rng.random() < 0.5:
                    a, b, label = b, a, 1
                if a and b:
                    out.append((a, b, label))
                chunk, length = [], 0
                target = max_tokens if rng.random() >= short_seq_prob else rng.randint(2, max_tokens)
            i += 1
    return out


# ----------------------------------------------------------------------------------------------------- the pipeline


def _features(objective: str, word_start: bool, static: bool) -> Features:
    f = {"input_ids": SeqFeature(Value("int32"))}
    if objective in ("nsp", "sop"):
        f["token_type_ids"] = SeqFeature(Value("int8"))
        f["next_sentence_label" if objective == "nsp" else "sentence_order_label"] = Value("int8")
    if word_start:
        f["word_start"] = SeqFeature(Value("int8"))
    if static:
        f["labels"] = SeqFeature(Value("int32"))
    return Features(f)


def _static_mask(rows: dict, tokenizer, task: TaskConfig, seed: int, chunk: int = 512) -> None:
    """Draw masks once (RoBERTa's static masking; also every evaluation split, so its loss is comparable)."""
    collator = MLMCollator(
        tokenizer,
        task.mlm.mlm_probability,
        task.mlm.mask_replace_prob,
        task.mlm.random_replace_prob,
        whole_word_mask=task.mlm.whole_word_mask,
        keep_prob=task.mlm.keep_prob,
    )
    g = torch.Generator().manual_seed(seed)
    ids_all, ws_all = rows["input_ids"], rows.get("word_start")
    new_ids, labels = [], []
    for lo in range(0, len(ids_all), chunk):
        ids = ids_all[lo : lo + chunk]
        n = max(len(x) for x in ids)
        lens = torch.tensor([len(x) for x in ids])
        t = torch.full((len(ids), n), collator.pad_token_id, dtype=torch.long)
        for j, x in enumerate(ids):
            t[j, : len(x)] = torch.tensor(x)
        valid = torch.arange(n)[None, :] < lens[:, None]
        ws = None
        if ws_all is not None:
            ws = torch.zeros_like(t)
            for j, x in enumerate(ws_all[lo : lo + chunk]):
                ws[j, : len(x)] = torch.tensor(x)
        masked, lab = mask_tokens(
            t,
            valid & ~torch.isin(t, collator.special_ids),
            collator.mask_token_id,
            collator.random_ids,
            task.mlm.mlm_probability,
            task.mlm.mask_replace_prob,
            task.mlm.random_replace_prob,
            word_start=ws,
            generator=g,
            keep_prob=task.mlm.keep_prob,
        )
        for j, length in enumerate(lens.tolist()):
            new_ids.append(masked[j, :length].tolist())
            labels.append(lab[j, :length].tolist())
    rows["input_ids"], rows["labels"] = new_ids, labels


def _build_split(
    docs: list[Doc],
    pool: list[Doc] | None,
    tokenizer,
    task: TaskConfig,
    seed: int,
    static: bool,
) -> tuple[Dataset, dict]:
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    keep_words = task.mlm.whole_word_mask
    rows: dict[str, list] = {"input_ids": []}
    if keep_words:
        rows["word_start"] = []
    stats = {"documents": len(docs), "skipped_single_sentence_documents": 0, "dropped_tokens": 0}
    if task.mlm.objective in ("none", "electra"):
        if task.mlm.packing == "blocks":
            contents, stats["dropped_tokens"] = pack_blocks(docs, task.max_seq_length, sep)
        elif task.mlm.packing == "full_sentences":
            contents = pack_sentences(docs, task.max_seq_length, sep)
        else:
            contents = chunk_documents(docs, task.max_seq_length)
        for c in contents:
            ids, ws = _decode(c)
            rows["input_ids"].append([cls, *ids, sep])
            if keep_words:
                rows["word_start"].append([0, *ws, 0])
    else:
        stats["skipped_single_sentence_documents"] = sum(1 for d in docs if len(d) < 2)
        label_key = "next_sentence_label" if task.mlm.objective == "nsp" else "sentence_order_label"
        rows["token_type_ids"], rows[label_key] = [], []
        pairs = pair_instances(
            docs, task.max_seq_length, task.mlm.short_seq_prob, random.Random(seed), task.mlm.objective, pool
        )
        for a, b, label in pairs:
            ia, wa = _decode(a)
            ib, wb = _decode(b)
            rows["input_ids"].append([cls, *ia, sep, *ib, sep])
            rows["token_type_ids"].append([0] * (len(ia) + 2) + [1] * (len(ib) + 1))
            rows[label_key].append(label)
            if keep_words:
                rows["word_start"].append([0, *wa, 0, *wb, 0])
    if static:
        _static_mask(rows, tokenizer, task, seed)
    if keep_words and static:
        rows.pop("word_start")
    stats["examples"] = len(rows["input_ids"])
    stats["tokens"] = sum(len(x) for x in rows["input_ids"])
    return Dataset.from_dict(rows, features=_features(task.mlm.objective, keep_words and not static, static)), stats


def preprocess_pretraining(
    raw: DatasetDict,
    tokenizer,
    task: TaskConfig,
    max_positions: int | None = None,
    seed: int | None = None,
) -> tuple[DatasetDict, dict[str, dict[str, int]]]:
    """Corpus splits (column ``text``, one row per document) → pre-training examples, plus per-split stats.

    Train is masked in the collator (dynamic) unless ``task.mlm.dynamic_masking`` is false; validation and test are
    always masked once, with a fixed seed, so their loss is comparable across epochs and runs.
    Stats per split: documents, skipped_single_sentence_documents, examples, tokens, dropped_tokens.
    """
    check_max_positions(task, max_positions)
    check_mlm_ratios(
        task.mlm.mlm_probability, task.mlm.mask_replace_prob, task.mlm.random_replace_prob, task.mlm.keep_prob
    )
    check_choice("task.mlm.objective", task.mlm.objective, OBJECTIVES)
    seed = task.split_seed if seed is None else seed
    tokenized = {name: tokenize_documents(d, tokenizer).data.column("sentences").to_pylist() for name, d in raw.items()}
    out, stats = {}, {}
    train_docs = tokenized.get("train")
    for k, (name, docs) in enumerate(tokenized.items()):
        eligible = [d for d in docs if len(d) >= 2]
        pool = None
        if task.mlm.objective == "nsp" and len([d for d in docs if d]) < 2:
            pool = train_docs  # a one-document split draws its random segments from train
        static = name != "train" or not task.mlm.dynamic_masking
        out[name], stats[name] = _build_split(docs, pool, tokenizer, task, seed + 1000 * k, static)
        skipped = stats[name]["skipped_single_sentence_documents"]
        if task.mlm.objective in ("nsp", "sop") and skipped:
            log.warning(
                "%s: skipped %d of %d documents with a single sentence (%s needs two segments)",
                name,
                skipped,
                len(docs),
                task.mlm.objective.upper(),
            )
        if stats[name]["examples"] == 0:
            raise DataError(
                f"the {name} split of task '{task.name}' gives no {task.mlm.objective} pre-training example: "
                f"{len(docs)} document(s), {len(eligible)} with two or more sentences"
                + (
                    " (NSP/SOP need documents of at least two sentences)"
                    if task.mlm.objective in ("nsp", "sop")
                    else ""
                )
                + ("; hold out more documents with task.mlm.validation_documents" if name != "train" else "")
            )
    return DatasetDict(out), stats


__all__ = [
    "check_max_positions",
    "chunk_documents",
    "pack_blocks",
    "pack_sentences",
    "pair_instances",
    "preprocess_pretraining",
    "split_sentences",
    "tokenize_documents",
]
