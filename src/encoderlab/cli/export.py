"""``encoderlab-export RUN_DIR --format onnx [--quantize int8|dynamic|static] [--tolerance POINTS]``, and
``encoderlab-export RUN_DIR --push-to-hub REPO``.

ONNX export of a run's model (fp32, dynamic int8, calibrated static int8), each variant scored on the run's test
split and timed on this machine, and the fastest within the accuracy tolerance recommended for
``encoderlab-predict --backend auto``; ``--push-to-hub`` uploads ``hf/`` with its model card. Bad input ends in one
line (exit code 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from encoderlab.errors import EncoderlabError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="encoderlab-export", description="Export a trained run for deployment.")
    p.add_argument("run_dir", help="a finished run directory (outputs/.../<time>)")
    p.add_argument("--format", choices=["onnx"], help="onnx: RUN/onnx/model.onnx (+ export.json with the comparison)")
    p.add_argument(
        "--quantize",
        metavar="{int8,dynamic,static}",
        help="int8: every int8 variant; dynamic: model.int8.onnx (and PyTorch dynamic int8); static: "
        "model.int8-static.onnx, calibrated on the run's training texts",
    )
    p.add_argument(
        "--tolerance",
        default="1",
        metavar="POINTS",
        help="the recommendation: the fastest variant whose test metric is at most this many points (x 100) below "
        "fp32's (default 1)",
    )
    p.add_argument(
        "--calibration-samples", default="300", metavar="N", help="static int8: training rows to calibrate on"
    )
    p.add_argument("--no-eval", action="store_true", help="export only: no scoring, timing or recommendation")
    p.add_argument("--latency-samples", type=int, default=100, help="test examples timed one at a time")
    p.add_argument("--throughput-samples", type=int, default=512, help="test examples timed in batches of 32")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload RUN/hf (with its model card) to this hub repo id")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create a private repo")
    return p


def _fail(msg: str) -> None:
    print(f"encoderlab-export: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.format and not args.push_to_hub:
        _fail("nothing to do: pass --format onnx and/or --push-to-hub REPO")
    if args.quantize and not args.format:
        _fail("--quantize needs --format onnx")
    from encoderlab.deploy.export import QUANTIZE

    if args.quantize is not None and args.quantize not in QUANTIZE:
        _fail(f"unknown --quantize {args.quantize!r}; allowed: {', '.join(QUANTIZE)}")
    if not args.calibration_samples.isdigit() or int(args.calibration_samples) < 1:
        _fail(f"--calibration-samples must be a whole number >= 1, not {args.calibration_samples!r}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        if args.format == "onnx":
            from encoderlab.deploy.export import export_run, table
            from encoderlab.deploy.recommend import parse_tolerance

            report = export_run(
                args.run_dir,
                args.quantize,
                not args.no_eval,
                args.latency_samples,
                args.throughput_samples,
                tolerance=parse_tolerance(args.tolerance),
                calibration_samples=int(args.calibration_samples),
            )
            print(table(report), flush=True)
            print(f"encoderlab-export: wrote {report['onnx_dir']} and {report['run_dir']}/export.json", flush=True)
        if args.push_to_hub:
            from encoderlab.deploy.card import push_to_hub

            url = push_to_hub(args.run_dir, args.push_to_hub, private=args.private)
            print(f"encoderlab-export: pushed to {url}", flush=True)
    except EncoderlabError as e:
        _fail(str(e))


if __name__ == "__main__":
    main()
