"""A multi-process job as SLURM starts it: one task per device, all at once, each told its rank by SLURM's
environment (no Lightning launcher). On a requeue every task must continue from the same checkpoint, whichever of
them reads the run dir first (CPU, gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support import TINY

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "encoderlab-train")
# 2 optimizer steps an epoch on each rank, 4 in all; last.ckpt at every step
ARGS = [*TINY, "task=csv_example", "batch_size=8", "trainer.max_epochs=2", "trainer.deterministic=true"]
ARGS += ["trainer.devices=2", "trainer.strategy=ddp", "callbacks.checkpoint_every_n_steps=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tasks(run_dir: Path, extra_env: dict, delays: tuple[float, float] = (0.0, 0.0)) -> list[subprocess.Popen]:
    """Both tasks of a one-node job of 2 tasks; ``delays``: seconds before each rank starts (rank 1 first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HYDRA_FULL_ERROR", "ENCODERLAB_KILL"))}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env |= {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "encoderlab", "SLURM_NTASKS": "2", "SLURM_NNODES": "1"}
    env |= {"SLURM_NTASKS_PER_NODE": "2", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())} | extra_env
    procs = []
    for rank in (1, 0):
        time.sleep(delays[rank])
        task = env | {"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
        out = open(run_dir.parent / f"{run_dir.name}.rank{rank}.log", "w")
        cmd = [CLI, *ARGS, f"hydra.run.dir={run_dir}"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=task, stdout=out, stderr=subprocess.STDOUT))
    return procs[::-1]  # by rank


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int | None]:
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    return codes


def log_of(run_dir: Path, rank: int) -> str:
    return (run_dir.parent / f"{run_dir.name}.rank{rank}.log").read_text()


@pytest.mark.slow
def test_requeued_slurm_tasks_all_continue_from_the_same_checkpoint(tmp_path, cache_dir):
    run = tmp_path / "run"
    run.mkdir()
    # the first attempt: rank 0 dies as soon as the checkpoint of step 3 (mid-epoch 1) is on disk; rank 1 then
    # fails or is killed, and summary.json says "running", as after a requeue
    wait_all(start_tasks(run, {"ENCODERLAB_KILL_AFTER_CHECKPOINT": "3"}), timeout=240)
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3

    # the requeued job: rank 1 reads the run dir before rank 0 has rewritten summary.json
    codes = wait_all(start_tasks(run, {}, delays=(3.0, 0.0)), timeout=300)

    logs = [log_of(run, rank) for rank in (0, 1)]
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n".join(
        f"--- rank {r}\n{t[-3000:]}" for r, t in enumerate(logs)
    )
    for text in logs:
        assert f"resuming from {last}" in text  # every rank, from the same checkpoint
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "finished" and s["steps"] == 4 and s["attempts"] == 2
