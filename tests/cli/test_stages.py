"""Stages: an experiment's pre-training runs once before its fine-tuning jobs, is reused when finished with the
same config, and a bad stage override is one line naming the stage's key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import TINY

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "encoderlab-train")
CORPUS = "\n\n".join(
    f"Film number {i} was {'good' if i % 2 else 'bad'}. The actors were {'great' if i % 3 else 'weak'}. It ends."
    for i in range(24)
)


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.run([CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _stage(tmp_path: Path, extra: str = "") -> list[str]:
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
        *([extra] if extra else []),
    ]
    quoted = ",".join(f'"{o}"' for o in overrides)
    return [f"stages.pretrain.dir={tmp_path / 'pretrain'}", f"stages.pretrain.overrides=[{quoted}]"]


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
    stage = json.loads((tmp_path / "pretrain" / "summary.json").read_text())
    assert stage["status"] == "finished" and stage["kind"] == "pretraining"
    assert (tmp_path / "pretrain" / ".hydra" / "config.yaml").exists()
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
