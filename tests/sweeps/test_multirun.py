"""Multiruns as a user runs them: a 2x2 sweep, its report, its W&B runs, a crashed job, resuming, bad keys, joblib."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO, REPORT, TINY, make_env, run_cli, run_dirs, summary, train

GRID = ["finetune=full,top_k", "seed=1,2", "task=csv_example", "experiment_name=grid", *TINY]


def wandb_run_record(run_dir: Path):
    """The run record (group, job_type, tags, config) of the offline W&B run in ``run_dir``.

    An offline run is a LevelDB-style log of protobuf records: a 7-byte file header, then 32 KiB blocks of
    records, each with a 7-byte header (checksum, length, type: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "run":
                return record.run
    raise AssertionError(f"no run record in {path}")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One 2x2 multirun (strategy x seed) with W&B offline, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("grid")
    env = make_env(tmp)
    sweep = tmp / "multirun" / "grid"
    args = ["-m", *GRID, "logger=wandb", f"hydra.sweep.dir={sweep}"]
    proc = train(args, env, tmp)
    return {"tmp": tmp, "env": env, "sweep": sweep, "args": args, "log": proc.log}


@pytest.mark.slow
def test_a_2x2_sweep_gives_4_finished_run_dirs_named_by_their_overrides(grid):
    dirs = run_dirs(grid["sweep"])

    assert len(dirs) == 4
    assert all(summary(d)["status"] == "finished" for d in dirs)
    jobs = {(summary(d)["strategy"], summary(d)["seed"]) for d in dirs}
    assert jobs == {("full", 1), ("full", 2), ("top_k", 1), ("top_k", 2)}
    for d in dirs:  # the job's folder is named by its overrides, so the same command finds it again
        assert f"finetune={summary(d)['strategy']}" in d.name.split(",") and f"seed={summary(d)['seed']}" in d.name


@pytest.mark.slow
def test_the_report_of_the_sweep_has_2_rows_of_n_2(grid, tmp_path):
    proc = run_cli([REPORT, str(grid["sweep"]), "--out", str(tmp_path / "report"), "--no-plots"], grid["env"], tmp_path)

    assert proc.returncode == 0, proc.log
    table = pd.read_csv(tmp_path / "report" / "report.csv")
    assert len(table) == 2 and table["n"].tolist() == [2, 2]
    assert "4 finished runs in 2 groups" in proc.stdout


@pytest.mark.slow
def test_wandb_runs_are_offline_and_grouped_by_experiment_and_sweep(grid):
    for d in run_dirs(grid["sweep"]):
        run = wandb_run_record(d)
        s = summary(d)

        # the experiment, plus the sweep folder when it is not the experiment's own; the same for every job
        assert run.run_group == "grid"
        assert run.job_type == s["strategy"]
        assert f"finetune={s['strategy']}" in run.tags and f"seed={s['seed']}" in run.tags
        config = {item.key: item.value_json for item in run.config.update}
        assert f'"strategy": "{s["strategy"]}"' in config["finetune"].replace('":"', '": "')


@pytest.mark.slow
def test_rerunning_a_killed_sweep_skips_the_finished_jobs_and_reruns_the_unfinished_one(grid):
    killed, *done = run_dirs(grid["sweep"])
    state = summary(killed) | {"status": "running", "finished_at": None}  # as a kill mid-job leaves it
    (killed / "summary.json").write_text(json.dumps(state))
    before = {d: summary(d)["finished_at"] for d in done}
    wandb_runs = len(list(grid["sweep"].glob("*/wandb/offline-run-*")))

    proc = train(grid["args"], grid["env"], grid["tmp"])

    assert proc.log.count("skipping") == 3
    assert {d: summary(d)["finished_at"] for d in done} == before
    assert summary(killed)["status"] == "finished"
    assert len(list(grid["sweep"].glob("*/wandb/offline-run-*"))) == wandb_runs + 1  # only the rerun job logs again


@pytest.mark.slow
def test_a_crashed_job_is_recorded_the_sweep_goes_on_and_a_rerun_retries_only_it(tmp_path, cli_env):
    shutil.copy(REPO / "tests" / "fixtures" / "reviews.csv", tmp_path / "a.csv")  # b.csv is missing
    args = ["-m", "task=csv_example", "task.data_files.train=a.csv,b.csv", *TINY, f"hydra.sweep.dir={tmp_path / 's'}"]

    proc = train(args, cli_env, tmp_path, check=False)

    # the sweep finished the other job, then listed the failed one and exited non-zero
    assert proc.returncode == 1 and "1 job(s) of this sweep failed" in proc.stderr
    (ok,) = [d for d in run_dirs(tmp_path / "s") if "a.csv" in d.name]
    (bad,) = [d for d in run_dirs(tmp_path / "s") if "b.csv" in d.name]
    assert summary(ok)["status"] == "finished"
    assert summary(bad)["status"] == "failed" and "b.csv" in summary(bad)["error"]
    finished_at = summary(ok)["finished_at"]

    shutil.copy(tmp_path / "a.csv", tmp_path / "b.csv")  # the user fixes the cause and runs the same command
    proc = train(args, cli_env, tmp_path)

    assert proc.log.count("skipping") == 1 and summary(ok)["finished_at"] == finished_at
    assert summary(bad)["status"] == "finished"


def test_a_sweep_over_a_key_that_does_not_exist_names_the_key(tmp_path, cli_env):
    proc = train(["-m", "optimizer.lrr=1e-3,2e-3", f"hydra.sweep.dir={tmp_path / 's'}"], cli_env, tmp_path, check=False)

    assert proc.returncode != 0
    assert "optimizer.lrr" in proc.stderr and "'lr'" in proc.stderr  # the key, and the keys allowed there
    assert "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path / "s")


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_at_once(tmp_path, cli_env):
    sweep = tmp_path / "s"
    args = ["-m", "hydra/launcher=joblib", "finetune=full,top_k", "task=csv_example", *TINY, f"hydra.sweep.dir={sweep}"]

    proc = train(args, cli_env, tmp_path)

    assert "Joblib.Parallel(n_jobs=2," in proc.log and "is launching 2 jobs" in proc.log
    assert "ConfigStore schema" not in proc.log  # our joblib.yaml extends the plugin's config quietly
    runs = [summary(d) for d in run_dirs(sweep)]
    assert [r["status"] for r in runs] == ["finished", "finished"]
    assert max(r["started_at"] for r in runs) <= min(r["finished_at"] for r in runs)  # they overlapped in time


def test_a_job_folder_name_stays_short_and_stable():
    from encoderlab.cli.hydra_setup import _job_dir

    short = "finetune=full,seed=1"
    long = ",".join(f"optimizer.lr_{i}=7.149387187917578e-05" for i in range(12))

    assert _job_dir(short) == short
    assert len(_job_dir(long)) <= 200 and _job_dir(long) == _job_dir(long)
    assert _job_dir(long).startswith("optimizer.lr_0=7.149387187917578e-05,")
    assert _job_dir(long) != _job_dir(long.replace("lr_11", "lr_12"))  # the hash tells apart what the cut hides


@pytest.mark.slow
def test_a_joblib_sweep_with_a_killed_job_resumes_that_job_and_skips_the_finished_ones(tmp_path, cli_env):
    sweep = tmp_path / "s"
    args = [
        "-m",
        "hydra/launcher=joblib",
        "seed=1,2,3,4",
        "task=csv_example",
        *TINY,
        "trainer.max_epochs=2",
        "callbacks.checkpoint_every_n_steps=2",
        f"hydra.sweep.dir={sweep}",
    ]
    # the job of seed 4 SIGKILLs itself at step 3 (after the checkpoint of step 2): its worker dies mid-run
    fault = cli_env | {"ENCODERLAB_KILL_AT_STEP": "3", "ENCODERLAB_KILL_RUN": "seed=4"}

    proc = train(args, fault, tmp_path, check=False)

    assert proc.returncode != 0
    (killed,) = [d for d in sweep.iterdir() if d.name.endswith("seed=4") or "seed=4," in d.name]
    assert summary(killed)["status"] == "running" and (killed / "checkpoints" / "last.ckpt").is_file()
    done = {d: summary(d)["finished_at"] for d in run_dirs(sweep) if summary(d)["status"] == "finished"}

    proc = train(args, cli_env, tmp_path)

    assert proc.log.count("skipping") == len(done)
    assert {d: summary(d)["finished_at"] for d in done} == done  # untouched
    assert [summary(d)["status"] for d in run_dirs(sweep)] == ["finished"] * 4
    s = summary(killed)
    assert s["resumed_from"] == str(killed / "checkpoints" / "last.ckpt") and s["attempts"] == 2
    assert {summary(d)["steps"] for d in run_dirs(sweep)} == {s["steps"]}  # as many steps as the other jobs

    report = run_cli([REPORT, str(sweep), "--out", str(tmp_path / "report"), "--no-plots"], cli_env, tmp_path)
    assert report.returncode == 0, report.log
    # loky may take down jobs that were still running beside the killed one: those resume too
    resumed = {int(summary(d)["seed"]) for d in run_dirs(sweep) if d not in done}
    assert 4 in resumed
    assert f"{len(resumed)} run(s) resumed from a checkpoint after an interruption" in report.stdout
    runs = pd.read_csv(tmp_path / "report" / "runs.csv").set_index("seed")
    assert runs["resumed"].to_dict() == {seed: seed in resumed for seed in (1, 2, 3, 4)}
