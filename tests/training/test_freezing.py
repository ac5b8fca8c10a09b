from __future__ import annotations

import re

import pytest
import torch
from transformers import BertForMaskedLM, BertForQuestionAnswering, BertForSequenceClassification

from encoderlab.config.schema import FinetuneConfig, OptimizerConfig, SchedulerConfig
from encoderlab.errors import ConfigError
from encoderlab.training.freezing import GradualUnfreezer, apply_freezing, count_parameters
from encoderlab.training.optim import build_optimizer
from encoderlab.training.param_groups import build_param_groups
from encoderlab.training.schedules import build_scheduler

torch.set_num_threads(1)

H, LAYER = 32, 32 * 32 * 4 + 32 * 4 + 2 * (32 * 64) + 64 + 32 + 4 * 32  # width; params of one encoder layer
EMBEDDINGS = (30522 + 512 + 2) * H + 2 * H
POOLER, CLASSIFIER = H * H + H, H * 2 + 2


@pytest.fixture()
def model(tiny_bert_config):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config)


def _backward(model) -> None:
    torch.manual_seed(1)
    batch = {"input_ids": torch.randint(5, 1000, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()


def _trained_parts(model) -> set[str]:
    """Which parts train: 'embeddings', 'layer.<i>', 'pooler', 'classifier'."""
    parts = set()
    for name, p in model.named_parameters():
        if p.requires_grad:
            match = re.search(r"layer\.\d+", name)
            if ".embeddings." in name or ".pooler." in name:
                parts.add(name.split(".")[1])
            else:
                parts.add(match.group() if match else name.split(".")[0])
    return parts


@pytest.mark.parametrize(
    ("cfg", "parts", "n_trainable"),
    [
        (FinetuneConfig(strategy="full"), {"embeddings", "layer.0", "layer.1", "pooler", "classifier"}, None),
        (FinetuneConfig(strategy="frozen"), {"classifier"}, CLASSIFIER),
        (FinetuneConfig(strategy="feature_based"), {"classifier"}, CLASSIFIER),
        (FinetuneConfig(strategy="top_k", k=1), {"layer.1", "pooler", "classifier"}, LAYER + POOLER + CLASSIFIER),
        (
            FinetuneConfig(strategy="top_k", k=1, train_embeddings=True),
            {"embeddings", "layer.1", "pooler", "classifier"},
            EMBEDDINGS + LAYER + POOLER + CLASSIFIER,
        ),
        (
            FinetuneConfig(strategy="gradual_unfreeze"),
            {"embeddings", "layer.0", "layer.1", "pooler", "classifier"},
            None,
        ),
    ],
    ids=["full", "frozen", "feature_based", "top_1", "top_1_embeddings", "gradual_unfreeze"],
)
def test_strategy_trains_exactly_its_parts_and_frozen_parts_get_no_gradient(model, cfg, parts, n_trainable):
    apply_freezing(model, cfg)
    trainable, total = count_parameters(model)
    assert total == EMBEDDINGS + 2 * LAYER + POOLER + CLASSIFIER
    assert trainable == (total if n_trainable is None else n_trainable)
    assert _trained_parts(model) == parts
    _backward(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
        elif not name.endswith("attention.self.key.bias"):  # softmax is shift-invariant: its gradient is ~0
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_a_later_strategy_replaces_an_earlier_one(model):
    apply_freezing(model, FinetuneConfig(strategy="frozen"))
    apply_freezing(model, FinetuneConfig(strategy="full"))
    assert count_parameters(model)[0] == count_parameters(model)[1]


def test_top_k_larger_than_the_model_names_the_key_and_the_range(model):
    with pytest.raises(ConfigError, match=r"k=3 is larger than the 2 layers of the model; use 1\.\.2") as err:
        apply_freezing(model, FinetuneConfig(strategy="top_k", k=3))
    assert err.value.key == "finetune.k"


def test_frozen_task_heads_train_and_the_tied_mlm_embeddings_stay_frozen(tiny_bert_config):
    tiny_bert_config.num_labels = 2
    qa, mlm = BertForQuestionAnswering(tiny_bert_config), BertForMaskedLM(tiny_bert_config)
    for m in (qa, mlm):
        apply_freezing(m, FinetuneConfig(strategy="frozen"))
    assert {n for n, p in qa.named_parameters() if p.requires_grad} == {"qa_outputs.weight", "qa_outputs.bias"}
    assert not mlm.cls.predictions.decoder.weight.requires_grad  # it is the word-embedding matrix
    assert {n.split(".")[0] for n, p in mlm.named_parameters() if p.requires_grad} == {"cls"}
    assert count_parameters(mlm)[1] == sum(p.numel() for p in set(mlm.parameters()))


def test_param_groups_after_top_k_hold_only_the_trained_layers(model):
    apply_freezing(model, FinetuneConfig(strategy="top_k", k=2))
    groups = build_param_groups(model, OptimizerConfig(lr=1e-3, layer_decay=0.9))
    assert {g["layer_id"]: g["lr"] for g in groups} == {1: pytest.approx(9e-4), 2: 1e-3, 3: 1e-3}


def test_unfreezing_order_head_first_then_top_down_embeddings_only_if_asked():
    unfreezer = GradualUnfreezer.every(n_layers=2, interval_steps=2)
    table = [[unfreezer.scale_for(lid, step) for lid in range(4)] for step in range(8)]
    assert table[:2] == [[0, 0, 0, 1]] * 2
    assert table[2:4] == [[0, 0, 1, 1]] * 2
    assert table[4:] == [[0, 1, 1, 1]] * 4  # embeddings stay frozen
    with_embeddings = GradualUnfreezer.every(n_layers=2, interval_steps=2, train_embeddings=True)
    assert [with_embeddings.scale_for(0, s) for s in (5, 6)] == [0.0, 1.0]
    half_epochs = GradualUnfreezer.from_config(
        FinetuneConfig(unfreeze_interval=0.5), n_layers=2, total_steps=40, steps_per_epoch=4
    )
    assert [half_epochs.scale_for(1, s) for s in (3, 4)] == [0.0, 1.0]


def _thawed_everything_at(unfreezer: GradualUnfreezer, total_steps: int) -> int | None:
    """The first step at which the head, every layer and the embeddings all train (None: never in the run)."""
    for step in range(total_steps):
        if all(unfreezer.scale_for(lid, step) == 1.0 for lid in range(unfreezer.n_layers + 2)):
            return step
    return None


@pytest.mark.parametrize(("n_layers", "total_steps"), [(6, 47), (12, 1000), (6, 3), (2, 1)])
def test_the_default_schedule_thaws_everything_by_half_of_the_run_then_trains_it_all(n_layers, total_steps):
    """ULMFiT ends with the whole model training: every layer and the embeddings, for the rest of the run."""
    cfg = FinetuneConfig(strategy="gradual_unfreeze", train_embeddings=True)  # conf/finetune/gradual_unfreeze.yaml
    unfreezer = GradualUnfreezer.from_config(cfg, n_layers, total_steps, steps_per_epoch=total_steps)
    everything = _thawed_everything_at(unfreezer, total_steps)
    assert everything is not None and everything <= 0.5 * total_steps
    assert unfreezer.stage(0) == 0 or total_steps < 2 * (n_layers + 1)  # the head trains alone first
    assert list(unfreezer.thaw_steps) == sorted(unfreezer.thaw_steps) and len(unfreezer.thaw_steps) == n_layers + 1
    if total_steps >= 2 * (n_layers + 1):  # one layer per thaw, evenly spaced
        gaps = {b - a for a, b in zip((0, *unfreezer.thaw_steps), unfreezer.thaw_steps, strict=False)}
        assert max(gaps) - min(gaps) <= 1


def test_the_freezing_study_arm_thaws_the_lowest_layer_and_the_embeddings():
    """experiment=freezing_study, gradual_unfreeze arm: 1,500 snippets, batch 32, 1 epoch = 47 steps, MiniLM's 6
    layers. Before the fix (one layer per 0.25 epoch) the lowest two layers and the embeddings never thawed."""
    from hydra import compose, initialize_config_dir

    from encoderlab.cli.train import CONF_DIR
    from encoderlab.config.validate import validate

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        run = validate(compose("config", overrides=["experiment=freezing_study", "finetune=gradual_unfreeze"]))
    unfreezer = GradualUnfreezer.from_config(run.finetune, n_layers=6, total_steps=47, steps_per_epoch=47)
    everything = _thawed_everything_at(unfreezer, 47)
    assert everything is not None and everything <= 24


def test_an_interval_that_never_thaws_everything_is_an_error_naming_the_key():
    cfg = FinetuneConfig(strategy="gradual_unfreeze", unfreeze_interval=0.25, train_embeddings=True)
    with pytest.raises(ConfigError, match=r"never train; use at most 0\.14") as err:  # (47 - 1) / 7 / 47
        GradualUnfreezer.from_config(cfg, n_layers=6, total_steps=47, steps_per_epoch=47)
    assert err.value.key == "finetune.unfreeze_interval"
    ulmfit = FinetuneConfig(strategy="gradual_unfreeze", unfreeze_interval=1.0, train_embeddings=True)  # 1 per epoch
    assert _thawed_everything_at(GradualUnfreezer.from_config(ulmfit, 2, 40, 10), 40) == 30
    with pytest.raises(ConfigError):
        GradualUnfreezer.from_config(ulmfit, 2, 30, 10)  # the embeddings would thaw as the run ends


@pytest.mark.parametrize("optimizer_name", ["adamw", "adamw_bert"])
def test_frozen_layers_have_lr_zero_and_do_not_move_while_thawed_ones_do(model, optimizer_name):
    apply_freezing(model, FinetuneConfig(strategy="gradual_unfreeze"))
    optimizer = build_optimizer(
        build_param_groups(model, OptimizerConfig(name=optimizer_name, lr=1e-3, weight_decay=0.1)),
        OptimizerConfig(name=optimizer_name, lr=1e-3, weight_decay=0.1),
    )
    scheduler = build_scheduler(optimizer, SchedulerConfig(name="linear", warmup_ratio=0.0), total_steps=10)
    unfreezer = GradualUnfreezer.every(n_layers=2, interval_steps=1)
    name_of = {id(p): n for n, p in model.named_parameters()}
    for step in range(4):  # thawed: step 0 head; 1 + layer 1; 2 + layer 0; 3 the same (no embeddings)
        unfreezer.apply(optimizer, step, scheduler)
        before = [[p.detach().clone() for p in g["params"]] for g in optimizer.param_groups]
        _backward(model)
        optimizer.step()
        for group, old in zip(optimizer.param_groups, before, strict=True):
            thawed = group["layer_id"] >= 3 - step and group["layer_id"] != 0
            assert (group["lr"] > 0) is thawed, (step, group["name"])
            moved = {name_of[id(p)]: not torch.equal(p, q) for p, q in zip(group["params"], old, strict=True)}
            if thawed:  # the attention key bias has a ~0 gradient (see above) and may stay put
                assert all(v for n, v in moved.items() if not n.endswith("key.bias")), (step, group["name"])
            else:
                assert not any(moved.values()), (step, group["name"])
        scheduler.step()


def test_apply_without_a_scheduler_uses_the_base_lr(model):
    optimizer = build_optimizer(build_param_groups(model, OptimizerConfig(lr=1e-3)), OptimizerConfig(lr=1e-3))
    GradualUnfreezer.every(n_layers=2, interval_steps=1).apply(optimizer, step=1)
    assert {g["layer_id"]: g["lr"] for g in optimizer.param_groups} == {0: 0.0, 1: 0.0, 2: 1e-3, 3: 1e-3}


def test_apply_needs_groups_with_a_layer_id():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(1))])
    with pytest.raises(ValueError, match="build_param_groups"):
        GradualUnfreezer.every(n_layers=2, interval_steps=1).apply(optimizer, step=0)


@pytest.mark.parametrize("strategy", ["top_k", "gradual_unfreeze"])
def test_per_layer_strategies_on_albert_shared_layers_are_config_errors(strategy):
    from transformers import AlbertConfig, AlbertForSequenceClassification

    config = AlbertConfig(
        vocab_size=100,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
    )
    model = AlbertForSequenceClassification(config)
    with pytest.raises(ConfigError, match=r"3 layers share 1 weight set.*finetune=full") as err:
        apply_freezing(model, FinetuneConfig(strategy=strategy, k=1))
    assert err.value.key == "finetune.strategy"
    config.num_hidden_groups = 3  # a weight set per layer: top_k freezes the lower two
    unshared = AlbertForSequenceClassification(config)
    apply_freezing(unshared, FinetuneConfig(strategy="top_k", k=1))
    trained = {n.split(".albert_layers")[0] for n, p in unshared.named_parameters() if p.requires_grad}
    assert trained == {"albert.encoder.albert_layer_groups.2", "albert.pooler.weight", "albert.pooler.bias"} | {
        "classifier.weight",
        "classifier.bias",
    }
