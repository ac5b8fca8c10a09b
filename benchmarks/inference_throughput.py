"""Inference throughput and latency: the Hugging Face pipeline vs encoderlab-predict (PyTorch, ONNX, dynamic and
static int8, and the variant encoderlab-export recommends here) and the distilled student, one process.

Same model (a MiniLM-L6 run fine-tuned on Rotten Tomatoes), same inputs (the Rotten Tomatoes test split, raw
texts), same batch size (32) and thread count for every side, pre- and post-processing included. encoderlab-predict
sorts its input by length; so the pipeline runs twice: on the texts in their order (what a user gets) and on the
same texts sorted by token length (the fair baseline). The sides alternate over ``--rounds`` rounds (forward, then
backward, ...), so drift in the machine's speed hits all alike; each side is warmed up once and then timed by wall
clock over all texts per round, and the median with min-max over rounds is reported. Batch throughput and batch-1
latency (p50/p99 over the first ``--latency-samples`` texts, one at a time, pooled over the rounds) are separate
rows. The distilled student is that run's network with every other layer (3 of 6), initialised from it and trained
on its soft targets (`finetune=distill distill.student_layers=every_other`, 2 epochs on the same snippets).
Never run it beside other work.

    python benchmarks/inference_throughput.py --threads 2   # trains a run and its student in ./outputs/bench_inference
    python benchmarks/inference_throughput.py --run-dir outputs/default/DATE/TIME --student-dir STUDENT_RUN_DIR
    python benchmarks/inference_throughput.py --run-dir outputs/default/DATE/TIME --no-student --store results/
    python benchmarks/inference_throughput.py --train-samples 32 --limit 16 -- task.max_eval_samples=32  # smoke test

Overrides after ``--`` go to both runs it trains (``task.max_eval_samples=32``: score every variant on 32 texts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS_NAME = "inference_throughput"  # results/inference_throughput/runs.jsonl: batch throughput
LATENCY_NAME = "inference_latency"  # results/inference_latency/runs.jsonl: batch-1 latency
PIPELINE = "HF pipeline (fp32, input order)"
PIPELINE_SORTED = "HF pipeline (fp32, length-sorted)"
BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-int8-static")
STUDENT_BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-int8-static")


def _train(run_dir: Path, samples: int, overrides: list[str], what: str) -> Path:
    cli = Path(sys.executable).parent / "encoderlab-train"
    cmd = [
        str(cli),
        *overrides,
        f"task.max_train_samples={samples}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    print(f"{what}:", " ".join(cmd[1:]), flush=True)
    if subprocess.run(cmd).returncode != 0:  # encoderlab-train has said why (a bad override, ...)
        sys.exit(f"benchmark: {what} failed (its message is above); check the overrides given after --")
    return run_dir


def train_run(run_dir: Path, samples: int, extra: list[str]) -> Path:
    """A short MiniLM-L6 fine-tuning run on Rotten Tomatoes (the default job, fewer snippets)."""
    return _train(run_dir, samples, extra, "training")


def train_student(teacher: Path, run_dir: Path, samples: int, extra: list[str]) -> Path:
    """The teacher's network with every other layer, distilled from the teacher on the same snippets."""
    overrides = ["finetune=distill", f"distill.teacher={teacher}", "distill.student_layers=every_other"]
    return _train(run_dir, samples, [*overrides, "trainer.max_epochs=2", *extra], "training the student")


def export(folder: Path, limit: int | None) -> str:
    """Every ONNX variant of ``folder``, scored and timed by encoderlab-export on this machine (unless already
    there); the variant it recommends."""
    from encoderlab.deploy.export import export_run
    from encoderlab.deploy.served import read_recommendation

    onnx = folder / "onnx"
    if not (onnx / "model.int8-static.onnx").is_file() or not read_recommendation(onnx):
        print(f"exporting {folder} (fp32, dynamic and static int8 ONNX; each variant scored and timed) ...", flush=True)
        n = limit or 512
        export_run(folder, quantize="int8", latency_samples=min(100, n), throughput_samples=min(512, n))
    return read_recommendation(onnx)["backend"]


