"""finetune=distill: the loss is the documented mix, a DistilBERT-style student holds the teacher's own layers, the
teacher's logits are computed once and reused, a distilled student learns and serves, and a wrong teacher or
setting fails in one line naming the key."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from support import keyword_csv, reviews_task, tiny_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from encoderlab.config.schema import (
    CallbacksConfig,
    DistillConfig,
    FinetuneConfig,
    OptimizerConfig,
    PathsConfig,
    RunConfig,
    TrainerConfig,
)
from encoderlab.errors import ConfigError
from encoderlab.kinds.sequence import kind as kind
from encoderlab.models import distill as D

torch.set_num_threads(1)

H = 32


def make_run(data: Path, cache: Path, layers: int = 4, epochs: int = 6, **distill) -> RunConfig:
    task = reviews_task(
        name="keywords", data_files={"train": str(data)}, text_fields=["text"], label_field="label", max_seq_length=16
    )
    run = RunConfig(
        task=task,
        model=tiny_model(num_hidden_layers=layers, hidden_size=H),
        finetune=FinetuneConfig(strategy="distill" if distill else "full"),
        distill=DistillConfig(**({"temperature": 2.0, "alpha": 0.5} | distill)) if distill else DistillConfig(),
        optimizer=OptimizerConfig(lr=3e-3),
        trainer=TrainerConfig(max_epochs=epochs, accelerator="cpu", devices=1, enable_progress_bar=False),
        callbacks=CallbacksConfig(early_stopping=False, rich_progress=False),
        paths=PathsConfig(cache_dir=str(cache)),
        batch_size=16,
        eval_batch_size=32,
        seed=0,
    )
    run.check()
    return run


def execute(run: RunConfig, run_dir: Path) -> dict:
    from encoderlab.runner import execute as run_it

    run_dir.mkdir(parents=True)
    return run_it(run, run_dir, [])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return keyword_csv(tmp_path_factory.mktemp("data") / "kw.csv")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data) -> Path:
    """A finished 4-layer run: the teacher of every test here."""
    root = tmp_path_factory.mktemp("teacher")
    summary = execute(make_run(data, root / "cache"), root / "run")
    assert summary["test"]["accuracy"] > 0.8, summary["test"]
    return root / "run"


# ---- the loss ----------------------------------------------------------------------------------------------------


def test_the_loss_is_the_documented_mix_of_soft_and_hard_targets():
    s = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    t = torch.tensor([[1.0, 0.0, -1.0], [-2.0, 1.0, 1.5]])
    y = torch.tensor([0, 1])
    T, a = 2.0, 0.3
    p_t = [[v.exp() / (t[i] / T).exp().sum() for v in t[i] / T] for i in range(2)]
    p_s = [[v.exp() / (s[i] / T).exp().sum() for v in s[i] / T] for i in range(2)]
    kl = sum(p_t[i][c] * (p_t[i][c].log() - p_s[i][c].log()) for i in range(2) for c in range(3)) / 2
    ce = -sum((s[i, y[i]].exp() / s[i].exp().sum()).log() for i in range(2)) / 2
    expected = a * T**2 * kl + (1 - a) * ce
    torch.testing.assert_close(D.distillation_loss(s, t, y, T, a), expected)
    torch.testing.assert_close(D.distillation_loss(s, t, y, T, 0.0), torch.nn.functional.cross_entropy(s, y))
    assert float(D.distillation_loss(t, t, y, 5.0, 1.0)) == pytest.approx(0.0, abs=1e-6)  # the teacher itself


# ---- the student ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "kept"), [("every_other", [0, 2]), ([3, 1], [3, 1])])
def test_student_layers_start_as_the_teachers_own_layers(teacher, data, tmp_path, spec, kept):
    run = make_run(data, tmp_path / "cache", teacher=str(teacher), student_layers=spec)
    t = D.load_teacher(run)
    student_run = D.student_run(run, t)
    tokenizer = AutoTokenizer.from_pretrained(teacher / "hf")
    module = kind.build(student_run, kind.prepare(student_run, tokenizer, None), tokenizer)
    student = module.network
    ref = AutoModelForSequenceClassification.from_pretrained(teacher / "hf")

    assert student.config.num_hidden_layers == len(student.bert.encoder.layer) == len(kept) and module.n_layers == 2
    for j, i in enumerate(kept):
        a, b = student.bert.encoder.layer[j].state_dict(), ref.bert.encoder.layer[i].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for part in ("bert.embeddings", "bert.pooler", "classifier"):
        a, b = student.get_submodule(part).state_dict(), ref.get_submodule(part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in ref.parameters())


# ---- teacher logits ---------------------------------------------------------------------------------------------


def test_teacher_logits_are_the_teachers_on_the_students_rows_and_computed_once(teacher, data, tmp_path, monkeypatch):
    calls = []
    compute = D.compute_teacher_logits
    monkeypatch.setattr(D, "compute_teacher_logits", lambda *a: calls.append(1) or compute(*a))
    run = make_run(data, tmp_path / "cache", teacher=str(teacher))
    t = D.load_teacher(run)
    tokenizer = AutoTokenizer.from_pretrained(teacher / "hf")
    root = tmp_path / "cache"
    prepared = kind.prepare(run, tokenizer, root)

    first = D.attach_teacher_logits(run, prepared, t, root)
    cached = Path(first.meta["teacher_logits"])
    assert calls == [1] and cached.is_file() and cached.is_relative_to(root / "teacher_logits")
    mtime = cached.stat().st_mtime_ns
    second = D.attach_teacher_logits(run, kind.prepare(run, tokenizer, root), t, root)
    assert calls == [1] and cached.stat().st_mtime_ns == mtime  # reused, not recomputed or rewritten
    assert second.datasets["train"]["teacher_logits"] == first.datasets["train"]["teacher_logits"]

    # row i's logits are the teacher's own on row i's text
    model = AutoModelForSequenceClassification.from_pretrained(teacher / "hf").eval()
    rows = first.datasets["train"].to_list()
    for r in rows[:5]:
        text = tokenizer.decode(r["input_ids"], skip_special_tokens=True)
        with torch.no_grad():
            want = model(**tokenizer(text, return_tensors="pt")).logits[0]
        torch.testing.assert_close(torch.tensor(r["teacher_logits"]), want, atol=1e-5, rtol=1e-4)
    batch = first.collator(rows[:4])
    assert batch["teacher_logits"].shape == (4, 2) and batch["input_ids"].shape[0] == 4

    other = dataclasses.replace(run, distill=dataclasses.replace(run.distill, temperature=4.0))
    D.attach_teacher_logits(other, kind.prepare(other, tokenizer, root), t, root)
    assert calls == [1]  # the temperature changes the loss, not the logits


def test_a_distilled_student_learns_records_its_teacher_and_serves(teacher, data, tmp_path):
    from encoderlab.deploy import predict as P
    from encoderlab.deploy.served import load

    teacher_summary = json.loads((teacher / "summary.json").read_text())
    # a 1-layer student from scratch, mostly on the teacher's soft targets
    run = make_run(data, tmp_path / "cache", layers=1, epochs=8, teacher=str(teacher), alpha=0.9, temperature=2.0)
    summary = execute(run, tmp_path / "student")
    assert summary["status"] == "finished"
    assert summary["test"]["accuracy"] > 0.8, summary["test"]  # chance: 0.5
    d = summary["distill"]
    assert d["teacher"] == str(teacher.resolve()) and d["alpha"] == 0.9 and d["temperature"] == 2.0
    assert d["teacher_test_primary"] == teacher_summary["test"]["accuracy"]
    assert summary["total_params"] < d["teacher_params"] == teacher_summary["total_params"]
    assert summary["predict_samples_per_second"] > 0

    clf = pipeline("text-classification", model=str(tmp_path / "student" / "hf"), device="cpu")
    out = clf(["the movie was wonderful", "a terrible old film"])
    assert [o["label"] for o in out] == ["pos", "neg"]
    rows = P.predict_rows(load(tmp_path / "student"), [{"text": "a wonderful story"}])
    assert rows[0]["label"] == "pos"


# ---- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"temperature": 0.0}, "distill.temperature", "> 0"),
        ({"temperature": -1.0}, "distill.temperature", "> 0"),
        ({"alpha": 1.5}, "distill.alpha", "[0, 1]"),
        ({"alpha": -0.1}, "distill.alpha", "[0, 1]"),
        ({"teacher": None}, "distill.teacher", "distill.teacher=RUN_DIR"),
        ({"temperature": None}, "distill.temperature", "set it"),
        ({"alpha": None}, "distill.alpha", "set it"),
        ({"student_layers": "every_third"}, "distill.student_layers", "every_other"),
        ({"student_layers": [0, 0]}, "distill.student_layers", "once"),
        ({"student_layers": [-1]}, "distill.student_layers", ">= 0"),
    ],
)
def test_bad_settings_fail_naming_the_key(data, tmp_path, change, key, words):
    with pytest.raises(ConfigError) as e:
        make_run(data, tmp_path, **({"teacher": "RUN"} | change))
    assert e.value.key == key and words in str(e.value) and "\n" not in str(e.value)


def test_distill_refuses_a_non_classification_task(data, tmp_path):
    from support import ratings_task

    run = make_run(data, tmp_path)
    run.task, run.finetune, run.distill = (
        ratings_task(),
        FinetuneConfig(strategy="distill"),
        DistillConfig("RUN", 2.0, 0.5),
    )
    with pytest.raises(ConfigError, match="sequence_classification only") as e:
        run.check()
    assert e.value.key == "finetune.strategy"


def test_a_teacher_without_distill_is_refused(data, tmp_path):
    run = make_run(data, tmp_path)
    run.distill = DistillConfig(teacher="RUN")
    with pytest.raises(ConfigError, match="finetune=distill"):
        run.check()


def _broken(teacher: Path, tmp_path: Path, how: str) -> Path:
    d = tmp_path / how
    if how == "missing":
        return d
    shutil.copytree(teacher, d)
    s = json.loads((d / "summary.json").read_text())
    if how == "no_summary":
        (d / "summary.json").unlink()
    elif how == "no_hf":
        shutil.rmtree(d / "hf")
    elif how == "unfinished":
        (d / "summary.json").write_text(json.dumps(s | {"status": "running"}))
    elif how == "other_labels":
        config = json.loads((d / "hf" / "config.json").read_text())
        config["id2label"] = {"0": "negative", "1": "positive"}
        config["label2id"] = {"negative": 0, "positive": 1}
        (d / "hf" / "config.json").write_text(json.dumps(config))
    return d


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("missing", "does not exist"),
        ("no_summary", "no summary.json"),
        ("no_hf", "no hf/"),
        ("unfinished", "has not finished"),
        ("other_labels", "same task and label set"),
    ],
)
def test_a_wrong_teacher_fails_in_one_line_before_any_data_is_read(teacher, data, tmp_path, how, words):
    run = make_run(data, tmp_path / "cache", teacher=str(_broken(teacher, tmp_path, how)))
    run_dir = tmp_path / "student"
    with pytest.raises(ConfigError) as e:
        execute(run, run_dir)
    assert e.value.key == "distill.teacher" and words in str(e.value) and "\n" not in str(e.value)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (tmp_path / "cache").exists()  # failed before tokenizing anything


def test_student_layers_beyond_the_teacher_fail_naming_the_count(teacher, data, tmp_path):
    run = make_run(data, tmp_path / "cache", teacher=str(teacher), student_layers=[0, 4])
    with pytest.raises(ConfigError, match=r"\[4\] out of range: the teacher has 4 layers, numbered 0..3") as e:
        D.load_teacher(run)
    assert e.value.key == "distill.student_layers"


def test_runs_without_distillation_keep_their_config_hash(data, tmp_path):
    """The distill section only counts for distill runs: finished runs of other strategies are still recognised."""
    from encoderlab.runner import config_hash

    run = make_run(data, tmp_path)
    other = dataclasses.replace(run, distill=DistillConfig(temperature=4.0, alpha=0.1))
    assert config_hash(other) == config_hash(run)
    student = make_run(data, tmp_path, teacher="RUN")
    hotter = dataclasses.replace(student, distill=dataclasses.replace(student.distill, temperature=4.0))
    assert config_hash(hotter) != config_hash(student)
