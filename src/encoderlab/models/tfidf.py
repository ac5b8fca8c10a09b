"""``model=tfidf_logreg``: TF-IDF word n-grams + logistic regression, the baseline a fine-tuned encoder must beat.

It reads the same examples as the sequence-classification kind (``load_raw`` + ``prepare_labels``: the same
seeded splits, subsets and label ids), scores them with the same torchmetrics collection, and returns the same
summary fields, so ``encoderlab-report`` puts it in one table with the neural runs. There is no Lightning here:
scikit-learn fits it in seconds on a CPU. The regularisation strength is picked on the validation split, as an
encoder run keeps its best epoch by validation; ``train_seconds`` counts every fit of that search.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from encoderlab.config.schema import RunConfig
from encoderlab.data.sources import load_raw
from encoderlab.errors import DataError
from encoderlab.kinds.sequence.data import prepare_labels
from encoderlab.metrics.classification import classification_metrics

log = logging.getLogger("encoderlab")
MODEL_FILE = "tfidf_logreg.joblib"


def _texts(ds, fields: list[str]) -> list[str]:
    """One string per example; a pair's two texts are joined with a marker, so n-grams never span the seam."""
    columns = [ds[f] for f in fields]
    return [" ||| ".join(str(t) for t in row) for row in zip(*columns, strict=True)]


def _scores(run: RunConfig, num_labels: int, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    metrics = classification_metrics(run.task.metrics, num_labels)
    metrics.update(torch.as_tensor(preds, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long))
    return {k: float(v) for k, v in metrics.compute().items()}


def _save(pipeline, path: Path) -> None:
    import joblib

    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(pipeline, tmp)
    os.replace(tmp, path)


def fit_tfidf_logreg(run: RunConfig, run_dir: Path, overrides: list[str] | None = None) -> dict:
    """Fit, select C on validation, test; returns the summary fields of a finished run."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    task, cfg = run.task, run.model.tfidf
    t_data = time.perf_counter()
    labeled, names = prepare_labels(load_raw(task, run.cv), task)  # cv.folds: this fold's split
    x = {split: _texts(ds, task.text_fields) for split, ds in labeled.items()}
    y = {split: np.asarray(ds["labels"], dtype=np.int64) for split, ds in labeled.items()}
    data_seconds = time.perf_counter() - t_data
    if len(np.unique(y["train"])) < 2:
        raise DataError(
            f"task '{task.name}': the training split holds one class only ({len(y['train'])} examples); "
            "raise task.max_train_samples"
        )

    t0 = time.perf_counter()
    vectorizer = TfidfVectorizer(
        ngram_range=tuple(cfg.ngram_range),
        min_df=cfg.min_df,
        max_features=cfg.max_features,
        sublinear_tf=cfg.sublinear_tf,
        lowercase=cfg.lowercase,
    )
    features = {"train": vectorizer.fit_transform(x["train"])}
    features["validation"] = vectorizer.transform(x["validation"])
    sign = 1.0 if task.greater_is_better else -1.0
    best = None
    for c in cfg.C:
        clf = LogisticRegression(C=c, max_iter=cfg.max_iter, random_state=run.seed)
        clf.fit(features["train"], y["train"])
        val = _scores(run, len(names), clf.predict(features["validation"]), y["validation"])
        log.info("tfidf_logreg C=%g: val %s = %.4f", c, task.primary_metric, val[task.primary_metric])
        if best is None or sign * val[task.primary_metric] > sign * best[1][task.primary_metric]:
            best = (clf, val, c)
    train_seconds = time.perf_counter() - t0
    clf, val, c = best
    pipeline = Pipeline([("tfidf", vectorizer), ("logreg", clf)])
    test = _scores(run, len(names), pipeline.predict(x["test"]), y["test"])
    if run.save_model:
        _save(pipeline, run_dir / MODEL_FILE)
    params = int(clf.coef_.size + clf.intercept_.size)
    n_train = len(y["train"])
    return {
        "val": val,
        "test": test,
        "best_epoch": None,
        "epochs": None,
        "steps": int(np.max(clf.n_iter_)),
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "feature_seconds": 0.0,
        "train_samples_per_second": round(n_train * len(cfg.C) / max(train_seconds, 1e-9), 2),
        "train_tokens_per_second": None,
        "trainable_params": params,  # the logistic regression's weights and biases
        "total_params": params,
        "data": {
            "label_names": names,
            "sizes": {split: len(v) for split, v in y.items()},
            "vocabulary": len(vectorizer.vocabulary_),
            "C": c,
        },
    }
