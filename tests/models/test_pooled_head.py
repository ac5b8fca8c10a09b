"""``finetune.pooling=cls|mean`` with a strategy that trains the encoder: a linear head on the pooled last layer
instead of the model's ``*ForSequenceClassification`` head. It trains what the strategy says, learns, exports as a
feature-based model and reloads with the same logits."""

from __future__ import annotations

import json

import pytest
import torch
from support import keyword_csv, keyword_task, reviews_task, tiny_model

from encoderlab.config.schema import (
    CallbacksConfig,
    FinetuneConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    TrainerConfig,
)
from encoderlab.errors import ConfigError
from encoderlab.kinds.sequence import kind as kind
from encoderlab.models.heads import FeatureModel, PooledModel, load_feature_model

torch.set_num_threads(1)


def make_run(strategy: str = "full", pooling: str | None = "mean", model: ModelConfig | None = None, **ft):
    run = RunConfig(
        task=reviews_task(max_seq_length=32),
        model=model or tiny_model(num_hidden_layers=3),
        finetune=FinetuneConfig(strategy=strategy, pooling=pooling, **ft),
        optimizer=OptimizerConfig(lr=1e-3),
        batch_size=8,
    )
    run.check()
    return run


@pytest.fixture(scope="module")
def prepared(tokenizer):
    return kind.prepare(make_run(), tokenizer, None)


@pytest.fixture()
def batch(prepared):
    return prepared.collator(prepared.datasets["train"].to_list()[:8])


def build(prepared, tokenizer, strategy="full", pooling="mean", **kw):
    torch.manual_seed(0)
    return kind.build(make_run(strategy, pooling, **kw), prepared, tokenizer)


def grads(module, batch) -> dict:
    module.network.zero_grad(set_to_none=True)
    module.step(batch)[0].backward()
    return {n: p.grad for n, p in module.network.named_parameters()}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_full_with_pooling_trains_the_whole_encoder_and_a_linear_head(prepared, tokenizer, batch, pooling):
    module = build(prepared, tokenizer, "full", pooling)
    net = module.network
    assert isinstance(net, PooledModel) and net.pooling == pooling
    assert isinstance(net.head.classifier, torch.nn.Linear) and net.head.classifier.in_features == 32
    assert not any(".pooler." in n for n, _ in net.named_parameters())  # BERT's pooler: unused, so removed
    got = grads(module, batch)
    assert all(g is not None and g.abs().sum() > 0 for n, g in got.items() if "token_type" not in n)
    assert any(n.startswith("encoder.embeddings.word_embeddings") for n in got)


def test_without_pooling_full_keeps_the_models_own_head(prepared, tokenizer):
    net = build(prepared, tokenizer, "full", None).network
    assert not isinstance(net, (PooledModel, FeatureModel)) and hasattr(net, "classifier")


def test_top_k_with_pooling_freezes_the_embeddings_and_lower_layers(prepared, tokenizer, batch):
    module = build(prepared, tokenizer, "top_k", "mean", k=1)
    trains = {n for n, p in module.network.named_parameters() if p.requires_grad}
    assert trains == {
        n for n, _ in module.network.named_parameters() if n.startswith(("head.", "encoder.encoder.layer.2."))
    }
    got = grads(module, batch)
    assert got["encoder.encoder.layer.2.output.dense.weight"].abs().sum() > 0
    assert got["encoder.encoder.layer.0.output.dense.weight"] is None


@pytest.mark.parametrize("strategy", ["lora", "distill"])
def test_pooling_with_a_strategy_that_keeps_the_models_head_is_a_config_error(strategy):
    with pytest.raises(ConfigError) as e:
        make_run(strategy, "mean")
    assert e.value.key == "finetune.pooling" and "finetune.pooling=null" in str(e.value)


def test_a_pooled_run_learns_and_its_export_reloads_with_the_same_predictions(tmp_path, cache_dir):
    from encoderlab.runner import execute

    run = RunConfig(
        task=keyword_task(keyword_csv(tmp_path / "kw.csv")),
        model=tiny_model(),
        finetune=FinetuneConfig(strategy="full", pooling="mean"),
        optimizer=OptimizerConfig(lr=3e-3),
        trainer=TrainerConfig(max_epochs=12, accelerator="cpu", devices=1, enable_progress_bar=False),
        callbacks=CallbacksConfig(early_stopping=False, checkpoint=False, rich_progress=False),
    )
    run.paths.cache_dir = str(cache_dir)
    run.check()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["test"]["accuracy"] > 0.9, summary["test"]

    hf = run_dir / "hf"
    assert not (hf / "config.json").exists() and (hf / "encoder" / "config.json").exists()
    assert json.loads((hf / "feature_head.json").read_text())["pooling"] == "mean"
    model, tok, desc = load_feature_model(hf)
    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    enc = tok([r["text"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(dict(enc)), -1)
    assert [desc["label_names"][i] for i in probs.argmax(-1).tolist()] == [r["pred"] for r in rows]
    assert probs[:, 1].tolist() == pytest.approx([r["probabilities"]["pos"] for r in rows], abs=1e-4)


def test_features_of_the_last_layer_are_the_models_output_for_pre_layernorm_models(tokenizer):
    """RoBERTa-PreLN normalises after its last block: the 'last' layer is that output, not the raw block."""
    from transformers import AutoModel

    from encoderlab.models.encoder import build_config, build_model
    from encoderlab.models.heads import FeatureHead

    cfg = tiny_model(architecture="roberta_prelayernorm")
    config = build_config(cfg, vocab_size=len(tokenizer), num_labels=2)
    torch.manual_seed(0)
    encoder = build_model(cfg, AutoModel, config).eval()
    net = FeatureModel(encoder, FeatureHead(1, 32, 2, "single"), [2], "mean")
    enc = tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = encoder(**enc).last_hidden_state
        m = enc["attention_mask"][:, :, None].float()
        torch.testing.assert_close(net.encode(**enc)[:, 0], (want * m).sum(1) / m.sum(1))
