"""Launcher configs: joblib runs two jobs at a time by default; slurm renders a valid sbatch script for DDP."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from encoderlab.cli.train import CONF_DIR


def _hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_joblib_runs_two_jobs_at_a_time_by_default():
    launcher = _hydra(["hydra/launcher=joblib"]).hydra.launcher

    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 2 and launcher.prefer == "processes"


def test_slurm_config_renders_an_sbatch_script_matching_the_ddp_trainer(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")  # no cluster here: pretend srun exists
    cfg = _hydra(
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.tasks_per_node=4",
            "hydra.launcher.partition=gpu",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")

    # what the plugin does in launch(): executor-specific keys get the "slurm_" prefix, then submitit checks them
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params.pop("max_num_timeout")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -c 'print(1)'", "uid")

    for line in ("--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4", "--partition=gpu", "--time=240"):
        assert f"#SBATCH {line}\n" in script, script
