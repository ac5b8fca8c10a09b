"""The LightningModule base shared by every task kind, and the sequence classification/regression module.

The module receives a *built* network; what trains was decided (``apply_freezing``) before the Trainer
wraps it. Optimizer and schedule come from config through ``training/``: parameter groups with no-decay
sets and layer-wise LR decay, a schedule whose warmup is a ratio of the run's real number of optimizer
steps, and the strategy's per-step hook (gradual unfreezing: per-group LR scales, never ``requires_grad`` toggles,
so DDP stays correct).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from torch import nn
from torchmetrics import MeanMetric

from encoderlab.config.schema import OptimizerConfig, RunConfig
from encoderlab.errors import ConfigError
from encoderlab.metrics.classification import classification_metrics, regression_metrics
from encoderlab.strategies import get_strategy
from encoderlab.training.master_weights import MasterWeights
from encoderlab.training.optim import build_optimizer
from encoderlab.training.param_groups import build_param_groups, num_layers
from encoderlab.training.schedules import build_scheduler

STAGES = ("val", "test")
log = logging.getLogger(__name__)


class EncoderModule(pl.LightningModule):
    """Shared training loop. Subclasses implement ``step``, ``update_metrics`` and ``compute_metrics``."""

    def __init__(self, network: nn.Module, run: RunConfig, n_layers: int | None = None):
        super().__init__()
        self.network = network.train()  # HF loads checkpoints in eval mode; Lightning keeps module modes
        self.run = run
        self.n_layers = n_layers if n_layers is not None else num_layers(network)
        self.strategy_hook = None  # the strategy's step hook (Strategy.step_hook), e.g. a GradualUnfreezer
        # the evaluation loss as a metric, not self.log(sync_dist=True): Lightning averages the per-rank row counts
        # as integers, which is wrong when ranks evaluate different numbers of rows (they do: no repeated rows)
        self.eval_loss = nn.ModuleDict({s: MeanMetric().set_dtype(torch.float64) for s in STAGES})
        self.samples_seen = 0
        self.planned_steps: int | None = None  # the optimizer steps the schedule runs over
        self._tokens: list[torch.Tensor] = []  # per-batch counts, read once: reading each would sync a GPU every step
        self._tokens_read = 0
        self.train_time = 0.0
        self._t0: float | None = None
        # inference speed on the test split (forward + metrics, eval_batch_size): predict samples/s in summary.json
        self.test_samples = 0
        self.test_time = 0.0
        # precision=bf16-true: the optimizer's fp32 copies of the bf16 network's weights (training/master_weights)
        self.masters: MasterWeights | None = None
        self._master_start: dict[str, torch.Tensor] | None = None

    # ---- what a kind implements -------------------------------------------------------------------
    def step(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Loss and whatever ``update_metrics`` needs."""
        raise NotImplementedError

    def update_metrics(self, stage: str, batch: dict, outputs: dict) -> None:
        raise NotImplementedError

    def compute_metrics(self, stage: str) -> dict[str, float]:
        """Metrics of the finished epoch (and reset them)."""
        raise NotImplementedError

    # ---- the loop ----------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx):
        self._t0 = time.perf_counter()
        if self.strategy_hook is not None:
            sched = self.lr_schedulers()
            self.strategy_hook.apply(self.optimizers().optimizer, self.global_step, sched)

    def training_step(self, batch, batch_idx):
        loss, _ = self.step(batch)
        n = _batch_size(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self._t0 is not None:
            self.train_time += time.perf_counter() - self._t0
        self.samples_seen += _batch_size(batch)
        if "attention_mask" in batch:
            self._tokens.append(batch["attention_mask"].sum())
            if len(self._tokens) >= 256:
                self._tokens = [torch.stack(self._tokens).sum()]

    @property
    def tokens_seen(self) -> int:
        """Non-padding tokens trained on so far."""
        if self._tokens:
            self._tokens_read += int(torch.stack(self._tokens).sum())
            self._tokens = []
        return self._tokens_read

    def on_test_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._t0 = time.perf_counter()

    def on_test_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
        if self._t0 is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # kernels run asynchronously: count them within this batch
            self.test_time += time.perf_counter() - self._t0
            self._t0 = None
        self.test_samples += _batch_size(batch)

    def _eval_step(self, stage: str, batch) -> None:
        loss, outputs = self.step(batch)
        self.eval_loss[stage].update(loss.detach(), weight=_batch_size(batch))
        self.update_metrics(stage, batch, outputs)

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch)

    def _log_epoch(self, stage: str) -> None:
        values = self.compute_metrics(stage)
        if self.eval_loss[stage].update_count:  # every rank evaluated a batch or none did: all take part in the sync
            values = {"loss": float(self.eval_loss[stage].compute())} | values
        self.eval_loss[stage].reset()
        # torchmetrics already synchronised these across processes: every rank holds the same value, which the max
        # keeps exactly (a mean of equal values can be 1 ulp off); sync_dist only quiets Lightning's check
        logged = {f"{stage}/{k}": float(v) for k, v in values.items()}
        self.log_dict(logged, prog_bar=(stage == "val"), sync_dist=True, reduce_fx="max")

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")

    # ---- optimization ------------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = optimizer_config(self.run)
        groups = build_param_groups(self.network, opt, self.n_layers)
        if self.run.precision == "bf16-true":
            self.masters = MasterWeights(self.network, self._master_start)
            self._master_start = None
            groups = self.masters.swap(groups)
        # fp16 with a loss scaler: the scaler unscales before clipping, which a fused kernel would do itself
        optimizer = build_optimizer(groups, opt, fused=self.run.precision not in ("16-mixed", "16"))
        if self.masters is not None:
            self.masters.attach(optimizer)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        self.planned_steps = total
        scheduler = build_scheduler(optimizer, self.run.scheduler, total, self._budget_clock())
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        # the strategy's per-step behaviour (gradual unfreezing's LR scales), applied before every optimizer step
        self.strategy_hook = get_strategy(self.run.finetune.strategy).step_hook(
            self.run.finetune, self.n_layers, total, per_epoch
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _budget_clock(self):
        """scheduler.clock=time: the fraction of the time budget (Lightning's Timer, ``max_time``) spent so far. The
        Timer is checkpointed: a resumed run continues from the time its earlier attempts used. scheduler.clock=flops:
        the fraction of the FLOP budget (``max_flops``, training/flops.FlopCounter, checkpointed too)."""
        if self.run.scheduler.clock == "flops":
            from encoderlab.training.flops import FlopCounter

            counter = next((c for c in self.trainer.callbacks if isinstance(c, FlopCounter)), None)
            if counter is None or not counter.max_flops:
                raise ConfigError(
                    "scheduler.clock", "'flops' needs a FLOP budget: add +trainer.extra.max_flops=<FLOPs>"
                )
            return counter.fraction
        if self.run.scheduler.clock != "time":
            return None
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None:
            raise ConfigError("scheduler.clock", "'time' needs a time budget: add +trainer.extra.max_time=DD:HH:MM:SS")

        def spent() -> float:  # read once per step by every process: rank 0's clock, so that all use one LR
            used, left = timer.time_elapsed("train"), timer.time_remaining("train")
            return float(self.trainer.strategy.broadcast(used / (used + left) if used + left > 0 else 1.0, src=0))

        return spent

    def on_before_optimizer_step(self, optimizer):
        if self.masters is not None:  # before clipping: it clips the fp32 copies' gradients
            self.masters.take_grads()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.masters is not None:  # the weights a resumed run or an export continues from: fp32
            self.masters.into_state(checkpoint["state_dict"], self.network, "network.")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.run.precision != "bf16-true":
            return
        state = checkpoint.get("state_dict") or {}
        if self.masters is not None:  # testing the best checkpoint after fitting
            self.masters.load(state, self.network, "network.")
        else:  # resuming: the optimizer is built later, its copies start from these
            self._master_start = {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}

    def full_precision(self) -> None:
        """bf16-true: the network back in fp32 with its exact weights (the optimizer's copies), for an export."""
        if self.masters is not None:
            self.masters.to_full_precision(self.network)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Lightning's clipping, also for a fused optimizer under bf16-mixed: Lightning refuses any optimizer that
        unscales gradients itself under mixed precision, though without a loss scaler (bf16) there is nothing to
        unscale and the gradients are the true ones, as in fp32."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if not gradient_clip_val or scaler is not None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)


def optimizer_config(run: RunConfig) -> OptimizerConfig:
    """``run.optimizer`` with the head LR resolved: ``optimizer.head_lr``, else the strategy's ``finetune.head_lr``
    (a probe on a frozen encoder needs a far larger LR than the encoder's), else ``optimizer.lr``."""
    opt = run.optimizer
    if opt.head_lr is None and run.finetune.head_lr is not None:
        opt = dataclasses.replace(opt, head_lr=run.finetune.head_lr)
    return opt


def _batch_size(batch: dict) -> int:
    for key in ("labels", "input_ids", "features", "start_positions"):
        if key in batch:
            return int(batch[key].shape[0])
    return 1


class SequenceModule(EncoderModule):
    """Sequence classification / regression, for a HF ``*ForSequenceClassification`` or a FeatureModel."""

    def __init__(
        self, network: nn.Module, run: RunConfig, num_labels: int, n_layers: int | None = None, regression: bool = False
    ):
        super().__init__(network, run, n_layers)
        self.regression = regression  # one output scored by MSE and the regression metrics (the kind says which)
        self.num_labels = num_labels
        make = (
            (lambda: regression_metrics(run.task.metrics))
            if self.regression
            else (lambda: classification_metrics(run.task.metrics, num_labels))
        )
        self.metrics = nn.ModuleDict({s: make() for s in STAGES})

    def logits(self, batch: dict) -> torch.Tensor:
        if hasattr(self.network, "head"):  # FeatureModel
            return self.network(batch)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return self.network(**inputs).logits

    def step(self, batch):
        logits = self.logits(batch).float()
        labels = batch["labels"]
        if self.regression:
            preds = logits.squeeze(-1)
            loss = nn.functional.mse_loss(preds, labels.float())
        else:
            loss = nn.functional.cross_entropy(logits, labels)
            preds = logits.argmax(-1)
        return loss, {"preds": preds, "logits": logits}

    def update_metrics(self, stage, batch, outputs):
        self.metrics[stage].update(outputs["preds"], batch["labels"].to(outputs["preds"].dtype))

    def compute_metrics(self, stage):
        values = {k: float(v) for k, v in self.metrics[stage].compute().items()}
        self.metrics[stage].reset()
        return values


class ChunkedSequenceModule(SequenceModule):
    """``task.long_text=chunks``: the encoder scores every window of a document, the document's logits pool them."""

    def logits(self, batch: dict) -> torch.Tensor:
        if "chunk_doc" not in batch:
            return super().logits(batch)
        from encoderlab.kinds.sequence.long_text import MODEL_FIELDS, pool_chunks

        windows = super().logits({k: v for k, v in batch.items() if k in MODEL_FIELDS})
        owner = batch["chunk_doc"]
        n_docs = int(batch["labels"].shape[0]) if "labels" in batch else int(owner.max()) + 1
        return pool_chunks(windows.float(), owner, n_docs, self.run.task.chunk_pooling)
