"""``encoderlab-predict RUN_OR_MODEL_DIR --input FILE --output FILE``: predictions from a trained run.

Serves every fine-tuned kind (classification, regression, NER, QA) from a run dir, its ``hf/`` folder, a
feature-based export or an ONNX export. Bad input ends in one line naming what to change (exit code 2), and the
output file appears only when it is complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from encoderlab.errors import EncoderlabError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="encoderlab-predict",
        description="Predict with a trained run: labels and probabilities, values, entities or answers per row.",
    )
    p.add_argument("model", help="a run directory, its hf/ folder, a feature-based export or an ONNX folder")
    p.add_argument("--input", "-i", required=True, help="csv, tsv, jsonl, json or txt (one text per line); - = stdin")
    p.add_argument("--output", "-o", default="-", help="output .jsonl or .csv (default: JSON lines on stdout)")
    p.add_argument(
        "--format",
        dest="input_format",
        choices=["csv", "tsv", "jsonl", "json", "txt"],
        help="input format (default: from the extension; stdin: jsonl if it starts with '{', else txt)",
    )
    p.add_argument("--output-format", choices=["jsonl", "csv"], help="default: from the output's extension")
    p.add_argument("--encoding", default="utf-8", help="the input's text encoding (default utf-8)")
    p.add_argument("--text-column", help="the text to classify or tag (default: the run's field, else 'text')")
    p.add_argument("--text-pair-column", help="the second text of a sentence-pair model")
    p.add_argument("--question-column", help="QA: the question (default 'question')")
    p.add_argument("--context-column", help="QA: the passage to answer from (default 'context')")
    p.add_argument(
        "--backend",
        default="auto",
        metavar="{auto,torch,torch-int8,onnx,onnx-int8,onnx-int8-static}",
        help="auto: the variant encoderlab-export recommended on its machine (RUN/onnx/recommendation.json), else "
        "ONNX for an ONNX folder and PyTorch otherwise; given a run dir, the onnx backends use RUN/onnx/",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, help="truncate to this many tokens (default: the run's max_seq_length)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown from 1,000 rows)")
    return p


def _fail(msg: str) -> None:
    print(f"encoderlab-predict: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.batch_size < 1:
        _fail(f"--batch-size must be at least 1, not {args.batch_size}")
    logging.basicConfig(level=logging.WARNING)
    from encoderlab.deploy import predict as P
    from encoderlab.deploy.served import load

    try:
        out_fmt = P.output_format(args.output, args.output_format)
        rows = P.read_input(args.input, args.input_format, args.encoding)
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        served = load(args.model, args.backend, args.device)
        if args.max_length:
            served.max_length = args.max_length
            if served.qa_settings:
                served.qa_settings["max_seq_length"] = args.max_length
        cols = P.Columns(args.text_column, args.text_pair_column, args.question_column, args.context_column)
        t0 = time.perf_counter()
        results = P.predict_rows(served, rows, cols, args.batch_size, progress=not args.no_progress)
        seconds = time.perf_counter() - t0
        P.write_output(args.output, P.render(results, out_fmt))
    except EncoderlabError as e:
        _fail(str(e))
    if args.output != "-":
        print(
            f"encoderlab-predict: {len(results)} rows ({served.kind}, {served.backend_name}) in {seconds:.1f}s "
            f"-> {args.output}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
