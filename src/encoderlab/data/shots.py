"""K-shot draws: ``task.shots_per_class=K`` keeps K labelled training examples of each class.

The draw is stratified and reproducible: it depends on the data and on the draw's seed only
(``task.train_sample_seed``, which the run's ``seed`` fills when it is null), never on the fine-tuning strategy, so
every arm of a study that shares a seed trains on the same K examples per class. The validation split is a K-shot
draw too (K per class, all of a class when it has fewer), with its own random stream of the same seed: a model
selected on hundreds of validation labels would not be a few-shot result. The test split is not touched. The draw
is made from what ``task.max_train_samples`` / ``task.max_eval_samples`` keep, when a task sets them (set them to
null to draw from the whole split).
"""

from __future__ import annotations

import datasets
import numpy as np
from datasets import Dataset

from encoderlab.config.schema import TaskConfig
from encoderlab.errors import ConfigError

# one random stream per split, from the same seed: the training draw does not move when validation changes
_STREAM = {"train": 0, "validation": 1}


def _classes(ds: Dataset, task: TaskConfig) -> list[str | None]:
    """Each row's class as text; None for a row without a label (left out of the draw, as it cannot be a shot)."""
    feat = ds.features[task.label_field]
    out: list[str | None] = []
    for v in ds[task.label_field]:
        if v is None or v != v:
            out.append(None)
        elif isinstance(feat, datasets.ClassLabel):
            out.append(feat.names[v] if 0 <= v < len(feat.names) else str(v))
        else:
            out.append(str(v).strip())
    return out


def draw_shots(ds: Dataset, task: TaskConfig, split: str, seed: int) -> Dataset:
    """K rows of each class of ``ds`` (``split``: train or validation), shuffled so classes mix in batches.

    Training: a class with fewer than K rows is an error naming ``task.shots_per_class``; validation: such a class
    is kept whole."""
    k = task.shots_per_class
    if task.label_field not in ds.column_names:  # reported with the columns found, by the kind's checks
        return ds
    classes = _classes(ds, task)
    rng = np.random.default_rng([seed, _STREAM[split]])
    rows: list[int] = []
    for name in sorted({c for c in classes if c is not None}):
        members = np.flatnonzero([c == name for c in classes])
        if len(members) < k and split == "train":
            raise ConfigError(
                "task.shots_per_class",
                f"{k} examples per class, but class {name!r} has {len(members)} in the train split of task "
                f"'{task.name}'; use at most {len(members)}",
            )
        rows += rng.choice(members, size=min(k, len(members)), replace=False).tolist()
    return ds.select(rng.permutation(rows).tolist())
