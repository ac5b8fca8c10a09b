"""Kind: pre-training (masked LM, + NSP or SOP, or ELECTRA), from scratch or continued from a checkpoint.

``BertForMaskedLM`` for MLM alone, ``BertForPreTraining`` for MLM + NSP/SOP (SOP reuses the 2-way
``seq_relationship`` head). The MLM head runs on the masked positions only (the "sparse prediction" of
Cramming / MosaicBERT): with ~15% of tokens masked, projecting every position onto a 30k vocabulary would spend
most of a small model's compute on outputs that carry no loss. The export is a plain Hugging Face folder:
``pipeline("fill-mask")`` loads it, and ``model=from_checkpoint model.path=<run>/hf`` fine-tunes it.

``objective: electra`` (Clark et al. 2020, replaced-token detection): a small generator (``ElectraForMaskedLM``,
``task.mlm.generator_size`` of the hidden size) fills the masked positions with its own samples and the discriminator
(``ElectraForPreTraining``) learns, for every token, whether it was replaced; the two share the embeddings and the
loss is ``mlm_loss + task.mlm.rtd_weight * rtd_loss``. The discriminator learns from all tokens, not the masked 15%. The
export is the discriminator (``hf/``, fine-tunes like any checkpoint) and the generator (``hf/generator``, fill-mask).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from datasets import DatasetDict
from torch import nn
from torchmetrics import MeanMetric
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForPreTraining,
)

from encoderlab.config.schema import RunConfig, TaskConfig
from encoderlab.data import cache as data_cache
from encoderlab.data.corpora import load_corpus_dir, split_corpus
from encoderlab.data.sources import load_source, subsample
from encoderlab.data.wordpiece import train_wordpiece
from encoderlab.errors import ConfigError
from encoderlab.kinds.base import KindFunctions, Prepared
from encoderlab.kinds.pretraining.data import check_max_positions, preprocess_pretraining
from encoderlab.kinds.pretraining.masking import MLMCollator
from encoderlab.kinds.pretraining.serving import SERVING
from encoderlab.models.encoder import (
    build_config,
    build_model,
    check_length,
    load_tokenizer,
    position_limit,
    save_pretrained,
)
from encoderlab.models.module import EncoderModule
from encoderlab.strategies import get_strategy
from encoderlab.training.freezing import apply_freezing

log = logging.getLogger(__name__)

SENTENCE_LABEL = {"nsp": "next_sentence_label", "sop": "sentence_order_label"}
STAGES = ("train", "val", "test")
UNIGRAM_ROWS = 20_000  # training rows counted for the unigram baseline's token
MIN_STEP_FRACTION = 0.1  # the undertrained floor (see assess)
UNDERTRAINED_FIX = (
    "give it a longer budget (+trainer.extra.max_time, +trainer.extra.max_flops or trainer.max_steps), a smaller "
    "model (e.g. model=bert_tiny_preln) or precision=32-true"
)


# ------------------------------------------------------------------------------------------------------ data


def load_corpus(task: TaskConfig) -> DatasetDict:
    """The raw corpus (one row per document, column ``text``) split into train / validation / test documents."""
    raw = load_corpus_dir(task) if task.data_dir else load_source(task)
    return split_corpus(raw, task)


def tokenizer(run: RunConfig, run_dir: Path):
    """The model's own tokenizer, or (``model.train_tokenizer``) a WordPiece vocabulary learned on train documents."""
    model = run.model
    if not model.train_tokenizer:
        return load_tokenizer(model)
    if not model.from_scratch:
        raise ConfigError(
            "model.train_tokenizer",
            "a checkpoint's embeddings belong to its own vocabulary: train a tokenizer only with "
            "model.from_scratch=true",
        )
    texts = load_corpus(run.task)["train"]["text"]
    log.info(
        "training a WordPiece vocabulary (%d tokens, lowercase=%s) on the train documents",
        model.vocab_size,
        model.lowercase,
    )
    return train_wordpiece(texts, model.vocab_size, model.lowercase, run_dir / "tokenizer")


