"""``predictions_test.jsonl`` for sequence classification and regression: one line per test example with its
text, the gold label, the prediction and (classification) the class probabilities, for error analysis.

The test set is scored once more (in length-sorted batches, put back in its own order), with the weights that
``trainer.test`` used. Texts come from the raw test split, read and filtered as ``prepare`` did.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from encoderlab.data.collate import sorted_batches
from encoderlab.kinds.base import Prepared

log = logging.getLogger(__name__)
PREDICTIONS_FILE = "predictions_test.jsonl"


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.inference_mode()
def split_logits(module, prepared: Prepared, batch_size: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, C], labels [N]) of ``split`` in dataset order.

    Batches are formed in length order (least padding), in the run's precision (bf16 autocast for bf16 runs, as in
    its evaluation); rows go back to dataset order at the end.
    """
    rows = prepared.datasets[split]
    rows = rows.to_list() if hasattr(rows, "to_list") else list(rows)
    lengths = [len(r["input_ids"]) if "input_ids" in r else 0 for r in rows]
    bf16 = module.run.precision.startswith("bf16")
    was_training = module.training
    module.eval()
    logits, labels, order = [], [], []
    for idx in sorted_batches(lengths, batch_size):
        batch = _to(prepared.collator([rows[i] for i in idx]), module.device)
        with torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits.append(module.logits(batch).float().cpu())
        labels.append(batch["labels"].cpu())
        order += idx
    module.train(was_training)
    if not order:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(logits)[back], torch.cat(labels)[back]


def split_texts(run, n: int) -> list[dict] | None:
    """The raw text fields of the test examples (None when they cannot be matched to the predictions)."""
    from encoderlab.data.sources import load_raw
    from encoderlab.kinds.sequence.data import prepare_labels

    try:
        raw, _ = prepare_labels(load_raw(run.task, run.cv), run.task)
    except Exception as e:  # predictions without text are still useful; never fail a finished run here
        log.warning("predictions file without texts: %s", e)
        return None
    test = raw["test"]
    if len(test) != n:
        return None
    fields = run.task.text_fields
    return [{("text" if j == 0 else "text_pair"): str(row[f]) for j, f in enumerate(fields)} for row in test]


def prediction_rows(logits: torch.Tensor, labels: torch.Tensor, names: list[str] | None, texts) -> list[dict]:
    rows = []
    if names:  # classification
        probs = torch.softmax(logits, -1)
        for i, (p, y) in enumerate(zip(probs.tolist(), labels.tolist(), strict=True)):
            pred = max(range(len(p)), key=p.__getitem__)
            rows.append(
                {
                    "index": i,
                    **(texts[i] if texts else {}),
                    "gold": names[y],
                    "pred": names[pred],
                    "correct": pred == y,
                    "confidence": round(p[pred], 6),
                    "probabilities": {n: round(q, 6) for n, q in zip(names, p, strict=True)},
                }
            )
    else:  # regression
        for i, (v, y) in enumerate(zip(logits.squeeze(-1).tolist(), labels.tolist(), strict=True)):
            rows.append({"index": i, **(texts[i] if texts else {}), "gold": y, "pred": v, "error": v - y})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def predict(module, trainer, datamodule, prepared: Prepared, run_dir: Path) -> dict:
    """Write ``predictions_test.jsonl`` beside summary.json; no extra metrics."""
    if not trainer.is_global_zero or "test" not in prepared.datasets:
        return {}
    run = module.run
    logits, labels = split_logits(module, prepared, run.eval_batch_size)
    texts = split_texts(run, len(labels))
    write_jsonl(run_dir / PREDICTIONS_FILE, prediction_rows(logits, labels, prepared.meta.get("label_names"), texts))
    return {}
