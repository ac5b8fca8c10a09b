"""Which config and override keys say what a run means, and which only how it was executed or logged."""

from __future__ import annotations

import fnmatch

NOISE_KEYS = (
    "seed",
    "cv.fold",  # the folds of a cross-validation are averaged like seeds
    "task.train_sample_seed",  # a seed too (of the training subset): runs that differ only in it are repeats
    "paths",
    "paths.*",
    "hydra",
    "hydra.*",
    "logger",
    "logger.*",
    "speed",
    "speed.*",
    "eval_batch_size",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.num_sanity_val_steps",
    "callbacks.rich_progress",
    "save_model",
    "skip_finished",
    "tags",
    "claims",  # what the experiment file claims and its notes: words about the runs, not settings of them
    "notes",
)


def is_noise(key: str) -> bool:
    """True for config keys that change how a run is executed or logged, never what it means."""
    key = key.replace("/", ".")
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in NOISE_KEYS)
