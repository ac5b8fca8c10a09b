"""model.attn_implementation: the kernel is a speed choice only: same numbers, not written into exports."""

from __future__ import annotations

import json

import pytest
import torch
from support import tiny_model
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from encoderlab.errors import ConfigError
from encoderlab.models.encoder import build_config, build_model


@pytest.mark.parametrize("architecture", ["bert", "roberta_prelayernorm"])
def test_eager_and_sdpa_give_the_same_loss_and_gradients_on_padded_batches(tokenizer, architecture):
    enc = tokenizer(["a fine film with a plot", "dull"], padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0])
    results = []
    for attn in ("eager", "sdpa"):
        cfg = tiny_model(architecture=architecture, attn_implementation=attn)
        config = build_config(cfg, vocab_size=len(tokenizer), num_labels=2)
        torch.manual_seed(0)
        model = build_model(cfg, AutoModelForSequenceClassification, config)
        assert model.config._attn_implementation == attn
        loss = model(**enc, labels=labels).loss
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((loss.detach(), grads))
    (loss_e, grads_e), (loss_s, grads_s) = results
    torch.testing.assert_close(loss_e, loss_s)
    for a, b in zip(grads_e, grads_s, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_auto_is_eager_for_bf16_on_a_cpu_machine_and_sdpa_otherwise(tokenizer, monkeypatch):
    cfg = tiny_model()
    assert cfg.attn_implementation == "auto"

    def kernel(precision: str, cuda: bool) -> str:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        config = build_config(cfg, vocab_size=len(tokenizer), precision=precision, num_labels=2)
        return build_model(cfg, AutoModelForSequenceClassification, config).config._attn_implementation

    assert kernel("bf16-mixed", cuda=False) == "eager"
    assert kernel("32-true", cuda=False) == "sdpa"  # a wash in fp32: transformers' default
    assert kernel("bf16-mixed", cuda=True) == "sdpa"
    chosen = build_config(tiny_model(attn_implementation="eager"), vocab_size=len(tokenizer))
    assert chosen._attn_implementation == "eager"


def test_a_checkpoint_loads_with_the_chosen_kernel_and_its_export_does_not_keep_it(minilm_path, tmp_path):
    cfg = tiny_model(from_scratch=False, path=str(minilm_path), attn_implementation="eager")
    model = build_model(cfg, AutoModelForMaskedLM, build_config(cfg))
    assert model.config._attn_implementation == "eager"
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert not [k for k in saved if "attn" in k]  # a reader of the export picks its own kernel


def test_an_unknown_kernel_names_the_key():
    with pytest.raises(ConfigError, match="model.attn_implementation"):
        tiny_model(attn_implementation="flash").check()


@pytest.mark.parametrize("from_scratch", [True, False])
def test_a_kernel_the_architecture_lacks_names_the_key(minilm_path, monkeypatch, from_scratch):
    from transformers import BertForSequenceClassification

    monkeypatch.setattr(BertForSequenceClassification, "_supports_sdpa", False)
    path = None if from_scratch else str(minilm_path)
    cfg = tiny_model(from_scratch=from_scratch, path=path, attn_implementation="sdpa")
    refused = "model.attn_implementation.*BertForSequenceClassification has no 'sdpa' attention: use eager"
    with pytest.raises(ConfigError, match=refused):
        build_model(cfg, AutoModelForSequenceClassification, build_config(cfg, vocab_size=30522, num_labels=2))
