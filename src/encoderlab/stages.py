"""Runs that a run depends on: ``stages`` in an experiment, made before the job when missing.

``experiment=pretrain_vs_scratch`` fine-tunes the export of a pre-training run; its ``stages.pretrain`` holds the
pre-training's overrides and run dir. Before each job, every stage is composed with the same config tree (Hydra's
compose API, so a stage may name an experiment or any group option), validated, and run in its dir unless it
finished there with the same config. A lock file makes the jobs of a parallel sweep wait for one stage run instead
of each starting its own. Stages may have stages of their own.

A stage that ends ``undertrained`` (below its kind's floor: a pre-training run with under 10% of its planned steps or
held-out MLM accuracy not above the unigram baseline) is kept and not run again with the same config; every job that
depends on it stops at once with one line naming the stage, what it reached and what to change.

Independent stages: ``stages.<name>.seeds: [1, 2, 3]`` lists the stage's replicates and ``stages.<name>.seed`` (a
sweep key, ``${encoderlab.sweep:${stages.<name>.seeds}}`` in an experiment's sweeper params) picks the one a job
uses: the stage runs with ``seed=<k>`` in its own dir (which must contain ``seed<k>``, e.g.
``dir: .../seed${stages.pretrain.seed}``). A pre-trained job and its random twin with the same stage seed and
``seed`` use the same stage's export (architecture, tokenizer).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from encoderlab.config.schema import RunConfig, StageConfig
from encoderlab.errors import ConfigError, EncoderlabError

log = logging.getLogger("encoderlab")


def stage_config(name: str, overrides: list[str]) -> RunConfig:
    """The validated config of stage ``name``, composed from the primary config and its ``overrides``."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from encoderlab.cli.hydra_setup import compose_error_message
    from encoderlab.config.validate import validate

    try:
        cfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"stages.{name}.overrides", compose_error_message(e)) from None
    try:
        return validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"stages.{name}.overrides", str(e)) from None


def _save_config(run: RunConfig, overrides: list[str], folder: Path) -> None:
    """What Hydra writes for a run it launches: the resolved config and the overrides."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(asdict(run)), folder / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), folder / "overrides.yaml")


def stage_overrides(stage: StageConfig) -> list[str]:
    """The stage's overrides; with a stage seed (``stages.<name>.seed``) the stage's own ``seed`` is that one."""
    return [*stage.overrides, f"seed={stage.seed}"] if stage.seed is not None else list(stage.overrides)


def undertrained_error(name: str, stage_dir: Path, summary: dict) -> EncoderlabError:
    """The one line a job that depends on an undertrained stage stops with."""
    return EncoderlabError(
        f"stage {name} ({stage_dir}) is undertrained: {summary.get('undertrained')}; "
        f"{summary.get('undertrained_fix') or 'give it a longer budget'} in stages.{name}.overrides, then rerun"
    )


def ensure_stages(run: RunConfig, _depth: int = 0) -> None:
    """Run each stage of ``run`` that has not ended with its current config; reuse the others. A stage that ended
    undertrained is kept as it is (not run again) and stops the job at once."""
    from encoderlab.runner import execute, previous_summary

    if _depth > 8:
        raise ConfigError("stages", "stages nest more than 8 deep; does a stage depend on itself?")
    for name, stage in run.stages.items():
        if not stage.dir or stage.dir == "???":
            raise ConfigError(f"stages.{name}.dir", "give the stage's run dir")
        overrides = stage_overrides(stage)
        stage_run = stage_config(name, overrides)
        ensure_stages(stage_run, _depth + 1)
        stage_dir = Path(os.path.expanduser(stage.dir)).resolve()
        stage_dir.mkdir(parents=True, exist_ok=True)
        with open(stage_dir / ".stage.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel job of the same sweep waits here, then reuses the run
            before = previous_summary(stage_dir, stage_run) or {}
            if before.get("status") == "undertrained":
                raise undertrained_error(name, stage_dir, before)
            if before.get("status") == "finished":
                log.info("stage %s: reusing the finished run in %s", name, stage_dir)
                continue
            log.info("stage %s: running it first in %s", name, stage_dir)
            _save_config(stage_run, overrides, stage_dir / ".hydra")
            try:
                summary = execute(stage_run, stage_dir, overrides, {"job_name": f"stage {name}"})
            except EncoderlabError as e:
                e.args = (f"stage {name} ({stage_dir}): {e}",)  # the same error, saying which stage failed
                raise
            if summary.get("status") == "undertrained":
                raise undertrained_error(name, stage_dir, summary)
