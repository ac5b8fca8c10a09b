"""Fixtures for the report tests: a synthetic 2 x 2 multirun (no model is trained)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .factory import SWEEP, write_run


@pytest.fixture()
def multirun(tmp_path) -> Path:
    """Hydra's multirun/<date>/<time>/ with jobs 0..3: 2 strategies x 2 seeds."""
    root = tmp_path / "multirun" / "2026-11-22" / "10-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for job, ((strategy, seed), acc) in enumerate(SWEEP.items()):
        write_run(
            root / str(job),
            strategy=strategy,
            seed=seed,
            test={"accuracy": acc, "f1_macro": acc - 0.05},
            train_seconds=100.0 if strategy == "full" else 20.0,
        )
    return root
