"""Two DDP processes (gloo on CPU) report exactly the metrics of one process: no evaluation row counts twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clirun import run_cli
from support import TINY

ROOT = Path(__file__).resolve().parents[2]
DDP = ["trainer.devices=2", "trainer.strategy=ddp"]
# a learning rate so small that no weight moves: both runs evaluate the same network (the DDP run takes half the
# optimizer steps), so any difference in their metrics comes from how evaluation rows are split between ranks
FIXED = ["optimizer.lr=1e-30", "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
# every evaluation row (trainer=debug would cut evaluation to 2 batches per rank)
FIXED += ["trainer.limit_val_batches=null", "trainer.limit_test_batches=null"]


def run(args: list[str], run_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    assert "ENCODERLAB_CACHE" in env, "use the cache_dir fixture"
    p = run_cli("encoderlab-train", [*TINY, *FIXED, *args, f"hydra.run.dir={run_dir}"], env, ROOT)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-5000:]}"
    said = [line for line in p.stdout.splitlines() if line.startswith("encoderlab: ")]
    # one process prints the result (and, for a pre-training run this short, that it is undertrained): no line twice
    assert said and len(said) == len(set(said)), said
    return json.loads((run_dir / "summary.json").read_text())


def _corpus(path: Path) -> Path:
    words = "the film a story of love and war told with warmth wit and a fine cast in a small town".split()
    docs = []
    for d in range(60):
        sentences = [" ".join(words[(d + s) % 7 :][: 6 + (d * s) % 9]).capitalize() + "." for s in range(4)]
        docs.append(" ".join(sentences))
    path.write_text("\n\n".join(docs) + "\n")
    return path


# 11 validation and 9 test rows: neither two nor three ranks split them evenly, padding would repeat a row; a train
# batch of 4, so that each of three ranks has one
CLASSIFICATION = ["task=csv_example", "task.test_size=0.15", "eval_batch_size=4", "batch_size=4"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """``one(args)``: the summary of the one-process run of ``args``, made once for the module's tests."""
    root = tmp_path_factory.mktemp("one_process")
    made: dict[tuple[str, ...], dict] = {}

    def one(args: list[str]) -> dict:
        if tuple(args) not in made:
            made[tuple(args)] = run(args, root / f"run{len(made)}")
        return made[tuple(args)]

    return one


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classification", "pretraining", "ner", "qa"])
def test_two_processes_report_the_metrics_of_one(tmp_path, cache_dir, task, one_process):
    if task == "classification":
        args = CLASSIFICATION
    elif task == "ner":  # sentences scored whole: each rank's word tags are gathered before scoring
        args = ["task=wnut16", "task.max_train_samples=40", "task.max_eval_samples=23", "task.max_seq_length=32"]
        args += ["eval_batch_size=4"]
    elif task == "qa":  # the windows of one question land on both ranks: post-processing needs all of them
        squad = ROOT / "tests" / "fixtures" / "squad_v2_small.json"
        args = ["task=squad_v2", "task.source=files", "task.validation_split=validation", "task.test_split=test"]
        args += [f"task.data_files.{split}={squad}" for split in ("train", "validation", "test")]
        args += ["task.max_seq_length=64", "task.qa.doc_stride=16", "batch_size=2", "eval_batch_size=3"]
    else:
        args = ["task=pretrain_mlm", "task.source=files", f"task.data_files.train={_corpus(tmp_path / 'c.txt')}"]
        args += ["task.mlm.validation_documents=0.1", "task.max_seq_length=32", "eval_batch_size=3"]
    one = one_process(args)
    two = run([*args, *DDP], tmp_path / "two")

    # lr 1e-30 learns nothing: a pre-training run this short ends undertrained, as it should, on every rank count
    assert one["status"] == two["status"] == ("undertrained" if task == "pretraining" else "finished")
    for split in ("val", "test"):
        assert set(two[split]) == set(one[split])
        assert two[split] == one[split], split  # exactly: accuracy, F1, losses, perplexity


@pytest.mark.slow
def test_three_processes_report_the_metrics_of_one(tmp_path, cache_dir, one_process):
    """Metrics torchmetrics has synchronised are logged as they are: averaging three equal float32 values again
    can land 1 ulp away."""
    one = one_process(CLASSIFICATION)
    three = run([*CLASSIFICATION, "trainer.devices=3", "trainer.strategy=ddp"], tmp_path / "three")

    assert one["status"] == three["status"] == "finished"
    for split in ("val", "test"):
        assert three[split] == one[split], split


def test_metrics_synchronised_by_torchmetrics_are_logged_as_they_are():
    """Lightning's sync_dist reduces a logged value across processes: a mean of three equal float32 values
    (all_reduce's sum, then / 3) can land 1 ulp away from the value itself (0.9 does)."""
    import torch
    from pytorch_lightning.strategies import SingleDeviceStrategy
    from support import quiet_trainer

    from encoderlab.config.schema import RunConfig
    from encoderlab.models.module import EncoderModule

    class ThreeEqualRanks(SingleDeviceStrategy):
        """What DDP's reduce does with the value every one of three processes holds."""

        is_distributed = True  # Lightning then syncs what is logged with sync_dist=True through reduce

        def reduce(self, tensor, group=None, reduce_op="mean"):
            if not isinstance(tensor, torch.Tensor) or reduce_op in ("max", "min"):
                return tensor
            total = tensor + tensor + tensor
            return total / 3 if reduce_op in ("mean", "avg") else total

    class Scored(EncoderModule):
        def step(self, batch):
            return self.network(batch["features"]).mean(), {}

        def update_metrics(self, stage, batch, outputs):
            pass

        def compute_metrics(self, stage):
            return {"accuracy": 0.9}  # as torchmetrics returns it: the same on every process

    module = Scored(torch.nn.Linear(2, 1), RunConfig(), n_layers=0)
    rows = [{"features": torch.ones(2)} for _ in range(4)]
    trainer = quiet_trainer(strategy=ThreeEqualRanks(device=torch.device("cpu")), use_distributed_sampler=False)
    assert isinstance(trainer.strategy, ThreeEqualRanks)
    (logged,) = trainer.validate(module, torch.utils.data.DataLoader(rows, batch_size=2), verbose=False)

    assert logged["val/accuracy"] == float(torch.tensor(0.9))  # exactly the value torchmetrics gave
