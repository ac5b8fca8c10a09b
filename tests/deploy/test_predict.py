"""encoderlab-predict: the predictions are the model's (same logits, same labels, input order), NER tags equal
the run's own test predictions, every kind and export type serves, and ONNX serves the same predictions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run_cli
from support import FIXTURES

from encoderlab.deploy import predict as P
from encoderlab.deploy.served import load

ROOT = Path(__file__).resolve().parents[2]


def predict_cli(args: list[str], stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()} | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = run_cli("encoderlab-predict", args, env, ROOT, timeout=300, input=stdin)
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def reviews() -> list[str]:
    with (FIXTURES / "reviews.csv").open() as f:
        return [r["review"] for r in csv.DictReader(f)]


def test_classification_predictions_are_the_models_softmax_in_input_order(cls_run, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "pred.jsonl"
    predict_cli([str(cls_run), "--input", str(FIXTURES / "reviews.csv"), "--output", str(out), "--batch-size", "7"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    texts = reviews()
    assert len(rows) == len(texts) == 60

    model = AutoModelForSequenceClassification.from_pretrained(cls_run / "hf").eval()
    tok = AutoTokenizer.from_pretrained(cls_run / "hf")
    for text, row in zip(texts, rows, strict=True):  # one text at a time: no padding, no batching
        with torch.no_grad():
            probs = model(**tok(text, truncation=True, max_length=32, return_tensors="pt")).logits.softmax(-1)[0]
        expected = {model.config.id2label[i]: float(p) for i, p in enumerate(probs)}
        assert row["probabilities"] == pytest.approx(expected, abs=1e-5)
        assert row["label"] == max(expected, key=expected.get) and set(expected) == {"neg", "pos"}
        assert row["score"] == pytest.approx(max(expected.values()), abs=1e-5)

    # the same predictions as CSV, and from stdin as plain text lines
    out_csv = tmp_path / "pred.csv"
    predict_cli([str(cls_run / "hf"), "--input", str(FIXTURES / "reviews.csv"), "--output", str(out_csv)])
    with out_csv.open() as f:
        table = list(csv.DictReader(f))
    assert [r["label"] for r in table] == [r["label"] for r in rows]
    assert float(table[0]["p_pos"]) == pytest.approx(rows[0]["probabilities"]["pos"], abs=1e-6)
    p = predict_cli([str(cls_run), "--input", "-"], stdin="\n".join(texts[:3]) + "\n")
    assert [json.loads(line)["label"] for line in p.stdout.splitlines()] == [r["label"] for r in rows[:3]]


def test_ner_predictions_equal_the_runs_own_test_predictions(ner_run):
    served = load(ner_run)
    assert served.kind == "token_classification"
    gold = [json.loads(line) for line in (ner_run / "predictions_test.jsonl").read_text().splitlines()]
    assert gold
    # pre-split words (a list column), as the run saw them
    out = P.predict_rows(served, [{"tokens": g["tokens"]} for g in gold])
    for g, o in zip(gold, out, strict=True):
        assert o["tags"] == g["tags"]
        assert [(e["type"], e["words"]) for e in o["entities"]] == [
            (e["type"], [e["start"], e["end"]]) for e in g["entities"]
        ]
    # raw text: words split on whitespace, entities with character offsets into the text
    texts = ["  " + "  ".join(g["tokens"]) for g in gold]
    out_text = P.predict_rows(served, [{"text": t} for t in texts])
    for g, o, t in zip(gold, out_text, texts, strict=True):
        assert o["tags"] == g["tags"]
        for e in o["entities"]:
            assert t[e["start"] : e["end"]] == e["text"] == "  ".join(g["tokens"][e["words"][0] : e["words"][1]])
            assert 0.0 < e["score"] <= 1.0


def test_question_answering_serves_as_the_question_answerer(tmp_path, tokenizer, tiny_bert_config):
    from transformers import AutoModelForQuestionAnswering

    from encoderlab.kinds.question_answering.kind import QuestionAnswerer

    torch.manual_seed(0)
    tiny_bert_config.num_labels = 2
    folder = tmp_path / "qa"
    AutoModelForQuestionAnswering.from_config(tiny_bert_config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    settings = {
        "max_seq_length": 48,
        "doc_stride": 16,
        "max_query_length": 16,
        "n_best_size": 5,
        "max_answer_length": 8,
    }
    (folder / "question_answering.json").write_text(json.dumps(settings))
    context = "The Rhine begins in the Swiss canton of Graubunden and empties into the North Sea. " * 3
    rows = [
        {"question": "Where does the Rhine begin?", "context": context},
        {"question": "Where does it end?", "context": context},
    ]
    expected = QuestionAnswerer(folder, device="cpu")(question=[r["question"] for r in rows], context=context)
    got = P.predict_rows(load(folder), rows, batch_size=2)
    for e, g in zip(expected, got, strict=True):
        assert g["answer"] == e["answer"] and (g["start"], g["end"]) == (e["start"], e["end"])
        assert g["answer"] == context[g["start"] : g["end"]] and g["score"] == pytest.approx(e["score"], rel=1e-4)


def test_a_feature_based_export_serves_its_trained_head(tmp_path, tokenizer, tiny_bert_config):
    from transformers import AutoModel

    from encoderlab.kinds.sequence.kind import export_feature_model
    from encoderlab.models.heads import FeatureHead, FeatureModel

    torch.manual_seed(0)
    tiny_bert_config.num_hidden_layers = 4
    head = FeatureHead(4, 32, 3, "concat", "mlp", 16)
    net = FeatureModel(AutoModel.from_config(tiny_bert_config), head, [1, 2, 3, 4], "mean").eval()
    export_feature_model(net, tokenizer, tmp_path / "hf", {"label_names": ["a", "b", "c"]})
    texts = reviews()[:9]
    served = load(tmp_path / "hf")
    assert served.kind == "sequence_classification" and served.label_names == ["a", "b", "c"]
    got = P.predict_rows(served, [{"text": t} for t in texts], batch_size=4)
    with torch.no_grad():
        logits = net(dict(tokenizer(texts, padding=True, return_tensors="pt")))
    probs = logits.softmax(-1).numpy()
    assert np.allclose([[r["probabilities"][n] for n in "abc"] for r in got], probs, atol=1e-5)


def test_onnx_and_int8_backends_serve_the_same_predictions(cls_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from encoderlab.deploy.export import export_run

    export_run(cls_run, quantize="int8", evaluate=False)
    rows = [{"review": t} for t in reviews()]
    torch_out = P.predict_rows(load(cls_run, "torch"), rows)
    onnx_served = load(cls_run, "onnx")
    assert onnx_served.backend_name == "onnx" and onnx_served.model_dir == cls_run / "onnx"
    assert load(cls_run / "hf", "onnx").model_dir == cls_run / "onnx"  # the run's hf/ folder finds it too
    onnx_out = P.predict_rows(onnx_served, rows)
    for t, o in zip(torch_out, onnx_out, strict=True):
        assert o["probabilities"] == pytest.approx(t["probabilities"], abs=1e-5)
    # the ONNX folder alone is enough (auto backend), and the int8 variants stay close to fp32
    assert P.predict_rows(load(cls_run / "onnx"), rows[:5]) == onnx_out[:5]
    for backend in ("onnx-int8", "torch-int8"):
        q = P.predict_rows(load(cls_run, backend), rows)
        diff = max(
            abs(a["probabilities"]["pos"] - b["probabilities"]["pos"]) for a, b in zip(q, torch_out, strict=True)
        )
        assert diff < 0.05, backend


def test_regression_and_sentence_pairs(tmp_path, tokenizer, tiny_bert_config):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    tiny_bert_config.num_labels, tiny_bert_config.problem_type = 1, "regression"
    model = AutoModelForSequenceClassification.from_config(tiny_bert_config).eval()
    model.save_pretrained(tmp_path / "reg")
    tokenizer.save_pretrained(tmp_path / "reg")
    served = load(tmp_path / "reg")
    assert served.kind == "sequence_regression"
    rows = [json.loads(line) for line in (FIXTURES / "ratings.jsonl").read_text().splitlines()][:6]
    got = P.predict_rows(served, rows)
    with torch.no_grad():
        expected = [float(model(**tokenizer(r["text"], return_tensors="pt")).logits[0, 0]) for r in rows]
    assert [g["value"] for g in got] == pytest.approx(expected, abs=1e-5)

    # a pair model reads both columns; the pair is encoded as in training (text, text_pair)
    tiny_bert_config.num_labels, tiny_bert_config.problem_type = 3, None
    tiny_bert_config.id2label = {0: "contradiction", 1: "entailment", 2: "neutral"}
    tiny_bert_config.label2id = {v: k for k, v in tiny_bert_config.id2label.items()}
    pair_model = AutoModelForSequenceClassification.from_config(tiny_bert_config).eval()
    pair_model.save_pretrained(tmp_path / "pair")
    tokenizer.save_pretrained(tmp_path / "pair")
    rows = P.read_input(str(FIXTURES / "pairs.tsv"))
    cols = P.Columns(text="premise", text_pair="hypothesis")
    got = P.predict_rows(load(tmp_path / "pair"), rows, cols)
    with torch.no_grad():
        enc = tokenizer(rows[0]["premise"], rows[0]["hypothesis"], return_tensors="pt")
        probs = pair_model(**enc).logits.softmax(-1)[0]
    assert got[0]["probabilities"]["neutral"] == pytest.approx(float(probs[2]), abs=1e-5)
    assert set(got[0]["probabilities"]) == {"contradiction", "entailment", "neutral"}


@pytest.mark.parametrize("long_text", ["tail", "chunks"])
def test_a_long_text_run_is_served_the_tokens_it_was_trained_on(cls_run, tmp_path, long_text):
    """task.long_text=tail sees a text's last tokens, chunks the mean of its windows' logits: so does predict."""
    import shutil

    from omegaconf import OmegaConf
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = tmp_path / "run"
    shutil.copytree(cls_run / "hf", run / "hf")
    cfg = OmegaConf.load(cls_run / ".hydra" / "config.yaml")
    cfg.task.long_text, cfg.task.max_seq_length = long_text, 8  # reviews are longer than 8 tokens
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    (run / "summary.json").write_text((cls_run / "summary.json").read_text())
    texts = reviews()[:6]

    got = P.predict_sequences(load(run), [{"text": t} for t in texts], P.Columns(text="text"), 4, False)

    model = AutoModelForSequenceClassification.from_pretrained(run / "hf").eval()
    tok = AutoTokenizer.from_pretrained(run / "hf")
    for text, row in zip(texts, got, strict=True):
        if long_text == "tail":
            ids = tok(text, add_special_tokens=False)["input_ids"][-6:]
            windows = [[tok.cls_token_id, *ids, tok.sep_token_id]]
        else:
            windows = tok(text, truncation=True, max_length=8, return_overflowing_tokens=True)["input_ids"]
        assert len(windows[0]) == 8
        with torch.no_grad():
            logits = torch.stack([model(input_ids=torch.tensor([w])).logits[0] for w in windows]).mean(0)
        assert row["probabilities"]["pos"] == pytest.approx(float(logits.softmax(-1)[1]), abs=1e-5)


def test_a_bare_hf_export_of_a_long_text_run_is_served_as_the_run_is(tmp_path, minilm_path):
    """hf/ carries the run's task.long_text (long_text.json): copied away from its run dir, the folder is still served
    every window, pooled by the run's chunk_pooling, not the first max_length tokens."""
    import shutil

    from support import reviews_task
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from deploy.conftest import train

    task = reviews_task(max_seq_length=8, long_text="chunks", chunk_stride=2, chunk_pooling="max")
    run = train(tmp_path / "run", task, tmp_path / "cache", epochs=1)
    bare = tmp_path / "elsewhere" / "model"
    shutil.copytree(run / "hf", bare)
    texts = reviews()[:6]
    rows, cols = [{"text": t} for t in texts], P.Columns(text="text")

    got = P.predict_sequences(load(bare), rows, cols, 4, False)

    assert got == P.predict_sequences(load(run), rows, cols, 4, False)
    model = AutoModelForSequenceClassification.from_pretrained(bare).eval()
    tok = AutoTokenizer.from_pretrained(bare)
    for text, row in zip(texts, got, strict=True):
        windows = tok(text, truncation=True, max_length=8, stride=2, return_overflowing_tokens=True)["input_ids"]
        assert len(windows) > 1
        with torch.no_grad():
            logits = torch.stack([model(input_ids=torch.tensor([w])).logits[0] for w in windows]).amax(0)
        assert row["probabilities"]["pos"] == pytest.approx(float(logits.softmax(-1)[1]), abs=1e-5)


