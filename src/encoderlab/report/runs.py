"""Find run dirs and load them into one DataFrame (one row per run).

A run dir is what ``encoderlab-train`` leaves behind: ``summary.json``, ``.hydra/config.yaml``,
``.hydra/overrides.yaml`` and Lightning's ``metrics.csv`` (in the run dir or in ``csv/``). Users point the
report at any mix of run dirs, Hydra multirun dirs, folders above them and globs, so discovery walks down
to every folder that holds a ``summary.json`` and stops there (a run dir's own sub-folders never hold other runs).
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml
from omegaconf import OmegaConf

from encoderlab.config.task import kind_has_task_models
from encoderlab.errors import EncoderlabError

RUN_DIR_HELP = (
    "a run dir is a folder written by encoderlab-train that holds summary.json "
    "(with .hydra/config.yaml and metrics.csv beside it); pass run dirs, a multirun dir "
    "(multirun/<date>/<time>), a folder above them, or a glob"
)

# summary.json fields copied to a column of the same name
SUMMARY_FIELDS = (
    "status",
    "error",
    "config_hash",
    "experiment",
    "task",
    "kind",
    "model",
    "strategy",
    "seed",
    "primary_metric",
    "greater_is_better",
    "best_epoch",
    "train_seconds",
    "train_samples_per_second",
    "train_tokens_per_second",
    "predict_samples_per_second",  # test split forward passes per second (eval_batch_size)
    "epochs",
    "steps",
    "trainable_params",
    "total_params",
    "peak_memory_mb",
    "resumed_from",  # the checkpoint a killed or failed run was continued from (null: ran in one go)
    "attempts",
)
CFG = "cfg."  # column prefix of the flattened resolved config
OVR = "override."  # column prefix of the parsed command-line overrides
SPLITS = ("test", "val")
FINISHED = "finished"


@dataclass
class RunRecord:
    """One run as read from disk or from W&B, before it becomes a DataFrame row."""

    run_dir: str  # folder, or the W&B run path for runs read from the API
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)  # nested, resolved
    overrides: list[str] = field(default_factory=list)
    metrics_csv: Optional[str] = None  # Lightning CSVLogger file, for learning curves


def _natural_key(path: Path) -> list[Any]:
    """Sort job folders 0, 1, 2, ..., 10 as numbers, not as text."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _expand(path: str | os.PathLike[str]) -> list[Path]:
    text = os.path.expanduser(str(path))
    if not os.path.exists(text) and any(c in text for c in "*?["):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise EncoderlabError(f"no runs found under '{path}': the glob matches nothing; {RUN_DIR_HELP}")
        return [Path(m) for m in matches]
    if not os.path.exists(text):
        raise EncoderlabError(f"no runs found under '{path}': the path does not exist; {RUN_DIR_HELP}")
    return [Path(text)]


def _walk_runs(root: Path) -> list[Path]:
    if root.is_file():
        return [root.parent] if root.name == "summary.json" else []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "summary.json" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a run dir's sub-folders (hf/, csv/, checkpoints/) hold no other runs
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "wandb"]
    return found


