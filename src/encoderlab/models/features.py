"""Encode once for frozen strategies: features computed in one forward pass, heads trained on the cache.

With the encoder frozen and in eval mode, every epoch would recompute the same hidden states. Encoding
each split once (forward only, length-sorted batches, bf16 when the run uses it) and training the head
on the stored vectors gives the same result for a fraction of the cost. Features are also kept on disk
under a fingerprint, so the seeds of a sweep encode once between them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from encoderlab.data.collate import sorted_batches
from encoderlab.kinds.base import Prepared
from encoderlab.models.heads import FeatureModel

if TYPE_CHECKING:
    from encoderlab.config.schema import RunConfig
    from encoderlab.models.module import EncoderModule

log = logging.getLogger(__name__)


def maybe_cache_features(
    module: EncoderModule, prepared: Prepared, run: RunConfig, root: Path | None
) -> tuple[Prepared, float | None]:
    """The run's data as cached encoder features when its encoder is frozen and ``speed.cache_features`` is on,
    and the seconds that took (~0 when an earlier run of the sweep encoded them); else ``prepared`` and None."""
    if not (isinstance(module.network, FeatureModel) and run.speed.cache_features):
        return prepared, None
    t0 = time.perf_counter()
    prepared = cache_features(module, prepared, run, root)
    return prepared, time.perf_counter() - t0


def encoder_identity(run: RunConfig) -> str:
    """What fixes the frozen encoder's weights: its whole config, and the seed when it is randomly initialised
    (a from-scratch encoder of seed 1 is another network than that of seed 2, with the same name and path)."""
    ident = json.dumps(asdict(run.model), sort_keys=True)
    return ident + (f"|seed={run.seed}" if run.model.from_scratch else "")


def cache_features(module: EncoderModule, prepared: Prepared, run: RunConfig, root: Path | None) -> Prepared:
    """Replace token ids by encoder features (once per split, shared by the runs of a sweep).

    Sequence features are cached for every hidden layer, so frozen and all feature_based layer choices
    with the same pooling share one encoding; token features keep the selected layers only (size).
    """
    net: FeatureModel = module.network
    t0 = time.perf_counter()
    all_layers = net.pooling in ("cls", "mean")
    key = feature_key(
        prepared.meta.get("data_key", ""),
        encoder_identity(run),
        None if all_layers else net.layers,
        net.pooling,
        run.precision,
    )
    splits = {}
    # token counts of the original rows: the train batches are bucketed exactly as without the cache
    lengths = dict(prepared.lengths or {})
    for split, ds in prepared.datasets.items():
        rows = ds.to_list() if hasattr(ds, "to_list") else list(ds)
        lengths.setdefault(split, [len(r["input_ids"]) for r in rows])
        feats = cached_features(
            root,
            key,
            split,
            lambda rows=rows: encode_rows(net, rows, prepared.collator, run.eval_batch_size, run.precision, all_layers),
        )
        splits[split] = select_layers(feats, net.layers) if all_layers else feats
    net.train()  # encode_rows switched the whole network to eval mode; the head trains with its dropout
    log.info("features ready in %.1fs (encoder frozen: the head trains on cached features)", time.perf_counter() - t0)
    return Prepared(splits, FeatureCollator(), prepared.meta | {"cached_features": True}, prepared.extras, lengths)


def _autocast(precision: str):
    if precision.startswith("bf16"):
        return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def encode_rows(
    model: FeatureModel,
    rows: list[dict],
    collator: Callable,
    batch_size: int,
    precision: str = "32-true",
    all_layers: bool = False,
) -> list[dict]:
    """Rows with ``features`` ([n, H] per sequence, or [T, n, H] per token) in place of the token ids.

    ``all_layers`` keeps every hidden layer (sequence features only: small), so one encoding serves every
    ``finetune.layers`` choice of a freezing study; :func:`select_layers` picks the configured ones.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    lengths = [len(r["input_ids"]) for r in rows]
    out: list[dict | None] = [None] * len(rows)
    for idx in sorted_batches(lengths, batch_size):
        batch = collator([rows[i] for i in idx])
        with _autocast(precision):
            feats = model.encode(
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["token_type_ids"].to(device) if "token_type_ids" in batch else None,
                all_layers=all_layers,
            )
        feats = feats.float().cpu()
        for j, i in enumerate(idx):
            row = {k: v for k, v in rows[i].items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
            if model.pooling is None:  # per token: keep the real tokens only; the collator pads again
                n = lengths[i]
                row["features"] = feats[j, :n].clone()
                row["attention_mask"] = [1] * n
            else:
                row["features"] = feats[j].clone()
            out[i] = row
    return out  # type: ignore[return-value]


def select_layers(rows: list[dict], layers: list[int]) -> list[dict]:
    """Rows cached with every layer -> rows with the configured layers only."""
    return [r | {"features": r["features"][layers]} for r in rows]


# bump when what is cached changes: 2 = a pre-LayerNorm model's last layer is its normalised output
FEATURES_VERSION = 2


def feature_key(data_key: str, model_ident: str, layers: list[int] | None, pooling: str | None, precision: str) -> str:
    payload = json.dumps([FEATURES_VERSION, data_key, model_ident, layers, pooling, precision.startswith("bf16")])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cached_features(root: Path | None, key: str, split: str, compute: Callable[[], list[dict]]) -> list[dict]:
    """``compute()`` once per (key, split); stored as safetensors (no pickle: a cache file never runs code),
    written atomically."""
    if root is None:
        return compute()
    path = root / "features" / key / f"{split}.safetensors"
    if path.exists():
        try:
            log.info("using cached features %s", path)
            return load_rows(path)
        except Exception as e:
            log.warning("cached features %s unreadable (%s); recomputing", path, e)
    rows = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_rows(rows, tmp)
    os.replace(tmp, path)
    return rows


def save_rows(rows: list[dict], path: Path) -> None:
    """Rows of encoded features: the ``features`` tensors in one tensor (stacked, or concatenated along the tokens
    with their ``lengths``), every other field as JSON in the file's metadata."""
    feats = [r["features"] for r in rows]
    rest = [{k: v for k, v in r.items() if k != "features"} for r in rows]
    if not feats:
        tensors = {"features": torch.zeros(0)}
    elif all(f.shape == feats[0].shape for f in feats):
        tensors = {"features": torch.stack(feats).contiguous()}
    else:
        tensors = {"features": torch.cat(feats).contiguous(), "lengths": torch.tensor([f.shape[0] for f in feats])}
    save_file(tensors, str(path), metadata={"rows": json.dumps(rest), "format": _FORMAT})


def load_rows(path: Path) -> list[dict]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != _FORMAT:
            raise ValueError(f"not a feature cache of this version ({meta.get('format')!r})")
        feats = f.get_tensor("features")
        lengths = f.get_tensor("lengths").tolist() if "lengths" in f.keys() else None
    rest = json.loads(meta["rows"])
    if not rest:
        return []
    parts = list(torch.split(feats, lengths)) if lengths is not None else list(feats.unbind(0))
    return [r | {"features": x} for r, x in zip(rest, parts, strict=True)]


_FORMAT = "encoderlab-features-1"


class FeatureCollator:
    """Stacks cached sequence features, or pads cached token features (and their labels, with -100)."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        feats = [r["features"] for r in rows]
        batch: dict[str, torch.Tensor] = {}
        if feats[0].dim() == 2:  # [n, H] per sequence
            batch["features"] = torch.stack(feats)
        else:  # [T, n, H] per token
            T = max(f.shape[0] for f in feats)
            batch["features"] = torch.zeros(len(rows), T, *feats[0].shape[1:])
            batch["attention_mask"] = torch.zeros(len(rows), T, dtype=torch.long)
            for i, f in enumerate(feats):
                batch["features"][i, : f.shape[0]] = f
                batch["attention_mask"][i, : f.shape[0]] = 1
        for key in rows[0]:
            if key in ("features", "attention_mask"):
                continue
            values = [r[key] for r in rows]
            if isinstance(values[0], (list, tuple)):
                T = batch["features"].shape[1]
                t = torch.full((len(rows), T), -100, dtype=torch.long)
                for i, v in enumerate(values):
                    t[i, : len(v)] = torch.as_tensor(v[:T])
                batch[key] = t
            elif isinstance(values[0], (int, float)):
                batch[key] = torch.as_tensor(values)
        return batch
