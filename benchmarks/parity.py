"""Parity: does encoderlab fine-tune as well as the Hugging Face Trainer on the same split and recipe?

Both sides fine-tune MiniLM-L6 on the same seeded Rotten Tomatoes subset (encoderlab's own loading and
splitting, so the examples are identical) with one recipe: AdamW (lr, betas, eps, weight decay 0.01 off biases and
LayerNorm), linear warmup then linear decay, gradient norm clipped at 1, batch size, epochs, fp32. encoderlab runs
as ``encoderlab-train`` would (the runner, the same config keys) with length bucketing off, one learning rate for
head and encoder, no early stopping and no best-checkpoint selection: both test the final weights on the same
test split with the same torchmetrics accuracy. Printed: test accuracy per seed side by side, mean ± std, and the
difference of means against a tolerance (1 point).

    python benchmarks/parity.py                                  # 2,000 train snippets, 1 epoch, seeds 1,2,3
    python benchmarks/parity.py --max-train-samples 16 --max-eval-samples 16 --steps 2 --seeds 1   # smoke test
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_throughput import hf_splits, hf_trainer, minilm_path, run_config  # noqa: E402


def recipe_overrides(args, seed: int, bucketing: bool = False) -> list[str]:
    """The encoderlab side of the recipe, as command-line overrides."""
    n = "null" if args.max_train_samples is None else args.max_train_samples
    m = "null" if args.max_eval_samples is None else args.max_eval_samples
    return [
        "task=rotten_tomatoes",
        "model=minilm_l6",
        "finetune=full",
        f"task.max_train_samples={n}",
        f"task.max_eval_samples={m}",
        f"seed={seed}",
        f"batch_size={args.batch}",
        "optimizer=adamw",
        f"optimizer.lr={args.lr}",
        "optimizer.head_lr=null",  # the HF Trainer has one learning rate
        "optimizer.layer_decay=1.0",
        f"optimizer.weight_decay={args.weight_decay}",
        "scheduler=linear",
        f"scheduler.warmup_ratio={args.warmup_ratio}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.max_steps={args.steps}",
        "trainer.gradient_clip_val=1.0",
        "trainer.limit_val_batches=0",  # no validation: nothing is selected on it
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        "trainer.enable_progress_bar=false",
        "precision=32-true",
        # off: batches drawn uniformly at random, as the HF Trainer draws them; on: encoderlab's default
        f"speed.bucket_by_length={'true' if bucketing else 'false'}",
        "callbacks.checkpoint=false",
        "callbacks.early_stopping=false",
        "save_model=false",
    ]


def encoderlab_accuracy(args, seed: int, bucketing: bool = False) -> tuple[float, float]:
    """(test accuracy, train seconds) of one encoderlab run."""
    from encoderlab.runner import execute

    overrides = recipe_overrides(args, seed, bucketing)
    run = run_config(overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        summary = execute(run, Path(run_dir), overrides)
    return summary["test"]["accuracy"], summary["train_seconds"]


def hf_accuracy(args, seed: int, task) -> tuple[float, float]:
    """(test accuracy, train seconds) of the HF Trainer on encoderlab's split of the same task."""
    from transformers import AutoTokenizer

    from encoderlab.metrics.classification import classification_metrics

    tok = AutoTokenizer.from_pretrained(minilm_path())
    splits = hf_splits(tok, task)
    steps_per_epoch = math.ceil(len(splits["train"]) / args.batch)
    total = args.steps if args.steps > 0 else steps_per_epoch * args.epochs
    with tempfile.TemporaryDirectory() as out:
        trainer = hf_trainer(
            splits["train"],
            tok,
            out,
            batch=args.batch,
            lr=args.lr,
            steps=args.steps,
            epochs=args.epochs,
            warmup_steps=round(args.warmup_ratio * total),  # encoderlab's rounding of the same ratio
            weight_decay=args.weight_decay,
            seed=seed,
            device=args.device,
        )
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        pred = trainer.predict(splits["test"])
    metric = classification_metrics(["accuracy"], 2)
    metric.update(torch.as_tensor(np.argmax(pred.predictions, -1)), torch.as_tensor(pred.label_ids))
    return float(metric.compute()["accuracy"]), seconds


def _record(args, side: str, bucketing, seed: int, accuracy: float, seconds: float) -> None:
    """One JSON line per run in --jsonl FILE (appended and flushed, so a stopped sweep keeps its finished runs)."""
    if not args.jsonl:
        return
    import json

    rec = {
        "side": side,
        "bucketing": bucketing,
        "seed": seed,
        "accuracy": accuracy,
        "train_seconds": seconds,
        "max_train_samples": args.max_train_samples,
        "epochs": args.epochs,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
    }
    with open(args.jsonl, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) * 100 if len(values) > 1 else float("nan")
    return f"{statistics.mean(values) * 100:.2f} \u00b1 {std:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (each side runs every seed)")
    ap.add_argument("--max-train-samples", type=int, default=2000, help="training snippets (seeded subset)")
    ap.add_argument("--max-eval-samples", type=int, default=None, help="validation/test subset (default: all)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=-1, help="optimizer steps instead of epochs (smoke tests)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--tolerance", type=float, default=1.0, help="allowed difference of mean accuracy, in points")
    ap.add_argument("--check", action="store_true", help="exit 1 when the means differ by more than --tolerance")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument(
        "--bucketing",
        choices=["off", "on", "both"],
        default="off",
        help="encoderlab's length bucketing (speed.bucket_by_length): off draws batches as the HF Trainer does",
    )
    ap.add_argument("--jsonl", metavar="FILE", help="append one JSON line per run (side, bucketing, seed, accuracy)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]

    task = run_config(recipe_overrides(args, seeds[0])).task  # the split both sides read
    budget = f"{args.steps} steps" if args.steps > 0 else f"{args.epochs} epoch(s)"
    print(
        f"parity: MiniLM-L6 on Rotten Tomatoes, {args.max_train_samples or 'all'} training snippets, {budget}, "
        f"batch {args.batch}, lr {args.lr:g}, warmup {args.warmup_ratio:g}, weight decay {args.weight_decay:g}, "
        f"linear schedule, fp32, {args.device}; seeds {args.seeds}",
        flush=True,
    )
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.bucketing]
    ours, theirs = [], []
    print(f"{'seed':>6} {'bucketing':>9} {'encoderlab':>12} {'HF Trainer':>12} {'train s (ours / HF)':>22}", flush=True)
    for seed in seeds:
        acc_hf, s_hf = hf_accuracy(args, seed, task)
        theirs.append(acc_hf)
        _record(args, "hf_trainer", None, seed, acc_hf, s_hf)
        for bucketing in modes:
            acc_ours, s_ours = encoderlab_accuracy(args, seed, bucketing)
            ours.append(acc_ours)
            _record(args, "encoderlab", bucketing, seed, acc_ours, s_ours)
            on = "on" if bucketing else "off"
            print(
                f"{seed:>6} {on:>9} {acc_ours * 100:>12.2f} {acc_hf * 100:>12.2f} {s_ours:>11.1f} / {s_hf:<8.1f}",
                flush=True,
            )
    print(f"{'mean':>6} {_mean_std(ours):>12} {_mean_std(theirs):>12}   (test accuracy %, mean \u00b1 std)")
    diff = (statistics.mean(ours) - statistics.mean(theirs)) * 100
    ok = abs(diff) <= args.tolerance
    print(f"difference of means: {diff:+.2f} points (tolerance \u00b1{args.tolerance:g}): {'OK' if ok else 'OUTSIDE'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
