"""Which checkpoint a run continues from (``resume``), and what it carries over from its earlier attempts.

``resume=auto`` (the default) continues a run dir whose summary.json says ``running`` (killed) or ``failed``,
made with the same config, from its ``checkpoints/last.ckpt``; ``never`` starts over; a path continues from
that checkpoint. A run that starts over clears what an earlier run left in its dir (checkpoints, metrics.csv).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from encoderlab.config.schema import RunConfig
from encoderlab.errors import ConfigError
from encoderlab.training.callbacks import checkpoint_dir
from encoderlab.training.checkpoints import LAST

log = logging.getLogger("encoderlab")
WANDB_ID_FILE = "wandb_id"


@dataclass
class Attempt:
    """This attempt at a run: the checkpoint it continues from (None: from scratch) and the earlier attempts."""

    ckpt: Path | None = None
    seconds_before: float = 0.0  # train seconds the earlier attempts spent (counted up to their last heartbeat)
    number: int = 1
    wandb_id: str | None = None
    metrics_rows: list[dict[str, str]] = field(default_factory=list)  # metrics.csv up to the checkpoint


def read_summary(run_dir: Path) -> dict | None:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return s if isinstance(s, dict) else None


def plan_attempt(run: RunConfig, run_dir: Path, config_hash: str, writer: bool = True) -> Attempt:
    """Decide from ``run.resume`` and the run dir's summary.json; call before the new summary.json is written.

    Every process of a run (DDP's ranks, the tasks of a SLURM job, which all start at once) reaches the same decision
    by the same rule, whichever of them reads the run dir first: the ``writer`` (rank 0) clears an earlier run's
    checkpoints before it writes the new summary.json, so a process that reads that summary finds ``last.ckpt`` only
    where rank 0 continues from it. Only the writer changes files in the run dir.
    """
    previous = read_summary(run_dir)
    unfinished = bool(previous) and previous.get("status") in ("running", "failed")
    same_run = unfinished and previous.get("config_hash") == config_hash
    ckpt = _checkpoint(run, run_dir, previous, same_run, writer)
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
    if not writer:
        return Attempt(ckpt=ckpt)
    if ckpt is None:
        _clear(run_dir)
        return Attempt(wandb_id=_new_wandb_id(run, run_dir))
    attempt = Attempt(ckpt, 0.0, 1, _wandb_id(run, run_dir, same_run))
    if same_run:
        attempt.seconds_before = float(previous.get("train_seconds") or 0.0)
        attempt.number = int(previous.get("attempts") or 1) + 1
    attempt.metrics_rows = _metrics_before(run_dir / "metrics.csv", _global_step(ckpt))
    return attempt


def _checkpoint(run: RunConfig, run_dir: Path, previous: dict | None, same_run: bool, writer: bool) -> Path | None:
    """The checkpoint to continue from; reads files, changes none."""
    if run.resume == "never":
        return None
    if run.resume != "auto":
        return Path(run.resume).expanduser().resolve()
    last = checkpoint_dir(run_dir) / LAST
    if not last.is_file():
        return None
    if not same_run:
        why = "finished" if previous and previous.get("status") == "finished" else "made with another config"
        if writer:
            log.warning("not resuming from %s: its run %s; starting over", last, why)
        return None
    return last


def _clear(run_dir: Path) -> None:
    """A run that starts over does not keep an earlier run's checkpoints (Lightning would number its own
    best-v1.ckpt next to them) nor append to its metrics.csv."""
    shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
    (run_dir / "metrics.csv").unlink(missing_ok=True)


def _global_step(ckpt: Path) -> int:
    """The checkpoint's optimizer step; a file that is not a training checkpoint fails here, naming ``resume``."""
    try:
        # no pickle, as Lightning loads it to resume; mmap: the step is read without reading the tensors
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        why = f"is not a checkpoint torch can load ({type(e).__name__})"
        raise ConfigError("resume", f"'{ckpt}' {why}; set resume=never to start over") from None
    if not isinstance(state, dict) or "global_step" not in state or "state_dict" not in state:
        raise ConfigError("resume", f"'{ckpt}' is not a Lightning training checkpoint; give a run's last.ckpt")
    if "optimizer_states" not in state:
        raise ConfigError("resume", f"'{ckpt}' holds weights only (a best.ckpt); give a run's last.ckpt")
    return int(state["global_step"])


def _metrics_before(path: Path, step: int) -> list[dict[str, str]]:
    """The rows of metrics.csv up to the checkpoint's step: the resumed run logs the later steps again."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if not r.get("step") or int(float(r["step"])) <= step]


def keep_metrics(loggers: list, attempt: Attempt) -> None:
    """Put the earlier attempts' rows back into metrics.csv, which Lightning's CSV logger empties when it starts."""
    from pytorch_lightning.loggers import CSVLogger

    if not attempt.metrics_rows:
        return
    for lg in loggers:
        if isinstance(lg, CSVLogger):
            writer = lg.experiment  # created now: it deletes the old file
            keys = sorted(set().union(*attempt.metrics_rows))
            with open(writer.metrics_file_path, "w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=keys)
                out.writeheader()
                out.writerows(attempt.metrics_rows)
            writer.metrics_keys = keys


def _wandb_id(run: RunConfig, run_dir: Path, same_run: bool) -> str | None:
    f = run_dir / WANDB_ID_FILE
    if run.logger.wandb.enabled and same_run and f.is_file():
        return f.read_text().strip() or _new_wandb_id(run, run_dir)
    return _new_wandb_id(run, run_dir)


def _new_wandb_id(run: RunConfig, run_dir: Path) -> str | None:
    """A fresh W&B run id, kept in the run dir so that a resumed attempt logs to the same W&B run."""
    if not run.logger.wandb.enabled:
        return None
    run_id = uuid.uuid4().hex[:8]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / WANDB_ID_FILE).write_text(run_id + "\n")
    return run_id
