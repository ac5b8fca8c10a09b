"""Kind: multi-task fine-tuning (MT-DNN, Liu et al. 2019; Sun et al. 2019 Sec. 5.5). One encoder, one head per task.

Each task is prepared and built by its own kind (sequence classification/regression, token classification), so a
task trains with the very loss, metrics and label maps of a single-task run of it. Its network is a Hugging Face
``*For<Task>`` model whose base model is then replaced by the one shared encoder: a forward pass of task ``t`` is
that model's own forward, and ``hf/<t>/`` is that model saved alone, which ``transformers.pipeline`` loads; its test
predictions go to ``tasks/<t>/``, the very files a single-task run of it writes (``predictions_test.jsonl``). The
freezing strategy and layer-wise LR decay see the shared encoder as *the* encoder (``MultiTaskNetwork.base_model``)
and every task's head as the head. Validation and test score each task on its own splits
(``val/<task>/<metric>``); ``val/mean``, the mean of the tasks' primary metrics, is the run's primary metric.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

from encoderlab.config.schema import RunConfig
from encoderlab.data.datamodule import to_rows
from encoderlab.errors import ConfigError
from encoderlab.kinds.base import KindFunctions, Prepared
from encoderlab.kinds.multitask.data import TASK_ID, TaskBatching, TaskCollator
from encoderlab.kinds.single import get_single_kind as get_kind
from encoderlab.models.encoder import build_config, build_model, save_pretrained
from encoderlab.models.module import STAGES, EncoderModule, _batch_size
from encoderlab.training.freezing import apply_strategy, exported

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
TASKS_DIR = "tasks"  # run_dir/tasks/<task>/: that task's predictions files, as a single-task run writes them


def sub_run(run: RunConfig, name: str) -> RunConfig:
    """The single-task run of sub-task ``name``: what its kind prepares and builds (before any freezing)."""
    return dataclasses.replace(
        run, task=run.task.subtasks[name], finetune=dataclasses.replace(run.finetune, strategy="full")
    )


# ---------------------------------------------------------------- data


def _lengths(part: Prepared, split: str, rows: list[dict]) -> list[int]:
    given = (part.lengths or {}).get(split)
    return list(given) if given is not None else [len(r["input_ids"]) for r in rows]


def prepare(run: RunConfig, tokenizer, cache_root: Path | None) -> Prepared:
    parts: dict[str, Prepared] = {}
    for name in run.task.tasks:
        sub = run.task.subtasks[name]
        parts[name] = get_kind(sub.kind).prepare(sub_run(run, name), tokenizer, cache_root)
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    lengths: dict[str, list[int]] = {s: [] for s in SPLITS}
    sizes: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, part in enumerate(parts.values()):
        for split in SPLITS:
            rows = to_rows(part.datasets[split])
            splits[split] += [row | {TASK_ID: i} for row in rows]
            lengths[split] += _lengths(part, split, rows)
            sizes[split].append(len(rows))
    own = {name: {"primary_metric": run.task.subtasks[name].primary_metric} for name in parts}
    meta = {
        "tasks": {name: part.meta | own[name] for name, part in parts.items()},
        "sizes": {split: dict(zip(parts, sizes[split], strict=True)) for split in SPLITS},
        "sampling": run.task.sampling,
    }
    batching = TaskBatching(sizes, run.task.sampling, run.task.temperature)
    log.info(
        "multitask: %s; train rows %s; %s sampling",
        ", ".join(parts),
        sizes["train"],
        run.task.sampling,
    )
    return Prepared(
        datasets=splits,
        collator=TaskCollator([p.collator for p in parts.values()]),
        meta=meta,
        extras={"tasks": parts},
        lengths=lengths,
        batching=batching,
    )


# ---------------------------------------------------------------- network and module


class MultiTaskNetwork(nn.Module):
    """The shared encoder and, per task, a Hugging Face head model whose base model *is* that encoder.

    The encoder is registered once here and again inside each head model; ``parameters()`` lists it once and a
    checkpoint stores its tensors once (torch.save keeps shared storage shared).
    """

    def __init__(self, encoder: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    @property
    def base_model(self) -> nn.Module:
        """The shared encoder, for the freezing strategies and LLRD (``training.param_groups.encoder_of``)."""
        return self.encoder

    def forward(self, task: str, **inputs):
        return self.heads[task](**inputs).logits


def share_encoder(model: nn.Module, encoder: nn.Module) -> None:
    """Make ``encoder`` the base model of the HF head model ``model`` (in place)."""
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or not isinstance(getattr(model, prefix, None), nn.Module):
        raise ConfigError("model", f"{type(model).__name__} has no base model to share; use a BERT-family encoder")
    setattr(model, prefix, encoder)


class MultiTaskModule(EncoderModule):
    """Routes each one-task batch to its task's own module (loss, metrics); logs per task and the mean."""

    def __init__(self, network: nn.Module, run: RunConfig, tasks: dict[str, EncoderModule], n_layers: int):
        super().__init__(network, run, n_layers)
        self.names = list(tasks)
        # a plain dict: each task module's network is one of this network's heads, registered there
        self._tasks = dict(tasks)
        # their metric states move with this module (device) and are gathered under DDP
        self.task_metrics = nn.ModuleDict(
            {n: m.metrics for n, m in tasks.items() if isinstance(getattr(m, "metrics", None), nn.Module)}
        )
        self._seen: dict[str, set[str]] = {s: set() for s in STAGES}

    def _route(self, batch: dict) -> tuple[str, dict]:
        name = self.names[int(batch[TASK_ID][0])]
        return name, {k: v for k, v in batch.items() if k != TASK_ID}

    def step(self, batch):
        name, inner = self._route(batch)
        return self._tasks[name].step(inner)

    def training_step(self, batch, batch_idx):
        name, inner = self._route(batch)
        loss, _ = self._tasks[name].step(inner)
        n = _batch_size(inner)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log(f"train/{name}/loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def update_metrics(self, stage, batch, outputs):
        name, inner = self._route(batch)
        self._seen[stage].add(name)
        self._tasks[name].update_metrics(stage, inner, outputs)

    def compute_metrics(self, stage):
        """``<task>/<metric>`` for every task evaluated this epoch, and ``mean`` of their primary metrics."""
        values: dict[str, float] = {}
        primaries, missed = [], []
        for name in self.names:
            if name not in self._seen[stage]:  # a capped evaluation (trainer.limit_val_batches) that missed it
                missed.append(name)
                continue
            sub = self._tasks[name]
            scores = sub.compute_metrics(stage)
            values |= {f"{name}/{k}": float(v) for k, v in scores.items()}
            if sub.run.task.primary_metric in scores:
                primaries.append(float(scores[sub.run.task.primary_metric]))
        self._seen[stage] = set()
        if missed and primaries:
            log.warning(
                "%s: no batch of %s was evaluated (trainer.limit_%s_batches below the number of tasks?); "
                "%s/mean is the mean of the others",
                stage,
                ", ".join(missed),
                stage,
                stage,
            )
        if primaries:
            values["mean"] = sum(primaries) / len(primaries)
        return values


def build(run: RunConfig, prepared: Prepared, tokenizer) -> MultiTaskModule:
    config = build_config(run.model, vocab_size=len(tokenizer), precision=run.precision)
    n_layers = config.num_hidden_layers
    encoder = build_model(run.model, AutoModel, config)
    tasks: dict[str, EncoderModule] = {}
    for name in run.task.tasks:
        sub = run.task.subtasks[name]
        module = get_kind(sub.kind).build(sub_run(run, name), prepared.extras["tasks"][name], tokenizer)
        share_encoder(module.network, encoder)
        tasks[name] = module
    network = MultiTaskNetwork(encoder, {name: m.network for name, m in tasks.items()})
    network = apply_strategy(network, run.finetune, n_layers)
    return MultiTaskModule(network, run, tasks, n_layers)


# ---------------------------------------------------------------- export


_AUTO = {
    "sequence_classification": AutoModelForSequenceClassification,
    "sequence_regression": AutoModelForSequenceClassification,
    "token_classification": AutoModelForTokenClassification,
}


def task_model(network: nn.Module, run: RunConfig, name: str) -> nn.Module:
    """Task ``name``'s model alone: a fresh HF head model with the shared encoder's and that head's weights."""
    head = network.heads[name]
    model = _AUTO[run.task.subtasks[name].kind].from_config(head.config)
    # the shared encoder may carry parts this head model has none of (a pooler, for token classification)
    missing, _ = model.load_state_dict(head.state_dict(), strict=False)
    if missing:
        raise RuntimeError(f"task {name}: weights missing from the trained model: {missing[:5]}")
    return model.eval()


def export(module: MultiTaskModule, tokenizer, out: Path, prepared: Prepared) -> None:
    """``out/<task>/``: one Hugging Face model per task (shared encoder + its head, its label maps)."""
    network = exported(module.network, module.run)  # e.g. LoRA adapters folded into the shared encoder
    for name in module.names:
        save_pretrained(task_model(network, module.run, name), tokenizer, out / name)


def predict(module: MultiTaskModule, trainer, datamodule, prepared: Prepared, run_dir: Path) -> dict:
    """Each task's own predictions files (its kind's ``predict``) in ``run_dir/tasks/<task>/``, so error analysis
    reads a task of a multitask run as it reads a single-task run of it."""
    extra: dict = {}
    for name in module.names:
        sub = module._tasks[name]
        kind = get_kind(sub.run.task.kind)
        if kind.predict is None:
            continue
        out = run_dir / TASKS_DIR / name
        if trainer.is_global_zero:
            out.mkdir(parents=True, exist_ok=True)
        sub.to(module.device)  # not a child module: its device is the one it was built on until told
        more = kind.predict(sub, trainer, datamodule, prepared.extras["tasks"][name], out) or {}
        extra |= {f"{name}/{k}": v for k, v in more.items()}
    return extra


def per_task(run: RunConfig, metrics: dict[str, dict], meta: dict):
    """(name, its single-task run config, its metrics by split, its data meta) for each task, for model cards."""
    for name in run.task.tasks:
        prefix = f"{name}/"
        own = {
            split: {k.removeprefix(prefix): v for k, v in (values or {}).items() if k.startswith(prefix)}
            for split, values in metrics.items()
        }
        yield name, dataclasses.replace(run, task=run.task.subtasks[name]), own, meta.get("tasks", {}).get(name, {})


def card_parts(run: RunConfig, metrics: dict[str, dict], meta: dict) -> list:
    """One model card per task model (``hf/<task>/``), with that task's own config and metrics."""
    return list(per_task(run, metrics, meta))


KIND = KindFunctions(prepare=prepare, build=build, export=export, predict=predict, card_parts=card_parts)
