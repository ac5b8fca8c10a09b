"""finetune=lora: only the adapters and the head learn, the export is a plain model with the same logits, and a
tiny run learns a keyword task well above chance."""

from __future__ import annotations

import json

import pytest
import torch
from support import keyword_csv, reviews_task
from transformers import AutoModelForSequenceClassification, pipeline

from encoderlab.config.schema import (
    CallbacksConfig,
    FinetuneConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    TaskConfig,
    TrainerConfig,
)
from encoderlab.errors import ConfigError
from encoderlab.kinds.sequence import kind as kind
from encoderlab.training.freezing import count_parameters

torch.set_num_threads(1)

H, R = 32, 4


def make_run(task: TaskConfig | None = None, **finetune) -> RunConfig:
    run = RunConfig(
        task=task or reviews_task(max_seq_length=32),
        model=ModelConfig(
            name="tiny",
            from_scratch=True,
            num_hidden_layers=2,
            hidden_size=H,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        finetune=FinetuneConfig(**({"strategy": "lora", "lora_r": R, "lora_dropout": 0.0} | finetune)),
        optimizer=OptimizerConfig(lr=1e-3),
        batch_size=8,
        eval_batch_size=16,
    )
    run.check()
    return run


@pytest.fixture(scope="module")
def prepared(tokenizer):
    return kind.prepare(make_run(), tokenizer, None)


@pytest.fixture()
def batch(prepared):
    return prepared.collator(prepared.datasets["train"].to_list()[:8])


def build(prepared, tokenizer, seed=0, **finetune):
    torch.manual_seed(seed)
    return kind.build(make_run(**finetune), prepared, tokenizer)


def test_only_the_adapters_and_the_head_learn(prepared, tokenizer, batch):
    module = build(prepared, tokenizer)
    net = module.network
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or ".classifier." in n or ".pooler." in n for n in trainable)
    assert sum(".classifier." in n for n in trainable) == 2 and sum(".pooler." in n for n in trainable) == 2
    # query and value of both layers (A is r x H, B is H x r), pooler and classifier
    assert count_parameters(net)[0] == 2 * 2 * (R * H + H * R) + (H * H + H) + (H * 2 + 2)
    net.zero_grad(set_to_none=True)
    # B starts at zero, so A gets no gradient on the first step; nudge B to see both learn
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    module.step(batch)[0].backward()
    for n, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_target_modules_that_match_nothing_name_the_key(prepared, tokenizer):
    with pytest.raises(ConfigError) as e:
        build(prepared, tokenizer, lora_target_modules=["qkv_proj"])
    assert e.value.key == "finetune.lora_target_modules" and "query" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("lora_r", 0), ("lora_alpha", 0.0), ("lora_dropout", 1.0), ("lora_target_modules", [])],
)
def test_bad_lora_settings_name_their_key(key, value):
    with pytest.raises(ConfigError) as e:
        make_run(**{key: value})
    assert e.value.key == f"finetune.{key}"


def test_merged_export_is_a_plain_model_with_the_same_logits(prepared, tokenizer, batch, tmp_path):
    module = build(prepared, tokenizer, lora_target_modules=["query", "value", "dense"])
    opt = torch.optim.SGD([p for p in module.network.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        module.step(batch)[0].backward()
        opt.step()
    module.eval()
    out = tmp_path / "hf"
    kind.export(module, tokenizer, out, prepared)
    assert not (out / "adapter_config.json").exists()
    assert "lora" not in json.dumps(json.loads((out / "config.json").read_text()))
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = module.logits(batch)
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=1e-5, rtol=1e-4)
    assert any("lora_" in n for n, _ in module.network.named_parameters())  # the module keeps its adapters
    clf = pipeline("text-classification", model=str(out), device="cpu", top_k=None)
    texts = ["the best movie of the year", "a dull, lifeless mess"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = torch.softmax(module.network(**enc).logits, -1)
    for row, p in zip(clf(texts), want, strict=True):
        got = {r["label"]: r["score"] for r in row}
        assert got["pos"] == pytest.approx(float(p[1]), abs=1e-4)


def test_a_tiny_lora_run_learns_and_records_its_trainable_parameters(tmp_path, cache_dir):
    from encoderlab.runner import execute

    task = reviews_task(
        name="keywords",
        data_files={"train": str(keyword_csv(tmp_path / "kw.csv"))},
        text_fields=["text"],
        label_field="label",
        max_seq_length=16,
    )
    run = make_run(task, lora_target_modules=["query", "value", "dense"], lora_r=8)
    run.optimizer = OptimizerConfig(lr=1e-2)
    run.trainer = TrainerConfig(max_epochs=6, accelerator="cpu", devices=1, enable_progress_bar=False)
    run.callbacks = CallbacksConfig(early_stopping=False, checkpoint=False, rich_progress=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["test"]["accuracy"] > 0.8, summary["test"]
    assert 0 < summary["trainable_params"] < 0.2 * summary["total_params"]
    assert (run_dir / "hf" / "config.json").exists()


def test_token_classifiers_take_lora_and_merge_too(tiny_bert_config):
    from transformers import BertForTokenClassification

    from encoderlab.training.lora import apply_strategy, merged

    torch.manual_seed(0)
    tiny_bert_config.num_labels = 3
    net = apply_strategy(BertForTokenClassification(tiny_bert_config), FinetuneConfig(strategy="lora", lora_r=2))
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".classifier." in n for n in trainable)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    net.eval()
    ids = torch.randint(5, 1000, (2, 9))
    plain = merged(net)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, net(input_ids=ids).logits, atol=1e-5, rtol=1e-4)
