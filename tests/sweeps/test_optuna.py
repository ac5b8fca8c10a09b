"""hydra/sweeper=optuna (alias optuna_search): the task's direction, SQLite in the sweep dir, a study that continues."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from encoderlab.cli.train import CONF_DIR

from .conftest import TINY, run_dirs, train

SEARCHED = {"optimizer.lr", "scheduler.warmup_ratio", "optimizer.layer_decay"}


def _sweeper(overrides: list[str], name: str = "optuna"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/sweeper={name}", *overrides], return_hydra_config=True)
    return cfg.hydra.sweeper


@pytest.mark.parametrize("name", ["optuna", "optuna_search"])
@pytest.mark.parametrize(("task", "direction"), [("rotten_tomatoes", "maximize"), ("pretrain_mlm", "minimize")])
def test_the_study_optimises_the_task_metric_in_its_direction(task, direction, name):
    sweeper = _sweeper([f"task={task}", "experiment_name=x"], name)

    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler._target_.endswith("TPESampler")
    assert sweeper.direction == direction
    assert sweeper.study_name == "x"
    assert set(sweeper.params) == SEARCHED


def test_the_storage_is_sqlite_in_the_sweep_dir_which_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    storage = _sweeper(["experiment_name=x"]).storage  # the default sweep dir is relative: multirun/x

    assert storage == f"sqlite:///{tmp_path}/multirun/x/optuna.db"
    assert (tmp_path / "multirun" / "x").is_dir()  # Optuna opens the file before any job creates the folder


@pytest.mark.slow
def test_a_search_writes_its_results_and_the_next_invocation_continues_it(tmp_path, cli_env):
    import optuna

    sweep = tmp_path / "search"
    args = ["-m", "hydra/sweeper=optuna", "task=csv_example", "experiment_name=search", *TINY]
    args.append(f"hydra.sweep.dir={sweep}")

    train([*args, "hydra.sweeper.n_trials=2"], cli_env, tmp_path)

    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(results.best_params) == SEARCHED and 0 <= results.best_value <= 1
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{sweep}/optuna.db")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert len(run_dirs(sweep)) == 2

    train([*args, "hydra.sweeper.n_trials=1"], cli_env, tmp_path)  # the same command again: the study goes on

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{sweep}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert len(run_dirs(sweep)) == 3

    # a trial that crashes is marked failed; the study survives it, and the command reports it (exit 1)
    proc = train(
        [*args, "hydra.sweeper.n_trials=1", "task.data_files.train=missing.csv"], cli_env, tmp_path, check=False
    )
    assert proc.returncode == 1 and "1 job(s) of this sweep failed" in proc.stderr

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{sweep}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["FAIL"]