def test_texts(run_dir: Path, limit: int | None) -> tuple[list[str], list[int], list[str]]:
    """The run's own test split, rebuilt from its config: raw texts, label ids, label names."""
    from omegaconf import OmegaConf

    import encoderlab.cli.hydra_setup  # noqa: F401
    from encoderlab.config.validate import validate
    from encoderlab.data.sources import load_raw
    from encoderlab.kinds.sequence.data import prepare_labels

    run = validate(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    if run.task.kind != "sequence_classification" or len(run.task.text_fields) != 1:
        sys.exit("benchmark: needs a single-text classification run (task=rotten_tomatoes)")
    labeled, names = prepare_labels(load_raw(run.task), run.task)
    test = labeled["test"]
    n = len(test) if limit is None else min(limit, len(test))
    return [str(t) for t in test[run.task.text_fields[0]][:n]], list(test["labels"][:n]), names


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def record(name: str, side: str, metrics: dict, args, round_: int | None, shared: dict) -> dict:
    """One stored line (results/<name>/runs.jsonl): a side on this machine, per round (its seed, so that the sides
    of one round pair) for batch throughput, pooled over the rounds for batch-1 latency. ``shared``: what every
    line holds alike (command, machine, commit, the variants auto picked), read once."""
    from encoderlab.report.store import benchmark_record

    machine = shared["machine"]
    return benchmark_record(
        name,
        {"side": side, "cpu": machine["cpu"], "threads": str(args.threads)},
        round_,
        metrics,
        command=shared["command"],
        precision="32-true",
        machine=machine,
        commit=shared["commit"],
        setup={"batch_size": args.batch_size, "rounds": args.rounds, "limit": args.limit, **shared["chosen"]},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="a finished Rotten Tomatoes run (default: train a short one)")
    ap.add_argument("--train-samples", type=int, default=4000, help="training snippets when training a run")
    ap.add_argument("--student-dir", type=Path, help="a finished distilled student of --run-dir (default: train one)")
    ap.add_argument("--no-student", action="store_true", help="leave out the distilled student")
    ap.add_argument("--limit", type=int, help="time only the first N test texts (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per side, sides alternating (at least 1)")
    ap.add_argument("--latency-samples", type=int, default=200, help="texts timed one at a time per side and round")
    ap.add_argument(
        "--store", metavar="DIR", help="store the rows in DIR/inference_throughput/ and DIR/inference_latency/"
    )
    ap.add_argument("overrides", nargs="*", help="after --: encoderlab-train overrides for the runs it trains")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, not {args.rounds}")
    torch.set_num_threads(args.threads)

    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from encoderlab.deploy.predict import predict_rows
    from encoderlab.deploy.served import load

    hf_logging.set_verbosity_error()
    run_dir = args.run_dir or train_run(
        Path.cwd() / "outputs" / "bench_inference" / time.strftime("%Y%m%d-%H%M%S"), args.train_samples, args.overrides
    )
    student_dir = None
    if not args.no_student:
        student_dir = args.student_dir or train_student(
            run_dir, run_dir.parent / f"{run_dir.name}-student", args.train_samples, args.overrides
        )
    recommended = export(run_dir, args.limit)
    student_recommended = export(student_dir, args.limit) if student_dir is not None else None
    texts, gold, names = test_texts(run_dir, args.limit)

    pipe = pipeline("text-classification", model=str(run_dir / "hf"), device="cpu")
    lengths = [len(ids) for ids in pipe.tokenizer(texts, truncation=True)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    sorted_texts = [texts[i] for i in order]

    def hf(xs: list[str]) -> list[str]:
        return [r["label"] for r in pipe(xs, batch_size=args.batch_size, truncation=True)]

    def hf_sorted(xs: list[str]) -> list[str]:  # fed the texts sorted by token length (sorted once, untimed)
        if xs is not texts:  # the warm-up
            return hf(xs)
        out = [""] * len(xs)
        for i, lab in zip(order, hf(sorted_texts), strict=True):
            out[i] = lab  # back in input order, for the accuracy
        return out

    sides = {PIPELINE: hf, PIPELINE_SORTED: hf_sorted}
    single = {PIPELINE: lambda x: pipe(x, truncation=True)[0]["label"]}
    served = [(f"encoderlab-predict {b}", run_dir, b) for b in BACKENDS]
    served.append(("encoderlab-predict auto", run_dir, "auto"))  # the variant is in the stored setup
    if student_dir is not None:
        served += [(f"distilled student {b}", student_dir, b) for b in STUDENT_BACKENDS]
        served.append(("distilled student auto", student_dir, "auto"))
    for name, folder, backend in served:
        model = load(folder, backend, threads=args.threads)
        sides[name] = lambda xs, s=model: [
            r["label"] for r in predict_rows(s, [{"text": x} for x in xs], batch_size=args.batch_size, progress=False)
        ]
        single[name] = lambda x, s=model: predict_rows(s, [{"text": x}], batch_size=1, progress=False)[0]["label"]

    rates: dict[str, list[float]] = {name: [] for name in sides}
    latencies: dict[str, list[float]] = {name: [] for name in single}
    accuracy: dict[str, float] = {}
    firsts = texts[: args.latency_samples]
    for fn in sides.values():  # warm-up, untimed: first-call allocations, lazy initialisation
        fn(texts[:8])
    for r in range(args.rounds):
        names_now = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in names_now:
            print(f"round {r + 1}/{args.rounds}: {name} on {len(texts)} texts ...", flush=True)
            t0 = time.perf_counter()
            labels = sides[name](texts)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
            print(f"  {name}: {rates[name][-1]:.1f} samples/s", flush=True)
            if name not in accuracy:
                accuracy[name] = sum(names.index(lab) == g for lab, g in zip(labels, gold, strict=True)) / len(gold)
            if name in single:
                for x in firsts:
                    t0 = time.perf_counter()
                    single[name](x)
                    latencies[name].append(1000 * (time.perf_counter() - t0))

    base = {k: statistics.median(rates[k]) for k in (PIPELINE, PIPELINE_SORTED)}
    base_acc = accuracy[PIPELINE]
    print(
        f"\n{len(texts)} Rotten Tomatoes test texts, batch {args.batch_size}, {args.threads} threads, "
        f"{args.rounds} rounds (sides alternating); run {run_dir}"
    )
    if student_dir is not None:
        print(f"distilled student: {student_dir}")
    print(f"auto: the variant encoderlab-export recommends here: run {recommended}, student {student_recommended}")
    print("\nbatch throughput (samples/s: median over rounds, min-max)")
    print(
        f"| {'side':<44} | {'samples/s':>9} | {'min-max':>13} | {'vs pipeline':>11} | {'vs sorted pipeline':>18} "
        f"| {'accuracy':>8} | {'Δ acc (points)':>14} |"
    )
    print(f"|{'-' * 46}|{'-' * 10}:|{'-' * 14}:|{'-' * 12}:|{'-' * 19}:|{'-' * 9}:|{'-' * 15}:|")
    from encoderlab.provenance import git_commit, machine_info
    from encoderlab.report.store import benchmark_command

    stored = []
    shared = {
        "command": benchmark_command("inference_throughput.py", sys.argv[1:]),
        "machine": machine_info(),
        "commit": git_commit(Path(__file__).resolve().parent),
        "chosen": {"recommended": recommended, "student_recommended": student_recommended},
    }
    for name in sides:
        med, lo, hi = spread(rates[name])
        acc = accuracy[name]
        print(
            f"| {name:<44} | {med:9.1f} | {f'{lo:.1f}-{hi:.1f}':>13} | {med / base[PIPELINE]:10.2f}x "
            f"| {med / base[PIPELINE_SORTED]:17.2f}x | {acc:8.4f} | {100 * (acc - base_acc):+14.2f} |"
        )
        for r, rate in enumerate(rates[name]):  # one line per round: the sides of a round pair in the claims
            metrics = {"test/samples_per_second": rate, "test/accuracy": acc}
            metrics["test/speed_vs_pipeline"] = rate / rates[PIPELINE][r]
            metrics["test/speed_vs_pipeline_sorted"] = rate / rates[PIPELINE_SORTED][r]
            stored.append(record(RESULTS_NAME, name, metrics, args, r + 1, shared))
    print(f"\nbatch-1 latency (ms: the first {len(firsts)} texts one at a time, {args.rounds} rounds pooled)")
    print(f"| {'side':<44} | {'p50 ms':>8} | {'p99 ms':>8} |")
    print(f"|{'-' * 46}|{'-' * 9}:|{'-' * 9}:|")
    for name, values in latencies.items():
        p50, p99 = float(np.percentile(values, 50)), float(np.percentile(values, 99))
        print(f"| {name:<44} | {p50:8.2f} | {p99:8.2f} |")
        latency = {"test/latency_ms_p50": p50, "test/latency_ms_p99": p99}
        stored.append(record(LATENCY_NAME, name, latency, args, None, shared))
    if args.store:
        from encoderlab.report.store import store_records

        for path, (added, replaced) in store_records(stored, args.store).items():
            print(f"stored: {path} ({added} added, {replaced} replaced)", flush=True)


if __name__ == "__main__":
    main()
