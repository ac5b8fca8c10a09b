"""What every kind's serving (``kinds/<kind>/serving.py``) builds on: the error a bad folder or option raises, the
saved run config, the input columns, and running a model over tokenized rows in length-sorted batches.

Nothing here knows a kind: each kind's :class:`~encoderlab.kinds.base.Serving` says which columns it reads, how it
tokenizes them and what a prediction is; :mod:`encoderlab.deploy.predict` looks the kind up by the name an export
stores and calls it.
"""

from __future__ import annotations

import copy
import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from encoderlab.data.collate import PadCollator, sorted_batches
from encoderlab.errors import DataError, EncoderlabError

DEPLOY_FILE = "deploy.json"  # what an ONNX folder serves: kind, labels, lengths, QA settings, input names

if TYPE_CHECKING:
    from encoderlab.deploy.served import Served

PROGRESS_MIN_ROWS = 1000  # a progress bar for inputs at least this long


class ServeError(EncoderlabError):
    """The model folder, the backend or the options do not fit together."""


def read_run_config(run_dir: Path) -> dict:
    """The run's saved config (unresolved), read once per version of the file: a served model asks for it on every
    predict call, and parsing the YAML each time cost more than a batch-1 forward pass."""
    f = run_dir / ".hydra" / "config.yaml"
    try:
        stamp = f.stat().st_mtime_ns
    except OSError:
        return {}
    return copy.deepcopy(_load_config(str(f), stamp))


@functools.lru_cache(maxsize=16)
def _load_config(path: str, stamp: int) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]


# ---------------------------------------------------------------- columns


@dataclass
class Columns:
    text: str | None = None
    text_pair: str | None = None
    question: str | None = None
    context: str | None = None


def columns_of(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows[:100]:
        seen.update(dict.fromkeys(r))
    return list(seen)


def pick(rows: list[dict], given: str | None, candidates: Sequence[str | None], option: str) -> str:
    cols = columns_of(rows)
    if given is not None:
        if given not in cols:
            raise DataError(f"column '{given}' ({option}) is not in the input; columns found: {', '.join(cols)}")
        return given
    for c in candidates:
        if c and c in cols:
            return c
    wanted = " or ".join(repr(c) for c in dict.fromkeys(c for c in candidates if c))
    raise DataError(
        f"the input has no column {wanted}; name the column to read with {option} (columns found: {', '.join(cols)})"
    )


def task_field(task: dict, section: str, key: str):
    """``task.<section>.<key>`` of a saved run config (runs saved before the per-kind sections: ``task.<key>``)."""
    return (task.get(section) or {}).get(key, task.get(key))


def value(row: dict, col: str, i: int, option: str) -> Any:
    v = row.get(col)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        raise DataError(f"row {i + 1}: no value in column '{col}' ({option}); fill it or drop the row")
    return v


def refuse(given: Columns, options: dict[str, str], why: str) -> None:
    """A ServeError naming the first of ``options`` (attribute of :class:`Columns` -> its flag) that was given."""
    for attr, opt in options.items():
        if getattr(given, attr) is not None:
            raise ServeError(f"{opt} does not apply: {why}")


# ---------------------------------------------------------------- running the model


def run_features(
    served: Served, features: list[dict], batch_size: int, token_level: bool, progress: bool
) -> list[np.ndarray]:
    """Logits per feature, in input order: ``[labels]`` per sequence, ``[its tokens, labels]`` per token."""
    lengths = [len(f["input_ids"]) for f in features]
    collate = PadCollator(served.tokenizer.pad_token_id or 0)
    batches = sorted_batches(lengths, batch_size)
    out: list[np.ndarray] = [np.empty(0)] * len(features)
    bar = None
    if progress and len(features) >= PROGRESS_MIN_ROWS:
        from tqdm import tqdm

        bar = tqdm(total=len(features), unit="rows", desc="predicting", file=sys.stderr)
    for idx in batches:
        batch = collate([{k: features[i][k] for k in served.input_names} for i in idx])
        logits = served.backend({k: v.numpy() for k, v in batch.items()})
        for j, i in enumerate(idx):
            out[i] = logits[j, : lengths[i]] if token_level else logits[j]
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def encode(served: Served, *texts: list, **kw) -> tuple[list[dict], Any]:
    enc = served.tokenizer(*texts, truncation=True, max_length=served.max_length, **kw)
    return [{k: enc[k][i] for k in served.input_names} for i in range(len(enc["input_ids"]))], enc
