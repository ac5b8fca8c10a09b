from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertForMaskedLM, BertForSequenceClassification, BertModel

from encoderlab.config.schema import OptimizerConfig
from encoderlab.errors import ConfigError
from encoderlab.training.param_groups import build_param_groups, encoder_of, layer_id, named_layer_ids, num_layers

torch.set_num_threads(1)


@pytest.fixture()
def classifier(tiny_bert_config):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config)


def _lrs_by_layer(groups: list[dict]) -> dict[int, float]:
    lrs: dict[int, set[float]] = {}
    for g in groups:
        lrs.setdefault(g["layer_id"], set()).add(g["lr"])
    assert all(len(v) == 1 for v in lrs.values()), "decay and no_decay groups of a layer must share the LR"
    return {k: v.pop() for k, v in lrs.items()}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bert.embeddings.word_embeddings.weight", 0),
        ("embeddings.LayerNorm.bias", 0),  # a plain BertModel
        ("electra.embeddings_project.weight", 0),
        ("bert.encoder.layer.0.attention.self.query.weight", 1),
        ("roberta.encoder.layer.11.output.dense.bias", 12),
        ("bert.pooler.dense.weight", 13),
        ("classifier.out_proj.weight", 13),
        ("qa_outputs.bias", 13),
        ("cls.predictions.transform.dense.weight", 13),
    ],
)
def test_layer_id_maps_names_of_bert_family_models(name, expected):
    assert layer_id(name, 12) == expected


def test_layer_id_rejects_a_layer_the_model_does_not_have():
    with pytest.raises(ValueError, match="layer 5"):
        layer_id("bert.encoder.layer.5.output.dense.weight", 2)


def test_encoder_and_layer_count_for_heads_plain_models_and_wrappers(classifier, tiny_bert_config):
    assert encoder_of(classifier) is classifier.bert
    plain = BertModel(tiny_bert_config)
    assert encoder_of(plain) is plain
    wrapper = nn.Module()
    wrapper.model = classifier  # e.g. a LightningModule holding the HF model
    assert encoder_of(wrapper) is classifier.bert
    assert num_layers(classifier) == num_layers(plain) == num_layers(wrapper) == 2


def test_llrd_gives_the_top_layer_the_base_lr_and_each_layer_below_decay_times_more_as_sun_et_al(classifier):
    """Sun et al. 2019, Sec. 5.3: eta^(k-1) = xi * eta^k with the top layer at the base LR, the embeddings lowest."""
    cfg = OptimizerConfig(lr=1e-3, layer_decay=0.9)
    lrs = _lrs_by_layer(build_param_groups(classifier, cfg))
    assert lrs[0] == pytest.approx(1e-3 * 0.9**2)  # embeddings
    assert lrs[1] == pytest.approx(1e-3 * 0.9)  # layer 0
    assert lrs[2] == pytest.approx(1e-3)  # layer 1, the top layer
    assert lrs[3] == pytest.approx(1e-3)  # pooler + classifier


def test_llrd_decayed_top_counts_the_head_as_the_top(classifier):
    cfg = OptimizerConfig(lr=1e-3, layer_decay=0.9, layer_decay_top="decayed")
    lrs = _lrs_by_layer(build_param_groups(classifier, cfg))
    assert lrs == {0: pytest.approx(1e-3 * 0.9**3), 1: pytest.approx(1e-3 * 0.9**2), 2: pytest.approx(9e-4), 3: 1e-3}


def test_head_lr_applies_to_head_only_and_base_lr_matches_lr(classifier):
    groups = build_param_groups(classifier, OptimizerConfig(lr=2e-5, head_lr=1e-3))
    lrs = _lrs_by_layer(groups)
    assert lrs == {0: 2e-5, 1: 2e-5, 2: 2e-5, 3: 1e-3}
    assert all(g["base_lr"] == g["lr"] for g in groups)
    head_ids = {id(p) for g in groups if g["layer_id"] == 3 for p in g["params"]}
    head_names = {n for n, p in classifier.named_parameters() if id(p) in head_ids}
    assert head_names == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}


