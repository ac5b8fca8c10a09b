"""SetFit parity: does ``finetune=setfit`` score as the ``setfit`` library does on the same draws and settings?

Both sides train MiniLM-L6 (all-MiniLM-L6-v2, offline) on the same K-shot draw per seed (encoderlab's
``task.shots_per_class``: both read the texts and labels encoderlab drew) with SetFit's recipe: ``num_iterations``
pairs per example (``finetune.setfit.pairs_per_example``), CosineSimilarityLoss, one epoch of batch 16 at 2e-5 with
10% warm-up, then scikit-learn's logistic regression (C=1, the same iteration limit) on the normalised mean-pooled
sentence vectors; both score the same test split with the same accuracy. Printed: test accuracy per draw side by
side, train seconds per run, the mean paired difference (encoderlab - library) with its 95% interval, and whether
it is within a tolerance (1.5 points).

setfit 1.2.0 resolves under encoderlab's pins (it adds only setfit and evaluate; sentence-transformers, transformers,
datasets, torch and scikit-learn stay the pinned ones), so it is in the ``bench`` extra (``make bench`` installs it).
Each library run is a process of its own (this script with ``--library-side``, no encoderlab import there), so its
global seeding touches nothing on our side; ``--setfit-python`` runs it in another Python. Differences that remain:
the library may pair an example with itself and draws its pairs and batches with its own random streams, so single
draws differ; the mean paired difference over draws is what is compared.

    python benchmarks/setfit_parity.py                                         # BBC News, 8 per class, seeds 1-10
    python benchmarks/setfit_parity.py --task rotten_tomatoes --shots 8
    python benchmarks/setfit_parity.py --shots 2 --pairs-per-example 1 --max-eval-samples 16 --seeds 1   # smoke test
    python benchmarks/setfit_parity.py --ours-from multirun/few_shot --threads 1 --store results/   # the stored check

``--ours-from DIR`` takes encoderlab's side from the finished ``finetune=setfit`` jobs of a sweep (the few-shot
study's, with the same task, K, seed and SetFit settings) instead of training it again; only the library trains.
``--store DIR`` keeps each run as a line of ``DIR/setfit_parity/runs.jsonl`` (encoderlab's stored results, rendered
with the claim of ``results/setfit_parity/claims.yaml``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")


def overrides(args, seed: int) -> list[str]:
    """The encoderlab side, as command-line overrides."""
    m = "null" if args.max_eval_samples is None else args.max_eval_samples
    return [
        f"task={args.task}",
        "model=minilm_l6",
        "finetune=setfit",
        "task.max_train_samples=null",  # the K-shot draw from the whole training split
        f"task.max_eval_samples={m}",
        f"task.shots_per_class={args.shots}",
        f"seed={seed}",
        f"finetune.setfit.pairs_per_example={args.pairs_per_example}",
        f"finetune.setfit.head_max_iter={args.head_max_iter}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "save_model=false",
    ]


def run_config(overrides_: list[str]):
    from hydra import compose, initialize_config_dir

    from encoderlab.cli.train import CONF_DIR
    from encoderlab.config.validate import validate

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return validate(compose("config", overrides=overrides_))


def the_draw(args, seed: int, run) -> dict:
    """The K-shot draw of ``seed`` (texts and labels, as encoderlab drew them) and the library side's settings."""
    from encoderlab.data.sources import load_raw
    from encoderlab.kinds.sequence.data import prepare_labels
    from encoderlab.models.encoder import resolve_path

    labeled, names = prepare_labels(load_raw(run.task), run.task)
    field = run.task.text_fields[0]
    draw = {
        "model": resolve_path(run.model.path),
        "max_length": run.task.max_seq_length,
        "seed": seed,
        "pairs_per_example": args.pairs_per_example,
        "head_max_iter": args.head_max_iter,
        "device": args.device,
        "threads": args.threads,
        **{
            f"{split}_{what}": list(labeled[split][col])
            for split in ("train", "test")
            for what, col in (("texts", field), ("labels", "labels"))
        },
    }
    return draw


