"""What a sequence classification or regression export serves: one text (or a pair) per row in, a label with its
probabilities (or a value) out, windows pooled as the run pooled them when it trained on long texts by chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from encoderlab.deploy.base import (
    DEPLOY_FILE,
    Columns,
    encode,
    pick,
    read_run_config,
    refuse,
    run_features,
    softmax,
    value,
)
from encoderlab.kinds.base import Serving


class SequenceServing(Serving):
    name = "sequence_classification"
    pipeline_tag = "text-classification"
    auto_model = "AutoModelForSequenceClassification"
    regression = False

    def _is_regression(self, config: dict) -> bool:
        return config.get("problem_type") == "regression" or len(config.get("id2label") or {}) == 1

    def recognizes(self, architecture: str, config: dict) -> bool:
        return architecture.endswith("ForSequenceClassification") and self._is_regression(config) == self.regression

    def export_meta(self, folder: Path) -> dict:
        from encoderlab.kinds.sequence.long_text import read_serving_settings

        return {"long_text": read_serving_settings(folder)}  # task.long_text, for an ONNX folder served on its own

    def recognizes_feature(self, desc: dict, folder: Path) -> bool:
        return desc.get("pooling") is not None and (not desc.get("label_names")) == self.regression

    def label_names(self, names):
        return None if self.regression else names

    def columns(self, served, rows: list[dict], given: Columns) -> Columns:
        why = f"this model is {self.name.replace('_', ' ')}, not question answering; use --text-column"
        refuse(given, {"question": "--question-column", "context": "--context-column"}, why)
        task = served.task_config
        fields = list(task.get("text_fields") or [])
        text = pick(rows, given.text, [fields[0] if fields else None, "text", "sentence"], "--text-column")
        pair = None
        if given.text_pair is not None or len(fields) > 1:
            pair = pick(rows, given.text_pair, [fields[1] if len(fields) > 1 else None], "--text-pair-column")
        return Columns(text=text, text_pair=pair)

    def predict(self, served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[dict]:
        logits = sequence_logits(served, rows, cols, batch_size, progress)
        if self.regression:
            return [{"value": float(x[0])} for x in logits]
        names = served.label_names or [str(i) for i in range(len(logits[0]))]
        out = []
        for x in logits:
            p = softmax(x.astype(np.float64))
            k = int(p.argmax())
            out.append(
                {"label": names[k], "score": float(p[k]), "probabilities": dict(zip(names, map(float, p), strict=True))}
            )
        return out


class RegressionServing(SequenceServing):
    name = "sequence_regression"
    regression = True


def sequence_logits(served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[np.ndarray]:
    """One row of logits per input row: the text (and pair) tokenized as the run was, or its long-text windows."""
    texts = [str(value(r, cols.text, i, "--text-column")) for i, r in enumerate(rows)]
    args = [texts]
    if cols.text_pair:
        args.append([str(value(r, cols.text_pair, i, "--text-pair-column")) for i, r in enumerate(rows)])
    task = _long_text(served)
    if task is None:
        feats, _ = encode(served, *args)
        return run_features(served, feats, batch_size, False, progress)
    # the run's task.long_text: the tokens it was trained and tested on, windows pooled as it pooled them
    import torch

    from encoderlab.kinds.sequence.long_text import pool_chunks, serving_features

    feats, owner = serving_features(served.tokenizer, texts, {"max_seq_length": served.max_length} | task)
    feats = [{k: f[k] for k in served.input_names} for f in feats]
    logits = run_features(served, feats, batch_size, False, progress)
    if owner is not None:
        pooled = pool_chunks(torch.as_tensor(np.stack(logits)), torch.as_tensor(owner), len(texts), task["pool"])
        logits = list(pooled.numpy())
    return logits


def _long_text(served) -> dict | None:
    """The run's ``task.long_text`` settings, unless it is ``head`` (the tokenizer's own truncation): the export's
    own (``long_text.json`` in hf/, ``long_text`` in an ONNX folder's deploy.json), else the run's config."""
    import json

    from encoderlab.kinds.sequence.long_text import read_serving_settings

    folder = served.model_dir
    task = read_serving_settings(folder) if folder is not None else None
    if task is None and folder is not None and (folder / DEPLOY_FILE).is_file():
        task = json.loads((folder / DEPLOY_FILE).read_text()).get("long_text")
    if task is None:
        task = read_run_config(served.run_dir).get("task", {}) if served.run_dir is not None else {}
    if task.get("long_text", "head") == "head":
        return None
    return task | {"pool": task.get("chunk_pooling") or "mean"}


CLASSIFICATION = SequenceServing()
REGRESSION = RegressionServing()
