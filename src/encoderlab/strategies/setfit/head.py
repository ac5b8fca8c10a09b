"""SetFit's second stage: a classifier on the sentence vectors, put into the export's linear layer."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from encoderlab.config.schema import RunConfig
from encoderlab.models.heads import FeatureModel
from encoderlab.strategies.setfit.vectors import sentence_vectors, to_device

log = logging.getLogger("encoderlab")


def _vectors(network: FeatureModel, feats: torch.Tensor) -> torch.Tensor:
    """[N, H] what the head's classifier reads: the combined features, unit length when the head normalises."""
    x = network.head.combined(feats.float())
    return nn.functional.normalize(x, dim=-1) if network.head.normalize else x


def logistic_regression_weights(coef: np.ndarray, intercept: np.ndarray, num_labels: int):
    """(weight [C, H], bias [C]) of a linear layer whose softmax equals scikit-learn's ``predict_proba``.

    A binary model has one row w: softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)] with z = w.x + b."""
    w, b = torch.as_tensor(coef, dtype=torch.float32), torch.as_tensor(intercept, dtype=torch.float32)
    if num_labels == 2 and w.shape[0] == 1:
        w, b = torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
    return w, b


def _fit_logistic_regression(network: FeatureModel, feats: torch.Tensor, labels: torch.Tensor, run: RunConfig) -> dict:
    from sklearn.linear_model import LogisticRegression

    cfg = run.finetune.setfit
    x, y = _vectors(network, feats).numpy(), labels.numpy()
    clf = LogisticRegression(C=cfg.head_c, max_iter=cfg.head_max_iter, random_state=run.seed).fit(x, y)
    iterations = int(np.max(clf.n_iter_))
    if iterations >= cfg.head_max_iter:
        log.warning(
            "setfit head: logistic regression stopped at %d iterations before converging; raise "
            "finetune.setfit.head_max_iter",
            iterations,
        )
    n = network.head.num_outputs
    full = np.zeros((n, x.shape[1]), dtype=np.float32) if len(clf.classes_) < n else None
    coef, intercept = clf.coef_, clf.intercept_
    if full is not None:  # a class absent from the training examples: never predicted (a very low score)
        w, b = logistic_regression_weights(coef, intercept, len(clf.classes_))
        weight, bias = torch.zeros(n, x.shape[1]), torch.full((n,), -1e4)
        weight[clf.classes_], bias[clf.classes_] = w, b
    else:
        weight, bias = logistic_regression_weights(coef, intercept, n)
    layer = network.head.classifier
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return {"kind": "logistic_regression", "iterations": iterations, "params": int(coef.size + intercept.size)}


def _fit_linear(network: FeatureModel, feats, labels, rows, collator, run: RunConfig, device) -> dict:
    """Cross-entropy on the head (and the encoder, end to end); SetFit's differentiable head's defaults."""
    cfg = run.finetune.setfit
    head, encoder = network.head, network.encoder
    groups = [{"params": head.parameters(), "lr": cfg.head_lr}]
    if cfg.end_to_end:
        for p in encoder.parameters():
            p.requires_grad_(True)
        encoder.train()
        groups.append({"params": encoder.parameters(), "lr": cfg.end_to_end_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    rng = torch.Generator().manual_seed(run.seed)
    head.train()
    steps = 0
    for _ in range(cfg.head_epochs):
        order = torch.randperm(len(labels), generator=rng).tolist()
        for start in range(0, len(order), cfg.head_batch_size):
            idx = order[start : start + cfg.head_batch_size]
            if cfg.end_to_end:
                batch = to_device(collator([rows[i] for i in idx]), device)
                x = sentence_vectors(encoder, batch, network.pooling)[:, None, :]
            else:
                x = feats[idx].to(device)
            loss = nn.functional.cross_entropy(head(x), labels[idx].to(device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
    head.eval()
    if cfg.end_to_end:
        for p in encoder.parameters():
            p.requires_grad_(False)
        encoder.eval()
    params = sum(p.numel() for p in head.parameters())
    return {"kind": "linear", "steps": steps, "end_to_end": cfg.end_to_end, "params": params}


def fit_head(network: FeatureModel, feats, labels, rows, collator, run: RunConfig, device) -> dict:
    """Fit ``finetune.setfit.head`` on the training features (``feats`` [N, 1, H]); its weights end in
    ``network.head``. Returns what summary.json records of it."""
    if run.finetune.setfit.head == "logistic_regression":
        return _fit_logistic_regression(network, feats, labels, run)
    return _fit_linear(network, feats, labels, rows, collator, run, device)
