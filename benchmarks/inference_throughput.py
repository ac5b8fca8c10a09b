"""Inference throughput: the Hugging Face pipeline vs encoderlab-predict (PyTorch, ONNX, ONNX int8) and the
distilled student, one process.

Same model (a MiniLM-L6 run fine-tuned on Rotten Tomatoes), same inputs (the Rotten Tomatoes test split, raw
texts), same batch size (32) and thread count for every side; each side is warmed up on a few texts, then timed
by wall clock over all texts, pre- and post-processing included. The distilled student is that run's network with
every other layer (3 of 6), initialised from it and trained on its soft targets (`finetune=distill
distill.student_layers=every_other`, 2 epochs on the same snippets), served by encoderlab-predict with PyTorch and
with ONNX int8. Printed: samples/s, the ratio to the pipeline and test accuracy per side. Never run it beside other
work.

    python benchmarks/inference_throughput.py --threads 2                 # trains a short MiniLM run and its student
    python benchmarks/inference_throughput.py --run-dir outputs/default/DATE/TIME --student-dir STUDENT_RUN_DIR
    python benchmarks/inference_throughput.py --run-dir outputs/default/DATE/TIME --no-student
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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
    subprocess.run(cmd, cwd=ROOT, check=True)
    return run_dir


def train_run(run_dir: Path, samples: int) -> Path:
    """A short MiniLM-L6 fine-tuning run on Rotten Tomatoes (the default job, fewer snippets)."""
    return _train(run_dir, samples, [], "training")


def train_student(teacher: Path, run_dir: Path, samples: int) -> Path:
    """The teacher's network with every other layer, distilled from the teacher on the same snippets."""
    overrides = ["finetune=distill", f"distill.teacher={teacher}", "distill.student_layers=every_other"]
    return _train(run_dir, samples, [*overrides, "trainer.max_epochs=2"], "training the student")


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


def timed(fn, texts: list[str]) -> tuple[float, list[str]]:
    fn(texts[:8])  # warm-up
    t0 = time.perf_counter()
    labels = fn(texts)
    return len(texts) / (time.perf_counter() - t0), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="a finished Rotten Tomatoes run (default: train a short one)")
    ap.add_argument("--train-samples", type=int, default=4000, help="training snippets when training a run")
    ap.add_argument("--student-dir", type=Path, help="a finished distilled student of --run-dir (default: train one)")
    ap.add_argument("--no-student", action="store_true", help="leave out the distilled student")
    ap.add_argument("--limit", type=int, help="time only the first N test texts (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from encoderlab.deploy.export import export_run
    from encoderlab.deploy.predict import predict_rows
    from encoderlab.deploy.served import load

    hf_logging.set_verbosity_error()
    run_dir = args.run_dir or train_run(
        ROOT / "outputs" / "bench_inference" / time.strftime("%Y%m%d-%H%M%S"), args.train_samples
    )
    student_dir = None
    if not args.no_student:
        student_dir = args.student_dir or train_student(
            run_dir, run_dir.parent / f"{run_dir.name}-student", args.train_samples
        )
    for folder in (run_dir, student_dir):
        if folder is not None and not (folder / "onnx" / "model.int8.onnx").is_file():
            export_run(folder, quantize="int8", evaluate=False)
    texts, gold, names = test_texts(run_dir, args.limit)

    pipe = pipeline("text-classification", model=str(run_dir / "hf"), device="cpu")
    sides = {
        "HF pipeline (fp32)": lambda xs: [r["label"] for r in pipe(xs, batch_size=args.batch_size, truncation=True)]
    }
    served = [(f"encoderlab-predict {b}", run_dir, b) for b in ("torch", "onnx", "onnx-int8")]
    if student_dir is not None:
        served += [(f"distilled student {b}", student_dir, b) for b in ("torch", "onnx-int8")]
    for name, folder, backend in served:
        model = load(folder, backend, threads=args.threads)
        sides[name] = lambda xs, s=model: [
            r["label"] for r in predict_rows(s, [{"text": x} for x in xs], batch_size=args.batch_size, progress=False)
        ]

    results = []
    for name, fn in sides.items():
        print(f"timing {name} on {len(texts)} texts ...", flush=True)
        rate, labels = timed(fn, texts)
        acc = sum(names.index(lab) == g for lab, g in zip(labels, gold, strict=True)) / len(gold)
        results.append((name, rate, acc))
        print(f"  {name}: {rate:.1f} samples/s, accuracy {acc:.4f}", flush=True)

    base_rate, base_acc = results[0][1], results[0][2]
    print(f"\n{len(texts)} Rotten Tomatoes test texts, batch {args.batch_size}, {args.threads} threads; run {run_dir}")
    if student_dir is not None:
        print(f"distilled student: {student_dir}")
    print(f"| {'side':<30} | {'samples/s':>9} | {'vs pipeline':>11} | {'accuracy':>8} | {'Δ acc (points)':>14} |")
    print(f"|{'-' * 32}|{'-' * 10}:|{'-' * 12}:|{'-' * 9}:|{'-' * 15}:|")
    for name, rate, acc in results:
        print(
            f"| {name:<30} | {rate:9.1f} | {rate / base_rate:10.2f}x | {acc:8.4f} | {100 * (acc - base_acc):+14.2f} |"
        )


if __name__ == "__main__":
    main()
