"""Non-padding tokens per second: encoderlab's packed MLM pipeline vs a Hugging Face ``run_mlm``-style baseline.

Same model (a from-scratch BERT, identical initial weights), corpus, batch size, optimizer and precision, in one
process. The baseline is ``run_mlm.py --line_by_line --pad_to_max_length``: each line of the corpus is an example
padded to ``max_seq_length``, masked by ``DataCollatorForLanguageModeling``, and the MLM head scores every position.
Ours packs contiguous text into full blocks (no padding) and runs the MLM head on the masked positions only.
The two alternate in rounds so that drift in the machine's speed hits both alike.

    python benchmarks/pretrain_throughput.py                      # BERT-mini, BBC News, 128 tokens, batch 32
    python benchmarks/pretrain_throughput.py --steps 2 --rounds 1 --size tiny --max-documents 20  # smoke test
    python benchmarks/pretrain_throughput.py --precision bf16-mixed --device cuda

Never time on a machine that is busy with other work: another process makes steps several times slower.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import DatasetDict  # noqa: E402
from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling  # noqa: E402

from encoderlab.config.schema import ModelConfig, RunConfig, TaskConfig  # noqa: E402
from encoderlab.data.corpora import split_corpus  # noqa: E402
from encoderlab.data.masking import MLMCollator  # noqa: E402
from encoderlab.data.pretraining import preprocess_pretraining  # noqa: E402
from encoderlab.data.sources import load_source  # noqa: E402
from encoderlab.models.encoder import DEFAULT_SCRATCH_TOKENIZER, load_tokenizer  # noqa: E402
from encoderlab.models.pretraining import PretrainingModule  # noqa: E402

SIZES = {  # Turc et al. 2019 (layers, hidden, heads)
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
}


def _batches(rows: list[dict], batch_size: int, collate: Callable, seed: int) -> Iterator[dict]:
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(rows), generator=g).tolist()
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield collate([rows[j] for j in order[i : i + batch_size]])


def _autocast(device: torch.device, precision: str):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


class Pipeline:
    """One way of training: a batch stream and a loss function, timed step by step."""

    def __init__(self, name: str, batches: Iterator[dict], loss_fn: Callable, model, device, precision):
        self.name, self.batches, self.loss_fn, self.model = name, batches, loss_fn, model
        self.device, self.precision = device, precision
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        self.tokens = 0
        self.seconds = 0.0
        self.steps = 0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def run(self, steps: int, timed: bool = True) -> None:
        for _ in range(steps):
            self._sync()
            t0 = time.perf_counter()
            batch = {k: v.to(self.device, non_blocking=True) for k, v in next(self.batches).items()}
            with _autocast(self.device, self.precision):
                loss = self.loss_fn(batch)
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self._sync()
            if timed:
                self.seconds += time.perf_counter() - t0
                self.tokens += int(batch["attention_mask"].sum())
                self.steps += 1

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="mini")
    p.add_argument("--corpus", default="bbc_news_text", help="a packaged corpus (bbc_news_text, rotten_tomatoes_text)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed steps per pipeline and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (baseline, ours), alternating")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per pipeline first")
    p.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="32-true")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-documents", type=int, default=None, help="the first N training documents (smoke tests)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    torch.manual_seed(args.seed)
    layers, hidden, heads = SIZES[args.size]
    tokenizer = load_tokenizer(ModelConfig(from_scratch=True, tokenizer_path=DEFAULT_SCRATCH_TOKENIZER))
    task = TaskConfig(
        name=f"bench_{args.corpus}",
        kind="pretraining",
        source="package",
        dataset=args.corpus,
        objective="none",
        packing="blocks",
        max_seq_length=args.max_seq_length,
        metrics=["mlm_loss"],
        primary_metric="mlm_loss",
    )
    task.check()
    docs = split_corpus(load_source(task), task)["train"]
    if args.max_documents is not None:
        docs = docs.select(range(min(args.max_documents, len(docs))))

    # ours: FULL-SENTENCES blocks, dynamic masking in the collator, sparse MLM head
    ours_rows = preprocess_pretraining(DatasetDict({"train": docs}), tokenizer, task)[0]["train"].to_list()
    ours_collate = MLMCollator(tokenizer)

    # baseline: run_mlm --line_by_line --pad_to_max_length
    lines = [line for text in docs["text"] for line in text.splitlines() if line.strip()]
    enc = tokenizer(
        lines, truncation=True, max_length=args.max_seq_length, padding="max_length", return_special_tokens_mask=True
    )
    base_rows = [dict(zip(enc.keys(), values, strict=True)) for values in zip(*enc.values(), strict=True)]
    base_collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    base_model = BertForMaskedLM(config).to(device).train()
    ours_model = copy.deepcopy(base_model)
    run = RunConfig(task=task, model=ModelConfig(from_scratch=True))
    module = PretrainingModule(ours_model, run)

    def ours_loss(batch):
        return module.step(batch)[0]

    def base_loss(batch):
        return base_model(**batch).loss

    pipes = [
        Pipeline(
            "run_mlm baseline (pad to max length, full MLM head)",
            _batches(base_rows, args.batch_size, base_collate, args.seed),
            base_loss,
            base_model,
            device,
            args.precision,
        ),
        Pipeline(
            "encoderlab (packed blocks, sparse MLM head)",
            _batches(ours_rows, args.batch_size, ours_collate, args.seed),
            ours_loss,
            ours_model,
            device,
            args.precision,
        ),
    ]
    print(
        f"model: BERT-{args.size} ({layers} layers, hidden {hidden}), vocab {len(tokenizer)}; corpus {args.corpus} "
        f"({len(docs)} train documents, {len(lines)} lines, {len(ours_rows)} packed blocks); "
        f"batch {args.batch_size} x {args.max_seq_length}; {args.precision} on {device}; torch threads "
        f"{torch.get_num_threads()}"
    )
    for pipe in pipes:
        pipe.run(args.warmup, timed=False)
    for _ in range(args.rounds):
        for pipe in pipes:
            pipe.run(args.steps)
    base, ours = pipes
    padding = 1.0 - base.tokens / (base.steps * args.batch_size * args.max_seq_length)
    for pipe in pipes:
        print(
            f"{pipe.name:55s} {pipe.tokens_per_second:12,.0f} non-padding tokens/s "
            f"({pipe.steps} steps, {pipe.seconds:.1f}s)"
        )
    ratio = ours.tokens_per_second / max(base.tokens_per_second, 1e-9)
    print(f"baseline batches were {padding:.0%} padding; speed-up (ours / baseline): {ratio:.2f}x (goal: >= 1.5x)")
    return {"baseline": base.tokens_per_second, "ours": ours.tokens_per_second, "ratio": ratio}


if __name__ == "__main__":
    main()
