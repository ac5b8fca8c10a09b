"""``finetune=setfit``: SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts").

Two stages, on the (few) labelled training examples:

1. **contrastive**: the encoder learns on sentence pairs drawn from them (:func:`~.pairs.sample_pairs`: same class
   = target 1, other class = target 0) with sentence-transformers' CosineSimilarityLoss, the MSE between the cosine
   of the two pooled sentence vectors and the target; AdamW, linear warm-up then decay, gradient clipping at 1.
   ``finetune.setfit.pairs_per_example=0`` skips it: the run is then a probe on the encoder's own sentence vectors,
   the same run without its contrastive stage.
2. **head**: on the (unit-length) sentence vectors of the now fixed encoder, scikit-learn's logistic regression
   fitted to convergence (SetFit's default), or a linear layer trained by cross-entropy, optionally end to end.

Built on encoderlab's own pieces rather than on sentence-transformers, which encoderlab does not depend on: one
dependency less, and the run is like any other: the same data and k-shot draws (``task.shots_per_class``), run dir,
``summary.json``, ``predictions_test.jsonl``, W&B grouping and report. The export is the feature-based model of
``finetune=frozen`` (``hf/encoder`` + ``feature_head.pt``; the logistic regression's weights are its linear layer), so
``encoderlab-predict`` and ``encoderlab-export --format onnx`` serve it unchanged. The run trains in fp32 on one
device (CUDA when there is one and ``trainer.accelerator`` allows it); ``optimizer.*``, ``scheduler.*``,
``batch_size`` and ``trainer.max_*`` are not read: ``finetune.setfit.*`` holds this strategy's own.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoderlab.config.schema import RunConfig
from encoderlab.data.cache import cache_root
from encoderlab.kinds import get_kind
from encoderlab.kinds.sequence.predictions import PREDICTIONS_FILE, prediction_rows, split_texts, write_jsonl
from encoderlab.metrics.classification import classification_metrics
from encoderlab.models.encoder import build_config, build_model, check_length, load_tokenizer
from encoderlab.models.heads import FeatureHead, FeatureModel, export_feature_model
from encoderlab.strategies.setfit.head import fit_head
from encoderlab.strategies.setfit.pairs import sample_pairs
from encoderlab.strategies.setfit.vectors import encode, sentence_vectors, to_device

log = logging.getLogger("encoderlab")


def _device(run: RunConfig) -> torch.device:
    wants_cpu = str(run.trainer.accelerator) == "cpu"
    return torch.device("cuda" if torch.cuda.is_available() and not wants_cpu else "cpu")


def _optimizer(encoder: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and LayerNorm weights, as sentence-transformers' ``fit``."""
    decay, no_decay = [], []
    for name, p in encoder.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def train_contrastive(encoder, rows: list[dict], collator, run: RunConfig, pooling: str, device) -> dict:
    """Stage 1 on ``rows`` (tokenized training examples with ``labels``); returns its counts for summary.json."""
    from transformers import get_linear_schedule_with_warmup

    cfg = run.finetune.setfit
    pairs = sample_pairs([r["labels"] for r in rows], cfg.pairs_per_example, run.seed)
    if not pairs:
        return {"pairs": 0, "steps": 0, "loss_first": None, "loss_last": None, "tokens": 0}
    total = math.ceil(len(pairs) / cfg.batch_size) * cfg.epochs
    optimizer = _optimizer(encoder, cfg.lr, cfg.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(total * cfg.warmup_proportion), total)
    order_rng = torch.Generator().manual_seed(run.seed)
    losses, tokens = [], 0
    every, started = max(1, total // 10), time.monotonic()  # a line of progress per tenth: never silent for long
    encoder.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(pairs), generator=order_rng).tolist()
        for start in range(0, len(pairs), cfg.batch_size):
            chunk = [pairs[k] for k in order[start : start + cfg.batch_size]]
            a = to_device(collator([rows[i] for i, _, _ in chunk]), device)
            b = to_device(collator([rows[j] for _, j, _ in chunk]), device)
            target = torch.tensor([t for _, _, t in chunk], device=device)
            cos = nn.functional.cosine_similarity(
                sentence_vectors(encoder, a, pooling), sentence_vectors(encoder, b, pooling)
            )
            loss = nn.functional.mse_loss(cos, target)
            loss.backward()
            nn.utils.clip_grad_norm_(encoder.parameters(), cfg.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += int(a["attention_mask"].sum() + b["attention_mask"].sum())
            if len(losses) % every == 0 and len(losses) < total:
                log.info(
                    "setfit contrastive stage: step %d/%d, loss %.4f, %.0f s",
                    len(losses),
                    total,
                    np.mean(losses[-every:]),
                    time.monotonic() - started,
                )
    encoder.eval()
    first, last = np.mean(losses[: max(1, len(losses) // 10)]), np.mean(losses[-max(1, len(losses) // 10) :])
    log.info("setfit contrastive stage: %d pairs, %d steps, loss %.4f -> %.4f", len(pairs), total, first, last)
    return {
        "pairs": len(pairs),
        "steps": total,
        "loss_first": round(first, 5),
        "loss_last": round(last, 5),
        "tokens": tokens,
    }


def _scores(run: RunConfig, num_labels: int, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    metrics = classification_metrics(run.task.metrics, num_labels)
    metrics.update(logits.argmax(-1), labels)
    return {k: float(v) for k, v in metrics.compute().items()}


def _export(network: FeatureModel, tokenizer, run: RunConfig, run_dir: Path, metrics: dict, meta: dict, overrides):
    """``run_dir/hf/``, written whole into a temporary folder and swapped in, as the runner exports."""
    from encoderlab.deploy.card import write_model_card

    tmp, hf, old = run_dir / ".hf.tmp", run_dir / "hf", run_dir / ".hf.old"
    shutil.rmtree(tmp, ignore_errors=True)
    export_feature_model(network.cpu(), tokenizer, tmp, {"label_names": meta["label_names"]})
    try:
        write_model_card(tmp, run, metrics, meta, overrides)
    except Exception as err:  # a card that cannot be written never fails the run
        log.warning("could not write the model card: %s", err)
    shutil.rmtree(old, ignore_errors=True)
    if hf.exists():
        os.replace(hf, old)
    os.replace(tmp, hf)
    shutil.rmtree(old, ignore_errors=True)


def fit_setfit(run: RunConfig, run_dir: Path, overrides: list[str]) -> dict:
    """Both stages, test, export and predictions; returns the summary fields of a finished run."""
    cfg, pooling = run.finetune.setfit, run.finetune.pooling or run.model.pooling
    device = _device(run)
    torch.manual_seed(run.seed)
    tokenizer = load_tokenizer(run.model)
    t_data = time.perf_counter()
    root = cache_root(run.paths.cache_dir) if run.speed.cache_tokenized else None
    prepared = get_kind(run.task.kind).prepare(run, tokenizer, root)
    data_seconds = time.perf_counter() - t_data
    names = prepared.meta["label_names"]
    rows = {split: ds.to_list() for split, ds in prepared.datasets.items()}
    labels = {split: torch.tensor([r["labels"] for r in split_rows]) for split, split_rows in rows.items()}
    config = build_config(run.model, vocab_size=len(tokenizer), precision="32-true")
    check_length(run.task.max_seq_length, config)
    encoder = build_model(run.model, _auto_model(), config).to(device)
    head = FeatureHead(1, config.hidden_size, len(names), "single", "linear", dropout=0.0, normalize=cfg.normalize)

    t0 = time.perf_counter()
    contrastive = train_contrastive(encoder, rows["train"], prepared.collator, run, pooling, device)
    network = FeatureModel(encoder, head, [config.num_hidden_layers], pooling).to(device)
    feats = encode(network, rows["train"], prepared.collator, run.eval_batch_size, device)
    head_info = fit_head(network, feats, labels["train"], rows["train"], prepared.collator, run, device)
    if head_info.get("end_to_end"):  # the encoder moved: features of the training examples anew for the scores
        feats = encode(network, rows["train"], prepared.collator, run.eval_batch_size, device)
    train_seconds = time.perf_counter() - t0

    network.eval()
    scores, logits, predict_seconds = {}, {}, 0.0
    for split in ("validation", "test"):
        t_split = time.perf_counter()
        with torch.no_grad():
            logits[split] = network.head(
                encode(network, rows[split], prepared.collator, run.eval_batch_size, device).to(device)
            ).cpu()
        predict_seconds += time.perf_counter() - t_split
        scores[split] = _scores(run, len(names), logits[split], labels[split])
    log.info(
        "setfit: val %s = %.4f, test %s = %.4f",
        run.task.primary_metric,
        scores["validation"][run.task.primary_metric],
        run.task.primary_metric,
        scores["test"][run.task.primary_metric],
    )
    texts = split_texts(run, len(labels["test"]))
    write_jsonl(run_dir / PREDICTIONS_FILE, prediction_rows(logits["test"], labels["test"], names, texts))
    meta = {
        "label_names": names,
        "sizes": {k: len(v) for k, v in rows.items()},
        "data_key": prepared.meta.get("data_key"),
    }
    if run.save_model:
        _export(
            network,
            tokenizer,
            run,
            run_dir,
            {"test": scores["test"], "validation": scores["validation"]},
            meta,
            overrides,
        )
    n_test = len(rows["validation"]) + len(rows["test"])
    total = sum(p.numel() for p in network.parameters())
    steps = contrastive["steps"] + head_info.get("steps", 0)
    return {
        "val": scores["validation"],
        "test": scores["test"],
        "best_epoch": None,
        "epochs": cfg.epochs if contrastive["steps"] else 0,
        "steps": steps,
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "feature_seconds": 0.0,
        "train_samples_per_second": round(2 * contrastive["pairs"] * cfg.epochs / max(train_seconds, 1e-9), 2),
        "train_tokens_per_second": round(contrastive["tokens"] / max(train_seconds, 1e-9), 1),
        "predict_samples_per_second": round(n_test / max(predict_seconds, 1e-9), 2),
        "trainable_params": total if contrastive["steps"] or head_info.get("end_to_end") else head_info["params"],
        "total_params": total,
        "data": meta,
        "setfit": {k: v for k, v in contrastive.items() if k != "tokens"} | {"head": head_info},
    }


def _auto_model():
    from transformers import AutoModel

    return AutoModel
