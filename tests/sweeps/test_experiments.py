"""Every experiment file composes, every value it sweeps is valid, and it runs end to end with a tiny budget."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from encoderlab.cli.train import CONF_DIR
from encoderlab.config.schema import METRICS
from encoderlab.config.validate import validate

from .conftest import REPO, TINY

EXPERIMENTS = REPO / "experiments"
NAMES = sorted(p.relative_to(EXPERIMENTS).with_suffix("").as_posix() for p in EXPERIMENTS.rglob("*.yaml"))
OFFLINE_SOURCES = ("package", "files")


def _compose(name: str, overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[f"experiment={name}", *(overrides or [])], return_hydra_config=True)


def _job_config(cfg: DictConfig) -> DictConfig:
    """The config a job sees: without Hydra's own node."""
    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _sweep_params(cfg: DictConfig) -> dict[str, list[str]]:
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True) or {}  # ${encoderlab.sweep:...}
    return {key: [v.strip() for v in str(values).split(",")] for key, values in params.items()}


def test_there_are_experiments():
    studies = {"demo", "freezing_study", "lr_schedule_study", "lr_too_high", "bert_paper_grid", "stability_study"}
    glue = ("sst2", "cola", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
    assert studies | {f"paper/bert_base_{t}" for t in glue} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_experiment_composes_and_every_swept_value_is_valid(name):
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    header = text.split("\ndefaults:")[0]
    assert text.startswith("# @package _global_\n"), "an experiment is an override-only diff of the global config"
    assert re.search(r"(19|20)\d\d", header), "the header names the claim's source (authors, year)"

    cfg = _compose(name)
    run = validate(_job_config(cfg))
    assert run.experiment_name == Path(name).name
    assert cfg.hydra.sweep.dir == f"multirun/{run.experiment_name}"  # rerunning the sweep finds its finished jobs

    params = _sweep_params(cfg)
    assert params, "the sweep lives in the file (hydra.sweeper.params), so `-m experiment=NAME` runs it"
    parser = OverridesParser.create()
    for key, values in params.items():
        assert len(values) >= 2, f"{key}: a sweep compares at least two values"
        for value in values:
            if key in cfg.hydra.runtime.choices:  # a config group: compose with that option
                validate(_job_config(_compose(name, [f"{key}={value}"])))
                continue
            job = _job_config(cfg)
            OmegaConf.update(job, key, parser.parse_override(f"{key}={value}").value(), merge=False)
            validate(job)

    if run.published.metric is not None:
        assert run.published.metric in METRICS[run.task.kind], "published.metric must be a metric of the task kind"
    if run.published.value is not None:
        assert run.published.metric == run.task.primary_metric, "the report compares the primary metric"
        assert 0 < run.published.value <= 1 and 0 < run.published.tolerance < 0.1
        assert run.published.source


def test_an_experiment_with_a_stage_runs_on_a_given_checkpoint_once_the_stage_is_dropped(tmp_path):
    """README "Stages": `'~stages.pretrain' model.path=DIR/hf` fine-tunes a checkpoint the user already has."""
    cfg = _compose("pretrain_vs_scratch", ["~stages.pretrain", f"model.path={tmp_path}/hf"])
    run = validate(_job_config(cfg))
    assert run.stages == {}  # nothing runs before the job
    assert run.model.path == f"{tmp_path}/hf"


def _write_glue_like_files(cfg: DictConfig, folder: Path) -> dict[str, str]:
    """Tiny local files with the hub task's columns, for task.data_files (split name -> path)."""
    task = cfg.task
    folder.mkdir(parents=True, exist_ok=True)
    n_labels = len(task.label_names) if task.label_names else 0
    paths = {}
    for split in ("train", task.test_split):
        path = folder / f"{split}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*task.text_fields, task.label_field])
            for i in range(120 if split == "train" else 30):  # 5% of train still holds every class
                texts = [f"sentence {i} about item {i % 7} ({field})" for field in task.text_fields]
                label = (i % 5) * 1.25 if task.kind == "sequence_regression" else i % n_labels
                writer.writerow([*texts, label])
        paths[split] = str(path)
    return paths


def _tiny_teacher(cfg: DictConfig, overrides: dict[str, str], run_dir: Path) -> Path:
    """The experiment's teacher stage with the tiny budget of its jobs, run in ``run_dir``."""
    from encoderlab.runner import execute

    tiny = {k: v for k, v in overrides.items() if not k.startswith(("distill.", "seed"))} | {"save_model": "true"}
    stage = list(cfg.stages.teacher.overrides) + [f"{k}={v}" for k, v in tiny.items()]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        run = validate(compose("config", overrides=stage))
    run_dir.mkdir()
    assert execute(run, run_dir, stage)["status"] == "finished"
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_experiment_runs_with_a_tiny_budget(name, tmp_path, cache_dir):
    from encoderlab.runner import execute

    cfg = _compose(name)
    overrides = {key: values[0] for key, values in _sweep_params(cfg).items()}  # the sweep's first job
    overrides |= dict(o.split("=", 1) for o in TINY)
    overrides |= {
        "model.path": "null",  # a tiny random-init BERT whatever the experiment's encoder
        "model.from_scratch": "true",
        "trainer.max_epochs": "1",
        "task.max_train_samples": "64",
        "task.max_eval_samples": "32",
        "save_model": "false",
    }
    hub = cfg.task.source not in OFFLINE_SOURCES
    if hub:
        overrides["task.source"] = "files"
    if cfg.finetune.strategy == "distill":  # the teacher stage, tiny too
        overrides["distill.teacher"] = str(_tiny_teacher(cfg, overrides, tmp_path / "teacher"))
    args = [f"{k}={v}" for k, v in overrides.items()]
    job = _job_config(_compose(name, args))
    if hub:  # paper/*: the hub task's columns and splits, from tiny local files
        job.task.data_files = _write_glue_like_files(job, tmp_path / "data")
    run = validate(job)

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, args)

    assert summary["status"] == "finished"
    assert run.task.primary_metric in summary["test"]
    assert summary["experiment"] == Path(name).name
