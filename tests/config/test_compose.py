"""Every option of every config group composes and validates (every experiment file and each value it sweeps:
tests/sweeps/test_experiments.py).

Options are discovered from the folders, so a new YAML file is covered without touching this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

import encoderlab.cli.train  # noqa: F401  (registers the schema `encoderlab_schema` in Hydra's ConfigStore)
from encoderlab.config.schema import RunConfig
from encoderlab.config.validate import validate

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
EXPERIMENTS = ROOT / "experiments"
# groups whose options are plain run config (hydra/ holds launcher and sweeper plugins, tested apart)
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment"))
# options that need a value from the user (`???` in the file), with a stand-in
REQUIRED = {
    ("model", "from_checkpoint"): ["model.path=/some/checkpoint/dir"],
    ("finetune", "distill"): ["distill.teacher=/some/run/dir"],
}
# the key in each group that carries the option's name (a file copied without renaming shows up here)
NAME_KEYS = {"task": "name", "model": "name", "finetune": "strategy", "optimizer": "name", "scheduler": "name"}


def options(folder: Path) -> list[str]:
    """Option names of a config group folder, subfolders included ('paper/bert_base_rte')."""
    return sorted(f.relative_to(folder).with_suffix("").as_posix() for f in folder.rglob("*.yaml"))


GROUP_OPTIONS = [(g, o) for g in GROUPS for o in options(CONF / g)]
EXPERIMENT_NAMES = options(EXPERIMENTS)


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        yield


def compose_run(overrides: list[str]) -> RunConfig:
    return validate(compose("config", overrides=overrides))


def test_discovery_finds_the_groups_and_experiments():
    assert {"task", "model", "finetune", "optimizer", "scheduler", "trainer", "logger"} <= set(GROUPS)
    assert len(GROUP_OPTIONS) > 30
    assert "pretrain_vs_scratch" in EXPERIMENT_NAMES
    # conf/experiment is the experiments/ folder, so `experiment=<name>` finds every file there
    assert options(CONF / "experiment") == EXPERIMENT_NAMES


def test_default_config_is_the_documented_default_job(hydra_conf):
    run = compose_run([])
    assert (run.task.name, run.model.name, run.finetune.strategy) == ("rotten_tomatoes", "minilm_l6", "full")
    assert run.logger.csv and run.speed.padding == "dynamic"


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_validates(hydra_conf, group, option):
    cfg = compose("config", overrides=[f"{group}={option}", *REQUIRED.get((group, option), [])])
    assert not OmegaConf.missing_keys(cfg), f"{group}={option} leaves keys unset"
    run = validate(cfg)
    if group in NAME_KEYS:
        assert getattr(getattr(run, group), NAME_KEYS[group]) == option.split("/")[-1]


@pytest.mark.parametrize(
    "option", [f"{g}={o}" for g in ("launcher", "sweeper") for o in options(CONF / "hydra" / g)] or ["none"]
)
def test_every_launcher_and_sweeper_option_composes_and_its_plugin_imports(hydra_conf, option):
    if option == "none":
        pytest.skip("no launcher or sweeper options")
    group = option.split("=")[0]
    cfg = compose("config", overrides=[f"hydra/{option}"], return_hydra_config=True)
    get_class(cfg.hydra[group]._target_)  # the plugin is installed


def test_group_option_overrides_reach_the_run(hydra_conf):
    run = compose_run(["task=csv_example", "model=bert_tiny", "finetune=top_k", "finetune.k=1", "scheduler=cosine"])
    assert run.task.text_fields == ["review"] and run.task.label_names == ["neg", "pos"]
    assert run.model.from_scratch and run.model.num_hidden_layers == 2
    assert (run.finetune.strategy, run.finetune.k, run.scheduler.name) == ("top_k", 1, "cosine")
