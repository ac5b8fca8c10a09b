"""Preprocessed data cached under a fingerprint of everything that affects it.

A sweep over seeds, strategies or learning rates tokenizes once: the fingerprint covers the task's data
fields, the tokenizer's full definition and the source files' sizes and modification times, and nothing
that only changes training. Entries are written to a temporary folder and renamed into place, so parallel
jobs of a multirun never read a half-written cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from datasets import DatasetDict, load_from_disk

from encoderlab.config.schema import TaskConfig

log = logging.getLogger(__name__)

# bump when preprocessing code changes what it writes
CACHE_VERSION = 1
# task keys that never change the preprocessed data
_NOT_DATA = {
    "metrics",
    "primary_metric",
    "description",
    # multitask: which tasks train together and how batches are drawn (each sub-task has its own fingerprint)
    "tasks",
    "sampling",
    "temperature",
    "subtasks",
}


# question answering: answer post-processing settings (task.qa.*) that never change the features
_NOT_QA_DATA = {"n_best_size", "max_answer_length", "null_score_diff_threshold"}


def cache_root(configured: str) -> Path:
    """``paths.cache_dir`` (whose default already reads ENCODERLAB_CACHE), with ``~`` expanded."""
    return Path(os.path.expanduser(configured))


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer's definition, without the truncation/padding state that each call leaves behind
    (a tokenizer that has tokenized once must fingerprint as it did before)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        text = json.dumps(spec, sort_keys=True)
    else:
        text = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = f"{type(tokenizer).__name__}|{tokenizer.model_max_length}|{tokenizer.padding_side}"
    return hashlib.sha256((text + extra).encode()).hexdigest()[:16]


def _file_stamp(path: str) -> list:
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        return sorted(_file_stamp(str(f)) for f in p.rglob("*") if f.is_file())
    if p.exists():
        st = p.stat()
        return [str(p.resolve()), st.st_size, int(st.st_mtime)]
    return [str(p), None]


def fingerprint(task: TaskConfig, tokenizer, **extra) -> str:
    fields = {k: v for k, v in dataclasses.asdict(task).items() if k not in _NOT_DATA}
    if task.shots_per_class is None:  # added later: entries made before it existed stay valid
        fields.pop("shots_per_class")
    fields["qa"] = {k: v for k, v in fields["qa"].items() if k not in _NOT_QA_DATA}
    files = []
    if task.source == "files":
        files = [_file_stamp(p) for p in task.files.values()]
        if task.data_dir:
            files.append(_file_stamp(task.data_dir))
    payload = {
        "version": CACHE_VERSION,
        "task": fields,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "files": files,
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached(
    root: Path | None, name: str, key: str, build: Callable[[], tuple[DatasetDict, dict]]
) -> tuple[DatasetDict, dict]:
    """Load ``root/name-key`` if present, else ``build()`` and store it. ``root=None`` disables the cache."""
    if root is None:
        return build()
    target = root / "tokenized" / f"{name}-{key}"
    meta_file = target / "meta.json"
    if meta_file.exists():
        try:
            ds = load_from_disk(str(target / "data"))
            log.info("using cached preprocessed data %s", target)
            return ds, json.loads(meta_file.read_text())
        except Exception as e:  # a damaged entry is rebuilt, never fatal
            log.warning("cache entry %s is unreadable (%s); rebuilding", target, e)
    ds, meta = build()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        ds.save_to_disk(str(tmp / "data"))
        (tmp / "meta.json").write_text(json.dumps(meta))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another job won the race; its entry is identical
    return ds, meta
