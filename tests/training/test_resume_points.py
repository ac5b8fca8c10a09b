"""Kills at exact points and reruns that must end exactly as the uninterrupted run: the same validation rows in
metrics.csv, best epoch, test metrics and exported weights (CPU, ``trainer.deterministic=true``).

``ENCODERLAB_KILL_AFTER_CHECKPOINT=N``: SIGKILL as soon as the ``last.ckpt`` of optimizer step N is on disk;
``ENCODERLAB_KILL_DURING=validation:N`` (in the validation after step N) or ``export`` (``hf/`` half written)."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
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


def test_the_kill_switch_lands_right_after_the_checkpoint_of_its_step_and_the_rerun_ends_as_uninterrupted(
    tmp_path, shared
):
    """A kill mid-epoch: right after the last.ckpt of step 6 (every 3 steps), in epoch 1 (steps 5 to 8)."""
    env, reference = shared
    run = tmp_path / "run"
    killed_after_checkpoint(6, [*FINETUNE, f"hydra.run.dir={run}"], env)

    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 6  # written, and nothing after it
    assert summary(run)["status"] == "running"
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert len(val_rows(run)) == 1  # epoch 0's; epoch 1 never ended
    ok(cli([*FINETUNE, f"hydra.run.dir={run}"], env))

    assert_same_run(run, reference("every_3_steps"))


# validation every 10 optimizer steps across epochs (4 batches an epoch), last.ckpt every 10 steps: the checkpoint
# of step 10 is taken on a step that validates
ON_VALIDATION = [
    *FINETUNE,
    "trainer.max_epochs=6",
    "callbacks.checkpoint_every_n_steps=10",
    "+trainer.extra.val_check_interval=10",
    "trainer.check_val_every_n_epoch=null",
]


# ---- the matrix: one reference run per config, shared by the module ------------------------------------------------

# 2 optimizer steps an epoch (2 batches each), 6 in all; last.ckpt by the minute trigger at every batch end
ACCUMULATING = [*FINETUNE, "trainer.accumulate_grad_batches=2", "callbacks.checkpoint_every_n_steps=null"]
ACCUMULATING += ["callbacks.checkpoint_every_minutes=1e-9"]
CONFIGS = {"every_3_steps": FINETUNE, "on_validation": ON_VALIDATION, "accumulating": ACCUMULATING}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, reference_run):
    """The module's cache (tokenized data) and each config's uninterrupted run (made once per session)."""
    root = tmp_path_factory.mktemp("resume_points")
    env = {"ENCODERLAB_CACHE": str(root / "cache")}
    return env, lambda config: reference_run(CONFIGS[config])


def test_a_run_killed_after_the_checkpoint_of_a_step_that_validates_resumes_exactly(tmp_path, shared):
    """Rerun with resume=PATH into another run dir (the best score so far, step 10's, and its weights come along),
    then with the same command in its own run dir."""
    env, reference = shared
    assert len(val_rows(reference("on_validation"))) == 2  # at steps 10 and 20
    run, other = tmp_path / "run", tmp_path / "other"
    killed([*ON_VALIDATION, f"hydra.run.dir={run}"], env | {"ENCODERLAB_KILL_AFTER_CHECKPOINT": "10"})
    assert len(val_rows(run)) == 1  # the checkpoint of step 10 comes after its validation
    last = run / "checkpoints" / "last.ckpt"
    assert ckpt_step(last) == 10

    ok(cli([*ON_VALIDATION, f"resume={last}", f"hydra.run.dir={other}"], env))  # leaves the killed run dir as it is
    ok(cli([*ON_VALIDATION, f"hydra.run.dir={run}"], env))

    assert_same_run(other, reference("on_validation"), after_step=10)  # it holds only what comes after step 10
    assert_same_run(run, reference("on_validation"))


# config, the fault, the step of the checkpoint the rerun continues from, resume
# mid-epoch, and on a step that validates (resume=PATH into another run dir as well): the tests above
POINTS = {
    "during_validation": ("every_3_steps", {"ENCODERLAB_KILL_DURING": "validation:8"}, 6),
    "during_export": ("every_3_steps", {"ENCODERLAB_KILL_DURING": "export"}, 12),
    "after_a_minute_triggered_save_between_windows": ("accumulating", {"ENCODERLAB_KILL_AFTER_CHECKPOINT": "3"}, 3),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
def test_a_run_killed_at_any_point_and_rerun_ends_as_the_uninterrupted_run(tmp_path, shared, point):
    env, reference = shared
    config, fault, step = POINTS[point]
    args, run = CONFIGS[config], tmp_path / "run"
    killed([*args, f"hydra.run.dir={run}"], env | fault)
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == step

    ok(cli([*args, f"hydra.run.dir={run}"], env))
    assert_same_run(run, reference(config))
