"""Stages: an experiment's pre-training runs once before its fine-tuning jobs, is reused when finished with the
same config, and a bad stage override is one line naming the stage's key."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from clirun import run_cli
from support import TINY

ROOT = Path(__file__).resolve().parents[2]
CORPUS = "\n\n".join(
    f"Film number {i} was {'good' if i % 2 else 'bad'}. The actors were {'great' if i % 3 else 'weak'}. It ends."
    for i in range(24)
)


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return run_cli("encoderlab-train", args, env, ROOT)


# enough steps for the tiny model to learn the corpus: above the unigram baseline, so not undertrained
LEARNS = ["trainer.limit_train_batches=null", "trainer.max_epochs=-1", "trainer.max_steps=150", "optimizer.lr=5e-3"]


def _stage(tmp_path: Path, *extra: str) -> list[str]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    overrides = [
        "task=pretrain_mlm",
        "task.source=files",
        f"task.data_files.train={corpus}",
        "task.mlm.validation_documents=0.2",
        "task.max_seq_length=32",
        *TINY,
        "batch_size=4",
        *(extra or LEARNS),
    ]
    quoted = ",".join(f'"{o}"' for o in overrides)
    return [
        f"stages.pretrain.dir={tmp_path / 'pretrain'}/seed${{stages.pretrain.seed}}",
        f"stages.pretrain.overrides=[{quoted}]",
        "stages.pretrain.seeds=[1]",
    ]


def test_a_sweep_runs_its_stage_once_and_a_rerun_reuses_it(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "experiment=pretrain_vs_scratch",
        *_stage(tmp_path),
        "model.from_scratch=false,true",
        "task=csv_example",
        "task.max_train_samples=null",
        "seed=1",
        "trainer=debug",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
    ]
    p = _cli(args)
    assert p.returncode == 0, p.stderr[-3000:]
    log = p.stdout + p.stderr
    assert log.count("stage pretrain: running it first") == 1
    assert log.count("stage pretrain: reusing the finished run") == 1
    stage = json.loads((tmp_path / "pretrain" / "seed1" / "summary.json").read_text())
    assert stage["status"] == "finished" and stage["kind"] == "pretraining"
    assert (tmp_path / "pretrain" / "seed1" / ".hydra" / "config.yaml").exists()
    assert "seed=1" in (tmp_path / "pretrain" / "seed1" / ".hydra" / "overrides.yaml").read_text()
    jobs = sorted(sweep.glob("*/summary.json"))
    assert len(jobs) == 2
    for job in jobs:
        s = json.loads(job.read_text())
        assert s["status"] == "finished"
        cfg = (job.parent / ".hydra" / "config.yaml").read_text()
        assert "path: ${stages.pretrain.dir}/hf" in cfg  # both arms use the stage's export (architecture)

    p = _cli(args + ["skip_finished=false"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "stage pretrain: running it first" not in p.stdout + p.stderr  # finished with the same config


def test_a_bad_stage_override_names_the_stage_key(tmp_path, cache_dir):
    p = _cli(["experiment=pretrain_vs_scratch", *_stage(tmp_path, "optimizer.lrr=1"), "trainer=debug"])
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("encoderlab: error")]
    assert len(lines) == 1 and "stages.pretrain.overrides" in lines[0] and "lrr" in lines[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_an_undertrained_stage_is_kept_and_its_jobs_stop_at_once_naming_it(tmp_path, cache_dir):
    """A stage held to a one-second budget of a 100,000-step plan ends undertrained; each job stops with one line
    naming the stage, what it reached and what to change, and the stage is not run again."""
    budget = ["trainer.limit_train_batches=null", "trainer.max_epochs=-1", "trainer.max_steps=100000"]
    budget += ["+trainer.extra.max_time=00:00:00:01", "scheduler.clock=time"]
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "experiment=pretrain_vs_scratch",
        *_stage(tmp_path, *budget),
        "model.from_scratch=false,true",
        "task=csv_example",
        "seed=1",
        "trainer=debug",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
    ]
    p = _cli(args)
    log = p.stdout + p.stderr
    assert log.count("stage pretrain: running it first") == 1, log[-3000:]
    stage = json.loads((tmp_path / "pretrain" / "seed1" / "summary.json").read_text())
    assert stage["status"] == "undertrained" and stage["planned_steps"] == 100000 and stage["steps"] < 10000
    assert "of 100,000 planned steps" in stage["undertrained"]
    assert (tmp_path / "pretrain" / "seed1" / "hf").is_dir()  # kept as it is
    said = [ln for ln in p.stdout.splitlines() if ln.startswith("encoderlab: undertrained:")]
    assert len(said) == 1 and "planned steps" in said[0]  # the stage run says so in one line
    stops = [ln for ln in p.stderr.splitlines() if ln.startswith("encoderlab: error: stage pretrain")]
    assert len(stops) == 2, p.stderr[-3000:]  # both arms, one line each
    for line in stops:
        assert "is undertrained" in line and "planned steps" in line and "precision=32-true" in line
        assert "stages.pretrain.overrides" in line
    assert not list(sweep.glob("*/summary.json"))  # no job trained on it
    assert "Traceback" not in p.stderr
    assert p.returncode == 1 and "2 job(s) of this sweep failed or stopped" in p.stderr  # never a clean exit

    p = _cli(args)  # the stage is reused as undertrained, not run again
    assert "stage pretrain: running it first" not in p.stdout + p.stderr
    assert sum(ln.startswith("encoderlab: error: stage pretrain") for ln in p.stderr.splitlines()) == 2