def collator(run: RunConfig, tokenizer) -> MLMCollator:
    task = run.task
    return MLMCollator(
        tokenizer,
        mlm_probability=task.mlm.mlm_probability,
        mask_replace_prob=task.mlm.mask_replace_prob,
        random_replace_prob=task.mlm.random_replace_prob,
        keep_prob=task.mlm.keep_prob,
        whole_word_mask=task.mlm.whole_word_mask,
        pad_to_multiple_of=run.speed.pad_to_multiple_of,
        max_length=task.max_seq_length if run.speed.padding == "max_length" else None,
    )


def prepare(run: RunConfig, tokenizer, cache_root: Path | None) -> Prepared:
    task = run.task
    limit = position_limit(build_config(run.model, vocab_size=len(tokenizer)))
    check_max_positions(task, limit)

    def build():
        ds, stats = preprocess_pretraining(load_corpus(task), tokenizer, task, max_positions=limit)
        return ds, {"pretraining": stats, "sizes": {k: len(v) for k, v in ds.items()}}

    key = data_cache.fingerprint(task, tokenizer)
    ds, meta = data_cache.cached(cache_root, f"{task.kind}-{task.name}", key, build)
    ds = subsample(ds, task, task.split_seed)  # max_train_samples / max_eval_samples count examples
    meta["data_key"] = key
    meta["sizes"] = {k: len(v) for k, v in ds.items()}
    meta["unigram_token"] = most_frequent_token(ds["train"], tokenizer)
    return Prepared(datasets=ds, collator=collator(run, tokenizer), meta=meta)


def most_frequent_token(train, tokenizer, rows: int = UNIGRAM_ROWS) -> int | None:
    """The most frequent maskable token (not special) of the first ``rows`` training rows: the unigram baseline
    predicts it at every masked position."""
    import numpy as np

    if not len(train):
        return None
    ids = train.select(range(min(rows, len(train))))["input_ids"]
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in ids]) if ids else np.zeros(0, dtype=np.int64)
    flat = flat[~np.isin(flat, sorted(set(tokenizer.all_special_ids)))]
    return int(np.bincount(flat).argmax()) if flat.size else None


# ----------------------------------------------------------------------------------------------------- model


def build(run: RunConfig, prepared: Prepared, tokenizer) -> PretrainingModule:
    task, model_cfg = run.task, run.model
    if get_strategy(run.finetune.strategy).keeps_encoder_fixed:
        raise ConfigError("finetune.strategy", "pre-training trains the encoder: use finetune=full (or top_k)")
    config = build_config(
        model_cfg, vocab_size=len(tokenizer), precision=run.precision, pad_token_id=tokenizer.pad_token_id
    )
    if len(tokenizer) > config.vocab_size:
        raise ConfigError(
            "model.tokenizer_path",
            f"the tokenizer has {len(tokenizer)} tokens but the checkpoint's embeddings only {config.vocab_size}",
        )
    check_length(task.max_seq_length, config)
    if task.mlm.objective == "electra":
        network = build_electra(run, config)
        return PretrainingModule(network, run, config.num_hidden_layers, prepared.meta.get("unigram_token"))
    auto = AutoModelForMaskedLM if task.mlm.objective == "none" else AutoModelForPreTraining
    network = build_model(model_cfg, auto, config)
    if not model_cfg.from_scratch:
        log.info(
            "continued pre-training of %s with %s: head weights absent from the checkpoint (e.g. MiniLM's cls.*) "
            "start from a fresh initialisation",
            model_cfg.path,
            type(network).__name__,
        )
    apply_freezing(network, run.finetune, config.num_hidden_layers)
    return PretrainingModule(network, run, config.num_hidden_layers, prepared.meta.get("unigram_token"))


