"""Stored results: one JSON line per run in ``results/<experiment>/runs.jsonl``, committed with the code.

    encoderlab-report multirun/demo --store results/

A run's line is keyed by ``run_id`` (``<experiment>/<sha1 of its overrides, seed and fold>``): storing the same run
again replaces its line, and the file is sorted by ``run_id`` and written atomically, so the same runs always give
the same bytes. Benchmarks store theirs in the same shape (:func:`benchmark_record`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Optional

import yaml

from encoderlab.errors import EncoderlabError
from encoderlab.provenance import git_commit, machine_info
from encoderlab.report.compare import REPEAT_KEYS
from encoderlab.report.keys import is_noise
from encoderlab.report.runs import FINISHED, SPLITS, RunRecord, parse_overrides

RUNS_FILE = "runs.jsonl"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def meaningful(overrides: Mapping[str, str]) -> dict[str, str]:
    """The overrides that say what a run is (progress bars, paths and other noise keys left out; seeds kept)."""
    return {k: v for k, v in overrides.items() if not is_noise(k) or k in REPEAT_KEYS}


def run_id(experiment: str, overrides: Mapping[str, Any], seed: Any, fold: Any) -> str:
    text = json.dumps({"overrides": dict(sorted(overrides.items())), "seed": seed, "fold": fold}, default=str)
    return f"{experiment}/{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def _sweep_command(run_dir: Path, job_overrides: Sequence[str] = ()) -> Optional[str]:
    """The command that launched a sweep, from Hydra's ``multirun.yaml`` beside the job folders, if it launched
    this job: several sweeps into one folder leave the last one's file, and a job whose overrides it does not
    cover (another value of a key it sets) came from another command."""
    for parent in list(Path(run_dir).parents)[:2]:
        path = parent / "multirun.yaml"
        if path.is_file():
            try:
                task = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("overrides", {}).get("task")
            except (yaml.YAMLError, AttributeError):
                return None
            if isinstance(task, list) and task and _launched(task, job_overrides):
                return "encoderlab-train -m " + " ".join(str(t) for t in task)
            return None
    return None


def _launched(sweep: Sequence[str], job_overrides: Sequence[str]) -> bool:
    """Whether a sweep of these command-line overrides has a job with these overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    job = dict(str(o).split("=", 1) for o in job_overrides if "=" in str(o))
    try:
        parsed = OverridesParser.create().parse_overrides([str(t) for t in sweep])
    except Exception:  # noqa: BLE001 - a command Hydra would not parse today: no claim either way
        return True
    for o in parsed:
        key = o.get_key_element()
        if key not in job:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        if job[key] not in values:
            return False
    return True


def _metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for split in SPLITS:
        values = summary.get(split) if isinstance(summary.get(split), Mapping) else {}
        for name, value in sorted(values.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{split}/{name}"] = float(value)
    return out


def _date(summary: Mapping[str, Any]) -> str:
    for key in ("finished_at", "started_at", "date"):
        value = summary.get(key)
        if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value):
            return value[:10]
    return date.today().isoformat()


def run_record(record: RunRecord, commit: Optional[str] = None) -> dict[str, Any]:
    """A finished run dir as its stored line (see the module docstring and docs/RESULTS.md)."""
    s, cfg = record.summary, record.config
    overrides = meaningful(parse_overrides(record.overrides))
    experiment = str(s.get("experiment") or cfg.get("experiment_name") or "default")
    cv = cfg.get("cv") if isinstance(cfg.get("cv"), Mapping) else {}
    fold = cv.get("fold") if cv.get("folds") is not None else None
    seed = s.get("seed", cfg.get("seed"))
    machine = s.get("machine") if isinstance(s.get("machine"), Mapping) else machine_info()
    metrics = _metrics(s)
    primary = s.get("primary_metric")
    column = next((f"{sp}/{primary}" for sp in SPLITS if f"{sp}/{primary}" in metrics), None)
    return {
        "run_id": run_id(experiment, overrides, seed, fold),
        "experiment": experiment,
        "overrides": overrides,
        "seed": seed,
        "fold": fold,
        "status": str(s.get("status") or "unknown"),
        "metrics": metrics,
        "primary_metric": column,
        "steps": s.get("steps"),
        "train_seconds": s.get("train_seconds"),
        "date": _date(s),
        "commit": s.get("commit") or commit,
        "precision": s.get("precision") or cfg.get("precision"),
        "machine": dict(machine),
        "command": _sweep_command(Path(record.run_dir), record.overrides)
        or "encoderlab-train " + " ".join(record.overrides),
    }