def test_biases_and_layernorm_weights_get_no_weight_decay(classifier):
    groups = build_param_groups(classifier, OptimizerConfig(weight_decay=0.01))
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for name, p in classifier.named_parameters():
        if name.endswith(".bias") or "LayerNorm.weight" in name:
            assert decay_of[id(p)] == 0.0, name
        else:
            assert decay_of[id(p)] == 0.01, name
    assert [g["name"] for g in groups][:3] == ["embeddings.decay", "embeddings.no_decay", "layer_1.decay"]
    assert groups[-1]["name"] == "head.no_decay"


def test_only_trainable_parameters_each_exactly_once(classifier):
    for p in classifier.bert.embeddings.parameters():
        p.requires_grad_(False)
    groups = build_param_groups(classifier, OptimizerConfig())
    grouped = [p for g in groups for p in g["params"]]
    trainable = [p for p in classifier.parameters() if p.requires_grad]
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)
    assert 0 not in {g["layer_id"] for g in groups}


def test_tied_mlm_decoder_weight_is_grouped_once_with_the_embeddings(tiny_bert_config):
    mlm = BertForMaskedLM(tiny_bert_config)
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    groups = build_param_groups(mlm, OptimizerConfig(layer_decay=0.5))
    owners = [g["layer_id"] for g in groups for p in g["params"] if p is mlm.bert.embeddings.word_embeddings.weight]
    assert owners == [0]


def test_extra_head_parameters_are_head_parameters(tiny_bert_config):
    encoder, head = BertModel(tiny_bert_config, add_pooling_layer=False), nn.Linear(32, 3)
    groups = build_param_groups(encoder, OptimizerConfig(lr=1e-4, head_lr=1e-2, layer_decay=0.5), extra_head=head)
    head_params = [p for g in groups if g["layer_id"] == 3 for p in g["params"]]
    assert {id(p) for p in head_params} == {id(head.weight), id(head.bias)}
    assert _lrs_by_layer(groups) == {0: pytest.approx(1e-4 * 0.25), 1: 5e-5, 2: 1e-4, 3: 1e-2}


def _albert(groups: int, layers: int = 3):
    from transformers import AlbertConfig, AlbertForSequenceClassification

    torch.manual_seed(0)
    config = AlbertConfig(
        vocab_size=100,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=layers,
        num_hidden_groups=groups,
        num_attention_heads=2,
        intermediate_size=64,
    )
    return AlbertForSequenceClassification(config)


def test_albert_with_a_layer_group_per_layer_gets_a_layer_id_per_layer():
    model = _albert(groups=3)
    ids = {name: lid for name, _, lid in named_layer_ids(model)}
    assert ids["albert.embeddings.word_embeddings.weight"] == 0
    assert ids["albert.encoder.embedding_hidden_mapping_in.weight"] == 0  # the embeddings' projection
    for g in range(3):
        assert ids[f"albert.encoder.albert_layer_groups.{g}.albert_layers.0.ffn.weight"] == g + 1
    assert ids["albert.pooler.weight"] == ids["classifier.weight"] == 4
    lrs = _lrs_by_layer(build_param_groups(model, OptimizerConfig(lr=1e-3, head_lr=1e-2, layer_decay=0.5)))
    assert lrs == {0: pytest.approx(1.25e-4), 1: 2.5e-4, 2: 5e-4, 3: 1e-3, 4: 1e-2}


def test_albert_shared_layers_train_at_the_encoder_lr_and_per_layer_options_are_config_errors():
    model = _albert(groups=1)  # every released ALBERT: one weight set for all layers
    assert num_layers(model) == 3
    lrs = _lrs_by_layer(build_param_groups(model, OptimizerConfig(lr=1e-4, head_lr=1e-2)))
    assert lrs == {0: 1e-4, 3: 1e-4, 4: 1e-2}  # the shared layer is encoder, not head
    with pytest.raises(ConfigError, match="share 1 weight set") as err:
        build_param_groups(model, OptimizerConfig(layer_decay=0.9))
    assert err.value.key == "optimizer.layer_decay"
