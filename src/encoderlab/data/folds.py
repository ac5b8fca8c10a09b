"""k-fold cross-validation splits: seeded, stratified by class for classification.

Train and the source's validation split are pooled and cut into ``cv.folds`` folds; fold ``cv.fold`` becomes the
validation split and the rest the training split. The test split is untouched, so every fold is scored on the
same held-out test set and a report can average the folds like seeds.
"""

from __future__ import annotations

import random
from collections import Counter

from datasets import Dataset, concatenate_datasets

from encoderlab.config.schema import CVConfig, TaskConfig
from encoderlab.errors import ConfigError


def fold_ids(classes: list | None, n: int, folds: int, seed: int) -> list[int]:
    """The fold of each of ``n`` rows. With ``classes`` (one per row), each class is spread evenly over the folds
    (a class of m rows puts m // folds or m // folds + 1 rows in each fold); without, rows are dealt at random."""
    rng = random.Random(seed)
    out = [0] * n
    groups: dict = {}
    for i in range(n):
        groups.setdefault(classes[i] if classes is not None else 0, []).append(i)
    offset = 0
    for key in sorted(groups, key=str):
        rows = groups[key]
        rng.shuffle(rows)
        for j, i in enumerate(rows):
            out[i] = (j + offset) % folds
        offset += len(rows)  # the next class starts where this one stopped, so fold sizes stay within one row
    return out


def _check_sizes(classes: list | None, n: int, cv: CVConfig, task: TaskConfig) -> None:
    if n < cv.folds:
        raise ConfigError("cv.folds", f"{cv.folds} folds need at least {cv.folds} examples; task '{task.name}' has {n}")
    if classes is None:
        return
    name, smallest = min(Counter(classes).items(), key=lambda kv: (kv[1], str(kv[0])))
    if smallest < cv.folds:
        raise ConfigError(
            "cv.folds",
            f"{cv.folds} stratified folds need at least {cv.folds} examples of each class; class '{name}' of task "
            f"'{task.name}' has {smallest} outside the test split (use at most cv.folds={max(smallest, 2)})",
        )


def cv_split(train: Dataset, validation: Dataset | None, task: TaskConfig, cv: CVConfig, classes) -> dict:
    """``{"train": ..., "validation": ...}`` for fold ``cv.fold``; ``classes(ds)`` gives each row's class name
    (or None to split at random)."""
    pool = train if validation is None else concatenate_datasets([train, validation])
    labels = classes(pool)
    _check_sizes(labels, len(pool), cv, task)
    ids = fold_ids(labels, len(pool), cv.folds, task.split_seed)
    return {
        "train": pool.select([i for i, f in enumerate(ids) if f != cv.fold]),
        "validation": pool.select([i for i, f in enumerate(ids) if f == cv.fold]),
    }