def benchmark_command(script: str, argv: Sequence[str]) -> str:
    """The command a benchmark stores: ``python benchmarks/<script> ARGS``, each absolute path (alone or after
    ``--flag=``) cut to its last name, so a stored line names no folder of the machine that measured it."""

    def shown(arg: str) -> str:
        flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        return f"{flag}{eq}{Path(value).name}" if os.path.isabs(value) else arg

    return " ".join([f"python benchmarks/{script}", *map(shown, argv)])


def benchmark_record(
    name: str,
    overrides: Mapping[str, str],
    seed: Any,
    metrics: Mapping[str, float],
    *,
    command: str,
    train_seconds: Optional[float] = None,
    steps: Optional[int] = None,
    day: Optional[str] = None,
    precision: Optional[str] = None,
    machine: Optional[Mapping[str, Any]] = None,
    commit: Optional[str] = None,
    **extra: Any,
) -> dict[str, Any]:
    """One benchmark run in the stored shape (``results/<name>/runs.jsonl``); ``extra`` keys are kept as given."""
    overrides = {str(k): str(v) for k, v in overrides.items()}
    return {
        "run_id": run_id(name, overrides, seed, None),
        "experiment": name,
        "overrides": overrides,
        "seed": seed,
        "fold": None,
        "status": FINISHED,
        "metrics": {k: float(v) for k, v in sorted(metrics.items())},
        "primary_metric": next(iter(sorted(metrics)), None),
        "steps": steps,
        "train_seconds": train_seconds,
        "date": day or date.today().isoformat(),
        "commit": commit,
        "precision": precision,
        "machine": dict(machine) if machine is not None else machine_info(),
        "command": command,
        **extra,
    }


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of one ``runs.jsonl``; a broken line is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise EncoderlabError(f"{path} line {i}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict) or "run_id" not in rec or not isinstance(rec.get("overrides"), dict):
            raise EncoderlabError(f"{path} line {i}: a stored run needs 'run_id', 'overrides' and 'metrics'")
        out.append(rec)
    return out


def format_records(records: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sorted(records, key=lambda r: r["run_id"]))


def store_records(records: Sequence[Mapping[str, Any]], results_dir: str | Path) -> dict[Path, tuple[int, int]]:
    """Add ``records`` to ``results_dir/<experiment>/runs.jsonl`` (a stored run with the same run_id is replaced).
    Returns, per file written, (runs added, runs replaced)."""
    by_experiment: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_experiment.setdefault(str(r["experiment"]), []).append(r)
    written = {}
    for experiment, new in sorted(by_experiment.items()):
        path = Path(results_dir) / experiment / RUNS_FILE
        stored = {r["run_id"]: r for r in read_records(path)}
        replaced = sum(1 for r in {r["run_id"]: r for r in new} if r in stored)
        stored.update({r["run_id"]: dict(r) for r in new})
        try:
            write_text_atomic(path, format_records(list(stored.values())))
        except OSError as e:
            raise EncoderlabError(f"--store {results_dir}: cannot write {path} ({e.strerror})") from None
        written[path] = (len({r["run_id"] for r in new}) - replaced, replaced)
    return written


def store_runs(
    records: Sequence[RunRecord], results_dir: str | Path, commit: Optional[str] = None
) -> tuple[dict[Path, tuple[int, int]], int]:
    """Store the finished runs among ``records``; returns the files written and how many runs were skipped. A run's
    commit is the one its summary.json records, else ``commit``, else this checkout's."""
    finished = [r for r in records if r.summary.get("status") == FINISHED]
    commit = commit or git_commit()
    return store_records([run_record(r, commit) for r in finished], results_dir), len(records) - len(finished)
