"""Helpers for sweep tests: run ``encoderlab-train`` as a user would, tiny and offline, in a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import clirun
import pytest

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(Path(sys.executable).with_name("encoderlab-train"))
REPORT = str(Path(sys.executable).with_name("encoderlab-report"))

# a random-init 4-layer BERT of width 32 (4 layers so that feature_based concat_last4 is valid) and a few batches
TINY = [
    "model=bert_tiny",
    "model.num_hidden_layers=4",
    "model.hidden_size=32",
    "model.intermediate_size=64",
    "model.num_attention_heads=2",
    "trainer=debug",
    "trainer.enable_progress_bar=false",
]


def make_env(tmp: Path) -> dict[str, str]:
    """Offline, one thread, the cache under ``tmp``; csv_example's data file is found from any folder."""
    env = dict(os.environ)
    env.update(
        PROJECT_ROOT=str(REPO),
        ENCODERLAB_CACHE=str(tmp / "cache"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.pop("WANDB_API_KEY", None)
    return env


@pytest.fixture()
def cli_env(tmp_path) -> dict[str, str]:
    return make_env(tmp_path)


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    script = Path(args[0])
    if script.parent == clirun.BIN and script.name.startswith("encoderlab-"):
        proc = clirun.run_cli(script.name, args[1:], env, cwd, timeout=timeout)
    else:
        proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    proc.log = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    return proc


def train(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = run_cli([TRAIN, *args], env, cwd)
    if check:
        assert proc.returncode == 0, proc.log[-4000:]
    return proc


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent for p in sweep_dir.glob("*/summary.json"))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
