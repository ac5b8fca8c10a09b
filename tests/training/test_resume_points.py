"""Kills at exact points (``ENCODERLAB_KILL_AFTER_CHECKPOINT``: SIGKILL as soon as the ``last.ckpt`` of that
optimizer step is on disk) and reruns that must end exactly as the uninterrupted run: the same validation rows in
metrics.csv, best epoch, test metrics and exported weights (CPU, ``trainer.deterministic=true``)."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import torch

from training.test_resume import FINETUNE, cli, ok, summary, weights


def killed(args: list[str], fault: dict[str, str]):
    p = cli(args, fault)
    assert p.returncode == -signal.SIGKILL, f"exit {p.returncode}\n{p.log[-3000:]}"
    return p


def killed_after_checkpoint(step: int, args: list[str], extra: dict | None = None):
    p = cli(args, {"ENCODERLAB_KILL_AFTER_CHECKPOINT": str(step)} | (extra or {}))
    assert p.returncode == -signal.SIGKILL, f"exit {p.returncode}\n{p.log[-3000:]}"
    return p


def ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def val_rows(run_dir: Path) -> dict[int, dict[str, str]]:
    """Every validation row of metrics.csv, by optimizer step."""
    with (run_dir / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/loss")]
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), f"a validation logged twice: {steps}"
    return {int(r["step"]): {k: v for k, v in r.items() if k.startswith("val/") or k == "epoch"} for r in rows}


def assert_same_run(resumed: Path, reference: Path, after_step: int = -1) -> None:
    """``after_step``: the resumed run dir holds only the validations after that step (``resume=PATH``)."""
    a, b = summary(resumed), summary(reference)
    assert a["status"] == b["status"] == "finished" and a["resumed_from"]
    assert val_rows(resumed) == {k: v for k, v in val_rows(reference).items() if k >= after_step}
    assert a["val"] == b["val"] and a["test"] == b["test"]  # exactly
    assert a["best_epoch"] == b["best_epoch"] and a["steps"] == b["steps"]
    wa, wb = weights(resumed), weights(reference)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_kill_switch_lands_right_after_the_checkpoint_of_its_step(tmp_path, cache_dir):
    run = tmp_path / "run"
    killed_after_checkpoint(6, [*FINETUNE, "trainer.max_epochs=2", f"hydra.run.dir={run}"])

    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 6  # written (every 3 steps), and nothing after it
    assert summary(run)["status"] == "running"
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert len(val_rows(run)) == 1  # epoch 0's; epoch 1 (steps 5 to 8) never ended


# validation every 10 optimizer steps across epochs (4 batches an epoch), last.ckpt every 10 steps: the checkpoint
# of step 10 is taken on a step that validates
ON_VALIDATION = [
    *FINETUNE,
    "trainer.max_epochs=6",
    "callbacks.checkpoint_every_n_steps=10",
    "+trainer.extra.val_check_interval=10",
    "trainer.check_val_every_n_epoch=null",
]


def test_a_run_killed_after_the_checkpoint_of_a_step_that_validates_resumes_exactly(tmp_path, cache_dir):
    reference, run = tmp_path / "reference", tmp_path / "run"
    ok(cli([*ON_VALIDATION, f"hydra.run.dir={reference}"]))
    assert len(val_rows(reference)) == 2  # at steps 10 and 20

    killed_after_checkpoint(10, [*ON_VALIDATION, f"hydra.run.dir={run}"])
    assert len(val_rows(run)) == 1  # the checkpoint of step 10 comes after its validation
    ok(cli([*ON_VALIDATION, f"hydra.run.dir={run}"]))

    assert_same_run(run, reference)
