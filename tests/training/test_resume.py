"""Runs that survive a kill: checkpoints during training, and a rerun of the same command that continues from the
last one and ends exactly where an uninterrupted run ends (CPU, ``trainer.deterministic=true``).

The kill is real: ``ENCODERLAB_KILL_AT_STEP`` makes the training process SIGKILL itself when that optimizer step
ends, before any checkpoint of that step is written.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from clirun import run_cli
from support import TINY

ROOT = Path(__file__).resolve().parents[2]

# 38 training reviews in batches of 8, 4 batches an epoch (trainer=debug), 3 epochs: 12 optimizer steps;
# last.ckpt every 3 steps and at each epoch end; a kill at step 7 resumes from step 6, in the middle of epoch 1
FINETUNE = [
    *TINY,
    "task=csv_example",
    "batch_size=8",
    "trainer.max_epochs=3",
    "optimizer.lr=1e-3",
    "trainer.deterministic=true",
    "callbacks.checkpoint_every_n_steps=3",
]


def cli(
    args: list[str], env_extra: dict | None = None, timeout: int = 300, fresh: bool = False
) -> subprocess.CompletedProcess:
    """``encoderlab-train ARGS``; ``fresh``: as a new process (not forked from the tests' zygote, whose children
    share one hash seed), so that a killed run and its rerun differ in everything a real rerun differs in."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ENCODERLAB_KILL_AT_STEP")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env |= {"PROJECT_ROOT": str(ROOT)} | (env_extra or {})
    assert "ENCODERLAB_CACHE" in env, "use the cache_dir fixture"
    p = run_cli("encoderlab-train", args, env, ROOT, timeout=timeout, fresh=fresh)
    p.log = p.stdout + p.stderr  # type: ignore[attr-defined]
    return p


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"exit {p.returncode}\n{p.log[-5000:]}"
    return p


def killed_at(
    step: int, args: list[str], run_filter: str = "", env: dict | None = None, fresh: bool = False
) -> subprocess.CompletedProcess:
    p = cli(args, {"ENCODERLAB_KILL_AT_STEP": str(step), "ENCODERLAB_KILL_RUN": run_filter} | (env or {}), fresh=fresh)
    assert p.returncode == -signal.SIGKILL, f"exit {p.returncode}\n{p.log[-3000:]}"
    return p


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def val_curve(run_dir: Path) -> dict[int, dict[str, str]]:
    """The validation metrics of each epoch, as logged in metrics.csv."""
    with (run_dir / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/loss")]
    return {int(r["epoch"]): {k: v for k, v in r.items() if k.startswith("val/")} for r in rows}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / "hf" / "model.safetensors")


def assert_same_run(resumed: Path, reference: Path, status: str = "finished") -> None:
    a, b = summary(resumed), summary(reference)
    assert a["status"] == b["status"] == status
    assert a["val"] == b["val"] and a["test"] == b["test"]  # exactly, not approximately
    assert a["best_epoch"] == b["best_epoch"] and a["steps"] == b["steps"]
    assert val_curve(resumed) == val_curve(reference)  # every epoch, the ones after the kill included
    wa, wb = weights(resumed), weights(reference)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def killed_at_7(tmp_path_factory) -> tuple[Path, Path]:
    """A FINETUNE run killed at step 7 (its last.ckpt: step 6), and a copy of its run dir made before any rerun (a
    run dir moved since the kill: its checkpoints name the other folder)."""
    root = tmp_path_factory.mktemp("killed_at_7")
    run, moved = root / "run", root / "moved"
    # fresh processes here and in its rerun below: the one kill and rerun not forked from the tests' zygote
    killed_at(7, [*FINETUNE, f"hydra.run.dir={run}"], env={"ENCODERLAB_CACHE": str(root / "cache")}, fresh=True)
    shutil.copytree(run, moved)
    return run, moved