def test_a_bare_onnx_folder_of_a_long_text_run_is_served_as_the_run_is(tmp_path):
    """encoderlab-export puts the run's task.long_text into deploy.json: the settings come from the folder itself."""
    from types import SimpleNamespace

    from encoderlab.kinds.sequence.serving import _long_text

    settings = {"long_text": "tail", "max_seq_length": 8, "head_tokens": 2, "chunk_stride": 0, "chunk_pooling": "mean"}
    (tmp_path / "deploy.json").write_text(json.dumps({"kind": "sequence_classification", "long_text": settings}))

    assert _long_text(SimpleNamespace(model_dir=tmp_path, run_dir=None)) == settings | {"pool": "mean"}
    (tmp_path / "deploy.json").write_text(json.dumps({"kind": "sequence_classification", "long_text": None}))
    assert _long_text(SimpleNamespace(model_dir=tmp_path, run_dir=None)) is None  # plain truncation


def test_a_bare_roberta_style_export_is_cut_to_the_positions_it_can_embed():
    """RoBERTa numbers positions from padding_idx + 1: 514 position embeddings hold 512 tokens."""
    from types import SimpleNamespace

    from encoderlab.deploy.served import _max_length

    unbounded = SimpleNamespace(model_max_length=int(1e30))  # a tokenizer saved without a limit
    roberta = {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    assert _max_length(None, unbounded, roberta) == 512
    assert _max_length(None, unbounded, {"model_type": "bert", "max_position_embeddings": 512}) == 512


def test_a_served_model_reads_its_run_config_once_per_version_of_the_file(tmp_path, monkeypatch):
    """Predict calls ask for the run's config every time (text columns, long-text settings): it is parsed once, a
    caller cannot change what the next call reads, and an edited config is read again."""
    from omegaconf import OmegaConf

    from encoderlab.deploy.base import read_run_config

    (tmp_path / ".hydra").mkdir()
    config = tmp_path / ".hydra" / "config.yaml"
    config.write_text("task:\n  text_fields: [review]\n")
    loads = []
    real_load = OmegaConf.load
    monkeypatch.setattr(OmegaConf, "load", lambda f: loads.append(f) or real_load(f))
    first = read_run_config(tmp_path)
    first["task"]["text_fields"].append("changed by a caller")
    assert read_run_config(tmp_path) == {"task": {"text_fields": ["review"]}} and len(loads) == 1
    config.write_text("task:\n  text_fields: [sentence]\n")
    os.utime(config, ns=(config.stat().st_mtime_ns + 10**9,) * 2)
    assert read_run_config(tmp_path)["task"]["text_fields"] == ["sentence"] and len(loads) == 2
    assert read_run_config(tmp_path / "elsewhere") == {}
