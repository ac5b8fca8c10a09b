"""Read runs from the W&B API into the same records as run dirs, so one report compares both.

A W&B run carries the resolved config (Lightning's ``log_hyperparams``) and a summary: the last value of
each logged key (``val/accuracy``, ``test/accuracy``) plus whatever the training run put there. When the
summary holds ``summary.json``'s own fields (``val``/``test`` dicts, ``train_seconds``, ``published`` ...)
they win; otherwise they are rebuilt from the config and the logged keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from encoderlab.errors import EncoderlabError
from encoderlab.report.aggregate import lower_is_better
from encoderlab.report.runs import SPLITS, SUMMARY_FIELDS, RunRecord

# W&B run states -> summary.json status
STATES = {
    "finished": "finished",
    "running": "running",
    "pending": "running",
    "preempting": "running",
    "crashed": "failed",
    "failed": "failed",
    "killed": "failed",
}
# summary field -> where the config keeps it, when the W&B summary lacks it
FROM_CONFIG = {
    "experiment": "experiment_name",
    "task": "task.name",
    "kind": "task.kind",
    "model": "model.name",
    "strategy": "finetune.strategy",
    "seed": "seed",
    "primary_metric": "task.primary_metric",
}


def _unwrap(value: Any) -> Any:
    """Raw W&B config values come as ``{"value": x, "desc": ...}``; the public API usually unwraps them."""
    if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
        return _unwrap(value["value"])
    if isinstance(value, Mapping):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def nest_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """W&B config -> nested dict; ``task/name`` and ``task.name`` keys nest, ``_wandb`` internals drop."""
    nested: dict[str, Any] = {}
    for key, value in config.items():
        if str(key).startswith("_"):
            continue
        value = _unwrap(value)
        if isinstance(value, Mapping):
            value = nest_config(value)
        *parents, leaf = str(key).replace("/", ".").split(".")
        node = nested
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return nested


def _dig(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _summary_dict(run: Any) -> dict[str, Any]:
    metrics = getattr(run, "summary_metrics", None)
    if isinstance(metrics, Mapping):
        return dict(metrics)
    summary = getattr(run, "summary", None) or {}
    return dict(getattr(summary, "_json_dict", None) or summary)


def wandb_run_to_record(run: Any) -> RunRecord:
    """One ``wandb.apis.public.Run`` (or any object with ``config``, ``summary``, ``state``, ``path``) -> record."""
    config = nest_config(dict(getattr(run, "config", None) or {}))
    raw = _summary_dict(run)
    summary: dict[str, Any] = {k: raw[k] for k in (*SUMMARY_FIELDS, "published", "versions", "overrides") if k in raw}
    for field, key in FROM_CONFIG.items():
        if summary.get(field) is None:
            summary[field] = _dig(config, key)
    for split in SPLITS:
        metrics = dict(raw[split]) if isinstance(raw.get(split), Mapping) else {}
        for key, value in raw.items():
            if key.startswith(f"{split}/") and key[len(split) + 1 :] not in metrics:
                metrics[key[len(split) + 1 :]] = value
        summary[split] = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary["status"] = raw.get("status") or STATES.get(str(getattr(run, "state", "")).lower(), "failed")
    if summary.get("greater_is_better") is None and summary.get("primary_metric"):
        summary["greater_is_better"] = not lower_is_better(str(summary["primary_metric"]))
    if summary.get("train_seconds") is None and "_runtime" in raw:
        summary["train_seconds"] = raw["_runtime"]  # wall time of the whole run: the closest W&B keeps
    if summary.get("published") is None and isinstance(config.get("published"), Mapping):
        if config["published"].get("value") is not None:
            summary["published"] = dict(config["published"])
    path = getattr(run, "path", None)
    name = getattr(run, "url", None) or ("/".join(path) if isinstance(path, (list, tuple)) else str(path or run))
    return RunRecord(run_dir=str(name), summary=summary, config=config, overrides=list(summary.get("overrides") or []))


def load_wandb_runs(path: str, group: Optional[str] = None, api: Any = None) -> list[RunRecord]:
    """Every run of W&B project ``path`` (``ENTITY/PROJECT``), filtered by run group when given.

    Any failure to reach the API (no key, no network, unknown project) is an :class:`EncoderlabError`
    that says how to fix it, since the CLI shows no traceback.
    """
    if path.count("/") != 1 or not all(path.split("/")):
        raise EncoderlabError(f"--wandb {path!r}: give ENTITY/PROJECT, e.g. --wandb my-team/encoderlab")
    where = f"W&B project '{path}'" + (f" group '{group}'" if group else "")
    try:
        if api is None:
            import wandb

            api = wandb.Api(timeout=30)
        runs = list(api.runs(path, filters={"group": group} if group else {}))
        records = [wandb_run_to_record(r) for r in runs]
    except EncoderlabError:
        raise
    except Exception as e:  # noqa: BLE001 - auth, network and HTTP errors all end the same way for the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise EncoderlabError(
            f"cannot read runs from {where}: {reason}; run `wandb login` (or set WANDB_API_KEY) on a machine "
            "that reaches the W&B server, and check ENTITY/PROJECT and --group"
        ) from None
    if not records:
        raise EncoderlabError(f"no runs in {where}: check ENTITY/PROJECT and the group name (--group)")
    return records
