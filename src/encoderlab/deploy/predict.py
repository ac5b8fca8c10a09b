"""Rows of text in, predictions out: reading input files, the kind's own prediction, writing.

What a prediction is belongs to the kind the model was trained for (``Kind.serving``, in ``kinds/<kind>/serving.py``,
built on :mod:`encoderlab.deploy.base`): its columns, its tokenization and its post-processing, which reuse the
training code (word-level tags and entities as NER is scored, answer spans as QA is evaluated). Batches are
length-sorted (least padding) and the results go back to input order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

from encoderlab.deploy.base import PROGRESS_MIN_ROWS, Columns  # noqa: F401  (importable from here, as before)
from encoderlab.deploy.served import Served
from encoderlab.errors import DataError
from encoderlab.kinds import Serving, get_kind

INPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".txt": "txt"}
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}


# ---------------------------------------------------------------- input


def _decode(raw: bytes, name: str, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"input '{name}' is not valid {encoding} (byte {e.start}, line {line}); pass its encoding, "
            "e.g. --encoding latin-1"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (--encoding)") from None
    return text.lstrip("\ufeff")


def input_format(path: str, text: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":  # stdin: JSON lines when it starts like an object, else one text per line
        return "jsonl" if text.lstrip().startswith("{") else "txt"
    found = INPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise DataError(
            f"cannot tell the format of '{path}' from its extension; pass --format "
            f"({', '.join(sorted(set(INPUT_FORMATS.values())))})"
        )
    return found


def read_input(path: str, fmt: str | None = None, encoding: str = "utf-8") -> list[dict]:
    """Rows (dicts) of a csv / tsv / jsonl / json / txt file, or of stdin (``-``)."""
    name = "stdin" if path == "-" else path
    if path == "-":
        raw = sys.stdin.buffer.read()
    else:
        p = Path(os.path.expanduser(path))
        if not p.is_file():
            raise DataError(
                f"input file '{p}' does not exist (--input)"
                if not p.exists()
                else f"input '{p}' is a folder, not a file (--input)"
            )
        raw = p.read_bytes()
    text = _decode(raw, name, encoding)
    if not text.strip():
        raise DataError(f"input '{name}' is empty: there is nothing to predict (--input)")
    fmt = input_format(path, text, fmt)
    if fmt in ("csv", "tsv"):
        import pandas as pd

        try:
            df = pd.read_csv(io.StringIO(text), sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False)
        except pd.errors.ParserError as e:
            raise DataError(f"cannot parse '{name}' as {fmt}: {str(e).strip()} (--format)") from None
        df.columns = [str(c).strip() for c in df.columns]
        rows = df.to_dict("records")
    elif fmt == "jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"'{name}' line {i} is not valid JSON: {e.msg} (--format)") from None
            rows.append(obj if isinstance(obj, dict) else {"text": obj})
    elif fmt == "json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"'{name}' is not valid JSON (line {e.lineno}): {e.msg} (--format)") from None
        if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
            raise DataError(f"'{name}' must hold a JSON list of objects, one per row (or use --format jsonl)")
        rows = obj
    elif fmt == "txt":
        rows = [{"text": line} for line in text.splitlines() if line.strip()]
    else:
        raise DataError(f"unknown input format {fmt!r} (--format); allowed: csv, tsv, jsonl, json, txt")
    if not rows:
        raise DataError(f"input '{name}' has no rows: there is nothing to predict (--input)")
    return rows


# ---------------------------------------------------------------- predicting


def serving_of(served: Served) -> Serving:
    """The serving of the kind the folder holds (``kinds/<kind>/serving.py``), by the kind name its export stores."""
    return get_kind(served.kind).serving


def resolve_columns(served: Served, rows: list[dict], given: Columns) -> Columns:
    """The columns to read: as given, else the run's own field names, else the usual names."""
    return serving_of(served).columns(served, rows, given)


def predict_rows(
    served: Served, rows: list[dict], columns: Columns | None = None, batch_size: int = 32, progress: bool = True
) -> list[dict]:
    """One prediction per row, in input order."""
    serving = serving_of(served)
    cols = serving.columns(served, rows, columns or Columns())
    return serving.predict(served, rows, cols, batch_size, progress)


def predict_sequences(served: Served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[dict]:
    """Predictions of a sequence classification or regression model (its kind's serving)."""
    return serving_of(served).predict(served, rows, cols, batch_size, progress)


# ---------------------------------------------------------------- output


def _flat(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k == "probabilities":
            out |= {f"p_{name}": p for name, p in v.items()}
        elif isinstance(v, (list, dict)):
            out[k] = json.dumps(v, ensure_ascii=False)
        else:
            out[k] = v
    return out


def render(results: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    flat = [_flat(r) for r in results]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]) if flat else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def output_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "jsonl"
    found = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise DataError(f"cannot tell the output format of '{path}'; name it .jsonl or .csv (or pass --output-format)")
    return found


def write_output(path: str, text: str) -> None:
    """stdout for ``-``; else a temporary file beside the target, renamed over it when complete."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(os.path.expanduser(path))
    if not target.parent.is_dir():
        raise DataError(f"output folder '{target.parent}' does not exist (--output)")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
