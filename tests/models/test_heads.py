"""Feature-based heads: layer choices (BERT Table 7), pooling, the scalar mix, and exact feature caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertModel

from encoderlab.data.collate import PadCollator
from encoderlab.errors import ConfigError
from encoderlab.models.features import FeatureCollator, cached_features, encode_rows, select_layers
from encoderlab.models.heads import FeatureHead, FeatureModel, ScalarMix, layer_indices, pool

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("layers", "indices", "combine"),
    [
        ("embeddings", [0], "single"),
        ("last", [6], "single"),
        ("second_to_last", [5], "single"),
        ("concat_last4", [3, 4, 5, 6], "concat"),
        ("weighted_sum_last4", [3, 4, 5, 6], "weighted"),
        ("weighted_sum_all", [1, 2, 3, 4, 5, 6], "weighted"),
    ],
)
def test_layer_choices_index_hidden_states(layers, indices, combine):
    assert layer_indices(layers, 6) == (indices, combine)


def test_too_few_layers_names_finetune_layers():
    with pytest.raises(ConfigError) as e:
        layer_indices("concat_last4", 2)
    assert e.value.key == "finetune.layers" and "2" in str(e.value)


def test_scalar_mix_starts_as_the_mean_and_learns_weights():
    mix = ScalarMix(3)
    feats = torch.randn(4, 3, 8)
    torch.testing.assert_close(mix(feats), feats.mean(1))
    mix(feats).pow(2).sum().backward()
    assert mix.weights.grad.abs().sum() > 0 and mix.gamma.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("combine", "head", "n"),
    [("single", "linear", 1), ("concat", "linear", 4), ("weighted", "linear", 4), ("weighted", "mlp", 4)],
)
def test_head_output_shapes_for_sequences_and_tokens(combine, head, n):
    h = FeatureHead(n, 16, 3, combine, head, head_hidden_size=8)
    assert h(torch.randn(5, n, 16)).shape == (5, 3)
    assert h(torch.randn(5, 7, n, 16)).shape == (5, 7, 3)
    width = 16 * n if combine == "concat" else 16
    first = h.classifier if head == "linear" else h.classifier[0]
    assert first.in_features == width


def test_bilstm_head_reads_tokens_up_to_the_mask():
    torch.manual_seed(0)
    h = FeatureHead(1, 16, 3, "single", "bilstm", head_hidden_size=8).eval()
    feats = torch.randn(2, 6, 1, 16)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    out = h(feats, mask)
    assert out.shape == (2, 6, 3)
    changed = feats.clone()
    changed[0, 4:] = 100.0  # padding must not leak into real tokens
    torch.testing.assert_close(h(changed, mask)[0, :4], out[0, :4])


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_token():
    hidden = torch.randn(2, 5, 1, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(pool(hidden, mask, "mean")[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(pool(hidden, mask, "cls"), hidden[:, 0])


@pytest.fixture()
def feature_model(tiny_bert_config):
    torch.manual_seed(0)
    encoder = BertModel(tiny_bert_config)
    idx, combine = layer_indices("weighted_sum_all", tiny_bert_config.num_hidden_layers)
    return FeatureModel(encoder, FeatureHead(len(idx), 32, 2, combine), idx, "mean")


def test_feature_model_freezes_the_encoder_and_keeps_it_in_eval_mode(feature_model):
    feature_model.train()
    assert feature_model.head.training and not feature_model.encoder.training
    assert not any(p.requires_grad for p in feature_model.encoder.parameters())
    assert all(p.requires_grad for p in feature_model.head.parameters())
    ids = torch.randint(5, 1000, (2, 6))
    mask = torch.ones_like(ids)
    # no dropout in the encoder: the same input always gives the same features (what makes caching exact)
    torch.testing.assert_close(feature_model.encode(ids, mask), feature_model.encode(ids, mask))
    assert feature_model.encode(ids, mask).shape == (2, 2, 32)
    assert feature_model.encode(ids, mask, all_layers=True).shape == (2, 3, 32)  # embeddings + 2 layers


def test_cached_rows_hold_the_features_the_model_computes(feature_model, tokenizer):
    texts = ["a short one", "a much longer sentence than the first one, with many more words", "mid length text"]
    rows = [dict(tokenizer(t), labels=i % 2) for i, t in enumerate(texts)]
    collate = PadCollator(tokenizer.pad_token_id)
    cached = select_layers(encode_rows(feature_model, rows, collate, batch_size=2, all_layers=True), [1, 2])
    feature_model.eval()
    for row, c in zip(rows, cached, strict=True):
        one = collate([row])
        direct = feature_model.encode(one["input_ids"], one["attention_mask"], one["token_type_ids"])[0]
        torch.testing.assert_close(c["features"], direct, atol=1e-5, rtol=1e-4)
        assert "input_ids" not in c and c["labels"] == row["labels"]
    batch = FeatureCollator()(cached)
    assert batch["features"].shape == (3, 2, 32) and batch["labels"].tolist() == [0, 1, 0]
    with torch.no_grad():
        torch.testing.assert_close(feature_model(batch), feature_model(collate(rows)), atol=1e-5, rtol=1e-4)


def test_cached_features_compute_once_per_key_and_split(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return [{"features": torch.ones(2, 4), "labels": 1}]

    first = cached_features(tmp_path, "k1", "train", compute)
    again = cached_features(tmp_path, "k1", "train", compute)
    assert len(calls) == 1 and torch.equal(first[0]["features"], again[0]["features"])
    cached_features(tmp_path, "k2", "train", compute)
    cached_features(None, "k1", "train", compute)
    assert len(calls) == 3


class _Boom:
    """Unpickling it creates a file: proof that a cache file could run code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_feature_cache_is_safetensors_and_round_trips_token_rows(tmp_path):
    rows = [
        {"features": torch.randn(n, 2, 4), "attention_mask": [1] * n, "labels": [0, 2, -100][:n], "example_index": i}
        for i, n in enumerate((3, 1, 2))
    ] + [{"features": torch.randn(2, 2, 4), "attention_mask": [1, 1], "labels": [1, 1], "example_index": 3}]

    cached_features(tmp_path, "k", "test", lambda: rows)
    again = cached_features(tmp_path, "k", "test", lambda: pytest.fail("computed twice"))

    (path,) = (tmp_path / "features" / "k").iterdir()
    assert path.name == "test.safetensors" and path.read_bytes()[8:9] == b"{"  # a JSON header, then raw tensors
    for a, b in zip(rows, again, strict=True):
        assert torch.equal(a["features"], b["features"])
        assert {k: v for k, v in a.items() if k != "features"} == {k: v for k, v in b.items() if k != "features"}


def test_an_old_pickled_feature_cache_is_never_loaded(tmp_path):
    marker = tmp_path / "pickle_ran"
    old = tmp_path / "features" / "k" / "train.pt"
    old.parent.mkdir(parents=True)
    torch.save([{"features": torch.ones(2), "labels": _Boom(marker)}], old)

    rows = cached_features(tmp_path, "k", "train", lambda: [{"features": torch.zeros(2), "labels": 0}])

    assert rows[0]["labels"] == 0 and not marker.exists()