def encoderlab_side(args, seed: int) -> tuple[float, float, dict]:
    """(test accuracy, train seconds, the draw) of one encoderlab run: trained here, or read from ``--ours-from``."""
    from encoderlab.runner import execute

    ov = overrides(args, seed)
    run = run_config(ov)
    draw = the_draw(args, seed, run)
    if args.ours_from:
        return (*stored_side(args, seed), draw)
    with tempfile.TemporaryDirectory() as run_dir:
        summary = execute(run, Path(run_dir), ov)
    return float(summary["test"]["accuracy"]), float(summary["train_seconds"]), draw


def stored_side(args, seed: int) -> tuple[float, float]:
    """(test accuracy, train seconds) of the finished finetune=setfit job in ``--ours-from`` with this benchmark's
    task, K, seed and SetFit settings."""
    from omegaconf import OmegaConf

    want = (args.task, args.shots, seed, args.pairs_per_example, args.head_max_iter, args.max_eval_samples)
    for config in sorted(Path(args.ours_from).glob("*/.hydra/config.yaml")):
        path = config.parent.parent / "summary.json"
        s = json.loads(path.read_text()) if path.is_file() else {}
        if s.get("status") != "finished":
            continue
        c = OmegaConf.load(config)
        if c.finetune.strategy != "setfit" or c.model.from_scratch:
            continue
        got = (c.task.name, c.task.shots_per_class, c.seed, c.finetune.setfit.pairs_per_example)
        if got + (c.finetune.setfit.head_max_iter, c.task.max_eval_samples) == want:
            return float(s["test"]["accuracy"]), float(s["train_seconds"])
    raise SystemExit(
        f"setfit_parity: error: --ours-from {args.ours_from}: no finished finetune=setfit job with task={args.task} "
        f"task.shots_per_class={args.shots} seed={seed} finetune.setfit.pairs_per_example={args.pairs_per_example} "
        f"(run: encoderlab-train -m experiment=few_shot task={args.task} task.shots_per_class={args.shots} arm=setfit)"
    )


