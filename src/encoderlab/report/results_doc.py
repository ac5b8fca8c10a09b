"""``encoderlab-report --results-doc results/ --out docs/RESULTS.md [--check] [--readme README.md]``.

Renders the results document (and the README's block between ``<!-- results:begin -->`` and
``<!-- results:end -->``) and checks that nothing hand-written contradicts it: ``--check`` writes nothing and fails
when a file differs from a fresh render, or when an experiment's ``notes:`` use a verdict word ("holds", "beats",
"met", "reversed", "not resolved") that none of its claims' computed verdicts is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from encoderlab.errors import EncoderlabError
from encoderlab.report.compare import VERDICT_TEXT
from encoderlab.report.experiments import Section, load_sections
from encoderlab.report.published import load_published
from encoderlab.report.render import claim_comparisons, finished, render_document, scale_of
from encoderlab.report.store import write_text_atomic
from encoderlab.report.tables import fmt, fmt_interval

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# a word in a note -> the computed verdict it asserts
NOTE_WORDS = {
    "holds": "holds",
    "beats": "holds",
    "met": "holds",
    "reversed": "reversed",
    "not resolved": "not_resolved",
}


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)  # one line each; any problem -> exit 1
    written: list[Path] = field(default_factory=list)


def computed_verdicts(section: Section) -> set[str]:
    return {c.verdict for claim in section.claims for c in claim_comparisons(section, claim)[0]}


def note_contradictions(section: Section) -> list[str]:
    """A note may only use a verdict word equal to one of its claims' computed verdicts."""
    verdicts = computed_verdicts(section)
    problems = []
    for word, verdict in NOTE_WORDS.items():
        pattern = r"\b" + word.replace(" ", r"[\s_]+") + r"\b"
        if re.search(pattern, section.notes, re.IGNORECASE) and verdict not in verdicts:
            computed = ", ".join(VERDICT_TEXT[v] for v in sorted(verdicts)) or "none (no stored result)"
            problems.append(
                f"{section.source}: notes say '{word}' but the computed verdicts are: {computed}; "
                "edit the notes (verdicts are rendered, never written)"
            )
    return problems


def readme_block(sections: list[Section]) -> str:
    """One line per claim with a stored result: experiment, claim, B − A, interval, verdict, n."""
    lines = []
    for s in sections:
        for claim in s.claims:
            comparisons, _ = claim_comparisons(s, claim)
            scale = scale_of(claim.metric, finished(s.records))
            unit = " points" if scale.unit == "%" else ""
            for c in comparisons:
                where = f" ({c.label})" if c.combination else ""
                interval = fmt_interval(*c.ci95, scale, signed=True)
                lines.append(
                    f"- `{s.name}` {claim.id}{where}: B \u2212 A {fmt(c.mean_diff, scale, signed=True)}{unit}, "
                    f"95% interval {interval}, **{VERDICT_TEXT[c.verdict]}** (n={c.n}"
                    + ("" if c.paired else ", Welch")
                    + ")"
                )
    return "\n".join(lines)  # empty while nothing is stored: the markers stay as they are


def replace_block(text: str, block: str, where: str) -> str:
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise EncoderlabError(f"--readme {where}: no '{BEGIN}' ... '{END}' markers (in that order) to render between")
    return text[: begin + len(BEGIN)] + "\n" + (block + "\n" if block else "") + text[end:]


def _read(path: Path, flag: str) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except OSError as e:
        raise EncoderlabError(f"{flag} {path}: cannot read it ({e.strerror})") from None


def results_doc(
    results_dir: str | Path,
    out: str | Path,
    *,
    check: bool = False,
    readme: Optional[str | Path] = None,
    experiments: Optional[str | Path] = None,
) -> Outcome:
    """Render (or, with ``check``, compare) the results document and the README block."""
    sections = load_sections(results_dir, experiments)
    document = render_document(sections, load_published())
    outcome = Outcome()
    for s in sections:
        outcome.problems += note_contradictions(s)
    targets: list[tuple[Path, str, str]] = [(Path(out), document, "--out")]
    if readme is not None:
        path = Path(readme)
        current = _read(path, "--readme")
        if current is None:
            raise EncoderlabError(f"--readme {path}: no such file")
        targets.append((path, replace_block(current, readme_block(sections), str(path)), "--readme"))
    for path, text, flag in targets:
        if check:
            current = _read(path, flag)
            if current != text:
                state = "is missing" if current is None else "differs from a fresh render"
                outcome.problems.append(
                    f"{path} {state}: re-render with encoderlab-report --results-doc {results_dir} --out {out}"
                    + (f" --readme {readme}" if readme is not None else "")
                )
        else:
            try:
                write_text_atomic(path, text)
            except OSError as e:
                raise EncoderlabError(f"{flag} {path}: cannot write it ({e.strerror})") from None
            outcome.written.append(path)
    return outcome
