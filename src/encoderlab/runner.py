"""One run, start to finish, in four stages: prepare (data, model, cached features) -> fit and test -> export ->
summarize (summary.json).

Called by the CLI with a validated :class:`RunConfig`. Everything a run produces lands in its run dir:
``.hydra/`` (resolved config), ``metrics.csv``, ``summary.json``, ``hf/`` (the model in Hugging Face
format) and any predictions files. ``summary.json`` is written at the start (``running``) and at the end
(``finished`` or ``failed``), so a sweep can be resumed and a crashed job is visible. During training
``checkpoints/last.ckpt`` holds the whole training state; rerunning the command on a run dir whose run did not
finish continues from it (``resume``, see :mod:`encoderlab.resuming`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import transformers
from lightning_fabric.utilities.rank_zero import rank_zero_only

from encoderlab import __version__
from encoderlab.config.schema import RunConfig
from encoderlab.data.cache import cache_root
from encoderlab.data.datamodule import EncoderDataModule
from encoderlab.errors import ConfigError
from encoderlab.kinds import Kind, Prepared, get_kind
from encoderlab.models.encoder import load_tokenizer
from encoderlab.models.families import family_loop
from encoderlab.models.features import maybe_cache_features
from encoderlab.models.module import EncoderModule
from encoderlab.provenance import git_commit, machine_info
from encoderlab.redact import redact
from encoderlab.resuming import Attempt, keep_metrics, plan_attempt
from encoderlab.strategies import get_strategy, own_loop, unread_sections
from encoderlab.training.callbacks import RunTimer, build_callbacks, build_loggers, checkpoint_dir
from encoderlab.training.checkpoints import AtomicCheckpointIO, cluster_plugins, kill_point
from encoderlab.training.flops import FlopCounter
from encoderlab.training.freezing import count_parameters
from encoderlab.training.master_weights import precision_arg, precision_plugins
from encoderlab.training.precision import precision_reason, slow_bf16_warning

log = logging.getLogger("encoderlab")
# per-tensor loading/saving bars of transformers say nothing a user acts on; the run's own progress bar stays
transformers.utils.logging.disable_progress_bar()

# keys that never change what a run computes (where it writes, how it shows progress, what its experiment claims)
_NOT_IDENTITY = ("paths", "logger", "skip_finished", "resume", "claims", "notes")


def config_hash(run: RunConfig) -> str:
    d = asdict(run)
    for k in _NOT_IDENTITY:
        d.pop(k, None)
    for section, key in run.unhashed():
        d[section].pop(key, None)
    for section in unread_sections(run.finetune.strategy):  # e.g. distill.*: a run's hash stays what it was
        d.pop(section, None)
    d["trainer"].pop("enable_progress_bar", None)
    for k in ("rich_progress", "checkpoint_every_n_steps", "checkpoint_every_minutes"):
        d["callbacks"].pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# statuses of a run that ended: "undertrained" (below its kind's floor, see Kind.assess) is kept and reused as such
ENDED = ("finished", "undertrained")


def previous_summary(run_dir: Path, run: RunConfig) -> dict | None:
    """``run_dir``'s summary.json if a run with ``run``'s config wrote it."""
    f = run_dir / "summary.json"
    if not f.exists():
        return None
    try:
        s = json.loads(f.read_text())
    except json.JSONDecodeError:
        return None
    return s if isinstance(s, dict) and s.get("config_hash") == config_hash(run) else None


def finished_before(run_dir: Path, run: RunConfig) -> bool:
    s = previous_summary(run_dir, run)
    return s is not None and s.get("status") in ENDED


def _versions() -> dict:
    import datasets
    import transformers

    return {
        "encoderlab": __version__,
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
    }


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def base_summary(run: RunConfig, overrides: list[str]) -> dict:
    return {
        "status": "running",
        "error": None,
        "config_hash": config_hash(run),
        "experiment": run.experiment_name,
        "task": run.task.name,
        "kind": run.task.kind,
        "model": run.model.name,
        "strategy": run.finetune.strategy,
        "seed": run.seed,
        "precision": run.precision,  # what runs: precision=auto resolved for this machine
        "precision_reason": precision_reason(run),
        "overrides": overrides,
        "primary_metric": run.task.primary_metric,
        "greater_is_better": run.task.greater_is_better,
        "published": asdict(run.published) if run.published.value is not None else None,
        "versions": _versions(),
        "commit": git_commit(),
        "machine": machine_info(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def is_rank_zero() -> bool:
    """True in the process that writes and prints: Lightning's global rank once a Trainer has set it up; before
    that, the rank in the environment (RANK, LOCAL_RANK, SLURM_PROCID, ...), as Lightning reads it."""
    return getattr(rank_zero_only, "rank", 0) == 0


def write_summary(run_dir: Path, summary: dict) -> None:
    if not is_rank_zero():
        return
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(redact(summary), indent=2, default=str))  # no credential from the config
    os.replace(tmp, run_dir / "summary.json")


@dataclass
class Built:
    """What the prepare stage hands on: the run (a distilled run's student config), its kind, data and module."""

    run: RunConfig
    kind: Kind
    tokenizer: Any
    prepared: Prepared
    module: EncoderModule
    datamodule: EncoderDataModule
    trainable: int
    total: int
    feature_seconds: float  # encoding cached features or teacher logits, counted as training time


@dataclass
class Fitted:
    """What fit-and-test hands on: the trainer, the timer's best epoch and the val/test metrics."""

    trainer: pl.Trainer
    timer: RunTimer
    val: dict[str, float]
    test: dict[str, float]
    train_flops: float  # 6 x non-embedding parameters x tokens trained on, in every attempt (training/flops)


def execute(run: RunConfig, run_dir: Path, overrides: list[str], hydra_meta: dict | None = None) -> dict:
    """Run one job; return its summary. Raises on failure after recording it in summary.json.

    The stages, in order: :func:`prepare` (data, model, cached features), :func:`fit_and_test` (the Trainer and
    the kind's predictions), :func:`export` (``hf/`` and its card), :func:`summarize` (``summary.json``)."""
    attempt = plan_attempt(run, run_dir, config_hash(run), writer=is_rank_zero())
    summary = base_summary(run, overrides) | {
        "resumed_from": str(attempt.ckpt) if attempt.ckpt else None,
        "attempts": attempt.number,
    }
    write_summary(run_dir, summary)
    baseline = family_loop(run.model.family)  # a model family with its own loop: no tokenizer, no Lightning
    slow = slow_bf16_warning(run) if baseline is None else None
    if slow and is_rank_zero():
        log.warning(slow)
    loggers: list = []
    try:
        pl.seed_everything(run.seed, workers=True, verbose=False)
        # a baseline's or a strategy's own loop (encoderlab.strategies) trains outside the Lightning stages
        own = baseline or own_loop(run.finetune.strategy)
        if own is not None:
            loggers = build_loggers(run, run_dir, hydra_meta or {})
            return _finish_baseline(run_dir, summary | own(run, run_dir, overrides), loggers)
        built = prepare(run, run_dir, summary)
        loggers = build_loggers(built.run, run_dir, hydra_meta or {}, attempt.wandb_id)
        keep_metrics(loggers, attempt)
        fitted = fit_and_test(built, run_dir, summary, attempt, loggers)
        export(built, fitted, run_dir, overrides)
        summary |= summarize(built, fitted, attempt)
        summary |= built.kind.assess(built.run, summary) if getattr(built.kind, "assess", None) else {}
        write_summary(run_dir, summary)
        status = summary["status"]
        if status != "finished" and is_rank_zero():  # e.g. undertrained: kept, and said in one line with the fix
            why = "; ".join(str(summary[k]) for k in (status, f"{status}_fix") if summary.get(k))
            print(f"encoderlab: {status}: {why}  ({run_dir})", flush=True)
        if fitted.trainer.is_global_zero:  # after summary.json says finished: hf/ holds the best weights
            shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
        _finish_loggers(loggers, 0, summary)
        return summary
    except BaseException as e:
        summary |= {
            "status": "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(limit=8),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_summary(run_dir, summary)
        _finish_loggers(loggers, 1, summary)
        raise


def prepare(run: RunConfig, run_dir: Path, summary: dict) -> Built:
    """Stage 1: the strategy's run (``configure``), the kind's tokenizer, data and module, the strategy's extra data
    (a distilled run's teacher logits), a frozen encoder's cached features, the datamodule. Records
    ``data_seconds`` (and what the strategy adds, e.g. ``model`` / ``distill`` for distillation) in ``summary``."""
    kind = get_kind(run.task.kind)
    strategy = get_strategy(run.finetune.strategy)
    run, state = strategy.configure(run, summary)  # distillation: the teacher, and the student built from it
    root = cache_root(run.paths.cache_dir) if run.speed.cache_tokenized else None
    tokenizer = kind.tokenizer(run, run_dir) if kind.tokenizer else load_tokenizer(run.model)
    t_data = time.perf_counter()
    prepared = kind.prepare(run, tokenizer, root)
    summary["data_seconds"] = round(time.perf_counter() - t_data, 2)
    module = kind.build(run, prepared, tokenizer)
    trainable, total = count_parameters(module.network)
    log.info("parameters: %s trainable of %s", f"{trainable:,}", f"{total:,}")
    prepared, feature_seconds = strategy.extra_data(run, prepared, state, summary)  # e.g. a teacher's logits
    prepared, encode_seconds = maybe_cache_features(module, prepared, run, cache_root(run.paths.cache_dir))
    if encode_seconds is not None:
        feature_seconds = encode_seconds
    dm = EncoderDataModule(
        prepared.datasets,
        prepared.collator,
        run.batch_size,
        run.eval_batch_size,
        run.speed,
        seed=run.seed,
        lengths=prepared.lengths,
        batching=prepared.batching,
    )
    return Built(run, kind, tokenizer, prepared, module, dm, trainable, total, feature_seconds)


def fit_and_test(built: Built, run_dir: Path, summary: dict, attempt: Attempt, loggers: list) -> Fitted:
    """Stage 2: ``pl.Trainer.fit`` (resuming ``attempt.ckpt``), then ``test`` with the best weights, then the kind's
    ``predict`` (predictions files, metrics computed outside the loop)."""
    run, module, dm = built.run, built.module, built.datamodule
    beat = _heartbeat(run_dir, summary, attempt.seconds_before + built.feature_seconds)
    callbacks, ckpt, timer = build_callbacks(run, run_dir, beat)
    flop_counter = FlopCounter(run.trainer.extra.get("max_flops"))
    callbacks.append(flop_counter)
    _check_val_interval(run, len(built.prepared.datasets["train"]))
    trainer = pl.Trainer(
        default_root_dir=str(run_dir),
        logger=loggers,
        callbacks=callbacks,
        use_distributed_sampler=False,  # the datamodule shards each loader (evaluation without repeated rows)
        **precision_arg(run.precision),
        plugins=[AtomicCheckpointIO(), *cluster_plugins(), *precision_plugins(run.precision)],
        **_trainer_kwargs(run),
    )
    trainer.fit(module, datamodule=dm, ckpt_path=attempt.ckpt)
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    val = {k[4:]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if best:
        val_best = ckpt.best_model_score
        log.info("best %s = %.4f (%s)", ckpt.monitor, float(val_best), Path(best).name)
    test_out = trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)
    test = {k[5:]: float(v) for k, v in (test_out[0] if test_out else {}).items() if k.startswith("test/")}
    kind = built.kind
    extra = kind.predict(module, trainer, dm, built.prepared, run_dir) if kind.predict else {}
    test |= extra or {}
    return Fitted(trainer, timer, timer.best_val or val, test, flop_counter.flops)


def export(built: Built, fitted: Fitted, run_dir: Path, overrides: list[str]) -> None:
    """Stage 3: ``run_dir/hf/`` (the kind's export) and its model card, by the process of rank 0, unless
    ``save_model=false``; ``hf/`` appears only once complete."""
    run = built.run
    if run.save_model and fitted.trainer.is_global_zero:
        # written whole into a temporary folder, then swapped in by renames (the previous hf/ is moved aside before
        # it is deleted): a run killed while exporting leaves no half hf/
        tmp, hf, old = run_dir / ".hf.tmp", run_dir / "hf", run_dir / ".hf.old"
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(built.module, EncoderModule):  # bf16-true: export the fp32 weights, as other precisions do
            built.module.full_precision()
        built.kind.export(built.module, built.tokenizer, tmp, built.prepared)
        metrics = {"test": fitted.test, "validation": fitted.val}
        _model_card(tmp, built.kind, run, metrics, built.prepared.meta, overrides)
        kill_point("export")  # a fault for testing resume (ENCODERLAB_KILL_DURING)
        shutil.rmtree(old, ignore_errors=True)
        if hf.exists():
            os.replace(hf, old)
        os.replace(tmp, hf)
        shutil.rmtree(old, ignore_errors=True)


def summarize(built: Built, fitted: Fitted, attempt: Attempt) -> dict:
    """Stage 4: what a finished run adds to summary.json: metrics, epochs, cost (time, throughput, memory)."""
    module, trainer, timer = built.module, fitted.trainer, fitted.timer
    return {
        "status": "finished",
        "val": fitted.val,
        "test": fitted.test,
        "best_epoch": timer.best_epoch,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "planned_steps": getattr(module, "planned_steps", None),  # the schedule's length (max_steps or epochs)
        "train_flops": fitted.train_flops,
        # what this run paid to train: fitting, plus encoding the features when it had to, in every attempt
        "train_seconds": round(attempt.seconds_before + timer.fit_seconds + built.feature_seconds, 2),
        "feature_seconds": round(built.feature_seconds, 2),
        "train_samples_per_second": round(module.samples_seen / max(module.train_time, 1e-9), 2),
        "train_tokens_per_second": round(module.tokens_seen / max(module.train_time, 1e-9), 1),
        "predict_samples_per_second": (
            round(module.test_samples / module.test_time, 2) if module.test_time > 0 else None
        ),
        "trainable_params": built.trainable,
        "total_params": built.total,
        "peak_memory_mb": round(_peak_memory_mb(), 1),
        "data": built.prepared.meta,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _heartbeat(run_dir: Path, summary: dict, seconds_before: float):
    """Records the train seconds so far in summary.json: a run killed later still counts them when resumed."""

    def beat(fit_seconds: float) -> None:
        summary["train_seconds"] = round(seconds_before + fit_seconds, 2)
        write_summary(run_dir, summary)

    return beat


def _model_card(hf_dir: Path, kind: Kind, run: RunConfig, metrics: dict, meta: dict, overrides: list[str]) -> None:
    """hf/README.md, the card a hub user reads (one per model the kind exports, see ``Kind.card_parts``); a card
    that cannot be written never fails the run."""
    from encoderlab.deploy.card import write_model_card

    try:
        parts = kind.card_parts(run, metrics, meta) if kind.card_parts else [("", run, metrics, meta)]
        for folder, part_run, part_metrics, part_meta in parts:
            write_model_card(hf_dir / folder, part_run, part_metrics, part_meta, overrides)
    except Exception as err:
        log.warning("could not write the model card: %s", err)


def _finish_baseline(run_dir: Path, summary: dict, loggers: list) -> dict:
    """A run trained outside Lightning: its val/test metrics go to the same loggers and summary.json."""
    summary |= {
        "status": "finished",
        "peak_memory_mb": round(_peak_memory_mb(), 1),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    metrics = {f"{split}/{k}": v for split in ("val", "test") for k, v in summary[split].items()}
    for lg in loggers:
        lg.log_metrics(metrics, step=0)
        lg.save()
    write_summary(run_dir, summary)
    _finish_loggers(loggers, 0, summary)
    return summary


def _check_val_interval(run: RunConfig, train_rows: int) -> None:
    """Lightning refuses a val_check_interval (in steps) longer than an epoch only once the run has started."""
    t = run.trainer
    steps = t.extra.get("val_check_interval", t.val_check_interval)
    every_n_epochs = t.extra.get("check_val_every_n_epoch", t.check_val_every_n_epoch)  # extra wins, as in Lightning's
    if not isinstance(steps, int) or isinstance(steps, bool) or every_n_epochs is None:
        return
    batches = max(1, -(-train_rows // run.batch_size))
    if steps > batches:
        raise ConfigError(
            "trainer.val_check_interval",
            f"{steps} steps is longer than an epoch ({batches} batches); set trainer.check_val_every_n_epoch=null to "
            f"validate every {steps} steps across epochs, or use at most {batches}",
        )


def _trainer_kwargs(run: RunConfig) -> dict:
    t = asdict(run.trainer)
    extra = dict(t.pop("extra") or {})
    extra.pop("max_flops", None)  # encoderlab's FLOP budget (training/flops.FlopCounter), not a Trainer argument
    # null means "Lightning's default" except for check_val_every_n_epoch, where it means "count steps across
    # epochs" (val_check_interval in steps, for runs such as pre-training that are measured in steps)
    return {k: v for k, v in t.items() if v is not None or k == "check_val_every_n_epoch"} | extra


def _finish_loggers(loggers: list, exit_code: int, summary: dict) -> None:
    """W&B runs end in a ``finally`` path, so one crashed job does not poison the rest of a multirun."""
    for lg in loggers:
        exp = getattr(lg, "_experiment", None)
        if exp is None or not hasattr(exp, "finish"):
            continue
        try:
            if summary.get("status") == "finished":
                exp.summary.update({f"test/{k}": v for k, v in summary.get("test", {}).items()})
            else:
                exp.summary.update({"error": summary.get("error")})
            exp.finish(exit_code=exit_code)
        except Exception as err:  # never let logging hide the run's own outcome
            log.warning("could not finish W&B run: %s", err)
