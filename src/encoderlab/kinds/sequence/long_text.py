"""Texts longer than ``task.max_seq_length``: which tokens the model sees (``task.long_text``).

- ``head``: the first tokens (plain truncation, the default);
- ``tail``: the last tokens;
- ``head_tail``: the first ``task.head_tokens`` (default: a quarter of ``max_seq_length``) and the last ones
  (Sun et al. 2019, Table 2: head 128 + tail 382 was best on IMDb);
- ``chunks``: every token, in windows of ``max_seq_length`` that overlap by ``task.chunk_stride`` tokens; the model
  scores each window and a document's logits are the mean or max of its windows' (``task.chunk_pooling``), in
  training and evaluation alike. A row then holds a list of windows per field; :class:`ChunkCollator` flattens a
  batch of documents into windows and records which document each belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import DatasetDict

from encoderlab.config.schema import TaskConfig
from encoderlab.data.collate import PadCollator

MODEL_FIELDS = ("input_ids", "attention_mask", "token_type_ids")


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """(prefix, suffix) that the tokenizer wraps around one sequence: ([CLS], [SEP]) for BERT, (<s>, </s>) for
    RoBERTa. transformers 5 has no ``build_inputs_with_special_tokens``, so they are read off a one-token text."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(inner) + 1):
        if full[i : i + len(inner)] == inner:
            return full[:i], full[i + len(inner) :]
    return full, []


def clip(ids: Sequence[int], mode: str, budget: int, head_tokens: int) -> list[int]:
    """At most ``budget`` of ``ids``: the head, the tail, or ``head_tokens`` of the head plus the rest of the tail."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if mode == "tail":
        return ids[len(ids) - budget :]
    if mode == "head_tail":
        tail = budget - head_tokens
        return ids[:head_tokens] + (ids[len(ids) - tail :] if tail > 0 else [])
    return ids[:budget]


def tokenize_long(raw: DatasetDict, tokenizer, task: TaskConfig) -> DatasetDict:
    """Tokenize one text field per ``task.long_text`` (``head`` is the plain tokenizer's truncation)."""
    field = task.text_fields[0]
    prefix, suffix = _special_tokens(tokenizer)
    budget = task.max_seq_length - len(prefix) - len(suffix)

    def clipped(batch):
        ids = tokenizer([str(t) for t in batch[field]], add_special_tokens=False, truncation=False)["input_ids"]
        out = [prefix + clip(x, task.long_text, budget, task.head_token_count) + suffix for x in ids]
        return {
            "input_ids": out,
            "attention_mask": [[1] * len(x) for x in out],
            "token_type_ids": [[0] * len(x) for x in out],
        }

    def chunked(batch):
        enc = tokenizer(
            [str(t) for t in batch[field]],
            truncation=True,
            max_length=task.max_seq_length,
            stride=task.chunk_stride,
            return_overflowing_tokens=True,
        )
        docs: dict[str, list[list]] = {k: [[] for _ in batch[field]] for k in MODEL_FIELDS if k in enc}
        for row, doc in enumerate(enc["overflow_to_sample_mapping"]):
            for k in docs:
                docs[k][doc].append(enc[k][row])
        return docs

    fn = chunked if task.long_text == "chunks" else clipped
    return DatasetDict(
        {
            split: ds.map(fn, batched=True, remove_columns=[c for c in ds.column_names if c != "labels"])
            for split, ds in raw.items()
        }
    )


class ChunkCollator:
    """Documents (lists of windows) -> one batch of windows, ``chunk_doc`` (the document of each window) and one
    label per document."""

    def __init__(self, pad: PadCollator):
        self.pad = pad

    def __call__(self, docs: Sequence[dict]) -> dict[str, torch.Tensor]:
        windows, owner = [], []
        for d, doc in enumerate(docs):
            for c in range(len(doc["input_ids"])):
                windows.append({k: doc[k][c] for k in MODEL_FIELDS if k in doc})
                owner.append(d)
        batch = self.pad(windows)
        batch["chunk_doc"] = torch.as_tensor(owner)
        if "labels" in docs[0]:
            batch["labels"] = torch.as_tensor([doc["labels"] for doc in docs])
        return batch


def pool_chunks(logits: torch.Tensor, owner: torch.Tensor, n_docs: int, how: str) -> torch.Tensor:
    """Per-document logits ``[n_docs, C]`` from per-window logits ``[windows, C]``: their mean or max."""
    index = owner.to(logits.device).unsqueeze(-1).expand_as(logits)
    out = torch.zeros(n_docs, logits.shape[-1], dtype=logits.dtype, device=logits.device)
    if how == "max":
        return out.scatter_reduce(0, index, logits, reduce="amax", include_self=False)
    return out.scatter_reduce(0, index, logits, reduce="mean", include_self=False)


SERVING_FILE = "long_text.json"  # in hf/: the run's task.long_text settings, so a bare hf/ folder is served as trained


def write_serving_settings(task: TaskConfig, out: Path) -> None:
    """``out/long_text.json`` (none for ``head``, plain truncation): the settings :func:`serving_features` needs."""
    if task.long_text == "head":
        return
    keys = {"long_text": task.long_text, "max_seq_length": task.max_seq_length, "head_tokens": task.head_token_count}
    settings = keys | {"chunk_stride": task.chunk_stride, "chunk_pooling": task.chunk_pooling}
    (out / SERVING_FILE).write_text(json.dumps(settings, indent=1))  # out: the export's folder before its swap-in


def read_serving_settings(folder: Path) -> dict | None:
    """The settings :func:`write_serving_settings` put in an export folder; None where it has none."""
    f = Path(folder) / SERVING_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def serving_features(tokenizer, texts: list[str], task: dict) -> tuple[list[dict], list[int] | None]:
    """What a served model of a run with ``task.long_text`` (``task``: the run's task settings) sees, as in its
    training: each text clipped the same way, or (``chunks``) every window, with the index of the text it belongs to
    (pool the windows' logits with :func:`pool_chunks` and the run's ``chunk_pooling``)."""
    mode, max_len = task["long_text"], int(task["max_seq_length"])
    if mode == "chunks":
        stride = int(task.get("chunk_stride") or 0)
        kw = {"truncation": True, "max_length": max_len, "stride": stride, "return_overflowing_tokens": True}
        enc = tokenizer(texts, **kw)
        rows = [{k: enc[k][i] for k in MODEL_FIELDS if k in enc} for i in range(len(enc["input_ids"]))]
        return rows, list(enc["overflow_to_sample_mapping"])
    prefix, suffix = _special_tokens(tokenizer)
    head = task.get("head_tokens") or max_len // 4
    ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    out = [prefix + clip(x, mode, max_len - len(prefix) - len(suffix), head) + suffix for x in ids]
    return [{"input_ids": x, "attention_mask": [1] * len(x), "token_type_ids": [0] * len(x)} for x in out], None