class ElectraPretrainer(nn.Module):
    """Generator + discriminator with shared embeddings; ``base_model`` is the discriminator's encoder."""

    def __init__(self, generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        # token, position and type embeddings shared (ELECTRA section 3.2); the generator's output layer stays tied
        generator.electra.embeddings = discriminator.electra.embeddings
        generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight

    @property
    def base_model(self) -> nn.Module:
        return self.discriminator.electra

    @property
    def config(self) -> ElectraConfig:
        return self.discriminator.config


def build_electra(run: RunConfig, config) -> ElectraPretrainer:
    """ELECTRA networks of the configured size (``config``: the architecture ``build_config`` made), from scratch."""
    model_cfg, task = run.model, run.task
    if not model_cfg.from_scratch:
        raise ConfigError(
            "model.from_scratch",
            "task.mlm.objective=electra pre-trains a generator and a discriminator from scratch: "
            "set model.from_scratch=true",
        )
    if model_cfg.architecture != "bert":
        raise ConfigError("model.architecture", "ELECTRA builds BERT-style (post-LayerNorm) networks: use 'bert'")
    hidden, heads = config.hidden_size, config.num_attention_heads
    common = dict(
        vocab_size=config.vocab_size,
        embedding_size=hidden,
        num_hidden_layers=config.num_hidden_layers,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        pad_token_id=config.pad_token_id,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
    )
    gen_heads = max(1, round(heads * task.mlm.generator_size))
    gen_hidden = max(gen_heads, round(hidden * task.mlm.generator_size / gen_heads) * gen_heads)
    disc = ElectraConfig(
        hidden_size=hidden, num_attention_heads=heads, intermediate_size=config.intermediate_size, **common
    )
    gen = ElectraConfig(
        hidden_size=gen_hidden, num_attention_heads=gen_heads, intermediate_size=4 * gen_hidden, **common
    )
    log.info(
        "ELECTRA: discriminator hidden %d, generator hidden %d (%d heads), %d layers, shared embeddings",
        hidden,
        gen_hidden,
        gen_heads,
        config.num_hidden_layers,
    )
    disc._attn_implementation = gen._attn_implementation = config._attn_implementation
    return ElectraPretrainer(ElectraForMaskedLM(gen), ElectraForPreTraining(disc))


def _mean() -> MeanMetric:
    return MeanMetric().set_dtype(torch.float64)


def _sparse_heads(network: nn.Module):
    """(MLM head over hidden states, sentence head over the pooled output) of a BERT or RoBERTa model, else
    (None, None)."""
    cls = getattr(network, "cls", None)
    mlm = getattr(cls, "predictions", None) or getattr(network, "lm_head", None)
    return mlm, getattr(cls, "seq_relationship", None)


def _sentence_logits(out) -> torch.Tensor:
    """The 2-way sentence head's logits: ``seq_relationship_logits`` (BERT NSP/SOP) or ``sop_logits`` (ALBERT)."""
    for name in ("seq_relationship_logits", "sop_logits"):
        logits = getattr(out, name, None)
        if logits is not None:
            return logits
    raise ConfigError(
        "task.mlm.objective",
        f"{type(out).__name__} has no sentence-pair head (seq_relationship_logits or sop_logits); "
        "use task.mlm.objective=none",
    )


class PretrainingModule(EncoderModule):
    """MLM loss + accuracy on masked positions + perplexity; NSP/SOP accuracy; non-padding tokens per second.

    ``unigram_accuracy``: the accuracy on the same masked positions of always predicting ``unigram_token`` (the
    most frequent token of the training data), the floor a model that learnt anything beats."""

    def __init__(
        self, network: nn.Module, run: RunConfig, n_layers: int | None = None, unigram_token: int | None = None
    ):
        super().__init__(network, run, n_layers)
        self.objective = run.task.mlm.objective
        self.sentence_key = SENTENCE_LABEL.get(self.objective)
        self.unigram_token = unigram_token
        names = ["mlm_loss", "mlm_accuracy", "unigram_accuracy"] + (["sentence_accuracy"] if self.sentence_key else [])
        if self.objective == "electra":
            names += ["rtd_loss", "rtd_accuracy"]
        # keyed "<stage>_": a ModuleDict key may not shadow nn.Module attributes such as ``train``
        # float64 sums: the order in which the ranks' batches are added does not show in the result
        self.metrics = nn.ModuleDict({f"{s}_": nn.ModuleDict({n: _mean() for n in names}) for s in STAGES})

    def step(self, batch: dict) -> tuple[torch.Tensor, dict]:
        if self.objective == "electra":
            return self.electra_step(batch)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        labels = batch["labels"]
        selected = labels != -100
        targets = labels[selected]
        sentence_logits = None
        mlm_head, sentence_head = _sparse_heads(self.network)
        if mlm_head is not None:
            out = self.network.base_model(**inputs)
            mlm_logits = mlm_head(out[0][selected])
            if self.sentence_key:
                sentence_logits = sentence_head(out[1])
        else:  # a non-BERT head model: full logits, then the masked positions
            out = self.network(**inputs)
            logits = out.logits if hasattr(out, "logits") else out.prediction_logits
            mlm_logits = logits[selected]
            sentence_logits = _sentence_logits(out) if self.sentence_key else None
        n = int(targets.numel())
        if not n:
            mlm_loss = mlm_logits.float().sum() * 0.0
        elif self.run.precision == "bf16-true":
            # the log-softmax over the vocabulary on the bf16 logits (the CPU kernel accumulates in fp32; ~3x faster
            # than on fp32 logits), the mean over the masked tokens in fp32
            mlm_loss = nn.functional.cross_entropy(mlm_logits, targets, reduction="none").float().mean()
        else:
            mlm_loss = nn.functional.cross_entropy(mlm_logits.float(), targets)
        outputs = {
            "mlm_loss": mlm_loss.detach(),
            "n_masked": n,
            "mlm_correct": (mlm_logits.argmax(-1) == targets).float().detach(),
        }
        loss = mlm_loss
        if self.sentence_key:
            sent_labels = batch[self.sentence_key]
            sentence_logits = sentence_logits.float()
            loss = loss + nn.functional.cross_entropy(sentence_logits, sent_labels)
            outputs["sentence_correct"] = (sentence_logits.argmax(-1) == sent_labels).float().detach()
        return loss, outputs

    def electra_step(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Generator MLM on the masked positions, its samples in their place, replaced-token detection on all."""
        net: ElectraPretrainer = self.network
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        labels = batch["labels"]
        selected = labels != -100
        targets = labels[selected]
        hidden = net.generator.electra(**inputs)[0][selected]
        gen_logits = net.generator.generator_lm_head(net.generator.generator_predictions(hidden)).float()
        n = int(targets.numel())
        mlm_loss = nn.functional.cross_entropy(gen_logits, targets) if n else gen_logits.sum() * 0.0
        with torch.no_grad():  # the discriminator's input is a sample: no gradient flows back to the generator
            sampled = torch.multinomial(torch.softmax(gen_logits, -1), 1).squeeze(-1) if n else targets
        corrupted = batch["input_ids"].masked_scatter(selected, sampled)
        replaced = torch.zeros_like(labels, dtype=torch.float32).masked_scatter(selected, (sampled != targets).float())
        disc_logits = net.discriminator(**(inputs | {"input_ids": corrupted})).logits.float()
        active = batch["attention_mask"].bool() if "attention_mask" in batch else torch.ones_like(selected)
        rtd_logits, rtd_labels = disc_logits[active], replaced[active]
        rtd_loss = nn.functional.binary_cross_entropy_with_logits(rtd_logits, rtd_labels)
        outputs = {
            "mlm_loss": mlm_loss.detach(),
            "n_masked": n,
            "mlm_correct": (gen_logits.argmax(-1) == targets).float().detach(),
            "rtd_loss": rtd_loss.detach(),
            "n_tokens": int(rtd_labels.numel()),
            "rtd_correct": ((rtd_logits > 0).float() == rtd_labels).float().detach(),
        }
        return mlm_loss + self.run.task.mlm.rtd_weight * rtd_loss, outputs

    def update_metrics(self, stage: str, batch: dict, outputs: dict) -> None:
        m = self.metrics[f"{stage}_"]
        if "rtd_loss" in outputs:
            m["rtd_loss"].update(outputs["rtd_loss"], weight=outputs["n_tokens"])
            m["rtd_accuracy"].update(outputs["rtd_correct"])
        if outputs["n_masked"]:
            m["mlm_loss"].update(outputs["mlm_loss"], weight=outputs["n_masked"])
            m["mlm_accuracy"].update(outputs["mlm_correct"])
            if stage != "train" and self.unigram_token is not None:
                targets = batch["labels"][batch["labels"] != -100]
                m["unigram_accuracy"].update((targets == self.unigram_token).float())
        if "sentence_correct" in outputs:
            m["sentence_accuracy"].update(outputs["sentence_correct"])

    def compute_metrics(self, stage: str) -> dict[str, float]:
        m = self.metrics[f"{stage}_"]
        values = {}
        for name, metric in m.items():
            if metric.update_count:
                values[name] = float(metric.compute())
            metric.reset()
        if "mlm_loss" in values:
            values["perplexity"] = math.exp(min(values["mlm_loss"], 50.0))
        return values

    def training_step(self, batch, batch_idx):
        loss, outputs = self.step(batch)
        n = int(batch["input_ids"].shape[0])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        if outputs["n_masked"]:
            self.log("train/mlm_loss", outputs["mlm_loss"], on_step=True, on_epoch=False, batch_size=n)
            self.log("train/mlm_accuracy", outputs["mlm_correct"].mean(), on_step=True, on_epoch=False, batch_size=n)
        if "sentence_correct" in outputs:
            self.log("train/sentence_accuracy", outputs["sentence_correct"].mean(), on_step=True, batch_size=n)
        self.update_metrics("train", batch, outputs)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        super().on_train_batch_end(outputs, batch, batch_idx)
        if self.train_time > 0:
            self.log("train/tokens_per_second", self.tokens_seen / self.train_time, on_step=True, on_epoch=False)

    def on_train_epoch_end(self):
        values = self.compute_metrics("train")
        self.log_dict({f"train/{k}_epoch": v for k, v in values.items()})


# ------------------------------------------------------------------------------------------------- the floor


def assess(run: RunConfig, summary: dict) -> dict:
    """The undertrained floor: a pre-training run that made fewer than ``MIN_STEP_FRACTION`` (10%) of its planned
    optimizer steps, or whose held-out MLM accuracy (test split, else validation) is not above the unigram baseline
    (always predicting the most frequent training token, on the same masked positions), is ``undertrained``."""
    steps, planned = summary.get("steps"), summary.get("planned_steps")
    held = summary.get("test") or summary.get("val") or {}
    acc, unigram = held.get("mlm_accuracy"), held.get("unigram_accuracy")
    short = []
    if steps is not None and planned and steps < MIN_STEP_FRACTION * planned:
        short.append(f"{steps:,} of {planned:,} planned steps (under {MIN_STEP_FRACTION:.0%})")
    if acc is not None and unigram is not None and acc <= unigram:
        short.append(f"held-out MLM accuracy {acc:.3f}, not above the unigram baseline {unigram:.3f}")
    if not short:
        return {}
    return {"status": "undertrained", "undertrained": "; ".join(short), "undertrained_fix": UNDERTRAINED_FIX}


# ---------------------------------------------------------------------------------------------------- export


def export(module: PretrainingModule, tokenizer, out: Path, prepared: Prepared) -> None:
    """model + tokenizer; ``AutoModelForMaskedLM`` / ``pipeline("fill-mask")`` load it, fine-tuning too.
    ELECTRA: the discriminator in ``out`` (what fine-tuning starts from), the generator in ``out/generator``."""
    if isinstance(module.network, ElectraPretrainer):
        save_pretrained(module.network.discriminator, tokenizer, out)
        save_pretrained(module.network.generator, tokenizer, out / "generator")
        return
    save_pretrained(module.network, tokenizer, out)


KIND = KindFunctions(prepare=prepare, build=build, export=export, tokenizer=tokenizer, assess=assess, serving=SERVING)

__all__ = [
    "KIND",
    "ElectraPretrainer",
    "assess",
    "PretrainingModule",
    "build_electra",
    "build",
    "export",
    "load_corpus",
    "prepare",
    "tokenizer",
]
