"""The pre-training kind: a short run lowers the MLM loss; the export fill-masks and fine-tunes."""

from __future__ import annotations

import logging
import random

import pytest
import torch
from support import task_config

from encoderlab.config.schema import ModelConfig, RunConfig
from encoderlab.errors import ConfigError
from encoderlab.kinds.pretraining import kind as kind

SUBJECTS = ["the bank", "the company", "the minister", "the club", "the band", "the court"]
VERBS = ["said", "reported", "announced", "denied", "confirmed"]
OBJECTS = ["record profits", "a new album", "higher taxes", "a late goal", "the appeal", "job cuts"]


@pytest.fixture()
def corpus_dir(tmp_path):
    rng = random.Random(0)
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(40):
        sents = [
            f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} on day {rng.randint(1, 9)}."
            for _ in range(rng.randint(3, 8))
        ]
        (root / f"{i:03d}.txt").write_text(" ".join(sents))
    return root


def _run(corpus_dir, objective="none", **model_kw) -> RunConfig:
    task = task_config(
        name="tiny_corpus",
        kind="pretraining",
        source="files",
        data_dir=str(corpus_dir),
        objective=objective,
        max_seq_length=48,
        validation_documents=0.1,
        metrics=["mlm_loss", "mlm_accuracy", "perplexity"] + (["sentence_accuracy"] if objective != "none" else []),
        primary_metric="mlm_loss",
    )
    model = ModelConfig(
        name="tiny",
        from_scratch=True,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    for k, v in model_kw.items():
        setattr(model, k, v)
    run = RunConfig(task=task, model=model, batch_size=16)
    run.check()
    return run


def _prepared(run, tokenizer):
    return kind.prepare(run, tokenizer, None)


def _val_loss(module, batch) -> float:
    module.eval()
    with torch.no_grad():
        loss, out = module.step(batch)
    module.train()
    return float(out["mlm_loss"])


def test_short_run_lowers_mlm_loss_and_export_fill_masks(corpus_dir, tokenizer, tmp_path):
    torch.manual_seed(0)
    run = _run(corpus_dir)
    prepared = _prepared(run, tokenizer)
    module = kind.build(run, prepared, tokenizer)
    val = prepared.collator(prepared.datasets["validation"].to_list())
    assert (val["labels"] != -100).any()  # evaluation masks are fixed at preprocessing time
    before = _val_loss(module, val)
    opt = torch.optim.AdamW(module.network.parameters(), lr=3e-3)
    rows = prepared.datasets["train"].to_list()
    for step in range(40):
        batch = prepared.collator(rows[(step * 16) % len(rows) :][:16] or rows[:16])
        loss, _ = module.step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _val_loss(module, val)
    assert after < before - 1.0, (before, after)

    module.update_metrics("val", val, module.step(val)[1])
    metrics = module.compute_metrics("val")
    assert set(metrics) == {"mlm_loss", "mlm_accuracy", "unigram_accuracy", "perplexity"}
    # the unigram baseline: always the most frequent training token, scored on the same masked positions
    targets = val["labels"][val["labels"] != -100]
    expected = float((targets == prepared.meta["unigram_token"]).float().mean())
    assert metrics["unigram_accuracy"] == pytest.approx(expected)
    assert 0 < metrics["unigram_accuracy"] < 1
    assert metrics["perplexity"] == pytest.approx(torch.tensor(metrics["mlm_loss"]).exp().item(), rel=1e-4)

    out = tmp_path / "hf"
    kind.export(module, tokenizer, out, prepared)
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, pipeline

    mlm, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    fill = pipeline("fill-mask", model=str(out), device="cpu")
    preds = fill("the bank [MASK] record profits.")
    assert len(preds) == 5 and all("token_str" in p for p in preds)

    clf = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)
    torch.testing.assert_close(
        clf.bert.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight
    )  # the fine-tuning model starts from the pre-trained encoder
    enc = tokenizer(["a fine film", "a dull film"], padding=True, return_tensors="pt")
    loss = clf(**enc, labels=torch.tensor([1, 0])).loss
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("objective", ["nsp", "sop"])
def test_sentence_objectives_train_the_pair_head(corpus_dir, tokenizer, objective):
    run = _run(corpus_dir, objective=objective)
    prepared = _prepared(run, tokenizer)
    module = kind.build(run, prepared, tokenizer)
    assert type(module.network).__name__ == "BertForPreTraining"
    batch = prepared.collator(prepared.datasets["train"].to_list()[:16])
    loss, outputs = module.step(batch)
    loss.backward()
    assert module.network.cls.seq_relationship.weight.grad is not None
    module.update_metrics("val", batch, outputs)
    metrics = module.compute_metrics("val")
    assert 0.0 <= metrics["sentence_accuracy"] <= 1.0
    assert prepared.meta["pretraining"]["train"]["examples"] == len(prepared.datasets["train"])