def discover_run_dirs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Every run dir under ``paths`` (run dirs, multirun dirs, parents, globs), without duplicates."""
    seen: dict[Path, None] = {}
    for path in paths:
        runs: list[Path] = []
        for p in _expand(path):
            runs.extend(_walk_runs(p))
        if not runs:
            raise EncoderlabError(f"no runs found under '{path}': no summary.json in it or below it; {RUN_DIR_HELP}")
        for r in sorted(runs, key=_natural_key):
            seen.setdefault(r.resolve(), None)
    return list(seen)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise EncoderlabError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None


def _find_metrics_csv(run_dir: Path) -> Optional[Path]:
    for direct in (run_dir / "csv" / "metrics.csv", run_dir / "metrics.csv"):
        if direct.is_file():
            return direct
    # CSVLogger with a version folder: csv/version_N/metrics.csv, newest wins
    versions = sorted((run_dir / "csv").glob("**/metrics.csv"), key=_natural_key)
    return versions[-1] if versions else None


def load_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read one run dir; a broken summary.json or config.yaml is an error naming the file."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EncoderlabError(f"{summary_path} line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(summary, dict):
        raise EncoderlabError(f"{summary_path}: expected a JSON object with 'status', 'val', 'test', ...")

    config: dict[str, Any] = {}
    config_path = run_dir / ".hydra" / "config.yaml"
    if config_path.is_file():
        # OmegaConf resolves ${...} interpolations the same way the training run saw them
        try:
            loaded = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
        except Exception as e:  # noqa: BLE001 - any resolver failure: fall back to the raw YAML
            loaded = _read_yaml(config_path)
            if loaded is None:
                raise EncoderlabError(f"{config_path}: cannot read the config ({e})") from None
        config = loaded if isinstance(loaded, dict) else {}

    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    overrides = _read_yaml(overrides_path) if overrides_path.is_file() else summary.get("overrides")
    csv_path = _find_metrics_csv(run_dir)
    return RunRecord(
        run_dir=str(run_dir),
        summary=summary,
        config=config,
        overrides=[str(o) for o in overrides or []],
        metrics_csv=str(csv_path) if csv_path else None,
    )


def select_task(records: Sequence[RunRecord], task: str) -> list[RunRecord]:
    """The runs of ``task`` alone, and each multitask run that trained it, reduced to that task's own metrics
    (``test/<task>/accuracy`` becomes ``test/accuracy``): single-task vs multitask, side by side."""
    out = []
    for record in records:
        s = record.summary
        if s.get("task") == task and not kind_has_task_models(s.get("kind")):
            out.append(record)
            continue
        data = s.get("data") if isinstance(s.get("data"), Mapping) else {}
        own = (data.get("tasks") or {}).get(task) if kind_has_task_models(s.get("kind")) else None
        if not isinstance(own, Mapping):
            continue
        prefix = f"{task}/"
        sizes = {k: v.get(task) for k, v in (data.get("sizes") or {}).items() if isinstance(v, Mapping)}
        summary = dict(s) | {
            "task": task,
            "primary_metric": own.get("primary_metric"),
            "greater_is_better": True,  # a multitask run refuses lower-is-better primary metrics
            "data": dict(own) | {"sizes": sizes},
        }
        for split in SPLITS:
            values = s.get(split) if isinstance(s.get(split), Mapping) else {}
            summary[split] = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        out.append(RunRecord(record.run_dir, summary, record.config, record.overrides, record.metrics_csv))
    if not out:
        tasks = sorted({str(r.summary.get("task")) for r in records})
        raise EncoderlabError(f"--task {task}: no run trained it; tasks of these runs: {', '.join(tasks)}")
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> dotted keys; lists become JSON text so every value is hashable and comparable."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, Mapping):
            out[name] = "{}"
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(list(value), default=str)
        else:
            out[name] = value
    return out


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """``["finetune=frozen", "+trainer.extra.x=1", "~foo"]`` -> ``{"finetune": "frozen", "trainer.extra.x": "1"}``."""
    out: dict[str, str] = {}
    for item in overrides:
        key, eq, value = str(item).partition("=")
        if not eq or key.startswith("~"):
            continue  # deletions change nothing a report can show
        key = key.lstrip("+").replace("/", ".")
        out[key] = value
    return out


def _metric_dict(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    out = {}
    for k, v in value.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _row(record: RunRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    s = record.summary
    row: dict[str, Any] = {"run_dir": record.run_dir}
    for name in SUMMARY_FIELDS:
        row[name] = s.get(name)
    row["status"] = str(s.get("status") or "unknown")
    row["resumed"] = bool(s.get("resumed_from"))
    data = s.get("data") if isinstance(s.get("data"), Mapping) else {}
    sizes = data.get("sizes") if isinstance(data.get("sizes"), Mapping) else {}
    row["train_size"] = sizes.get("train")  # examples the run really trained on
    for split in SPLITS:
        for metric, value in _metric_dict(s.get(split)).items():
            row[f"{split}/{metric}"] = value
    published = s.get("published") if isinstance(s.get("published"), Mapping) else {}
    for key in ("metric", "value", "tolerance", "source"):
        row[f"published_{key}"] = published.get(key)
    row["overrides"] = json.dumps(record.overrides)
    row["metrics_csv"] = record.metrics_csv
    versions = s.get("versions") if isinstance(s.get("versions"), Mapping) else {}
    for name, version in versions.items():
        row[f"versions.{name}"] = version
    objects = {f"{CFG}{k}": v for k, v in flatten(record.config).items()}
    objects.update({f"{OVR}{k}": v for k, v in parse_overrides(record.overrides).items()})
    return row, objects


def records_to_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: summary fields, ``val/<m>`` and ``test/<m>`` metrics, ``cfg.<dotted key>``, ``override.<key>``.

    Config and override columns keep their Python values (dtype object), so ``1`` and ``1.0`` and ``None``
    stay what the config said.
    """
    if not records:
        return pd.DataFrame(columns=["run_dir", *SUMMARY_FIELDS])
    rows, objects = zip(*(_row(r) for r in records), strict=True)
    frame = pd.DataFrame(list(rows))
    extra = pd.DataFrame(list(objects), dtype=object, index=frame.index)
    frame = pd.concat([frame, extra], axis=1)
    numeric = (
        "train_seconds",
        "train_samples_per_second",
        "predict_samples_per_second",
        "peak_memory_mb",
        "published_value",
        "published_tolerance",
        "train_size",
    )
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def load_runs(paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """Discover and load every run under ``paths`` into one DataFrame (see :func:`records_to_frame`)."""
    return records_to_frame([load_run(d) for d in discover_run_dirs(paths)])


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
