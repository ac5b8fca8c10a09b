"""``encoderlab-report``: compare finished runs as a mean ± std table and plots.

encoderlab-report PATH... [--out DIR] [--metric NAME] [--split test|val] [--task NAME]
                  [--wandb ENTITY/PROJECT [--group NAME]] [--no-plots] [--mistakes N] [--explain]
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
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb:
        parser.error("give at least one PATH (a run dir or multirun dir), or --wandb ENTITY/PROJECT")
    if args.mistakes < 0:
        parser.error("--mistakes: give 0 (no error analysis) or more")
    if args.explain and args.mistakes == 0:
        parser.error("--explain explains the most confident mistakes: use it with --mistakes N > 0")
    if args.group and not args.wandb:
        parser.error("--group selects a W&B run group: use it with --wandb ENTITY/PROJECT")

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
