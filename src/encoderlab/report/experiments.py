"""What the results document renders: every experiment file with its claims and notes, and every benchmark's
stored runs (``results/<name>/`` without an experiment file, described by an optional ``claims.yaml``).

An experiment is a file of ``experiments/`` (the packaged conf's ``experiment`` group, ``paper/`` included); its
stored runs live in ``results/<experiment_name>/runs.jsonl``. A benchmark's ``results/<name>/claims.yaml`` holds
``claims:`` (the same format), ``command:`` (how to run it) and ``notes:``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from encoderlab.config.claims import Claim, check_notes, parse_claims, yaml_error
from encoderlab.errors import EncoderlabError
from encoderlab.report.store import RUNS_FILE, read_records

BENCHMARK_CLAIMS = "claims.yaml"


@dataclass
class Section:
    """One experiment (or benchmark) of the results document."""

    name: str  # experiment=NAME (paper/bert_base_sst2), or the benchmark's folder name
    results_name: str  # results/<results_name>/runs.jsonl (the experiment_name)
    source: str  # the file the claims and notes come from, relative to the repository
    commands: list[str]
    claims: list[Claim] = field(default_factory=list)
    notes: str = ""
    published_block: Optional[dict[str, Any]] = None  # the file's `published:` (metric, value, tolerance, source)
    records: list[dict[str, Any]] = field(default_factory=list)
    benchmark: bool = False
    metrics: list[str] = field(default_factory=list)  # a benchmark's `metrics:`: table columns besides the claims'


def experiments_dir() -> Path:
    from encoderlab.config.search_path import packaged_conf_dir

    return packaged_conf_dir() / "experiment"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    if not isinstance(data, dict):
        raise EncoderlabError(f"{path}: expected a mapping of config keys")
    return data


def _unescape(value: Any) -> Any:
    """A claim's value as a composed config holds it: ``\\${stages.x.dir}`` (an escaped interpolation in the file)
    is the text ``${stages.x.dir}`` that the runs' overrides carry."""
    if isinstance(value, str):
        return value.replace("\\${", "${")
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return {k: _unescape(v) for k, v in value.items()} if isinstance(value, dict) else value


def _claims(path: Path, data: dict[str, Any], published_ids: set[str]) -> tuple[list[Claim], str]:
    try:
        claims = parse_claims(_unescape(data.get("claims")), published_ids)
        check_notes(data.get("notes"))
    except EncoderlabError as e:
        raise EncoderlabError(f"{path}: {e}") from None
    return claims, " ".join(str(data.get("notes") or "").split())


def _shown(path: Path, root: Path) -> str:
    """A path as the document shows it: relative to the repository (the folder above experiments/ or results/)."""
    try:
        return str(path.resolve().relative_to(root.resolve().parent))
    except ValueError:
        return str(path)


def load_sections(
    results_dir: str | Path, experiments: Optional[str | Path] = None, published_ids: Optional[set[str]] = None
) -> list[Section]:
    """Every experiment file (name order), then every benchmark folder of ``results_dir`` (name order)."""
    from encoderlab.report.published import load_published

    results = Path(results_dir)
    if not results.is_dir():
        raise EncoderlabError(f"--results-doc {results_dir}: no such folder (stored runs: results/<experiment>/)")
    root = Path(experiments) if experiments is not None else experiments_dir()
    if not root.is_dir():
        raise EncoderlabError(f"--experiments {root}: no such folder of experiment files")
    ids = published_ids if published_ids is not None else set(load_published())
    sections = []
    files = sorted([*root.glob("*.yaml"), *root.glob("paper/*.yaml")], key=lambda p: p.relative_to(root).as_posix())
    for path in files:
        name = path.relative_to(root).with_suffix("").as_posix()
        data = _read(path)
        claims, notes = _claims(path, data, ids)
        results_name = str(data.get("experiment_name") or path.stem)
        published = data.get("published") if isinstance(data.get("published"), dict) else None
        sections.append(
            Section(
                name=name,
                results_name=results_name,
                source=f"experiments/{path.relative_to(root).as_posix()}",
                commands=[f"encoderlab-train -m experiment={name}", f"encoderlab-report multirun/{results_name}"],
                claims=claims,
                notes=notes,
                published_block=published if published and published.get("value") is not None else None,
                records=read_records(results / results_name / RUNS_FILE),
            )
        )
    known = {s.results_name for s in sections}
    for folder in sorted(p for p in results.iterdir() if p.is_dir() and p.name not in known):
        claims_file = folder / BENCHMARK_CLAIMS
        data = _read(claims_file) if claims_file.is_file() else {}
        claims, notes = _claims(claims_file, data, ids)
        command = data.get("command")
        commands = [str(c) for c in command] if isinstance(command, list) else [str(command)] if command else []
        records = read_records(folder / RUNS_FILE)
        if not commands:
            commands = sorted({str(r.get("command")) for r in records if r.get("command")})
        sections.append(
            Section(
                name=folder.name,
                results_name=folder.name,
                source=_shown(claims_file if claims_file.is_file() else folder, results),
                commands=commands,
                claims=claims,
                notes=notes,
                records=records,
                benchmark=True,
                metrics=[str(m) for m in data.get("metrics") or []],
            )
        )
    return sections
