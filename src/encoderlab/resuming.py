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

    Only the ``writer`` (the main process; not DDP's other ranks) changes files in the run dir.
    """
    previous = read_summary(run_dir)
    if not writer:
        return _reader_attempt(run, run_dir, previous, config_hash)
    unfinished = bool(previous) and previous.get("status") in ("running", "failed")
    same_run = unfinished and previous.get("config_hash") == config_hash
    ckpt = _checkpoint(run, run_dir, previous, same_run)
    if ckpt is None:
        _clear(run_dir)
        return Attempt(wandb_id=_new_wandb_id(run, run_dir))
    log.info("resuming from %s", ckpt)
    attempt = Attempt(ckpt, 0.0, 1, _wandb_id(run, run_dir, same_run))
    if same_run:
        attempt.seconds_before = float(previous.get("train_seconds") or 0.0)
        attempt.number = int(previous.get("attempts") or 1) + 1
    attempt.metrics_rows = _metrics_before(run_dir / "metrics.csv", _global_step(ckpt))
    return attempt


def _reader_attempt(run: RunConfig, run_dir: Path, previous: dict | None, config_hash: str) -> Attempt:
    """What a DDP worker needs: the checkpoint rank 0 continues from (it has written summary.json by then)."""
    same_run = bool(previous) and previous.get("config_hash") == config_hash
    resumed = previous.get("resumed_from") if same_run else None
    return Attempt(ckpt=Path(resumed) if resumed else None)


def _checkpoint(run: RunConfig, run_dir: Path, previous: dict | None, same_run: bool) -> Path | None:
    if run.resume == "never":
        return None
    if run.resume != "auto":
        return Path(run.resume).expanduser().resolve()
    last = checkpoint_dir(run_dir) / LAST
    if not last.is_file():
        return None
    if not same_run:
        why = "finished" if previous and previous.get("status") == "finished" else "made with another config"
        log.warning("not resuming from %s: its run %s; starting over", last, why)
        return None
    _rebase(last, checkpoint_dir(run_dir))
    return last


def _rebase(ckpt: Path, folder: Path) -> None:
    """Point the checkpoint callbacks' state in ``ckpt`` at ``folder`` when the run dir has moved since.

    A run dir copied from a cluster or renamed keeps checkpoints that name its old folder; Lightning then forgets the
    best score so far and tests a best.ckpt that is elsewhere or gone. Their files moved with the run dir.
    """
    import os

    here = os.path.realpath(folder)
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)  # tensors read only if re-saved
    moved = False
    for cb in (state.get("callbacks") or {}).values():
        old = cb.get("dirpath") if isinstance(cb, dict) else None
        if not isinstance(old, str) or not old or old == here:
            continue

        def rebased(path, old=old):
            return here + path[len(old) :] if isinstance(path, str) and path.startswith(old) else path

        cb["dirpath"] = here
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in cb:
                cb[key] = rebased(cb[key])
        if isinstance(cb.get("best_k_models"), dict):
            cb["best_k_models"] = {rebased(k): v for k, v in cb["best_k_models"].items()}
        moved = True
    if moved:
        tmp = ckpt.with_name(f".{ckpt.name}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, ckpt)
        log.info("the run dir has moved: its checkpoints now name %s", here)


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
