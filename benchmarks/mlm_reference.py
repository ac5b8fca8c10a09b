"""Is encoderlab's masked-LM pre-training as good as a plain Hugging Face loop? Held-out curves at equal steps.

Tells a bug from a budget: when a pre-trained model does not beat its random twin, either the pre-training code
is wrong or the recipe/budget is too small. This script runs an encoderlab pre-training job (``encoderlab-train``,
any overrides), then a reference loop that uses nothing of encoderlab's training code — the same architecture
from ``AutoModelForMaskedLM.from_config`` (same seed), ``DataCollatorForLanguageModeling``, ``torch.optim.AdamW``
with the no-decay set, ``get_linear_schedule_with_warmup``, gradient clipping 1.0 — on the same tokenizer, training
examples, learning rate, batch size and steps. Both are scored on the same held-out examples with the same fixed
masks (encoderlab's validation split, masked once at preprocessing) at the same steps, and printed side by side.

    python benchmarks/mlm_reference.py                          # the pretrain_vs_scratch recipe, 600 steps
    python benchmarks/mlm_reference.py --steps 2 --eval-every 1 # smoke test
    python benchmarks/mlm_reference.py --steps 1000 -- model=bert_mini optimizer.lr=1e-3

Verdict: encoderlab's accuracy must be at least the reference's (less --tolerance) at every evaluation point.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    get_linear_schedule_with_warmup,
)

ROOT = Path(__file__).resolve().parents[1]
# the pre-training stage of experiments/pretrain_vs_scratch.yaml (its recipe), without its step budget
RECIPE = [
    "task=pretrain_mlm_small",
    "model=bert_tiny_preln",
    "batch_size=64",
    "optimizer.lr=2e-3",
    "optimizer.betas=[0.9,0.98]",
    "optimizer.eps=1e-6",
    "scheduler.warmup_ratio=0.06",
]


def run_encoderlab(run_dir: Path, steps: int, eval_every: int, overrides: list[str]) -> float:
    cmd = [
        str(Path(sys.executable).parent / "encoderlab-train"),
        *overrides,
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        f"+trainer.extra.val_check_interval={eval_every}",
        "trainer.check_val_every_n_epoch=null",
        "callbacks.early_stopping=false",
        "trainer.enable_progress_bar=false",
        "speed.cache_tokenized=false",
        f"hydra.run.dir={run_dir}",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"encoderlab-train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def encoderlab_curve(run_dir: Path, eval_every: int) -> dict[int, tuple[float, float]]:
    """step -> (val mlm_loss, val mlm_accuracy) from the run's metrics.csv (logged at global_step - 1)."""
    curve = {}
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("val/mlm_loss"):
                step = math.ceil((int(row["step"]) + 1) / eval_every) * eval_every
                curve[step] = (float(row["val/mlm_loss"]), float(row["val/mlm_accuracy"]))
    return curve


def same_data(run_dir: Path):
    """The run's tokenizer and its train / validation examples, rebuilt from its saved config."""
    from encoderlab.config.validate import validate
    from encoderlab.kinds.pretraining.kind import prepare

    run = validate(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    ran = json.loads((run_dir / "summary.json").read_text()).get("precision")
    run.precision = ran or run.precision  # what the run trained in (precision=auto resolved there): the same here
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "hf")
    prepared = prepare(run, tokenizer, None)
    return run, tokenizer, prepared.datasets