def test_trained_wordpiece_vocabulary_sizes_the_model(corpus_dir, tmp_path):
    run = _run(corpus_dir, train_tokenizer=True, vocab_size=120)
    tok = kind.tokenizer(run, tmp_path)
    assert len(tok) <= 120 and (tmp_path / "tokenizer" / "tokenizer.json").exists()
    prepared = _prepared(run, tok)
    module = kind.build(run, prepared, tok)
    assert module.network.config.vocab_size == len(tok)
    loss, _ = module.step(prepared.collator(prepared.datasets["train"].to_list()[:8]))
    assert torch.isfinite(loss)


def test_bad_model_settings_name_the_key(corpus_dir, tokenizer, tmp_path, minilm_path):
    with pytest.raises(ConfigError) as e:
        _prepared(_run(corpus_dir, max_position_embeddings=32), tokenizer)
    assert e.value.key == "task.max_seq_length"
    run = _run(corpus_dir, train_tokenizer=True, from_scratch=False, path=minilm_path)
    with pytest.raises(ConfigError) as e:
        kind.tokenizer(run, tmp_path)
    assert e.value.key == "model.train_tokenizer"


def test_continued_pretraining_says_the_mlm_head_is_new(corpus_dir, tokenizer, minilm_path, caplog):
    run = _run(corpus_dir, from_scratch=False, path=minilm_path)
    prepared = _prepared(run, tokenizer)
    with caplog.at_level(logging.INFO):
        module = kind.build(run, prepared, tokenizer)
    assert "cls" in caplog.text and "initialis" in caplog.text
    assert module.network.config.num_hidden_layers == 6


