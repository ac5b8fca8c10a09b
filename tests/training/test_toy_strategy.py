"""Adding a strategy takes one module and one config file: "freeze every other layer", written into a temporary
folder as a user would write it (its module registers it, its config file is a ``finetune`` option on the config
search path), trains a tiny model through the ordinary runner, and the frozen layers end where they started while
the others moved. Nothing of encoderlab is edited for it."""

from __future__ import annotations

import importlib
import sys
import textwrap

import torch
from hydra import compose, initialize_config_dir
from support import ROOT, TINY, reviews_task

import encoderlab.cli.train  # noqa: F401  (registers the schema `encoderlab_schema`)
from encoderlab import strategies
from encoderlab.config.schema import CallbacksConfig, TrainerConfig
from encoderlab.config.validate import validate

torch.set_num_threads(1)

MODULE = '''
"""finetune=every_other_layer: encoder layers 1, 3, 5, ... (counted from 0) stay frozen; the rest trains."""

from encoderlab.strategies import register
from encoderlab.strategies.base import Strategy
from encoderlab.training.param_groups import named_layer_ids


class EveryOtherLayer(Strategy):
    name = "every_other_layer"
    per_layer = True  # it addresses single layers: a model with shared layers is refused
    initial = {}  # the weights each run started from, to compare with its export

    def freeze(self, model, cfg, n_layers):
        for _, p, layer_id in named_layer_ids(model, n_layers):  # 0 embeddings, 1..n the layers, n + 1 the head
            if 1 <= layer_id <= n_layers and (layer_id - 1) % 2 == 1:
                p.requires_grad_(False)
        self.initial.update({k: v.detach().clone() for k, v in model.state_dict().items()})


STRATEGY = register(EveryOtherLayer())
'''

CONFIG = """
# Freeze every other encoder layer (1, 3, ... counted from 0); embeddings, the other layers and the head train.
strategy: every_other_layer
"""


def test_a_strategy_added_as_one_module_and_one_config_file_freezes_its_layers(tmp_path, monkeypatch, cache_dir):
    from transformers import AutoModelForSequenceClassification

    from encoderlab.runner import execute

    (tmp_path / "every_other_layer.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "conf" / "finetune").mkdir(parents=True)
    (tmp_path / "conf" / "finetune" / "every_other_layer.yaml").write_text(CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(strategies, "_REGISTERED", dict(strategies._REGISTERED))  # registered for this test only
    monkeypatch.delitem(sys.modules, "every_other_layer", raising=False)
    strategy = importlib.import_module("every_other_layer").STRATEGY

    overrides = [o for o in TINY if not o.startswith("trainer")] + [
        "model.num_hidden_layers=4",
        "finetune=every_other_layer",
        "optimizer.lr=1e-2",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        run = validate(compose("config", overrides=overrides))
    assert run.finetune.strategy == "every_other_layer"
    run.task = reviews_task(max_seq_length=32)
    run.trainer = TrainerConfig(max_steps=4, max_epochs=1, accelerator="cpu", devices=1, enable_progress_bar=False)
    run.callbacks = CallbacksConfig(early_stopping=False, checkpoint=False, rich_progress=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    summary = execute(run, run_dir, ["finetune=every_other_layer"])

    assert summary["status"] == "finished" and summary["strategy"] == "every_other_layer"
    trained = AutoModelForSequenceClassification.from_pretrained(run_dir / "hf").state_dict()
    start = strategy.initial
    for i in range(4):
        layer = {k for k in start if f"encoder.layer.{i}." in k}
        assert layer, i
        moved = [k for k in layer if not torch.equal(start[k], trained[k])]
        if i % 2:
            assert not moved, f"frozen layer {i} changed: {moved}"
        else:
            assert moved, f"layer {i} trains but did not change"
    assert 0 < summary["trainable_params"] < summary["total_params"]
