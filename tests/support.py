"""Small builders shared by the test modules (imported as ``support``: pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

from encoderlab.config.schema import MLMConfig, ModelConfig, NerConfig, QAConfig, TaskConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

# CLI overrides for a tiny random-init BERT and a few batches of everything
TINY = [
    "model=bert_tiny",
    "model.hidden_size=32",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "trainer=debug",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


def task_config(**kw) -> TaskConfig:
    """A TaskConfig from flat keyword arguments: keys of task.ner / task.qa / task.mlm go to their section."""
    for name, cls in (("ner", NerConfig), ("qa", QAConfig), ("mlm", MLMConfig)):
        fields = {k: kw.pop(k) for k in list(kw) if k in cls.__dataclass_fields__}
        if fields:
            kw[name] = cls(**fields)
    return TaskConfig(**kw)


def reviews_task(path: Path | None = None, **kw) -> TaskConfig:
    """tests/fixtures/reviews.csv (60 short reviews, neg/pos) as a task, split 60/20/20 from one file."""
    base = dict(
        name="reviews",
        data_files={"train": str(path or FIXTURES / "reviews.csv")},
        validation_split=None,
        test_split=None,
        validation_size=0.2,
        test_size=0.2,
        text_fields=["review"],
        label_field="sentiment",
        label_names=["neg", "pos"],
        max_seq_length=64,
    )
    return TaskConfig(**(base | kw))


def ratings_task(**kw) -> TaskConfig:
    """tests/fixtures/ratings.jsonl as a regression task."""
    base = dict(
        name="ratings",
        kind="sequence_regression",
        data_files={"train": str(FIXTURES / "ratings.jsonl")},
        validation_split=None,
        test_split=None,
        label_field="score",
        metrics=["pearson", "spearman"],
        primary_metric="pearson",
    )
    return TaskConfig(**(base | kw))


def tiny_model(**kw) -> ModelConfig:
    """A randomly initialised 2-layer BERT of hidden size 32: learns the fixtures' tasks in seconds."""
    base = dict(
        name="tiny", from_scratch=True, num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64
    )
    return ModelConfig(**(base | kw))


def keyword_csv(path: Path, n: int = 240, filler_words: int = 6) -> Path:
    """Random filler words and one keyword that decides the label (``text,label``, pos/neg alternating):
    learnable only through the encoder, in seconds by a tiny model."""
    import csv
    import random

    rng = random.Random(0)
    filler = "the a movie film plot actor scene story time long short old new some many".split()
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        for i in range(n):
            words = [rng.choice(filler) for _ in range(filler_words)]
            words.insert(rng.randrange(filler_words + 1), "wonderful" if i % 2 else "terrible")
            w.writerow([" ".join(words), "pos" if i % 2 else "neg"])
    return path


def keyword_task(path: Path, **kw) -> TaskConfig:
    """A :func:`keyword_csv` file as a task, split 60/20/20."""
    return reviews_task(
        **(
            {
                "name": "keywords",
                "data_files": {"train": str(path)},
                "text_fields": ["text"],
                "label_field": "label",
                "max_seq_length": 16,
            }
            | kw
        )
    )


def quiet_trainer(**kw):
    """A CPU ``pl.Trainer`` without logger, checkpoints, progress bar or model summary, for tests that drive it."""
    import pytorch_lightning as pl

    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(accelerator="cpu", **(quiet | kw))
