"""Tiny random-init runs trained for a few steps in-process (run dir with .hydra/config.yaml, hf/, summary)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from support import FIXTURES, reviews_task

from encoderlab.config.schema import (
    CallbacksConfig,
    ModelConfig,
    OptimizerConfig,
    PathsConfig,
    RunConfig,
    TaskConfig,
    TrainerConfig,
)

torch.set_num_threads(1)


def tiny_model() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        from_scratch=True,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )


def train(run_dir: Path, task: TaskConfig, cache: Path, epochs: int = 4) -> Path:
    """A finished run directory, as encoderlab-train writes it."""
    from encoderlab.runner import execute

    run = RunConfig(
        task=task,
        model=tiny_model(),
        optimizer=OptimizerConfig(lr=1e-3),
        trainer=TrainerConfig(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False, log_every_n_steps=1),
        callbacks=CallbacksConfig(rich_progress=False, early_stopping=False),
        paths=PathsConfig(cache_dir=str(cache)),
        batch_size=8,
        eval_batch_size=16,
    )
    run.check()
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.structured(run), run_dir / ".hydra" / "config.yaml")
    summary = execute(run, run_dir, [])
    assert summary["status"] == "finished"
    return run_dir


@pytest.fixture(scope="session")
def cls_run(tmp_path_factory, minilm_path) -> Path:
    """reviews.csv (neg/pos), 38 train / 10 validation / 12 test rows."""
    root = tmp_path_factory.mktemp("cls")
    return train(root / "run", reviews_task(max_seq_length=32), root / "cache")


@pytest.fixture(scope="session")
def ner_run(tmp_path_factory, minilm_path) -> Path:
    root = tmp_path_factory.mktemp("ner")
    task = TaskConfig(
        name="ner_file",
        kind="token_classification",
        data_files={"train": str(FIXTURES / "ner_small.conll")},
        validation_split=None,
        test_split=None,
        validation_size=0.2,
        test_size=0.2,
        max_seq_length=32,
        metrics=["entity_f1", "token_accuracy"],
        primary_metric="entity_f1",
    )
    return train(root / "run", task, root / "cache", epochs=2)
