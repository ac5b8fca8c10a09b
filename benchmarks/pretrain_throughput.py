"""Non-padding tokens per second: encoderlab's packed MLM pipeline vs Hugging Face ``run_mlm``-style baselines.

Same model (a from-scratch BERT, identical initial weights), corpus, batch size, optimizer and precision, in one
process. The main baseline is ``run_mlm.py``'s default (no ``--line_by_line``): every document tokenized whole, the
token ids concatenated and cut into full ``max_seq_length`` blocks (``group_texts``, the remainder dropped), masked
by ``DataCollatorForLanguageModeling``, the MLM head scoring every position. The second baseline row is
``run_mlm.py --line_by_line --pad_to_max_length``: each line of the corpus an example padded to ``max_seq_length``.
Ours packs contiguous text into full blocks (no padding) and runs the MLM head on the masked positions only.
The pipelines alternate in rounds (forward, then backward, ...) so that drift in the machine's speed hits all alike;
tokens/s is reported over all rounds, with the median and min-max of the rounds.

Tokens/s is not the end goal, quality per second is: after the timed rounds both models keep training until each
has had the same wall-clock (the slower one's time plus ``--quality-seconds``), and both are scored on the same
held-out blocks (whole held-out documents, packed, masked once with a fixed seed): masked-token accuracy.

    python benchmarks/pretrain_throughput.py                      # BERT-mini, BBC News, 128 tokens, batch 32
    python benchmarks/pretrain_throughput.py --steps 2 --rounds 1 --size tiny --max-documents 20  # smoke test
    python benchmarks/pretrain_throughput.py --precision bf16-mixed --device cuda
    python benchmarks/pretrain_throughput.py --threads 2 --store results/        # keep the rows (with the machine)

Never time on a machine that is busy with other work: another process makes steps several times slower.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import DatasetDict  # noqa: E402
from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling  # noqa: E402

from encoderlab.config.schema import MLMConfig, ModelConfig, RunConfig, TaskConfig  # noqa: E402
from encoderlab.data.corpora import split_corpus  # noqa: E402
from encoderlab.data.sources import load_source  # noqa: E402
from encoderlab.kinds.pretraining.data import preprocess_pretraining  # noqa: E402
from encoderlab.kinds.pretraining.kind import PretrainingModule  # noqa: E402
from encoderlab.kinds.pretraining.masking import MLMCollator  # noqa: E402
from encoderlab.models.encoder import DEFAULT_SCRATCH_TOKENIZER, load_tokenizer  # noqa: E402

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
        self.squares = 0  # sum of squared row lengths: the attention FLOPs grow with them
        self.seconds = 0.0
        self.steps = 0
        self.rounds: list[float] = []  # tokens/s of each timed round

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timed_round(self, steps: int) -> None:
        tokens, seconds = self.tokens, self.seconds
        self.run(steps)
        self.rounds.append((self.tokens - tokens) / max(self.seconds - seconds, 1e-9))

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
                lengths = batch["attention_mask"].sum(-1)
                self.tokens += int(lengths.sum())
                self.squares += int((lengths**2).sum())
                self.steps += 1

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    def model_flops(self) -> float:
        """6 * N * tokens + 12 * layers * hidden * sum(length^2), N = the transformer layers' parameters (no
        embeddings, no MLM head): the work every pipeline must do for its non-padding tokens, whatever it wastes."""
        cfg = self.model.config
        n = sum(p.numel() for p in self.model.base_model.encoder.parameters())
        return 6 * n * self.tokens + 12 * cfg.num_hidden_layers * cfg.hidden_size * self.squares


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of the best of ``reps`` n x n matmuls at ``dtype`` (after two warm-up products)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="mini")
    p.add_argument("--corpus", default="bbc_news_text", help="a packaged corpus (bbc_news_text, rotten_tomatoes_text)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed steps per pipeline and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every pipeline, in alternating order")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per pipeline first")
    p.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="32-true")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-documents", type=int, default=None, help="the first N training documents (smoke tests)")
    p.add_argument(
        "--quality-seconds", type=float, default=30.0, help="training seconds each pipeline gets after the rounds"
    )
    p.add_argument("--eval-blocks", type=int, default=64, help="held-out blocks scored for MLM accuracy")
    p.add_argument("--store", metavar="DIR", help="store each pipeline's row in DIR/pretrain_throughput/runs.jsonl")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, not {args.rounds}")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.precision == "bf16-mixed":  # only where bf16 is fast: emulated bf16 would take hours here
        from encoderlab.training.precision import bf16_rows

        fast, why = bf16_rows(device.type)
        if not fast:
            print(f"bf16 rows skipped: {why}; timing 32-true instead (ENCODERLAB_FAST_BF16=1 forces bf16)", flush=True)
            args.precision = "32-true"
    print(f"preparing {args.corpus} and the models ...", flush=True)
    torch.manual_seed(args.seed)
    layers, hidden, heads = SIZES[args.size]
    tokenizer = load_tokenizer(ModelConfig(from_scratch=True, tokenizer_path=DEFAULT_SCRATCH_TOKENIZER))
    task = TaskConfig(
        name=f"bench_{args.corpus}",
        kind="pretraining",
        source="package",
        dataset=args.corpus,
        mlm=MLMConfig(objective="none", packing="blocks"),
        max_seq_length=args.max_seq_length,
        metrics=["mlm_loss"],
        primary_metric="mlm_loss",
    )
    task.check()
    splits = split_corpus(load_source(task), task)
    docs = splits["train"]
    if args.max_documents is not None:
        docs = docs.select(range(min(args.max_documents, len(docs))))

    # ours: FULL-SENTENCES blocks, dynamic masking in the collator, sparse MLM head
    ours_rows = preprocess_pretraining(DatasetDict({"train": docs}), tokenizer, task)[0]["train"].to_list()
    ours_collate = MLMCollator(tokenizer)

    # main baseline: run_mlm's default, group_texts packing of whole tokenized documents
    with _quiet_transformers():  # whole documents are longer than the model's limit until they are cut into blocks
        whole = tokenizer(list(docs["text"]), return_special_tokens_mask=True)
    packed_rows = group_texts(whole, args.max_seq_length)
    if len(packed_rows) < args.batch_size:
        p.error(f"the corpus makes {len(packed_rows)} group_texts blocks, fewer than one batch: raise --max-documents")

    # second baseline: run_mlm --line_by_line --pad_to_max_length
    lines = [line for text in docs["text"] for line in text.splitlines() if line.strip()]
    enc = tokenizer(
        lines, truncation=True, max_length=args.max_seq_length, padding="max_length", return_special_tokens_mask=True
    )
    base_rows = [dict(zip(enc.keys(), values, strict=True)) for values in zip(*enc.values(), strict=True)]
    base_collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    held_out = preprocess_pretraining(DatasetDict({"train": splits["validation"]}), tokenizer, task)[0]["train"]
    held_out = held_out.to_list()[: args.eval_blocks]

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    base_model = BertForMaskedLM(config).to(device).train()
    packed_model = copy.deepcopy(base_model)
    ours_model = copy.deepcopy(base_model)
    run = RunConfig(task=task, model=ModelConfig(from_scratch=True))
    module = PretrainingModule(ours_model, run)

    def ours_loss(batch):
        return module.step(batch)[0]

    def base_loss(batch):
        return base_model(**batch).loss

    def packed_loss(batch):
        return packed_model(**batch).loss

    pipes = [
        Pipeline(
            "run_mlm default (group_texts blocks, full MLM head)",
            _batches(packed_rows, args.batch_size, base_collate, args.seed),
            packed_loss,
            packed_model,
            device,
            args.precision,
        ),
        Pipeline(
            "run_mlm --line_by_line --pad_to_max_length",
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
        f"({len(docs)} train documents, {len(lines)} lines, {len(ours_rows)} packed blocks, "
        f"{len(packed_rows)} group_texts blocks); "
        f"batch {args.batch_size} x {args.max_seq_length}; {args.precision} on {device}; torch threads "
        f"{torch.get_num_threads()}",
        flush=True,
    )
    for pipe in pipes:
        pipe.run(args.warmup, timed=False)
    for r in range(args.rounds):
        for pipe in pipes if r % 2 == 0 else pipes[::-1]:
            print(f"round {r + 1}/{args.rounds}: {pipe.name}, {args.steps} steps ...", flush=True)
            pipe.timed_round(args.steps)
    packed, padded, ours = pipes
    peak = matmul_peak(torch.bfloat16 if args.precision == "bf16-mixed" else torch.float32, device)
    padding = 1.0 - padded.tokens / (padded.steps * args.batch_size * args.max_seq_length)
    print(f"| {'pipeline':<55} | {'tokens/s':>10} | {'rounds: median (min-max)':>30} | {'MFU':>6} |")
    print(f"|{'-' * 57}|{'-' * 11}:|{'-' * 31}:|{'-' * 7}:|")
    timed = {}  # the timed rounds' numbers, before the quality phase trains on
    for pipe in pipes:
        med, lo, hi = statistics.median(pipe.rounds), min(pipe.rounds), max(pipe.rounds)
        mfu = pipe.model_flops() / pipe.seconds / peak
        timed[pipe.name] = {
            "tokens_per_second": pipe.tokens_per_second,
            "tokens_per_second_round_median": med,
            "tokens_per_second_round_min": lo,
            "tokens_per_second_round_max": hi,
            "mfu": mfu,
            "steps": pipe.steps,
            "seconds": pipe.seconds,
        }
        spread = f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})"
        print(f"| {pipe.name:<55} | {pipe.tokens_per_second:10,.0f} | {spread:>30} | {mfu:6.1%} |")
    print(
        f"(non-padding tokens/s over {ours.steps} timed steps each; MFU: model FLOPs of the non-padding tokens over "
        f"the {args.precision} matmul peak, {peak / 1e9:,.0f} GFLOP/s)"
    )
    ratio = ours.tokens_per_second / max(packed.tokens_per_second, 1e-9)
    ratio_padded = ours.tokens_per_second / max(padded.tokens_per_second, 1e-9)
    print(f"speed-up (ours / run_mlm default, packed): {ratio:.2f}x")
    print(f"speed-up (ours / run_mlm --line_by_line --pad_to_max_length, {padding:.0%} padding): {ratio_padded:.2f}x")

    # time to quality: the same wall-clock of training for every pipeline, then the same held-out masked tokens
    budget = max(pipe.seconds for pipe in pipes) + args.quality_seconds
    print(f"training each pipeline to {budget:.1f}s for the held-out accuracy ...", flush=True)
    for pipe in pipes:
        while pipe.seconds < budget:
            pipe.run(1)
    masked = _masked_blocks(held_out, ours_collate, args.batch_size, args.seed)
    acc = {pipe.name: mlm_accuracy(pipe.model, masked, run, device, args.precision) for pipe in pipes}
    print(f"held-out MLM accuracy after {budget:.1f}s of training each ({len(held_out)} held-out blocks):")
    for pipe in pipes:
        print(f"  {pipe.name:55s} {acc[pipe.name]:7.2%}  ({pipe.steps} timed steps, {pipe.tokens:,} tokens)")
    if args.store:
        _store(args, pipes, timed, acc, peak, budget)
    return {
        "baseline": packed.tokens_per_second,
        "baseline_padded": padded.tokens_per_second,
        "ours": ours.tokens_per_second,
        "ratio": ratio,
        "ratio_padded": ratio_padded,
        "baseline_accuracy": acc[packed.name],
        "baseline_padded_accuracy": acc[padded.name],
        "ours_accuracy": acc[ours.name],
    }


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def group_texts(enc, block: int) -> list[dict]:
    """run_mlm's ``group_texts``: every column concatenated over the documents and cut into ``block``-token rows,
    the remainder dropped."""
    rows = []
    joined = {k: [t for seq in v for t in seq] for k, v in enc.items()}
    total = (len(joined["input_ids"]) // block) * block
    for i in range(0, total, block):
        rows.append({k: v[i : i + block] for k, v in joined.items()})
    return rows


def _store(args, pipes: list[Pipeline], timed: dict, acc: dict, peak: float, budget: float) -> None:
    """One stored line per pipeline in DIR/pretrain_throughput/runs.jsonl, with the machine that measured it."""
    from encoderlab.provenance import git_commit, machine_info
    from encoderlab.report.store import benchmark_command, benchmark_record, store_records

    machine = machine_info()
    command = benchmark_command("pretrain_throughput.py", sys.argv[1:])
    records = []
    for pipe in pipes:
        row = timed[pipe.name]
        metrics = {k: v for k, v in row.items() if k not in ("steps", "seconds")}
        metrics["heldout/mlm_accuracy"] = acc[pipe.name]
        overrides = {"side": pipe.name, "size": args.size, "corpus": args.corpus, "cpu": machine["cpu"]}
        overrides |= {"threads": str(torch.get_num_threads()), "device": str(pipe.device)}
        setup = {k: getattr(args, k) for k in ("max_seq_length", "batch_size", "steps", "rounds", "warmup")}
        records.append(
            benchmark_record(
                "pretrain_throughput",
                overrides,
                args.seed,
                metrics,
                command=command,
                train_seconds=row["seconds"],
                steps=row["steps"],
                precision=args.precision,
                machine=machine,
                commit=git_commit(Path(__file__).resolve().parent),
                setup=setup | {"quality_budget_seconds": budget, "matmul_peak_flops": peak},
            )
        )
    for path, (added, replaced) in store_records(records, args.store).items():
        print(f"stored: {path} ({added} added, {replaced} replaced)", flush=True)


def _masked_blocks(rows: list[dict], collate: Callable, batch_size: int, seed: int) -> list[dict]:
    """Held-out batches masked once, with a fixed seed: every model is scored on the same masked tokens."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.inference_mode()
def mlm_accuracy(model, batches: list[dict], run: RunConfig, device, precision: str) -> float:
    """Share of the masked tokens of ``batches`` that ``model`` predicts exactly."""
    scorer = PretrainingModule(model, run)
    was_training = model.training
    model.eval()
    correct = total = 0
    for cpu_batch in batches:
        batch = {k: v.to(device) for k, v in cpu_batch.items()}
        with _autocast(device, precision):
            hits = scorer.step(batch)[1]["mlm_correct"]
        correct += int(hits.sum())
        total += hits.numel()
    model.train(was_training)
    return correct / max(total, 1)


if __name__ == "__main__":
    main()