def test_pre_layernorm_architecture_trains_with_the_sparse_head(corpus_dir, tokenizer, tmp_path):
    run = _run(corpus_dir, architecture="roberta_prelayernorm")
    prepared = _prepared(run, tokenizer)
    module = kind.build(run, prepared, tokenizer)
    assert type(module.network).__name__ == "RobertaPreLayerNormForMaskedLM"
    assert kind._sparse_heads(module.network)[0] is module.network.lm_head  # logits for masked positions only
    # max_position_embeddings counts usable tokens: RoBERTa's 2 offset rows are added on top
    assert module.network.config.max_position_embeddings == run.model.max_position_embeddings + 2
    val = prepared.collator(prepared.datasets["validation"].to_list())
    before = _val_loss(module, val)
    opt = torch.optim.AdamW(module.network.parameters(), lr=3e-3)
    rows = prepared.datasets["train"].to_list()
    for step in range(30):
        loss, _ = module.step(prepared.collator(rows[(step * 16) % len(rows) :][:16] or rows[:16]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _val_loss(module, val) < before - 1.0
    kind.export(module, tokenizer, tmp_path / "hf", prepared)
    from transformers import AutoModelForSequenceClassification

    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", num_labels=2)
    pair = tokenizer(["a fine film"], ["a dull one"], return_tensors="pt")  # token type 1 exists
    assert torch.isfinite(clf(**pair).logits).all()


def _electra_run(corpus_dir) -> RunConfig:
    run = _run(corpus_dir)
    run.task.mlm.objective = "electra"
    run.task.mlm.packing = "full_sentences"
    run.task.mlm.mask_replace_prob, run.task.mlm.random_replace_prob, run.task.mlm.keep_prob = 0.85, 0.0, 0.15
    run.task.metrics = ["rtd_loss", "rtd_accuracy", "mlm_loss", "mlm_accuracy"]
    run.task.primary_metric = "rtd_loss"
    run.model.hidden_size, run.model.num_attention_heads = 64, 4
    run.check()
    return run


def test_electra_detects_replaced_tokens_and_exports_a_fine_tunable_discriminator(corpus_dir, tokenizer, tmp_path):
    torch.manual_seed(0)
    run = _electra_run(corpus_dir)
    prepared = _prepared(run, tokenizer)
    module = kind.build(run, prepared, tokenizer)
    net = module.network
    assert net.generator.config.hidden_size == 16 and net.discriminator.config.hidden_size == 64
    # one embedding table for both, and the generator's output layer is tied to it
    assert net.generator.electra.embeddings is net.discriminator.electra.embeddings
    assert net.generator.generator_lm_head.weight is net.discriminator.electra.embeddings.word_embeddings.weight

    val = prepared.collator(prepared.datasets["validation"].to_list())
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    rows = prepared.datasets["train"].to_list()
    for step in range(60):
        loss, out = module.step(prepared.collator(rows[(step * 16) % len(rows) :][:16] or rows[:16]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        _, out = module.step(val)
    module.update_metrics("val", val, out)
    metrics = module.compute_metrics("val")
    assert {"rtd_loss", "rtd_accuracy", "mlm_loss", "mlm_accuracy"} <= set(metrics)
    # most tokens are not replaced; a discriminator that learned nothing sits near 0.5
    assert metrics["rtd_accuracy"] > 0.8, metrics

    kind.export(module, tokenizer, tmp_path / "hf", prepared)
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", num_labels=2)
    assert type(clf).__name__ == "ElectraForSequenceClassification"
    torch.testing.assert_close(
        clf.electra.encoder.layer[0].attention.self.query.weight,
        net.discriminator.electra.encoder.layer[0].attention.self.query.weight,
    )
    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "hf" / "generator")).__name__ == "ElectraForMaskedLM"


def test_electra_replaced_labels_mark_exactly_the_changed_tokens(corpus_dir, tokenizer):
    run = _electra_run(corpus_dir)
    prepared = _prepared(run, tokenizer)
    module = kind.build(run, prepared, tokenizer)
    seen = {}

    def spy(*args, **kw):
        seen["input_ids"] = kw["input_ids"]
        return real(*args, **kw)

    real = module.network.discriminator.forward
    module.network.discriminator.forward = spy
    batch = prepared.collator(prepared.datasets["train"].to_list()[:16])
    captured = {}
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def capture(logits, labels, *a, **k):
        captured["labels"] = labels
        return bce(logits, labels, *a, **k)

    torch.nn.functional.binary_cross_entropy_with_logits = capture
    try:
        module.step(batch)
    finally:
        torch.nn.functional.binary_cross_entropy_with_logits = bce
    corrupted, original = seen["input_ids"], batch["input_ids"].clone()
    selected = batch["labels"] != -100
    original[selected] = batch["labels"][selected]
    active = batch["attention_mask"].bool()
    assert torch.equal(captured["labels"], (corrupted != original)[active].float())
    assert torch.equal(corrupted[~selected], batch["input_ids"][~selected])  # only masked positions are resampled


def test_electra_needs_a_from_scratch_model(corpus_dir, tokenizer, minilm_path):
    run = _electra_run(corpus_dir)
    run.model.from_scratch, run.model.path = False, minilm_path
    with pytest.raises(ConfigError) as e:
        kind.build(run, _prepared(run, tokenizer), tokenizer)
    assert e.value.key == "model.from_scratch"


def test_albert_checkpoint_trains_its_sop_head(corpus_dir, tokenizer, tmp_path):
    """ALBERT's AlbertForPreTraining names the sentence-order logits ``sop_logits``, not ``seq_relationship_logits``."""
    from transformers import AlbertConfig, AlbertForPreTraining

    torch.manual_seed(0)
    folder = tmp_path / "tiny_albert"
    config = AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    AlbertForPreTraining(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = _run(corpus_dir, objective="sop", from_scratch=False, path=str(folder))
    prepared = _prepared(run, tokenizer)
    module = kind.build(run, prepared, tokenizer)
    assert type(module.network).__name__ == "AlbertForPreTraining"
    batch = prepared.collator(prepared.datasets["train"].to_list()[:16])
    loss, outputs = module.step(batch)
    loss.backward()
    assert torch.isfinite(loss) and module.network.sop_classifier.classifier.weight.grad.abs().sum() > 0
    module.update_metrics("val", batch, outputs)
    assert 0.0 <= module.compute_metrics("val")["sentence_accuracy"] <= 1.0


def test_bf16_true_takes_the_vocabulary_softmax_in_bf16_and_reports_the_fp32_loss(corpus_dir, tokenizer):
    """Under bf16-true the MLM head's log-softmax runs on the bf16 logits (the costly part of a small model's step
    on a CPU); the loss it reports and the gradients match the fp32 cross-entropy of the same logits."""
    torch.manual_seed(0)
    run = _run(corpus_dir)
    prepared = _prepared(run, tokenizer)
    module = kind.build(run, prepared, tokenizer)
    module.network.to(torch.bfloat16).eval()  # no dropout: the two passes differ only in the loss's precision
    batch = prepared.collator(prepared.datasets["train"].to_list()[:16])
    results = {}
    for precision in ("bf16-true", "32-true"):  # the same bf16 network; only the loss's precision differs
        module.run.precision = precision
        module.network.zero_grad(set_to_none=True)
        loss, out = module.step(batch)
        loss.backward()
        grad = module.network.bert.encoder.layer[0].output.dense.weight.grad.float()
        results[precision] = (loss, grad)
    (loss16, grad16), (loss32, grad32) = results["bf16-true"], results["32-true"]
    assert loss16.dtype == loss32.dtype == torch.float32
    assert float(loss16) == pytest.approx(float(loss32), rel=1e-3)
    assert float((grad16 - grad32).norm() / grad32.norm()) < 0.05  # bf16 gradients either way: their rounding only


def test_the_unigram_token_is_the_most_frequent_non_special_training_token(tokenizer):
    from datasets import Dataset

    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    the, film = tokenizer.convert_tokens_to_ids(["the", "film"])
    train = Dataset.from_dict({"input_ids": [[cls, the, film, sep, sep], [cls, film, the, film, sep]]})
    assert kind.most_frequent_token(train, tokenizer) == film  # [SEP] and [CLS] are more frequent, but special


@pytest.mark.parametrize(
    ("steps", "planned", "acc", "unigram", "reached"),
    [
        (9, 100, 0.30, 0.05, "9 of 100 planned steps (under 10%)"),
        (50, 100, 0.05, 0.05, "held-out MLM accuracy 0.050, not above the unigram baseline 0.050"),
        (5, 100, 0.01, 0.05, "5 of 100 planned steps (under 10%); held-out MLM accuracy 0.010"),
    ],
)
def test_a_run_below_the_floor_is_undertrained(steps, planned, acc, unigram, reached):
    run = RunConfig()
    summary = {"steps": steps, "planned_steps": planned, "test": {"mlm_accuracy": acc, "unigram_accuracy": unigram}}
    verdict = kind.assess(run, summary)
    assert verdict["status"] == "undertrained" and verdict["undertrained"].startswith(reached)
    assert "precision=32-true" in verdict["undertrained_fix"]


def test_a_run_above_the_floor_stays_finished():
    summary = {"steps": 10, "planned_steps": 100, "test": {"mlm_accuracy": 0.06, "unigram_accuracy": 0.05}}
    assert kind.assess(RunConfig(), summary) == {}
