"""Readers for tabular user files: csv, tsv, json, jsonl, parquet.

A user adds a dataset with one YAML file naming the files and columns; these readers turn the file into a
``datasets.Dataset`` and turn the usual mistakes (wrong encoding, unreadable row) into errors that name the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset

from encoderlab.config.schema import TaskConfig
from encoderlab.data.sources import register_format
from encoderlab.errors import DataError


def read_text(path: Path, task: TaskConfig) -> str:
    """The whole file as text; a non-UTF-8 file without ``task.encoding`` is an error, not mojibake."""
    encoding = task.encoding or "utf-8"
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(
            f"'{path}' is not valid {encoding} (byte {e.start}, line {line}); set task.encoding to the file's "
            "encoding, e.g. task.encoding=latin-1"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} in task.encoding") from None


def _frame_to_dataset(df, path: Path) -> Dataset:
    if len(df.columns) == 0:
        raise DataError(f"'{path}' has no columns")
    df.columns = [str(c).strip() for c in df.columns]
    return Dataset.from_pandas(df, preserve_index=False)


def _read_delimited(path: Path, task: TaskConfig, sep: str) -> Dataset:
    import io

    import pandas as pd

    text = read_text(path, task)
    try:
        df = pd.read_csv(io.StringIO(text), sep=task.delimiter or sep, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as e:
        raise DataError(f"cannot parse '{path}': {str(e).strip()} (check task.delimiter / task.format)") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path}' is empty") from None
    return _frame_to_dataset(df, path)


@register_format("csv")
def read_csv(path: Path, task: TaskConfig) -> Dataset:
    return _read_delimited(path, task, ",")


@register_format("tsv")
def read_tsv(path: Path, task: TaskConfig) -> Dataset:
    return _read_delimited(path, task, "\t")


@register_format("jsonl")
def read_jsonl(path: Path, task: TaskConfig) -> Dataset:
    rows = []
    for i, line in enumerate(read_text(path, task).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"'{path}' line {i} is not valid JSON: {e.msg}") from None
    if not rows:
        raise DataError(f"'{path}' has no rows")
    return Dataset.from_list(rows)


@register_format("json")
def read_json(path: Path, task: TaskConfig) -> Dataset:
    """A JSON list of objects, or an object with a ``data`` list (SQuAD files use format 'squad')."""
    try:
        obj = json.loads(read_text(path, task))
    except json.JSONDecodeError as e:
        raise DataError(f"'{path}' is not valid JSON (line {e.lineno}): {e.msg}") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"'{path}' must hold a JSON list of objects (one per example), or use task.format=jsonl")
    if not obj:
        raise DataError(f"'{path}' has no rows")
    return Dataset.from_list(obj)


@register_format("parquet")
def read_parquet(path: Path, task: TaskConfig) -> Dataset:
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise DataError(f"cannot read parquet file '{path}': {e}") from None
    return _frame_to_dataset(df, path)
