"""Explanations: integrated gradients point at the word a trained classifier decides by, and the report shows them."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from encoderlab.cli.report import main
from encoderlab.report.explain import explain

from .factory import write_run

torch.set_num_threads(1)
FILLER = "the a movie film plot actor scene story time long short old new some many".split()
KEYWORDS = {"neg": "terrible", "pos": "wonderful"}


def _texts(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(6)]
        words.insert(rng.randrange(7), KEYWORDS["pos" if i % 2 else "neg"])
        out.append((" ".join(words), i % 2))
    return out


@pytest.fixture(scope="module")
def keyword_model(tokenizer, tmp_path_factory):
    """A tiny BERT trained until it classifies by the keyword, saved as a run's hf/ folder."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    model = BertForSequenceClassification(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = _texts(256, 0)
    model.train()
    for step in range(120):
        batch = data[(step * 32) % 256 : (step * 32) % 256 + 32]
        enc = tokenizer([t for t, _ in batch], padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = _texts(20, 1)
    enc = tokenizer([t for t, _ in test], padding=True, return_tensors="pt")
    with torch.no_grad():
        acc = (model(**enc).logits.argmax(-1) == torch.tensor([y for _, y in test])).float().mean()
    assert acc > 0.9, "the fixture model must have learned the keyword"
    out = tmp_path_factory.mktemp("kw") / "hf"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_integrated_gradients_point_at_the_keyword(keyword_model):
    # the model may learn "terrible -> neg, anything else -> pos" (an all-padding text already reads as pos), so
    # the negative texts are the ones whose prediction a single word must carry
    texts = [t for t, y in _texts(16, 2) if y == 0]
    explanations = explain(keyword_model, texts, n_steps=16)
    assert all(e.target == "neg" for e in explanations)
    hits = sum(e.top(1)[0][0] == "terrible" and e.top(1)[0][1] > 0 for e in explanations)
    assert hits >= len(texts) - 1, [e.top(3) for e in explanations]
    e = explanations[0]
    assert [t for t, _ in e.tokens] == texts[0].split()  # every word of the text, in order, no [CLS]/[SEP]
    assert sum(s * s for _, s in e.tokens) == pytest.approx(1.0, abs=1e-3)


def test_report_explain_adds_the_driving_tokens_to_the_mistakes(keyword_model, tmp_path):
    run = write_run(tmp_path / "runs" / "0", test={"accuracy": 0.5})
    (run / "hf").symlink_to(keyword_model, target_is_directory=True)
    text = "the terrible movie of some old actor"
    rows = [
        {
            "index": 0,
            "text": text,
            "gold": "pos",
            "pred": "neg",
            "correct": False,
            "confidence": 0.97,
            "probabilities": {"neg": 0.97, "pos": 0.03},
        }
    ]
    (run / "predictions_test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main([str(tmp_path / "runs"), "--no-plots", "--explain"]) == 0
    md = (tmp_path / "runs" / "report" / "errors.md").read_text()
    line = next(ln for ln in md.splitlines() if text in ln)
    assert "tokens that drove it" in md and line.rstrip(" |").split("|")[-1].strip().startswith("terrible")
