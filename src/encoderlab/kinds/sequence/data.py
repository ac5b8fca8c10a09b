"""Sequence classification and regression: check columns and labels, then tokenize (no padding)."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
from datasets import ClassLabel, DatasetDict

from encoderlab.config.schema import RunConfig, TaskConfig
from encoderlab.data import cache as data_cache
from encoderlab.data.collate import pad_collator
from encoderlab.data.sources import cv_fingerprint, load_raw
from encoderlab.errors import ConfigError, DataError, choices
from encoderlab.kinds.base import Prepared


def _check_columns(ds: datasets.Dataset, task: TaskConfig, split: str) -> None:
    cols = ds.column_names
    for i, f in enumerate(task.text_fields):
        if f not in cols:
            raise DataError(
                f"task '{task.name}': text column '{f}' (task.text_fields[{i}]) is not in the {split} data; "
                f"columns found: {choices(cols)}"
            )
    if task.label_field not in cols:
        raise DataError(
            f"task '{task.name}': label column '{task.label_field}' (task.label_field) is not in the {split} data; "
            f"columns found: {choices(cols)}"
        )


def label_names_of(raw: DatasetDict, task: TaskConfig) -> list[str]:
    """The declared label names, or those of a ClassLabel column when the task declares none."""
    if task.label_names:
        return [str(n) for n in task.label_names]
    feat = raw["train"].features.get(task.label_field)
    if isinstance(feat, ClassLabel):
        return list(feat.names)
    raise ConfigError(
        "task.label_names",
        f"task '{task.name}' has no declared labels and column '{task.label_field}' carries no names; "
        "list them, e.g. task.label_names=[negative,positive]",
    )


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _label_id(value, to_id: dict[str, int], n: int) -> int | None:
    """The id of a label given by name, or by its index 0..n-1 when the names are not numbers themselves.

    With names such as ``[1, 2, 3, 4, 5]`` (star ratings) a value is always a name: 0 is then an error,
    not the first label.
    """
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    if isinstance(value, float) and value.is_integer():  # an int column with a blank cell reads as floats
        value = int(value)
    key = str(value).strip()
    if key in to_id:
        return to_id[key]
    if _is_int(key) and not any(_is_int(name) for name in to_id) and 0 <= int(key) < n:
        return int(key)
    return None


def _excerpt(ds: datasets.Dataset, row: int, task: TaskConfig) -> str:
    """The row's text, so the user can find it in the file (rows are counted after splitting)."""
    text = " | ".join(str(ds[row][f]) for f in task.text_fields)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _encode_labels(ds: datasets.Dataset, task: TaskConfig, names: list[str], split: str) -> datasets.Dataset:
    """Map label values to ids; a value outside the declared set names the row and the key."""
    feat = ds.features[task.label_field]
    values = list(ds[task.label_field])
    if isinstance(feat, ClassLabel):  # translate through the strings, the declared order may differ
        values = [feat.names[v] if v is not None and v >= 0 else None for v in values]
    to_id = {n: i for i, n in enumerate(names)}
    ids = []
    for row, v in enumerate(values):
        i = _label_id(v, to_id, len(names))
        if i is None:
            if v is None or (isinstance(v, float) and v != v):
                raise DataError(
                    f"task '{task.name}', {split} row {row} (text {_excerpt(ds, row, task)}): no label in column "
                    f"'{task.label_field}'; if the whole "
                    f"split is unlabelled (GLUE test sets are), set task.{split}_split to another split or to null "
                    "to carve it out of train"
                )
            raise DataError(
                f"task '{task.name}', {split} row {row} (text {_excerpt(ds, row, task)}): label {v!r} in column "
                f"'{task.label_field}' is not one of task.label_names ({choices(names)}); fix the data or add it "
                "to task.label_names"
            )
        ids.append(i)
    return ds.remove_columns(task.label_field).add_column("labels", ids)


def _encode_regression(ds: datasets.Dataset, task: TaskConfig, split: str) -> datasets.Dataset:
    out = []
    for row, v in enumerate(ds[task.label_field]):
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x):  # a blank cell reads as NaN, and one NaN target makes every loss NaN
            raise DataError(
                f"task '{task.name}', {split} row {row} (text {_excerpt(ds, row, task)}): target {v!r} in column "
                f"'{task.label_field}' is not a number"
            )
        out.append(x)
    return ds.remove_columns(task.label_field).add_column("labels", out)


def _check_classes(train: datasets.Dataset, task: TaskConfig, names: list[str]) -> None:
    """A training split with a single label teaches nothing: usually the wrong column or a sorted, cut file."""
    seen = set(train["labels"])
    if len(names) > 1 and len(seen) == 1:
        (only,) = seen
        raise DataError(
            f"task '{task.name}': every train row has label {names[only]!r} in column '{task.label_field}'; a "
            f"classifier needs rows of at least 2 of task.label_names ({choices(names)}): check the data file "
            "and task.label_field"
        )


def prepare_labels(raw: DatasetDict, task: TaskConfig) -> tuple[DatasetDict, list[str] | None]:
    """Check columns, drop rows with empty text, and turn labels into ``labels`` ids / floats."""
    names = label_names_of(raw, task) if task.kind == "sequence_classification" else None
    out = {}
    for split, ds in raw.items():
        _check_columns(ds, task, split)
        ds = ds.filter(lambda ex: all(ex[f] is not None and str(ex[f]).strip() for f in task.text_fields))
        if len(ds) == 0:
            raise DataError(
                f"task '{task.name}': the {split} split is empty after dropping rows with empty text "
                f"in {choices(task.text_fields)}"
            )
        if names is not None:
            ds = _encode_labels(ds, task, names, split)
            if split == "train":
                _check_classes(ds, task, names)
        else:
            ds = _encode_regression(ds, task, split)
        out[split] = ds
    return DatasetDict(out), names


def tokenize(raw: DatasetDict, tokenizer, task: TaskConfig, pad_to_max: bool = False) -> DatasetDict:
    """Tokenize once, truncating to ``task.max_seq_length``; padding happens per batch in the collator."""
    if task.long_text != "head":  # tail, head_tail, chunks
        from encoderlab.kinds.sequence.long_text import tokenize_long

        return tokenize_long(raw, tokenizer, task)
    fields = task.text_fields

    def fn(batch):
        args = [batch[f] for f in fields]
        return tokenizer(
            *[[str(t) for t in a] for a in args],
            truncation=True,
            max_length=task.max_seq_length,
            padding="max_length" if pad_to_max else False,
        )

    keep = {"labels"}
    return DatasetDict(
        {
            split: ds.map(fn, batched=True, remove_columns=[c for c in ds.column_names if c not in keep])
            for split, ds in raw.items()
        }
    )


def prepare(run: RunConfig, tokenizer, cache_root: Path | None) -> Prepared:
    task = run.task

    def build():
        labeled, names = prepare_labels(load_raw(task, run.cv), task)
        tok = tokenize(labeled, tokenizer, task)
        return tok, {"label_names": names, "sizes": {k: len(v) for k, v in tok.items()}}

    key = data_cache.fingerprint(task, tokenizer, **cv_fingerprint(run.cv))
    ds, meta = data_cache.cached(cache_root, f"{task.kind}-{task.name}", key, build)
    meta["data_key"] = key
    collator = pad_collator(run, tokenizer)
    if task.long_text == "chunks":  # documents of several windows each
        from encoderlab.kinds.sequence.long_text import ChunkCollator

        collator = ChunkCollator(collator)
    return Prepared(datasets=ds, collator=collator, meta=meta)