def reference_curve(run_dir: Path, run, tokenizer, data, steps: int, eval_every: int) -> dict:
    """step -> (held-out mlm_loss, mlm_accuracy) of the plain loop on the run's architecture (fresh weights)."""
    torch.manual_seed(run.seed)
    config = AutoConfig.from_pretrained(run_dir / "hf")
    model = AutoModelForMaskedLM.from_config(config).train()
    collator = DataCollatorForLanguageModeling(
        tokenizer,
        mlm_probability=run.task.mlm.mlm_probability,
        mask_replace_prob=run.task.mlm.mask_replace_prob,
        random_replace_prob=run.task.mlm.random_replace_prob,
    )
    opt_cfg = run.optimizer
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [(n, p) for n, p in model.named_parameters()]
    groups = [
        {"params": [p for n, p in params if not any(k in n for k in no_decay)], "weight_decay": opt_cfg.weight_decay},
        {"params": [p for n, p in params if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    eps = opt_cfg.eps if opt_cfg.eps is not None else 1e-8  # torch.optim.AdamW's own
    opt = torch.optim.AdamW(groups, lr=opt_cfg.lr, betas=tuple(opt_cfg.betas), eps=eps)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(run.scheduler.warmup_ratio * steps), steps)
    train = [{"input_ids": ids} for ids in data["train"]["input_ids"]]
    val = data["validation"]
    bf16 = run.precision.startswith("bf16")
    g = torch.Generator().manual_seed(run.seed)
    order: list[int] = []
    curve = {}
    for step in range(1, steps + 1):
        if len(order) < run.batch_size:
            order = torch.randperm(len(train), generator=g).tolist()
        batch = collator([train[i] for i in order[: run.batch_size]])
        order = order[run.batch_size :]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % eval_every == 0 or step == steps:
            curve[step] = evaluate(model, val, tokenizer.pad_token_id, bf16)
            print(f"reference loop: step {step} of {steps}", flush=True)
    return curve


@torch.no_grad()
def evaluate(model, val, pad_id: int, bf16: bool, batch_size: int = 128) -> tuple[float, float]:
    model.eval()
    loss_sum = correct = total = 0.0
    for i in range(0, len(val), batch_size):
        rows = val[i : i + batch_size]
        width = max(len(x) for x in rows["input_ids"])
        ids = torch.full((len(rows["input_ids"]), width), pad_id)
        labels = torch.full_like(ids, -100)
        for j, (x, y) in enumerate(zip(rows["input_ids"], rows["labels"], strict=True)):
            ids[j, : len(x)] = torch.tensor(x)
            labels[j, : len(y)] = torch.tensor(y)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=(ids != pad_id).long()).logits.float()
        sel = labels != -100
        loss_sum += torch.nn.functional.cross_entropy(logits[sel], labels[sel], reduction="sum").item()
        correct += (logits[sel].argmax(-1) == labels[sel]).sum().item()
        total += sel.sum().item()
    model.train()
    return loss_sum / total, correct / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--tolerance", type=float, default=0.01, help="accuracy points (as a fraction) encoderlab may lag")
    p.add_argument("--run-dir", default=None, help="where the encoderlab run goes (default: a temporary folder)")
    p.add_argument("--json", default=None, help="write both curves here")
    p.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    p.add_argument("overrides", nargs="*", help="encoderlab-train overrides (default: the pretrain_vs_scratch recipe)")
    args = p.parse_args()
    overrides = args.overrides or RECIPE
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the encoderlab-train subprocess
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="mlm_reference_")).resolve()
    print(
        f"encoderlab-train {' '.join(overrides)}: {args.steps} steps, held-out eval every {args.eval_every}", flush=True
    )
    secs = run_encoderlab(run_dir, args.steps, args.eval_every, overrides)
    ours = encoderlab_curve(run_dir, args.eval_every)
    run, tokenizer, data = same_data(run_dir)
    t0 = time.perf_counter()
    ref = reference_curve(run_dir, run, tokenizer, data, args.steps, args.eval_every)
    ref_secs = time.perf_counter() - t0
    print(f"\n{'step':>6} | {'encoderlab loss':>15} {'acc':>6} | {'HF loop loss':>12} {'acc':>6} | {'Δ acc':>6}")
    ok = True
    for step in sorted(ref):
        r = ref[step]
        o = ours.get(step)
        if o is None:
            print(f"{step:>6} | {'—':>15} {'—':>6} | {r[0]:>12.3f} {r[1]:>6.3f} |")
            continue
        ok &= o[1] >= r[1] - args.tolerance
        print(f"{step:>6} | {o[0]:>15.3f} {o[1]:>6.3f} | {r[0]:>12.3f} {r[1]:>6.3f} | {o[1] - r[1]:>+6.3f}")
    print(f"\nencoderlab run (incl. data and export): {secs:.0f} s; reference loop: {ref_secs:.0f} s")
    print(
        "verdict: encoderlab's held-out MLM accuracy is "
        + ("at least the reference's" if ok else "BELOW the reference's")
        + f" (tolerance {args.tolerance:.3f}) at every evaluation point"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"encoderlab": ours, "reference": ref, "ok": ok}, indent=2))


if __name__ == "__main__":
    main()