def library_side(inp: Path, out: Path) -> None:
    """The setfit library on one draw (run in the setfit venv: no encoderlab import here)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    d = json.loads(inp.read_text())
    if d.get("threads"):
        torch.set_num_threads(d["threads"])
    model = SetFitModel.from_pretrained(d["model"], head_params={"max_iter": d["head_max_iter"]})
    model.model_body.max_seq_length = d["max_length"]
    if d["device"] == "cpu":
        model.to("cpu")
    targs = TrainingArguments(
        batch_size=16,
        num_epochs=1,
        num_iterations=d["pairs_per_example"],
        body_learning_rate=2e-5,
        warmup_proportion=0.1,
        max_length=d["max_length"],
        seed=d["seed"],
        report_to="none",
        show_progress_bar=False,
    )
    train = Dataset.from_dict({"text": d["train_texts"], "label": d["train_labels"]})
    trainer = Trainer(model=model, args=targs, train_dataset=train)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    pred = np.asarray(model.predict(d["test_texts"], batch_size=128, show_progress_bar=False))
    accuracy = float(np.mean(pred == np.asarray(d["test_labels"])))
    out.write_text(json.dumps({"accuracy": accuracy, "train_seconds": seconds}))


def library_accuracy(args, draw: dict) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "draw.json", Path(tmp) / "result.json"
        inp.write_text(json.dumps(draw))
        cmd = [str(args.setfit_python), str(Path(__file__).resolve()), "--library-side", str(inp), str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)  # the library saves checkpoints/ in its cwd
        if proc.returncode != 0:
            raise SystemExit(f"the setfit side failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
        res = json.loads(out.read_text())
    return res["accuracy"], res["train_seconds"]


def paired_interval(diffs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t interval of paired differences (the interval is nan for one pair)."""
    from scipy import stats

    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def _record(args, side: str, seed: int, accuracy: float, seconds: float) -> None:
    """One line per run in --jsonl FILE, and its stored line in --store DIR (results/setfit_parity/runs.jsonl)."""
    from encoderlab.report.store import benchmark_command

    command = benchmark_command("setfit_parity.py", sys.argv[1:])
    if args.store:
        from encoderlab.report.store import benchmark_record, git_commit, machine_info, store_records

        machine = machine_info() | ({"threads": args.threads} if args.threads else {})
        overrides_ = {"side": side, "task": args.task, "task.shots_per_class": str(args.shots)}
        rec = benchmark_record(
            "setfit_parity",
            overrides_,
            seed,
            {"test/accuracy": accuracy},
            command=command,
            train_seconds=round(seconds, 2),
            precision="32-true",
            machine=machine,
            commit=git_commit(Path(__file__).resolve().parent),
        )
        for path, (added, replaced) in store_records([rec], args.store).items():
            print(f"stored: {path} ({added} added, {replaced} replaced)", flush=True)
    if not args.jsonl:
        return
    rec = {
        "experiment": "setfit_parity",
        "overrides": {"side": side, "task": args.task, "task.shots_per_class": str(args.shots)},
        "seed": seed,
        "fold": None,
        "status": "finished",
        "metrics": {"test/accuracy": accuracy},
        "train_seconds": round(seconds, 2),
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
    }
    with open(args.jsonl, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="bbc_news", choices=["bbc_news", "rotten_tomatoes"])
    ap.add_argument("--shots", type=int, default=8, help="examples per class (task.shots_per_class)")
    ap.add_argument("--seeds", default="1,2,3,4,5,6,7,8,9,10", help="comma-separated seeds: one draw each")
    ap.add_argument("--pairs-per-example", type=int, default=20, help="SetFit's num_iterations")
    ap.add_argument("--head-max-iter", type=int, default=1000, help="logistic regression iterations, both sides")
    ap.add_argument("--max-eval-samples", type=int, default=None, help="validation/test subset (default: all)")
    ap.add_argument("--tolerance", type=float, default=1.5, help="allowed mean paired difference, in points")
    ap.add_argument("--check", action="store_true", help="exit 1 when the mean difference exceeds --tolerance")
    ap.add_argument("--setfit-python", type=Path, default=Path(sys.executable), help="a Python with setfit 1.2.0")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--jsonl", metavar="FILE", help="append one JSON line per run (side, seed, accuracy, seconds)")
    ap.add_argument("--ours-from", metavar="DIR", help="encoderlab's side from a sweep's finished setfit jobs")
    ap.add_argument("--store", metavar="DIR", help="store each run in DIR/setfit_parity/runs.jsonl (e.g. results/)")
    ap.add_argument("--library-side", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.library_side:
        library_side(Path(args.library_side[0]), Path(args.library_side[1]))
        return 0
    probe = subprocess.run([str(args.setfit_python), "-c", "import setfit"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"no setfit library in {args.setfit_python}: pip install -e '.[bench]' (or give --setfit-python)")
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"setfit parity: MiniLM-L6 on {args.task}, {args.shots} per class, {args.pairs_per_example} pairs per example, "
        f"batch 16, lr 2e-5, logistic regression; {args.device}; seeds {args.seeds}",
        flush=True,
    )
    print(f"{'seed':>6} {'encoderlab':>12} {'setfit':>12} {'train s (ours / setfit)':>26}", flush=True)
    ours, theirs = [], []
    for seed in seeds:
        acc, secs, draw = encoderlab_side(args, seed)
        acc_lib, secs_lib = library_accuracy(args, draw)
        ours.append(acc)
        theirs.append(acc_lib)
        _record(args, "encoderlab", seed, acc, secs)
        _record(args, "setfit", seed, acc_lib, secs_lib)
        print(f"{seed:>6} {acc * 100:>12.2f} {acc_lib * 100:>12.2f} {secs:>13.1f} / {secs_lib:<10.1f}", flush=True)
    mean, low, high = paired_interval([(a - b) * 100 for a, b in zip(ours, theirs, strict=True)])
    ok = abs(mean) <= args.tolerance
    print(
        f"mean paired difference (encoderlab - setfit): {mean:+.2f} points, 95% interval [{low:+.2f}, {high:+.2f}] "
        f"(tolerance \u00b1{args.tolerance:g}): {'OK' if ok else 'OUTSIDE'}"
    )
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
