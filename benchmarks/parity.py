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
    python benchmarks/parity.py --seeds 1,2,3,4,5,6,7,8,9,10 --bucketing both --store results/   # the stored check
    python benchmarks/parity.py --from-jsonl parity_raw.jsonl --store results/   # store a --jsonl file's runs

``--store DIR`` keeps each run as one line of ``DIR/parity/runs.jsonl`` in the shape of encoderlab's stored results
(overrides ``side`` and ``bucketing``, metric ``test/accuracy``), so docs/RESULTS.md renders the comparison with its
interval and verdict (the claim: ``DIR/parity/claims.yaml``). A run of the same side, bucketing and seed replaces the
stored one: store only runs at the budget the claim is about.
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
from _finetune_sides import hf_splits, hf_trainer, minilm_path, run_config  # noqa: E402


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


RESULTS_NAME = "parity"  # results/parity/runs.jsonl


def _recipe_command(rec: dict) -> str:
    """The command that reruns a raw record's recipe (seeds and bucketing chosen on top)."""
    budget = f"--steps {rec['steps']}" if (rec.get("steps") or -1) > 0 else f"--epochs {rec.get('epochs', 1)}"
    n = rec.get("max_train_samples")
    return (
        f"python benchmarks/parity.py --max-train-samples {n if n is not None else 'null'} {budget} "
        f"--batch {rec.get('batch')} --lr {rec.get('lr'):g} --bucketing both --store results/"
    )


def stored_record(rec: dict, commit: str | None = None, machine: dict | None = None) -> dict:
    """A raw --jsonl record in the stored shape of results/parity/runs.jsonl (its own ``commit`` wins: the code
    that ran)."""
    from encoderlab.report.store import benchmark_record, machine_info

    bucketing = rec.get("bucketing")
    machine = dict(machine or machine_info())
    if rec.get("threads") is not None:
        machine["threads"] = rec["threads"]
    return benchmark_record(
        RESULTS_NAME,
        {"side": rec["side"], "bucketing": "-" if bucketing is None else ("on" if bucketing else "off")},
        rec["seed"],
        {"test/accuracy": rec["accuracy"]},
        command=_recipe_command(rec),
        train_seconds=rec.get("train_seconds"),
        steps=rec["steps"] if (rec.get("steps") or -1) > 0 else None,
        day=rec.get("date"),
        precision="32-true",
        machine=machine,
        commit=rec.get("commit") or commit,
        recipe={k: rec.get(k) for k in ("max_train_samples", "epochs", "steps", "batch", "lr")},
    )


def store_raw(raw: list[dict], results_dir: str) -> None:
    from encoderlab.report.store import git_commit, store_records

    commit = git_commit(Path(__file__).resolve().parent)
    for path, (added, replaced) in store_records([stored_record(r, commit) for r in raw], results_dir).items():
        print(f"stored: {path} ({added} added, {replaced} replaced)", flush=True)


def from_jsonl(path: str, results_dir: str) -> int:
    """Store the runs of a raw --jsonl file (no training)."""
    import json

    raw = []
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                raw.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"parity: error: --from-jsonl {path} line {i}: not valid JSON ({e.msg})", file=sys.stderr)
                return 2
    missing = [i for i, r in enumerate(raw, start=1) if not {"side", "seed", "accuracy"} <= set(r)]
    if missing:
        print(f"parity: error: --from-jsonl {path} line {missing[0]}: needs side, seed and accuracy", file=sys.stderr)
        return 2
    store_raw(raw, results_dir)
    return 0


def _record(args, side: str, bucketing, seed: int, accuracy: float, seconds: float) -> None:
    """One JSON line per run in --jsonl FILE (appended and flushed, so a stopped sweep keeps its finished runs), and
    its stored line in --store DIR (rewritten after each run, for the same reason)."""
    if not args.jsonl and not args.store:
        return
    import json

    from encoderlab.provenance import git_commit

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
        "commit": git_commit(Path(__file__).resolve().parent),
    }
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
    if args.store:
        store_raw([rec], args.store)


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
    ap.add_argument(
        "--store", metavar="DIR", help="store each run in DIR/parity/runs.jsonl (encoderlab's stored results)"
    )
    ap.add_argument(
        "--from-jsonl", metavar="RAW", help="with --store: store the runs of a --jsonl file (no training) and exit"
    )
    args = ap.parse_args(argv)
    if args.from_jsonl:
        if not args.store:
            ap.error("--from-jsonl converts a --jsonl file into stored results: give --store DIR (e.g. results/)")
        return from_jsonl(args.from_jsonl, args.store)
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
