"""The documents a user reads stay short, linked and honest.

README.md stays a five-minute read; every relative link of README.md and docs/*.md points to a file; every
published number lives once, in src/encoderlab/report/published.yaml, and the experiment files refer to it by id
instead of typing it; no experiment header states a verdict ("holds", "beats", "met") that only the report can
compute from the runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import encoderlab.report

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.yaml"))
PUBLISHED = Path(encoderlab.report.__file__).parent / "published.yaml"
REQUIRED_KEYS = {"paper", "where", "value", "metric", "direction", "says"}
OPTIONAL_KEYS = {"baseline", "note"}
LINK = re.compile(r"\]\(([^)\s]+)\)")
COMMENT = re.compile(r"(?:^|\s)#(.*)$")
VERDICT_WORDS = re.compile(r"\b(holds|beats|met)\b", re.IGNORECASE)


def published() -> dict:
    return yaml.safe_load(PUBLISHED.read_text(encoding="utf-8"))


def comments(text: str) -> list[str]:
    """The comment part of every line (a whole-line comment, or what follows ' #' on a line)."""
    return [m.group(1) for line in text.splitlines() if (m := COMMENT.search(line))]


def header(text: str) -> str:
    """The comment block at the top of an experiment file, before its first setting."""
    lines = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_readme_is_a_five_minute_read():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move details into a docs/ guide"


def test_readme_keeps_the_results_markers_in_order():
    text = README.read_text(encoding="utf-8")
    begin, end = text.find("<!-- results:begin -->"), text.find("<!-- results:end -->")
    assert 0 <= begin < end, "README.md needs <!-- results:begin --> then <!-- results:end --> (the rendered block)"
    assert "docs/RESULTS.md" in text


@pytest.mark.parametrize("doc", [README, *DOCS], ids=rel)
def test_every_relative_link_points_to_a_file(doc: Path):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, or an anchor in the same file
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{rel(doc)}: links to missing files: {broken}"


def test_every_published_entry_has_the_required_keys():
    entries = published()
    assert entries, "published.yaml is empty"
    for pid, entry in entries.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", pid), f"{pid}: ids are snake_case"
        missing = REQUIRED_KEYS - set(entry)
        unknown = set(entry) - REQUIRED_KEYS - OPTIONAL_KEYS
        assert not missing and not unknown, f"{pid}: missing {sorted(missing)}, unknown {sorted(unknown)}"
        assert entry["direction"] in ("higher", "lower"), f"{pid}.direction: {entry['direction']}"
        for key in ("value", "baseline"):
            if key in entry:
                assert isinstance(entry[key], (int, float)), f"{pid}.{key} is not a number: {entry[key]!r}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=rel)
def test_experiment_refers_to_published_numbers_by_existing_ids(path: Path):
    ids = set(published())
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for claim in cfg.get("claims") or []:
        pid = claim.get("published")
        assert pid is None or pid in ids, f"{rel(path)}: claim {claim.get('id')}: unknown published id {pid!r}"
    source = (cfg.get("published") or {}).get("source")
    if source:
        named = set(re.findall(r"[a-z][a-z0-9_]*", source)) & ids
        assert named, f"{rel(path)}: published.source names no id of published.yaml: {source!r}"


def number_pattern(value: float) -> re.Pattern | None:
    """The ways a published value can be typed (5.4 -> '5.4' or '5.40'); None for whole numbers, which are too
    common in comments (epochs, minutes) to check this simply."""
    if float(value).is_integer():
        return None
    text = f"{value:g}"
    return re.compile(rf"(?<![\d.]){re.escape(text)}0*(?!\.?\d)")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=rel)
def test_experiment_comments_type_no_published_number(path: Path):
    patterns = {pid: p for pid, e in published().items() if (p := number_pattern(e["value"])) is not None}
    typed = [
        (pid, comment.strip())
        for comment in comments(path.read_text(encoding="utf-8"))
        for pid, pattern in patterns.items()
        if pattern.search(comment)
    ]
    assert not typed, f"{rel(path)}: name the published id instead of typing its number: {typed}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=rel)
def test_experiment_header_states_no_verdict(path: Path):
    words = VERDICT_WORDS.findall(header(path.read_text(encoding="utf-8")))
    assert not words, f"{rel(path)}: the header says {words}; verdicts are computed by encoderlab-report"


def test_the_checks_catch_what_they_look_for():
    """The helpers find a typed number and a verdict word, and leave look-alikes alone."""
    assert number_pattern(5.4).search("IMDb error 5.40 vs")
    assert not number_pattern(5.4).search("ratio 15.4, 5.41, 5.4.1")
    assert number_pattern(10.0) is None
    assert header("# the bar is met\nkey: 1\n# later: holds\n") == "# the bar is met"
    assert VERDICT_WORDS.search(header("# the bar is met\nkey: 1\n"))
    assert not VERDICT_WORDS.search("# metric: accuracy; beat the meter; hold it")
    assert comments("a: 1   # 5.40 here\n# whole line\nb: 'x'") == [" 5.40 here", " whole line"]