@pytest.fixture(scope="module")
def killed_at_5(tmp_path_factory) -> Path:
    """A 2-epoch FINETUNE run killed at step 5 (its last.ckpt: the end of epoch 0, step 4); copy it before use."""
    root = tmp_path_factory.mktemp("killed_at_5")
    run = root / "run"
    killed_at(5, [*FINETUNE, "trainer.max_epochs=2", f"hydra.run.dir={run}"], env={"ENCODERLAB_CACHE": str(root / "c")})
    return run


def test_a_finetuning_run_killed_mid_epoch_resumes_and_ends_as_an_uninterrupted_run(
    cache_dir, reference_run, killed_at_7
):
    reference, (run, _) = reference_run(FINETUNE), killed_at_7
    assert len(val_curve(reference)) == 3

    s = summary(run)
    assert s["status"] == "running" and s["resumed_from"] is None  # as a kill leaves it
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert s["train_seconds"] > 0  # the heartbeat of epoch 0
    seconds_before = s["train_seconds"]

    p = ok(cli([*FINETUNE, f"hydra.run.dir={run}"], fresh=True))  # the same command

    assert "resuming from" in p.log and "not resumable" not in p.log
    s = summary(run)
    assert s["resumed_from"] == str(run / "checkpoints" / "last.ckpt") and s["attempts"] == 2
    assert s["train_seconds"] > seconds_before  # both attempts' time
    assert not (run / "checkpoints").exists()  # hf/ holds the result
    assert_same_run(run, reference)


@pytest.mark.slow
def test_a_killed_run_whose_run_dir_was_moved_resumes_and_ends_as_an_uninterrupted_run(
    cache_dir, reference_run, killed_at_7
):
    """A run dir copied off a cluster (or renamed) before the rerun: its checkpoints name the old folder."""
    _, run = killed_at_7

    p = ok(cli([*FINETUNE, f"hydra.run.dir={run}"]))

    assert "the checkpoint was made in another folder" in p.log and summary(run)["attempts"] == 2
    assert_same_run(run, reference_run(FINETUNE))


