"""Does a pre-trained checkpoint fine-tune better than its random twin? A plain PyTorch loop, nothing of encoderlab.

Fine-tunes ``MODEL_DIR`` (a Hugging Face folder, e.g. a pre-training run's ``hf/``) and the same architecture with
fresh weights on Rotten Tomatoes snippets, with a [CLS] or a mean-pooled linear classifier, at each learning rate;
prints the best validation accuracy over the epochs of each arm and the gap. It separates what the pre-trained
weights hold from encoderlab's fine-tuning code (compare with ``experiment=pretrain_vs_scratch``), and it also
answers whether the classifier's pooling decides the gap: [CLS] is never a prediction target in masked-LM
pre-training.

    python benchmarks/pretrain_gap.py outputs/pretrain_vs_scratch/pretrain/hf --pooling mean,cls --lr 1e-3
    python benchmarks/pretrain_gap.py DIR --train 32 --val 32 --epochs 1 --pooling mean --lr 1e-3   # smoke test
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, pooling: str):
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(0.1)
        self.out = nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, enc: dict) -> torch.Tensor:
        kw = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.encoder(**kw).last_hidden_state
        if self.pooling == "cls":
            x = hidden[:, 0]
        else:
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            x = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.out(self.dropout(x))


def finetune(
    path: str, data, pretrained: bool, pooling: str, lr: float, epochs: int, batch: int, seed: int, emb_scale: float
) -> float:
    """Best validation accuracy over ``epochs`` (AdamW, weight decay 0.01, 10% warmup, linear decay, dropout 0.1)."""
    from transformers import AutoConfig, AutoModel

    tok, train, val = data
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(path, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    encoder = AutoModel.from_pretrained(path, config=config) if pretrained else AutoModel.from_config(config)
    model = Classifier(encoder, pooling)
    # the embeddings at emb_scale x lr (0: frozen), everything else at lr
    emb = list(encoder.embeddings.parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in emb)]
    groups = [{"params": rest, "lr": lr}] + ([{"params": emb, "lr": lr * emb_scale}] if emb_scale > 0 else [])
    encoder.embeddings.requires_grad_(emb_scale > 0)
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01)
    steps = max(1, epochs * (len(train) // batch))
    warm = max(1, round(0.1 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )

    def encode(rows):
        enc = tok([r[0] for r in rows], truncation=True, max_length=64, padding=True, return_tensors="pt")
        return enc, torch.tensor([r[1] for r in rows])

    rng, best = random.Random(seed), 0.0
    for _ in range(epochs):
        model.train()
        order = train[:]
        rng.shuffle(order)
        for b in range(0, len(order) - batch + 1, batch):
            enc, y = encode(order[b : b + batch])
            loss = nn.functional.cross_entropy(model(enc), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = 0
        with torch.inference_mode():
            for b in range(0, len(val), 256):
                enc, y = encode(val[b : b + 256])
                correct += int((model(enc).argmax(-1) == y).sum())
        best = max(best, correct / len(val))
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", help="a Hugging Face model folder with its tokenizer (a pre-training run's hf/)")
    ap.add_argument("--pooling", default="mean,cls", help="comma-separated: mean, cls")
    ap.add_argument("--lr", default="1e-3", help="comma-separated learning rates")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train", type=int, default=1000, help="training snippets")
    ap.add_argument("--val", type=int, default=1500, help="validation snippets, from the 10,001st on")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--embedding-lr-scale", default="1", help="comma-separated: the embeddings' LR / lr (0: frozen)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer

    from encoderlab.config.schema import TaskConfig
    from encoderlab.data.packaged import rotten_tomatoes

    ds = rotten_tomatoes(TaskConfig()).shuffle(seed=0)
    rows = list(zip(ds["text"], ds["label"], strict=True))
    if args.train > 10_000:
        raise SystemExit("pretrain_gap.py: --train must be at most 10000 (the validation snippets start there)")
    data = (AutoTokenizer.from_pretrained(args.model_dir), rows[: args.train], rows[10_000 : 10_000 + args.val])
    print(f"{args.model_dir}: {args.train} training snippets, {args.val} validation snippets, {args.epochs} epochs")
    grid = [
        (pooling, lr, float(scale), seed)
        for pooling in args.pooling.split(",")
        for scale in args.embedding_lr_scale.split(",")
        for lr in (float(x) for x in args.lr.split(","))
        for seed in (int(s) for s in args.seeds.split(","))
    ]
    for pooling, lr, scale, seed in grid:
        t0 = time.perf_counter()
        print(
            f"pooling={pooling} lr={lr:g} embedding_lr_scale={scale:g} seed={seed}: fine-tuning both arms ...",
            flush=True,
        )
        run = (pooling, lr, args.epochs, args.batch, seed, scale)
        ours = finetune(args.model_dir, data, True, *run)
        twin = finetune(args.model_dir, data, False, *run)
        print(
            f"pooling={pooling:4s} lr={lr:g} embedding_lr_scale={scale:g} seed={seed}: pre-trained "
            f"{100 * ours:.1f}  random init "
            f"{100 * twin:.1f}  gap {100 * (ours - twin):+.1f} points  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
