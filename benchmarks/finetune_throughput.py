"""Fine-tuning throughput: encoderlab vs the Hugging Face Trainer and a plain PyTorch loop, in one process.

Same model (MiniLM-L6), data (Rotten Tomatoes train split), batch size, gradient clipping (1.0) and thread count
for every side; each side trains for the same number of optimizer steps with evaluation, logging and checkpoints
off, and is timed by wall clock around its whole training call. The sides:

* HF Trainer: padding to 128, dynamic padding (its best fp32 setting), dynamic padding in bf16 (its fused AdamW);
* encoderlab: the Lightning run as ``encoderlab-train`` builds it (length-bucketed batches, dynamic padding), in
  fp32, bf16-mixed and bf16-true (bf16 weights, fp32 master weights in the optimizer: no autocast casts);
* plain loop: encoderlab's model, bucketed batches, collator, parameter groups, optimizer and schedule, trained by
  a bare PyTorch loop (no Lightning): encoderlab's distance to it is the framework's overhead;
* evaluation: encoderlab's validation pass (length-sorted batches, inference mode) vs ``Trainer.evaluate()``.

Printed per side: samples/s, model FLOP/s and MFU (model FLOP utilisation: the model's FLOPs over the matmul peak
measured here, 2048^2 matmuls at the same thread count and precision), then the ratios the speed goals are about.
FLOPs count non-padding tokens only: 6 * N * tokens + 12 * layers * hidden * sum(length^2) (attention scores and
their weighted sum, forward and backward), N = the parameters of the transformer layers (no embeddings, pooler
or head). Never run it beside other work: a busy machine makes steps several times slower.

    python benchmarks/finetune_throughput.py --steps 30 --threads 2
    python benchmarks/finetune_throughput.py --steps 2 --batch 4 --no-bf16 --max-train-samples 32  # smoke test

The bf16 rows run only where bf16 is fast (``precision=auto``'s detection, ``ENCODERLAB_FAST_BF16`` included);
elsewhere the script says ``bf16 rows skipped:`` and why. Each side announces itself before it starts.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402
from _finetune_sides import WARM, Result, encoderlab_side, hf_side, matmul_peak, plain_side  # noqa: E402


def skip_bf16(asked: bool, device: str) -> bool:
    """True where the bf16 rows are left out (``--no-bf16``, or bf16 not fast here); says so in one line."""
    from encoderlab.training.precision import bf16_rows

    fast, why = (False, "--no-bf16") if asked else bf16_rows(device)
    if not fast:
        print(f"bf16 rows skipped: {why}", flush=True)
    return not fast


def main(argv: list[str] | None = None) -> dict[str, Result]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows (CPUs without fast bf16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--max-train-samples", type=int, default=None, help="a subset of the training split (smoke tests)")
    ap.add_argument("--max-eval-samples", type=int, default=None, help="a subset of the validation split")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation rows")
    ap.add_argument("--frozen-steps-factor", type=int, default=20, help="the frozen side's steps per full-side step")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: dict[str, Result] = {}
    dev, ev = args.device, not args.no_eval
    no_bf16 = skip_bf16(args.no_bf16, dev)
    print("measuring the matmul peak ...", flush=True)
    peak = {"fp32": matmul_peak(torch.float32, dev)}
    if not no_bf16:
        peak["bf16"] = matmul_peak(torch.bfloat16, dev)
    where = f"{torch.get_num_threads()} threads" if dev == "cpu" else torch.cuda.get_device_name()
    print(
        "matmul peak (2048^2, " + where + "): " + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peak.items()),
        flush=True,
    )

    def add(fn) -> None:
        torch.manual_seed(0)
        r = fn()
        rows[r.name] = r
        mfu = f"{r.flops / r.seconds / peak[r.precision]:6.1%}" if r.flops else "     -"
        gf = f"{r.flops / r.seconds / 1e9:7.1f}" if r.flops else "      -"
        ev_txt = f"   eval {r.eval_samples_per_s:7.1f} samples/s" if r.eval_samples_per_s else ""
        print(f"{r.name:52s} {r.samples_per_s:7.1f} samples/s {gf} GFLOP/s MFU {mfu}{ev_txt}", flush=True)

    n = args.max_train_samples
    subset = [f"task.max_train_samples={n if n is not None else 'null'}"]
    if args.max_eval_samples is not None:
        subset.append(f"task.max_eval_samples={args.max_eval_samples}")
    s, b, m = args.steps, args.batch, args.max_eval_samples
    bf16_runs = [False] if no_bf16 else [False, True]
    add(lambda: hf_side("HF Trainer, padding to 128", s, b, True, False, dev, n, m))
    for bf in bf16_runs:
        p = " bf16" if bf else " fp32"
        prec = ["precision=bf16-mixed"] if bf else ["precision=32-true"]
        add(lambda bf=bf, p=p: hf_side(f"HF Trainer, dynamic padding,{p}", s, b, False, bf, dev, n, m, ev))
        add(lambda prec=prec, p=p: encoderlab_side(f"encoderlab, buckets,{p}", s, b, [*subset, *prec], dev, ev))
        add(lambda prec=prec, p=p: plain_side(f"plain PyTorch loop,{p}", s, b, [*subset, *prec], dev))
    if not no_bf16:  # bf16 weights, fp32 master weights in the optimizer: no autocast casts
        name = "encoderlab, buckets, bf16-true"
        add(lambda: encoderlab_side(name, s, b, [*subset, "precision=bf16-true"], dev, ev))
    if not no_bf16 and dev == "cpu":  # the kernel encoderlab picks on a CPU (model.attn_implementation=auto)
        name = "HF Trainer, dynamic padding, bf16, eager attention"
        add(lambda: hf_side(name, s, b, False, True, dev, n, m, False, "eager"))
    frozen = [*subset, "finetune=frozen"] + (["precision=32-true"] if no_bf16 else ["precision=bf16-mixed"])
    add(
        lambda: encoderlab_side(
            "encoderlab frozen, features encoded once (incl. encoding)", s * args.frozen_steps_factor, b, frozen, dev
        )
    )
    base = rows["HF Trainer, dynamic padding, fp32"].samples_per_s
    print(f"\nratios against 'HF Trainer, dynamic padding' ({base:.1f} samples/s), same process, {where}:")
    for r in rows.values():
        print(f"  {r.name:60s} x{r.samples_per_s / base:5.2f}")
    print("\nspeed goals (same precision):")
    for p in ("fp32", "bf16")[: len(bf16_runs)]:
        ours, hf = rows[f"encoderlab, buckets, {p}"], rows[f"HF Trainer, dynamic padding, {p}"]
        plain = rows[f"plain PyTorch loop, {p}"]
        overhead = 1 - ours.samples_per_s / plain.samples_per_s
        print(f"  {p}: encoderlab / HF Trainer           x{ours.samples_per_s / hf.samples_per_s:5.2f}  (goal >= 1.25)")
        print(f"  {p}: framework overhead vs plain loop  {overhead:6.1%}  (goal <= 5%; whole fit call)")
        if ours.steady_samples_per_s and plain.steady_samples_per_s:
            steady = 1 - ours.steady_samples_per_s / plain.steady_samples_per_s
            print(f"  {p}: per-step overhead vs plain loop   {steady:6.1%}  (steps after the first {WARM}, no set-up)")
        print(
            f"  {p}: MFU encoderlab {ours.flops / ours.seconds / peak[p]:.1%}, plain loop "
            f"{plain.flops / plain.seconds / peak[p]:.1%}, HF Trainer {hf.flops / hf.seconds / peak[p]:.1%}"
        )
        true = rows.get("encoderlab, buckets, bf16-true") if p == "bf16" else None
        if true is not None:
            print(
                "  bf16: encoderlab precision=bf16-true / HF Trainer bf16  "
                f"x{true.samples_per_s / hf.samples_per_s:5.2f}"
            )
        if ours.eval_samples_per_s and hf.eval_samples_per_s:
            print(
                f"  {p}: evaluation samples/s encoderlab {ours.eval_samples_per_s:.1f}, HF Trainer.evaluate() "
                f"{hf.eval_samples_per_s:.1f}: x{ours.eval_samples_per_s / hf.eval_samples_per_s:.2f}"
            )
    return rows


if __name__ == "__main__":
    main()
