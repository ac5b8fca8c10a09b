"""Multitask fine-tuning: one shared encoder, one head per task, batches drawn per task, metrics per task + mean."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from support import FIXTURES, keyword_csv, reviews_task, tiny_model

from encoderlab.config.schema import CallbacksConfig, OptimizerConfig, RunConfig, TaskConfig, TrainerConfig
from encoderlab.errors import ConfigError
from encoderlab.kinds.multitask.data import MultiTaskBatchSampler, TaskBatching, task_probabilities

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


# ---------------------------------------------------------------- sampling


def _task_of(batch: list[int], offsets: list[int]) -> int:
    return max(t for t, lo in enumerate(offsets) if batch[0] >= lo)


def _sampler(sampling: str, sizes=(300, 100, 20), temperature: float = 2.0, seed: int = 0, **kw):
    lengths = [random.Random(i).randint(3, 40) for i in range(sum(sizes))]
    return MultiTaskBatchSampler(lengths, list(sizes), 10, sampling, temperature, seed=seed, **kw)


def test_proportional_sampling_trains_on_every_batch_of_every_task_once_per_epoch():
    s = _sampler("proportional")
    for epoch in range(3):
        batches = s.batches(epoch)
        rows = sorted(i for b in batches for i in b)
        assert rows == list(range(420))  # each example exactly once
        assert all(len({_task_of([i], s.offsets) for i in b}) == 1 for b in batches)  # one task per batch
        counts = Counter(_task_of(b, s.offsets) for b in batches)
        assert [counts[t] for t in range(3)] == [30, 10, 2]  # shares proportional to the tasks' sizes
    # shuffled across tasks, not task after task
    first = [_task_of(b, s.offsets) for b in s.batches(0)[:12]]
    assert len(set(first)) > 1


def test_temperature_sampling_draws_tasks_with_n_to_the_one_over_tau():
    s = _sampler("temperature", temperature=2.0)
    draws = [_task_of(b, s.offsets) for e in range(60) for b in s.batches(e)]
    expected = [math.sqrt(n) for n in (300, 100, 20)]
    expected = [x / sum(expected) for x in expected]
    counts = Counter(draws)
    observed = [counts[t] / len(draws) for t in range(3)]
    assert observed == pytest.approx(expected, abs=0.02), (observed, expected)
    assert task_probabilities([300, 100, 20], "temperature", 1.0) == pytest.approx([300 / 420, 100 / 420, 20 / 420])
    assert task_probabilities([300, 100, 20], "temperature", 1e6) == pytest.approx([1 / 3] * 3, abs=1e-4)


def test_round_robin_takes_the_tasks_in_turn_and_cycles_a_small_one():
    s = _sampler("round_robin")
    batches = s.batches(0)
    order = [_task_of(b, s.offsets) for b in batches]
    assert order[:6] == [0, 1, 2, 0, 1, 2] and len(order) == 42
    assert Counter(order) == Counter({0: 14, 1: 14, 2: 14})
    smallest = [b for b in batches if _task_of(b, s.offsets) == 2]  # 2 batches per pass, 14 drawn: 7 passes
    assert sorted(i for b in smallest[:2] for i in b) == list(range(400, 420))


def test_batch_order_depends_on_seed_and_epoch_only_and_resumes_mid_epoch():
    a, b, c = _sampler("temperature"), _sampler("temperature"), _sampler("temperature", seed=1)
    assert a.batches(2) == b.batches(2) and a.batches(2) != a.batches(3) and a.batches(2) != c.batches(2)
    a.resume(2, 5)
    assert list(iter(a)) == b.batches(2)[5:]
    assert len(a) == 42
    # under DDP each rank gets every other batch of the same epoch
    r0, r1 = _sampler("proportional", num_replicas=2, rank=0), _sampler("proportional", num_replicas=2, rank=1)
    assert r0.batches(0) + r1.batches(0) != [] and not set(map(tuple, r0.batches(0))) & set(map(tuple, r1.batches(0)))


def test_eval_batches_hold_one_task_each_and_interleave_the_tasks():
    batching = TaskBatching({"validation": [7, 3, 5]})
    lengths = list(range(15))
    batches = batching.eval_batches("validation", lengths, 2)
    offsets = [0, 7, 10]
    tasks = [_task_of(b, offsets) for b in batches]
    assert all(len({_task_of([i], offsets) for i in b}) == 1 for b in batches)
    assert tasks[:3] == [0, 1, 2]  # a capped evaluation (limit_val_batches) still sees every task
    assert sorted(i for b in batches for i in b) == lengths


# ---------------------------------------------------------------- data and runs


def _names_conll(path: Path, n: int = 120) -> Path:
    """Sentences of filler words with a person or a city in them: tags that the words themselves decide."""
    rng = random.Random(1)
    filler = "we went to see it there then with from and".split()
    people, cities = ["john", "mary", "peter", "anna"], ["paris", "london", "berlin", "rome"]
    lines = []
    for _ in range(n):
        words = [(w, "O") for w in rng.sample(filler, 4)]
        words.insert(rng.randrange(5), (rng.choice(people), "B-PER"))
        words.insert(rng.randrange(6), (rng.choice(cities), "B-LOC"))
        lines += [f"{w} {t}" for w, t in words] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


def ner_task(path: Path, **kw) -> TaskConfig:
    base = dict(
        name="ner",
        kind="token_classification",
        source="files",
        data_files={"train": str(path)},
        validation_split=None,
        test_split=None,
        validation_size=0.2,
        test_size=0.2,
        label_names=TAGS,
        max_seq_length=32,
        metrics=["entity_f1", "token_accuracy"],
        primary_metric="entity_f1",
    )
    return TaskConfig(**(base | kw))


def multitask_run(tmp_path, subtasks: dict[str, TaskConfig], strategy: str = "full", **task_kw) -> RunConfig:
    task = TaskConfig(
        name="multitask",
        kind="multitask",
        tasks=list(subtasks),
        subtasks=subtasks,
        metrics=["mean"],
        primary_metric="mean",
        **task_kw,
    )
    run = RunConfig(
        task=task,
        model=tiny_model(max_position_embeddings=128),
        optimizer=OptimizerConfig(lr=3e-3),
        trainer=TrainerConfig(max_epochs=6, accelerator="cpu", devices=1, enable_progress_bar=False),
        callbacks=CallbacksConfig(early_stopping=False, rich_progress=False),
        batch_size=8,
        eval_batch_size=16,
    )
    run.finetune.strategy = strategy
    run.paths.cache_dir = str(tmp_path / "cache")
    run.check()
    return run


def _fixture_tasks() -> dict[str, TaskConfig]:
    """The two offline fixtures: reviews.csv (classification) and ner_small.conll (NER)."""
    return {"reviews": reviews_task(), "ner": ner_task(FIXTURES / "ner_small.conll", name="ner")}


def test_a_tiny_multitask_run_learns_each_task_and_logs_per_task_metrics_and_their_mean(tmp_path, cache_dir):
    from encoderlab.runner import execute

    torch.manual_seed(0)
    subtasks = {
        "kw": reviews_task(
            name="kw",
            data_files={"train": str(keyword_csv(tmp_path / "kw.csv", 160, filler_words=5))},
            text_fields=["text"],
            label_field="label",
            max_seq_length=16,
        ),
        "ner": ner_task(_names_conll(tmp_path / "names.conll")),
    }
    run = multitask_run(tmp_path, subtasks, sampling="temperature", temperature=2.0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["status"] == "finished" and summary["primary_metric"] == "mean"
    test = summary["test"]
    assert test["kw/accuracy"] > 0.85, test  # chance: 0.5
    assert test["ner/entity_f1"] > 0.5, test  # an untrained tagger: ~0
    assert test["mean"] == pytest.approx((test["kw/accuracy"] + test["ner/entity_f1"]) / 2)
    assert {"kw/accuracy", "ner/entity_f1", "mean"} <= set(summary["val"])
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/kw/accuracy", "val/ner/entity_f1", "val/mean", "train/kw/loss", "train/ner/loss"} <= set(header)
    assert set(summary["data"]["sizes"]["train"]) == {"kw", "ner"}
    for name, kind in (("kw", "BertForSequenceClassification"), ("ner", "BertForTokenClassification")):
        config = json.loads((run_dir / "hf" / name / "config.json").read_text())
        assert config["architectures"] == [kind]
        assert f"{name} / tiny / full" in (run_dir / "hf" / name / "README.md").read_text()  # its own model card
    from encoderlab.deploy.served import ServeError, describe_hf

    assert describe_hf(run_dir / "hf" / "ner")["kind"] == "token_classification"
    with pytest.raises(ServeError, match="one model per task"):  # encoderlab-predict RUN_DIR names the task folders
        describe_hf(run_dir / "hf")

    # each task's test predictions, in the files a single-task run of its kind writes, scored as the run scored them
    def rows(name):
        return [json.loads(line) for line in (run_dir / "tasks" / name / "predictions_test.jsonl").open()]

    kw = rows("kw")
    assert len(kw) == summary["data"]["sizes"]["test"]["kw"]
    assert {"text", "gold", "pred", "probabilities"} <= set(kw[0])
    assert sum(r["correct"] for r in kw) / len(kw) == pytest.approx(test["kw/accuracy"])
    ner = rows("ner")
    assert len(ner) == summary["data"]["sizes"]["test"]["ner"]
    assert {"tokens", "entities", "gold_entities"} <= set(ner[0])
    scores = json.loads((run_dir / "tasks" / "ner" / "entity_scores_test.json").read_text())
    assert scores["entity_f1"] == pytest.approx(test["ner/entity_f1"])

    # and encoderlab-report analyses the errors of each task
    from encoderlab.cli.report import main as report

    out = tmp_path / "report"
    assert report([str(run_dir), "--out", str(out)]) == 0
    sections = [line for line in (out / "errors.md").read_text().splitlines() if line.startswith("## ")]
    assert sections == ["## all runs · kw", "## all runs · ner"]
    assert len(list(out.glob("confusion_*kw*.png"))) == 1


def _trained_module(tmp_path, strategy="full", steps: int = 4, **finetune):
    """A multitask module on the two fixtures, trained ``steps`` optimizer steps outside Lightning."""
    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.kinds.multitask import kind as kind
    from encoderlab.models.encoder import load_tokenizer
    from encoderlab.training.optim import build_optimizer
    from encoderlab.training.param_groups import build_param_groups

    torch.manual_seed(0)
    run = multitask_run(tmp_path, _fixture_tasks(), strategy)
    for k, v in finetune.items():
        setattr(run.finetune, k, v)
    tokenizer = load_tokenizer(run.model)
    prepared = kind.prepare(run, tokenizer, None)
    module = kind.build(run, prepared, tokenizer)
    dm = EncoderDataModule(
        prepared.datasets,
        prepared.collator,
        4,
        8,
        run.speed,
        seed=0,
        lengths=prepared.lengths,
        batching=prepared.batching,
    )
    before = {n: p.detach().clone() for n, p in module.network.named_parameters()}
    optimizer = build_optimizer(build_param_groups(module.network, run.optimizer, module.n_layers), run.optimizer)
    batches = list(dm.train_dataloader())
    assert {int(b["task_id"][0]) for b in batches} == {0, 1}
    for batch in batches[:steps]:
        loss, _ = module.step(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return module, before, tokenizer, dm


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_exported_task_models_load_with_pipeline_and_predict_as_the_trained_model(tmp_path, cache_dir, strategy):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, pipeline

    from encoderlab.kinds.multitask import kind as kind

    module, before, tokenizer, dm = _trained_module(tmp_path, strategy, steps=6)
    if strategy == "lora":  # adapters on the shared encoder; its own weights stay, the heads train
        trainable = {n for n, p in module.network.named_parameters() if p.requires_grad}
        assert any("lora_" in n for n in trainable) and any("heads.ner.classifier" in n for n in trainable)
        assert not any("encoder.encoder.layer" in n and "lora_" not in n for n in trainable)
    module.eval()
    out = tmp_path / "hf"
    kind.export(module, tokenizer, out, None)
    for batch in dm.val_dataloader():
        name, inner = module._route(batch)
        inputs = {k: inner[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        auto = AutoModelForTokenClassification if name == "ner" else AutoModelForSequenceClassification
        with torch.no_grad():
            trained = module.network(name, **inputs)
            again = auto.from_pretrained(out / name).eval()(**inputs).logits
        torch.testing.assert_close(again, trained)

    texts = ["the best movie of the year", "a dull, lifeless mess"]
    clf = pipeline("text-classification", model=str(out / "reviews"), device="cpu")
    with torch.no_grad():
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        want = module.network("reviews", **enc).argmax(-1).tolist()
    assert [r["label"] for r in clf(texts)] == [["neg", "pos"][i] for i in want]

    ner = pipeline("token-classification", model=str(out / "ner"), device="cpu")
    text = "Peter Blackburn went to Brussels"
    enc = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        tags = [TAGS[i] for i in module.network("ner", **enc).argmax(-1)[0].tolist()]
    got = {r["index"]: r["entity"] for r in ner(text)}  # the pipeline leaves out the tokens tagged O
    assert got == {i: t for i, t in enumerate(tags) if t != "O" and 0 < i < len(tags) - 1}


def test_top_k_leaves_the_frozen_part_of_the_shared_encoder_unchanged(tmp_path, cache_dir):
    module, before, _, _ = _trained_module(tmp_path, "top_k", k=1)
    after = dict(module.network.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    frozen = [n for n in after if n.startswith("encoder.embeddings.") or n.startswith("encoder.encoder.layer.0.")]
    assert frozen and not changed & set(frozen)
    assert any(n.startswith("encoder.encoder.layer.1.") for n in changed)  # the top layer learns
    assert any(n.startswith("heads.reviews.classifier") for n in changed)
    assert any(n.startswith("heads.ner.classifier") for n in changed)


def test_frozen_encoder_trains_only_the_heads_and_llrd_decays_the_shared_layers(tmp_path, cache_dir):
    from encoderlab.training.param_groups import build_param_groups

    module, before, _, _ = _trained_module(tmp_path, "frozen")
    changed = {n for n, p in module.network.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all(n.startswith("heads.") and ".bert." not in n for n in changed), changed

    run = multitask_run(tmp_path, _fixture_tasks())
    run.optimizer = OptimizerConfig(lr=1e-3, layer_decay=0.5)
    from encoderlab.kinds.multitask import kind as kind
    from encoderlab.models.encoder import load_tokenizer

    tokenizer = load_tokenizer(run.model)
    module = kind.build(run, kind.prepare(run, tokenizer, None), tokenizer)
    groups = build_param_groups(module.network, run.optimizer, 2)
    assert {g["layer_id"]: g["lr"] for g in groups} == pytest.approx({0: 2.5e-4, 1: 5e-4, 2: 1e-3, 3: 1e-3})
    head_ids = {id(p) for g in groups if g["layer_id"] == 3 for p in g["params"]}
    assert {id(p) for p in module.network.heads["ner"].classifier.parameters()} <= head_ids


# ---------------------------------------------------------------- config


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from encoderlab.cli.train import CONF_DIR
    from encoderlab.config.validate import validate

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return validate(cfg)


def test_an_unknown_task_is_a_one_line_error_naming_task_tasks():
    with pytest.raises(ConfigError) as err:
        _compose(["task=multitask", "task.tasks=[rotten_tomatoes,no_such_task]"])
    msg = str(err.value)
    assert "task.tasks" in msg and "no_such_task" in msg and "rotten_tomatoes" in msg and "\n" not in msg


def test_sub_tasks_come_from_their_task_files_with_a_shared_cap_and_own_overrides():
    run = _compose(
        [
            "task=multitask",
            "task.tasks=[rotten_tomatoes,wnut16]",
            "task.max_train_samples=500",
            "+task.subtasks.wnut16.max_seq_length=64",
        ]
    )
    rt, wn = run.task.subtasks["rotten_tomatoes"], run.task.subtasks["wnut16"]
    assert (rt.kind, rt.max_train_samples, rt.label_names) == ("sequence_classification", 500, ["rotten", "fresh"])
    assert (wn.kind, wn.max_train_samples, wn.max_seq_length) == ("token_classification", 500, 64)
    assert run.task.primary_metric == "mean"
    with pytest.raises(ConfigError, match="task.subtasks.wnut16.max_seq_lenght"):
        _compose(["task=multitask", "task.tasks=[wnut16]", "+task.subtasks.wnut16.max_seq_lenght=64"])
    with pytest.raises(ConfigError, match="task.tasks"):
        _compose(["task=multitask", "task.tasks=[rotten_tomatoes,squad_v1]"])
    with pytest.raises(ConfigError, match="finetune.strategy"):
        _compose(["task=multitask", "finetune=feature_based"])


# ---------------------------------------------------------------- report


def test_report_task_view_puts_a_multitask_run_beside_the_single_task_runs_of_that_task():
    from encoderlab.report import build_report, records_to_frame
    from encoderlab.report.runs import RunRecord, select_task

    def record(i, task, kind, test, data=None):
        summary = {"status": "finished", "task": task, "kind": kind, "seed": i % 3, "test": test, "data": data or {}}
        summary["primary_metric"] = "mean" if kind == "multitask" else "accuracy"
        return RunRecord(f"run{i}", summary, {"task": {"name": task}, "seed": i % 3})

    multi = {"tasks": {"rt": {"primary_metric": "accuracy"}, "ner": {"primary_metric": "entity_f1"}}}
    records = [record(i, "rt", "sequence_classification", {"accuracy": 0.7 + i / 100}) for i in range(3)]
    records += [record(3 + i, "bbc", "sequence_classification", {"accuracy": 0.9}) for i in range(3)]
    records += [
        record(6 + i, "multitask", "multitask", {"rt/accuracy": 0.8, "ner/entity_f1": 0.4, "mean": 0.6}, multi)
        for i in range(3)
    ]
    chosen = select_task(records, "rt")
    assert len(chosen) == 6 and all(r.summary["task"] == "rt" for r in chosen)
    report = build_report(records_to_frame(chosen))
    assert report.metric.column == "test/accuracy"
    means = sorted(round(float(m), 4) for m in report.table["mean"])
    assert means == [0.71, 0.8]
    with pytest.raises(Exception, match="--task nope"):
        select_task(records, "nope")