@pytest.mark.slow
def test_a_gradually_unfrozen_run_killed_mid_epoch_resumes_and_ends_as_an_uninterrupted_run(tmp_path, cache_dir):
    """The resumed run thaws its layers at the steps of the uninterrupted run (all thawed by 90% of the 12 steps)."""
    args = [*FINETUNE, "finetune=gradual_unfreeze", "finetune.unfreeze_by=0.9"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    ok(cli([*args, f"hydra.run.dir={reference}"]))
    killed_at(7, [*args, f"hydra.run.dir={run}"])
    ok(cli([*args, f"hydra.run.dir={run}"]))

    assert summary(run)["resumed_from"]
    assert_same_run(run, reference)


def test_resume_never_starts_over_and_a_finished_run_is_not_resumed(tmp_path, cache_dir, killed_at_5):
    run = tmp_path / "run"
    shutil.copytree(killed_at_5, run)
    assert summary(run)["status"] == "running" and (run / "checkpoints" / "last.ckpt").is_file()

    ok(cli([*FINETUNE, "trainer.max_epochs=2", f"hydra.run.dir={run}", "resume=never"]))

    s = summary(run)
    assert s["status"] == "finished" and s["resumed_from"] is None and s["attempts"] == 1
    assert len(val_curve(run)) == 2  # a fresh metrics.csv, not the killed attempt's rows plus these


def test_resume_from_a_checkpoint_path_continues_it_in_another_run_dir(tmp_path, cache_dir, killed_at_5):
    args = [*FINETUNE, "trainer.max_epochs=2"]
    ckpt = tmp_path / "epoch0.ckpt"  # the end of epoch 0, step 4
    shutil.copy(killed_at_5 / "checkpoints" / "last.ckpt", ckpt)

    ok(cli([*args, f"resume={ckpt}", f"hydra.run.dir={tmp_path / 'run'}"]))

    s = summary(tmp_path / "run")
    assert s["status"] == "finished" and s["resumed_from"] == str(ckpt) and s["steps"] == 8
    assert len(val_curve(tmp_path / "run")) == 1  # only epoch 1 was trained (and validated) here


def test_resume_names_a_missing_checkpoint_file(tmp_path, cache_dir):
    p = cli([*FINETUNE, f"resume={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}"])

    assert p.returncode == 2 and "resume" in p.stderr and "nope.ckpt" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.fixture()
def corpus(tmp_path) -> Path:
    rng = random.Random(0)
    subjects = ["the bank", "the company", "the minister", "the club", "the band", "the court"]
    verbs = ["said", "reported", "announced", "denied", "confirmed"]
    objects = ["record profits", "a new album", "higher taxes", "a late goal", "the appeal", "job cuts"]
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(40):
        n = rng.randint(3, 8)
        text = " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(n))
        (root / f"{i:03d}.txt").write_text(text)
    return root


@pytest.mark.slow
def test_a_pretraining_run_with_dynamic_masking_resumes_exactly(tmp_path, cache_dir, corpus):
    args = [
        *TINY,
        "task=pretrain_mlm",
        "task.source=files",
        f"task.data_dir={corpus}",
        "task.max_seq_length=48",
        "task.mlm.validation_documents=0.1",
        "model.max_position_embeddings=64",
        "batch_size=8",
        "trainer.max_epochs=2",
        "optimizer.lr=1e-3",
        "trainer.deterministic=true",
        "callbacks.checkpoint_every_n_steps=2",
    ]
    reference, run = tmp_path / "reference", tmp_path / "run"
    ok(cli([*args, f"hydra.run.dir={reference}"]))

    killed_at(3, [*args, f"hydra.run.dir={run}"])  # last.ckpt of step 2, mid-epoch 0
    ok(cli([*args, f"hydra.run.dir={run}"]))

    assert summary(run)["resumed_from"]
    # a tiny model this short stays at the unigram baseline: both runs end undertrained, the resumed one as well
    assert_same_run(run, reference, status="undertrained")


@pytest.mark.slow
def test_a_rerun_sweep_resumes_its_killed_job_and_skips_the_finished_one(tmp_path, cache_dir):
    sweep, reference = tmp_path / "sweep", tmp_path / "reference"
    args = ["-m", *FINETUNE, "seed=1,2", f"hydra.sweep.dir={sweep}"]
    ok(cli([*FINETUNE, "seed=2", f"hydra.run.dir={reference}"]))

    killed_at(7, args, run_filter="seed=2")  # the sweep process dies in its second job
    (done,) = [d for d in sweep.iterdir() if "seed=1" in d.name]
    (killed,) = [d for d in sweep.iterdir() if "seed=2" in d.name]
    assert summary(done)["status"] == "finished" and summary(killed)["status"] == "running"
    finished_at = summary(done)["finished_at"]

    p = ok(cli(args))

    assert p.log.count("skipping") == 1 and summary(done)["finished_at"] == finished_at
    assert summary(killed)["resumed_from"] == str(killed / "checkpoints" / "last.ckpt")
    assert_same_run(killed, reference)


def test_a_multitask_run_killed_mid_epoch_resumes_and_ends_as_an_uninterrupted_run(tmp_path, cache_dir):
    """Two tasks, batches drawn by temperature: the resumed run draws the rest of the killed epoch's batches."""
    args = [
        *FINETUNE,
        "task=multitask",
        "task.tasks=[csv_example,rotten_tomatoes]",
        "task.sampling=temperature",
        "task.max_train_samples=40",
        "task.max_eval_samples=16",
        "trainer.limit_val_batches=4",  # every task's validation batches (debug evaluates 2)
    ]
    reference, run = tmp_path / "reference", tmp_path / "run"
    ok(cli([*args, f"hydra.run.dir={reference}"]))
    killed_at(7, [*args, f"hydra.run.dir={run}"])
    p = ok(cli([*args, f"hydra.run.dir={run}"]))

    assert "resuming from" in p.log
    a, b = summary(run), summary(reference)
    assert a["resumed_from"] and a["status"] == b["status"] == "finished"
    assert a["val"] == b["val"] and a["test"] == b["test"] and a["steps"] == b["steps"]
    assert {"csv_example/accuracy", "rotten_tomatoes/accuracy", "mean"} <= set(a["val"])
    assert val_curve(run) == val_curve(reference)
    from safetensors.torch import load_file

    for task in ("csv_example", "rotten_tomatoes"):
        wa, wb = (load_file(d / "hf" / task / "model.safetensors") for d in (run, reference))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_resumed_run_logs_to_the_same_wandb_run(tmp_path, cache_dir):
    """W&B offline: the killed attempt and the resumed one write to one W&B run id, the one kept in the run dir."""
    run = tmp_path / "run"
    args = [*FINETUNE, "trainer.max_epochs=2", "logger=wandb", f"hydra.run.dir={run}"]
    killed_at(5, args)
    run_id = (run / "wandb_id").read_text().strip()

    ok(cli(args))

    attempts = sorted((run / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and {a.name.rsplit("-", 1)[1] for a in attempts} == {run_id}
    assert summary(run)["resumed_from"] and summary(run)["attempts"] == 2


def _mtimes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.safetensors")}


@pytest.mark.slow
def test_a_feature_based_run_resumes_on_its_cached_features_and_ends_as_an_uninterrupted_run(tmp_path, cache_dir):
    args = [*FINETUNE, "finetune=feature_based", "finetune.layers=last"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    killed_at(7, [*args, f"hydra.run.dir={run}"])
    cached = _mtimes(cache_dir / "features")
    assert cached  # train, validation and test features

    p = ok(cli([*args, f"hydra.run.dir={run}"]))

    assert "resuming from" in p.log and "using cached features" in p.log
    assert _mtimes(cache_dir / "features") == cached  # the resumed attempt encoded nothing
    ok(cli([*args, f"hydra.run.dir={reference}"], {"ENCODERLAB_CACHE": str(tmp_path / "fresh")}))  # encodes anew
    a, b = summary(run), summary(reference)
    assert a["resumed_from"] and a["status"] == b["status"] == "finished"
    assert a["val"] == b["val"] and a["test"] == b["test"] and a["steps"] == b["steps"]
    assert val_curve(run) == val_curve(reference)
    ha, hb = (torch.load(d / "hf" / "feature_head.pt", weights_only=True) for d in (run, reference))  # the head
    assert ha.keys() == hb.keys() and all(torch.equal(ha[k], hb[k]) for k in ha)


@pytest.mark.slow
def test_a_distilled_run_resumes_on_its_cached_teacher_logits_and_ends_as_an_uninterrupted_run(
    tmp_path, cache_dir, reference_run
):
    teacher = reference_run(FINETUNE)  # any finished run with hf/
    args = [*FINETUNE, "finetune=distill", f"distill.teacher={teacher}"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    killed_at(7, [*args, f"hydra.run.dir={run}"])
    cached = _mtimes(cache_dir / "teacher_logits")
    assert cached

    p = ok(cli([*args, f"hydra.run.dir={run}"]))

    assert "resuming from" in p.log and "using cached teacher logits" in p.log
    assert _mtimes(cache_dir / "teacher_logits") == cached
    ok(cli([*args, f"hydra.run.dir={reference}"], {"ENCODERLAB_CACHE": str(tmp_path / "fresh")}))
    assert summary(run)["resumed_from"]
    assert_same_run(run, reference)


def test_a_bf16_true_run_resumes_from_its_fp32_weights_and_ends_as_an_uninterrupted_run(tmp_path, cache_dir):
    """bf16-true keeps fp32 master weights beside the bf16 network: the checkpoint holds them, so the resumed run
    continues from the exact weights (not their bf16 rounding), and the export is fp32."""
    args = [*FINETUNE, "precision=bf16-true"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    ok(cli([*args, f"hydra.run.dir={reference}"]))
    killed_at(7, [*args, f"hydra.run.dir={run}"])
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert {v.dtype for k, v in state.items() if k.startswith("network.") and v.is_floating_point()} == {torch.float32}

    ok(cli([*args, f"hydra.run.dir={run}"]))

    assert_same_run(run, reference)
    assert {v.dtype for v in weights(run).values()} == {torch.float32}
