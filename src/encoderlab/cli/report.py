"""``encoderlab-report``: compare finished runs as a mean ± std table and plots, compare two arms with a computed
verdict, store runs as results, and render docs/RESULTS.md from the stored results.

encoderlab-report PATH... [--out DIR] [--metric NAME] [--split test|val] [--task NAME]
                  [--wandb ENTITY/PROJECT [--group NAME]] [--no-plots] [--mistakes N] [--explain]
encoderlab-report PATH... --compare KEY=A,B [--compare ...] [--margin X] [--direction D] [--json]
encoderlab-report PATH... --store results/
encoderlab-report --results-doc results/ [--out docs/RESULTS.md] [--check] [--readme README.md]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from encoderlab.errors import EncoderlabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encoderlab-report",
        description="Group runs by the config keys that vary, aggregate the primary metric over seeds "
        "(mean ± sample std, best first) and write report.md, report.csv, runs.csv and plots.",
        epilog="PATH may be a run dir (holds summary.json), a Hydra multirun dir, a folder above them, or a glob.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="run dirs, multirun dirs, parents of them, globs")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: PATH/report for one PATH, else ./report)")
    parser.add_argument("--metric", metavar="NAME", help="compare this metric instead of the runs' primary metric")
    parser.add_argument("--split", choices=("test", "val"), help="split of the metric (default: test, else val)")
    parser.add_argument(
        "--task",
        metavar="NAME",
        help="only the runs of this task, with each multitask run that trained it (its metrics for this task)",
    )
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read runs from this W&B project")
    parser.add_argument("--group", metavar="NAME", help="with --wandb: only runs of this W&B group")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    parser.add_argument(
        "--mistakes",
        type=int,
        default=10,
        metavar="N",
        help="error analysis (errors.md): the N most confident mistakes per group; 0: none (default: 10)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="with the mistakes, the tokens that drove each prediction (integrated gradients on the run's hf/ model)",
    )
    evidence = parser.add_argument_group("evidence: paired comparisons, stored results, the rendered results")
    evidence.add_argument(
        "--compare",
        action="append",
        metavar="KEY=A,B",
        help="compare arm B with arm A (B − A), paired by seed within each combination of the other varied keys; "
        "KEY as overridden (finetune) or the config key (finetune.strategy); repeat for several",
    )
    evidence.add_argument("--margin", type=float, default=0.0, help="with --compare: the margin B − A must clear")
    evidence.add_argument(
        "--direction",
        choices=("higher", "lower", "equal"),
        help="with --compare: B claimed higher, lower, or equal within ±margin (default: the metric's better way)",
    )
    evidence.add_argument("--json", action="store_true", help="with --compare: print the comparisons as JSON")
    evidence.add_argument(
        "--store",
        metavar="DIR",
        help="store each finished run as one line of DIR/<experiment>/runs.jsonl (the same run replaces its line)",
    )
    evidence.add_argument(
        "--commit",
        metavar="SHA",
        help="with --store: the commit of the code that made runs whose summary.json records none (default: this "
        "checkout's)",
    )
    evidence.add_argument(
        "--results-doc",
        metavar="DIR",
        help="render the results document (--out, default docs/RESULTS.md) from DIR/*/runs.jsonl and the claims",
    )
    evidence.add_argument(
        "--check", action="store_true", help="with --results-doc: write nothing, fail on a difference"
    )
    evidence.add_argument("--readme", metavar="FILE", help="with --results-doc: also render FILE's results block")
    evidence.add_argument("--experiments", metavar="DIR", help="with --results-doc: the experiment files' folder")
    return parser


def _results_doc(args: argparse.Namespace) -> int:
    from encoderlab.report.results_doc import results_doc

    try:
        outcome = results_doc(
            args.results_doc,
            args.out or "docs/RESULTS.md",
            check=args.check,
            readme=args.readme,
            experiments=args.experiments,
        )
    except EncoderlabError as e:
        print(f"encoderlab-report: error: {e}", file=sys.stderr)
        return 2
    for path in outcome.written:
        print(f"written: {path}")
    for problem in outcome.problems:
        print(f"encoderlab-report: {'check failed' if args.check else 'error'}: {problem}", file=sys.stderr)
    return 1 if outcome.problems else 0


def _store(records: list, directory: str, commit: Optional[str]) -> None:
    from encoderlab.report.store import store_runs

    written, skipped = store_runs(records, directory, commit)
    for path, (added, replaced) in written.items():
        print(f"stored: {path} ({added} added, {replaced} replaced)")
    if skipped:
        print(f"not stored: {skipped} run(s) that did not finish")


def _compare(records: list, args: argparse.Namespace) -> None:
    from encoderlab.report.aggregate import select_metric
    from encoderlab.report.compare import compare_records
    from encoderlab.report.compare_view import compare_dicts, json_text, parse_spec, resolve_key, text_lines
    from encoderlab.report.runs import records_to_frame
    from encoderlab.report.tables import metric_scale

    frame = records_to_frame(records)
    runs = frame[frame["status"] == "finished"]
    if runs.empty:
        raise EncoderlabError(f"none of the {len(frame)} runs finished: nothing to compare")
    choice = select_metric(runs, args.metric, args.split)
    direction = args.direction or ("higher" if choice.greater_is_better else "lower")
    scale = metric_scale(choice.name, runs[choice.column].astype(float))
    dicts = [d for d in compare_dicts(records) if d["status"] == "finished"]
    found, lines = [], []
    for spec in args.compare:
        key, a, b = parse_spec(spec)
        try:
            key, a, b = resolve_key(dicts, key, a, b)
            comparisons = compare_records(dicts, key, a, b, choice.column, args.margin, direction)
        except EncoderlabError as e:
            raise EncoderlabError(f"--compare {spec}: {e}") from None
        found += comparisons
        lines += text_lines(spec, comparisons, scale) if comparisons else [f"{spec}: no combination has both arms"]
    print(json_text(found) if args.json else "\n".join(lines))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb and not args.results_doc:
        parser.error("give at least one PATH (a run dir or multirun dir), or --wandb ENTITY/PROJECT")
    if args.mistakes < 0:
        parser.error("--mistakes: give 0 (no error analysis) or more")
    if args.explain and args.mistakes == 0:
        parser.error("--explain explains the most confident mistakes: use it with --mistakes N > 0")
    if args.group and not args.wandb:
        parser.error("--group selects a W&B run group: use it with --wandb ENTITY/PROJECT")
    if (args.check or args.readme or args.experiments) and not args.results_doc:
        parser.error("--check, --readme and --experiments go with --results-doc DIR")
    if (args.json or args.direction or args.margin) and not args.compare:
        parser.error("--json, --margin and --direction go with --compare KEY=A,B")
    if args.direction == "equal" and not args.margin > 0:
        parser.error("--direction equal claims equivalence within ±margin: give --margin X > 0")
    if args.margin < 0:
        parser.error("--margin: give a number >= 0 (in the metric's own units: accuracy 0.01 = 1 point)")
    if args.results_doc:
        return _results_doc(args)

    from rich.console import Console
    from rich.measure import Measurement

    from encoderlab.report import build_report, default_out_dir, records_to_frame, write_report
    from encoderlab.report.runs import discover_run_dirs, load_run, select_task
    from encoderlab.report.tables import rich_table, size_rich_table, summary_lines
    from encoderlab.report.wandb_source import load_wandb_runs

    try:
        records = [load_run(d) for d in discover_run_dirs(args.paths)]
        if args.wandb:
            records += load_wandb_runs(args.wandb, args.group)
        if args.task:
            records = select_task(records, args.task)
        if args.store:
            _store(records, args.store, args.commit)
            return 0
        if args.compare:
            _compare(records, args)
            return 0
        report = build_report(records_to_frame(records), metric=args.metric, split=args.split)
        out = Path(args.out) if args.out else default_out_dir(args.paths)
        written = write_report(report, out, plots=not args.no_plots, mistakes=args.mistakes, explain=args.explain)
    except EncoderlabError as e:
        print(f"encoderlab-report: error: {e}", file=sys.stderr)
        return 2

    table = rich_table(report)
    console = Console()
    if not console.is_terminal:  # piped or redirected: print the whole table, never squeezed to 80 columns
        wide = console.options.update(max_width=10_000)
        console = Console(width=max(80, Measurement.get(console, wide, table).maximum))
    console.print(table)
    sizes = size_rich_table(report)
    if sizes is not None:
        console.print(sizes)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    for note in written.notes:
        console.print(f"note: {note}", style="yellow", highlight=False, soft_wrap=True)
    print("written:")
    for path in written.files:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
